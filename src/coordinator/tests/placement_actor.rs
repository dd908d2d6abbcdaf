//! Placement through the actor: load, states, exclusivity, prefer_server, bursts, failover and
//! FAILED answers.

use std::time::Duration;

use futures_util::future::join_all;

use super::fake::down;
use super::*;
use crate::bbb::{BbbError, MeetingInfo};
use crate::db::servers::ServerState;

fn busy(h: &Harness, n: usize, participants: u32) {
    h.fake.with(&url_of(n), |s| {
        s.meetings.insert(
            format!("foreign-{n}"),
            MeetingInfo {
                meeting_id: format!("foreign-{n}"),
                participant_count: participants,
                create_time: 1,
                ..Default::default()
            },
        );
    });
}

async fn set_state(h: &Harness, n: usize, state: ServerState) {
    h.set_state(h.ids[n - 1], state).await;
}

#[actix_web::test]
async fn new_meetings_go_to_the_least_loaded_enabled_server() {
    let h = Harness::new(3).await;
    busy(&h, 1, 100);
    busy(&h, 3, 50);
    h.poll().await;
    assert_eq!(h.join("r1").await.base, url_of(2));
    // Server 2 cordoned: it keeps r1 (running) but gets no new meeting.
    set_state(&h, 2, ServerState::Cordoned).await;
    assert_eq!(h.join("r2").await.base, url_of(3));
    assert_eq!(h.join("r1").await.base, url_of(2));
    // Disabled: nothing new either.
    set_state(&h, 3, ServerState::Disabled).await;
    assert_eq!(h.join("pref").await.base, url_of(1));
}

#[actix_web::test]
async fn states_weights_and_no_eligible_server() {
    let h = Harness::with(3, settings(), 3).await;
    busy(&h, 1, 100);
    busy(&h, 2, 60);
    h.poll().await;
    set_state(&h, 3, ServerState::Disabled).await;
    assert_eq!(h.join("room0").await.base, url_of(2));
    // Weight 2 makes server 2 look busier than server 1 (120 + … > 110 + …).
    {
        let mut conn = h.db.get().unwrap();
        crate::db::servers::set_weight(&mut conn, h.ids[1], 2.0).unwrap();
    }
    h.poll().await;
    assert_eq!(h.join("room1").await.base, url_of(1));
    set_state(&h, 1, ServerState::Cordoned).await;
    set_state(&h, 2, ServerState::Disabled).await;
    let err = h
        .room_url(&user("a", &["p"], Some("A")), "room2")
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BbbFailed);
    assert_eq!(
        err.message.as_deref(),
        Some("every BBB server of this world is cordoned or disabled")
    );
}

#[actix_web::test]
async fn no_server_at_all_is_bbb_failed_with_a_message() {
    let h = Harness::new(0).await;
    let err = h
        .room_url(&user("a", &["p"], Some("A")), "r2")
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BbbFailed);
    assert_eq!(
        err.message.as_deref(),
        Some("no BBB server is configured for this world")
    );
}

#[actix_web::test]
async fn exclusive_servers_and_prefer_server() {
    let mut h = Harness::new(2).await;
    busy(&h, 1, 200);
    busy(&h, 2, 300);
    let own = h.add_server("https://own.test/bigbluebutton", Some("w"));
    let foreign = h.add_server("https://foreign.test/bigbluebutton", Some("other"));
    h.poll().await;
    let status = h.status().await;
    assert_eq!(status.servers.len(), 4);
    assert!(status
        .servers
        .iter()
        .any(|s| s.id == own && s.world.as_deref() == Some("w")));
    assert_eq!(h.join("r1").await.base, "https://own.test/bigbluebutton");
    // The other world's idle server is never used for this world.
    assert_eq!(h.join("r2").await.base, "https://own.test/bigbluebutton");
    // `pref` prefers server 2 (by URL) although it is the busiest.
    assert_eq!(h.join("pref").await.base, url_of(2));
    assert_eq!(
        h.fake
            .count(Some("https://foreign.test/bigbluebutton"), "create"),
        0
    );
    assert!(h
        .status()
        .await
        .servers
        .iter()
        .any(|s| s.id == foreign && s.meetings_placed == 0));
}

#[actix_web::test]
async fn a_burst_of_100_new_meetings_spreads_over_4_servers() {
    let h = Harness::with(4, settings(), 100).await;
    for i in 1..=4 {
        h.fake
            .with(&url_of(i), |s| s.latency = Duration::from_millis(20));
    }
    let started = std::time::Instant::now();
    let joins = (0..100).map(|i| {
        let h = &h;
        async move { h.join(&format!("room{i}")).await }
    });
    let urls = join_all(joins).await;
    eprintln!("100 concurrent new meetings: {:?}", started.elapsed());
    for i in 1..=4 {
        let n = urls.iter().filter(|u| u.base == url_of(i)).count();
        assert!((23..=27).contains(&n), "server {i} got {n} of 100");
    }
    // The next poll sees them; the reservations are gone and the load took over.
    h.poll().await;
    let status = h.status().await;
    assert!(status
        .servers
        .iter()
        .all(|s| s.reserved == 0 && s.meetings >= 23));
}

