//! Health: thresholds, offline servers losing their meetings, ending moved meetings when the old
//! server answers again, and registry changes while running.

use super::fake::down;
use super::*;

async fn online(h: &Harness, n: usize) -> bool {
    h.status().await.servers[n - 1].online
}

#[actix_web::test]
async fn unhealthy_after_and_healthy_after_thresholds() {
    let h = Harness::new(1).await; // unhealthy_after 2, healthy_after 2
    h.fake.set_fault(&url_of(1), Some(down()));
    h.poll().await;
    assert!(online(&h, 1).await);
    assert!(h.status().await.servers[0].suspect);
    h.poll().await;
    assert!(!online(&h, 1).await);
    let s = &h.status().await.servers[0];
    assert_eq!(s.consecutive_failures, 2);
    assert!(s
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("connect")));
    // Offline: no server for new meetings.
    let err = h
        .room_url(&user("a", &["p"], Some("A")), "r2")
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BbbFailed);
    h.fake.set_fault(&url_of(1), None);
    h.poll().await;
    assert!(!online(&h, 1).await);
    h.poll().await;
    assert!(online(&h, 1).await);
    assert!(h
        .room_url(&user("a", &["p"], Some("A")), "r2")
        .await
        .is_ok());
}

#[actix_web::test]
async fn a_failed_contact_moves_the_meeting_at_the_next_join_and_it_ends_there_when_back() {
    let h = Harness::new(2).await;
    let first = h.join("r2").await;
    let mid = first.get("meetingID").unwrap().to_string();
    let (dead, dead_id) = if first.base == url_of(1) {
        (url_of(1), h.ids[0])
    } else {
        (url_of(2), h.ids[1])
    };
    h.fake.set_fault(&dead, Some(down()));
    // One failed poll: the server is still online but suspect, so nothing of it is answered
    // from memory; the next join re-confirms there, fails, and moves the meeting at once.
    h.poll().await;
    assert!(h.joins.get(MeetingKey::room("w", "r2").as_str()).is_none());
    let moved = h.join("r2").await;
    assert_ne!(moved.base, dead);
    assert_eq!(moved.get("meetingID"), Some(mid.as_str()));
    assert_eq!(
        h.fake.count(Some(&dead), "create"),
        2,
        "first create, failed re-confirmation"
    );
    assert_eq!(h.fake.count(Some(&moved.base), "create"), 1);
    h.settle().await;
    assert_eq!(
        h.stored_server("r2"),
        Some(if dead_id == h.ids[0] {
            h.ids[1]
        } else {
            h.ids[0]
        })
    );
    h.poll().await;
    let status = h.status().await;
    let s = status.servers.iter().find(|s| s.id == dead_id).unwrap();
    assert!(!s.online);
    assert_eq!(s.meetings_placed, 0);
    // The dead server answers again: the meeting it still runs is ended there, not on the target.
    h.fake.set_fault(&dead, None);
    assert!(h.fake.runs(&dead, &mid));
    h.poll().await;
    h.settle().await;
    assert!(!h.fake.runs(&dead, &mid));
    assert!(h.fake.runs(&moved.base, &mid));
    assert_eq!(h.fake.count(Some(&moved.base), "end"), 0);
    assert!(h.published_violations().await.is_empty());
}

#[actix_web::test]
async fn a_meeting_on_a_server_that_went_offline_is_re_created_elsewhere() {
    let h = Harness::new(2).await;
    let first = h.join("r2").await;
    let mid = first.get("meetingID").unwrap().to_string();
    let dead = first.base.clone();
    h.fake.set_fault(&dead, Some(down()));
    h.poll().await;
    h.poll().await;
    h.settle().await;
    // Offline: forgotten in memory and in the database.
    assert_eq!(h.stored_server("r2"), None);
    let moved = h.join("r2").await;
    assert_ne!(moved.base, dead);
    assert_eq!(moved.get("meetingID"), Some(mid.as_str()));
    assert_eq!(h.fake.count(Some(&dead), "create"), 1, "not tried again");
}

