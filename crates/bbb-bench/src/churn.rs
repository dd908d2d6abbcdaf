//! `churn`: rooms whose meetings BBB keeps ending while sessions keep joining them. A chaos
//! driver ends meetings on the churn world's servers in turn by a moderator's `end` and by the
//! last user leaving (BBB ends the meeting a scaled minute later), and kills one server
//! halfway through; load sessions join random rooms in a closed loop, and observer sessions
//! follow every URL they get at the simulator, like a browser.
//!
//! A URL BBB refuses is classified by what the gateway could have known when it answered
//! (the URL's createTime names the meeting's instance):
//! - *broken*: BBB's end callback for that instance had been answered by the gateway before
//!   the join was asked — the gateway knew and still handed it out — or nothing explains the
//!   refusal (target: 0);
//! - *callback in flight*: asked after BBB ended the instance but before its callback was
//!   answered — no design that learns from callbacks can avoid these;
//! - *ended on the way*: BBB ended the instance after the URL was handed out, before the user
//!   followed it;
//! - *dead server*: the killed server's meetings, until a failed contact or the confirmation
//!   TTL told the gateway (how long after the kill is reported).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bbb_api::{AwcBbbClient, BbbApi, BbbClientConfig, ChecksumAlgorithm, Secret, ServerEndpoint};
use serde_json::json;

use super::pool::{ClientPool, Op, Script};
use super::scenarios::sessions;
use super::simctl::{self, CallbackSent};
use super::stats::{Latency, Report};
use super::target::{ChurnFleet, Target};
use super::world;

/// Observer sessions that follow their URLs.
const OBSERVERS: usize = 8;
/// How often the chaos driver ends a meeting.
const CHAOS_EVERY: Duration = Duration::from_millis(100);

/// A URL BBB refused: its server, meeting and instance, and when the join was asked (ms since
/// the epoch).
#[derive(Debug, Clone)]
struct Refused {
    port: Option<u16>,
    meeting_id: Option<String>,
    create_time: i64,
    asked_at_ms: i64,
}

