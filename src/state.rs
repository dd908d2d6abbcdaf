//! What every HTTP handler and session shares.

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;

use crate::config::Settings;
use crate::coordinator::BbbCoordinator;
use crate::db::Db;
use crate::end_callback::EndCallbackKey;
use crate::join::JoinTable;
use crate::metrics::Metrics;
use crate::session::SessionConfig;
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
    pub metrics: Arc<Metrics>,
    pub started_at: Instant,
}
