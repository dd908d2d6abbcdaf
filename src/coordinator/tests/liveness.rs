//! Meeting liveness through the actor: bounded trust (confirmations expire, are renewed in the
//! background, re-confirmed by one create), end callbacks, restarts that trust nothing, join
//! deadlines, and results of work that no longer applies (the panic-during-create race, the
//! re-create claim).

use std::time::Duration;

use futures_util::future::join_all;

use super::fake::down;
use super::*;
use crate::coordinator::{EndCallback, PanicServer};

fn alice() -> Arc<UserContext> {
    user("alice", &["p"], Some("Alice"))
}

fn published(h: &Harness, room: &str) -> Option<Arc<crate::join::Published>> {
    h.joins.get(MeetingKey::room("w", room).as_str())
}

/// Which harness server index (1-based) has `base`.
fn index_of(h: &Harness, base: &str) -> usize {
    (1..=h.ids.len())
        .find(|n| url_of(*n) == base)
        .expect("known server")
}

/// Delivers the end callback BBB makes when it ends `room`'s meeting on `base`.
async fn end_with_callback(h: &Harness, base: &str, room: &str) -> bool {
    let token = h
        .fake
        .end_with_callback(base, &h.meeting_id(room))
        .expect("the meeting ran there with a callback URL");
    let cb = callback_key().verify(&token).expect("a token of ours");
    h.addr
        .send(EndCallback {
            meeting_id: cb.meeting_id,
            issued_at: cb.issued_at,
        })
        .await
        .expect("coordinator")
}

#[actix_web::test]
async fn a_confirmation_past_the_ttl_is_renewed_by_one_create_with_its_create_time() {
    let h = Harness::new(1).await;
    let first = h.join("r2").await;
    assert!(published(&h, "r2").is_some());
    // BBB ended the meeting meanwhile and nobody told us.
    let mid = first.get("meetingID").unwrap().to_string();
    h.fake.with(&url_of(1), |s| {
        s.meetings.remove(&mid);
    });
    h.age(h.settings.confirm_ttl).await;
    assert!(
        published(&h, "r2").is_none_or(|p| !p.valid_at(Instant::now())),
        "sessions never answer from an expired entry"
    );
    // A crowd arrives: one create re-confirms, every join gets that create's createTime.
    let joins = (0..50).map(|i| {
        let h = &h;
        async move {
            h.room_url(&user(&format!("u{i}"), &["p"], Some("U")), "r2")
                .await
        }
    });
    let urls: Vec<JoinUrl> = join_all(joins)
        .await
        .iter()
        .map(|r| JoinUrl::parse(r.as_ref().expect("joined")))
        .collect();
    assert_eq!(h.fake.count(None, "create"), 2);
    let now_running = h.fake.with(&url_of(1), |s| s.meetings[&mid].create_time);
    assert!(urls
        .iter()
        .all(|u| u.get("createTime") == Some(now_running.to_string().as_str())));
    assert_ne!(first.get("createTime"), urls[0].get("createTime"));
    assert_eq!(h.status().await.stats.reconfirm_creates, 1);
    assert!(h.published_violations().await.is_empty());
}

#[actix_web::test]
async fn a_meeting_joined_past_half_its_ttl_is_re_confirmed_in_the_background() {
    let h = Harness::new(1).await;
    h.join("r2").await;
    let before = published(&h, "r2").expect("published").expires_at;
    h.age(h.settings.confirm_ttl / 2 + Duration::from_secs(1))
        .await;
    // Still answered from the table at once; the join asks for a re-confirmation.
    let answer = h
        .joins
        .room_url(&h.world, &alice(), Some("r2"), Instant::now())
        .expect("warm")
        .expect("url");
    assert!(answer.refresh);
    assert!(
        !h.joins
            .room_url(&h.world, &alice(), Some("r2"), Instant::now())
            .expect("warm")
            .expect("url")
            .refresh,
        "asked once"
    );
    // The session forwards that ask (as the harness does); the coordinator re-confirms in the
    // background.
    h.addr
        .send(RefreshMeeting {
            world: h.world.clone(),
            room: "r2".into(),
        })
        .await
        .expect("coordinator");
    wait_until("the meeting is re-confirmed", || {
        published(&h, "r2").is_some_and(|p| p.expires_at > before)
    })
    .await;
    assert_eq!(h.fake.count(None, "create"), 2, "one re-confirmation");
    assert!(h.published_violations().await.is_empty());
}

