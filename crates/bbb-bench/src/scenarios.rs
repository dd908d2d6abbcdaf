//! The benchmark scenarios, each returning a [`Report`] related to the `ping` baseline of the
//! same run. Loops are bounded by counts or by the soak duration; all traffic is loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::pool::{ClientPool, Op, Script, SessionSpec};
use super::stats::{Report, Tally};
use super::target::{KeynoteTarget, Target, WorldTarget};
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
/// Reports how evenly new meetings spread over the servers (`counts`: meetings per server)
/// and the target every server within ±10 % of the mean.
pub(crate) fn report_spread(r: &mut Report, counts: Vec<usize>) {
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
}

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
    report_spread(&mut r, per.values().copied().collect());
    Ok(r)
}

/// How the `keynote` scenario paces its joins.
#[derive(Debug, Clone, Copy)]
pub struct KeynotePlan {
    /// Joins to the keynote after everything started.
    pub joins: usize,
    /// The keynote and every breakout start (first join) within this.
    pub start_window: Duration,
    /// The joins to the keynote are spread evenly over this.
    pub join_window: Duration,
}

/// `keynote`: the keynote room starts, then every breakout room, all within
/// `plan.start_window` (one session each, first join); then `plan.joins` people join the
/// keynote spread evenly over `plan.join_window`. Every join URL is opened at the simulator as
/// a browser would, so BBB's participant counts rise as people arrive. Reports the meetings
/// created for the keynote, each server's meetings and participants against its capacity, and
/// the latency of the keynote joins.
pub async fn keynote(
    target: &Target,
    k: &KeynoteTarget,
    plan: KeynotePlan,
    threads: usize,
    baseline: &Report,
) -> anyhow::Result<Report> {
    let breakouts = k.setup.breakouts;
    let mut starters = ClientPool::new(threads).context("cannot start client threads")?;
    let connected = starters
        .connect(sessions(target, &k.world, "k", breakouts + 1)?, 64)
        .await;
    require_connected("keynote starter", &connected)?;
    let mut fans = ClientPool::new(threads).context("cannot start client threads")?;
    let connected = fans
        .connect(sessions(target, &k.world, "f", plan.joins)?, 64)
        .await;
    require_connected("keynote", &connected)?;

    let join = |room: &str| Op::request_and_follow("bbb.room_url", &json!({ "room": room }));
    let keynote_join = join(world::KEYNOTE_ROOM);
    let breakout_joins: Vec<Op> = (0..breakouts)
        .map(|i| join(&world::breakout_room(i)))
        .collect();
    // Session 0 starts the keynote at once, session i the breakout i - 1 a step later each.
    let step = plan.start_window / u32::try_from(breakouts + 1).unwrap_or(u32::MAX);
    let first = keynote_join.clone();
    let start: Script = Arc::new(move |s, n| match (s, n) {
        (0, 0) => Some(first.clone()),
        (0, _) => None,
        (s, 0) => Some(Op::Pause(step * u32::try_from(s).unwrap_or(u32::MAX))),
        (s, 1) => breakout_joins.get(s - 1).cloned(),
        _ => None,
    });
    let started = Instant::now();
    let start_tally = starters.run(start).await;
    let start_elapsed = started.elapsed();

    let gap = plan.join_window / u32::try_from(plan.joins.max(1)).unwrap_or(u32::MAX);
    let fan_join: Script = Arc::new(move |s, n| match n {
        0 => Some(Op::Pause(gap * u32::try_from(s).unwrap_or(u32::MAX))),
        1 => Some(keynote_join.clone()),
        _ => None,
    });
    let started = Instant::now();
    let tally = fans.run(fan_join).await;
    let elapsed = started.elapsed();
    starters.close_all().await;
    fans.close_all().await;

    let mut r = Report::new("keynote", plan.joins, &tally, elapsed);
    r.relate_to(baseline);
    r.set("start_sessions", breakouts + 1);
    r.set(
        "start_elapsed_ms",
        (start_elapsed.as_secs_f64() * 1e4).round() / 10.0,
    );
    r.set("start_errors", json!(start_tally.errors));
    r.set("join_window_s", plan.join_window.as_secs_f64());
    let fleet = keynote_fleet(k).await?;
    let capacity = k.setup.capacity;
    r.set("capacity", capacity);
    r.set("keynote_expected", k.setup.keynote_expected);
    r.set("breakout_expected", k.setup.breakout_expected);
    r.set("keynote_create_calls", fleet.keynote_create_calls);
    r.set("keynote_meetings_created", fleet.keynote_meetings);
    r.set("breakouts_next_to_keynote", fleet.breakouts_next_to_keynote);
    let keynote_size = fleet
        .servers
        .iter()
        .filter(|s| s.keynote)
        .map(|s| s.keynote_participants)
        .sum::<u32>();
    r.set("keynote_participants", keynote_size);
    r.set(
        "servers",
        json!(fleet
            .servers
            .iter()
            .map(|s| json!({
                "port": s.port, "keynote": s.keynote, "meetings": s.meetings,
                "breakouts": s.breakouts, "participants": s.participants,
                "expected": s.expected, "capacity": capacity,
            }))
            .collect::<Vec<_>>()),
    );
    r.target(
        "the keynote is 1 meeting (created once, on one server)",
        fleet.keynote_meetings == 1,
    );
    // The keynote's own server may go past its capacity only if no server can hold the keynote.
    let keynote_fits_somewhere = k.setup.keynote_expected.max(keynote_size) <= capacity;
    let within = fleet
        .servers
        .iter()
        .filter(|s| keynote_fits_somewhere || !s.keynote)
        .all(|s| s.participants <= capacity);
    r.target(
        "every server's participants within capacity (except the keynote's if it cannot fit)",
        within,
    );
    r.target(
        "no breakout placed next to the keynote after it",
        fleet.breakouts_next_to_keynote == 0,
    );
    Ok(r)
}