#[actix_web::test]
async fn registry_changes_apply_while_running() {
    let mut h = Harness::new(1).await;
    let added = h.add_server("https://added.test/bigbluebutton/", None);
    assert_eq!(h.status().await.servers.len(), 1);
    h.poll().await;
    let status = h.status().await;
    assert_eq!(status.servers.len(), 2);
    assert_eq!(status.servers[1].url, "https://added.test/bigbluebutton");
    {
        let mut conn = h.db.get().unwrap();
        crate::db::servers::set_weight(&mut conn, added, 3.5).unwrap();
        crate::db::servers::set_state(
            &mut conn,
            h.ids[0],
            crate::db::servers::ServerState::Cordoned,
        )
        .unwrap();
    }
    h.addr
        .send(crate::coordinator::ReloadServers)
        .await
        .unwrap()
        .unwrap();
    let status = h.status().await;
    assert_eq!(status.servers[1].weight, 3.5);
    assert_eq!(
        status.servers[0].state,
        crate::db::servers::ServerState::Cordoned
    );
    assert_eq!(h.join("r2").await.base, "https://added.test/bigbluebutton");
    {
        let mut conn = h.db.get().unwrap();
        crate::db::servers::remove(&mut conn, added).unwrap();
    }
    h.poll().await;
    let status = h.status().await;
    assert_eq!(status.servers.len(), 1);
    // The removed server's meeting is re-placed: only the cordoned server is left.
    let err = h
        .room_url(&user("a", &["p"], Some("A")), "r2")
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BbbFailed);
}

#[actix_web::test]
async fn the_poller_publishes_server_status_without_secrets() {
    let h = Harness::new(2).await;
    h.join("r2").await;
    h.poll().await;
    h.settle().await;
    let rows = {
        let mut conn = h.db.get().unwrap();
        crate::db::server_status::load_all(&mut conn).unwrap()
    };
    assert_eq!(rows.len(), 2);
    assert_eq!(rows.values().map(|r| r.meetings).sum::<i32>(), 1);
    let json = serde_json::to_string(&h.status().await).unwrap();
    assert!(
        !json.contains("secret-1") && !json.contains("secret-2"),
        "{json}"
    );
}

#[actix_web::test]
async fn a_placement_changed_by_another_instance_is_adopted_not_ended() {
    let h = Harness::new(2).await;
    let first = h.join("r2").await;
    let mid = first.get("meetingID").unwrap().to_string();
    let (here, there, there_id) = if first.base == url_of(1) {
        (url_of(1), url_of(2), h.ids[1])
    } else {
        (url_of(2), url_of(1), h.ids[0])
    };
    // Another gateway instance moved the meeting: stored on `there`, running there too.
    {
        let here_id = if there_id == h.ids[0] {
            h.ids[1]
        } else {
            h.ids[0]
        };
        let mut conn = h.db.get().unwrap();
        let key = MeetingKey::room("w", "r2");
        crate::db::meetings::claim(&mut conn, &key, Some(here_id), Some(there_id), None, 0)
            .unwrap();
    }
    h.fake.with(&there, |s| {
        s.meetings.insert(
            mid.clone(),
            crate::bbb::MeetingInfo {
                meeting_id: mid.clone(),
                create_time: 5,
                ..Default::default()
            },
        );
    });
    h.poll().await;
    h.settle().await;
    assert!(
        h.fake.runs(&there, &mid),
        "ended where the database places it"
    );
    let status = h.status().await;
    assert_eq!(
        status
            .servers
            .iter()
            .find(|s| s.id == there_id)
            .unwrap()
            .meetings_placed,
        1
    );
    // Now memory agrees with the database: the copy on the old server is the stray one.
    h.poll().await;
    h.settle().await;
    assert!(!h.fake.runs(&here, &mid));
    assert!(h.fake.runs(&there, &mid));
    assert_eq!(h.join("r2").await.base, there);
}
