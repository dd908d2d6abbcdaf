//! Builds the whole gateway — database, coordinator, world cache, HTTP server — in one place,
//! for `main` and for the integration tests alike (which bind port 0).

use std::net::TcpListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Arbiter, ArbiterHandle};
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::bbb::{AwcBbbClient, BbbClientConfig};
use crate::config::{redact_url, SessionConfig, Settings};
use crate::coordinator::{BbbCoordinator, CoordinatorSettings, WarmJoins};
use crate::db::Db;
use crate::metrics::{MeteredBbbApi, Metrics};
use crate::state::AppState;
use crate::world::WorldCache;

/// A gateway bound to its port, ready to run.
pub struct Application {
    port: u16,
    server: Server,
    state: Arc<AppState>,
    coordinator_arbiter: ArbiterHandle,
}

/// Stops a running [`Application`] completely: the HTTP server, then the coordinator's arbiter.
/// Stopping the coordinator drops its leader-lock connection, so with several instances the
/// next one takes over the fleet poll at its next tick (tests use it to "kill" an instance).
#[derive(Clone)]
pub struct Stopper {
    server: actix_web::dev::ServerHandle,
    coordinator_arbiter: ArbiterHandle,
    coordinator: Addr<BbbCoordinator>,
}

impl Stopper {
    /// Stops both and waits (bounded) until the coordinator is gone.
    pub async fn stop(self) {
        self.server.stop(false).await;
        self.coordinator_arbiter.stop();
        for _ in 0..500 {
            if !self.coordinator.connected() {
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
        log::warn!("the coordinator did not stop within 5 s");
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

/// Starts the coordinator on `arbiter` (stopping the arbiter stops the coordinator), with the
/// awc client created there (awc's client is not `Send`). It publishes running meetings to
/// `warm` for the sessions.
pub fn start_coordinator_on(
    arbiter: &ArbiterHandle,
    settings: &Settings,
    db: Db,
    metrics: Arc<Metrics>,
    warm: Arc<WarmJoins>,
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
    };
    BbbCoordinator::start_in_arbiter(arbiter, move |_| {
        let client = Rc::new(AwcBbbClient::new(client_config));
        BbbCoordinator::publishing_to(
            db,
            Rc::new(MeteredBbbApi::new(client, metrics)),
            coordinator_settings,
            warm,
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
        let db = web::block(move || open_database(&settings_for_db))
            .await
            .context("database start-up task failed")??;
        let worlds = WorldCache::new(db.clone());
        let metrics = Arc::new(Metrics::new());
        let coordinator_arbiter = Arbiter::new().handle();
        let warm = Arc::new(WarmJoins::default());
        let coordinator = start_coordinator_on(
            &coordinator_arbiter,
            &settings,
            db.clone(),
            metrics.clone(),
            warm.clone(),
        );
        let listener = TcpListener::bind(settings.http.listen)
            .with_context(|| format!("cannot listen on http.listen = {}", settings.http.listen))?;
        let port = listener.local_addr()?.port();
        let refresh = Duration::from_millis(settings.cache.refresh_interval_ms);
        let state = Arc::new(AppState {
            settings,
            db,
            worlds: worlds.clone(),
            coordinator,
            warm,
            session,
            metrics,
            started_at: Instant::now(),
        });
        actix_web::rt::spawn(refresh_worlds(worlds, refresh));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .configure(crate::http::routes)
                .configure(crate::admin::routes)
        })
        .shutdown_timeout(5)
        .listen(listener)?
        .run();
        Ok(Application {
            port,
            server,
            state,
            coordinator_arbiter,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// A handle to stop the server (graceful).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Stops the whole instance, HTTP server and coordinator (see [`Stopper`]).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            server: self.server.handle(),
            coordinator_arbiter: self.coordinator_arbiter.clone(),
            coordinator: self.state.coordinator.clone(),
        }
    }

    /// Serves until the server stops (signal or handle), then stops the coordinator, which
    /// releases the poll leadership at once instead of at process exit.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.coordinator_arbiter.stop();
        result
    }
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