#[actix_web::test]
async fn an_end_callback_ends_the_meeting_and_the_next_join_creates_it_again() {
    let h = Harness::new(1).await;
    let first = h.join("r2").await;
    assert!(end_with_callback(&h, &first.base, "r2").await);
    assert!(published(&h, "r2").is_none(), "withdrawn at once");
    let again = h.join("r2").await;
    assert_eq!(h.fake.count(None, "create"), 2);
    assert_eq!(again.get("meetingID"), first.get("meetingID"));
    assert_ne!(again.get("createTime"), first.get("createTime"));
    let stats = h.status().await.stats;
    assert_eq!((stats.end_callbacks, stats.end_callbacks_refused), (1, 0));
    h.settle().await;
    let stored = {
        let mut conn = h.db.get().unwrap();
        crate::db::meetings::get(&mut conn, &MeetingKey::room("w", "r2"))
            .unwrap()
            .unwrap()
    };
    assert_eq!(stored.ended_at, None, "created again");
    assert!(h.published_violations().await.is_empty());
}

#[actix_web::test]
async fn stale_and_unknown_callbacks_change_nothing() {
    let h = Harness::new(1).await;
    let first = h.join("r2").await;
    let mid = first.get("meetingID").unwrap().to_string();
    // The first instance's callback URL, kept by BBB.
    let old_token = h.fake.with(&url_of(1), |s| s.callbacks[&mid].clone());
    let old = callback_key()
        .verify(old_token.rsplit('/').next().unwrap())
        .unwrap();
    assert!(end_with_callback(&h, &first.base, "r2").await);
    h.join("r2").await; // a new instance, started by a newer create
    h.settle().await;
    for (meeting_id, issued_at) in [
        (old.meeting_id.clone(), old.issued_at - 1),
        ("no-such-meeting".to_string(), old.issued_at),
    ] {
        let ended = h
            .addr
            .send(EndCallback {
                meeting_id,
                issued_at,
            })
            .await
            .unwrap();
        assert!(!ended);
    }
    assert!(published(&h, "r2").is_some(), "still running");
    assert_eq!(h.status().await.stats.end_callbacks_refused, 2);
    assert_eq!(h.fake.count(None, "create"), 2);
}

#[actix_web::test]
async fn a_restart_answers_nothing_from_the_database_before_bbb_confirms_it() {
    let mut h = Harness::new(1).await;
    let first = h.join("r2").await;
    let mid = first.get("meetingID").unwrap().to_string();
    // While the coordinator was down, BBB restarted and the meeting is gone.
    h.fake.with(&url_of(1), |s| s.meetings.clear());
    // Its first poll hangs: nothing confirms the stored meeting.
    h.fake
        .with(&url_of(1), |s| s.latency = Duration::from_millis(300));
    h.restart();
    assert!(published(&h, "r2").is_none());
    h.fake.with(&url_of(1), |s| s.latency = Duration::ZERO);
    let again = h.join("r2").await;
    assert_eq!(again.get("meetingID"), Some(mid.as_str()));
    assert!(h.fake.runs(&url_of(1), &mid), "created again, not trusted");
    let running = h.fake.with(&url_of(1), |s| s.meetings[&mid].create_time);
    assert_eq!(again.get("createTime"), Some(running.to_string().as_str()));
}

