//! Abuse controls: a flood costs the flooder, never the others. The per-session frame rate,
//! `user.update` writes one at a time, per-address connection and login limits (with the client
//! address taken from `X-Forwarded-For` only through trusted proxies), and logins that are
//! refused creating no users.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bbb_gateway::bbb::ChecksumAlgorithm;
use bbb_gateway::client::{Closed, WsClient as RawClient};
use bbb_gateway::config::{SessionConfig, Settings};
use serde_json::{json, Value};

use crate::fleet::add_sim;
use crate::helpers::{sample_world, spawn_app_with, token_for, wait_until, TestApp, WAIT};

/// The test client's address as a trusted proxy on loopback would report it.
fn behind_proxy(s: &mut Settings) {
    s.limits.trusted_proxies = vec!["127.0.0.1".parse().expect("an address")];
}

fn ws_url(app: &TestApp, world: &str) -> String {
    format!("ws://127.0.0.1:{}/ws/world/{world}/", app.port)
}

/// A connection that says (through the trusted proxy) it comes from `ip`.
async fn connect_from(app: &TestApp, world: &str, ip: &str) -> Result<RawClient, String> {
    RawClient::connect_with_headers(&ws_url(app, world), &[("X-Forwarded-For", ip)]).await
}

/// The status of a plain GET of the WebSocket route from `ip`: 429 when that address has its
/// connections used up, else 400 (not a WebSocket upgrade).
async fn plain_get_from(app: &TestApp, ip: &str) -> u16 {
    awc::Client::default()
        .get(ws_url(app, "w"))
        .insert_header(("X-Forwarded-For", ip))
        .send()
        .await
        .expect("an answer")
        .status()
        .as_u16()
}

async fn authenticated_from(app: &TestApp, world: &str, ip: &str, uid: &str) -> RawClient {
    let mut c = connect_from(app, world, ip).await.expect("connects");
    let reply = c
        .authenticate(json!({"token": token_for(uid, &[], Some(uid))}), WAIT)
        .await
        .expect("a reply");
    assert_eq!(reply[0], "authenticated", "{reply}");
    c
}

fn code(reply: &Value) -> &str {
    reply[reply.as_array().map_or(1, |a| a.len() - 1)]["code"]
        .as_str()
        .unwrap_or_default()
}

#[actix_web::test]
async fn connections_are_capped_per_client_address() {
    let app = spawn_app_with(
        |s| {
            behind_proxy(s);
            s.limits.connections_per_ip = 3;
        },
        SessionConfig::default(),
    )
    .await;
    app.import_world(&sample_world("w")).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(
            connect_from(&app, "w", "198.51.100.1")
                .await
                .expect("within the cap"),
        );
    }
    assert!(connect_from(&app, "w", "198.51.100.1").await.is_err());
    assert_eq!(plain_get_from(&app, "198.51.100.1").await, 429);
    // Other addresses, and the proxy's own, are not affected.
    let mut other = authenticated_from(&app, "w", "198.51.100.2", "bob").await;
    other.send(&json!(["ping", 1])).await.unwrap();
    assert_eq!(other.recv_within(WAIT).await.unwrap(), json!(["pong", 1]));
    assert_eq!(plain_get_from(&app, "198.51.100.3").await, 400);
    // One IPv6 /64 is one address.
    let _v6 = connect_from(&app, "w", "2001:db8:1:2::1")
        .await
        .expect("v6");
    let _v6b = connect_from(&app, "w", "2001:db8:1:2::2")
        .await
        .expect("v6");
    let _v6c = connect_from(&app, "w", "2001:db8:1:2::3")
        .await
        .expect("v6");
    assert_eq!(plain_get_from(&app, "2001:db8:1:2::ffff").await, 429);
    assert_eq!(plain_get_from(&app, "2001:db8:1:3::1").await, 400);
    // A closed connection frees its place.
    open.pop().expect("one").close().await;
    wait_until("the closed connection's place is free", WAIT, async || {
        plain_get_from(&app, "198.51.100.1").await == 400
    })
    .await;
    open.push(
        connect_from(&app, "w", "198.51.100.1")
            .await
            .expect("again"),
    );
}

#[actix_web::test]
async fn without_trusted_proxies_a_client_cannot_choose_its_address() {
    let app = spawn_app_with(
        |s| s.limits.connections_per_ip = 2,
        SessionConfig::default(),
    )
    .await;
    app.import_world(&sample_world("w")).await;
    let _a = connect_from(&app, "w", "198.51.100.1")
        .await
        .expect("first");
    let _b = connect_from(&app, "w", "198.51.100.2")
        .await
        .expect("second");
    // Every header names another address; all of them are 127.0.0.1 to the gateway.
    assert!(connect_from(&app, "w", "198.51.100.3").await.is_err());
    assert_eq!(plain_get_from(&app, "198.51.100.4").await, 429);
}

