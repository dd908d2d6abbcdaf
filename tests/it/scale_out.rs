//! Several gateway instances on one PostgreSQL database at scale: bursts and storms arriving
//! through four instances at once are placed as if by one, a leader killed with SIGKILL is
//! replaced within one lease, and an instance whose database connection stops answering stops
//! leading and serving from memory, then recovers when the network heals. On the PostgreSQL
//! of `DATABASE_URL_PG`, else on a throwaway one (see `bbb_gateway::db::testing`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bbb_gateway::client::WsClient;
use bbb_gateway::config::Settings;
use bbb_gateway::ids::ServerId;
use bbb_sim::SimHandle;
use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::fleet::{calls, port_of, query, sim_config, sim_endpoint, start_sim};
use crate::helpers::{test_settings, token_for, wait_until};
use crate::multi_instance::{shared_database, Instance, SharedDatabase};
use crate::process::GatewayProcess;

const WAIT: Duration = Duration::from_secs(30);
const ADMIN: &str = "test-admin-token-0123456789";

/// `instances` in-process instances on a fresh database with `sims` servers and `rooms` rooms.
struct Cluster {
    instances: Vec<Instance>,
    sims: Vec<SimHandle>,
    _db: SharedDatabase,
    _dir: tempfile::TempDir,
}

async fn cluster(
    instances: usize,
    sims: usize,
    rooms: usize,
    tweak: impl Fn(&mut Settings),
) -> Option<Cluster> {
    let sims = join_all((0..sims).map(start_sim)).await;
    let shared = shared_database(&sims, rooms).await?;
    let dir = tempfile::tempdir().unwrap();
    let mut started = Vec::new();
    for _ in 0..instances {
        let mut s = test_settings(&dir);
        s.database.url = shared.db.url.clone();
        s.database.pool_size = 4;
        tweak(&mut s);
        started.push(Instance::start(s).await);
    }
    for i in &started {
        i.ready(sims.len()).await;
    }
    Some(Cluster {
        instances: started,
        sims,
        _db: shared,
        _dir: dir,
    })
}

/// Each session pipelines its `bbb.room_url` requests (one per room given) and collects the
/// join URLs, in the order of `rooms`.
async fn join_rooms(client: &mut WsClient, rooms: &[String]) -> Vec<String> {
    let frames: Vec<String> = rooms
        .iter()
        .enumerate()
        .map(|(i, r)| json!(["bbb.room_url", i, {"room": r}]).to_string())
        .collect();
    client.send_pipelined(&frames).await.unwrap();
    let mut urls = vec![String::new(); rooms.len()];
    for _ in rooms {
        let reply = client.recv_within(WAIT).await.unwrap();
        assert_eq!(reply[0], "success", "{reply}");
        let i = reply[1].as_u64().unwrap() as usize;
        urls[i] = reply[2]["url"].as_str().unwrap().to_string();
    }
    urls
}

/// Creates each sim received, as (sim port, meetingID).
async fn creates(sims: &[SimHandle]) -> Vec<(u16, String)> {
    let mut all = Vec::new();
    for s in sims {
        for (call, params) in calls(s.port()).await {
            if call == "create" {
                all.push((s.port(), params["meetingID"].clone()));
            }
        }
    }
    all
}

#[actix_web::test]
async fn a_burst_of_new_rooms_through_four_instances_spreads_evenly_over_four_servers() {
    let Some(cl) = cluster(4, 4, 200, |_| {}).await else {
        return;
    };
    // 200 rooms, 50 through each instance (10 sessions of 5 rooms), all at once.
    let mut clients = Vec::new();
    for (i, inst) in cl.instances.iter().enumerate() {
        for c in 0..10 {
            let client = inst.ws_as("multi", &format!("u{i}-{c}")).await;
            let rooms: Vec<String> = (0..5).map(|k| format!("r{}", i * 50 + c * 5 + k)).collect();
            clients.push((client, rooms));
        }
    }
    let urls: Vec<String> = join_all(
        clients
            .iter_mut()
            .map(|(client, rooms)| join_rooms(client, rooms)),
    )
    .await
    .into_iter()
    .flatten()
    .collect();
    let mut per_port: HashMap<u16, usize> = HashMap::new();
    for u in &urls {
        *per_port.entry(port_of(u)).or_default() += 1;
    }
    let counts: Vec<usize> = cl
        .sims
        .iter()
        .map(|s| per_port.get(&s.port()).copied().unwrap_or(0))
        .collect();
    // Every server within ±10 % of the mean (50).
    assert!(
        counts.iter().all(|n| (45..=55).contains(n)),
        "meetings per server: {counts:?}"
    );
    // Each room created once, on one server.
    let created = creates(&cl.sims).await;
    let distinct: HashSet<&String> = created.iter().map(|(_, m)| m).collect();
    assert_eq!((created.len(), distinct.len()), (200, 200), "{counts:?}");
}

