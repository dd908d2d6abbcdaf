//! Builds the whole gateway — database, coordinator, world cache, the public and the admin HTTP
//! servers — in one place, for `main` and for the integration tests alike (which bind port 0).

use std::net::TcpListener;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Arbiter, ArbiterHandle};
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio::sync::watch;

use crate::bbb::{AwcBbbClient, BbbClientConfig};
use crate::config::{redact_url, SessionConfig, Settings};
use crate::coordinator::{
    BbbCoordinator, CoordinatorSettings, EndCallbacks, PollNow, RemoteChange, StepDown,
};
use crate::db::changes::ChangeListener;
use crate::db::Db;
use crate::end_callback::EndCallbackKey;
use crate::join::JoinTable;
use crate::metrics::{MeteredBbbApi, Metrics};
use crate::state::AppState;
use crate::user_refresh::UserRefresher;
use crate::world::WorldCache;

/// How long a graceful shutdown may take in all; the process exits within 10 s of SIGTERM.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(9);
/// How long a shutdown waits for the sessions it told to go away (they close within about two
/// seconds: close frame, the client's answer, or the session's wait for it running out).
const SESSION_DRAIN: Duration = Duration::from_secs(3);
/// How long the HTTP server then waits for connections still open.
const CONNECTION_DRAIN_SECS: u64 = 3;

/// HTTP workers of the admin listener: a few operators and a metrics scraper.
const ADMIN_WORKERS: usize = 1;

/// A gateway bound to its ports, ready to run.
pub struct Application {
    port: u16,
    admin_port: u16,
    /// The public server (WebSocket, end callbacks, health).
    server: Server,
    /// The admin server (REST, metrics, status page), running from the start.
    admin: actix_web::dev::ServerHandle,
    state: Arc<AppState>,
    coordinator_arbiter: ArbiterHandle,
    listener: Option<Arc<std::sync::Mutex<Option<ChangeListener>>>>,
    drain: Arc<Drain>,
}

/// Whether a graceful shutdown began and whether it is complete.
struct Drain {
    started: AtomicBool,
    finished: watch::Sender<bool>,
}

impl Drain {
    fn new() -> Drain {
        Drain {
            started: AtomicBool::new(false),
            finished: watch::channel(false).0,
        }
    }

    async fn wait_finished(&self) {
        let mut rx = self.finished.subscribe();
        let _ = tokio::time::timeout(SHUTDOWN_BUDGET * 2, rx.wait_for(|done| *done)).await;
    }
}

/// Stops a running [`Application`]: gracefully ([`Stopper::shut_down`], what SIGTERM does) or
/// at once ([`Stopper::stop`]).
#[derive(Clone)]
pub struct Stopper {
    server: actix_web::dev::ServerHandle,
    admin: actix_web::dev::ServerHandle,
    coordinator_arbiter: ArbiterHandle,
    coordinator: Addr<BbbCoordinator>,
    listener: Option<Arc<std::sync::Mutex<Option<ChangeListener>>>>,
    state: Arc<AppState>,
    drain: Arc<Drain>,
}

/// Stops the change listener's thread, if there is one (off the async workers: it joins).
async fn stop_listener(listener: Option<Arc<std::sync::Mutex<Option<ChangeListener>>>>) {
    let Some(listener) = listener else {
        return;
    };
    let taken = listener
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(l) = taken {
        let _ = web::block(move || l.stop()).await;
    }
}

impl Stopper {
    /// Stops the HTTP server at once (open connections dropped), then the coordinator's
    /// arbiter, and waits (bounded) until the coordinator is gone. The coordinator gives the
    /// poll lease up first ([`StepDown`]), so with several instances another one takes the
    /// fleet poll over at its next election (tests use it to "kill" an instance).
    pub async fn stop(self) {
        self.server.stop(false).await;
        self.admin.stop(false).await;
        self.stop_coordinator(Duration::from_secs(5)).await;
    }