/// What the observers saw.
#[derive(Default)]
struct Seen {
    followed: AtomicU64,
    failed_joins: AtomicU64,
    refused: Mutex<Vec<Refused>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn endpoint(fleet: &ChurnFleet, i: usize) -> ServerEndpoint {
    ServerEndpoint {
        base_url: format!(
            "http://127.0.0.1:{}/bigbluebutton",
            fleet.world.sim_ports[i]
        ),
        secret: Secret::new(fleet.secrets[i].clone()),
        algorithm: ChecksumAlgorithm::Sha256,
    }
}

/// The port of a `http://host:port/…` URL.
fn port_of(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// A query parameter of a join URL.
fn param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Follows a join URL like a browser: `true` when BBB let the user in (302 into the client).
async fn follow(client: &awc::Client, url: &str) -> bool {
    match client.get(url).send().await {
        Ok(resp) => resp.status().as_u16() == 302,
        Err(_) => false,
    }
}

/// When the chaos driver killed the victim (ms since the epoch), once it did.
type KilledAt = Arc<Mutex<Option<i64>>>;

/// The chaos driver: until `stop`, ends one running meeting every [`CHAOS_EVERY`],
/// alternating a moderator's `end` and the last user leaving; kills server 0 at `kill_at`
/// (reading its callback log first: the log dies with it). Returns (ended, emptied, the
/// victim's callbacks).
async fn chaos(
    fleet: &ChurnFleet,
    stop: &AtomicBool,
    kill_at: Instant,
    killed_at: &KilledAt,
) -> anyhow::Result<(u64, u64, Vec<CallbackSent>)> {
    let api = AwcBbbClient::new(BbbClientConfig::default());
    let (mut ended, mut emptied) = (0u64, 0u64);
    let mut victim_callbacks = Vec::new();
    let mut turn = 0usize;
    let mut killed = false;
    while !stop.load(Ordering::Relaxed) {
        actix_web::rt::time::sleep(CHAOS_EVERY).await;
        if !killed && Instant::now() >= kill_at {
            victim_callbacks = simctl::callbacks(fleet.world.sim_ports[0]).await?;
            // The server dies when its stop begins: from then on it answers nothing.
            if let Ok(mut at) = killed_at.lock() {
                *at = Some(now_ms());
            }
            killed = fleet.kill(0).await;
        }
        turn += 1;
        let i = turn % fleet.world.sim_ports.len();
        if killed && i == 0 {
            continue;
        }
        let ep = endpoint(fleet, i);
        let Ok(running) = api.get_meetings(&ep).await else {
            continue;
        };
        let Some(m) = running.get(turn % running.len().max(1)) else {
            continue;
        };
        if turn.is_multiple_of(2) {
            if api.end(&ep, &m.meeting_id).await.is_ok() {
                ended += 1;
            }
        } else {
            simctl::set_participants(fleet.world.sim_ports[i], &m.meeting_id, 0).await?;
            emptied += 1;
        }
    }
    Ok((ended, emptied, victim_callbacks))
}

/// One observer: joins rooms in turn until `stop`, following every URL.
async fn observe(
    ws_url: String,
    token: String,
    rooms: usize,
    offset: usize,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
) -> anyhow::Result<()> {
    let mut ws = bbb_gateway::client::WsClient::connect(&ws_url)
        .await
        .map_err(|e| anyhow::anyhow!("observer cannot connect: {e}"))?;
    let reply = ws
        .authenticate(json!({ "token": token }), Duration::from_secs(10))
        .await
        .map_err(|e| anyhow::anyhow!("observer cannot authenticate: {e:?}"))?;
    anyhow::ensure!(reply[0] == "authenticated", "observer refused: {reply}");
    let http = awc::Client::builder().disable_redirects().finish();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let room = world::churn_room((offset + n) % rooms);
        n += 1;
        let asked_at_ms = now_ms();
        let reply = ws
            .request(
                "bbb.room_url",
                json!(n),
                json!({ "room": room }),
                Duration::from_secs(15),
            )
            .await
            .map_err(|e| anyhow::anyhow!("observer lost its session: {e:?}"))?;
        let Some(url) = reply[2]["url"].as_str() else {
            seen.failed_joins.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        seen.followed.fetch_add(1, Ordering::Relaxed);
        if !follow(&http, url).await {
            if let Ok(mut refused) = seen.refused.lock() {
                refused.push(Refused {
                    port: port_of(url),
                    meeting_id: param(url, "meetingID"),
                    create_time: param(url, "createTime")
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0),
                    asked_at_ms,
                });
            }
        }
    }
    Ok(())
}

/// Why BBB refused a URL (see the module docs).
#[derive(Debug, Default)]
struct Classified {
    broken: u64,
    callback_in_flight: u64,
    ended_on_the_way: u64,
    dead_server: u64,
    /// The longest time after the kill a dead-server URL was asked for (ms).
    dead_server_max_after_kill_ms: i64,
}

fn classify(
    refused: &[Refused],
    callbacks: &[CallbackSent],
    victim_port: u16,
    killed_at_ms: Option<i64>,
) -> Classified {
    let mut c = Classified::default();
    for r in refused {
        // The end of the URL's instance: the first end of that meeting after it was created.
        let end = r.meeting_id.as_ref().and_then(|m| {
            callbacks
                .iter()
                .filter(|cb| &cb.meeting_id == m && cb.ended_at_ms >= r.create_time)
                .min_by_key(|cb| cb.ended_at_ms)
        });
        match (end, killed_at_ms) {
            (Some(cb), _) if cb.ended_at_ms > r.asked_at_ms + 1 => c.ended_on_the_way += 1,
            (Some(cb), _) if cb.answered_at_ms.is_some_and(|a| r.asked_at_ms > a) => c.broken += 1,
            (Some(_), _) => c.callback_in_flight += 1,
            (None, Some(killed)) if r.port == Some(victim_port) => {
                c.dead_server += 1;
                c.dead_server_max_after_kill_ms = c
                    .dead_server_max_after_kill_ms
                    .max(r.asked_at_ms.saturating_sub(killed));
            }
            (None, _) => c.broken += 1,
        }
    }
    c
}

/// Creates the churn servers received (the victim's counted before it died).
async fn creates(fleet: &ChurnFleet, skip: Option<usize>) -> u64 {
    let mut n = 0;
    for (i, p) in fleet.world.sim_ports.iter().enumerate() {
        if Some(i) == skip {
            continue;
        }
        n += simctl::creates(*p).await.map_or(0, |c| c.len() as u64);
    }
    n
}

/// The scenario; see the module docs.
pub async fn churn(
    target: &Target,
    rooms: usize,
    sessions_n: usize,
    threads: usize,
    duration: Duration,
    baseline: &Report,
) -> anyhow::Result<Report> {
    let fleet = target
        .churn
        .as_ref()
        .context("churn needs the bench's own churn servers")?;
    let rooms = rooms.max(1);
    let mut pool = ClientPool::new(threads).context("cannot start client threads")?;
    let connected = pool
        .connect(sessions(target, &fleet.world, "c", sessions_n)?, 64)
        .await;
    anyhow::ensure!(
        connected.error_count() == 0,
        "churn sessions could not connect: {:?}",
        connected.errors
    );
    // Every room runs before the clock starts.
    let warm: Script = Arc::new(move |s, n| {
        (n == 0 && s < rooms)
            .then(|| Op::request("bbb.room_url", &json!({"room": world::churn_room(s)})))
    });
    let warmed = pool.run(warm).await;
    anyhow::ensure!(
        warmed.error_count() == 0,
        "warming failed: {:?}",
        warmed.errors
    );
    let creates_before = creates(fleet, None).await;
    let started = Instant::now();
    let deadline = started + duration;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let killed_at: KilledAt = Arc::default();
    let victim_port = fleet.world.sim_ports[0];
    let observers: Vec<_> = (0..OBSERVERS)
        .map(|o| {
            let token = world::token(&fleet.world.secret, "observer", o)
                .map_err(|e| anyhow::anyhow!("cannot mint a token: {e}"));
            let ws_url = target.ws_url(&fleet.world.id);
            let (stop, seen) = (stop.clone(), seen.clone());
            async move { observe(ws_url, token?, rooms, o * 7, stop, seen).await }
        })
        .collect();
    let load: Script = Arc::new(move |s, n| {
        (Instant::now() < deadline).then(|| {
            Op::request(
                "bbb.room_url",
                &json!({"room": world::churn_room((s * 31 + n * 7) % rooms)}),
            )
        })
    });
    let kill_at = started + duration / 2;
    // The victim's creates are read just before it dies: its log dies with it.
    let victim_creates = async move {
        let wait = kill_at.saturating_duration_since(Instant::now());
        actix_web::rt::time::sleep(wait.saturating_sub(Duration::from_millis(50))).await;
        simctl::creates(victim_port)
            .await
            .map_or(0, |c| c.len() as u64)
    };
    let chaos_run = chaos(fleet, &stop, kill_at, &killed_at);
    let stopper = async {
        actix_web::rt::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
    };
    let (tally, observed, chaos_result, victim_creates, ()) = tokio::join!(
        pool.run(load),
        futures_util::future::join_all(observers),
        chaos_run,
        victim_creates,
        stopper,
    );
    let elapsed = started.elapsed();
    pool.close_all().await;
    for o in observed {
        o?;
    }
    let (ended, emptied, mut callbacks) = chaos_result?;
    for p in &fleet.world.sim_ports[1..] {
        callbacks.extend(simctl::callbacks(*p).await?);
    }
    let created = (creates(fleet, Some(0)).await + victim_creates).saturating_sub(creates_before);
    let killed = killed_at.lock().ok().and_then(|at| *at);
    let refused = seen.refused.lock().map(|r| r.clone()).unwrap_or_default();
    let c = classify(&refused, &callbacks, victim_port, killed);

    let mut r = Report::new("churn", sessions_n, &tally, elapsed);
    r.relate_to(baseline);
    let joins = tally.latencies_us.len() as u64 + seen.followed.load(Ordering::Relaxed);
    r.set("rooms", rooms);
    r.set("meetings_ended_by_end", ended);
    r.set("meetings_emptied", emptied);
    r.set("end_callbacks", callbacks.len());
    r.set("servers_killed", u8::from(killed.is_some()));
    r.set("urls_followed", seen.followed.load(Ordering::Relaxed));
    r.set("broken_urls", c.broken);
    r.set("refused_callback_in_flight", c.callback_in_flight);
    r.set("refused_ended_on_the_way", c.ended_on_the_way);
    r.set("refused_dead_server", c.dead_server);
    r.set(
        "dead_server_max_after_kill_ms",
        c.dead_server_max_after_kill_ms,
    );
    r.set(
        "observer_bbb_failed",
        seen.failed_joins.load(Ordering::Relaxed),
    );
    r.set("creates", created);
    r.set(
        "creates_per_join",
        (created as f64 / joins.max(1) as f64 * 10_000.0).round() / 10_000.0,
    );
    let lat = Latency::of(&tally.latencies_us);
    r.set("join_p99_ms", lat.p99_ms);
    r.target("0 broken URLs (end callbacks)", c.broken == 0);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_port_meeting_and_instance() {
        let url = "http://127.0.0.1:4321/bigbluebutton/api/join?meetingID=m%201&createTime=7";
        assert_eq!(port_of(url), Some(4321));
        assert_eq!(param(url, "meetingID").as_deref(), Some("m 1"));
        assert_eq!(param(url, "createTime").as_deref(), Some("7"));
        assert_eq!(port_of("http://bbb.example/api"), None);
        assert_eq!(port_of("nonsense"), None);
    }

    #[test]
    fn refused_urls_are_told_apart_by_what_the_gateway_knew() {
        let refused = |port, m: &str, created, at| Refused {
            port: Some(port),
            meeting_id: Some(m.into()),
            create_time: created,
            asked_at_ms: at,
        };
        let cb = |m: &str, ended, answered| CallbackSent {
            meeting_id: m.into(),
            ended_at_ms: ended,
            answered_at_ms: answered,
        };
        let callbacks = [cb("a", 100, Some(110)), cb("b", 100, None)];
        let c = classify(
            &[
                refused(1, "a", 50, 105),  // asked while the callback was in flight
                refused(1, "a", 50, 120),  // asked after the gateway answered it: broken
                refused(1, "a", 50, 90),   // handed out before BBB ended it
                refused(1, "b", 50, 300),  // the callback never got an answer: in flight
                refused(9, "a", 200, 520), // a newer instance on the killed server
                refused(1, "c", 50, 520),  // nothing explains it: broken
            ],
            &callbacks,
            9,
            Some(500),
        );
        assert_eq!(
            (
                c.broken,
                c.callback_in_flight,
                c.ended_on_the_way,
                c.dead_server
            ),
            (2, 2, 1, 1),
            "{c:?}"
        );
        assert_eq!(c.dead_server_max_after_kill_ms, 20);
    }
}
