//! `fleet-scale`: what a large fleet costs two instances (poll leader and follower) on one
//! PostgreSQL database when nothing changes: many bbb-sim servers, many running meetings, and a
//! meetings table holding a long history (private-call meetings that ended long ago, written
//! straight into the table). Measured per instance: CPU time per poll round (leader) and per
//! follow round (follower), from `/proc/PID/stat` over many rounds at a short poll interval,
//! also given as a share of one core at the production interval of 15 s; resident memory; and
//! the p99 of warm joins (paced, spread over both instances) while the rounds run.
//!
//! Everything is measured twice in the same run: first *quiet* (the same servers, only the warm
//! rooms running, an empty history), then, after the instances are restarted on the history
//! and every meeting is started, *at scale*. The at-scale joins relate to the quiet ones.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use diesel::connection::SimpleConnection;
use serde_json::{json, Value};

use bbb_gateway::db::testing::TestDb;
use bbb_gateway::db::DbConn;
use bbb_gateway::ids::ServerId;

use super::cluster::{self, Cluster, ClusterConfig, InstanceMode};
use super::pool::{ClientPool, Op, Script, SessionSpec};
use super::stats::{Report, Tally};
use super::target::start_sims;
use super::{sys, world};

/// Index of the first `fleet-scale` sim (its secret's number).
const FLEET_SIMS_FROM: usize = 1000;

/// The poll interval the per-round CPU is scaled to (the production default).
const PRODUCTION_INTERVAL_S: f64 = 15.0;

/// Historical rows inserted per statement.
const HISTORY_BATCH: usize = 100_000;

/// Sizes of the `fleet-scale` scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetPlan {
    /// bbb-sim servers.
    pub servers: usize,
    /// Running meetings (one room each) at scale.
    pub meetings: usize,
    /// Ended meetings written into the table before the instances restart.
    pub history: usize,
    /// `bbb.poll_interval_secs` during the measurement (short, to get many rounds).
    pub poll_interval_secs: u64,
    /// Rounds the CPU is measured over, in each phase.
    pub rounds: u64,
    /// Sessions of the warm joins, spread over both instances.
    pub join_sessions: usize,
    /// Warm rooms the joins go to (running in both phases).
    pub join_rooms: usize,
    /// Joins per session per second, and for how long.
    pub join_rate: u32,
    pub join_secs: u64,
}

/// Where an instance's CPU went over a number of its rounds.
struct RoundCost {
    rounds: u64,
    elapsed: Duration,
    cpu: Option<Duration>,
}

impl RoundCost {
    fn set(&self, r: &mut Report, who: &str) {
        r.set(&format!("{who}_rounds"), self.rounds);
        let per_round_ms = self.elapsed.as_secs_f64() * 1e3 / self.rounds.max(1) as f64;
        r.set(&format!("{who}_ms_between_rounds"), round1(per_round_ms));
        match self.cpu {
            Some(cpu) if self.rounds > 0 => {
                let per = cpu.as_secs_f64() / self.rounds as f64;
                r.set(&format!("{who}_cpu_ms_per_round"), round1(per * 1e3));
                r.set(
                    &format!("{who}_cpu_pct_of_core_at_15s"),
                    (per / PRODUCTION_INTERVAL_S * 1e4).round() / 100.0,
                );
            }
            _ => {
                r.set(
                    &format!("{who}_cpu_ms_per_round"),
                    "not measured (in-process)",
                );
            }
        }
    }