#[actix_web::test]
async fn logins_are_rate_limited_per_client_address() {
    let app = spawn_app_with(
        |s| {
            behind_proxy(s);
            s.limits.authenticate_per_ip_per_sec = 1;
            s.limits.authenticate_per_ip_burst = 3;
        },
        SessionConfig::default(),
    )
    .await;
    app.import_world(&sample_world("w")).await;
    let mut c = connect_from(&app, "w", "198.51.100.1")
        .await
        .expect("connects");
    let token = token_for("alice", &[], Some("Alice"));
    let mut logins = 0;
    let refusal = loop {
        assert!(logins < 20, "logins were never limited");
        let reply = c
            .request("authenticate", json!(logins), json!({"token": token}), WAIT)
            .await
            .expect("a reply");
        if reply[0] != "authenticated" {
            break reply;
        }
        logins += 1;
    };
    assert!(logins >= 3, "the burst is allowed: {logins}");
    assert_eq!(refusal[0], "error", "{refusal}");
    assert_eq!(refusal[1], json!(logins), "the id is echoed: {refusal}");
    assert_eq!(code(&refusal), "protocol.rate_limited", "{refusal}");
    // The frontend reconnects after a close, so the refusal closes with 1013 (try again later).
    assert_eq!(c.recv_within(WAIT).await, Err(Closed::Code(Some(1013))));
    // Another address logs in as usual.
    authenticated_from(&app, "w", "198.51.100.2", "bob").await;
}

#[actix_web::test]
async fn frames_over_the_rate_are_refused_then_the_connection_is_closed() {
    let app = spawn_app_with(
        |s| {
            s.limits.frames_per_sec = 1;
            s.limits.frames_burst = 10;
        },
        SessionConfig::default(),
    )
    .await;
    app.import_world(&sample_world("w")).await;
    let (mut bystander, _) = app.ws_as("w", "bob", &[], Some("Bob")).await;
    let mut c = authenticated_from(&app, "w", "198.51.100.1", "alice").await;
    // Far more than the burst (the login took one token), pipelined.
    for id in 0..60 {
        c.send(&json!(["room.enter", id, {"room": "room_1"}]))
            .await
            .unwrap();
    }
    let (mut answered, mut refused) = (0, 0);
    let end = loop {
        match c.recv_within(WAIT).await {
            Ok(reply) => {
                let id = answered + refused;
                assert_eq!(reply[1], json!(id), "replies in order, ids echoed: {reply}");
                if reply[0] == "success" {
                    answered += 1;
                } else {
                    assert_eq!(code(&reply), "protocol.rate_limited", "{reply}");
                    refused += 1;
                }
            }
            Err(end) => break end,
        }
    };
    assert!(answered >= 9, "the burst is served: {answered}");
    assert!(refused > 0, "frames over the rate are refused");
    assert_eq!(end, Closed::Code(Some(1008)));
    // The bystander did not notice.
    bystander.send(json!(["ping", 7])).await;
    assert_eq!(bystander.recv().await.unwrap(), json!(["pong", 7]));
}

#[actix_web::test]
async fn pipelined_profile_updates_are_all_answered_and_the_newest_accepted_one_is_stored() {
    let app = spawn_app_with(|_| {}, SessionConfig::default()).await;
    app.import_world(&sample_world("w")).await;
    let (mut c, _) = app.ws_as("w", "alice", &[], Some("Alice")).await;
    const N: i64 = 60;
    for id in 0..N {
        c.send(json!(["user.update", id, {"profile": {"display_name": format!("Name {id}")}}]))
            .await;
    }
    let mut ok = Vec::new();
    for _ in 0..N {
        let reply = c.recv().await.expect("every update is answered");
        let id = reply[1].as_i64().expect("an id");
        match reply[0].as_str() {
            Some("success") => ok.push(id),
            _ => assert_eq!(code(&reply), "protocol.rate_limited", "{reply}"),
        }
    }
    assert!(!ok.is_empty());
    let newest = *ok.iter().max().expect("one");
    // A new login returns the stored profile: the newest update that was accepted.
    let (_, login) = app.ws_as("w", "alice", &[], Some("Alice")).await;
    assert_eq!(
        login["user.config"]["profile"]["display_name"],
        format!("Name {newest}"),
        "accepted: {ok:?}"
    );
}

