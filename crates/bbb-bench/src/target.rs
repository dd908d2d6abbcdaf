//! Where the load goes: a gateway started in this process, a gateway started as a child
//! process (so its memory is measured alone), or an external gateway given by URL. The first
//! two also start the bbb-sim servers on loopback, import the benchmark worlds and register
//! the servers, each world with servers of its own (the keynote world's with a capacity).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use bbb_api::{ChecksumAlgorithm, Secret, ServerEndpoint};
use bbb_gateway::config::{SessionConfig, Settings};
use bbb_gateway::coordinator::{PollNow, ReloadServers};
use bbb_gateway::db::servers::{self, NewServer};
use bbb_gateway::startup::Application;
use bbb_gateway::world::JwtSecret;
use bbb_sim::{self as sim, SimConfig, SimHandle};

use super::world;

/// How the gateway under test runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayMode {
    /// In this process (`Application::build_with`); its memory includes the load generator's.
    InProcess,
    /// `bbb-gateway serve` from this path as a child process, measured alone.
    Child(PathBuf),
    /// Already running elsewhere: `ws://host:port`, optionally with its pid for memory.
    External { ws_base: String, pid: Option<u32> },
}

/// Sizes of the worlds and fleets to set up.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    pub mode: GatewayMode,
    /// bbb-sim servers of the main world.
    pub sims: usize,
    /// Warm rooms of the main world.
    pub rooms: usize,
    /// Servers and rooms of the spread world.
    pub spread_sims: usize,
    pub spread_rooms: usize,
    /// Servers and rooms of the churn world (its servers run BBB's timers `CHURN_TIME_SCALE`
    /// times faster, so meetings expire within the run).
    pub churn_sims: usize,
    pub churn_rooms: usize,
    /// For an external gateway: its world and JWT secret.
    pub world: String,
    pub secret: String,
    /// The keynote world and its servers; `None`: not set up.
    pub keynote: Option<KeynoteSetup>,
}

/// The keynote world: servers with a capacity, a keynote and breakouts with expected sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeynoteSetup {
    /// bbb-sim servers, each registered with `capacity`.
    pub sims: usize,
    /// Participants each server can carry.
    pub capacity: u32,
    /// `expected_participants` of the keynote room.
    pub keynote_expected: u32,
    /// Breakout rooms, and their expected size (the world's `bbb_defaults`).
    pub breakouts: usize,
    pub breakout_expected: u32,
}

/// Whose memory and descriptors the `idle` and `soak` scenarios measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measured {
    /// This process: gateway and load generator together.
    ThisProcess,
    /// The gateway alone.
    Gateway(u32),
    /// Nothing (external gateway without a pid).
    Unavailable,
}

impl Measured {
    /// The process to read, when there is one.
    pub fn pid(self) -> Option<super::sys::Pid> {
        match self {
            Measured::ThisProcess => Some(None),
            Measured::Gateway(p) => Some(Some(p)),
            Measured::Unavailable => None,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Measured::ThisProcess => "whole process (gateway + load generator)",
            Measured::Gateway(_) => "gateway process alone",
            Measured::Unavailable => "not measured",
        }
    }
}

/// A world the scenarios may use.
#[derive(Debug, Clone)]
pub struct WorldTarget {
    pub id: String,
    pub secret: JwtSecret,
    /// Ports of the bbb-sim servers serving it (empty for an external gateway).
    pub sim_ports: Vec<u16>,
}

/// BBB minutes on the churn world's servers last one second.
pub const CHURN_TIME_SCALE: f64 = 60.0;

/// The churn world's servers, which the `churn` scenario ends meetings on and kills.
pub struct ChurnFleet {
    pub world: WorldTarget,
    /// The shared secret of each server, by position in `world.sim_ports`.
    pub secrets: Vec<String>,
    /// The running simulators; `None` once killed.
    pub sims: std::sync::Mutex<Vec<Option<SimHandle>>>,
}

impl ChurnFleet {
    /// Stops server `i` like a crash (its port refuses connections); `false` if it was not
    /// running.
    pub async fn kill(&self, i: usize) -> bool {
        let sim = self
            .sims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(i)
            .and_then(Option::take);
        match sim {
            Some(s) => {
                s.stop().await;
                true
            }
            None => false,
        }
    }
}

