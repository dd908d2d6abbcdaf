//! Latency and error tallies of one scenario, and the report printed for it: a row of the
//! human table and one JSON line, both with the ratio to the `ping` baseline of the same run.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

/// What a batch of requests produced: latencies of the answered ones, errors by code.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub latencies_us: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
    /// CPU time the load-generator threads spent on the batch.
    pub client_cpu: Duration,
}

impl Tally {
    pub fn ok(&mut self, latency: Duration) {
        self.latencies_us
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn error(&mut self, code: impl Into<String>) {
        *self.errors.entry(code.into()).or_default() += 1;
    }

    pub fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.client_cpu += other.client_cpu;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles; all zero for an empty set.
    pub fn of(latencies_us: &[u64]) -> Latency {
        let mut v = latencies_us.to_vec();
        v.sort_unstable();
        let pick = |q: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1] as f64 / 1000.0
        };
        Latency {
            p50_ms: pick(0.50),
            p90_ms: pick(0.90),
            p99_ms: pick(0.99),
            max_ms: pick(1.0),
        }
    }
}

/// A performance target (e.g. "p99 <= 2 x ping p99"), checked against the figures (never
/// asserted in a test: benchmarks report, they do not fail).
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub met: bool,
}

/// Everything reported for one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub sessions: usize,
    pub requests: usize,
    pub ok: usize,
    pub errors: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    /// Answered requests per second.
    pub throughput: f64,
    #[serde(flatten)]
    pub latency: Latency,
    /// This scenario's throughput / ping's throughput, same run.
    pub ratio_throughput: Option<f64>,
    /// This scenario's p99 / ping's p99, same run.
    pub ratio_p99: Option<f64>,
    /// Share of one core the load generator used (its threads' CPU time / wall time).
    pub client_cpu_cores: f64,
    /// Scenario-specific figures (creates reaching BBB, meetings per server, bytes per session…).
    pub extra: Map<String, Value>,
    pub targets: Vec<TargetCheck>,
}

impl Report {
    /// A report of `tally` over `elapsed` with `sessions` sessions.
    pub fn new(scenario: &str, sessions: usize, tally: &Tally, elapsed: Duration) -> Report {
        let ok = tally.latencies_us.len();
        let secs = elapsed.as_secs_f64().max(1e-9);
        Report {
            scenario: scenario.to_string(),
            sessions,
            requests: ok + tally.error_count() as usize,
            ok,
            errors: tally.errors.clone(),
            elapsed_s: elapsed.as_secs_f64(),
            throughput: ok as f64 / secs,
            latency: Latency::of(&tally.latencies_us),
            ratio_throughput: None,
            ratio_p99: None,
            client_cpu_cores: tally.client_cpu.as_secs_f64() / secs,
            extra: Map::new(),
            targets: Vec::new(),
        }
    }

    /// Fills the ratios against the baseline (`ping` of the same run).
    pub fn relate_to(&mut self, baseline: &Report) {
        if baseline.throughput > 0.0 && self.ok > 0 {
            self.ratio_throughput = Some(self.throughput / baseline.throughput);
        }
        if baseline.latency.p99_ms > 0.0 && self.ok > 0 {
            self.ratio_p99 = Some(self.latency.p99_ms / baseline.latency.p99_ms);
        }
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.extra.insert(key.to_string(), value.into());
    }

    pub fn target(&mut self, target: impl Into<String>, met: bool) {
        self.targets.push(TargetCheck {
            target: target.into(),
            met,
        });
    }

    /// The machine-readable line: one JSON object.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// The human table: one row per scenario, then its extra figures and targets.
pub fn table(reports: &[Report]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<11} {:>6} {:>7} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>6}\n",
        "scenario",
        "sess",
        "reqs",
        "errors",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "x tput",
        "x p99",
        "gen%"
    ));
    let ratio = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
    for r in reports {
        out.push_str(&format!(
            "{:<11} {:>6} {:>7} {:>6} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>7} {:>6.0}\n",
            r.scenario,
            r.sessions,
            r.requests,
            r.requests - r.ok,
            r.throughput,
            r.latency.p50_ms,
            r.latency.p90_ms,
            r.latency.p99_ms,
            r.latency.max_ms,
            ratio(r.ratio_throughput),
            ratio(r.ratio_p99),
            r.client_cpu_cores * 100.0,
        ));
    }
    for r in reports {
        if r.extra.is_empty() && r.targets.is_empty() && r.errors.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{}:\n", r.scenario));
        for (k, v) in &r.extra {
            out.push_str(&format!("  {k}: {v}\n"));
        }
        for (code, n) in &r.errors {
            out.push_str(&format!("  error {code}: {n}\n"));
        }
        for t in &r.targets {
            let mark = if t.met { "met" } else { "MISSED" };
            out.push_str(&format!("  target {}: {mark}\n", t.target));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let l = Latency::of(&v);
        assert_eq!(
            (l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(Latency::of(&[]), Latency::default());
    }

    #[test]
    fn ratios_against_the_baseline() {
        let mut base = Tally::default();
        base.ok(Duration::from_millis(2));
        let base = Report::new("ping", 1, &base, Duration::from_secs(1));
        let mut t = Tally::default();
        t.ok(Duration::from_millis(3));
        t.error("bbb.failed");
        let mut r = Report::new("warm-join", 1, &t, Duration::from_secs(2));
        r.relate_to(&base);
        assert_eq!(r.ratio_throughput, Some(0.5));
        assert_eq!(r.ratio_p99, Some(1.5));
        assert_eq!(r.requests, 2);
        assert!(r.json_line().contains("\"scenario\":\"warm-join\""));
        assert!(table(&[base, r]).contains("bbb.failed"));
    }
}
