//! The public listener's routes (`http.listen`): the WebSocket endpoint, BBB's end callbacks and
//! health. Admin routes live in [`crate::admin`], on the admin listener.

mod callback;
mod health;
mod ws;

use actix_web::web;

/// Registers every public route; used by `startup` for the real server and by tests alike.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/livez", web::get().to(health::livez))
        .route("/readyz", web::get().to(health::readyz))
        .route("/healthz", web::get().to(health::readyz))
        .route("/bbb/callback/end/{token}", web::get().to(callback::end))
        .route("/ws/world/{world_id}/", web::get().to(ws::connect))
        .route("/ws/world/{world_id}", web::get().to(ws::connect));
}
