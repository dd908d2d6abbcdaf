//! The benchmark harness itself works: every scenario at tiny scale through the library API,
//! asserting counts (sessions, answered requests, exactly one create in the cold storm, a
//! burst spread over every server, the keynote alone on its server) — never timings, which
//! depend on the machine.

use std::time::Duration;

use crate::{
    cluster, run, world, BenchOptions, FleetPlan, GatewayMode, KeynotePlan, KeynoteSetup,
    MultiPlan, Scenario, SetupOptions,
};

fn tiny() -> BenchOptions {
    BenchOptions {
        setup: SetupOptions {
            mode: GatewayMode::InProcess,
            sims: 2,
            rooms: 5,
            spread_sims: 2,
            spread_rooms: 8,
            churn_sims: 2,
            churn_rooms: 6,
            world: world::WORLD.into(),
            secret: world::SECRET.into(),
            keynote: Some(KeynoteSetup {
                sims: 2,
                capacity: 50,
                keynote_expected: 80,
                breakouts: 6,
                breakout_expected: 10,
            }),
        },
        sessions: 12,
        requests: 3,
        idle_sessions: 20,
        soak: Duration::from_millis(300),
        soak_batch: 5,
        client_threads: 2,
        connect_concurrency: 8,
        storm_latency_ms: 100,
        churn: Duration::from_secs(2),
        keynote: KeynotePlan {
            joins: 20,
            start_window: Duration::from_millis(200),
            join_window: Duration::from_millis(400),
        },
        multi: MultiPlan {
            instances: 2,
            sims: 2,
            burst_rooms: 8,
            storm_joins: 12,
            storm_latency_ms: 100,
            poll_interval_secs: 1,
        },
        fleet: FleetPlan {
            servers: 3,
            meetings: 12,
            history: 500,
            poll_interval_secs: 1,
            rounds: 2,
            join_sessions: 4,
            join_rooms: 4,
            join_rate: 10,
            join_secs: 1,
        },
        scenarios: vec![
            Scenario::WarmJoin,
            Scenario::ColdStorm,
            Scenario::Spread,
            Scenario::Churn,
            Scenario::Idle,
            Scenario::Soak,
            Scenario::Keynote,
        ],
    }
}

