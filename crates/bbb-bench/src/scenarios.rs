//! The benchmark scenarios, each returning a [`Report`] related to the `ping` baseline of the
//! same run. Loops are bounded by counts or by the soak duration; all traffic is loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::pool::{ClientPool, Op, Script, SessionSpec};
use super::stats::{Report, Tally};
use super::target::{Target, WorldTarget};
use super::{simctl, sys, world, BenchOptions};

/// Session specs for `n` users `prefix0…` of `w`, tokens minted up front.
pub fn sessions(
    target: &Target,
    w: &WorldTarget,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<SessionSpec>> {
    let url = target.ws_url(&w.id);
    (0..n)
        .map(|i| {
            let token = world::token(&w.secret, prefix, i)
                .map_err(|e| anyhow::anyhow!("cannot mint a token: {e}"))?;
            Ok(SessionSpec {
                index: i,
                url: url.clone(),
                token: Some(token),
            })
        })
        .collect()
}

fn room_url(room: String) -> Op {
    Op::request("bbb.room_url", &json!({ "room": room }))
}

/// Fails when sessions could not be opened: every figure after that would be wrong.
fn require_connected(what: &str, tally: &Tally) -> anyhow::Result<()> {
    if tally.error_count() > 0 {
        anyhow::bail!(
            "{} of {} {what} sessions could not connect/authenticate: {:?}",
            tally.error_count(),
            tally.error_count() as usize + tally.latencies_us.len(),
            tally.errors
        );
    }
    Ok(())
}

/// `ping`: `["ping", n]` round trips on every session; the baseline of the run.
pub async fn ping(pool: &ClientPool, requests: usize) -> Report {
    let script: Script = Arc::new(move |_, n| (n < requests).then_some(Op::Ping));
    let started = Instant::now();
    let tally = pool.run(script).await;
    Report::new("ping", pool.sessions(), &tally, started.elapsed())
}

/// `warm-join`: `bbb.room_url` for rooms whose meetings run (each room joined once before).
/// Also counts the creates that reached BBB meanwhile: the background re-confirmations of
/// meetings that keep being joined (`bbb.confirm_ttl_ms`).
pub async fn warm_join(
    pool: &ClientPool,
    w: &WorldTarget,
    rooms: usize,
    requests: usize,
    baseline: &Report,
) -> anyhow::Result<Report> {
    let rooms = rooms.max(1);
    let ops: Arc<Vec<Op>> = Arc::new((0..rooms).map(|i| room_url(world::warm_room(i))).collect());
    let first = ops.clone();
    let warm: Script = Arc::new(move |s, n| (n == 0).then(|| first.get(s).cloned()).flatten());
    let warmed = pool.run(warm).await;
    if warmed.error_count() > 0 {
        anyhow::bail!("warming the rooms failed: {:?}", warmed.errors);
    }
    let script: Script = Arc::new(move |s, n| (n < requests).then(|| ops[(s + n) % rooms].clone()));
    let creates_before = total_creates(&w.sim_ports).await?;
    let started = Instant::now();
    let tally = pool.run(script).await;
    let elapsed = started.elapsed();
    let mut r = Report::new("warm-join", pool.sessions(), &tally, elapsed);
    r.relate_to(baseline);
    r.set("rooms", rooms);
    if !w.sim_ports.is_empty() {
        let creates = total_creates(&w.sim_ports)
            .await?
            .saturating_sub(creates_before);
        r.set("reconfirm_creates", creates);
        let per_s = creates as f64 / elapsed.as_secs_f64().max(1e-9);
        r.set("reconfirm_creates_per_s", (per_s * 10.0).round() / 10.0);
    }
    let tput = r.ratio_throughput.unwrap_or(0.0);
    let p99 = r.ratio_p99.unwrap_or(f64::INFINITY);
    r.target("throughput >= 0.7 x ping", tput >= 0.7);
    r.target("p99 <= 2 x ping p99", p99 <= 2.0);
    Ok(r)
}

/// Every create the servers at `ports` received so far.
async fn total_creates(ports: &[u16]) -> anyhow::Result<usize> {
    let mut n = 0;
    for p in ports {
        n += simctl::creates(*p).await?.len();
    }
    Ok(n)
}

/// `cold-storm`: every session asks for the same new room at once while BBB takes
/// `latency_ms` to answer; counts the `create` calls that reached the simulators.
pub async fn cold_storm(
    pool: &ClientPool,
    w: &WorldTarget,
    latency_ms: u64,
    baseline: &Report,
) -> anyhow::Result<Report> {
    for p in &w.sim_ports {
        simctl::set_latency(*p, latency_ms).await?;
    }
    let script: Script = Arc::new(|_, n| (n == 0).then(|| room_url(world::STORM_ROOM.to_string())));
    let started = Instant::now();
    let tally = pool.run(script).await;
    let elapsed = started.elapsed();
    for p in &w.sim_ports {
        simctl::set_latency(*p, 0).await?;
    }
    let mut r = Report::new("cold-storm", pool.sessions(), &tally, elapsed);
    r.relate_to(baseline);
    r.set("create_latency_ms", latency_ms);
    if w.sim_ports.is_empty() {
        r.set("creates", "not counted (external gateway)");
    } else {
        let creates = simctl::creates_for_room(&w.sim_ports, world::STORM_ROOM).await?;
        r.set("creates", creates);
        r.target("exactly 1 create", creates == 1);
    }
    let met = r.latency.p99_ms <= latency_ms as f64 + 50.0 && r.ok > 0;
    r.target(format!("p99 <= {} ms", latency_ms + 50), met);
    Ok(r)
}

/// `spread`: `rooms` new rooms asked for in one burst (one session each) over the spread
/// world's equal servers; meetings per server.
pub async fn spread(
    target: &Target,
    w: &WorldTarget,
    rooms: usize,
    threads: usize,
    baseline: &Report,
) -> anyhow::Result<Report> {
    let mut pool = ClientPool::new(threads).context("cannot start client threads")?;
    let connected = pool.connect(sessions(target, w, "s", rooms)?, 64).await;
    require_connected("spread", &connected)?;
    let script: Script = Arc::new(|s, n| (n == 0).then(|| room_url(world::spread_room(s))));
    let started = Instant::now();
    let tally = pool.run(script).await;
    let elapsed = started.elapsed();
    pool.close_all().await;
    let mut r = Report::new("spread", rooms, &tally, elapsed);
    r.relate_to(baseline);
    let per = simctl::meetings_per_server(&w.sim_ports).await?;
    let counts: Vec<usize> = per.values().copied().collect();
    let mean = counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64;
    let worst = counts
        .iter()
        .map(|c| (*c as f64 - mean).abs() / mean.max(1e-9))
        .fold(0.0, f64::max);
    r.set("meetings_per_server", json!(counts));
    r.set(
        "max_deviation_from_mean_pct",
        (worst * 1000.0).round() / 10.0,
    );
    r.target("every server within +-10 % of the mean", worst <= 0.10);
    Ok(r)
}

/// Waits until the measured process's descriptor count stops falling (sockets closing).
async fn settle(pid: sys::Pid) {
    let mut last = sys::fd_count(pid);
    for _ in 0..50 {
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        let now = sys::fd_count(pid);
        if now == last {
            return;
        }
        last = now;
    }
}

/// `idle`: `n` authenticated idle sessions; resident memory per session (RSS delta / n), then
/// one ping on each to show latency at that scale.
pub async fn idle(
    target: &Target,
    n: usize,
    opts: &BenchOptions,
    baseline: &Report,
) -> anyhow::Result<Report> {
    if target.measured == super::target::Measured::ThisProcess {
        // Both ends of every session live in this process: two descriptors each.
        let need = 2 * n as u64 + 1024;
        if let Some(limit) = sys::nofile_limit().filter(|l| *l < need) {
            anyhow::bail!(
                "idle with {n} sessions in one process needs {need} open files, the limit is \
                 {limit}: use --gateway child (the gateway then holds only its own ends) or \
                 fewer --idle-sessions"
            );
        }
    }
    let specs = sessions(target, &target.main, "i", n)?;
    let mut pool = ClientPool::new(opts.client_threads).context("cannot start client threads")?;
    let pid = target.measured.pid();
    if let Some(p) = pid {
        settle(p).await;
    }
    let before = pid.and_then(sys::rss_kib);
    let fds_before = pid.and_then(sys::fd_count);
    let connected = pool.connect(specs, opts.connect_concurrency).await;
    require_connected("idle", &connected)?;
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    let after = pid.and_then(sys::rss_kib);
    let fds_after = pid.and_then(sys::fd_count);
    let script: Script = Arc::new(|_, n| (n == 0).then_some(Op::Ping));
    let started = Instant::now();
    let tally = pool.run(script).await;
    let mut r = Report::new("idle", pool.sessions(), &tally, started.elapsed());
    r.relate_to(baseline);
    pool.close_all().await;
    r.set("measured", target.measured.describe());
    let connect = super::stats::Latency::of(&connected.latencies_us);
    r.set("connect_auth_p99_ms", connect.p99_ms);
    if let (Some(b), Some(a)) = (before, after) {
        let per = a.saturating_sub(b) as f64 * 1024.0 / n.max(1) as f64;
        r.set("rss_before_kib", b);
        r.set("rss_after_kib", a);
        r.set(
            "rss_per_session_kib",
            (per / 1024.0 * 100.0).round() / 100.0,
        );
        r.target("<= 20 KiB resident per session", per <= 20.0 * 1024.0);
    }
    if let (Some(b), Some(a)) = (fds_before, fds_after) {
        r.set("fds_before", b);
        r.set("fds_after", a);
    }
    Ok(r)
}

/// `soak`: connect, authenticate, ping and disconnect `batch` sessions in a loop for
/// `duration`; descriptor count and RSS sampled after each cycle must not grow.
pub async fn soak(
    target: &Target,
    duration: Duration,
    batch: usize,
    opts: &BenchOptions,
    baseline: &Report,
) -> anyhow::Result<Report> {
    let pid = target.measured.pid();
    let mut pool = ClientPool::new(opts.client_threads).context("cannot start client threads")?;
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut samples: Vec<(f64, Option<usize>, Option<u64>)> = Vec::new();
    let mut cycles = 0usize;
    let mut opened = 0usize;
    while started.elapsed() < duration {
        let specs = sessions(target, &target.main, "soak", batch)?;
        let connected = pool.connect(specs, opts.connect_concurrency).await;
        opened += connected.latencies_us.len();
        tally.merge(connected);
        let ping: Script = Arc::new(|_, n| (n == 0).then_some(Op::Ping));
        let pinged = pool.run(ping).await;
        for (code, k) in pinged.errors {
            *tally.errors.entry(format!("ping {code}")).or_default() += k;
        }
        pool.close_all().await;
        cycles += 1;
        if let Some(p) = pid {
            settle(p).await;
            samples.push((
                started.elapsed().as_secs_f64(),
                sys::fd_count(p),
                sys::rss_kib(p),
            ));
        }
    }
    let mut r = Report::new("soak", batch, &tally, started.elapsed());
    r.relate_to(baseline);
    r.set("cycles", cycles);
    r.set("sessions_opened", opened);
    r.set("measured", target.measured.describe());
    // The first tenth of the run warms allocator pools and caches; growth is judged after it.
    let warm = samples
        .iter()
        .position(|s| s.0 >= duration.as_secs_f64() / 10.0)
        .unwrap_or(0);
    if let (Some(first), Some(last)) = (samples.get(warm), samples.last()) {
        if let (Some(f0), Some(f1)) = (first.1, last.1) {
            r.set("fds_first", f0);
            r.set("fds_last", f1);
            r.target("no descriptor growth", f1 <= f0 + 2);
        }
        if let (Some(m0), Some(m1)) = (first.2, last.2) {
            let max = samples.iter().filter_map(|s| s.2).max().unwrap_or(m1);
            r.set("rss_first_kib", m0);
            r.set("rss_last_kib", m1);
            r.set("rss_max_kib", max);
            // About ten evenly spaced samples, so a plateau (caches filling) can be told from
            // a steady climb (a leak).
            let step = (samples.len() / 10).max(1);
            let series: Vec<u64> = samples.iter().step_by(step).filter_map(|s| s.2).collect();
            r.set("rss_series_kib", json!(series));
            r.target(
                "no memory growth (last <= first + 5 % + 1 MiB)",
                m1 as f64 <= m0 as f64 * 1.05 + 1024.0,
            );
        }
    }
    Ok(r)
}
