//! Meeting liveness end to end, against bbb-sim with BBB's lifecycle (time-scaled): every join
//! URL the gateway hands out must work when the user follows it, also right after BBB ended
//! the meeting (a moderator's `end`, nobody joined, the last user left) or its server died —
//! at once with end callbacks, and once the confirmation TTL has passed without them.

use std::time::{Duration, Instant};

use bbb_gateway::bbb::{AwcBbbClient, BbbApi, BbbClientConfig, ChecksumAlgorithm};
use bbb_gateway::coordinator::{GetFleetStatus, PollNow};
use bbb_sim::{self as sim, SimConfig, SimHandle};
use serde_json::{json, Value};

use crate::fleet::*;
use crate::helpers::*;

/// BBB minutes last 0.1 s: nobody joined → ends after 0.5 s, last user left → after 0.1 s.
const TIME_SCALE: f64 = 600.0;
/// The confirmation TTL of the gateways whose tests let it pass.
const TTL: Duration = Duration::from_millis(300);
/// The TTL of gateways whose tests must work by end callbacks alone: it never passes.
const LONG_TTL: Duration = Duration::from_secs(600);

pub fn scaled_sim_config(i: usize) -> SimConfig {
    SimConfig {
        time_scale: TIME_SCALE,
        ..sim_config(i)
    }
}

/// How long the conditions of these tests may take.
const WITHIN: Duration = Duration::from_secs(15);

/// Lets the confirmation TTL pass: what the gateway knew before is no longer trusted.
async fn ttl_passes() {
    let since = Instant::now();
    wait_until("the confirmation TTL passed", WITHIN, async || {
        since.elapsed() > TTL
    })
    .await;
}

/// A gateway with the test world, the given end-callback setting and confirmation TTL.
pub async fn liveness_gateway(callbacks: bool, ttl: Duration) -> TestApp {
    let app = spawn_app_with(
        |s| {
            s.bbb.confirm_ttl_ms = ttl.as_millis() as u64;
            s.bbb.end_callbacks = callbacks;
        },
        bbb_gateway::config::SessionConfig::default(),
    )
    .await;
    app.import_world(&sample_world("w1")).await;
    app
}

/// Starts scaled sim `i` (on `port`, or a free one) and registers it.
pub async fn add_scaled_sim(app: &TestApp, i: usize) -> SimHandle {
    let sim = sim::start("127.0.0.1:0".parse().unwrap(), scaled_sim_config(i))
        .await
        .unwrap();
    register(app, &sim, i, ChecksumAlgorithm::Sha256).await;
    sim
}

/// A moderator presses "End meeting" in BBB.
async fn end_in_bbb(join_url: &str, i: usize) {
    let client = AwcBbbClient::new(BbbClientConfig::default());
    let mid = query(join_url)["meetingID"].clone();
    client
        .end(&sim_endpoint(port_of(join_url), i), &mid)
        .await
        .expect("end");
}

/// Whether the sim still has the meeting of `join_url`.
async fn runs(join_url: &str, i: usize) -> bool {
    let client = AwcBbbClient::new(BbbClientConfig::default());
    let mid = query(join_url)["meetingID"].clone();
    client
        .get_meetings(&sim_endpoint(port_of(join_url), i))
        .await
        .expect("getMeetings")
        .iter()
        .any(|m| m.meeting_id == mid)
}

async fn end_callbacks_received(app: &TestApp) -> u64 {
    app.state
        .coordinator
        .send(GetFleetStatus)
        .await
        .unwrap()
        .stats
        .end_callbacks
}

/// Follows a join URL like a browser: `Ok` when BBB let the user in; `Err` with what the
/// user saw otherwise (a BBB error, or a host that does not answer).
async fn follow(url: &str) -> Result<(), String> {
    let client = awc::Client::builder().disable_redirects().finish();
    let mut resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    if resp.status().as_u16() == 302 {
        return open_join(url).await.map(|_| ());
    }
    let body = resp.body().await.map_err(|e| e.to_string())?;
    Err(String::from_utf8_lossy(&body).into_owned())
}

/// Joins `room_1` and follows the URL like a browser: it must land in the meeting.
async fn join_and_follow(c: &mut WsClient) -> String {
    let url = c.room_url("room_1").await;
    let landed = open_join(&url).await;
    assert!(landed.is_ok(), "{url} was refused: {landed:?}");
    url
}