/// The keynote world as set up: its servers, with what the scenario needs to ask them.
#[derive(Debug, Clone)]
pub struct KeynoteTarget {
    pub world: WorldTarget,
    pub setup: KeynoteSetup,
    /// Where and how to call each server's BBB API, in the order of `world.sim_ports`.
    pub endpoints: Vec<ServerEndpoint>,
}

/// A gateway ready for load, and what keeps it running.
pub struct Target {
    /// `ws://127.0.0.1:PORT`.
    pub ws_base: String,
    pub main: WorldTarget,
    /// `None` for an external gateway (its fleet is not ours to count).
    pub spread: Option<WorldTarget>,
    /// `None` for an external gateway or without churn servers.
    pub churn: Option<ChurnFleet>,
    /// `None` unless set up (and never for an external gateway).
    pub keynote: Option<KeynoteTarget>,
    pub measured: Measured,
    /// This process's own footprint is excluded from the gateway's when the gateway is a child.
    _keep: Keep,
}

#[derive(Default)]
struct Keep {
    _dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    server: Option<actix_web::dev::ServerHandle>,
    sims: Vec<SimHandle>,
}

impl Drop for Keep {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(h) = self.server.take() {
            actix_web::rt::spawn(async move { h.stop(false).await });
        }
    }
}

impl Target {
    /// The WebSocket URL of `world`.
    pub fn ws_url(&self, world: &str) -> String {
        format!("{}/ws/world/{world}/", self.ws_base)
    }

    /// Stops the simulators (a gateway child is killed on drop).
    pub async fn shutdown(mut self) {
        for s in self._keep.sims.drain(..) {
            s.stop().await;
        }
        if let Some(churn) = self.churn.take() {
            let sims = churn
                .sims
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for s in sims.into_iter().flatten() {
                s.stop().await;
            }
        }
    }
}

/// The shared secret of bench server `i`.
pub fn sim_secret(i: usize) -> String {
    format!("bench-sim-{i}-secret-0123456789abcdef")
}

pub(crate) async fn start_sims(
    first: usize,
    n: usize,
    time_scale: f64,
) -> anyhow::Result<Vec<SimHandle>> {
    let mut v = Vec::new();
    for i in first..first + n {
        let cfg = SimConfig {
            secret: sim_secret(i),
            checksum: None,
            latency_ms: 0,
            time_scale,
        };
        let addr = "127.0.0.1:0".parse().context("loopback address")?;
        v.push(
            sim::start(addr, cfg)
                .await
                .context("cannot start bbb-sim")?,
        );
    }
    Ok(v)
}

