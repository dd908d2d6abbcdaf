//! bbb-bench: the load benchmark of the gateway behind the `bbb-bench` binary. It opens many
//! authenticated WebSocket sessions against a gateway with bbb-sim servers on loopback and runs
//! the scenarios `ping` (the baseline), `warm-join`, `cold-storm`, `spread`, `churn`, `idle`,
//! `soak`, `keynote` (capacity-aware placement of a keynote and its breakouts), `multi`
//! (a burst and a storm through several instances on one PostgreSQL database) and
//! `fleet-scale` (what a hundred servers, ten thousand meetings and a long history cost the
//! poll leader and a follower), each reported as a ratio to the baseline of the same run, because absolute figures depend on
//! the machine. A library so its tests run the same code at tiny scale.

pub mod churn;
pub mod cluster;
pub mod conn;
pub mod fleet_scale;
pub mod multi;
pub mod pool;
pub mod scenarios;
pub mod simctl;
pub mod stats;
pub mod sys;
pub mod target;
pub mod world;

#[cfg(test)]
mod smoke_tests;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;

pub use fleet_scale::FleetPlan;
pub use multi::MultiPlan;
pub use scenarios::KeynotePlan;
pub use stats::Report;
pub use target::{GatewayMode, KeynoteSetup, SetupOptions};

/// A scenario name as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Ping,
    WarmJoin,
    ColdStorm,
    Spread,
    Churn,
    Idle,
    Soak,
    Keynote,
    Multi,
    FleetScale,
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "ping" => Scenario::Ping,
            "warm-join" => Scenario::WarmJoin,
            "cold-storm" => Scenario::ColdStorm,
            "spread" => Scenario::Spread,
            "churn" => Scenario::Churn,
            "idle" => Scenario::Idle,
            "soak" => Scenario::Soak,
            "keynote" => Scenario::Keynote,
            "multi" => Scenario::Multi,
            "fleet-scale" => Scenario::FleetScale,
            other => {
                return Err(format!(
                    "unknown scenario {other:?} (ping, warm-join, cold-storm, spread, churn, \
                     idle, soak, keynote, multi, fleet-scale)"
                ))
            }
        })
    }
}

/// Everything a run needs; `bbb-bench --help` documents each field.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub setup: SetupOptions,
    /// Sessions of `ping`, `warm-join` and `cold-storm`.
    pub sessions: usize,
    /// Requests per session in `ping` and `warm-join`.
    pub requests: usize,
    pub idle_sessions: usize,
    pub soak: Duration,
    pub soak_batch: usize,
    pub client_threads: usize,
    /// Handshakes in flight per client thread while connecting.
    pub connect_concurrency: usize,
    pub storm_latency_ms: u64,
    /// How long `churn` runs.
    pub churn: Duration,
    /// Joins and pacing of `keynote` (its world and servers are in `setup.keynote`).
    pub keynote: KeynotePlan,
    /// Sizes of `multi` (its instances run as `setup.mode` says: child processes with
    /// `--gateway child`, else in this process).
    pub multi: MultiPlan,
    /// Sizes of `fleet-scale` (instances as for `multi`).
    pub fleet: FleetPlan,
    /// Scenarios to run after `ping` (which always runs first: it is the baseline).
    pub scenarios: Vec<Scenario>,
}

/// Runs the scenarios and returns their reports, `ping` first. Must run inside an actix
/// system; the load generator's threads have systems of their own.
pub async fn run(opts: &BenchOptions) -> anyhow::Result<Vec<Report>> {
    let target = target::start(&opts.setup).await?;
    let result = run_on(&target, opts).await;
    target.shutdown().await;
    result
}