#[actix_web::test]
async fn every_scenario_runs_at_tiny_scale() {
    let reports = run(&tiny()).await.expect("the bench runs");
    let names: Vec<&str> = reports.iter().map(|r| r.scenario.as_str()).collect();
    assert_eq!(
        names,
        [
            "ping",
            "warm-join",
            "cold-storm",
            "spread",
            "churn",
            "idle",
            "soak",
            "keynote"
        ]
    );
    let by = |n: &str| reports.iter().find(|r| r.scenario == n).expect(n);

    let ping = by("ping");
    assert_eq!((ping.sessions, ping.ok, ping.requests), (12, 36, 36));
    assert!(ping.errors.is_empty(), "{:?}", ping.errors);

    let warm = by("warm-join");
    assert_eq!(warm.ok, 36, "{:?}", warm.errors);
    assert!(warm.ratio_throughput.is_some() && warm.ratio_p99.is_some());

    let storm = by("cold-storm");
    assert_eq!(storm.ok, 12, "{:?}", storm.errors);
    assert_eq!(
        storm.extra["creates"], 1,
        "single flight: one create for 12 joins"
    );

    let spread = by("spread");
    assert_eq!(spread.ok, 8, "{:?}", spread.errors);
    let per: Vec<u64> = spread.extra["meetings_per_server"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    assert_eq!(per.len(), 2);
    assert_eq!(per.iter().sum::<u64>(), 8);
    assert!(per.iter().all(|n| *n > 0), "{per:?}");

    let churn = by("churn");
    assert!(churn.ok > 0, "{:?}", churn.errors);
    assert!(churn.extra["urls_followed"].as_u64().unwrap_or(0) > 0);
    assert_eq!(churn.extra["broken_urls"], 0, "{:?}", churn.extra);
    assert!(churn.extra["creates"].as_u64().unwrap_or(0) > 0);

    let idle = by("idle");
    assert_eq!((idle.sessions, idle.ok), (20, 20), "{:?}", idle.errors);
    assert!(idle.extra.contains_key("rss_per_session_kib"));

    let soak = by("soak");
    assert!(soak.extra["cycles"].as_u64().unwrap_or(0) >= 1);
    assert!(soak.errors.is_empty(), "{:?}", soak.errors);
    let keynote = by("keynote");
    assert_eq!(
        (keynote.sessions, keynote.ok),
        (20, 20),
        "{:?}",
        keynote.errors
    );
    assert!(keynote.errors.is_empty(), "{:?}", keynote.errors);
    assert_eq!(keynote.extra["start_errors"], serde_json::json!({}));
    assert_eq!(keynote.extra["keynote_meetings_created"], 1);
    assert_eq!(keynote.extra["breakouts_next_to_keynote"], 0);
    // The starter and the 20 joins, each counted by the simulator as its URL was opened.
    assert_eq!(keynote.extra["keynote_participants"], 21);
    let servers = keynote.extra["servers"].as_array().expect("a list");
    assert_eq!(servers.len(), 2);
    let breakouts: u64 = servers.iter().filter_map(|s| s["breakouts"].as_u64()).sum();
    assert_eq!(breakouts, 6);
    assert!(
        keynote.targets.iter().all(|t| t.met),
        "{:?}",
        keynote.targets
    );
    for r in &reports {
        assert!(r.json_line().starts_with('{'));
    }
}

/// The tiny options with only `scenario` after the baseline; `None` (the skip said on stderr by
/// the gateway's test support) when there is no PostgreSQL.
fn on_postgres(scenario: Scenario) -> Option<BenchOptions> {
    cluster::postgres().expect("PostgreSQL as configured")?;
    let mut opts = tiny();
    opts.setup.keynote = None;
    opts.scenarios = vec![scenario];
    Some(opts)
}

#[actix_web::test]
async fn multi_runs_at_tiny_scale_on_postgres() {
    let Some(opts) = on_postgres(Scenario::Multi) else {
        return;
    };
    let reports = run(&opts).await.expect("the bench runs");
    let names: Vec<&str> = reports.iter().map(|r| r.scenario.as_str()).collect();
    assert_eq!(names, ["ping", "multi-ping", "multi-burst", "multi-storm"]);
    let by = |n: &str| reports.iter().find(|r| r.scenario == n).expect(n);

    let ping = by("multi-ping");
    assert_eq!((ping.sessions, ping.ok), (12, 120), "{:?}", ping.errors);
    assert_eq!(ping.extra["instances"], 2);

    let burst = by("multi-burst");
    assert_eq!(burst.ok, 8, "{:?}", burst.errors);
    let per: Vec<u64> = burst.extra["meetings_per_server"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    assert_eq!(per.len(), 2);
    assert_eq!(per.iter().sum::<u64>(), 8);
    assert!(per.iter().all(|n| *n > 0), "{per:?}");
    assert!(burst.ratio_p99.is_some());

    let storm = by("multi-storm");
    assert_eq!(storm.ok, 12, "{:?}", storm.errors);
    assert_eq!(
        storm.extra["creates"], 1,
        "one create for 12 joins through 2 instances"
    );
}

#[actix_web::test]
async fn fleet_scale_runs_at_tiny_scale_on_postgres() {
    let Some(opts) = on_postgres(Scenario::FleetScale) else {
        return;
    };
    let reports = run(&opts).await.expect("the bench runs");
    let names: Vec<&str> = reports.iter().map(|r| r.scenario.as_str()).collect();
    assert_eq!(names, ["ping", "fleet-quiet", "fleet-scale"]);
    let by = |n: &str| reports.iter().find(|r| r.scenario == n).expect(n);

    for name in ["fleet-quiet", "fleet-scale"] {
        let r = by(name);
        // 4 sessions, 10 joins a second each, for a second.
        assert_eq!((r.sessions, r.ok), (4, 40), "{name}: {:?}", r.errors);
        assert!(
            r.extra["leader_rounds"].as_u64().unwrap_or(0) >= 1,
            "{name}"
        );
        assert!(
            r.extra["follower_rounds"].as_u64().unwrap_or(0) >= 1,
            "{name}"
        );
        // In process, the instances' CPU cannot be told apart.
        assert!(r.extra["leader_cpu_ms_per_round"].is_string(), "{name}");
    }
    let scale = by("fleet-scale");
    assert_eq!(scale.extra["running_meetings"], 12);
    assert_eq!(scale.extra["meetings_start_errors"], serde_json::json!({}));
    assert_eq!(scale.extra["history_rows"], 500);
    assert_eq!(scale.extra["servers"], 3);
    assert!(scale.ratio_p99.is_some());
}
