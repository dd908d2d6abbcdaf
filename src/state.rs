//! What every HTTP handler and session shares.

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;

use crate::config::{SessionConfig, Settings};
use crate::coordinator::{BbbCoordinator, WarmJoins};
use crate::db::Db;
use crate::metrics::Metrics;
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
    pub metrics: Arc<Metrics>,
    pub started_at: Instant,
}