/// Starts the gateway (unless external), the simulators and the worlds.
pub async fn start(opts: &SetupOptions) -> anyhow::Result<Target> {
    if let GatewayMode::External { ws_base, pid } = &opts.mode {
        return Ok(Target {
            ws_base: ws_base.trim_end_matches('/').to_string(),
            main: WorldTarget {
                id: opts.world.clone(),
                secret: world::jwt_secret(&opts.secret),
                sim_ports: Vec::new(),
            },
            spread: None,
            churn: None,
            keynote: None,
            measured: pid.map_or(Measured::Unavailable, Measured::Gateway),
            _keep: Keep::default(),
        });
    }
    let dir = tempfile::tempdir().context("cannot create a temp directory")?;
    let main_sims = start_sims(0, opts.sims.max(1), 1.0).await?;
    let spread_sims = start_sims(100, opts.spread_sims, 1.0).await?;
    let churn_sims = start_sims(CHURN_SIMS_FROM, opts.churn_sims, CHURN_TIME_SCALE).await?;
    let keynote_sims = match &opts.keynote {
        Some(k) => start_sims(KEYNOTE_SIMS_FROM, k.sims.max(1), 1.0).await?,
        None => Vec::new(),
    };
    let capacity = opts.keynote.map(|k| k.capacity);
    let registrations: Vec<Registration> = main_sims
        .iter()
        .enumerate()
        .map(|(i, s)| (s.base_url(), i, world::WORLD, None))
        .chain(
            spread_sims
                .iter()
                .enumerate()
                .map(|(i, s)| (s.base_url(), 100 + i, world::SPREAD_WORLD, None)),
        )
        .chain(
            churn_sims
                .iter()
                .enumerate()
                .map(|(i, s)| (s.base_url(), CHURN_SIMS_FROM + i, world::CHURN_WORLD, None)),
        )
        .chain(keynote_sims.iter().enumerate().map(|(i, s)| {
            (
                s.base_url(),
                KEYNOTE_SIMS_FROM + i,
                world::KEYNOTE_WORLD,
                capacity,
            )
        }))
        .collect();
    let mut worlds = vec![
        world::bench_world(opts.rooms.max(1)),
        world::spread_world(opts.spread_rooms.max(1)),
        world::churn_world(opts.churn_rooms.max(1)),
    ];
    if let Some(k) = &opts.keynote {
        worlds.push(world::keynote_world(
            k.keynote_expected,
            k.breakouts,
            k.breakout_expected,
        ));
    }
    let mut keep = Keep::default();
    let (ws_base, measured) = match &opts.mode {
        GatewayMode::InProcess => {
            let app = in_process(&dir, &worlds, &registrations).await?;
            keep.server = Some(app.1);
            (app.0, Measured::ThisProcess)
        }
        GatewayMode::Child(bin) => {
            let (base, child) = child(bin, &dir, &worlds, &registrations).await?;
            let pid = child.id();
            keep.child = Some(child);
            (base, Measured::Gateway(pid))
        }
        GatewayMode::External { .. } => unreachable!("handled above"),
    };
    let ports = |s: &[SimHandle]| s.iter().map(SimHandle::port).collect::<Vec<_>>();
    let main = WorldTarget {
        id: world::WORLD.into(),
        secret: world::jwt_secret(world::SECRET),
        sim_ports: ports(&main_sims),
    };
    let spread = (!spread_sims.is_empty()).then(|| WorldTarget {
        id: world::SPREAD_WORLD.into(),
        secret: world::jwt_secret(world::SECRET),
        sim_ports: ports(&spread_sims),
    });
    let churn = (!churn_sims.is_empty()).then(|| ChurnFleet {
        world: WorldTarget {
            id: world::CHURN_WORLD.into(),
            secret: world::jwt_secret(world::SECRET),
            sim_ports: ports(&churn_sims),
        },
        secrets: (0..churn_sims.len())
            .map(|i| sim_secret(CHURN_SIMS_FROM + i))
            .collect(),
        sims: std::sync::Mutex::new(churn_sims.into_iter().map(Some).collect()),
    });
    let keynote = opts.keynote.map(|setup| KeynoteTarget {
        world: WorldTarget {
            id: world::KEYNOTE_WORLD.into(),
            secret: world::jwt_secret(world::SECRET),
            sim_ports: ports(&keynote_sims),
        },
        setup,
        endpoints: keynote_sims
            .iter()
            .enumerate()
            .map(|(i, s)| ServerEndpoint {
                base_url: s.base_url(),
                secret: Secret::new(sim_secret(KEYNOTE_SIMS_FROM + i)),
                algorithm: ChecksumAlgorithm::Sha256,
            })
            .collect(),
    });
    keep.sims = main_sims
        .into_iter()
        .chain(spread_sims)
        .chain(keynote_sims)
        .collect();
    keep._dir = Some(dir);
    Ok(Target {
        ws_base,
        main,
        spread,
        churn,
        keynote,
        measured,
        _keep: keep,
    })
}

/// The abuse limits out of the way (`limits.*` as environment variables): every bench session
/// comes from 127.0.0.1 and sends as fast as it is answered, which is what the limits stop.
pub(crate) const UNLIMITED: [(&str, &str); 5] = [
    ("BBB_GATEWAY__LIMITS__FRAMES_PER_SEC", "1000000000"),
    ("BBB_GATEWAY__LIMITS__FRAMES_BURST", "1000000000"),
    ("BBB_GATEWAY__LIMITS__CONNECTIONS_PER_IP", "1000000000"),
    (
        "BBB_GATEWAY__LIMITS__AUTHENTICATE_PER_IP_PER_SEC",
        "1000000000",
    ),
    (
        "BBB_GATEWAY__LIMITS__AUTHENTICATE_PER_IP_BURST",
        "1000000000",
    ),
];

/// Index of the first churn-world sim (its secret's number).
const CHURN_SIMS_FROM: usize = 200;

/// Index of the first keynote-world sim (its secret's number).
const KEYNOTE_SIMS_FROM: usize = 300;

