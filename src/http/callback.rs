//! `GET /bbb/callback/end/{token}`: BBB calls the `meta_endCallbackUrl` of a meeting when it
//! ends, for any reason (see PROTOCOL.md, "Meeting liveness"). The token proves the gateway
//! issued it; the coordinator decides whether it is about the current instance of a known
//! meeting. Anything else is 404 and changes nothing.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::coordinator::EndCallback;
use crate::state::AppState;

fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": "unknown or stale end callback"}))
}

/// BBB appends `meetingID` and `recordingmarks`; the token alone decides.
pub async fn end(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let Some(callback) = state.end_callback_key.verify(&path.into_inner()) else {
        log::info!("refused an end callback with an invalid token");
        return not_found();
    };
    let ended = state
        .coordinator
        .send(EndCallback {
            meeting_id: callback.meeting_id,
            issued_at: callback.issued_at,
        })
        .await;
    match ended {
        Ok(true) => HttpResponse::Ok().json(json!({"status": "ended"})),
        Ok(false) => not_found(),
        Err(e) => {
            log::error!("coordinator unreachable for an end callback: {e}");
            HttpResponse::ServiceUnavailable().json(json!({"error": "unavailable"}))
        }
    }
}
