//! Capacity through the actor: a keynote and its breakouts over servers with a capacity,
//! reservations that decay as polls show people arriving, both overflow policies, and an ended
//! meeting that no longer fits where it was.

use futures_util::future::join_all;

use super::*;
use crate::bbb::MeetingInfo;
use crate::coordinator::placement::{Overflow, SERVERS_FULL};
use crate::coordinator::{ServerStatus, SetServerCapacity};

/// A world with a `keynote` room expecting `keynote` participants and `breakouts` rooms
/// `b0`… that take the world's default of `breakout` participants.
fn conference(keynote: u32, breakouts: usize, breakout: u32) -> Arc<WorldSnapshot> {
    let mut rooms = vec![json!({"id": "keynote", "name": "Keynote", "modules": [
        {"type": "call.bigbluebutton", "config": {"expected_participants": keynote}}]})];
    for i in 0..breakouts {
        rooms.push(
            json!({"id": format!("b{i}"), "name": format!("Breakout {i}"),
            "modules": [{"type": "call.bigbluebutton", "config": {}}]}),
        );
    }
    let file = json!({
        "id": "w", "title": "W", "timezone": "Europe/Berlin",
        "jwt_secrets": [{"issuer": "any", "audience": "venueless", "secret": "0123456789abcdef0123456789abcdef"}],
        "trait_grants": {"viewer": [], "participant": ["p"]},
        "bbb_defaults": {"expected_participants": breakout},
        "rooms": rooms,
    });
    let file = crate::world::parse_world_file(&file.to_string()).expect("test world");
    Arc::new(WorldSnapshot::from_file(&file, 1).expect("test world snapshot"))
}

/// `n` servers that carry `capacity` participants each, and a conference world.
async fn fleet(n: usize, capacity: u32, overflow: Overflow, world: Arc<WorldSnapshot>) -> Harness {
    let mut s = settings();
    s.placement_overflow = overflow;
    let mut h = Harness::with(n, s, 0).await;
    h.world = world;
    for id in h.ids.clone() {
        h.set_capacity(id, Some(capacity)).await;
    }
    h
}

impl Harness {
    async fn set_capacity(&self, id: ServerId, capacity: Option<u32>) {
        self.addr
            .send(SetServerCapacity { id, capacity })
            .await
            .expect("coordinator")
            .expect("known server");
    }

    async fn server(&self, base: &str) -> ServerStatus {
        self.status()
            .await
            .servers
            .into_iter()
            .find(|s| s.url == base)
            .expect("a server with that URL")
    }
}

#[actix_web::test]
async fn the_keynote_gets_a_server_of_its_own_and_breakouts_fill_the_others() {
    let h = fleet(4, 500, Overflow::LeastFull, conference(800, 100, 20)).await;
    let keynote = h.join("keynote").await.base;
    let joins = (0..100).map(|i| {
        let h = &h;
        async move { h.join(&format!("b{i}")).await.base }
    });
    let breakouts = join_all(joins).await;
    assert_eq!(
        breakouts.iter().filter(|b| **b == keynote).count(),
        0,
        "no breakout goes next to the keynote while its reservation stands"
    );
    let status = h.status().await;
    // The keynote fits nowhere (800 > 500) and 25 breakouts find no room either.
    assert_eq!(status.stats.placements_over_capacity, 1 + 25);
    for s in &status.servers {
        assert_eq!(s.capacity, Some(500));
        if s.url == keynote {
            assert_eq!((s.occupancy, s.headroom), (800, Some(-300)));
        } else {
            // 25 breakouts each, then the overflow spread over the least full.
            assert!((660..=680).contains(&s.occupancy), "{s:?}");
            assert_eq!(s.reserved_participants as u64, s.occupancy);
        }
    }
    // The poll sees the meetings, still empty: they keep their expected sizes.
    h.poll().await;
    let k = h.server(&keynote).await;
    assert_eq!((k.reserved, k.occupancy), (0, 800));
    assert!(h.published_violations().await.is_empty());
}