    /// Stops the change listener and the coordinator's arbiter, and waits until the
    /// coordinator is gone, at most `within`.
    async fn stop_coordinator(&self, within: Duration) {
        // Hand the poll over at once instead of letting the lease run out.
        let step_down = self.coordinator.send(StepDown);
        if actix_web::rt::time::timeout(within / 2, step_down)
            .await
            .is_err()
        {
            log::warn!("the coordinator did not give the poll lease up in time");
        }
        stop_listener(self.listener.clone()).await;
        self.coordinator_arbiter.stop();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !self.coordinator.connected() {
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
        log::warn!("the coordinator did not stop within {within:?}");
    }

    /// The graceful shutdown SIGTERM and SIGINT trigger, within [`SHUTDOWN_BUDGET`]:
    /// 1. every session gets a close frame 1001 ("going away") at once, its `bbb.*` requests in
    ///    flight answered `bbb.failed` first, so clients reconnect to another instance (a
    ///    connection that arrives meanwhile gets 1001 as soon as it is upgraded);
    /// 2. once they are gone, the server stops accepting and waits for the other open
    ///    connections to end;
    /// 3. `bbb.*` requests the coordinator is still working on may finish (their meetings are
    ///    recorded), then the coordinator stops.
    ///
    /// Calling it again waits for the first call to finish.
    pub async fn shut_down(self) {
        if self.drain.started.swap(true, Ordering::SeqCst) {
            return self.drain.wait_finished().await;
        }
        let deadline = Instant::now() + SHUTDOWN_BUDGET;
        let told = self.state.sessions.shut_down();
        log::info!("shutting down: {told} session(s) told to reconnect elsewhere");
        // Sessions end within about two seconds (close frame, the client's answer). Waiting
        // for them first lets the server stop at once: its graceful stop looks at open
        // connections only once a second.
        let left = self.state.sessions.wait_until_empty(SESSION_DRAIN).await;
        if left > 0 {
            log::info!("{left} session(s) still closing");
        } else if told > 0 {
            // The connections of the last sessions end on their worker threads right after.
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        self.server.stop(true).await;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let left = self.state.bbb_in_flight.wait_idle(remaining).await;
        if left > 0 {
            log::warn!("shutting down with {left} BBB request(s) unfinished");
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.stop_coordinator(remaining.max(Duration::from_millis(500)))
            .await;
        log::info!("shut down");
        self.drain.finished.send_replace(true);
    }
}

/// Opens the pool, applies migrations and reads (or creates) the end-callback key (blocking;
/// call before the runtime is busy). Warns about worlds with short JWT secrets.
fn open_gateway_database(settings: &Settings) -> anyhow::Result<(Db, EndCallbackKey)> {
    let db = open_database(settings)?;
    let mut conn = db
        .get()
        .context("cannot read the end-callback key from the database")?;
    let key = EndCallbackKey::load(&mut conn)
        .context("cannot read the end-callback key from the database")?;
    warn_about_short_secrets(&mut conn);
    Ok((db, key))
}

/// Logs, once per world, that its JWT secrets are shorter than import accepts now. Tokens
/// signed with them still work; the secret itself is never logged.
fn warn_about_short_secrets(conn: &mut crate::db::DbConn) {
    match crate::world::worlds_with_short_secrets(conn) {
        Ok(worlds) => {
            for (world, n) in worlds {
                log::warn!(
                    "world {world:?} has {n} JWT secret(s) shorter than {} bytes; tokens signed \
                     with them are still accepted, but replace them (world export, set longer \
                     secrets, world import) and re-issue the tokens",
                    crate::world::MIN_JWT_SECRET_BYTES
                );
            }
        }
        Err(e) => log::warn!("cannot check the worlds' JWT secrets: {e}"),
    }
}

/// Opens the pool and applies migrations (blocking; call before the runtime is busy).
pub fn open_database(settings: &Settings) -> anyhow::Result<Db> {
    let db = Db::connect(
        &settings.database.url,
        settings.database.pool_size,
        settings.db_timeout(),
    )
    .with_context(|| {
        format!(
            "cannot open the database {}",
            redact_url(&settings.database.url)
        )
    })?;
    let applied = db.migrate().context("cannot migrate the database")?;
    if applied > 0 {
        log::info!("applied {applied} database migration(s)");
    }
    Ok(db)
}

/// This process's name in leases and in-flight creates: its pid and a random part, unique
/// among the instances sharing a database.
fn instance_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", std::process::id(), &id[..12])
}

/// Starts the coordinator on `arbiter` (stopping the arbiter stops the coordinator), with the
/// awc client created there (awc's client is not `Send`). It publishes the meetings sessions
/// may answer from to `joins`; its creates name `end_callbacks` when given.
pub fn start_coordinator_on(
    arbiter: &ArbiterHandle,
    settings: &Settings,
    db: Db,
    metrics: Arc<Metrics>,
    joins: Arc<JoinTable>,
    end_callbacks: Option<EndCallbacks>,
) -> Addr<BbbCoordinator> {
    let client_config = BbbClientConfig {
        connect_timeout: Duration::from_millis(settings.bbb.connect_timeout_ms),
        request_timeout: Duration::from_millis(settings.bbb.request_timeout_ms),
        max_body_bytes: settings.bbb.max_body_bytes,
    };
    let coordinator_settings = CoordinatorSettings {
        poll_interval: settings.poll_interval(),
        unhealthy_after: settings.bbb.unhealthy_after,
        healthy_after: settings.bbb.healthy_after,
        create_retry_servers: settings.bbb.create_retry_servers,
        request_timeout: Duration::from_millis(settings.bbb.request_timeout_ms),
        confirm_ttl: settings.confirm_ttl(),
        join_deadline: settings.join_deadline(),
        end_callbacks,
        lease: settings.lease(),
        instance: instance_name(),
        retention_days: settings.retention.days,
        placement_overflow: settings.bbb.placement_overflow,
    };
    BbbCoordinator::start_in_arbiter(arbiter, move |_| {
        let client = Rc::new(AwcBbbClient::new(client_config));
        BbbCoordinator::new(
            db,
            Rc::new(MeteredBbbApi::new(client, metrics)),
            coordinator_settings,
            joins,
        )
    })
}

impl Application {
    /// Builds the gateway with the default session timings.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_with(settings, SessionConfig::default()).await
    }

    /// Builds the gateway; `session` lets tests shorten heartbeats and limits.
    pub async fn build_with(
        settings: Settings,
        session: SessionConfig,
    ) -> anyhow::Result<Application> {
        let settings_for_db = settings.clone();
        let (db, end_callback_key) = web::block(move || open_gateway_database(&settings_for_db))
            .await
            .context("database start-up task failed")??;
        let listener = TcpListener::bind(settings.http.listen)
            .with_context(|| format!("cannot listen on http.listen = {}", settings.http.listen))?;
        let admin_listener = TcpListener::bind(settings.http.admin_listen).with_context(|| {
            format!(
                "cannot listen on http.admin_listen = {}",
                settings.http.admin_listen
            )
        })?;
        let bound = listener.local_addr()?;
        let port = bound.port();
        let admin_port = admin_listener.local_addr()?.port();
        let worlds = WorldCache::new(db.clone());
        let metrics = Arc::new(Metrics::new());
        let coordinator_arbiter = Arbiter::new().handle();
        let joins = Arc::new(JoinTable::default());
        let end_callbacks = settings.bbb.end_callbacks.then(|| EndCallbacks {
            public_url: settings.public_url(bound),
            key: end_callback_key.clone(),
        });
        let coordinator = start_coordinator_on(
            &coordinator_arbiter,
            &settings,
            db.clone(),
            metrics.clone(),
            joins.clone(),
            end_callbacks,
        );
        let changes = listen_for_changes(&db, &coordinator);
        let refresh = Duration::from_millis(settings.cache.refresh_interval_ms);
        let sessions = Arc::default();
        let ip_limits = AppState::ip_limits_for(&settings);
        let state = Arc::new(AppState {
            settings,
            db: db.clone(),
            worlds: worlds.clone(),
            coordinator,
            joins,
            end_callback_key,
            session,
            sessions: Arc::clone(&sessions),
            bbb_in_flight: Arc::default(),
            metrics,
            ip_limits,
            started_at: Instant::now(),
        });
        actix_web::rt::spawn(refresh_worlds(worlds, refresh));
        actix_web::rt::spawn(UserRefresher::new(db, sessions, refresh).run(refresh));
        let data = web::Data::from(state.clone());
        let public_data = data.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(public_data.clone())
                .configure(crate::http::routes)
        })
        .on_connect(crate::session::socket::remember_socket)
        // Signals are handled by `run_until_signal`, which shuts down gracefully.
        .disable_signals()
        .shutdown_timeout(CONNECTION_DRAIN_SECS)
        .listen(listener)?
        .run();
        // Its own server (and workers), so the admin plane answers however busy the public
        // listener is, and nothing of it is reachable there.
        let admin_server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .configure(crate::admin::routes)
        })
        .workers(ADMIN_WORKERS)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(admin_listener)?
        .run();
        let admin = admin_server.handle();
        actix_web::rt::spawn(admin_server);
        Ok(Application {
            port,
            admin_port,
            admin,
            server,
            state,
            coordinator_arbiter,
            listener: changes,
            drain: Arc::new(Drain::new()),
        })
    }

    /// The public listener's port (WebSocket, end callbacks, health).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin listener's port (REST, metrics, status page).
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// A handle to stop the public server (graceful); the admin server stops after it.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Stops the whole instance, HTTP server and coordinator (see [`Stopper`]).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            server: self.server.handle(),
            admin: self.admin.clone(),
            coordinator_arbiter: self.coordinator_arbiter.clone(),
            coordinator: self.state.coordinator.clone(),
            listener: self.listener.clone(),
            state: self.state.clone(),
            drain: self.drain.clone(),
        }
    }

    /// Serves until the public server stops (a [`Stopper`] or handle), then stops the admin
    /// server and the coordinator, which releases the poll leadership at once instead of at
    /// process exit. After a graceful shutdown it returns once that is complete.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let drain = self.drain.clone();
        let result = self.server.await;
        self.admin.stop(true).await;
        if drain.started.load(Ordering::SeqCst) {
            drain.wait_finished().await;
        } else {
            let step_down = self.state.coordinator.send(StepDown);
            let _ = actix_web::rt::time::timeout(Duration::from_secs(2), step_down).await;
            stop_listener(self.listener).await;
            self.coordinator_arbiter.stop();
        }
        result
    }

    /// Serves until SIGTERM or SIGINT (listened for since `signals` was installed), then shuts
    /// down gracefully ([`Stopper::shut_down`]).
    pub async fn run_until_signal(self, signals: ShutdownSignals) -> std::io::Result<()> {
        let stopper = self.stopper();
        let on_signal = actix_web::rt::spawn(async move {
            let name = signals.recv().await;
            log::info!("{name} received, shutting down");
            stopper.shut_down().await;
        });
        let result = self.run_until_stopped().await;
        on_signal.abort();
        result
    }
}