/// After BBB ended the meeting behind `url` (however), the gateway must not hand out a URL
/// for it: with callbacks once the callback arrived, without them once the TTL passed.
async fn next_join_works(
    app: &TestApp,
    c: &mut WsClient,
    url: &str,
    i: usize,
    callbacks: bool,
    before: u64,
) {
    wait_until("BBB ended the meeting", WITHIN, async || {
        !runs(url, i).await
    })
    .await;
    if callbacks {
        wait_until("the end callback reached the gateway", WITHIN, async || {
            end_callbacks_received(app).await > before
        })
        .await;
    } else {
        ttl_passes().await;
    }
    let again = join_and_follow(c).await;
    assert_eq!(
        query(&again)["meetingID"],
        query(url)["meetingID"],
        "the same meeting, created again"
    );
    assert_ne!(query(&again)["createTime"], query(url)["createTime"]);
}

/// With callbacks the TTL never passes in the test: only the callback can make it work.
fn scenario_ttl(callbacks: bool) -> Duration {
    if callbacks {
        LONG_TTL
    } else {
        TTL
    }
}

async fn moderator_ends_the_meeting(callbacks: bool) {
    let app = liveness_gateway(callbacks, scenario_ttl(callbacks)).await;
    let _sim = add_scaled_sim(&app, 1).await;
    let (mut c, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let url = join_and_follow(&mut c).await;
    let before = end_callbacks_received(&app).await;
    end_in_bbb(&url, 1).await;
    next_join_works(&app, &mut c, &url, 1, callbacks, before).await;
}

#[actix_web::test]
async fn after_a_moderator_ends_the_meeting_with_callbacks() {
    moderator_ends_the_meeting(true).await;
}

#[actix_web::test]
async fn after_a_moderator_ends_the_meeting_without_callbacks() {
    moderator_ends_the_meeting(false).await;
}

async fn nobody_joined(callbacks: bool) {
    let app = liveness_gateway(callbacks, scenario_ttl(callbacks)).await;
    let _sim = add_scaled_sim(&app, 1).await;
    let (mut c, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let before = end_callbacks_received(&app).await;
    // Asked for, never opened: BBB ends it when nobody joined in 5 (scaled) minutes.
    let url = c.room_url("room_1").await;
    next_join_works(&app, &mut c, &url, 1, callbacks, before).await;
}

#[actix_web::test]
async fn after_bbb_ended_a_meeting_nobody_joined_with_callbacks() {
    nobody_joined(true).await;
}

#[actix_web::test]
async fn after_bbb_ended_a_meeting_nobody_joined_without_callbacks() {
    nobody_joined(false).await;
}

async fn last_user_left(callbacks: bool) {
    let app = liveness_gateway(callbacks, scenario_ttl(callbacks)).await;
    let _sim = add_scaled_sim(&app, 1).await;
    let (mut c, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let url = join_and_follow(&mut c).await;
    let before = end_callbacks_received(&app).await;
    // Everyone leaves: BBB ends it a (scaled) minute later.
    set_participants(&url, json!({"participants": 0})).await;
    next_join_works(&app, &mut c, &url, 1, callbacks, before).await;
}

#[actix_web::test]
async fn after_the_last_user_left_with_callbacks() {
    last_user_left(true).await;
}

#[actix_web::test]
async fn after_the_last_user_left_without_callbacks() {
    last_user_left(false).await;
}

async fn server_died(callbacks: bool) {
    let app = liveness_gateway(callbacks, LONG_TTL).await;
    let sim1 = add_scaled_sim(&app, 1).await;
    let sim2 = add_scaled_sim(&app, 2).await;
    let (mut c, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let url = join_and_follow(&mut c).await;
    let (dead, alive) = if port_of(&url) == sim1.port() {
        (sim1, sim2)
    } else {
        (sim2, sim1)
    };
    // The server dies between two polls; a dead server calls nobody back. Once one request
    // failed there (here the next poll), joins of its meetings work again at once.
    dead.stop().await;
    app.state.coordinator.send(PollNow).await.unwrap();
    let moved = join_and_follow(&mut c).await;
    assert_eq!(port_of(&moved), alive.port());
    assert_eq!(query(&moved)["meetingID"], query(&url)["meetingID"]);
}

#[actix_web::test]
async fn after_the_server_died_with_callbacks() {
    server_died(true).await;
}

#[actix_web::test]
async fn after_the_server_died_without_callbacks() {
    server_died(false).await;
}

#[actix_web::test]
async fn after_the_server_died_the_ttl_alone_moves_the_meeting() {
    let app = liveness_gateway(false, TTL).await;
    let sim1 = add_scaled_sim(&app, 1).await;
    let sim2 = add_scaled_sim(&app, 2).await;
    let (mut c, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let url = join_and_follow(&mut c).await;
    let (dead, alive) = if port_of(&url) == sim1.port() {
        (sim1, sim2)
    } else {
        (sim2, sim1)
    };
    dead.stop().await;
    // No poll, no callback: the first join past the TTL re-confirms, fails there, and is
    // placed on the live server within the same request.
    ttl_passes().await;
    let moved = join_and_follow(&mut c).await;
    assert_eq!(port_of(&moved), alive.port());
}

#[actix_web::test]
async fn end_callbacks_with_forged_or_stale_tokens_are_404_and_change_nothing() {
    let app = liveness_gateway(true, LONG_TTL).await;
    let sim = add_scaled_sim(&app, 1).await;
    let (mut c, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let url = join_and_follow(&mut c).await;
    let token = creates(sim.port()).await[0]["meta_endCallbackUrl"]
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let client = awc::Client::default();
    let get = |path: String| {
        let client = client.clone();
        let url = app.url(&path);
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    let (head, mac) = token.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", "0".repeat(mac.len()));
    for bad in [forged, "nonsense".into(), format!("{head}0.{mac}")] {
        assert_eq!(get(format!("/bbb/callback/end/{bad}")).await, 404, "{bad}");
    }
    // Still answered from memory: nothing was ended.
    let again = join_and_follow(&mut c).await;
    assert_eq!(query(&again)["createTime"], query(&url)["createTime"]);
    // BBB ends it and calls back; the next join creates a new instance. The old instance's
    // callback, replayed, is stale: 404.
    let before = end_callbacks_received(&app).await;
    end_in_bbb(&url, 1).await;
    wait_until("the end callback reached the gateway", WITHIN, async || {
        end_callbacks_received(&app).await > before
    })
    .await;
    let recreated = join_and_follow(&mut c).await;
    assert_ne!(query(&recreated)["createTime"], query(&url)["createTime"]);
    let replay = format!("/bbb/callback/end/{token}?meetingID=x&recordingmarks=false");
    assert_eq!(get(replay).await, 404, "an older instance's callback");
    let still = join_and_follow(&mut c).await;
    assert_eq!(query(&still)["createTime"], query(&recreated)["createTime"]);
}

/// One step of a random history run against real simulators.
#[derive(Debug, Clone)]
enum Step {
    Join { room: usize },
    EndInBbb { room: usize },
    LastUserLeaves { room: usize },
    Kill { sim: usize },
    Restart { sim: usize },
    Panic { sim: usize },
    Cordon { sim: usize, on: bool },
    Poll,
    Pause { ms: u64 },
}

const SIMS: usize = 3;
const ROOMS: usize = 3;

fn world() -> Value {
    let rooms: Vec<Value> = (0..ROOMS)
        .map(|i| {
            json!({"id": format!("r{i}"), "name": format!("Room {i}"),
                   "trait_grants": {"viewer": [], "participant": []},
                   "modules": [{"type": "call.bigbluebutton", "config": {}}]})
        })
        .collect();
    json!({
        "id": "h", "title": "History", "timezone": "UTC",
        "jwt_secrets": [{"issuer": "any", "audience": "venueless", "secret": WORLD_SECRET}],
        "trait_grants": {"viewer": [], "participant": []},
        "rooms": rooms,
    })
}

/// A deterministic pseudo-random history (xorshift), so a failure names a reproducible seed.
fn history(seed: u64, len: usize) -> Vec<Step> {
    let mut x = seed.max(1);
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n) as usize
    };
    (0..len)
        .map(|_| match next(20) {
            0..=7 => Step::Join {
                room: next(ROOMS as u64),
            },
            8 | 9 => Step::EndInBbb {
                room: next(ROOMS as u64),
            },
            10 | 11 => Step::LastUserLeaves {
                room: next(ROOMS as u64),
            },
            12 => Step::Kill {
                sim: next(SIMS as u64),
            },
            13 => Step::Restart {
                sim: next(SIMS as u64),
            },
            14 => Step::Panic {
                sim: next(SIMS as u64),
            },
            15 => Step::Cordon {
                sim: next(SIMS as u64),
                on: next(2) == 0,
            },
            16 | 17 => Step::Poll,
            _ => Step::Pause {
                ms: [20, 150, 400][next(3)] as u64,
            },
        })
        .collect()
}

struct Fleet {
    sims: Vec<Option<SimHandle>>,
    ports: Vec<u16>,
    ids: Vec<bbb_gateway::ids::ServerId>,
    /// Until when BBB may have changed without telling the gateway (a server died or came
    /// back empty; without callbacks, a meeting ended): refused URLs are allowed until then.
    silent_until: Option<Instant>,
}

/// Runs one history; returns the violations found (URLs BBB refused outside what the
/// guarantee allows, or `bbb.failed` while a usable server was up).
async fn run_history(seed: u64, callbacks: bool) -> Vec<String> {
    let app = liveness_gateway(callbacks, TTL).await;
    app.import_world(&world()).await;
    let mut fleet = Fleet {
        sims: Vec::new(),
        ports: Vec::new(),
        ids: Vec::new(),
        silent_until: None,
    };
    for i in 1..=SIMS {
        let sim = sim::start("127.0.0.1:0".parse().unwrap(), scaled_sim_config(i))
            .await
            .unwrap();
        fleet
            .ids
            .push(register(&app, &sim, i, ChecksumAlgorithm::Sha256).await);
        fleet.ports.push(sim.port());
        fleet.sims.push(Some(sim));
    }
    let (mut c, _) = app.ws_as("h", "ada", &[], Some("Ada")).await;
    let mut last_url: Vec<Option<(String, usize)>> = vec![None; ROOMS];
    let mut cordoned = [false; SIMS];
    let mut violations = Vec::new();
    for (n, step) in history(seed, 24).into_iter().enumerate() {
        match step {
            Step::Join { room } => {
                let reply = c
                    .request(
                        "bbb.room_url",
                        n as u64,
                        json!({"room": format!("r{room}")}),
                    )
                    .await;
                let silent = fleet.silent_until.is_some_and(|t| Instant::now() < t);
                if reply[0] == "success" {
                    let url = reply[2]["url"].as_str().unwrap_or_default().to_string();
                    let sim = fleet.ports.iter().position(|p| *p == port_of(&url));
                    match follow(&url).await {
                        Ok(_) => last_url[room] = sim.map(|s| (url, s + 1)),
                        // Allowed only until the TTL passed since BBB changed silently.
                        Err(_) if silent => {}
                        Err(page) => {
                            violations.push(format!("seed {seed} step {n}: refused {url}: {page}"))
                        }
                    }
                } else {
                    let usable = (0..SIMS).any(|s| fleet.sims[s].is_some() && !cordoned[s]);
                    if usable && !silent {
                        violations.push(format!("seed {seed} step {n}: {reply}"));
                    }
                }
            }
            Step::EndInBbb { room } | Step::LastUserLeaves { room } => {
                let Some((url, sim)) = last_url[room].clone() else {
                    continue;
                };
                if fleet.sims[sim - 1].is_none() || !runs(&url, sim).await {
                    continue;
                }
                let before = end_callbacks_received(&app).await;
                if matches!(step, Step::EndInBbb { .. }) {
                    end_in_bbb(&url, sim).await;
                } else {
                    set_participants(&url, json!({"participants": 0})).await;
                }
                wait_until("BBB ended the meeting", WITHIN, async || {
                    !runs(&url, sim).await
                })
                .await;
                if callbacks {
                    wait_until("the end callback reached the gateway", WITHIN, async || {
                        end_callbacks_received(&app).await > before
                    })
                    .await;
                } else {
                    fleet.silent_until = Some(Instant::now() + TTL + Duration::from_millis(50));
                }
            }
            Step::Kill { sim } => {
                if let Some(s) = fleet.sims[sim].take() {
                    s.stop().await;
                    fleet.silent_until = Some(Instant::now() + TTL + Duration::from_millis(50));
                }
            }
            Step::Restart { sim } => {
                if fleet.sims[sim].is_none() {
                    let addr = format!("127.0.0.1:{}", fleet.ports[sim]).parse().unwrap();
                    let s = sim::start(addr, scaled_sim_config(sim + 1)).await.unwrap();
                    fleet.sims[sim] = Some(s);
                    // Back empty, and offline to the gateway until a poll (every second)
                    // sees it again.
                    fleet.silent_until = Some(Instant::now() + Duration::from_millis(2500));
                }
            }
            Step::Panic { sim } => {
                let _ = app
                    .state
                    .coordinator
                    .send(bbb_gateway::coordinator::PanicServer { id: fleet.ids[sim] })
                    .await;
            }
            Step::Cordon { sim, on } => {
                let state = if on {
                    bbb_gateway::db::servers::ServerState::Cordoned
                } else {
                    bbb_gateway::db::servers::ServerState::Enabled
                };
                let _ = app
                    .state
                    .coordinator
                    .send(bbb_gateway::coordinator::SetServerState {
                        id: fleet.ids[sim],
                        state,
                    })
                    .await;
                cordoned[sim] = on;
            }
            Step::Poll => {
                let _ = app.state.coordinator.send(PollNow).await;
            }
            Step::Pause { ms } => {
                let since = Instant::now();
                wait_until("time passed", WITHIN, async || {
                    since.elapsed() >= Duration::from_millis(ms)
                })
                .await;
            }
        }
    }
    violations
}

#[actix_web::test]
async fn random_histories_with_callbacks_hand_out_no_broken_url() {
    let mut violations = Vec::new();
    for seed in 1..=6u64 {
        violations.extend(run_history(seed * 7919, true).await);
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[actix_web::test]
async fn random_histories_without_callbacks_hand_out_no_broken_url_past_the_ttl() {
    let mut violations = Vec::new();
    for seed in 1..=6u64 {
        violations.extend(run_history(seed * 104_729, false).await);
    }
    assert!(violations.is_empty(), "{violations:#?}");
}