#[actix_web::test]
async fn a_storm_on_one_new_room_through_four_instances_sends_one_create() {
    // A confirmation outlives the storm: this is about single flight, not re-confirmation.
    let Some(cl) = cluster(4, 4, 1, |s| s.bbb.confirm_ttl_ms = 120_000).await else {
        return;
    };
    // 1,000 joins: 50 sessions per instance, 5 pipelined joins each, all at once.
    let mut clients = Vec::new();
    for (i, inst) in cl.instances.iter().enumerate() {
        for c in 0..50 {
            clients.push(inst.ws_as("multi", &format!("s{i}-{c}")).await);
        }
    }
    let rooms: Vec<String> = vec!["r0".to_string(); 5];
    let urls: Vec<String> = join_all(clients.iter_mut().map(|c| join_rooms(c, &rooms)))
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(urls.len(), 1000);
    let targets: HashSet<(u16, String)> = urls
        .iter()
        .map(|u| (port_of(u), query(u)["meetingID"].clone()))
        .collect();
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert_eq!(creates(&cl.sims).await.len(), 1);
}

/// A `serve` process of the real binary in the cluster, killed with SIGKILL when dropped.
struct Process(GatewayProcess);

impl Process {
    fn spawn(database_url: &str, lease_ms: u64) -> Process {
        Process(GatewayProcess::serve(&[
            ("BBB_GATEWAY__DATABASE__URL", database_url.to_string()),
            ("BBB_GATEWAY__DATABASE__POOL_SIZE", "4".into()),
            ("BBB_GATEWAY__ADMIN__TOKENS", ADMIN.into()),
            ("BBB_GATEWAY__CLUSTER__LEASE_MS", lease_ms.to_string()),
            ("BBB_GATEWAY__BBB__POLL_INTERVAL_SECS", "1".into()),
        ]))
    }

    /// `/api/v1/status`, or `None` while it does not answer.
    async fn status(&self) -> Option<Value> {
        let mut resp = awc::Client::default()
            .get(format!(
                "http://127.0.0.1:{}/api/v1/status",
                self.0.admin_port
            ))
            .insert_header(("Authorization", format!("Bearer {ADMIN}")))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        resp.json::<Value>().limit(1 << 20).await.ok()
    }

    async fn leads(&self) -> bool {
        self.status()
            .await
            .is_some_and(|s| s["gateway"]["leader"] == json!(true))
    }

    async fn join(&self, room: &str) -> String {
        let url = format!("ws://127.0.0.1:{}/ws/world/multi/", self.0.port);
        let mut c = WsClient::connect(&url).await.unwrap();
        let token = token_for("killer", &[], Some("K"));
        let auth = c
            .authenticate(json!({ "token": token }), WAIT)
            .await
            .unwrap();
        assert_eq!(auth[0], "authenticated", "{auth}");
        let reply = c
            .request("bbb.room_url", json!(1), json!({"room": room}), WAIT)
            .await
            .unwrap();
        assert_eq!(reply[0], "success", "{reply}");
        reply[2]["url"].as_str().unwrap().to_string()
    }
}

