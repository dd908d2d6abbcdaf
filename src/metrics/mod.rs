//! Prometheus metrics. One registry per application so tests running several gateways in one
//! process do not share counters.

mod metered_bbb;

use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

pub use metered_bbb::MeteredBbbApi;

use crate::coordinator::FleetStatus;

/// The gateway's metrics; shared behind the [`AppState`](crate::state::AppState) and by the
/// coordinator's BBB client.
pub struct Metrics {
    registry: Registry,
    sessions: IntGauge,
    requests: IntCounterVec,
    /// `requests{command="bbb.room_url", result="success"}`, resolved once: it is counted on
    /// every join, and a label lookup hashes both labels under a lock each time.
    room_url_success: IntCounter,
    bbb_calls: IntCounterVec,
    bbb_latency: HistogramVec,
    creates_sent: IntCounter,
    creates_saved: IntCounter,
    joins_from_memory: IntCounter,
    meetings_moved: IntCounter,
    /// Frames, connections and commands refused by an abuse limit, by limit.
    limited: IntCounterVec,
    placements_over_capacity: IntCounter,
    placements_refused_full: IntCounter,
    server_gauges: GaugeVec,
    /// Last coordinator counters seen, to add only the difference to the Prometheus counters.
    last_stats: Mutex<[u64; 6]>,
}