async fn run_on(target: &target::Target, opts: &BenchOptions) -> anyhow::Result<Vec<Report>> {
    let mut reports = Vec::new();
    let mut pool =
        pool::ClientPool::new(opts.client_threads).context("cannot start client threads")?;
    let specs = scenarios::sessions(target, &target.main, "u", opts.sessions)?;
    let connected = pool.connect(specs, opts.connect_concurrency).await;
    if connected.error_count() > 0 {
        anyhow::bail!(
            "{} of {} sessions could not connect/authenticate: {:?}",
            connected.error_count(),
            opts.sessions,
            connected.errors
        );
    }
    let gateway = match target.measured {
        target::Measured::Gateway(pid) => Some(Some(pid)),
        _ => None,
    };
    let cpu_before = gateway.and_then(sys::process_cpu);
    let mut baseline = scenarios::ping(&pool, opts.requests).await;
    gateway_cpu(&mut baseline, gateway, cpu_before);
    let connect = stats::Latency::of(&connected.latencies_us);
    baseline.set("connect_auth_p50_ms", connect.p50_ms);
    baseline.set("connect_auth_p99_ms", connect.p99_ms);
    reports.push(baseline.clone());
    for s in &opts.scenarios {
        if matches!(s, Scenario::Multi | Scenario::FleetScale) {
            reports.extend(cluster_scenario(*s, opts).await?);
            continue;
        }
        let cpu_before = gateway.and_then(sys::process_cpu);
        let mut report = match s {
            Scenario::Ping | Scenario::Multi | Scenario::FleetScale => continue,
            Scenario::WarmJoin => {
                scenarios::warm_join(
                    &pool,
                    &target.main,
                    opts.setup.rooms,
                    opts.requests,
                    &baseline,
                )
                .await?
            }
            Scenario::Churn => {
                if target.churn.is_none() {
                    log::warn!("churn needs the bench's own servers; skipped");
                    continue;
                }
                churn::churn(
                    target,
                    opts.setup.churn_rooms,
                    opts.sessions,
                    opts.client_threads,
                    opts.churn,
                    &baseline,
                )
                .await?
            }
            Scenario::ColdStorm => {
                scenarios::cold_storm(&pool, &target.main, opts.storm_latency_ms, &baseline).await?
            }
            Scenario::Spread => match &target.spread {
                Some(w) => {
                    scenarios::spread(
                        target,
                        w,
                        opts.setup.spread_rooms,
                        opts.client_threads,
                        &baseline,
                    )
                    .await?
                }
                None => {
                    log::warn!("spread needs the bench's own servers; skipped");
                    continue;
                }
            },
            Scenario::Idle => {
                // The idle sessions replace the load sessions, so the memory delta is theirs.
                pool.close_all().await;
                let r = scenarios::idle(target, opts.idle_sessions, opts, &baseline).await?;
                let specs = scenarios::sessions(target, &target.main, "u", opts.sessions)?;
                pool.connect(specs, opts.connect_concurrency).await;
                r
            }
            Scenario::Soak => {
                scenarios::soak(target, opts.soak, opts.soak_batch, opts, &baseline).await?
            }
            Scenario::Keynote => match &target.keynote {
                Some(k) => {
                    scenarios::keynote(target, k, opts.keynote, opts.client_threads, &baseline)
                        .await?
                }
                None => {
                    log::warn!("keynote needs the bench's own servers; skipped");
                    continue;
                }
            },
        };
        // Only where the timed part is the whole scenario (the others connect sessions first).
        if matches!(s, Scenario::WarmJoin | Scenario::ColdStorm) {
            gateway_cpu(&mut report, gateway, cpu_before);
        }
        reports.push(report);
    }
    pool.close_all().await;
    Ok(reports)
}

/// `multi` or `fleet-scale`: instances of their own on a PostgreSQL database of their own;
/// nothing (with a warning) when there is no PostgreSQL or the gateway is external.
async fn cluster_scenario(s: Scenario, opts: &BenchOptions) -> anyhow::Result<Vec<Report>> {
    let mode = match &opts.setup.mode {
        GatewayMode::InProcess => cluster::InstanceMode::InProcess,
        GatewayMode::Child(bin) => cluster::InstanceMode::Child(bin.clone()),
        GatewayMode::External { .. } => {
            log::warn!("{s:?} starts gateway instances of its own; skipped with --target");
            return Ok(Vec::new());
        }
    };
    let threads = opts.client_threads;
    let reports = match s {
        Scenario::Multi => multi::multi(&mode, opts.multi, threads).await?,
        _ => fleet_scale::fleet_scale(&mode, opts.fleet, threads).await?,
    };
    Ok(reports.unwrap_or_else(|| {
        log::warn!("{s:?} needs PostgreSQL (DATABASE_URL_PG, or initdb/pg_ctl installed); skipped");
        Vec::new()
    }))
}

/// Adds the CPU time the gateway process spent during the scenario (child gateway only: in
/// process it cannot be told apart from the load generator), per answered request too.
fn gateway_cpu(report: &mut Report, gateway: Option<sys::Pid>, before: Option<Duration>) {
    let (Some(pid), Some(before)) = (gateway, before) else {
        return;
    };
    let Some(after) = sys::process_cpu(pid) else {
        return;
    };
    let spent = after.saturating_sub(before);
    report.set(
        "gateway_cpu_cores",
        round2(spent.as_secs_f64() / report.elapsed_s.max(1e-9)),
    );
    if report.ok > 0 {
        let us = spent.as_secs_f64() * 1e6 / report.ok as f64;
        report.set("gateway_cpu_us_per_request", round2(us));
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
