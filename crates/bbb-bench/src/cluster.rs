//! Several gateway instances on one PostgreSQL database, as a scaled-out deployment runs them:
//! a fresh database (on `DATABASE_URL_PG`, else a throwaway server, through the gateway's own
//! test support), the worlds and servers written into it, and N instances started on it —
//! `bbb-gateway serve` child processes (each measured alone) or, for the smoke tests, in this
//! process. Every instance is configured through `BBB_GATEWAY__…` variables and asked for its
//! role and counters through its admin status route.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use bbb_api::{ChecksumAlgorithm, Secret};
use bbb_gateway::config::{SessionConfig, Settings};
use bbb_gateway::db::servers::{self, NewServer};
use bbb_gateway::db::testing::TestDb;
use bbb_gateway::ids::ServerId;
use bbb_gateway::startup::{Application, Stopper};

use super::pool::SessionSpec;
use super::target::{sim_secret, UNLIMITED};
use super::world;

/// The admin token of every instance (loopback only; never a real secret).
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";

/// How long an instance may take to start (a child loads every stored meeting first).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// How the instances run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceMode {
    /// Applications in this process: quick, but their CPU and memory cannot be told apart.
    InProcess,
    /// `bbb-gateway serve` from this path, one child process each.
    Child(PathBuf),
}

/// A fresh, migrated PostgreSQL database for one scenario; `Ok(None)` when there is no
/// PostgreSQL (`DATABASE_URL_PG` unset and none can be started), which the gateway's test
/// support reports on stderr. Dropped: the database is dropped.
pub fn postgres() -> anyhow::Result<Option<TestDb>> {
    match TestDb::postgres() {
        None => Ok(None),
        Some(db) => Ok(Some(db.map_err(|e| {
            anyhow::anyhow!("cannot create a PostgreSQL database: {e}")
        })?)),
    }
}

/// Imports `worlds` (world files as JSON) into `db`.
pub async fn import_worlds(db: &TestDb, worlds: &[Value]) -> anyhow::Result<()> {
    for w in worlds {
        let file = bbb_gateway::world::parse_world_file(&w.to_string())
            .map_err(|e| anyhow::anyhow!("bench world: {e:?}"))?;
        db.db
            .run(move |c| bbb_gateway::world::import_world(c, &file))
            .await
            .context("cannot import a bench world")?;
    }
    Ok(())
}

/// Registers the simulators at `urls` (secrets of numbers `first`, `first + 1`, …) as servers
/// of `world_id` (`None`: of every world); returns their ids in the same order.
pub async fn register(
    db: &TestDb,
    urls: &[String],
    first: usize,
    world_id: Option<&str>,
) -> anyhow::Result<Vec<ServerId>> {
    let mut ids = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let new = NewServer {
            url: url.clone(),
            secret: Secret::new(sim_secret(first + i)),
            checksum: ChecksumAlgorithm::Sha256,
            weight: 1.0,
            tag: Some(format!("sim{}", first + i)),
            world_id: world_id.map(str::to_string),
            capacity: None,
        };
        let row = db
            .db
            .run(move |c| servers::add(c, &new))
            .await
            .context("cannot register a bbb-sim")?;
        ids.push(row.id);
    }
    Ok(ids)
}

/// What every instance of a cluster is configured with.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub mode: InstanceMode,
    /// The PostgreSQL database URL.
    pub database_url: String,
    /// `bbb.poll_interval_secs`.
    pub poll_interval_secs: u64,
    /// `cluster.lease_ms`.
    pub lease_ms: u64,
}

