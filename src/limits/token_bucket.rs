//! A token bucket: `burst` tokens, refilled at `per_sec`; each event takes one. It allows short
//! bursts and a steady average rate, which is what a well-behaved client does.

use std::time::Instant;

/// One bucket. Time is passed in, so tests drive it without sleeping.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `per_sec` tokens a second.
    pub fn new(per_sec: u32, burst: u32, now: Instant) -> Self {
        let capacity = f64::from(burst.max(1));
        TokenBucket {
            capacity,
            per_sec: f64::from(per_sec),
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.last = self.last.max(now);
    }

    /// Takes one token at `now`; `false` (and nothing taken) when the bucket is empty.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The bucket has refilled completely by `now`: forgetting it changes nothing.
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.per_sec >= self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        for i in 0..5 {
            assert!(b.try_take(t0), "burst token {i}");
        }
        assert!(!b.try_take(t0), "the burst is used up");
        // 10 a second: one token every 100 ms.
        assert!(!b.try_take(t0 + Duration::from_millis(50)));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(150)));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert!(b.is_full(later));
        for i in 0..5 {
            assert!(b.try_take(later), "refilled token {i}");
        }
        assert!(!b.try_take(later));
        assert!(!b.is_full(later));
    }

    #[test]
    fn refused_events_cost_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, 1, t0);
        assert!(b.try_take(t0));
        for _ in 0..100 {
            assert!(!b.try_take(t0 + Duration::from_millis(500)));
        }
        assert!(b.try_take(t0 + Duration::from_millis(1000)));
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1, 1, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 - Duration::from_secs(5)));
        assert!(b.try_take(t0 + Duration::from_secs(1)));
    }
}
