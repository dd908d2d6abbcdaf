//! `bbb-bench`: load benchmark of the gateway. By default it starts everything in
//! this process on loopback — a gateway on a temp SQLite database, bbb-sim servers, the bench
//! worlds and tokens — then runs the scenarios and prints a table plus one JSON line each.
//! See docs/PERFORMANCE.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bbb_bench::{self as bench, BenchOptions, GatewayMode, Scenario, SetupOptions};
use clap::Parser;

/// Load benchmark for bbb-gateway: ping baseline, warm joins, cold-start storms, spread over
/// servers, idle sessions, a connect/disconnect soak, a keynote with its breakouts on
/// servers with a capacity, a burst and a storm through several instances on one PostgreSQL
/// database (multi), and the cost of a large fleet to the poll leader and a follower
/// (fleet-scale). Every figure is also given as a ratio to a baseline measured in the same run.
#[derive(Parser, Debug)]
#[command(name = "bbb-bench", version)]
struct Cli {
    /// Scenarios to run after the `ping` baseline (which always runs first), comma separated:
    /// ping, warm-join, cold-storm, spread, churn, idle, soak, keynote, multi, fleet-scale.
    /// multi and fleet-scale need PostgreSQL (DATABASE_URL_PG, else a throwaway server is
    /// started with initdb/pg_ctl) and run gateway instances of their own: child processes with
    /// --gateway child (needed for their CPU and memory figures), else in this process.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "warm-join,cold-storm,spread,churn,idle"
    )]
    scenarios: Vec<Scenario>,
    /// Where the gateway runs: `in-process` (default; memory figures then include the load
    /// generator) or `child` (runs `bbb-gateway serve` next to this binary, measured alone).
    #[arg(long, default_value = "in-process")]
    gateway: String,
    /// Path of the bbb-gateway binary for `--gateway child` (default: next to bbb-bench).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Use an already running gateway instead: `ws://HOST:PORT`. Needs --world and
    /// --jwt-secret; cold-storm and spread then cannot count creates and are limited.
    #[arg(long)]
    target: Option<String>,
    /// World of the external gateway (with --target).
    #[arg(long, default_value = "bench")]
    world: String,
    /// JWT secret (issuer `any`, audience `venueless`) of that world (with --target).
    #[arg(long, env = "BBB_BENCH_JWT_SECRET", default_value = bench::world::SECRET)]
    jwt_secret: String,
    /// Pid of the external gateway, to read its memory and descriptors (with --target).
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// Sessions of ping, warm-join and cold-storm.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Requests per session in ping and warm-join.
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// Warm BBB rooms of the bench world.
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    /// bbb-sim servers of the bench world.
    #[arg(long, default_value_t = 4)]
    sims: usize,
    /// Rooms created in one burst by `spread`.
    #[arg(long, default_value_t = 200)]
    spread_rooms: usize,
    /// Equal bbb-sim servers the spread burst is placed on.
    #[arg(long, default_value_t = 4)]
    spread_sims: usize,
    /// Rooms of `churn`, whose meetings BBB keeps ending.
    #[arg(long, default_value_t = 100)]
    churn_rooms: usize,
    /// bbb-sim servers of `churn` (one is killed halfway; their BBB minutes last a second).
    #[arg(long, default_value_t = 3)]
    churn_sims: usize,
    /// Duration of `churn` in seconds.
    #[arg(long, default_value_t = 10)]
    churn_secs: u64,
    /// Idle sessions of `idle`.
    #[arg(long, default_value_t = 10_000)]
    idle_sessions: usize,
    /// Duration of `soak` in seconds.
    #[arg(long, default_value_t = 300)]
    soak_secs: u64,
    /// Sessions opened and closed per soak cycle.
    #[arg(long, default_value_t = 200)]
    soak_batch: usize,
    /// BBB create latency during cold-storm, in milliseconds.
    #[arg(long, default_value_t = 200)]
    storm_latency_ms: u64,
    /// bbb-sim servers of the keynote world, each registered with --keynote-capacity.
    #[arg(long, default_value_t = 4)]
    keynote_sims: usize,
    /// Participants each keynote-world server can carry.
    #[arg(long, default_value_t = 500)]
    keynote_capacity: u32,
    /// `expected_participants` of the keynote room.
    #[arg(long, default_value_t = 800)]
    keynote_expected: u32,
    /// Breakout rooms started together with the keynote.
    #[arg(long, default_value_t = 100)]
    breakouts: usize,
    /// `expected_participants` of every breakout (the world's `bbb_defaults`).
    #[arg(long, default_value_t = 20)]
    breakout_expected: u32,
    /// Joins to the keynote after everything started.
    #[arg(long, default_value_t = 2000)]
    keynote_joins: usize,
    /// The keynote and the breakouts all start within this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    keynote_start_ms: u64,
    /// The keynote joins are spread evenly over this many seconds.
    #[arg(long, default_value_t = 10)]
    keynote_join_secs: u64,
    /// multi: gateway instances on the one database.
    #[arg(long, default_value_t = 4)]
    instances: usize,
    /// multi: equal bbb-sim servers.
    #[arg(long, default_value_t = 4)]
    multi_sims: usize,
    /// multi: new rooms of the burst, their first joins spread over the instances at once.
    #[arg(long, default_value_t = 200)]
    burst_rooms: usize,
    /// multi: joins of the storm on one new room, spread over the instances at once (BBB
    /// answers after --storm-latency-ms).
    #[arg(long, default_value_t = 1000)]
    storm_joins: usize,
    /// multi: poll interval of the instances in seconds.
    #[arg(long, default_value_t = 15)]
    multi_poll_secs: u64,
    /// fleet-scale: bbb-sim servers.
    #[arg(long, default_value_t = 100)]
    fleet_servers: usize,
    /// fleet-scale: running meetings (one room each).
    #[arg(long, default_value_t = 10_000)]
    fleet_meetings: usize,
    /// fleet-scale: ended meetings written into the table before the instances restart.
    #[arg(long, default_value_t = 1_000_000)]
    fleet_history: usize,
    /// fleet-scale: poll interval in seconds during the measurement (CPU is reported per
    /// round and scaled to 15 s).
    #[arg(long, default_value_t = 1)]
    fleet_poll_secs: u64,
    /// fleet-scale: rounds the CPU is measured over, in each phase.
    #[arg(long, default_value_t = 30)]
    fleet_rounds: u64,
    /// fleet-scale: sessions of the paced warm joins, spread over both instances.
    #[arg(long, default_value_t = 100)]
    fleet_join_sessions: usize,
    /// fleet-scale: warm rooms the paced joins go to.
    #[arg(long, default_value_t = 100)]
    fleet_join_rooms: usize,
    /// fleet-scale: joins per session per second.
    #[arg(long, default_value_t = 10)]
    fleet_join_rate: u32,
    /// fleet-scale: seconds the paced joins run, in each phase.
    #[arg(long, default_value_t = 10)]
    fleet_join_secs: u64,
    /// Load-generator threads (each an actix system holding a share of the sessions).
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// WebSocket handshakes in flight per client thread while connecting.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Print only the JSON lines.
    #[arg(long)]
    json_only: bool,
}

