//! Two gateway instances on one PostgreSQL database behave as one: a meeting is placed once
//! even when both get its first join at the same moment, both hand out URLs for it, only the
//! elected leader polls the fleet (a new one takes over when it stops), and admin changes made
//! through one reach the other. On the PostgreSQL of `DATABASE_URL_PG`, else on a throwaway one
//! (see `bbb_gateway::db::testing`).

use std::sync::Arc;
use std::time::Duration;

use bbb_gateway::bbb::{ChecksumAlgorithm, Secret};
use bbb_gateway::client::WsClient;
use bbb_gateway::config::{SessionConfig, Settings};
use bbb_gateway::coordinator::{FleetStatus, GetFleetStatus};
use bbb_gateway::db::servers::{self, NewServer};
use bbb_gateway::db::testing::TestDb;
use bbb_gateway::startup::{Application, Stopper};
use bbb_gateway::state::AppState;
use bbb_sim::SimHandle;
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::fleet::{
    calls, open_join, port_of, query, sim_config, sim_endpoint, sim_secret, start_sim,
};
use crate::helpers::{test_settings, token_for, wait_until, WORLD_SECRET};

const ADMIN: &str = "test-admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(10);

/// One running gateway instance (also used by the restart test in `faults`).
pub(crate) struct Instance {
    pub port: u16,
    pub admin_port: u16,
    pub state: Arc<AppState>,
    pub stopper: Stopper,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let stopper = self.stopper.clone();
        actix_web::rt::spawn(stopper.stop());
    }
}

impl Instance {
    pub async fn start(settings: Settings) -> Instance {
        let app = Application::build_with(settings, SessionConfig::default())
            .await
            .expect("the gateway starts");
        let instance = Instance {
            port: app.port(),
            admin_port: app.admin_port(),
            state: app.state(),
            stopper: app.stopper(),
        };
        actix_web::rt::spawn(app.run_until_stopped());
        instance
    }

    /// Waits until the instance serves: it knows the worlds and `servers` servers, and trusts
    /// them, i.e. the leader's first poll is stored and followed (until then a follower knows
    /// nothing about the servers and re-confirms every join with a `create`).
    pub async fn ready(&self, servers: usize) {
        self.state.worlds.refresh().await.unwrap();
        wait_until(
            "the instance to know and trust every server",
            WAIT,
            async || {
                let s = self.status().await;
                s.servers.len() == servers
                    && s.servers
                        .iter()
                        .all(|s| !s.stale && s.last_good_poll_at_ms.is_some())
            },
        )
        .await;
    }

    pub async fn status(&self) -> FleetStatus {
        self.state.coordinator.send(GetFleetStatus).await.unwrap()
    }

    pub async fn ws_as(&self, world: &str, uid: &str) -> WsClient {
        let url = format!("ws://127.0.0.1:{}/ws/world/{world}/", self.port);
        let mut c = WsClient::connect(&url).await.unwrap();
        let token = token_for(uid, &[], Some(uid));
        let reply = c
            .authenticate(json!({ "token": token }), WAIT)
            .await
            .unwrap();
        assert_eq!(reply[0], "authenticated", "{reply}");
        c
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> u16 {
        let resp = awc::Client::default()
            .post(format!("http://127.0.0.1:{}{path}", self.admin_port))
            .insert_header(("Authorization", format!("Bearer {ADMIN}")))
            .send_json(&body)
            .await
            .unwrap();
        resp.status().as_u16()
    }
}

/// A world with `n` BBB rooms `r0…`, everyone may join and moderate.
pub(crate) fn world(n: usize) -> Value {
    let rooms: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("r{i}"), "name": format!("Room {i}"),
                   "trait_grants": {"viewer": [], "participant": [], "moderator": []},
                   "modules": [{"type": "call.bigbluebutton", "config": {}}]})
        })
        .collect();
    json!({
        "id": "multi", "title": "Multi", "timezone": "UTC",
        "jwt_secrets": [{"issuer": "any", "audience": "venueless", "secret": WORLD_SECRET}],
        "trait_grants": {"viewer": [], "participant": []},
        "rooms": rooms
    })
}