/// User rows of `world`.
async fn user_rows(app: &TestApp, world: &str) -> i64 {
    let world = world.to_owned();
    app.state
        .db
        .run(move |conn| bbb_gateway::db::users::count_in_world(conn, &world))
        .await
        .expect("a count")
}

#[actix_web::test]
async fn refused_logins_create_no_users() {
    let app = spawn_app_with(|_| {}, SessionConfig::default()).await;
    // Only members may view this world: anonymous users and tokens without the trait may not.
    let mut closed = sample_world("closed");
    closed["trait_grants"] = json!({"attendee": ["member"], "moderator": ["orga"]});
    app.import_world(&closed).await;
    app.import_world(&sample_world("open")).await;
    let mut c = app.ws("closed").await;
    for i in 0..30 {
        let reply = c
            .request("authenticate", i, json!({"client_id": format!("anon-{i}")}))
            .await;
        assert_eq!(code(&reply), "auth.missing_token", "{reply}");
        let token = token_for(&format!("guest-{i}"), &[], Some("Guest"));
        let reply = c
            .request("authenticate", i, json!({ "token": token }))
            .await;
        assert_eq!(code(&reply), "auth.denied", "{reply}");
    }
    assert_eq!(user_rows(&app, "closed").await, 0);
    let member = token_for("member-1", &["member"], Some("Member"));
    let reply = c
        .request("authenticate", 99, json!({ "token": member }))
        .await;
    assert_eq!(reply[0], "authenticated", "{reply}");
    assert_eq!(user_rows(&app, "closed").await, 1);
    // The same member's token without the trait now: refused, and the stored user learns its
    // traits (its other sessions lose access), but no row is added.
    let former = token_for("member-1", &[], Some("Member"));
    let reply = c
        .request("authenticate", 100, json!({ "token": former }))
        .await;
    assert_eq!(code(&reply), "auth.denied", "{reply}");
    assert_eq!(user_rows(&app, "closed").await, 1);
    // Where anonymous users may view, each client id is one user, created once.
    let mut o = app.ws("open").await;
    for id in ["a", "b", "a"] {
        let reply = o
            .request("authenticate", 1, json!({ "client_id": id }))
            .await;
        assert_eq!(reply[0], "authenticated", "{reply}");
    }
    assert_eq!(user_rows(&app, "open").await, 2);
}

/// Measuring clients.
const CLIENTS: usize = 100;
/// `user.update` + `bbb.room_url` rounds each measuring client runs per phase.
const ROUNDS: usize = 5;
/// Quiet and flooded phases alternate this many times, so a change in the machine's load
/// during the test weighs on both alike.
const ALTERNATIONS: usize = 3;
/// p99s below this count as equal. On a loaded 2-core machine one scheduling stall delays all
/// the clients at once, which alone puts a phase's p99 anywhere from 50 to 200 ms; a gateway
/// without the limits shows seconds during the flood.
const FLOOR: Duration = Duration::from_millis(100);
/// Frames the flooder pipelines on each connection.
const FLOOD_FRAMES: usize = 10_000;

fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    let i = (samples.len() * 99).div_ceil(100).saturating_sub(1);
    samples[i]
}

/// One phase: every client runs [`ROUNDS`] rounds of a profile update and a (warm) join,
/// one request at a time; returns every request's latency.
async fn measure(clients: &mut [RawClient], phase: usize) -> Vec<Duration> {
    let runs = clients.iter_mut().enumerate().map(|(i, c)| async move {
        let mut samples = Vec::with_capacity(ROUNDS * 2);
        for r in 0..ROUNDS {
            let id = (phase * ROUNDS + r) as i64;
            let name = format!("User {i} {phase} {r}");
            let started = Instant::now();
            let reply = c
                .request(
                    "user.update",
                    json!(id),
                    json!({"profile": {"display_name": name}}),
                    WAIT,
                )
                .await
                .expect("a reply");
            samples.push(started.elapsed());
            assert_eq!(reply, json!(["success", id, {}]));
            let started = Instant::now();
            let reply = c
                .request("bbb.room_url", json!(id), json!({"room": "room_1"}), WAIT)
                .await
                .expect("a reply");
            samples.push(started.elapsed());
            assert_eq!(reply[0], "success", "{reply}");
        }
        samples
    });
    futures_util::future::join_all(runs).await.concat()
}

/// What the flooder saw.
#[derive(Debug, Default)]
struct FloodStats {
    connections: usize,
    frames_sent: usize,
    answered: usize,
    rate_limited: usize,
    closed_1008: usize,
    logins_refused: usize,
}