/// Where each meeting runs, from every sim's `getMeetings` (asked as the gateway asks).
async fn running(sims: &[SimHandle]) -> HashMap<String, Vec<u16>> {
    use bbb_gateway::bbb::{AwcBbbClient, BbbApi, BbbClientConfig};
    let client = AwcBbbClient::new(BbbClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        max_body_bytes: 16 << 20,
    });
    let mut out: HashMap<String, Vec<u16>> = HashMap::new();
    for (i, s) in sims.iter().enumerate() {
        for m in client
            .get_meetings(&sim_endpoint(s.port(), i))
            .await
            .unwrap()
        {
            out.entry(m.meeting_id).or_default().push(s.port());
        }
    }
    out
}

#[actix_web::test]
async fn a_leader_killed_mid_poll_is_replaced_within_one_lease() {
    const LEASE_MS: u64 = 3000;
    // Slow BBB servers: a poll round takes most of the poll interval, so the kill lands in one.
    let mut sims = Vec::new();
    for i in 0..2 {
        let mut cfg = sim_config(i);
        cfg.latency_ms = 300;
        sims.push(
            bbb_sim::start("127.0.0.1:0".parse().unwrap(), cfg)
                .await
                .unwrap(),
        );
    }
    let Some(shared) = shared_database(&sims, 6).await else {
        return;
    };
    let db = &shared.db;
    let mut procs: Vec<Process> = (0..3).map(|_| Process::spawn(&db.url, LEASE_MS)).collect();
    let mut before = HashMap::new();
    for r in 0..6 {
        let room = format!("r{r}");
        let url = procs[r % 3].join(&room).await;
        before.insert(room, (port_of(&url), query(&url)["meetingID"].clone()));
    }
    let mut leader = None;
    wait_until("one instance to lead", WAIT, async || {
        let mut leading = Vec::new();
        for (i, p) in procs.iter().enumerate() {
            if p.leads().await {
                leading.push(i);
            }
        }
        leader = (leading.len() == 1).then(|| leading[0]);
        leader.is_some()
    })
    .await;
    let leader = leader.unwrap();
    // Wait for the leader's next getMeetings to be under way, then SIGKILL it.
    let polls = |sims: &[SimHandle]| {
        let ports: Vec<u16> = sims.iter().map(SimHandle::port).collect();
        async move {
            let mut n = 0;
            for p in ports {
                n += calls(p)
                    .await
                    .iter()
                    .filter(|(c, _)| c == "getMeetings")
                    .count();
            }
            n
        }
    };
    let seen = polls(&sims).await;
    wait_until("a poll round", WAIT, async || polls(&sims).await > seen).await;
    let mut killed = procs.remove(leader);
    killed.0.child.kill().unwrap();
    let killed_at = Instant::now();
    killed.0.child.wait().unwrap();
    let mut successor = None;
    wait_until("another instance to lead", WAIT, async || {
        for (i, p) in procs.iter().enumerate() {
            if p.leads().await {
                successor = Some(i);
                return true;
            }
        }
        false
    })
    .await;
    let took = killed_at.elapsed();
    // The lease the dead leader last renewed runs out within one lease; the survivors try
    // every third of it. Allow one more election interval and the status round trip.
    assert!(
        took < Duration::from_millis(LEASE_MS + LEASE_MS / 3 + 1500),
        "a new leader after {took:?}"
    );
    let successor = successor.unwrap();
    let rounds = |s: &Value| s["gateway"]["poll_rounds"].as_u64().unwrap_or(0);
    let start = rounds(&procs[successor].status().await.unwrap());
    wait_until("the new leader to poll", WAIT, async || {
        rounds(&procs[successor].status().await.unwrap()) > start
    })
    .await;
    // No meeting lost or placed twice: every room joins where it ran before, through each
    // survivor, and every meeting runs on exactly one server.
    for p in &procs {
        for (room, target) in &before {
            let url = p.join(room).await;
            assert_eq!(
                &(port_of(&url), query(&url)["meetingID"].clone()),
                target,
                "{room}"
            );
        }
    }
    let where_ = running(&sims).await;
    for (room, (port, meeting)) in &before {
        assert_eq!(where_.get(meeting), Some(&vec![*port]), "{room}");
    }
    drop(killed);
}