/// Builds and registers one metric; the definitions are static, so failure is a programming
/// error caught by the unit test below.
macro_rules! metric {
    ($registry:expr, $e:expr) => {{
        let m = $e.expect("static metric definition");
        $registry
            .register(Box::new(m.clone()))
            .expect("unique metric name");
        m
    }};
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let sessions = metric!(
            r,
            IntGauge::new(
                "bbb_gateway_sessions_connected",
                "WebSocket sessions currently connected"
            )
        );
        let requests = metric!(
            r,
            IntCounterVec::new(
                Opts::new(
                    "bbb_gateway_requests_total",
                    "WebSocket requests by command and result code"
                ),
                &["command", "result"]
            )
        );
        let bbb_calls = metric!(
            r,
            IntCounterVec::new(
                Opts::new(
                    "bbb_gateway_bbb_api_calls_total",
                    "BBB API calls by server, call and outcome"
                ),
                &["server", "call", "outcome"]
            )
        );
        let bbb_latency = metric!(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    "bbb_gateway_bbb_api_latency_seconds",
                    "BBB API call latency by server and call"
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
                ]),
                &["server", "call"]
            )
        );
        let creates_sent = metric!(
            r,
            IntCounter::new(
                "bbb_gateway_creates_sent_total",
                "BBB create calls sent by the coordinator"
            )
        );
        let creates_saved = metric!(
            r,
            IntCounter::new(
                "bbb_gateway_creates_saved_by_single_flight_total",
                "Joins that shared another join's in-flight create"
            )
        );
        let joins_from_memory = metric!(
            r,
            IntCounter::new(
                "bbb_gateway_joins_from_memory_total",
                "Joins of running meetings answered without BBB or database"
            )
        );
        let meetings_moved = metric!(
            r,
            IntCounter::new(
                "bbb_gateway_meetings_moved_total",
                "Meetings moved to another server (failover, panic, offline)"
            )
        );
        let limited = metric!(
            r,
            IntCounterVec::new(
                Opts::new(
                    "bbb_gateway_limited_total",
                    "Frames, connections and commands refused by an abuse limit (frames, in_flight, connections_per_ip, authenticate_per_ip)"
                ),
                &["limit"]
            )
        );
        let placements_over_capacity = metric!(
            r,
            IntCounter::new(
                "bbb_gateway_placements_over_capacity_total",
                "New meetings placed on the least full server because no eligible server had room for them"
            )
        );
        let placements_refused_full = metric!(
            r,
            IntCounter::new(
                "bbb_gateway_placements_refused_full_total",
                "Joins refused because no eligible server had room for the new meeting"
            )
        );
        let server_gauges = metric!(
            r,
            GaugeVec::new(
                Opts::new(
                    "bbb_gateway_server",
                    "Per-server figures from the last poll: load, participants, meetings, videos, online (1/0), enabled/cordoned/disabled (1 for the current state); occupancy (participants with young meetings at their expected size, plus reservations), and capacity and headroom (participants) where the server has a capacity"
                ),
                &["server", "url", "figure"]
            )
        );
        let room_url_success = requests.with_label_values(&["bbb.room_url", "success"]);
        Self {
            registry: r,
            sessions,
            requests,
            room_url_success,
            bbb_calls,
            bbb_latency,
            creates_sent,
            creates_saved,
            joins_from_memory,
            meetings_moved,
            limited,
            placements_over_capacity,
            placements_refused_full,
            server_gauges,
            last_stats: Mutex::new([0; 6]),
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
        if (command, result) == ("bbb.room_url", "success") {
            return self.room_url_success.inc();
        }
        self.requests.with_label_values(&[command, result]).inc();
    }

    /// Counts one refusal by the abuse limit `limit` (a fixed name, never client input).
    pub fn limited(&self, limit: &'static str) {
        self.limited.with_label_values(&[limit]).inc();
    }

    /// Counts one BBB API call and its latency.
    pub fn bbb_call(&self, server: &str, call: &str, outcome: &str, took: Duration) {
        self.bbb_calls
            .with_label_values(&[server, call, outcome])
            .inc();
        self.bbb_latency
            .with_label_values(&[server, call])
            .observe(took.as_secs_f64());
    }

    /// Refreshes the fleet gauges and coordinator counters from a status snapshot.
    pub fn observe_fleet(&self, fleet: &FleetStatus) {
        self.server_gauges.reset();
        for s in &fleet.servers {
            let id = s.id.to_string();
            let set = |figure: &str, v: f64| {
                self.server_gauges
                    .with_label_values(&[&id, &s.url, figure])
                    .set(v)
            };
            set("load", s.load);
            set("participants", s.participants.into());
            set("meetings", s.meetings.into());
            set("videos", s.videos.into());
            set("voice", s.voice.into());
            set("online", if s.online { 1.0 } else { 0.0 });
            set("occupancy", s.occupancy as f64);
            if let (Some(capacity), Some(headroom)) = (s.capacity, s.headroom) {
                set("capacity", capacity.into());
                set("headroom", headroom as f64);
            }
            for st in ["enabled", "cordoned", "disabled"] {
                set(st, if s.state.as_str() == st { 1.0 } else { 0.0 });
            }
        }
        let now = [
            fleet.stats.creates_sent,
            fleet.stats.creates_saved_by_single_flight,
            fleet.stats.joins_from_memory,
            fleet.stats.meetings_moved,
            fleet.stats.placements_over_capacity,
            fleet.stats.placements_refused_full,
        ];
        let Ok(mut last) = self.last_stats.lock() else {
            return;
        };
        let counters = [
            &self.creates_sent,
            &self.creates_saved,
            &self.joins_from_memory,
            &self.meetings_moved,
            &self.placements_over_capacity,
            &self.placements_refused_full,
        ];
        for ((counter, now), last) in counters.iter().zip(now).zip(last.iter_mut()) {
            counter.inc_by(now.saturating_sub(*last));
            *last = now.max(*last);
        }
    }

    /// The text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_register_and_render() {
        let m = Metrics::new();
        m.session_opened();
        m.request("bbb.room_url", "success");
        m.limited("frames");
        m.bbb_call("127.0.0.1:1", "create", "ok", Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("bbb_gateway_sessions_connected 1"));
        assert!(text
            .contains(r#"bbb_gateway_requests_total{command="bbb.room_url",result="success"} 1"#));
        assert!(text.contains("bbb_gateway_bbb_api_latency_seconds_bucket"));
        assert!(text.contains(r#"bbb_gateway_limited_total{limit="frames"} 1"#));
    }
}