/// A server to register: URL, sim number, world it is exclusive to, capacity.
type Registration = (String, usize, &'static str, Option<u32>);

/// Production defaults, except a temp SQLite database, free loopback ports and the abuse
/// limits out of the way ([`UNLIMITED`]).
fn settings(dir: &tempfile::TempDir) -> anyhow::Result<Settings> {
    let env = UNLIMITED
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()));
    let mut s = Settings::load_with_env(None, env).context("default settings")?;
    s.http.listen = "127.0.0.1:0".parse().context("loopback address")?;
    s.http.admin_listen = "127.0.0.1:0".parse().context("loopback address")?;
    s.database.url = format!("sqlite://{}/gw.sqlite3", dir.path().display());
    Ok(s)
}

async fn in_process(
    dir: &tempfile::TempDir,
    worlds: &[serde_json::Value],
    servers: &[Registration],
) -> anyhow::Result<(String, actix_web::dev::ServerHandle)> {
    let app = Application::build_with(settings(dir)?, SessionConfig::default()).await?;
    let port = app.port();
    let state = app.state();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    for w in worlds {
        let file = bbb_gateway::world::parse_world_file(&w.to_string())
            .map_err(|e| anyhow::anyhow!("bench world: {e:?}"))?;
        state
            .db
            .run(move |c| bbb_gateway::world::import_world(c, &file))
            .await
            .context("cannot import the bench world")?;
    }
    state.worlds.refresh().await.context("world refresh")?;
    for (url, i, world_id, capacity) in servers {
        let new = NewServer {
            url: url.clone(),
            secret: Secret::new(sim_secret(*i)),
            checksum: ChecksumAlgorithm::Sha256,
            weight: 1.0,
            tag: Some(format!("sim{i}")),
            world_id: Some((*world_id).to_string()),
            capacity: *capacity,
        };
        state
            .db
            .run(move |c| servers::add(c, &new))
            .await
            .context("cannot register a bbb-sim")?;
    }
    state
        .coordinator
        .send(ReloadServers)
        .await
        .context("coordinator")?
        .context("reload servers")?;
    state.coordinator.send(PollNow).await.context("poll")?;
    Ok((format!("ws://127.0.0.1:{port}"), handle))
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

async fn child(
    bin: &PathBuf,
    dir: &tempfile::TempDir,
    worlds: &[serde_json::Value],
    servers: &[Registration],
) -> anyhow::Result<(String, Child)> {
    if !bin.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release --bin bbb-gateway`",
            bin.display()
        );
    }
    let port = free_port()?;
    let env = [
        (
            "BBB_GATEWAY__DATABASE__URL",
            format!("sqlite://{}/gw.sqlite3", dir.path().display()),
        ),
        ("BBB_GATEWAY__HTTP__LISTEN", format!("127.0.0.1:{port}")),
        ("BBB_GATEWAY__HTTP__ADMIN_LISTEN", "127.0.0.1:0".to_owned()),
    ];
    let env: Vec<(&str, String)> = env
        .into_iter()
        .chain(UNLIMITED.iter().map(|(k, v)| (*k, v.to_string())))
        .collect();
    let cli = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new(bin)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        if !out.status.success() {
            bail!(
                "`bbb-gateway {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    for (i, w) in worlds.iter().enumerate() {
        let path = dir.path().join(format!("world{i}.json"));
        std::fs::write(&path, w.to_string()).context("cannot write the bench world")?;
        cli(&["world", "import", &path.display().to_string()])?;
    }
    for (url, i, world_id, capacity) in servers {
        let secret = sim_secret(*i);
        let mut args = vec![
            "server",
            "add",
            "--url",
            url,
            "--secret",
            &secret,
            "--checksum",
            "sha256",
            "--world",
            world_id,
        ];
        let capacity = capacity.map(|c| c.to_string());
        if let Some(c) = &capacity {
            args.extend(["--capacity", c]);
        }
        cli(&args)?;
    }
    let log = std::fs::File::create(dir.path().join("gateway.log")).context("gateway log")?;
    let mut child = Command::new(bin)
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("gateway log")?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {} serve", bin.display()))?;
    let health = format!("http://127.0.0.1:{port}/healthz");
    let client = awc::Client::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(&health).send().await {
            if r.status().is_success() {
                break;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("the gateway exited during start-up ({status}); see its log");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the gateway did not become healthy within 30 s");
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the first poll see the servers before any placement.
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    Ok((format!("ws://127.0.0.1:{port}"), child))
}
