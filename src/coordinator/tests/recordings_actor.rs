//! Recordings through the actor: every server the meeting was placed on, merged; partial and
//! total failure.

use super::fake::down;
use super::*;
use crate::bbb::{PlaybackFormat, Recording};
use crate::coordinator::PanicServer;
use crate::db::servers::ServerState;

fn rec(id: &str, meeting_id: &str, start: i64, state: &str) -> Recording {
    Recording {
        record_id: id.into(),
        meeting_id: meeting_id.into(),
        state: state.into(),
        published: state == "published",
        start_time: start,
        end_time: start + 3_600_000,
        participants: "3".into(),
        formats: vec![
            PlaybackFormat {
                format_type: "presentation".into(),
                url: format!("https://p.test/{id}"),
                length_minutes: Some(60),
            },
            PlaybackFormat {
                format_type: "video".into(),
                url: format!("https://v.test/{id}.mp4"),
                length_minutes: None,
            },
        ],
        ..Default::default()
    }
}

#[actix_web::test]
async fn recordings_are_merged_from_every_server_of_the_meeting() {
    let h = Harness::new(2).await;
    let first = h.join("r2").await;
    let mid = first.get("meetingID").unwrap().to_string();
    let (old, old_id, new) = if first.base == url_of(1) {
        (url_of(1), h.ids[0], url_of(2))
    } else {
        (url_of(2), h.ids[1], url_of(1))
    };
    // Move the meeting: cordon + panic its server, join again.
    h.set_state(old_id, ServerState::Cordoned).await;
    h.addr
        .send(PanicServer { id: old_id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.join("r2").await.base, new);

    h.fake.with(&old, |s| {
        s.recordings = vec![
            rec("a", &mid, 1596389400000, "published"),
            rec("gone", &mid, 1596389500000, "deleted"),
            rec("not-ours", "other-meeting", 1596389600000, "published"),
        ]
    });
    h.fake.with(&new, |s| {
        s.recordings = vec![
            rec("a", &mid, 1596389400000, "published"),
            rec("b", &mid, 1596475800000, "unpublished"),
        ]
    });
    let moderator = user("m", &["mod"], None);
    let kind = || BbbCommandKind::Recordings {
        room: Some("r2".into()),
    };
    let v = h.send(&moderator, kind()).await.unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{v}");
    assert_eq!(results[0]["url"], "https://p.test/b");
    assert_eq!(results[1]["start"], "2020-08-02T19:30:00.000+02:00");
    assert_eq!(results[1]["end"], "2020-08-02T20:30:00.000+02:00");
    assert_eq!(results[1]["participants"], "3");
    assert_eq!(results[1]["state"], "published");
    assert_eq!(results[1]["url_video"], "https://v.test/a.mp4");
    assert_eq!(results[1]["url_screenshare"], Value::Null);
    assert_eq!(results[1]["url_notes"], Value::Null);

    // One server down: what the other answered.
    h.fake.set_fault(&old, Some(down()));
    let v = h.send(&moderator, kind()).await.unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    h.fake.set_fault(&new, Some(down()));
    h.fake.set_fault(&old, None);
    let v = h.send(&moderator, kind()).await.unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    // That failed getRecordings is a failed contact: the meeting's server is suspect, and its
    // meeting is no longer answered from memory.
    let new_id = if new == url_of(1) { h.ids[0] } else { h.ids[1] };
    let status = h.status().await;
    assert!(status.servers.iter().any(|s| s.id == new_id && s.suspect));
    assert!(h.joins.get(MeetingKey::room("w", "r2").as_str()).is_none());
    // All down: bbb.failed.
    h.fake.set_fault(&old, Some(down()));
    let err = h.send(&moderator, kind()).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::BbbFailed);
}
