//! BBB's end callbacks: when a meeting ends for any reason (`end`, expiry, a reset), BBB calls
//! the meeting's `meta_endCallbackUrl` with GET, once, from a background task. Expiry needs no
//! API call to happen, so a reaper ends expired meetings on its own, as BBB's timers do.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::server::Shared;

/// How often expired meetings are ended (real time; expiry itself follows `--time-scale`).
const REAP_EVERY: Duration = Duration::from_millis(50);
/// How long one callback may take.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends each URL once, in the background.
pub(crate) fn send(urls: Vec<String>) {
    for url in urls {
        actix_web::rt::spawn(async move {
            let client = awc::Client::builder().timeout(CALLBACK_TIMEOUT).finish();
            // The URL carries the gateway's token: not logged.
            match client.get(url.as_str()).send().await {
                Ok(resp) => log::debug!("end callback answered {}", resp.status()),
                Err(e) => log::warn!("an end callback failed: {e}"),
            }
        });
    }
}

/// Ends expired meetings and sends the callbacks due, until the simulator is stopped.
pub(crate) async fn reap(shared: Arc<Shared>) {
    let mut tick = actix_web::rt::time::interval(REAP_EVERY);
    loop {
        tick.tick().await;
        if shared.stopped.load(Ordering::Relaxed) {
            return;
        }
        let due = {
            let mut st = shared.lock();
            st.purge_expired(Instant::now());
            st.take_callbacks()
        };
        send(due);
    }
}
