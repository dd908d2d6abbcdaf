//! Health for load balancers and orchestrators: `/livez` (the process runs), `/readyz` (it can
//! serve users) and `/healthz` (an alias of `/readyz`).
//!
//! Ready is deliberately not "the database answers": during a database outage the gateway
//! keeps serving joins of running meetings from memory, and a load balancer that took every
//! instance out then would end exactly what the outage is meant to spare. So the gateway is
//! ready when the database answers *or* it holds running meetings in memory, and the body
//! names what is degraded.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

/// How long readiness waits for the database before calling it unavailable (a load balancer's
/// probe has a timeout of a few seconds).
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /livez`: 200 while the process runs and answers HTTP.
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Whether the database answers a trivial query within [`DATABASE_CHECK_TIMEOUT`].
async fn database_answers(state: &AppState) -> bool {
    let db = state.db.clone();
    matches!(
        tokio::time::timeout(DATABASE_CHECK_TIMEOUT, web::block(move || db.ping())).await,
        Ok(Ok(Ok(())))
    )
}

/// `GET /readyz` (and `/healthz`): 200 `{"status": "ok", …}` when the database answers; 200
/// `{"status": "degraded", "degraded": ["database"], …}` when it does not but running meetings
/// are served from memory; 503 when neither, or while shutting down.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.sessions.is_shutting_down() {
        return HttpResponse::ServiceUnavailable().json(json!({"status": "shutting_down"}));
    }
    let meetings = state.joins.len();
    if database_answers(&state).await {
        return HttpResponse::Ok().json(json!({
            "status": "ok",
            "database": "ok",
            "meetings_in_memory": meetings,
        }));
    }
    let body = |status: &str| {
        json!({
            "status": status,
            "database": "unavailable",
            "degraded": ["database"],
            "meetings_in_memory": meetings,
        })
    };
    if meetings > 0 {
        HttpResponse::Ok().json(body("degraded"))
    } else {
        HttpResponse::ServiceUnavailable().json(body("unavailable"))
    }
}