/// A TCP proxy between one instance and PostgreSQL. While `swallowing`, bytes in either
/// direction are held back (no reset, no answer), as on a dead network path; when it heals they
/// flow again.
struct Proxy {
    port: u16,
    swallowing: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let swallowing = Arc::new(AtomicBool::new(false));
        let flag = swallowing.clone();
        actix_web::rt::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target_port)).await else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                actix_web::rt::spawn(pump(ri, wo, flag.clone()));
                actix_web::rt::spawn(pump(ro, wi, flag.clone()));
            }
        });
        Proxy { port, swallowing }
    }

    fn swallow(&self, on: bool) {
        self.swallowing.store(on, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    swallowing: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while swallowing.load(Ordering::SeqCst) {
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn with_port(url: &str, port: u16) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_port(Some(port)).unwrap();
    u.to_string()
}

#[actix_web::test]
async fn an_instance_cut_off_from_the_database_stops_leading_and_serving_from_memory_then_recovers()
{
    const LEASE: Duration = Duration::from_millis(3000);
    let sims = join_all((0..2).map(start_sim)).await;
    let Some(shared) = shared_database(&sims, 2).await else {
        return;
    };
    let db = &shared.db;
    let pg_port = url::Url::parse(&db.url).unwrap().port().unwrap_or(5432);
    let proxy = Proxy::start(pg_port).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = |url: String| {
        let mut s = test_settings(&dir);
        s.database.url = url;
        s.database.pool_size = 4;
        s.cluster.lease_ms = LEASE.as_millis() as u64;
        s
    };
    // The instance behind the proxy starts first, so it leads.
    let cut = Instance::start(settings(with_port(&db.url, proxy.port))).await;
    wait_until("the first instance to lead", WAIT, async || {
        cut.status().await.leader
    })
    .await;
    let other = Instance::start(settings(db.url.clone())).await;
    for i in [&cut, &other] {
        i.state.worlds.refresh().await.unwrap();
    }
    let mut c = cut.ws_as("multi", "erin").await;
    let first = c
        .request("bbb.room_url", json!(1), json!({"room": "r0"}), WAIT)
        .await
        .unwrap();
    assert_eq!(first[0], "success", "{first}");
    let target = |u: &Value| {
        let u = u[2]["url"].as_str().unwrap();
        (port_of(u), query(u)["meetingID"].clone())
    };
    let placed = target(&first);
    wait_until("its servers trusted", WAIT, async || {
        cut.status().await.servers.iter().all(|s| !s.stale)
    })
    .await;

    proxy.swallow(true);
    let cut_at = Instant::now();
    wait_until(
        "the cut-off instance to stop leading and trusting memory",
        WAIT,
        async || {
            let s = cut.status().await;
            !s.leader && s.servers.iter().all(|s| s.stale)
        },
    )
    .await;
    // Within the lease, and the other instance took the poll over.
    let took = cut_at.elapsed();
    assert!(took < LEASE + Duration::from_millis(1500), "{took:?}");
    wait_until("the other instance to lead", WAIT, async || {
        other.status().await.leader
    })
    .await;
    // Nothing stale is served: a session of the cut-off instance gets no URL from memory.
    let now = Instant::now();
    let joins = &cut.state.joins;
    let answerable: Vec<_> = joins
        .keys()
        .into_iter()
        .filter(|k| joins.get(k.as_str()).is_some_and(|p| p.valid_at(now)))
        .collect();
    assert!(
        answerable.is_empty(),
        "answerable from memory: {answerable:?}"
    );

    proxy.swallow(false);
    wait_until("the instance to trust memory again", WAIT, async || {
        cut.status().await.servers.iter().all(|s| !s.stale)
    })
    .await;
    assert!(other.status().await.leader != cut.status().await.leader);
    // Nothing lost or placed twice: both instances hand out the same meeting.
    for i in [&cut, &other] {
        let mut c = i.ws_as("multi", "frank").await;
        let again = c
            .request("bbb.room_url", json!(2), json!({"room": "r0"}), WAIT)
            .await
            .unwrap();
        assert_eq!(again[0], "success", "{again}");
        assert_eq!(target(&again), placed);
    }
    let ids: Vec<ServerId> = cut.status().await.servers.iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), 2);
    let where_ = running(&sims).await;
    assert_eq!(where_.get(&placed.1), Some(&vec![placed.0]));
}
