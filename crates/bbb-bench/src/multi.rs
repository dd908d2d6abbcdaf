//! `multi`: several gateway instances on one PostgreSQL database in front of equal bbb-sim
//! servers, loaded through all of them at once. The *burst* asks for many new rooms at the same
//! moment, their first joins spread over the instances: placement must spread them evenly
//! although each instance places its share (the reservations are shared through the
//! database). The *storm* asks for one new room from many sessions spread over the instances:
//! one instance creates the meeting, the others wait for it (exactly one `create`).
//!
//! Its latencies relate to a `ping` baseline taken on the same sessions of the same cluster,
//! so the ratio shows what the cross-instance coordination costs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::cluster::{self, Cluster, ClusterConfig, InstanceMode};
use super::pool::{ClientPool, Op, Script};
use super::stats::Report;
use super::target::start_sims;
use super::{simctl, world};

/// Index of the first `multi` sim (its secret's number).
const MULTI_SIMS_FROM: usize = 400;

/// Sizes of the `multi` scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiPlan {
    /// Gateway instances on the database.
    pub instances: usize,
    /// Equal bbb-sim servers.
    pub sims: usize,
    /// New rooms of the burst (one first join each).
    pub burst_rooms: usize,
    /// Joins of the storm on one new room.
    pub storm_joins: usize,
    /// How long BBB takes to answer during the storm (ms), so the joins overlap the create.
    pub storm_latency_ms: u64,
    /// `bbb.poll_interval_secs` of the instances.
    pub poll_interval_secs: u64,
}

fn join(room: String) -> Op {
    Op::request("bbb.room_url", &json!({ "room": room }))
}

/// Runs the burst and the storm; `Ok(None)` when there is no PostgreSQL (skipped, said on
/// stderr). Reports `multi-ping` (the cluster's baseline), `multi-burst` and `multi-storm`.
pub async fn multi(
    mode: &InstanceMode,
    plan: MultiPlan,
    threads: usize,
) -> anyhow::Result<Option<Vec<Report>>> {
    let Some(db) = cluster::postgres()? else {
        return Ok(None);
    };
    let sims = start_sims(MULTI_SIMS_FROM, plan.sims.max(1), 1.0).await?;
    let ports: Vec<u16> = sims.iter().map(|s| s.port()).collect();
    let result = async {
        cluster::import_worlds(&db, &[world::multi_world(plan.burst_rooms.max(1))]).await?;
        let urls: Vec<String> = sims.iter().map(|s| s.base_url()).collect();
        cluster::register(&db, &urls, MULTI_SIMS_FROM, Some(world::MULTI_WORLD)).await?;
        let config = ClusterConfig {
            mode: mode.clone(),
            database_url: db.url.clone(),
            poll_interval_secs: plan.poll_interval_secs,
            lease_ms: 10_000,
        };
        let cluster = Cluster::start(config, plan.instances.max(1)).await?;
        let wait = Duration::from_secs(plan.poll_interval_secs * 3 + 30);
        let reports = async {
            cluster.wait_online(ports.len(), wait).await?;
            run_multi(&cluster, &ports, plan, threads).await
        }
        .await;
        cluster.stop().await;
        reports
    }
    .await;
    for s in sims {
        s.stop().await;
    }
    result.map(Some)
}

async fn run_multi(
    cluster: &Cluster,
    ports: &[u16],
    plan: MultiPlan,
    threads: usize,
) -> anyhow::Result<Vec<Report>> {
    let instances = cluster.instances.len();
    // The storm's sessions, connected first: they also measure the cluster's ping baseline.
    let mut storm = ClientPool::new(threads).context("cannot start client threads")?;
    let connected = storm
        .connect(
            cluster.sessions(world::MULTI_WORLD, "m", plan.storm_joins)?,
            64,
        )
        .await;
    require_connected("multi storm", connected.error_count())?;
    let ping: Script = Arc::new(|_, n| (n < 10).then_some(Op::Ping));
    let started = Instant::now();
    let tally = storm.run(ping).await;
    let mut baseline = Report::new("multi-ping", storm.sessions(), &tally, started.elapsed());
    baseline.set("instances", instances);

    // The burst: one new room per session, every session at the same instant.
    let mut burst = ClientPool::new(threads).context("cannot start client threads")?;
    let connected = burst
        .connect(
            cluster.sessions(world::MULTI_WORLD, "b", plan.burst_rooms)?,
            64,
        )
        .await;
    require_connected("multi burst", connected.error_count())?;
    let script: Script = Arc::new(|s, n| (n == 0).then(|| join(world::burst_room(s))));
    let started = Instant::now();
    let tally = burst.run(script).await;
    let elapsed = started.elapsed();
    burst.close_all().await;
    let mut r = Report::new("multi-burst", plan.burst_rooms, &tally, elapsed);
    r.relate_to(&baseline);
    r.set("instances", instances);
    let per = simctl::meetings_per_server(ports).await?;
    super::scenarios::report_spread(&mut r, per.values().copied().collect());
    let burst_report = r;

    // The storm: every storm session asks for the same new room at once while BBB is slow.
    for p in ports {
        simctl::set_latency(*p, plan.storm_latency_ms).await?;
    }
    let script: Script = Arc::new(|_, n| (n == 0).then(|| join(world::STORM_ROOM.to_string())));
    let started = Instant::now();
    let tally = storm.run(script).await;
    let elapsed = started.elapsed();
    for p in ports {
        simctl::set_latency(*p, 0).await?;
    }
    storm.close_all().await;
    let mut r = Report::new("multi-storm", plan.storm_joins, &tally, elapsed);
    r.relate_to(&baseline);
    r.set("instances", instances);
    r.set("create_latency_ms", plan.storm_latency_ms);
    let creates = simctl::creates_for_room(ports, world::STORM_ROOM).await?;
    r.set("creates", creates);
    r.target("exactly 1 create", creates == 1);
    r.target("every join answered", r.ok == plan.storm_joins);
    Ok(vec![baseline, burst_report, r])
}

fn require_connected(what: &str, errors: u64) -> anyhow::Result<()> {
    if errors > 0 {
        anyhow::bail!("{errors} {what} sessions could not connect/authenticate");
    }
    Ok(())
}