/// One keynote-world server after the scenario.
struct KeynoteServer {
    port: u16,
    /// It holds the keynote.
    keynote: bool,
    keynote_participants: u32,
    meetings: usize,
    breakouts: usize,
    /// Participants BBB counts now.
    participants: u32,
    /// Its meetings at their expected size or their real one, whichever is larger.
    expected: u64,
}

struct KeynoteFleet {
    servers: Vec<KeynoteServer>,
    /// `create` calls for the keynote room (re-confirmations of the running meeting included).
    keynote_create_calls: usize,
    /// Distinct (server, meeting) pairs created for the keynote room.
    keynote_meetings: usize,
    /// Breakouts first created on the keynote's server after the keynote was.
    breakouts_next_to_keynote: usize,
}

/// What the keynote world's servers run, from their call logs and `getMeetings`.
async fn keynote_fleet(k: &KeynoteTarget) -> anyhow::Result<KeynoteFleet> {
    let mut logs = Vec::new();
    for (port, endpoint) in k.world.sim_ports.iter().zip(&k.endpoints) {
        let log = simctl::create_log(*port).await?;
        let running = simctl::participants(endpoint).await?;
        logs.push((*port, log, running));
    }
    let is_keynote = |room: &str| room == world::KEYNOTE_ROOM;
    let keynote_calls: Vec<(u16, &simctl::CreateCall)> = logs
        .iter()
        .flat_map(|(port, log, _)| log.iter().map(move |c| (*port, c)))
        .filter(|(_, c)| is_keynote(&c.room))
        .collect();
    let keynote_meetings: BTreeSet<(u16, &str)> = keynote_calls
        .iter()
        .map(|(p, c)| (*p, c.meeting_id.as_str()))
        .collect();
    let keynote_first = keynote_calls.iter().min_by_key(|(_, c)| c.at_ms).copied();
    let mut breakouts_next_to_keynote = 0;
    let mut servers = Vec::new();
    for (port, log, running) in &logs {
        let holds_keynote = keynote_first.is_some_and(|(p, _)| p == *port);
        // Each meeting's room and first create on this server.
        let mut first: BTreeMap<&str, (&str, i64)> = BTreeMap::new();
        for c in log {
            first
                .entry(c.meeting_id.as_str())
                .or_insert((&c.room, c.at_ms));
        }
        if let (true, Some((_, kc))) = (holds_keynote, keynote_first) {
            breakouts_next_to_keynote += first
                .values()
                .filter(|(room, at)| !is_keynote(room) && *at > kc.at_ms)
                .count();
        }
        let expected_of = |room: &str| {
            if is_keynote(room) {
                k.setup.keynote_expected
            } else {
                k.setup.breakout_expected
            }
        };
        let mut server = KeynoteServer {
            port: *port,
            keynote: holds_keynote,
            keynote_participants: 0,
            meetings: running.len(),
            breakouts: 0,
            participants: 0,
            expected: 0,
        };
        for (meeting, participants) in running {
            let room = first.get(meeting.as_str()).map_or("", |(r, _)| *r);
            server.participants = server.participants.saturating_add(*participants);
            server.expected += u64::from((*participants).max(expected_of(room)));
            if is_keynote(room) {
                server.keynote_participants = *participants;
            } else {
                server.breakouts += 1;
            }
        }
        servers.push(server);
    }
    Ok(KeynoteFleet {
        servers,
        keynote_create_calls: keynote_calls.len(),
        keynote_meetings: keynote_meetings.len(),
        breakouts_next_to_keynote,
    })
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
