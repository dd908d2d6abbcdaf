//! What every HTTP handler and session shares.

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;

use crate::config::{SessionConfig, Settings};
use crate::coordinator::BbbCoordinator;
use crate::db::Db;
use crate::end_callback::EndCallbackKey;
use crate::in_flight::InFlight;
use crate::join::JoinTable;
use crate::limits::IpLimits;
use crate::metrics::Metrics;
use crate::registry::SessionRegistry;
use crate::world::WorldCache;

/// Application-wide state, built once by [`startup`](crate::startup).
pub struct AppState {
    pub settings: Settings,
    pub db: Db,
    pub worlds: WorldCache,
    pub coordinator: Addr<BbbCoordinator>,
    /// Meetings the coordinator confirmed running recently: sessions answer their joins.
    pub joins: Arc<JoinTable>,
    /// Verifies the tokens of BBB's end callbacks.
    pub end_callback_key: EndCallbackKey,
    pub session: SessionConfig,
    /// Every open session: shutdown and user changes reach them through it.
    pub sessions: Arc<SessionRegistry>,
    /// `bbb.*` requests the coordinator is working on; a shutdown waits for them.
    pub bbb_in_flight: Arc<InFlight>,
    pub metrics: Arc<Metrics>,
    /// Connections and logins per client address.
    pub ip_limits: Arc<IpLimits>,
    pub started_at: Instant,
}

impl AppState {
    /// The per-address limits `settings` ask for.
    pub fn ip_limits_for(settings: &Settings) -> Arc<IpLimits> {
        let l = &settings.limits;
        IpLimits::new(
            l.connections_per_ip,
            l.authenticate_per_ip_per_sec,
            l.authenticate_per_ip_burst,
        )
    }
}