#[actix_web::test]
async fn a_kill_with_creates_in_flight_leaves_nothing_a_restart_would_trust() {
    let mut h = Harness::new(1).await;
    let gate = h.fake.hold_creates(&url_of(1));
    // The first joins' create is in flight (its placement already claimed) when the process
    // dies; the create then completes at BBB, with nobody to hear the answer.
    let old = h.addr.clone();
    let world = h.world.clone();
    actix::spawn(async move {
        let _ = old
            .send(BbbCommand {
                world,
                user: alice(),
                kind: BbbCommandKind::RoomUrl {
                    room: Some("r2".into()),
                },
                deadline: Instant::now() + Duration::from_secs(30),
            })
            .await;
    });
    wait_until("the create reached BBB", || {
        h.fake.count(None, "create") == 1
    })
    .await;
    h.addr.send(Kill).await.expect("coordinator");
    h.restart();
    drop(gate);
    let url = h.join("r2").await;
    let mid = url.get("meetingID").unwrap().to_string();
    let running = h.fake.with(&url_of(1), |s| s.meetings[&mid].create_time);
    assert_eq!(url.get("createTime"), Some(running.to_string().as_str()));
}

#[actix_web::test]
async fn a_panic_during_a_create_does_not_re_attach_the_meeting_to_the_panicked_server() {
    let h = Harness::new(2).await;
    // Server 2 busy: the new meeting goes to server 1.
    h.fake.with(&url_of(2), |s| {
        s.meetings.insert(
            "foreign".into(),
            crate::bbb::MeetingInfo {
                meeting_id: "foreign".into(),
                participant_count: 50,
                create_time: 1,
                ..Default::default()
            },
        )
    });
    h.poll().await;
    let gate = h.fake.hold_creates(&url_of(1));
    let join = {
        let addr = h.addr.clone();
        let world = h.world.clone();
        actix::spawn(async move {
            addr.send(BbbCommand {
                world,
                user: alice(),
                kind: BbbCommandKind::RoomUrl {
                    room: Some("r2".into()),
                },
                deadline: Instant::now() + Duration::from_secs(30),
            })
            .await
        })
    };
    wait_until("the create reached BBB", || {
        h.fake.count(Some(&url_of(1)), "create") == 1
    })
    .await;
    h.addr
        .send(PanicServer { id: h.ids[0] })
        .await
        .unwrap()
        .unwrap();
    gate.send(true).unwrap();
    let answer = join.await.unwrap().unwrap().expect("joined elsewhere");
    let url = JoinUrl::parse(&answer);
    assert_eq!(url.base, url_of(2), "not on the panicked server");
    h.settle().await;
    let mid = url.get("meetingID").unwrap();
    assert!(
        !h.fake.runs(&url_of(1), mid),
        "ended where it no longer belongs"
    );
    assert_eq!(h.stored_server("r2"), Some(h.ids[1]));
    assert_eq!(h.status().await.stats.results_discarded, 1);
    assert!(h.published_violations().await.is_empty());
}

#[actix_web::test]
async fn a_re_create_where_the_meeting_was_claims_it_and_follows_a_move_by_another_instance() {
    let h = Harness::new(2).await;
    let first = h.join("r2").await;
    let mid = first.get("meetingID").unwrap().to_string();
    let (here, there) = (index_of(&h, &first.base), 3 - index_of(&h, &first.base));
    // Another instance moved the meeting to the other server (stored and running there).
    {
        let mut conn = h.db.get().unwrap();
        let key = MeetingKey::room("w", "r2");
        crate::db::meetings::claim(
            &mut conn,
            &key,
            Some(h.ids[here - 1]),
            Some(h.ids[there - 1]),
            None,
            0,
        )
        .unwrap();
    }
    h.fake.with(&url_of(there), |s| {
        s.meetings.insert(
            mid.clone(),
            crate::bbb::MeetingInfo {
                meeting_id: mid.clone(),
                create_time: 777,
                ..Default::default()
            },
        )
    });
    h.age(h.settings.confirm_ttl).await;
    let url = h.join("r2").await;
    assert_eq!(url.base, url_of(there), "follows the stored placement");
    assert_eq!(url.get("createTime"), Some("777"));
    assert_eq!(
        h.fake.count(Some(&url_of(here)), "create"),
        1,
        "no re-create on the old server, which would split the meeting"
    );
}

