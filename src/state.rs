//! What every HTTP handler and session shares.

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;

use crate::config::Settings;
use crate::coordinator::BbbCoordinator;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::session::SessionConfig;
use crate::world::WorldCache;

/// Application-wide state, built once by [`startup`](crate::startup).
pub struct AppState {
    pub settings: Settings,
    pub db: Db,
    pub worlds: WorldCache,
    pub coordinator: Addr<BbbCoordinator>,
    pub session: SessionConfig,
    pub metrics: Arc<Metrics>,
    pub started_at: Instant,
}
