//! HTTP routes: the WebSocket endpoint, BBB's end callbacks and health. Admin routes live in [`crate::admin`].

mod callback;
mod health;
pub mod socket;
mod ws;

use actix_web::web;

/// Registers every route; used by `startup` for the real server and by tests alike.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/bbb/callback/end/{token}", web::get().to(callback::end))
        .route("/ws/world/{world_id}/", web::get().to(ws::connect))
        .route("/ws/world/{world_id}", web::get().to(ws::connect));
}