/// SIGTERM and SIGINT (Ctrl-C), listened for from [`ShutdownSignals::install`] on: install it
/// before start-up work, so a signal that arrives meanwhile is not lost (and does not kill the
/// process the default way).
pub struct ShutdownSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Starts listening; needs a running Tokio runtime.
    pub fn install() -> std::io::Result<ShutdownSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(ShutdownSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    /// Waits for the first signal; returns its name.
    pub async fn recv(mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}

/// On PostgreSQL, feeds other instances' changes to the coordinator, which re-reads the
/// stored meetings after every (re)connection of the listener.
fn listen_for_changes(
    db: &Db,
    coordinator: &Addr<BbbCoordinator>,
) -> Option<Arc<std::sync::Mutex<Option<ChangeListener>>>> {
    let on_change = coordinator.clone();
    let on_resync = coordinator.clone();
    let listener = crate::db::changes::listen(
        db,
        move |change| on_change.do_send(RemoteChange(change)),
        move || on_resync.do_send(PollNow),
    )?;
    Some(Arc::new(std::sync::Mutex::new(Some(listener))))
}

/// Picks up worlds changed by other processes (CLI imports, other instances).
async fn refresh_worlds(worlds: WorldCache, every: Duration) {
    let mut interval = actix_web::rt::time::interval(every);
    loop {
        interval.tick().await;
        match worlds.refresh().await {
            Ok(0) => {}
            Ok(n) => log::info!("reloaded {n} changed world(s)"),
            Err(e) => log::warn!("cannot refresh worlds: {e}"),
        }
    }
}