    fn pct_at_15s(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (self.rounds > 0)
            .then(|| cpu.as_secs_f64() / self.rounds as f64 / PRODUCTION_INTERVAL_S * 100.0)
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Runs the scenario; `Ok(None)` when there is no PostgreSQL (skipped, said on stderr).
/// Reports `fleet-quiet` (the quiet phase: its joins are the baseline) and `fleet-scale`.
pub async fn fleet_scale(
    mode: &InstanceMode,
    plan: FleetPlan,
    threads: usize,
) -> anyhow::Result<Option<Vec<Report>>> {
    let Some(db) = cluster::postgres()? else {
        return Ok(None);
    };
    let sims = start_sims(FLEET_SIMS_FROM, plan.servers.max(1), 1.0).await?;
    let result = async {
        let rooms = plan.meetings.max(plan.join_rooms).max(1);
        let worlds: Vec<Value> = (0..worlds_for(rooms)).map(world::fleet_world).collect();
        cluster::import_worlds(&db, &worlds).await?;
        let urls: Vec<String> = sims.iter().map(|s| s.base_url()).collect();
        // Servers shared by every world: any world's meetings may land on any of them.
        let ids = cluster::register(&db, &urls, FLEET_SIMS_FROM, None).await?;
        let config = ClusterConfig {
            mode: mode.clone(),
            database_url: db.url.clone(),
            poll_interval_secs: plan.poll_interval_secs,
            lease_ms: 10_000,
        };
        run_phases(&db, &config, &ids, plan, threads).await
    }
    .await;
    for s in sims {
        s.stop().await;
    }
    result.map(Some)
}

async fn run_phases(
    db: &TestDb,
    config: &ClusterConfig,
    ids: &[ServerId],
    plan: FleetPlan,
    threads: usize,
) -> anyhow::Result<Vec<Report>> {
    let online_within = Duration::from_secs(plan.poll_interval_secs * 3 + 60);
    let warm_rooms = plan.join_rooms.clamp(1, world::FLEET_ROOMS_PER_WORLD);

    // Quiet: the warm rooms only, no history.
    let cluster = Cluster::start(config.clone(), 2).await?;
    let quiet = async {
        cluster.wait_online(ids.len(), online_within).await?;
        let started = first_joins(&cluster, 0..warm_rooms, threads).await?;
        require_ok("starting the warm rooms", &started)?;
        let cost = round_costs(&cluster, plan).await?;
        let rss = rss_of(&cluster);
        let mut r = paced_joins(&cluster, plan, threads, "fleet-quiet").await?;
        r.set("running_meetings", warm_rooms);
        r.set("history_rows", 0);
        set_costs(&mut r, &cost, &rss);
        anyhow::Ok(r)
    }
    .await;
    cluster.stop().await;
    let quiet = quiet?;

    // At scale: the history written, the instances restarted on it, every meeting started.
    let started = Instant::now();
    insert_history(db, ids, plan.history).await?;
    let history_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let cluster = Cluster::start(config.clone(), 2).await?;
    let start_s = started.elapsed().as_secs_f64();
    let loaded = async {
        cluster.wait_online(ids.len(), online_within).await?;
        let rss_started = rss_of(&cluster);
        let rooms = plan.meetings.max(warm_rooms);
        let started = Instant::now();
        let created = first_joins(&cluster, warm_rooms..rooms, threads).await?;
        let create_s = started.elapsed().as_secs_f64();
        // A few first joins may fail under this load (join deadline); more is a broken run.
        let failed = created.error_count() as usize;
        if failed * 20 > rooms {
            bail!("starting the meetings failed: {:?}", created.errors);
        }
        let expected = (rooms - failed) as u64;
        let leader = cluster
            .leader()
            .await?
            .context("no instance leads after the restart")?;
        // Until the leader's polls list every meeting.
        cluster
            .wait_for(
                "the leader's polls to list every meeting",
                online_within,
                |c| {
                    Box::pin(async move {
                        let s = c.instances[leader].status().await?;
                        Ok(s["totals"]["meetings"].as_u64().unwrap_or(0) >= expected)
                    })
                },
            )
            .await?;
        let cost = round_costs(&cluster, plan).await?;
        let rss = rss_of(&cluster);
        let mut r = paced_joins(&cluster, plan, threads, "fleet-scale").await?;
        r.relate_to(&quiet);
        let listed = cluster.instances[leader].status().await?["totals"]["meetings"].clone();
        r.set("running_meetings", listed);
        r.set("meetings_start_errors", json!(created.errors));
        let start = super::stats::Latency::of(&created.latencies_us);
        r.set("meetings_start_p50_ms", start.p50_ms);
        r.set("meetings_start_p99_ms", start.p99_ms);
        r.set("history_rows", plan.history);
        r.set("history_insert_s", round1(history_s));
        r.set("restart_s", round1(start_s));
        r.set("meetings_started_s", round1(create_s));
        r.set(
            "rss_after_restart_kib",
            json!(rss_started.iter().map(|(_, v)| *v).collect::<Vec<_>>()),
        );
        set_costs(&mut r, &cost, &rss);
        let within = [&cost.0, &cost.1]
            .iter()
            .filter_map(|c| c.pct_at_15s())
            .collect::<Vec<_>>();
        if within.len() == 2 {
            r.target(
                "leader and follower <= 5 % of one core at a 15 s interval",
                within.iter().all(|p| *p <= 5.0),
            );
        }
        anyhow::Ok(r)
    }
    .await;
    cluster.stop().await;
    let mut loaded = loaded?;
    loaded.set("servers", ids.len());
    Ok(vec![quiet, loaded])
}

fn require_ok(what: &str, tally: &Tally) -> anyhow::Result<()> {
    if tally.error_count() > 0 {
        bail!("{what} failed: {:?}", tally.errors);
    }
    Ok(())
}

/// Worlds needed for `rooms` rooms.
fn worlds_for(rooms: usize) -> usize {
    rooms.div_ceil(world::FLEET_ROOMS_PER_WORLD).max(1)
}

/// Sessions of `prefix` in `worlds` worlds, session `s` in world `s % worlds`, the sessions of
/// each world alternating between the instances.
fn world_sessions(
    cluster: &Cluster,
    worlds: usize,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<SessionSpec>> {
    let secret = world::jwt_secret(world::SECRET);
    let instances = cluster.instances.len().max(1);
    (0..n)
        .map(|s| {
            let token = world::token(&secret, prefix, s)
                .map_err(|e| anyhow::anyhow!("cannot mint a token: {e}"))?;
            let inst = &cluster.instances[(s / worlds.max(1)) % instances];
            Ok(SessionSpec {
                index: s,
                url: inst.ws_url(&world::fleet_world_id(s % worlds.max(1))),
                token: Some(token),
            })
        })
        .collect()
}

/// First joins of the rooms numbered `rooms` (each URL opened at the server, so BBB counts a
/// participant and the meeting does not expire), by 2 sessions per world over both instances.
async fn first_joins(
    cluster: &Cluster,
    rooms: std::ops::Range<usize>,
    threads: usize,
) -> anyhow::Result<Tally> {
    let worlds = worlds_for(rooms.end);
    let sessions = worlds * 2;
    // Each session's rooms: those of its world, every other one.
    let mut lists: Vec<Vec<Op>> = vec![Vec::new(); sessions];
    for (k, i) in rooms.enumerate() {
        let w = i / world::FLEET_ROOMS_PER_WORLD;
        let (_, room) = world::fleet_room(i);
        lists[w + worlds * (k % 2)].push(Op::request_and_follow(
            "bbb.room_url",
            &json!({ "room": room }),
        ));
    }
    let mut pool = ClientPool::new(threads).context("cannot start client threads")?;
    let connected = pool
        .connect(world_sessions(cluster, worlds, "start", sessions)?, 64)
        .await;
    require_ok("connecting the starters", &connected)?;
    let lists = Arc::new(lists);
    let script: Script = Arc::new(move |s, n| lists.get(s).and_then(|l| l.get(n)).cloned());
    let tally = pool.run(script).await;
    pool.close_all().await;
    Ok(tally)
}

/// Warm joins at a steady pace: every session asks `join_rate` times a second for one of the
/// warm rooms, for `join_secs`, sessions offset evenly so the joins do not come in waves.
async fn paced_joins(
    cluster: &Cluster,
    plan: FleetPlan,
    threads: usize,
    name: &str,
) -> anyhow::Result<Report> {
    let sessions = plan.join_sessions.max(1);
    let mut pool = ClientPool::new(threads).context("cannot start client threads")?;
    let connected = pool
        .connect(world_sessions(cluster, 1, "warm", sessions)?, 64)
        .await;
    require_ok("connecting the join sessions", &connected)?;
    let gap = Duration::from_secs(1) / plan.join_rate.max(1);
    let joins = (u64::from(plan.join_rate) * plan.join_secs).max(1) as usize;
    // The warm rooms are the first ones, all in world 0.
    let rooms = plan.join_rooms.clamp(1, world::FLEET_ROOMS_PER_WORLD);
    let ops: Arc<Vec<Op>> = Arc::new(
        (0..rooms)
            .map(|i| Op::request("bbb.room_url", &json!({ "room": world::fleet_room(i).1 })))
            .collect(),
    );
    let script: Script = Arc::new(move |s, n| {
        if n == 0 {
            let offset = gap * u32::try_from(s).unwrap_or(0) / u32::try_from(sessions).unwrap_or(1);
            return Some(Op::Pause(offset));
        }
        let k = (n - 1) / 2;
        if k >= joins {
            return None;
        }
        if n % 2 == 1 {
            Some(ops[(s + k) % rooms].clone())
        } else {
            Some(Op::Pause(gap))
        }
    });
    let started = Instant::now();
    let tally = pool.run(script).await;
    let elapsed = started.elapsed();
    pool.close_all().await;
    let mut r = Report::new(name, sessions, &tally, elapsed);
    r.set(
        "join_rate_per_s",
        u64::from(plan.join_rate) * sessions as u64,
    );
    r.set("join_rooms", rooms);
    Ok(r)
}

/// The CPU of the leader and the follower over at least `plan.rounds` of their rounds, with
/// no load but the rounds themselves (and the processes' other timers).
async fn round_costs(cluster: &Cluster, plan: FleetPlan) -> anyhow::Result<(RoundCost, RoundCost)> {
    let leader = cluster.leader().await?.context("no instance leads")?;
    let follower = (0..cluster.instances.len())
        .find(|i| *i != leader)
        .context("no follower")?;
    let rounds = |s: &Value, key: &str| s["gateway"][key].as_u64().unwrap_or(0);
    let read = |i: usize| {
        let pid = cluster.instances[i].pid;
        async move {
            let status = cluster.instances[i].status().await?;
            anyhow::Ok((pid.and_then(|p| sys::process_cpu(Some(p))), status))
        }
    };
    let started = Instant::now();
    let (l_cpu0, l0) = read(leader).await?;
    let (f_cpu0, f0) = read(follower).await?;
    let want = rounds(&l0, "poll_rounds") + plan.rounds;
    let interval = Duration::from_secs(plan.poll_interval_secs.max(1));
    let deadline = Instant::now() + interval * u32::try_from(plan.rounds * 3 + 10).unwrap_or(100);
    // Asked as rarely as possible: every status request is work for the instance too.
    actix_web::rt::time::sleep(interval * u32::try_from(plan.rounds).unwrap_or(1)).await;
    loop {
        let s = cluster.instances[leader].status().await?;
        if rounds(&s, "poll_rounds") >= want || Instant::now() > deadline {
            break;
        }
        actix_web::rt::time::sleep(interval).await;
    }
    let (l_cpu1, l1) = read(leader).await?;
    let (f_cpu1, f1) = read(follower).await?;
    let elapsed = started.elapsed();
    let cost =
        |c0: Option<Duration>, c1: Option<Duration>, s0: &Value, s1: &Value, key| RoundCost {
            rounds: rounds(s1, key).saturating_sub(rounds(s0, key)),
            elapsed,
            cpu: c0.zip(c1).map(|(a, b)| b.saturating_sub(a)),
        };
    Ok((
        cost(l_cpu0, l_cpu1, &l0, &l1, "poll_rounds"),
        cost(f_cpu0, f_cpu1, &f0, &f1, "follow_rounds"),
    ))
}

/// Resident memory of each child instance (KiB), by index.
fn rss_of(cluster: &Cluster) -> Vec<(usize, u64)> {
    cluster
        .instances
        .iter()
        .enumerate()
        .filter_map(|(i, inst)| inst.pid.and_then(|p| sys::rss_kib(Some(p))).map(|r| (i, r)))
        .collect()
}

fn set_costs(r: &mut Report, cost: &(RoundCost, RoundCost), rss: &[(usize, u64)]) {
    cost.0.set(r, "leader");
    cost.1.set(r, "follower");
    if !rss.is_empty() {
        r.set(
            "rss_kib",
            json!(rss.iter().map(|(_, v)| *v).collect::<Vec<_>>()),
        );
    }
}

/// Writes `n` meetings of private calls that ended long ago (40 days and more), spread over
/// `servers`, in statements of [`HISTORY_BATCH`] rows.
async fn insert_history(db: &TestDb, servers: &[ServerId], n: usize) -> anyhow::Result<()> {
    if n == 0 {
        return Ok(());
    }
    let ids = servers
        .iter()
        .map(|s| s.get().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let count = servers.len().max(1);
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(i64::MAX);
    // Every row a second older than the one before, the newest ended 40 days ago.
    let newest = now - 40 * 86_400_000;
    let mut from = 1;
    while from <= n {
        let to = (from + HISTORY_BATCH - 1).min(n);
        let sql = format!(
            "INSERT INTO meetings (meeting_key, world_id, room_id, call_id, server_id, \
                 meeting_id, attendee_pw, moderator_pw, create_time, created_at, updated_at, \
                 callback_issued_at, ended_at, creating_by, creating_until) \
             SELECT 'call:' || c, '{world}', NULL, c, (ARRAY[{ids}])[1 + g % {count}], \
                 md5('meeting' || g), md5('attendee' || g), md5('moderator' || g), \
                 t, t, t + 3600000, NULL, t + 3600000, NULL, NULL \
             FROM (SELECT g, md5('call' || g)::uuid::text AS c, \
                 {newest}::bigint - 3600000 - g::bigint * 1000 AS t \
                 FROM generate_series({from}, {to}) AS g) s",
            world = world::fleet_world_id(0),
        );
        let pooled = db.db.clone();
        pooled
            .run(move |c| {
                if let DbConn::Postgres(pg) = c {
                    pg.batch_execute(&sql)?;
                }
                Ok(())
            })
            .await
            .context("cannot write the history")?;
        from = to + 1;
    }
    let pooled = db.db.clone();
    pooled
        .run(|c| {
            if let DbConn::Postgres(pg) = c {
                pg.batch_execute("ANALYZE meetings")?;
            }
            Ok(())
        })
        .await
        .context("cannot analyze the history")?;
    Ok(())
}