impl ClusterConfig {
    /// The configuration as `BBB_GATEWAY__…` variables: free loopback ports, the admin token,
    /// the abuse limits out of the way (every bench session comes from 127.0.0.1).
    fn env(&self) -> Vec<(String, String)> {
        let fixed = [
            ("BBB_GATEWAY__DATABASE__URL", self.database_url.clone()),
            ("BBB_GATEWAY__HTTP__LISTEN", "127.0.0.1:0".into()),
            ("BBB_GATEWAY__HTTP__ADMIN_LISTEN", "127.0.0.1:0".into()),
            ("BBB_GATEWAY__ADMIN__TOKENS", ADMIN_TOKEN.into()),
            (
                "BBB_GATEWAY__BBB__POLL_INTERVAL_SECS",
                self.poll_interval_secs.to_string(),
            ),
            ("BBB_GATEWAY__CLUSTER__LEASE_MS", self.lease_ms.to_string()),
        ];
        fixed
            .into_iter()
            .chain(UNLIMITED.iter().map(|(k, v)| (*k, v.to_string())))
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
}

enum Running {
    Child(Child),
    InProcess(Stopper),
}

/// One running gateway instance.
pub struct Instance {
    pub port: u16,
    pub admin_port: u16,
    /// The child's pid; `None` in process.
    pub pid: Option<u32>,
    running: Option<Running>,
}

impl Instance {
    /// Starts one instance; `log` receives a child's log lines.
    pub async fn start(config: &ClusterConfig, log: PathBuf) -> anyhow::Result<Instance> {
        match &config.mode {
            InstanceMode::InProcess => {
                let settings = Settings::load_with_env(None, config.env())
                    .context("bench cluster settings")?;
                let app = Application::build_with(settings, SessionConfig::default()).await?;
                let instance = Instance {
                    port: app.port(),
                    admin_port: app.admin_port(),
                    pid: None,
                    running: Some(Running::InProcess(app.stopper())),
                };
                actix_web::rt::spawn(app.run_until_stopped());
                Ok(instance)
            }
            InstanceMode::Child(bin) => start_child(bin, config, log).await,
        }
    }

    /// `ws://…/ws/world/{world}/` of this instance.
    pub fn ws_url(&self, world: &str) -> String {
        format!("ws://127.0.0.1:{}/ws/world/{world}/", self.port)
    }

    /// `GET /api/v1/status` of this instance.
    pub async fn status(&self) -> anyhow::Result<Value> {
        let mut resp = awc::Client::default()
            .get(format!(
                "http://127.0.0.1:{}/api/v1/status",
                self.admin_port
            ))
            .insert_header(("Authorization", format!("Bearer {ADMIN_TOKEN}")))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("status of the instance on {}: {e}", self.port))?;
        if !resp.status().is_success() {
            bail!("status of the instance on {}: {}", self.port, resp.status());
        }
        resp.json::<Value>()
            .limit(64 << 20)
            .await
            .context("unreadable status")
    }

