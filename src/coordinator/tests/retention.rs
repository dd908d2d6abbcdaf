//! Retention in the coordinator: a pass deletes what has been idle past `retention.days`, and the
//! coordinator forgets it in memory too, so nothing deleted is still answered.

use super::*;
use crate::coordinator::{PurgeNow, PurgeReport};
use crate::db::DbConn;
use diesel::RunQueryDsl;

/// Makes the stored meetings and calls look `days` old.
fn age_rows(h: &Harness, days: i64) {
    let then = crate::db::now_ms() - days * 86_400_000;
    let mut conn = h.db.get().expect("db");
    let DbConn::Sqlite(c) = &mut conn else {
        panic!("coordinator tests run on SQLite");
    };
    for sql in [
        format!("UPDATE meetings SET updated_at = {then}, created_at = {then}"),
        format!("UPDATE calls SET created_at = {then}"),
    ] {
        diesel::sql_query(sql).execute(&mut **c).expect("age rows");
    }
}

#[actix_web::test]
async fn an_idle_call_is_deleted_and_no_longer_answered() {
    let h = Harness::new(1).await;
    let alice = user("alice", &["p"], Some("Alice"));
    let call = {
        let mut conn = h.db.get().expect("db");
        // The world is stored, as in a deployment: its rooms' meetings are not orphans.
        crate::world::import_world(&mut conn, &world_file(0)).expect("world");
        crate::db::calls::create_call(&mut conn, "w", &["alice".into()]).expect("call")
    };
    let kind = || BbbCommandKind::CallUrl {
        call: Some(call.clone()),
    };
    h.send(&alice, kind()).await.expect("the call joins");
    h.room_url(&alice, "r2").await.expect("the room joins");
    h.settle().await;

    // Young rows are kept.
    let nothing = h.addr.send(PurgeNow).await.expect("coordinator");
    assert_eq!(nothing, PurgeReport::default());
    h.send(&alice, kind()).await.expect("still joins");

    age_rows(&h, 31);
    let report = h.addr.send(PurgeNow).await.expect("coordinator");
    // The call and its meeting go; the room's meeting stays, its room still exists.
    assert_eq!(
        report,
        PurgeReport {
            meetings: 1,
            calls: 1,
            users: 0
        }
    );
    assert!(h.joins.get(MeetingKey::call(&call).as_str()).is_none());
    assert_eq!(
        h.send(&alice, kind()).await.map_err(|e| e.code),
        Err(ErrorCode::Denied)
    );
    h.room_url(&alice, "r2")
        .await
        .expect("the room still joins");
    assert!(h.published_violations().await.is_empty());
}

#[actix_web::test]
async fn meetings_ended_long_ago_leave_memory_and_come_back_from_the_database() {
    let h = Harness::new(1).await;
    let alice = user("alice", &["p"], Some("Alice"));
    let first = h.room_url(&alice, "r2").await.expect("joins");
    let meeting_id = h.meeting_id("r2");
    let token = h
        .fake
        .end_with_callback(&url_of(1), &meeting_id)
        .expect("it ran with a callback URL");
    let cb = callback_key().verify(&token).expect("a token of ours");
    let ended = h
        .addr
        .send(crate::coordinator::EndCallback {
            meeting_id: cb.meeting_id,
            issued_at: cb.issued_at,
        })
        .await
        .expect("coordinator");
    assert!(ended);
    h.settle().await;
    let known = h.status().await.meetings_known;
    // Not yet: it ended a moment ago.
    h.addr.send(ForgetEnded).await.expect("coordinator");
    assert_eq!(h.status().await.meetings_known, known);
    h.age(crate::coordinator::retention::ENDED_KEPT).await;
    h.addr.send(ForgetEnded).await.expect("coordinator");
    assert_eq!(h.status().await.meetings_known, known - 1);
    // The next join reads it back and creates the same meeting again.
    let again = h.room_url(&alice, "r2").await.expect("joins again");
    let id = |v: &serde_json::Value| {
        let url = v["url"].as_str().expect("a url").to_string();
        url::Url::parse(&url)
            .expect("a url")
            .query_pairs()
            .find(|(k, _)| k == "meetingID")
            .map(|(_, v)| v.to_string())
    };
    assert_eq!(id(&again), id(&first));
    assert_eq!(h.fake.count(None, "create"), 2);
}

/// Runs the coordinator's forgetting of long-ended meetings now (the poll tick does it).
struct ForgetEnded;

impl Message for ForgetEnded {
    type Result = ();
}

impl Handler<ForgetEnded> for BbbCoordinator {
    type Result = ();

    fn handle(&mut self, _msg: ForgetEnded, _ctx: &mut Self::Context) {
        self.forget_long_ended();
    }
}