#[actix_web::test]
async fn a_create_on_a_dead_server_fails_over_to_the_next_best() {
    let h = Harness::new(3).await;
    busy(&h, 2, 50);
    busy(&h, 3, 100);
    h.poll().await;
    h.fake.set_fault(&url_of(1), Some(down()));
    let url = h.join("r2").await;
    assert_eq!(url.base, url_of(2));
    assert_eq!(h.fake.creates(), vec![url_of(1), url_of(2)]);
    assert_eq!(h.stored_server("r2"), Some(h.ids[1]));
    let status = h.status().await;
    assert!(status.servers[0].suspect && status.servers[0].online);
    assert_eq!(status.stats.create_failures, 1);
    // While suspect, server 1 gets no new meetings although it is the emptiest.
    assert_eq!(h.join("r1").await.base, url_of(2));
    // The placement history keeps both servers (recordings are looked up on both).
    let mut conn = h.db.get().unwrap();
    let mid = url.get("meetingID").unwrap();
    let mut ever = crate::db::meetings::servers_ever(&mut conn, mid).unwrap();
    ever.sort();
    assert_eq!(ever, vec![h.ids[0], h.ids[1]]);
}

#[actix_web::test]
async fn failover_is_bounded_by_create_retry_servers() {
    let h = Harness::new(4).await;
    for i in 1..=4 {
        h.fake.set_fault(&url_of(i), Some(BbbError::Timeout));
    }
    let err = h
        .room_url(&user("a", &["p"], Some("A")), "r2")
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BbbFailed);
    // 1 + create_retry_servers (2) attempts.
    assert_eq!(h.fake.count(None, "create"), 3);
    let msg = err.message.unwrap_or_default();
    assert!(
        !msg.contains("secret") && !msg.contains("checksum") && !msg.contains("http"),
        "{msg}"
    );
}

#[actix_web::test]
async fn a_failed_answer_to_a_bad_request_is_not_retried() {
    let h = Harness::new(2).await;
    for i in 1..=2 {
        h.fake.with(&url_of(i), |s| {
            s.create_error = Some(BbbError::Failed {
                message_key: "invalidMeetingIdentifier".into(),
                message: "bad".into(),
            })
        });
    }
    let err = h
        .room_url(&user("a", &["p"], Some("A")), "r2")
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BbbFailed);
    assert_eq!(h.fake.count(None, "create"), 1);
    assert!(h.status().await.servers.iter().all(|s| !s.suspect));
}

#[actix_web::test]
async fn reservations_announced_by_other_instances_count_in_placement() {
    let h = Harness::new(2).await;
    // Another instance placed a meeting for 800 people on server 1 a moment ago.
    let elsewhere = crate::db::reservations::SharedReservation {
        server: h.ids[0],
        meeting_id: "placed-elsewhere".into(),
        expected: 800,
        placed_at: crate::db::now_ms(),
    };
    let elsewhere_again = elsewhere.clone();
    h.addr
        .send(crate::coordinator::RemoteChange(
            crate::db::changes::Change::Reserved(elsewhere),
        ))
        .await
        .expect("coordinator");
    let status = h.status().await;
    let first = status.servers.iter().find(|s| s.id == h.ids[0]).unwrap();
    assert_eq!((first.reserved, first.reserved_participants), (1, 800));
    // Every new meeting goes to the other server while the reservation stands.
    for room in ["r1", "r2", "pref"] {
        let join = h.join(room).await;
        assert_eq!(join.base, url_of(2), "{room}");
    }
    // A poll that does not list the meeting keeps the reservation while the other instance's
    // create may still be on its way (up to the BBB call timeout), and drops it after that.
    h.poll().await;
    let status = h.status().await;
    let first = status.servers.iter().find(|s| s.id == h.ids[0]).unwrap();
    assert_eq!(first.reserved_participants, 800);
    let timeout_ms = i64::try_from(h.settings.request_timeout.as_millis()).unwrap();
    let long_ago = crate::db::reservations::SharedReservation {
        placed_at: crate::db::now_ms() - timeout_ms - 1,
        ..elsewhere_again
    };
    h.addr
        .send(crate::coordinator::RemoteChange(
            crate::db::changes::Change::Reserved(long_ago),
        ))
        .await
        .expect("coordinator");
    h.poll().await;
    let status = h.status().await;
    let first = status.servers.iter().find(|s| s.id == h.ids[0]).unwrap();
    assert_eq!(first.reserved_participants, 0);
}