/// Tells the flooder when to flood, and learns when the gateway pushes back.
#[derive(Default)]
struct FloodControl {
    /// Flood (else idle).
    on: AtomicBool,
    /// The gateway refused a frame since `on` was last set.
    refused: AtomicBool,
    stop: AtomicBool,
}

/// One client flooding from its own address, on a thread (and runtime) of its own: while
/// `on`, logs in, pipelines [`FLOOD_FRAMES`] valid `user.update` and `bbb.room_url` frames,
/// reads what comes back until the gateway closes the connection, and starts over.
fn start_flooder(url: String, control: Arc<FloodControl>) -> std::thread::JoinHandle<FloodStats> {
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let frames: Vec<String> = (0..FLOOD_FRAMES)
                .map(|i| {
                    if i % 2 == 0 {
                        json!(["user.update", i, {"profile": {"display_name": format!("Flood {i}")}}])
                    } else {
                        json!(["bbb.room_url", i, {"room": "room_1"}])
                    }
                    .to_string()
                })
                .collect();
            let token = token_for("flooder", &[], Some("Flooder"));
            let mut stats = FloodStats::default();
            while !control.stop.load(Ordering::SeqCst) {
                if !control.on.load(Ordering::SeqCst) {
                    actix_web::rt::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let headers = [("X-Forwarded-For", "203.0.113.66")];
                let Ok(mut c) = RawClient::connect_with_headers(&url, &headers).await else {
                    actix_web::rt::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                stats.connections += 1;
                match c.authenticate(json!({ "token": token }), WAIT).await {
                    Ok(r) if r[0] == "authenticated" => {}
                    _ => {
                        stats.logins_refused += 1;
                        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
                if c.send_pipelined(&frames).await.is_ok() {
                    stats.frames_sent += frames.len();
                }
                loop {
                    match c.recv_within(Duration::from_secs(2)).await {
                        Ok(reply) if reply[0] == "success" => stats.answered += 1,
                        Ok(reply) => {
                            if code(&reply) == "protocol.rate_limited" {
                                stats.rate_limited += 1;
                                control.refused.store(true, Ordering::SeqCst);
                            }
                        }
                        Err(Closed::Code(Some(1008))) => {
                            stats.closed_1008 += 1;
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            stats
        })
    })
}

#[actix_web::test]
async fn a_flood_from_one_client_costs_the_others_nothing() {
    let app = spawn_app_with(behind_proxy, SessionConfig::default()).await;
    app.import_world(&sample_world("w")).await;
    let _sim = add_sim(&app, 0, ChecksumAlgorithm::Sha256).await;
    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let ip = format!("198.51.100.{}", i + 1);
        let mut c = authenticated_from(&app, "w", &ip, &format!("user-{i}")).await;
        // The room's meeting runs from the first join on: later joins are answered warm.
        let reply = c
            .request("bbb.room_url", json!(-1), json!({"room": "room_1"}), WAIT)
            .await
            .expect("a reply");
        assert_eq!(reply[0], "success", "{reply}");
        clients.push(c);
    }

    let control = Arc::new(FloodControl::default());
    let flooder = start_flooder(ws_url(&app, "w"), control.clone());
    // Unmeasured: the first phase pays for warming up.
    measure(&mut clients, 0).await;
    let (mut quiet, mut flooded) = (Vec::new(), Vec::new());
    for phase in 0..ALTERNATIONS {
        quiet.extend(measure(&mut clients, 2 * phase + 1).await);
        control.refused.store(false, Ordering::SeqCst);
        control.on.store(true, Ordering::SeqCst);
        wait_until("the flood is under way", WAIT, async || {
            control.refused.load(Ordering::SeqCst)
        })
        .await;
        flooded.extend(measure(&mut clients, 2 * phase + 2).await);
        control.on.store(false, Ordering::SeqCst);
    }
    control.stop.store(true, Ordering::SeqCst);
    let stats = actix_web::web::block(move || flooder.join())
        .await
        .expect("joined")
        .expect("the flooder ran");

    let (quiet_p99, flooded_p99) = (p99(&mut quiet), p99(&mut flooded));
    eprintln!(
        "{CLIENTS} clients, {} requests per phase: p99 quiet {quiet_p99:?}, during the flood \
         {flooded_p99:?}; flooder: {stats:?}",
        quiet.len()
    );
    assert!(stats.rate_limited > 0, "the flooder was limited: {stats:?}");
    assert!(stats.closed_1008 > 0, "and cut off: {stats:?}");
    assert!(
        flooded_p99 <= 2 * quiet_p99.max(FLOOR),
        "p99 during the flood {flooded_p99:?} > 2 × quiet p99 {quiet_p99:?} (floor {FLOOR:?}); \
         flooder: {stats:?}"
    );
}
