//! A quick load run against a real bbb-sim over HTTP (ignored by default):
//! `cargo test --release --lib coordinator::tests::measure -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::*;
use crate::bbb::{AwcBbbClient, BbbClientConfig};
use bbb_sim::{self as sim, SimConfig};

#[actix_web::test]
#[ignore = "load measurement; run explicitly"]
async fn measure_joins_against_bbb_sim() {
    let sim = sim::start(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            secret: "measure-secret-0123456789".into(),
            checksum: None,
            latency_ms: 0,
            time_scale: 1.0,
        },
    )
    .await
    .unwrap();
    let (db, _dir) = crate::db::test_support::temp_sqlite();
    {
        let mut conn = db.get().unwrap();
        crate::db::test_support::insert_world(&mut conn, "w");
        servers::add(
            &mut conn,
            &NewServer {
                url: sim.base_url(),
                secret: Secret::new("measure-secret-0123456789"),
                checksum: ChecksumAlgorithm::Sha256,
                weight: 1.0,
                tag: None,
                world_id: None,
                capacity: None,
            },
        )
        .unwrap();
    }
    let client = AwcBbbClient::new(BbbClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        max_body_bytes: 8 << 20,
    });
    let addr = BbbCoordinator::new(db, Rc::new(client), settings(), Arc::default()).start();
    addr.send(PollNow).await.unwrap();
    let world = world_with(0);
    let send = |uid: String| {
        let addr = addr.clone();
        let world = world.clone();
        async move {
            let started = Instant::now();
            let r = addr
                .send(BbbCommand {
                    world,
                    user: user(&uid, &["p"], Some("Load Test")),
                    kind: BbbCommandKind::RoomUrl {
                        room: Some("r2".into()),
                    },
                    deadline: Instant::now() + Duration::from_secs(10),
                })
                .await
                .unwrap();
            assert!(r.is_ok(), "{r:?}");
            started.elapsed()
        }
    };
    let started = Instant::now();
    let mut cold: Vec<Duration> = join_all((0..500).map(|i| send(format!("c{i}")))).await;
    let cold_total = started.elapsed();
    cold.sort();
    let creates = addr.send(GetFleetStatus).await.unwrap().stats.creates_sent;
    assert_eq!(creates, 1);
    let mut warm = Vec::new();
    let started = Instant::now();
    for i in 0..5000 {
        warm.push(send(format!("w{i}")).await);
    }
    let warm_total = started.elapsed();
    warm.sort();
    let p = |v: &[Duration], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    eprintln!(
        "cold start: 500 concurrent joins of a new room in {cold_total:?}, {creates} create; \
         per join p50 {:?} p99 {:?}",
        p(&cold, 0.5),
        p(&cold, 0.99)
    );
    eprintln!(
        "running meeting: 5000 sequential joins in {warm_total:?}; per join p50 {:?} p99 {:?}",
        p(&warm, 0.5),
        p(&warm, 0.99)
    );
    sim.stop().await;
}