    /// Stops the instance as systemd would (SIGTERM: the leader gives its lease up), killing a
    /// child that has not exited within 15 s.
    pub async fn stop(mut self) {
        match self.running.take() {
            Some(Running::InProcess(s)) => s.stop().await,
            Some(Running::Child(mut c)) => {
                if let Ok(pid) = i32::try_from(c.id()) {
                    // SAFETY: signals the child this instance started and still owns.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
                let deadline = Instant::now() + Duration::from_secs(15);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        return;
                    }
                    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            None => {}
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        match self.running.take() {
            Some(Running::Child(mut c)) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Some(Running::InProcess(s)) => {
                actix_web::rt::spawn(s.stop());
            }
            None => {}
        }
    }
}

/// The port in a log line `… listening on port N`, after `prefix`.
fn port_in(line: &str, prefix: &str) -> Option<u16> {
    line.split(prefix)
        .nth(1)
        .and_then(|p| p.trim().parse::<u16>().ok())
}

async fn start_child(
    bin: &PathBuf,
    config: &ClusterConfig,
    log: PathBuf,
) -> anyhow::Result<Instance> {
    if !bin.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release --bin bbb-gateway`",
            bin.display()
        );
    }
    let mut child = Command::new(bin)
        .arg("serve")
        .envs(config.env())
        // Only the start-up lines: logging every join would be measured as the gateway's cost.
        .env("RUST_LOG", "warn,bbb_gateway::cli=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {} serve", bin.display()))?;
    let Some(stderr) = child.stderr.take() else {
        let _ = child.kill();
        bail!("the gateway's stderr is not piped");
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut file = std::fs::File::create(&log).ok();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(f) = &mut file {
                let _ = writeln!(f, "{line}");
            }
            if let Some(p) = port_in(&line, "bbb-gateway listening on port ") {
                let _ = tx.send((false, p));
            }
            if let Some(p) = port_in(&line, "admin routes listening on port ") {
                let _ = tx.send((true, p));
            }
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let (mut port, mut admin_port) = (None, None);
    while port.is_none() || admin_port.is_none() {
        match rx.try_recv() {
            Ok((true, p)) => admin_port = Some(p),
            Ok((false, p)) => port = Some(p),
            Err(mpsc::TryRecvError::Empty) => {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("a gateway instance exited during start-up ({status}); see its log");
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("a gateway instance did not report its ports within {START_TIMEOUT:?}");
                }
                actix_web::rt::time::sleep(Duration::from_millis(50)).await;
            }
            Err(mpsc::TryRecvError::Disconnected) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("a gateway instance closed its log before reporting its ports");
            }
        }
    }
    let (Some(port), Some(admin_port)) = (port, admin_port) else {
        bail!("unreachable: both ports are known here");
    };
    Ok(Instance {
        port,
        admin_port,
        pid: Some(child.id()),
        running: Some(Running::Child(child)),
    })
}

/// Instances on one database.
pub struct Cluster {
    pub instances: Vec<Instance>,
    config: ClusterConfig,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// An empty cluster; [`Cluster::add`] starts instances.
    pub fn new(config: ClusterConfig) -> anyhow::Result<Cluster> {
        Ok(Cluster {
            instances: Vec::new(),
            config,
            dir: tempfile::tempdir().context("cannot create a temp directory")?,
        })
    }

    /// Starts one more instance and waits until its admin route answers.
    pub async fn add(&mut self) -> anyhow::Result<&Instance> {
        let n = self.instances.len();
        let log = self.dir.path().join(format!("gateway{n}.log"));
        let instance = Instance::start(&self.config, log).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = instance.status().await {
            if Instant::now() > deadline {
                bail!("instance {n} does not answer its status route: {e:#}");
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        self.instances.push(instance);
        Ok(&self.instances[n])
    }

    /// Starts `n` instances, the first alone until it leads (so the leader is instance 0).
    pub async fn start(config: ClusterConfig, n: usize) -> anyhow::Result<Cluster> {
        let mut cluster = Cluster::new(config)?;
        cluster.add().await?;
        cluster
            .wait_for("instance 0 to lead", Duration::from_secs(60), |c| {
                Box::pin(async move { Ok(c.leader().await?.is_some()) })
            })
            .await?;
        for _ in 1..n {
            cluster.add().await?;
        }
        Ok(cluster)
    }

    /// The index of the instance that says it leads, if one does.
    pub async fn leader(&self) -> anyhow::Result<Option<usize>> {
        for (i, inst) in self.instances.iter().enumerate() {
            if inst.status().await?["gateway"]["leader"] == true {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Waits until every instance knows `servers` servers online.
    pub async fn wait_online(&self, servers: usize, within: Duration) -> anyhow::Result<()> {
        self.wait_for("every instance to see the servers online", within, |c| {
            Box::pin(async move {
                for inst in &c.instances {
                    let online = inst.status().await?["totals"]["online"]
                        .as_u64()
                        .unwrap_or(0);
                    if online < servers as u64 {
                        return Ok(false);
                    }
                }
                Ok(true)
            })
        })
        .await
    }

    /// Polls `cond` every 100 ms until it holds; fails after `within`.
    pub async fn wait_for<'a>(
        &'a self,
        what: &str,
        within: Duration,
        cond: impl Fn(
            &'a Cluster,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<bool>> + 'a>>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if cond(self).await? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("timed out after {within:?} waiting for {what}");
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Session specs for `n` users `prefix0…` of world `w`, session `i` on instance
    /// `i % instances`.
    pub fn sessions(&self, w: &str, prefix: &str, n: usize) -> anyhow::Result<Vec<SessionSpec>> {
        let secret = world::jwt_secret(world::SECRET);
        (0..n)
            .map(|i| {
                let token = world::token(&secret, prefix, i)
                    .map_err(|e| anyhow::anyhow!("cannot mint a token: {e}"))?;
                Ok(SessionSpec {
                    index: i,
                    url: self.instances[i % self.instances.len().max(1)].ws_url(w),
                    token: Some(token),
                })
            })
            .collect()
    }

    /// Stops every instance (SIGTERM for children).
    pub async fn stop(mut self) {
        for i in self.instances.drain(..) {
            i.stop().await;
        }
    }
}