/// A fresh PostgreSQL database for several instances, held by one such test at a time: each
/// runs several gateways against timing bounds (leases, spreads, single flight), which two of
/// them at once on a 2-core machine would measure instead.
pub(crate) struct SharedDatabase {
    pub db: TestDb,
    pub server_ids: Vec<bbb_gateway::ids::ServerId>,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// Whose turn it is to run several instances.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fresh PostgreSQL database with `sims` registered as servers and [`world`] of `rooms`
/// imported, once no other multi-instance test runs. `None` when no PostgreSQL is configured.
pub(crate) async fn shared_database(sims: &[SimHandle], rooms: usize) -> Option<SharedDatabase> {
    let turn = TURN.lock().await;
    let Some(db) = TestDb::postgres() else {
        return None; // reported as skipped by TestDb
    };
    let db = db.expect("a fresh PostgreSQL database");
    let mut server_ids = Vec::new();
    for (i, sim) in sims.iter().enumerate() {
        let new = NewServer {
            url: sim.base_url(),
            secret: Secret::new(sim_secret(i)),
            checksum: ChecksumAlgorithm::Sha256,
            weight: 1.0,
            tag: None,
            world_id: None,
            capacity: None,
        };
        let row = db.db.run(move |c| servers::add(c, &new)).await.unwrap();
        server_ids.push(row.id);
    }
    let file = bbb_gateway::world::parse_world_file(&world(rooms).to_string()).unwrap();
    db.db
        .run(move |c| bbb_gateway::world::import_world(c, &file))
        .await
        .unwrap();
    Some(SharedDatabase {
        db,
        server_ids,
        _turn: turn,
    })
}

/// Two sims, a fresh PostgreSQL database with both registered and the world imported, and two
/// instances on it. `None` when no PostgreSQL is configured.
struct Cluster {
    a: Instance,
    b: Instance,
    sims: Vec<SimHandle>,
    server_ids: Vec<bbb_gateway::ids::ServerId>,
    _db: SharedDatabase,
    _dir: tempfile::TempDir,
}

async fn cluster(rooms: usize) -> Option<Cluster> {
    cluster_with(rooms, |_| {}).await
}

async fn cluster_with(rooms: usize, tweak: impl Fn(&mut Settings)) -> Option<Cluster> {
    cluster_on(vec![start_sim(0).await, start_sim(1).await], rooms, tweak).await
}

/// Two instances over `sims` (sims 0 and 1), started one after the other.
async fn cluster_on(
    sims: Vec<SimHandle>,
    rooms: usize,
    tweak: impl Fn(&mut Settings),
) -> Option<Cluster> {
    let shared = shared_database(&sims, rooms).await?;
    let dir = tempfile::tempdir().unwrap();
    let settings = || {
        let mut s = test_settings(&dir);
        s.database.url = shared.db.url.clone();
        s.database.pool_size = 4;
        tweak(&mut s);
        s
    };
    let a = Instance::start(settings()).await;
    let b = Instance::start(settings()).await;
    for i in [&a, &b] {
        i.ready(2).await;
    }
    Some(Cluster {
        a,
        b,
        sims,
        server_ids: shared.server_ids.clone(),
        _db: shared,
        _dir: dir,
    })
}

impl Cluster {
    /// (leader, follower) once exactly one instance leads.
    async fn roles(&self) -> (&Instance, &Instance) {
        wait_until("exactly one leader", WAIT, async || {
            self.a.status().await.leader != self.b.status().await.leader
        })
        .await;
        if self.a.status().await.leader {
            (&self.a, &self.b)
        } else {
            (&self.b, &self.a)
        }
    }

