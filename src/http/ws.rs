use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::WsResponseBuilder;

use super::socket::ConnectionSocket;
use crate::protocol::MAX_FRAME_BYTES;
use crate::session::WsSession;
use crate::state::AppState;

/// World ids are short printable strings; anything else cannot name a world.
fn plausible_world_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_control)
}

/// `GET /ws/world/{world_id}/`: upgrades to a [`WsSession`]. An unknown world still gets a
/// socket, which reports `world.unknown_world` and closes, as venueless does.
pub async fn connect(
    req: HttpRequest,
    stream: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
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
    let session = WsSession::new(state.into_inner(), world_id, world, socket);
    WsResponseBuilder::new(session, &req, stream)
        .frame_size(MAX_FRAME_BYTES)
        .start()
}
