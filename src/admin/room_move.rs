//! `POST /api/v1/worlds/{world}/rooms/{room}/move`: an operator moves a room's meeting to a
//! server of their choice (a busy room onto a dedicated server before a keynote). The
//! coordinator checks the target and creates the meeting there before ending it where it was.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::coordinator::{MoveError, MoveRoom};
use crate::ids::ServerId;
use crate::state::AppState;

use super::routes::{check, parse_body, ApiError, ApiResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    server: i32,
}

impl From<MoveError> for ApiError {
    fn from(e: MoveError) -> Self {
        let status = match e {
            MoveError::UnknownRoom(_) | MoveError::UnknownServer(_) => StatusCode::NOT_FOUND,
            MoveError::Refused(_) | MoveError::Failed(_) => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.to_string())
    }
}

/// Moves the room's meeting; `200 {"world", "room", "from", "to", "create_time"}`.
pub async fn move_room(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> ApiResult {
    check(&req, &state)?;
    let (world_id, room) = path.into_inner();
    let server = ServerId::new(parse_body::<MoveBody>(&body)?.server);
    let Some(world) = state.worlds.get(&world_id).await? else {
        return Err(ApiError::not_found(format!(
            "no world with id {world_id:?}"
        )));
    };
    let moved = state
        .coordinator
        .send(MoveRoom {
            world,
            room: room.clone(),
            server,
        })
        .await??;
    log::info!(
        "operator moved the meeting of room {room:?} in world {world_id:?} to server {}",
        moved.to
    );
    Ok(HttpResponse::Ok().json(json!({
        "world": world_id,
        "room": room,
        "from": moved.from,
        "to": moved.to,
        "create_time": moved.create_time,
    })))
}
