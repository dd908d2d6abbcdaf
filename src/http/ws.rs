use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::WsResponseBuilder;
use serde_json::json;

use crate::limits::client_ip;
use crate::protocol::MAX_FRAME_BYTES;
use crate::session::socket::ConnectionSocket;
use crate::session::WsSession;
use crate::state::AppState;

/// World ids are short printable strings; anything else cannot name a world.
fn plausible_world_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_control)
}

/// The client's address: the peer's, or the one trusted proxies name (`limits.trusted_proxies`).
fn client_address(req: &HttpRequest, state: &AppState) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr()?.ip();
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok());
    Some(client_ip(
        peer,
        forwarded,
        &state.settings.limits.trusted_proxies,
    ))
}

/// `GET /ws/world/{world_id}/`: upgrades to a [`WsSession`]. An unknown world still gets a
/// socket, which reports `world.unknown_world` and closes, as venueless does. A client address
/// with `limits.connections_per_ip` connections open already gets 429 and no socket.
pub async fn connect(
    req: HttpRequest,
    stream: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let client = match client_address(&req, &state) {
        Some(ip) => match state.ip_limits.open_connection(ip) {
            Some(slot) => Some((ip, slot)),
            None => {
                state.metrics.limited("connections_per_ip");
                return Ok(HttpResponse::TooManyRequests()
                    .insert_header(("Retry-After", "5"))
                    .json(json!({"error": "too many connections from your address"})));
            }
        },
        None => None,
    };
    let world_id = path.into_inner();
    let world = if plausible_world_id(&world_id) {
        match state.worlds.get(&world_id).await {
            Ok(w) => w,
            Err(e) => {
                log::error!("cannot load world: {e}");
                return Ok(HttpResponse::ServiceUnavailable().finish());
            }
        }
    } else {
        None
    };
    let socket = req.conn_data::<ConnectionSocket>().copied();
    let session = WsSession::new(state.into_inner(), world_id, world, socket, client);
    WsResponseBuilder::new(session, &req, stream)
        .frame_size(MAX_FRAME_BYTES)
        .start()
}
