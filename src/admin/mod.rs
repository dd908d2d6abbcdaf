//! The admin surface: REST status and server control, room moves, private calls, Prometheus
//! metrics and the operator dashboard. Every `/api/v1` route needs a bearer admin token.

mod auth;
mod overview;
mod room_move;
mod routes;

use actix_web::web;

pub use auth::authorized;

/// Largest accepted admin request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Registers the admin routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(routes::metrics))
        .route("/admin", web::get().to(routes::status_page))
        .route("/admin/", web::get().to(routes::status_page))
        .service(
            web::scope("/api/v1")
                .app_data(web::PayloadConfig::default().limit(MAX_BODY_BYTES))
                .app_data(web::PathConfig::default().error_handler(routes::path_error))
                .route("/status", web::get().to(routes::status))
                .route("/load-history", web::get().to(overview::load_history))
                .route("/servers/{id}/state", web::post().to(routes::set_state))
                .route(
                    "/servers/{id}/capacity",
                    web::post().to(routes::set_capacity),
                )
                .route("/servers/{id}/panic", web::post().to(routes::panic))
                .route("/worlds/{world}/calls", web::post().to(routes::create_call))
                .route(
                    "/worlds/{world}/rooms/{room}/move",
                    web::post().to(room_move::move_room),
                ),
        );
}
