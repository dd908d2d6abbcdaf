//! Limits per client address ([`IpKey`]): open WebSocket connections, and the rate of
//! `authenticate` commands (each costs database work and may create a user).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::{IpKey, TokenBucket};

/// Size of the bucket table below which it is never swept.
const MIN_SWEEP: usize = 1024;

/// The per-address counters of one process.
#[derive(Debug)]
pub struct IpLimits {
    connections_per_ip: u32,
    authenticate_per_sec: u32,
    authenticate_burst: u32,
    connections: Mutex<HashMap<IpKey, u32>>,
    authenticate: Mutex<AuthBuckets>,
}

/// The `authenticate` buckets of the addresses seen lately. Full buckets are swept away once
/// the table has doubled since the last sweep, so its size follows the addresses that are
/// actually busy and each sweep's cost is paid for by the insertions before it.
#[derive(Debug)]
struct AuthBuckets {
    buckets: HashMap<IpKey, TokenBucket>,
    sweep_at: usize,
}

/// One open connection counted against its address; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<IpLimits>,
    key: IpKey,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut connections = self
            .limits
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = connections.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                connections.remove(&self.key);
            }
        }
    }
}

impl IpLimits {
    /// At most `connections_per_ip` open connections per address; `authenticate` at
    /// `authenticate_per_sec` a second per address after a burst of `authenticate_burst`.
    pub fn new(
        connections_per_ip: u32,
        authenticate_per_sec: u32,
        authenticate_burst: u32,
    ) -> Arc<IpLimits> {
        Arc::new(IpLimits {
            connections_per_ip,
            authenticate_per_sec,
            authenticate_burst,
            connections: Mutex::default(),
            authenticate: Mutex::new(AuthBuckets {
                buckets: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        })
    }

    /// Counts a new connection from `ip`; `None` when that address has as many open as allowed.
    pub fn open_connection(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let key = IpKey::from(ip);
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = connections.entry(key).or_insert(0);
        if *n >= self.connections_per_ip {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            limits: self.clone(),
            key,
        })
    }

    /// Open connections counted for `ip`'s address.
    pub fn connections(&self, ip: IpAddr) -> u32 {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&IpKey::from(ip))
            .copied()
            .unwrap_or(0)
    }

    /// Takes one `authenticate` from `ip`'s budget at `now`; `false` when it is used up.
    pub fn allow_authenticate(&self, ip: IpAddr, now: Instant) -> bool {
        let mut table = self
            .authenticate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if table.buckets.len() >= table.sweep_at {
            table.buckets.retain(|_, b| !b.is_full(now));
            table.sweep_at = (table.buckets.len() * 2).max(MIN_SWEEP);
        }
        let (per_sec, burst) = (self.authenticate_per_sec, self.authenticate_burst);
        table
            .buckets
            .entry(IpKey::from(ip))
            .or_insert_with(|| TokenBucket::new(per_sec, burst, now))
            .try_take(now)
    }

    /// Addresses with an `authenticate` bucket (swept ones excluded).
    pub fn tracked_addresses(&self) -> usize {
        self.authenticate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connections_are_counted_per_address_and_freed_on_drop() {
        let l = IpLimits::new(2, 1, 1);
        let a1 = l.open_connection(ip("192.0.2.1")).expect("first");
        let _a2 = l.open_connection(ip("192.0.2.1")).expect("second");
        assert!(l.open_connection(ip("192.0.2.1")).is_none(), "third");
        let _b = l.open_connection(ip("192.0.2.2")).expect("another address");
        // One IPv6 network is one address.
        let _c1 = l.open_connection(ip("2001:db8::1")).expect("v6");
        let _c2 = l.open_connection(ip("2001:db8::2")).expect("v6");
        assert!(l.open_connection(ip("2001:db8::3")).is_none());
        drop(a1);
        assert_eq!(l.connections(ip("192.0.2.1")), 1);
        let _a3 = l.open_connection(ip("192.0.2.1")).expect("freed");
    }

    #[test]
    fn authenticate_is_rate_limited_per_address() {
        let l = IpLimits::new(10, 2, 3);
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(l.allow_authenticate(ip("192.0.2.1"), t0), "burst {i}");
        }
        assert!(!l.allow_authenticate(ip("192.0.2.1"), t0));
        assert!(
            l.allow_authenticate(ip("192.0.2.2"), t0),
            "others unaffected"
        );
        assert!(l.allow_authenticate(ip("192.0.2.1"), t0 + Duration::from_millis(500)));
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let l = IpLimits::new(10, 1, 1);
        let t0 = Instant::now();
        for i in 0..MIN_SWEEP as u32 {
            assert!(l.allow_authenticate(IpAddr::from(std::net::Ipv4Addr::from(i)), t0));
        }
        assert_eq!(l.tracked_addresses(), MIN_SWEEP);
        // A second later every bucket is full again: the next insertion sweeps them.
        let later = t0 + Duration::from_secs(2);
        assert!(l.allow_authenticate(ip("198.51.100.1"), later));
        assert_eq!(l.tracked_addresses(), 1);
    }
}
