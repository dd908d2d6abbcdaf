//! The published join table through the actor: what a join publishes, that sessions' answers
//! match the coordinator's, and that every event that changes a meeting or its server
//! withdraws it before the next join.

use super::fake::down;
use super::*;
use crate::coordinator::{PanicServer, ReloadServers};
use crate::db::servers::ServerState;

fn alice() -> Arc<UserContext> {
    user("alice", &["p"], Some("Alice"))
}

/// Which published meeting, if any, `room` has.
fn published(h: &Harness, room: &str) -> Option<crate::join::JoinTarget> {
    h.joins
        .get(MeetingKey::room("w", room).as_str())
        .map(|p| p.target.clone())
}

/// A session's warm answer for `room`, if it gets one.
fn warm(
    h: &Harness,
    u: &UserContext,
    room: Option<&str>,
) -> Option<Result<crate::join::WarmJoin, ErrorReply>> {
    h.joins.room_url(&h.world, u, room, Instant::now())
}

fn index_of(h: &Harness, base: &str) -> usize {
    (1..=h.ids.len())
        .find(|n| url_of(*n) == base)
        .expect("known server")
}

#[actix_web::test]
async fn a_created_meeting_is_published_and_sessions_answer_like_the_coordinator() {
    let h = Harness::new(1).await;
    assert!(h.joins.is_empty());
    let first = h.join("r2").await;
    let target = published(&h, "r2").expect("published by the create");
    assert_eq!(Some(target.meeting_id.as_str()), first.get("meetingID"));
    // The session's answer and the coordinator's answer are the same URL.
    let u = alice();
    let from_session = warm(&h, &u, Some("r2")).expect("warm").expect("url").url;
    let from_coordinator = h
        .send(
            &u,
            BbbCommandKind::RoomUrl {
                room: Some("r2".into()),
            },
        )
        .await
        .expect("join");
    assert_eq!(from_coordinator["url"], from_session.as_str());
    assert_eq!(h.joins.served(), 1);
    assert_eq!(h.status().await.stats.joins_from_memory, 2);
    assert_eq!(h.fake.count(None, "create"), 1);
}

#[actix_web::test]
async fn failed_checks_are_answered_by_the_session_and_unpublished_rooms_go_to_the_coordinator() {
    let h = Harness::new(1).await;
    let u = alice();
    for (room, code) in [
        (Some("nope"), ErrorCode::RoomUnknown),
        (Some("chat"), ErrorCode::RoomUnknown),
        (None, ErrorCode::RoomUnknown),
    ] {
        let answer = warm(&h, &u, room).expect("answered");
        assert_eq!(answer.unwrap_err().code, code);
    }
    let nameless = user("bob", &["p"], None);
    assert_eq!(
        warm(&h, &nameless, Some("r2"))
            .expect("answered")
            .unwrap_err()
            .code,
        ErrorCode::BbbMissingProfile
    );
    let outsider = user("eve", &[], Some("Eve"));
    assert_eq!(
        warm(&h, &outsider, Some("r2"))
            .expect("answered")
            .unwrap_err()
            .code,
        ErrorCode::Denied
    );
    assert!(
        warm(&h, &u, Some("r2")).is_none(),
        "a meeting never created needs the coordinator"
    );
}

#[actix_web::test]
async fn a_poll_that_no_longer_lists_the_meeting_withdraws_it() {
    let h = Harness::new(1).await;
    h.join("r2").await;
    h.poll().await;
    assert!(
        published(&h, "r2").is_some(),
        "still listed: still published"
    );
    h.fake.with(&url_of(1), |s| s.meetings.clear());
    h.poll().await;
    assert!(published(&h, "r2").is_none());
    h.join("r2").await;
    assert_eq!(
        h.fake.count(None, "create"),
        2,
        "re-created, not a stale URL"
    );
}

#[actix_web::test]
async fn a_new_create_time_seen_by_a_poll_replaces_the_published_one() {
    let h = Harness::new(1).await;
    let first = h.join("r2").await;
    let mid = first.get("meetingID").unwrap().to_string();
    // Someone re-created the meeting on BBB: URLs with the old createTime are refused there.
    h.fake.with(&url_of(1), |s| {
        if let Some(m) = s.meetings.get_mut(&mid) {
            m.create_time += 1000;
        }
    });
    h.poll().await;
    let expected = h.fake.with(&url_of(1), |s| s.meetings[&mid].create_time);
    assert_eq!(
        published(&h, "r2").and_then(|t| t.create_time),
        Some(expected),
        "republished with the createTime the poll saw"
    );
    let again = h.join("r2").await;
    assert_eq!(again.get("createTime"), Some(expected.to_string().as_str()));
    assert_eq!(h.fake.count(None, "create"), 1);
}

#[actix_web::test]
async fn disabling_or_panicking_the_server_withdraws_its_meetings_only() {
    let h = Harness::new(2).await;
    let a = h.join("r2").await;
    let b = h.join("r1").await;
    let (ia, ib) = (index_of(&h, &a.base), index_of(&h, &b.base));
    h.set_state(h.ids[ia - 1], ServerState::Disabled).await;
    assert!(published(&h, "r2").is_none());
    assert_eq!(published(&h, "r1").is_some(), ia != ib);
    // Cordoning keeps existing meetings joinable, so nothing is withdrawn.
    h.set_state(h.ids[ia - 1], ServerState::Enabled).await;
    h.join("r2").await;
    h.join("r1").await;
    h.set_state(h.ids[ib - 1], ServerState::Cordoned).await;
    assert!(published(&h, "r1").is_some());
    let r1_server = published(&h, "r1").unwrap().server;
    h.addr
        .send(PanicServer { id: r1_server })
        .await
        .unwrap()
        .unwrap();
    assert!(published(&h, "r1").is_none());
}

#[actix_web::test]
async fn one_failed_contact_withdraws_the_servers_meetings_and_a_good_one_restores_trust() {
    let h = Harness::new(2).await;
    let first = h.join("r2").await;
    h.fake.set_fault(&first.base, Some(down()));
    h.poll().await;
    assert!(
        published(&h, "r2").is_none(),
        "one failed poll: not offline yet, but suspect"
    );
    h.fake.set_fault(&first.base, None);
    h.poll().await;
    let again = h.join("r2").await;
    assert_eq!(again.base, first.base, "still running there");
    assert!(published(&h, "r2").is_some());
    assert_eq!(h.fake.count(None, "create"), 1, "the poll re-confirmed it");
    assert!(h.published_violations().await.is_empty());
}

#[actix_web::test]
async fn a_rotated_secret_republishes_and_new_urls_are_signed_with_it() {
    let h = Harness::new(1).await;
    let before = h.join("r2").await;
    {
        let mut conn = h.db.get().unwrap();
        crate::with_conn!(&mut conn, |c| {
            diesel::connection::SimpleConnection::batch_execute(
                c,
                "UPDATE bbb_servers SET secret = 'rotated-secret'",
            )
        })
        .unwrap();
    }
    h.addr.send(ReloadServers).await.unwrap().unwrap();
    let target = published(&h, "r2").expect("republished at once");
    assert_eq!(target.endpoint.secret.expose(), "rotated-secret");
    let after = h.join("r2").await;
    assert_ne!(after.get("checksum"), before.get("checksum"));
    assert_eq!(h.fake.count(None, "create"), 1, "the meeting still runs");
    assert!(h.published_violations().await.is_empty());
}
