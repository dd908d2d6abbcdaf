//! Prometheus metrics. One registry per application so tests running several gateways in one
//! process do not share counters.

use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// The gateway's metrics; cheap to share behind the [`AppState`](crate::state::AppState).
pub struct Metrics {
    registry: Registry,
    sessions: IntGauge,
    requests: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let sessions = IntGauge::new(
            "bbb_gateway_sessions_connected",
            "WebSocket sessions currently connected",
        )
        .expect("static metric definition");
        let requests = IntCounterVec::new(
            Opts::new(
                "bbb_gateway_requests_total",
                "WebSocket requests by command and result code",
            ),
            &["command", "result"],
        )
        .expect("static metric definition");
        // Registration only fails for duplicate names, which the fixed set above excludes.
        let _ = registry.register(Box::new(sessions.clone()));
        let _ = registry.register(Box::new(requests.clone()));
        Self {
            registry,
            sessions,
            requests,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn session_opened(&self) {
        self.sessions.inc();
    }

    pub fn session_closed(&self) {
        self.sessions.dec();
    }

    pub fn sessions_connected(&self) -> i64 {
        self.sessions.get()
    }

    /// Counts one answered request; `result` is `success` or the error code.
    pub fn request(&self, command: &str, result: &str) {
        self.requests.with_label_values(&[command, result]).inc();
    }

    /// The text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
