//! [`InFlight`]: how many `bbb.*` requests the coordinator is working on for this process's
//! sessions, so a shutdown can let them finish (their meetings recorded) before it stops the
//! coordinator, even when the sessions that asked are already gone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Counter of requests in flight, with a way to wait until none are.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// Counts one request while it lives.
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    /// Counts a request until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until no request is in flight or `within` passed; returns how many still are.
    pub async fn wait_idle(&self, within: Duration) -> usize {
        wait_for_zero(&self.idle, || self.count(), within).await
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Waits until `count` is 0 or `within` passed, checking again whenever `changed` is notified
/// (registered before each check, so no notification between check and wait is lost); returns
/// the count then. Shutdown uses it to drain requests and sessions.
pub async fn wait_for_zero(changed: &Notify, count: impl Fn() -> usize, within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let notified = changed.notified();
        if count() == 0 {
            return 0;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return count();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_until_the_last_request_ends() {
        let f = Arc::new(InFlight::default());
        assert_eq!(f.wait_idle(Duration::from_millis(1)).await, 0);
        let a = f.start();
        let b = f.start();
        assert_eq!(f.wait_idle(Duration::from_millis(20)).await, 2);
        drop(a);
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.wait_idle(Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        drop(b);
        assert_eq!(waiter.await.expect("joins"), 0);
    }
}
