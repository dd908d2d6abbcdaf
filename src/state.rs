//! What every HTTP handler and session shares.

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;

use crate::config::Settings;
use crate::coordinator::{BbbCoordinator, WarmJoins};
use crate::db::Db;
use crate::metrics::Metrics;
use crate::session::in_flight::InFlight;
use crate::session::registry::SessionRegistry;
use crate::session::SessionConfig;
use crate::world::WorldCache;

/// Application-wide state, built once by [`startup`](crate::startup).
pub struct AppState {
    pub settings: Settings,
    pub db: Db,
    pub worlds: WorldCache,
    pub coordinator: Addr<BbbCoordinator>,
    /// Meetings the coordinator published as running: sessions answer their joins directly.
    pub warm: Arc<WarmJoins>,
    pub session: SessionConfig,
    /// Every open session: shutdown and user changes reach them through it.
    pub sessions: Arc<SessionRegistry>,
    /// `bbb.*` requests the coordinator is working on; a shutdown waits for them.
    pub bbb_in_flight: Arc<InFlight>,
    pub metrics: Arc<Metrics>,
    pub started_at: Instant,
}
