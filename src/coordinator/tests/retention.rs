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
