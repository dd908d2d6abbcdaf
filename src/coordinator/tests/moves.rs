//! Operator moves of a room's meeting: checked targets, the create on the target before the end
//! on the old server, and nothing lost when the target fails.

use super::fake::down;
use super::*;
use crate::coordinator::{MoveError, MoveRoom};
use crate::db::servers::ServerState;

async fn move_room(
    h: &Harness,
    room: &str,
    server: ServerId,
) -> Result<crate::coordinator::Moved, MoveError> {
    h.addr
        .send(MoveRoom {
            world: h.world.clone(),
            room: room.into(),
            server,
        })
        .await
        .expect("coordinator")
}

fn index_of(h: &Harness, base: &str) -> usize {
    (1..=h.ids.len())
        .find(|n| url_of(*n) == base)
        .expect("known server")
}

#[actix_web::test]
async fn a_move_creates_on_the_target_first_then_ends_on_the_old_server() {
    let h = Harness::new(2).await;
    let first = h.join("r2").await;
    let old = index_of(&h, &first.base);
    let target = 3 - old;
    let mid = first.get("meetingID").unwrap().to_string();
    let moved = move_room(&h, "r2", h.ids[target - 1]).await.expect("moved");
    assert_eq!(
        (moved.from, moved.to),
        (Some(h.ids[old - 1]), h.ids[target - 1])
    );
    h.settle().await;
    // Created on the target, ended on the old server; the calls came in that order.
    let calls = h.fake.0.borrow().calls.clone();
    let created = calls
        .iter()
        .position(|(u, c, m)| u == &url_of(target) && c == "create" && m == &mid)
        .expect("a create on the target");
    let ended = calls
        .iter()
        .position(|(u, c, m)| u == &url_of(old) && c == "end" && m == &mid)
        .expect("an end on the old server");
    assert!(created < ended);
    assert!(h.fake.runs(&url_of(target), &mid) && !h.fake.runs(&url_of(old), &mid));
    let after = h.join("r2").await;
    assert_eq!(after.base, url_of(target));
    assert_eq!(after.get("meetingID"), Some(mid.as_str()));
    assert_eq!(h.stored_server("r2"), Some(h.ids[target - 1]));
    assert!(h.published_violations().await.is_empty());
}

#[actix_web::test]
async fn a_failed_create_on_the_target_leaves_the_meeting_where_it_was() {
    let h = Harness::new(2).await;
    let first = h.join("r2").await;
    let old = index_of(&h, &first.base);
    let target = 3 - old;
    h.fake.with(&url_of(target), |s| {
        s.create_error = Some(down());
    });
    let err = move_room(&h, "r2", h.ids[target - 1]).await.unwrap_err();
    assert!(matches!(err, MoveError::Failed(_)), "{err:?}");
    h.settle().await;
    let mid = first.get("meetingID").unwrap();
    assert!(h.fake.runs(&url_of(old), mid), "not ended where it runs");
    assert_eq!(h.fake.count(Some(&url_of(old)), "end"), 0);
    h.fake.with(&url_of(target), |s| s.create_error = None);
    assert_eq!(h.join("r2").await.base, url_of(old));
    // The stored placement is back where the meeting runs, so polls leave it there.
    assert_eq!(h.stored_server("r2"), Some(h.ids[old - 1]));
    h.poll().await;
    h.settle().await;
    assert!(h.fake.runs(&url_of(old), mid), "still running where it was");
    assert_eq!(h.fake.count(Some(&url_of(old)), "end"), 0);
    assert_eq!(h.join("r2").await.base, url_of(old));
}

#[actix_web::test]
async fn unusable_targets_are_refused_naming_why() {
    let mut h = Harness::new(3).await;
    h.join("r2").await;
    h.set_state(h.ids[1], ServerState::Cordoned).await;
    let err = move_room(&h, "r2", h.ids[1]).await.unwrap_err();
    assert!(
        matches!(&err, MoveError::Refused(m) if m.contains("cordoned")),
        "{err:?}"
    );
    h.fake.set_fault(&url_of(3), Some(down()));
    h.poll().await;
    let err = move_room(&h, "r2", h.ids[2]).await.unwrap_err();
    assert!(
        matches!(&err, MoveError::Refused(m) if m.contains("failed")),
        "{err:?}"
    );
    let exclusive = h.add_server("https://other.test/bigbluebutton", Some("other"));
    h.poll().await;
    let err = move_room(&h, "r2", exclusive).await.unwrap_err();
    assert!(
        matches!(&err, MoveError::Refused(m) if m.contains("other")),
        "{err:?}"
    );
    assert_eq!(
        move_room(&h, "r2", ServerId::new(999)).await.unwrap_err(),
        MoveError::UnknownServer(ServerId::new(999))
    );
    assert!(matches!(
        move_room(&h, "chat", h.ids[0]).await.unwrap_err(),
        MoveError::UnknownRoom(_)
    ));
}