    fn sim_index(&self, url: &str) -> usize {
        let port = port_of(url);
        self.sims.iter().position(|s| s.port() == port).unwrap()
    }
}

async fn get_meetings_calls(sim: &SimHandle) -> usize {
    calls(sim.port())
        .await
        .iter()
        .filter(|(c, _)| c == "getMeetings")
        .count()
}

#[actix_web::test]
async fn simultaneous_first_joins_place_each_meeting_once() {
    let Some(cl) = cluster(6).await else { return };
    let mut ca = cl.a.ws_as("multi", "alice").await;
    let mut cb = cl.b.ws_as("multi", "bob").await;
    for room in 0..6 {
        let payload = json!({ "room": format!("r{room}") });
        let (ra, rb) = tokio::join!(
            ca.request("bbb.room_url", json!(1), payload.clone(), WAIT),
            cb.request("bbb.room_url", json!(2), payload, WAIT),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(
            (&ra[0], &rb[0]),
            (&json!("success"), &json!("success")),
            "{ra} {rb}"
        );
        let (ua, ub) = (
            ra[2]["url"].as_str().unwrap(),
            rb[2]["url"].as_str().unwrap(),
        );
        assert_eq!(
            port_of(ua),
            port_of(ub),
            "both instances name the same server"
        );
        assert_eq!(query(ua)["meetingID"], query(ub)["meetingID"]);
        // The meeting runs where both URLs point: bbb-sim accepts both.
        assert!(open_join(ua).await.is_ok());
        assert!(open_join(ub).await.is_ok());
        // Exactly one placement was ever stored, and no create went to the other server.
        let mid = query(ua)["meetingID"].clone();
        let db = cl.a.state.db.clone();
        let ever = db
            .run(move |c| bbb_gateway::db::meetings::servers_ever(c, &mid))
            .await
            .unwrap();
        assert_eq!(ever.len(), 1, "one placement for r{room}: {ever:?}");
        let other = &cl.sims[1 - cl.sim_index(ua)];
        let mid = query(ua)["meetingID"].clone();
        let stray = calls(other.port())
            .await
            .into_iter()
            .filter(|(c, p)| c == "create" && p.get("meetingID") == Some(&mid))
            .count();
        assert_eq!(stray, 0, "no create of r{room} on the other server");
    }
}

#[actix_web::test]
async fn only_the_leader_polls_and_followers_show_its_results() {
    let Some(cl) = cluster(1).await else { return };
    let (leader, follower) = cl.roles().await;
    // Followers show the leader's view, including the BBB version it asked for.
    wait_until("versions on the follower", WAIT, async || {
        let s = follower.status().await;
        s.servers
            .iter()
            .all(|x| x.bbb_version.as_deref() == Some("2.7.0"))
            && s.servers.iter().all(|x| x.last_poll_at_ms.is_some())
    })
    .await;
    let follower_polls = follower.status().await.stats.poll_rounds;
    let before: Vec<usize> =
        futures_util::future::join_all(cl.sims.iter().map(get_meetings_calls)).await;
    let rounds0 = leader.status().await.stats.poll_rounds;
    wait_until("three leader rounds", WAIT, async || {
        leader.status().await.stats.poll_rounds >= rounds0 + 3
    })
    .await;
    let rounds1 = leader.status().await.stats.poll_rounds;
    let after: Vec<usize> =
        futures_util::future::join_all(cl.sims.iter().map(get_meetings_calls)).await;
    for (b, a) in before.iter().zip(&after) {
        // One getMeetings per leader round (plus one round that may have been in flight).
        let polled = (a - b) as u64;
        assert!(
            polled <= rounds1 - rounds0 + 1,
            "{polled} polls in {} rounds",
            rounds1 - rounds0
        );
    }
    let f = follower.status().await;
    assert_eq!(
        f.stats.poll_rounds, follower_polls,
        "the follower never polls"
    );
    assert!(f.stats.follow_rounds > 0);
    // The status route says who leads.
    let status: Value = awc::Client::default()
        .get(format!(
            "http://127.0.0.1:{}/api/v1/status",
            follower.admin_port
        ))
        .insert_header(("Authorization", format!("Bearer {ADMIN}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["gateway"]["leader"], false);
    assert_eq!(status["servers"][0]["bbb_version"], "2.7.0");
}

#[actix_web::test]
async fn a_new_leader_takes_over_when_the_leader_stops() {
    let Some(cl) = cluster(1).await else { return };
    let (leader, follower) = cl.roles().await;
    let mut c = follower.ws_as("multi", "carol").await;
    let first = c
        .request("bbb.room_url", json!(1), json!({"room": "r0"}), WAIT)
        .await
        .unwrap();
    assert_eq!(first[0], "success", "{first}");
    leader.stopper.clone().stop().await;
    // The stopped leader gave the poll lease up: the follower leads at its next election.
    wait_until("the follower to lead", WAIT, async || {
        follower.status().await.leader
    })
    .await;
    let rounds = follower.status().await.stats.poll_rounds;
    wait_until("the new leader to poll", WAIT, async || {
        follower.status().await.stats.poll_rounds > rounds
    })
    .await;
    let again = c
        .request("bbb.room_url", json!(2), json!({"room": "r0"}), WAIT)
        .await
        .unwrap();
    assert_eq!(again[0], "success", "{again}");
    let (u1, u2) = (
        first[2]["url"].as_str().unwrap(),
        again[2]["url"].as_str().unwrap(),
    );
    assert_eq!(
        (port_of(u1), query(u1)["meetingID"].clone()),
        (port_of(u2), query(u2)["meetingID"].clone())
    );
}

#[actix_web::test]
async fn state_changes_and_panics_through_one_instance_reach_the_other() {
    let Some(cl) = cluster(1).await else { return };
    let mut cb = cl.b.ws_as("multi", "dave").await;
    let r = cb
        .request("bbb.room_url", json!(1), json!({"room": "r0"}), WAIT)
        .await
        .unwrap();
    let url = r[2]["url"].as_str().unwrap().to_owned();
    let hosting = cl.server_ids[cl.sim_index(&url)];
    let other = cl.server_ids[1 - cl.sim_index(&url)];
    // Cordon through A: B stops placing new meetings there.
    let path = format!("/api/v1/servers/{hosting}/state");
    assert_eq!(
        cl.a.admin_post(&path, json!({"state": "cordoned"})).await,
        200
    );
    wait_until("B sees the cordon", WAIT, async || {
        cl.b.status()
            .await
            .servers
            .iter()
            .any(|s| s.id == hosting && s.state == bbb_gateway::db::servers::ServerState::Cordoned)
    })
    .await;
    // Panic through A: B forgets the meeting and re-creates it on the other server.
    let path = format!("/api/v1/servers/{hosting}/panic");
    assert_eq!(cl.a.admin_post(&path, json!({})).await, 200);
    wait_until(
        "B forgets the panicked server's meeting",
        WAIT,
        async || {
            cl.b.status()
                .await
                .servers
                .iter()
                .any(|s| s.id == hosting && s.meetings_placed == 0)
        },
    )
    .await;
    let r = cb
        .request("bbb.room_url", json!(2), json!({"room": "r0"}), WAIT)
        .await
        .unwrap();
    assert_eq!(r[0], "success", "{r}");
    let moved = r[2]["url"].as_str().unwrap();
    assert_eq!(cl.server_ids[cl.sim_index(moved)], other);
    assert_eq!(
        query(moved)["meetingID"],
        query(&url)["meetingID"],
        "same meeting, new server"
    );
    assert!(open_join(moved).await.is_ok());
}

#[actix_web::test]
async fn every_instance_trusts_the_fleet_as_soon_as_a_new_leaders_first_poll_is_stored() {
    // Ticks an hour apart, so only what this test is about can make the servers current: BBB
    // answers after 300 ms, so B starts (and looks for stored poll results) before A's first
    // poll is stored; B trusts the servers only once A's notification makes it read them.
    // `cluster_on` waits until every server is current on both, failing after its timeout.
    let mut sims = Vec::new();
    for i in 0..2 {
        let config = bbb_sim::SimConfig {
            latency_ms: 300,
            ..sim_config(i)
        };
        sims.push(
            bbb_sim::start("127.0.0.1:0".parse().unwrap(), config)
                .await
                .unwrap(),
        );
    }
    let Some(cl) = cluster_on(sims, 1, |s| {
        s.bbb.poll_interval_secs = 3600;
        s.bbb.confirm_ttl_ms = 600_000;
    })
    .await
    else {
        return;
    };
    let (leader, follower) = cl.roles().await;
    // Trusted on both: after one create, joins through either instance come from memory.
    let ask = json!({"room": "r0"});
    let mut clients = [
        follower.ws_as("multi", "f").await,
        leader.ws_as("multi", "l").await,
    ];
    for n in 0..4 {
        clients[n % 2]
            .request("bbb.room_url", json!(n), ask.clone(), WAIT)
            .await
            .unwrap();
    }
    let creates = join_all(cl.sims.iter().map(|s| calls(s.port())))
        .await
        .into_iter()
        .flatten()
        .filter(|(c, _)| c == "create")
        .count();
    assert_eq!(creates, 1, "no re-confirming creates");
    // A new leader polls at once, not a poll interval (an hour) after it took over.
    let polls = get_meetings_calls(&cl.sims[0]).await;
    leader.stopper.clone().stop().await;
    wait_until("the follower to lead and poll", WAIT, async || {
        get_meetings_calls(&cl.sims[0]).await > polls
    })
    .await;
    assert!(follower.status().await.leader);
}

#[actix_web::test]
async fn an_end_callback_received_by_one_instance_stops_warm_joins_on_the_other_within_a_second() {
    // Confirmations never expire here, and the leader's polls stay current for 15 s even on a
    // loaded machine: only the callback and its notification can withdraw the meeting.
    let Some(cl) = cluster_with(1, |s| {
        s.bbb.confirm_ttl_ms = 600_000;
        s.bbb.poll_interval_secs = 5;
    })
    .await
    else {
        return;
    };
    let mut ca = cl.a.ws_as("multi", "alice").await;
    let mut cb = cl.b.ws_as("multi", "bob").await;
    let ask = json!({"room": "r0"});
    // A creates the meeting (BBB will call A back), B joins it too.
    let ua = ca
        .request("bbb.room_url", json!(1), ask.clone(), WAIT)
        .await
        .unwrap();
    let ub = cb
        .request("bbb.room_url", json!(2), ask.clone(), WAIT)
        .await
        .unwrap();
    let (ua, ub) = (
        ua[2]["url"].as_str().unwrap(),
        ub[2]["url"].as_str().unwrap(),
    );
    assert_eq!(query(ua)["createTime"], query(ub)["createTime"]);
    assert!(open_join(ua).await.is_ok());
    let key = bbb_gateway::ids::MeetingKey::room("multi", "r0");
    assert!(
        cl.b.state.joins.get(key.as_str()).is_some(),
        "B answers from memory"
    );
    // A moderator ends it in BBB; BBB calls A.
    let ep = sim_endpoint(port_of(ua), cl.sim_index(ua));
    let client = bbb_gateway::bbb::AwcBbbClient::new(Default::default());
    bbb_gateway::bbb::BbbApi::end(&client, &ep, &query(ua)["meetingID"])
        .await
        .unwrap();
    wait_until("A received the end callback", WAIT, async || {
        cl.a.status().await.stats.end_callbacks == 1
    })
    .await;
    let received = std::time::Instant::now();
    wait_until("B no longer answers from memory", WAIT, async || {
        cl.b.state.joins.get(key.as_str()).is_none()
    })
    .await;
    let learned = received.elapsed();
    assert!(
        learned < Duration::from_secs(1),
        "B learned it after {learned:?}"
    );
    // B's next join creates the meeting again; its URL works.
    let again = cb
        .request("bbb.room_url", json!(3), ask, WAIT)
        .await
        .unwrap();
    let again = again[2]["url"].as_str().unwrap();
    assert_ne!(query(again)["createTime"], query(ua)["createTime"]);
    assert!(open_join(again).await.is_ok());
}
