//! bbb-sim: a BigBlueButton API simulator for development, demos, tests and benchmarks.
//! See OPERATIONS.md (section bbb-sim) for the API and the `/sim/...` control routes.

use std::net::SocketAddr;

use bbb_api::ChecksumAlgorithm;
use bbb_sim::{self as sim, SimConfig};
use clap::Parser;

/// A BigBlueButton API simulator.
///
/// Serves /bigbluebutton/api/ (index, create, join, isMeetingRunning, getMeetingInfo,
/// getMeetings, end, getRecordings) with BBB's checksum rules and meeting lifecycle, plus JSON
/// control routes for tests: GET /sim/calls, POST /sim/reset, POST /sim/participants,
/// POST /sim/recordings, POST /sim/fault (mode none|http500|garbage|checksum_error|hang).
/// Register it with the gateway as http://ADDR/bigbluebutton and the same secret.
#[derive(Parser, Debug)]
#[command(name = "bbb-sim", version)]
struct Cli {
    /// Address to listen on (port 0 picks a free port, printed at start-up).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,

    /// Shared secret the API checksums are verified with.
    #[arg(long, env = "BBB_SIM_SECRET", hide_env_values = true)]
    secret: String,

    /// Accept only this checksum algorithm (like BBB's supportedChecksumAlgorithms);
    /// by default sha1, sha256, sha384 and sha512 are all accepted.
    #[arg(long, value_name = "sha1|sha256|sha384|sha512")]
    checksum: Option<ChecksumAlgorithm>,

    /// Delay every API reply by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,

    /// Speed up meeting expiry: BBB minutes are divided by this (60 makes a BBB minute last one
    /// second).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
}

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    if cli.secret.trim().is_empty() {
        eprintln!("bbb-sim: --secret must not be empty");
        return std::process::ExitCode::from(2);
    }
    let config = SimConfig {
        secret: cli.secret,
        checksum: cli.checksum,
        latency_ms: cli.latency_ms,
        time_scale: cli.time_scale,
    };
    let handle = match sim::start(cli.listen, config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("bbb-sim: cannot listen on {}: {e}", cli.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "bbb-sim listening; BBB base URL: http://{}:{}/bigbluebutton",
        cli.listen.ip(),
        handle.port()
    );
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("bbb-sim: cannot wait for Ctrl-C: {e}");
    }
    handle.stop().await;
    std::process::ExitCode::SUCCESS
}
