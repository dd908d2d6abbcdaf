//! bbb-sim: an in-process BigBlueButton API simulator, faithful enough that a test against it
//! catches what a real BBB would reject (wrong checksum or encoding, join before create,
//! expired meetings, wrong password or createTime). Used by the `bbb-sim` binary, by tests and by
//! `bbb-gateway serve --demo`. Contract: OPERATIONS.md, section bbb-sim.

mod api;
mod callbacks;
mod control;
mod server;
mod state;
mod xml_out;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};

use bbb_api::ChecksumAlgorithm;
pub use state::FaultMode;

/// How a simulator instance behaves.
#[derive(Clone)]
pub struct SimConfig {
    /// The shared secret checksums are verified with.
    pub secret: String,
    /// Accept only this algorithm (BBB's `supportedChecksumAlgorithms`); `None` accepts all four.
    pub checksum: Option<ChecksumAlgorithm>,
    /// Delay added to every API reply.
    pub latency_ms: u64,
    /// BBB minutes are divided by this (60 → a BBB minute lasts one second).
    pub time_scale: f64,
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("secret", &"***")
            .field("checksum", &self.checksum)
            .field("latency_ms", &self.latency_ms)
            .field("time_scale", &self.time_scale)
            .finish()
    }
}

/// A running simulator. Dropping it leaves the server running; call [`SimHandle::stop`] to
/// take it down (the port then refuses connections, like a crashed BBB).
pub struct SimHandle {
    port: u16,
    server: actix_web::dev::ServerHandle,
    shared: Arc<server::Shared>,
}

impl SimHandle {
    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/bigbluebutton`, the base URL to register as a BBB server.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/bigbluebutton", self.port)
    }

    /// Stops the server and returns once its worker is gone, so the port refuses connections
    /// (kept-alive ones included). In-flight (e.g. hanging) requests are dropped, not awaited:
    /// the shutdown timeout is zero.
    pub async fn stop(self) {
        self.shared
            .stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.server.stop(true).await;
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/bigbluebutton/api", web::get().to(server::index))
        .route("/bigbluebutton/api/", web::get().to(server::index))
        .route("/bigbluebutton/api/{call}", web::get().to(server::call))
        .route("/bigbluebutton/api/{call}", web::post().to(server::call))
        .route("/client/join", web::get().to(server::client_page))
        .route("/sim/calls", web::get().to(control::calls))
        .route("/sim/callbacks", web::get().to(control::callbacks))
        .route("/sim/reset", web::post().to(control::reset))
        .route("/sim/participants", web::post().to(control::participants))
        .route("/sim/recordings", web::post().to(control::recordings))
        .route("/sim/fault", web::post().to(control::fault));
}

/// Bad JSON bodies on control routes get a JSON 400 naming the problem.
fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().error_handler(|err, _req| {
        let resp = HttpResponse::BadRequest().json(serde_json::json!({ "error": err.to_string() }));
        actix_web::error::InternalError::from_response(err, resp).into()
    })
}

/// Starts a simulator on `listen` (port 0 picks a free one). Each start has fresh state, so
/// stopping and starting again on the same port simulates a BBB reboot. Must run inside an
/// actix system (e.g. `#[actix_web::main]` or `#[actix_web::test]`).
pub async fn start(listen: SocketAddr, config: SimConfig) -> std::io::Result<SimHandle> {
    if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "time_scale must be a positive number",
        ));
    }
    let state = Arc::new(server::Shared::new(&config));
    let shared = web::Data::new(state.clone());
    let http = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .app_data(json_config())
            .configure(routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(0)
    .bind(listen)?;
    let port = http
        .addrs()
        .first()
        .map(SocketAddr::port)
        .ok_or_else(|| std::io::Error::other("bound to no address"))?;
    let running = http.run();
    let server = running.handle();
    actix_web::rt::spawn(running);
    actix_web::rt::spawn(callbacks::reap(state.clone()));
    log::info!("bbb-sim listening on {}:{port}", listen.ip());
    Ok(SimHandle {
        port,
        server,
        shared: state,
    })
}