/// Stores what another instance's successful create of `room`'s meeting on `server` records,
/// without telling this coordinator (as if its notice were still on the way). Its clock runs
/// 10 ms ahead, so its create counts as sent after this instance's own, even within one ms.
fn confirmed_elsewhere(h: &Harness, room: &str, server: ServerId, create_time: i64) {
    let mut conn = h.db.get().unwrap();
    let done = crate::db::meetings::Confirmation {
        server,
        create_time,
        sent_at: crate::db::now_ms() + 10,
        started: None,
    };
    crate::db::meetings::finish_create(
        &mut conn,
        &MeetingKey::room("w", room),
        "other",
        Some(done),
    )
    .unwrap();
}

#[actix_web::test]
async fn a_confirmation_another_instance_stored_is_taken_instead_of_a_second_create() {
    let h = Harness::new(1).await;
    let mid = h.join("r2").await.get("meetingID").unwrap().to_string();
    h.age(h.settings.confirm_ttl).await;
    let running = h.fake.with(&url_of(1), |s| s.meetings[&mid].create_time);
    confirmed_elsewhere(&h, "r2", h.ids[0], running);
    let again = h.join("r2").await;
    assert_eq!(
        h.fake.count(None, "create"),
        1,
        "the other instance's create confirmed it"
    );
    assert_eq!(again.get("createTime"), Some(running.to_string().as_str()));
    assert_eq!(h.status().await.stats.confirmations_taken_from_database, 1);
    // Past the TTL that confirmation is too old: the next join creates.
    h.age(h.settings.confirm_ttl).await;
    h.join("r2").await;
    assert_eq!(h.fake.count(None, "create"), 2);
    assert!(h.published_violations().await.is_empty());
}

#[actix_web::test]
async fn a_stored_confirmation_not_good_here_is_taken_once_then_the_join_creates() {
    let h = Harness::new(1).await;
    let first = h.join("r2").await;
    let mid = first.get("meetingID").unwrap().to_string();
    // One failed poll: the server is suspect here, so nothing on it is answered from memory.
    h.fake.set_fault(&first.base, Some(down()));
    h.poll().await;
    h.fake.set_fault(&first.base, None);
    let running = h.fake.with(&url_of(1), |s| s.meetings[&mid].create_time);
    confirmed_elsewhere(&h, "r2", h.ids[0], running);
    let again = h.join("r2").await;
    assert_eq!(again.base, first.base);
    assert_eq!(
        h.fake.count(None, "create"),
        2,
        "re-confirmed by this instance"
    );
    assert_eq!(h.status().await.stats.confirmations_taken_from_database, 1);
}

#[actix_web::test]
async fn every_request_is_answered_by_its_deadline() {
    let mut s = settings();
    s.request_timeout = Duration::from_secs(30);
    let h = Harness::with(3, s, 0).await;
    for n in 1..=3 {
        h.fake
            .with(&url_of(n), |s| s.latency = Duration::from_secs(20));
    }
    let started = Instant::now();
    let answer = h
        .addr
        .send(BbbCommand {
            world: h.world.clone(),
            user: alice(),
            kind: BbbCommandKind::RoomUrl {
                room: Some("r2".into()),
            },
            deadline: started + Duration::from_millis(500),
        })
        .await
        .unwrap();
    assert_eq!(answer.unwrap_err().code, ErrorCode::BbbFailed);
    // The deadline bounds every call made for it; far below three 20 s creates.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn a_server_that_fails_twice_is_left_at_once_and_trusted_again_after_a_good_contact() {
    let h = Harness::new(2).await;
    let a = h.join("r1").await;
    let dead = index_of(&h, &a.base);
    h.fake.set_fault(&url_of(dead), Some(down()));
    h.poll().await; // one failure: suspect
    h.age(h.settings.confirm_ttl).await;
    // The re-confirming create fails too: moved within the same request.
    let moved = h.join("r1").await;
    assert_eq!(moved.base, url_of(3 - dead));
    assert_eq!(h.fake.count(Some(&url_of(dead)), "create"), 2);
    // The dead server is back; a good poll makes it trusted again.
    h.fake.set_fault(&url_of(dead), None);
    h.poll().await;
    assert!(h.status().await.servers.iter().all(|s| !s.suspect));
}
