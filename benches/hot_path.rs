//! Micro-benchmarks of the join hot path: the permission check on a realistic
//! world, placement over 100 servers carrying 10,000 meetings, and building + signing a join
//! URL. Run with `cargo bench --bench hot_path`.

use std::hint::black_box;

use bbb_bench::world;
use bbb_gateway::bbb::{ChecksumAlgorithm, MeetingInfo, Secret, ServerEndpoint};
use bbb_gateway::coordinator::placement::{self, Candidate};
use bbb_gateway::db::servers::ServerState;
use bbb_gateway::ids::ServerId;
use bbb_gateway::join::{checks, params, warm_join, JoinTarget, Published};
use bbb_gateway::permissions::{Moderation, Permission, Subject};
use bbb_gateway::user::{Profile, UserContext};
use bbb_gateway::world::room_permissions;
use bbb_gateway::world::{parse_world_file, WorldSnapshot};
use criterion::{criterion_group, criterion_main, Criterion};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn snapshot() -> WorldSnapshot {
    let file = parse_world_file(&world::bench_world(500).to_string()).expect("bench world");
    WorldSnapshot::from_file(&file, 1).expect("bench world compiles")
}

fn user() -> UserContext {
    UserContext {
        id: "7d9f3c2e-0c1a-4f7e-9a51-3f2b8c6d1e42".into(),
        world_id: world::WORLD.into(),
        uid: Some("orga7".into()),
        traits: vec!["attendee".into(), "track-3".into(), "de".into()],
        profile: Profile {
            display_name: Some("Ada Lovelace: Keynote".into()),
            avatar_url: Some("https://cdn.example.org/avatars/ada.png".into()),
        },
        moderation: Moderation::None,
    }
}

fn permission_check(c: &mut Criterion) {
    let w = snapshot();
    let u = user();
    let room = w.room(&world::warm_room(7)).expect("room_7").clone();
    c.bench_function("room_permissions (500-room world, explicit grant)", |b| {
        b.iter(|| {
            let s: Subject = black_box(&u).subject();
            room_permissions(black_box(&w), black_box(&room), &s).contains(Permission::RoomBbbJoin)
        })
    });
}

/// 100 servers, 10,000 meetings (100 each, varied sizes), as the poller would see them.
fn fleet() -> Vec<Candidate> {
    let now = 1_700_000_000_000i64;
    (0..100)
        .map(|id| {
            let meetings: Vec<MeetingInfo> = (0..100)
                .map(|m| MeetingInfo {
                    participant_count: ((id * 7 + m * 13) % 60) as u32,
                    voice_participant_count: ((id + m) % 20) as u32,
                    video_count: (m % 5) as u32,
                    create_time: now - i64::from(m) * 60_000,
                    ..Default::default()
                })
                .collect();
            Candidate {
                id: ServerId::new(id),
                url: format!("https://bbb{id}.example.org/bigbluebutton"),
                state: ServerState::Enabled,
                online: true,
                suspect: id % 17 == 0,
                world_id: None,
                weight: 1.0 + f64::from(id % 3) * 0.5,
                load: placement::server_load(&meetings, now),
                occupancy: meetings.iter().map(|m| m.participant_count).sum(),
                reserved: (id % 4) as u32,
                reserved_participants: (id % 4) as u32 * 20,
                // Half the fleet has a capacity, so both rankings are exercised.
                capacity: (id % 2 == 0).then_some(5_000),
            }
        })
        .collect()
}

fn placement_choice(c: &mut Criterion) {
    let candidates = fleet();
    let mut rng = StdRng::seed_from_u64(1);
    let demand = placement::Demand {
        world: "bench",
        prefer: None,
        exclude: &[],
        participants: 20,
        overflow: placement::Overflow::LeastFull,
    };
    c.bench_function("placement::choose (100 servers, 10k meetings)", |b| {
        b.iter(|| placement::choose(black_box(&candidates), &demand, &mut rng).expect("a server"))
    });
    let now = 1_700_000_000_000i64;
    let meetings: Vec<MeetingInfo> = (0..10_000)
        .map(|m| MeetingInfo {
            participant_count: (m % 60) as u32,
            voice_participant_count: (m % 20) as u32,
            video_count: (m % 5) as u32,
            create_time: now - i64::from(m) * 1000,
            ..Default::default()
        })
        .collect();
    c.bench_function("placement::server_load (10k meetings)", |b| {
        b.iter(|| placement::server_load(black_box(&meetings), now))
    });
}

fn join_url_signing(c: &mut Criterion) {
    let w = snapshot();
    let u = user();
    let room = w.room(&world::warm_room(7)).expect("room_7").clone();
    let bbb = room.bbb.clone().expect("a BBB room");
    for algo in [ChecksumAlgorithm::Sha1, ChecksumAlgorithm::Sha256] {
        let target = JoinTarget {
            server: ServerId::new(3),
            endpoint: ServerEndpoint {
                base_url: "https://bbb3.example.org/bigbluebutton".into(),
                secret: Secret::new("8cd8ef52e8e101574e400365b55e11a6"),
                algorithm: algo,
            },
            meeting_id: "b3f1c9d2e4a5f6078192a3b4c5d6e7f8a9b0".into(),
            attendee_pw: "ap-4f2a9c".into(),
            moderator_pw: "mp-7e1b3d".into(),
            create_time: Some(1_700_000_000_123),
        };
        let name = format!("join URL build + sign ({})", algo.as_str());
        c.bench_function(&name, |b| {
            b.iter(|| {
                let full_name = params::bbb_full_name(black_box(&u)).expect("a name");
                let p = params::room_join(&w, &bbb, &u, &full_name, false, &target);
                bbb_gateway::bbb::join_url(&target.endpoint, &p)
            })
        });
        // The session's warm join once the published meeting is found: checks, the cached
        // meeting half, the user half, sign, and the expiry check.
        let far = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        let published = Published::new(target, far, far);
        let name = format!("warm join, session side ({})", algo.as_str());
        c.bench_function(&name, |b| {
            b.iter(|| {
                let now = std::time::Instant::now();
                let join = checks::room_join(&w, black_box(&u), Some(&room.id)).expect("may join");
                published
                    .valid_at(now)
                    .then(|| warm_join(&w, &u, &join, &published, now))
            })
        });
    }
}

criterion_group!(
    benches,
    permission_check,
    placement_choice,
    join_url_signing
);
criterion_main!(benches);
