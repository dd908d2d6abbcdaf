//! Per-connection protection against clients that send garbage.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Counts invalid frames in a sliding window; more than `max` within `window` closes the
/// connection (1008), so one broken or hostile client cannot keep the gateway busy.
#[derive(Debug)]
pub struct InvalidFrameLimiter {
    max: usize,
    window: Duration,
    seen: VecDeque<Instant>,
}

impl InvalidFrameLimiter {
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            window,
            seen: VecDeque::with_capacity(max + 1),
        }
    }

    /// Records one invalid frame at `now`; returns `true` when the limit is exceeded.
    pub fn record(&mut self, now: Instant) -> bool {
        while let Some(first) = self.seen.front() {
            if now.duration_since(*first) > self.window {
                self.seen.pop_front();
            } else {
                break;
            }
        }
        self.seen.push_back(now);
        self.seen.len() > self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_max_frames_in_window() {
        let mut l = InvalidFrameLimiter::new(20, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..20 {
            assert!(!l.record(t0 + Duration::from_millis(i)), "tripped at {i}");
        }
        assert!(l.record(t0 + Duration::from_millis(21)));
    }

    #[test]
    fn old_frames_leave_the_window() {
        let mut l = InvalidFrameLimiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(!l.record(t0));
        assert!(!l.record(t0 + Duration::from_secs(1)));
        assert!(!l.record(t0 + Duration::from_secs(62)));
        assert!(!l.record(t0 + Duration::from_secs(63)));
        assert!(l.record(t0 + Duration::from_secs(63)));
    }
}