fn gateway_mode(cli: &Cli) -> Result<GatewayMode, String> {
    if let Some(t) = &cli.target {
        if !(t.starts_with("ws://") || t.starts_with("wss://")) {
            return Err(format!("--target must be ws://HOST:PORT, not {t:?}"));
        }
        return Ok(GatewayMode::External {
            ws_base: t.clone(),
            pid: cli.gateway_pid,
        });
    }
    match cli.gateway.as_str() {
        "in-process" => Ok(GatewayMode::InProcess),
        "child" => {
            let bin = match &cli.gateway_bin {
                Some(b) => b.clone(),
                None => std::env::current_exe()
                    .map_err(|e| format!("cannot locate bbb-bench: {e}"))?
                    .with_file_name("bbb-gateway"),
            };
            Ok(GatewayMode::Child(bin))
        }
        other => Err(format!(
            "--gateway must be in-process or child, not {other:?}"
        )),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let mode = match gateway_mode(&cli) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("bbb-bench: {e}");
            return ExitCode::from(2);
        }
    };
    // Both ends of every session may live in this process: two descriptors per session.
    let want = (cli.idle_sessions.max(cli.sessions).max(cli.storm_joins) as u64) * 2 + 4096;
    match bench::sys::raise_nofile(want) {
        Ok(n) if n < want => eprintln!(
            "bbb-bench: warning: only {n} open files allowed, {want} wanted; large runs may fail"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("bbb-bench: warning: cannot raise the open-files limit: {e}"),
    }
    let opts = BenchOptions {
        setup: SetupOptions {
            mode,
            sims: cli.sims,
            rooms: cli.rooms,
            spread_sims: cli.spread_sims,
            spread_rooms: cli.spread_rooms,
            churn_sims: cli.churn_sims,
            churn_rooms: cli.churn_rooms,
            world: cli.world.clone(),
            secret: cli.jwt_secret.clone(),
            // Only set up (4 more simulators, another world) when the scenario runs.
            keynote: cli
                .scenarios
                .contains(&Scenario::Keynote)
                .then_some(bench::KeynoteSetup {
                    sims: cli.keynote_sims,
                    capacity: cli.keynote_capacity,
                    keynote_expected: cli.keynote_expected,
                    breakouts: cli.breakouts,
                    breakout_expected: cli.breakout_expected,
                }),
        },
        sessions: cli.sessions,
        requests: cli.requests,
        idle_sessions: cli.idle_sessions,
        soak: Duration::from_secs(cli.soak_secs),
        soak_batch: cli.soak_batch,
        client_threads: cli.client_threads,
        connect_concurrency: cli.connect_concurrency,
        storm_latency_ms: cli.storm_latency_ms,
        churn: Duration::from_secs(cli.churn_secs),
        keynote: bench::KeynotePlan {
            joins: cli.keynote_joins,
            start_window: Duration::from_millis(cli.keynote_start_ms),
            join_window: Duration::from_secs(cli.keynote_join_secs),
        },
        multi: bench::MultiPlan {
            instances: cli.instances,
            sims: cli.multi_sims,
            burst_rooms: cli.burst_rooms,
            storm_joins: cli.storm_joins,
            storm_latency_ms: cli.storm_latency_ms,
            poll_interval_secs: cli.multi_poll_secs,
        },
        fleet: bench::FleetPlan {
            servers: cli.fleet_servers,
            meetings: cli.fleet_meetings,
            history: cli.fleet_history,
            poll_interval_secs: cli.fleet_poll_secs,
            rounds: cli.fleet_rounds,
            join_sessions: cli.fleet_join_sessions,
            join_rooms: cli.fleet_join_rooms,
            join_rate: cli.fleet_join_rate,
            join_secs: cli.fleet_join_secs,
        },
        scenarios: cli.scenarios.clone(),
    };
    let system = actix_web::rt::System::new();
    let result = system.block_on(bench::run(&opts));
    match result {
        Ok(reports) => {
            if !cli.json_only {
                println!("{}", bench::stats::table(&reports));
            }
            for r in &reports {
                println!("{}", r.json_line());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bbb-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
