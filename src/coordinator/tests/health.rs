//! Health: thresholds, offline servers losing their meetings, ending moved meetings when the old
//! server answers again, and registry changes while running.

use std::time::Duration;

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
async fn an_offline_server_loses_its_meetings_and_they_end_there_when_it_is_back() {
    let h = Harness::new(2).await;
    let first = h.join("r2").await;
    let mid = first.get("meetingID").unwrap().to_string();
    let (dead, dead_id) = if first.base == url_of(1) {
        (url_of(1), h.ids[0])
    } else {
        (url_of(2), h.ids[1])
    };
    h.fake.set_fault(&dead, Some(down()));
    // One failed poll: still online, the meeting is still joined there from memory.
    h.poll().await;
    assert_eq!(h.join("r2").await.base, dead);
    h.poll().await;
    let status = h.status().await;
    let s = status.servers.iter().find(|s| s.id == dead_id).unwrap();
    assert!(!s.online);
    assert_eq!(s.meetings_placed, 0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.stored_server("r2"), None);
    // The next join re-creates the meeting (same id) on the healthy server.
    let moved = h.join("r2").await;
    assert_ne!(moved.base, dead);
    assert_eq!(moved.get("meetingID"), Some(mid.as_str()));
    assert_eq!(h.fake.count(None, "create"), 2);
    // The dead server answers again: the meeting it still runs is ended there, not on the target.
    h.fake.set_fault(&dead, None);
    assert!(h.fake.runs(&dead, &mid));
    h.poll().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!h.fake.runs(&dead, &mid));
    assert!(h.fake.runs(&moved.base, &mid));
    assert_eq!(h.fake.count(Some(&moved.base), "end"), 0);
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
    let mut stored = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let mut conn = h.db.get().unwrap();
        let rows = crate::db::server_status::load_all(&mut conn).unwrap();
        assert_eq!(rows.len(), 2);
        stored = rows.values().map(|r| r.meetings).sum::<i32>();
        if stored == 1 {
            break;
        }
    }
    assert_eq!(stored, 1);
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
        let mut conn = h.db.get().unwrap();
        crate::db::meetings::place(&mut conn, "room:w:r2", there_id, None).unwrap();
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
    tokio::time::sleep(Duration::from_millis(100)).await;
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
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!h.fake.runs(&here, &mid));
    assert!(h.fake.runs(&there, &mid));
    assert_eq!(h.join("r2").await.base, there);
}
