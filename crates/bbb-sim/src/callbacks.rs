//! BBB's end callbacks: when a meeting ends for any reason (`end`, expiry, a reset), BBB calls
//! the meeting's `meta_endCallbackUrl` with GET, once, from a background task. Expiry needs no
//! API call to happen, so a reaper ends expired meetings on its own, as BBB's timers do.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::server::Shared;
use super::state::{now_ms, CallbackRecord, DueCallback};

/// How often expired meetings are ended (real time; expiry itself follows `--time-scale`).
const REAP_EVERY: Duration = Duration::from_millis(50);
/// How long one callback may take.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends each callback once, in the background, and records how it went.
pub(crate) fn send(shared: &Arc<Shared>, due: Vec<DueCallback>) {
    let ended_at_ms = now_ms();
    for DueCallback { meeting_id, url } in due {
        let shared = shared.clone();
        actix_web::rt::spawn(async move {
            let client = awc::Client::builder().timeout(CALLBACK_TIMEOUT).finish();
            // The URL carries the gateway's token: not logged.
            let (answered_at_ms, outcome) = match client.get(url.as_str()).send().await {
                Ok(resp) => {
                    log::debug!("end callback answered {}", resp.status());
                    (Some(now_ms()), resp.status().as_u16().to_string())
                }
                Err(e) => {
                    log::warn!("an end callback failed: {e}");
                    (None, e.to_string())
                }
            };
            shared.lock().callbacks_sent.push(CallbackRecord {
                meeting_id,
                ended_at_ms,
                answered_at_ms,
                outcome,
            });
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
        send(&shared, due);
    }
}