#[actix_web::test]
async fn a_reservation_decays_as_people_arrive() {
    let h = fleet(2, 500, Overflow::LeastFull, conference(400, 4, 150)).await;
    let url = h.join("keynote").await;
    let (keynote, other) = if url.base == url_of(1) {
        (url_of(1), url_of(2))
    } else {
        (url_of(2), url_of(1))
    };
    let meeting = h.meeting_id("keynote");
    assert_eq!(h.server(&keynote).await.occupancy, 400);
    // 150 more do not fit next to the 400 expected.
    assert_eq!(h.join("b0").await.base, other);
    // 300 have arrived: the keynote still holds 400 places.
    h.fake.set_participants(&keynote, &meeting, 300, 0);
    h.poll().await;
    let k = h.server(&keynote).await;
    assert_eq!((k.participants, k.occupancy), (300, 400));
    assert_eq!(h.join("b1").await.base, other);
    // 450 arrived: the reservation is used up, the real size counts.
    h.fake.set_participants(&keynote, &meeting, 450, 0);
    h.poll().await;
    let k = h.server(&keynote).await;
    assert_eq!(
        (k.participants, k.occupancy, k.headroom),
        (450, 450, Some(50))
    );
    // The other server holds two breakouts (300 of 500): b2 still fits there only.
    assert_eq!(h.join("b2").await.base, other);
    assert!(h.published_violations().await.is_empty());
}

#[actix_web::test]
async fn the_refuse_policy_answers_that_the_video_servers_are_full() {
    let h = fleet(2, 100, Overflow::Refuse, conference(80, 2, 80)).await;
    let first = h.join("keynote").await.base;
    let second = h.join("b0").await.base;
    assert_ne!(first, second);
    let err = h
        .room_url(&user("alice", &["p"], Some("Alice")), "b1")
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BbbFailed);
    assert_eq!(err.message.as_deref(), Some(SERVERS_FULL));
    assert_eq!(h.status().await.stats.placements_refused_full, 1);
    assert_eq!(
        h.fake.count(None, "create"),
        2,
        "nothing was created for b1"
    );
    // Lifting one server's limit makes room at once.
    h.set_capacity(h.ids[0], None).await;
    assert_eq!(h.join("b1").await.base, url_of(1));
    let status = h.status().await;
    assert_eq!(status.servers[0].capacity, None);
    assert_eq!(status.servers[0].headroom, None);
}

#[actix_web::test]
async fn the_least_full_policy_places_and_counts_the_overflow() {
    let h = fleet(2, 100, Overflow::LeastFull, conference(80, 2, 70)).await;
    h.join("keynote").await;
    h.join("b0").await;
    // 70 fit nowhere: the server with 30 left (the breakout's) takes it.
    let b1 = h.join("b1").await.base;
    let s = h.server(&b1).await;
    assert_eq!((s.occupancy, s.headroom), (140, Some(-40)));
    assert_eq!(h.status().await.stats.placements_over_capacity, 1);
}

#[actix_web::test]
async fn an_ended_meeting_starts_again_elsewhere_when_its_server_is_full() {
    let h = fleet(2, 100, Overflow::LeastFull, conference(60, 0, 10)).await;
    let first = h.join("keynote").await.base;
    let other = if first == url_of(1) {
        url_of(2)
    } else {
        url_of(1)
    };
    let meeting = h.meeting_id("keynote");
    // The meeting ends (nobody came) and another crowd fills its server.
    h.fake.with(&first, |s| {
        s.meetings.remove(&meeting);
        s.meetings.insert(
            "foreign".into(),
            MeetingInfo {
                meeting_id: "foreign".into(),
                participant_count: 90,
                create_time: 1,
                ..Default::default()
            },
        );
    });
    h.poll().await;
    assert_eq!(h.server(&first).await.occupancy, 90);
    // 60 do not fit next to 90: the keynote starts on the other server.
    assert_eq!(h.join("keynote").await.base, other);
    assert_eq!(
        h.stored_server("keynote"),
        Some(h.ids[if other == url_of(1) { 0 } else { 1 }])
    );
    assert_eq!(h.server(&other).await.occupancy, 60);
    assert!(h.published_violations().await.is_empty());
}
