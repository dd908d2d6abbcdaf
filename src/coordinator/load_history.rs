//! A server's load over the last hour, kept in memory from the polls, for the dashboard's
//! sparkline. Polls are folded into fixed buckets (the peak of each bucket), so memory stays
//! bounded whatever the poll interval: at most [`BUCKETS`] points per server.

use std::collections::VecDeque;

use serde::Serialize;

/// Width of one bucket.
pub const BUCKET_MS: i64 = 30_000;
/// How far back the history reaches.
pub const SPAN_MS: i64 = 60 * 60 * 1000;
/// Most points kept per server (one hour of buckets).
pub const BUCKETS: usize = (SPAN_MS / BUCKET_MS) as usize;

/// One bucket: the peaks of the good polls that fell into it, and whether any poll failed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LoadPoint {
    /// Start of the bucket (ms since the Unix epoch).
    pub at_ms: i64,
    /// Highest placement load seen (load units).
    pub load: f64,
    /// Most participants seen (as BBB reported them).
    pub participants: u32,
    /// Highest occupancy seen (participants, young meetings at their expected size).
    pub occupancy: u32,
    /// A poll in this bucket failed.
    pub failed: bool,
}

/// The ring buffer of one server.
#[derive(Debug, Clone, Default)]
pub struct LoadHistory {
    points: VecDeque<LoadPoint>,
}

/// What one poll saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PollSample {
    Good {
        load: f64,
        participants: u32,
        occupancy: u32,
    },
    Failed,
}

impl LoadHistory {
    /// Folds a poll sent at `at_ms` into its bucket and drops what fell out of the last hour.
    /// A sample older than the newest bucket (a clock step back) counts in the newest bucket.
    pub fn record(&mut self, at_ms: i64, sample: PollSample) {
        let bucket = at_ms.div_euclid(BUCKET_MS) * BUCKET_MS;
        let fresh = match self.points.back_mut() {
            Some(last) if last.at_ms >= bucket => last,
            _ => {
                self.points.push_back(LoadPoint {
                    at_ms: bucket,
                    load: 0.0,
                    participants: 0,
                    occupancy: 0,
                    failed: false,
                });
                let newest = bucket;
                while self
                    .points
                    .front()
                    .is_some_and(|p| p.at_ms <= newest - SPAN_MS)
                    || self.points.len() > BUCKETS
                {
                    self.points.pop_front();
                }
                match self.points.back_mut() {
                    Some(p) => p,
                    None => return,
                }
            }
        };
        match sample {
            PollSample::Good {
                load,
                participants,
                occupancy,
            } => {
                if load.is_finite() && load > fresh.load {
                    fresh.load = load;
                }
                fresh.participants = fresh.participants.max(participants);
                fresh.occupancy = fresh.occupancy.max(occupancy);
            }
            PollSample::Failed => fresh.failed = true,
        }
    }

    /// The points within the hour before `now_ms`, oldest first.
    pub fn points(&self, now_ms: i64) -> Vec<LoadPoint> {
        self.points
            .iter()
            .filter(|p| p.at_ms > now_ms - SPAN_MS)
            .copied()
            .collect()
    }

    /// How many points are kept.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// No poll was recorded.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(load: f64, participants: u32) -> PollSample {
        PollSample::Good {
            load,
            participants,
            occupancy: participants + 1,
        }
    }

    const T0: i64 = 1_700_000_000_000 / BUCKET_MS * BUCKET_MS;

    #[test]
    fn polls_in_one_bucket_keep_their_peaks() {
        let mut h = LoadHistory::default();
        h.record(T0 + 1_000, good(40.0, 10));
        h.record(T0 + 2_000, good(90.0, 5));
        h.record(T0 + 3_000, good(20.0, 30));
        h.record(T0 + 4_000, PollSample::Failed);
        let points = h.points(T0 + 5_000);
        assert_eq!(
            points,
            vec![LoadPoint {
                at_ms: T0,
                load: 90.0,
                participants: 30,
                occupancy: 31,
                failed: true,
            }]
        );
        h.record(T0 + BUCKET_MS, good(1.0, 1));
        let points = h.points(T0 + BUCKET_MS);
        assert_eq!(points.len(), 2);
        assert_eq!((points[1].at_ms, points[1].load), (T0 + BUCKET_MS, 1.0));
        assert!(!points[1].failed);
    }

    #[test]
    fn it_keeps_one_hour_and_no_more() {
        let mut h = LoadHistory::default();
        // Three hours of polls every 5 s.
        let mut t = T0;
        while t < T0 + 3 * SPAN_MS {
            h.record(t, good((t - T0) as f64, 1));
            t += 5_000;
        }
        let last = t - 5_000;
        assert_eq!(h.len(), BUCKETS);
        let points = h.points(last);
        assert_eq!(points.len(), BUCKETS);
        assert!(points.first().unwrap().at_ms > last - SPAN_MS);
        assert!(points.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        // The newest bucket holds the latest peak.
        assert_eq!(points.last().unwrap().load, (last - T0) as f64);
    }

    #[test]
    fn gaps_drop_old_points_and_the_clock_stepping_back_counts_in_the_newest_bucket() {
        let mut h = LoadHistory::default();
        h.record(T0, good(5.0, 1));
        h.record(T0 + 2 * SPAN_MS, good(7.0, 2));
        assert_eq!(h.len(), 1, "the point from two hours ago is gone");
        h.record(T0 + SPAN_MS, good(9.0, 3));
        let points = h.points(T0 + 2 * SPAN_MS);
        assert_eq!(points.len(), 1);
        assert_eq!((points[0].load, points[0].participants), (9.0, 3));
        // A quiet hour: nothing left to show.
        assert!(h.points(T0 + 4 * SPAN_MS).is_empty());
        assert!(!h.is_empty());
    }

    #[test]
    fn a_non_finite_load_is_not_recorded() {
        let mut h = LoadHistory::default();
        h.record(T0, good(f64::NAN, 1));
        h.record(T0, good(f64::INFINITY, 1));
        assert_eq!(h.points(T0)[0].load, 0.0);
    }
}
