use actix_web::error::PathError;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::coordinator::{AdminError, FleetStatus, GetFleetStatus, PanicServer, SetServerState};
use crate::db::servers::ServerState;
use crate::db::{calls, DbError};
use crate::state::AppState;

fn error(status: actix_web::http::StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": message.into()}))
}

fn unauthorized() -> HttpResponse {
    error(
        actix_web::http::StatusCode::UNAUTHORIZED,
        "a valid admin token is required (Authorization: Bearer <token>)",
    )
}

fn check(req: &HttpRequest, state: &AppState) -> Result<(), HttpResponse> {
    if super::authorized(req, &state.settings.admin.tokens) {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

fn unavailable(what: &str) -> HttpResponse {
    error(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        format!("{what} is unavailable, retry later"),
    )
}

fn admin_error(e: AdminError) -> HttpResponse {
    match e {
        AdminError::UnknownServer(id) => error(
            actix_web::http::StatusCode::NOT_FOUND,
            format!("no server with id {id}"),
        ),
        AdminError::Db(e) => db_error(e),
    }
}

fn db_error(e: DbError) -> HttpResponse {
    match e {
        DbError::Invalid(msg) => error(actix_web::http::StatusCode::BAD_REQUEST, msg),
        other => {
            log::error!("admin route: {other}");
            unavailable("the database")
        }
    }
}

/// Parses a JSON body; the 400 names the JSON path of the problem (`state: unknown variant…`).
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpResponse> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = if path == "." {
            format!("invalid body: {}", e.inner())
        } else {
            format!("invalid body: {path}: {}", e.inner())
        };
        error(actix_web::http::StatusCode::BAD_REQUEST, message)
    })
}

/// Unparseable path ids are 404s: no such resource.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    actix_web::error::InternalError::from_response(
        err,
        error(actix_web::http::StatusCode::NOT_FOUND, "no such resource"),
    )
    .into()
}

/// `GET /api/v1/status`.
pub async fn status(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(r) = check(&req, &state) {
        return r;
    }
    let Ok(fleet) = state.coordinator.send(GetFleetStatus).await else {
        return unavailable("the coordinator");
    };
    HttpResponse::Ok().json(status_json(&state, &fleet))
}

/// The status document: servers, totals, gateway figures. Built from [`FleetStatus`], which
/// has no secret field.
pub fn status_json(state: &AppState, fleet: &FleetStatus) -> serde_json::Value {
    let s = &fleet.servers;
    let sum = |f: fn(&crate::coordinator::ServerStatus) -> u64| s.iter().map(f).sum::<u64>();
    json!({
        "gateway": {
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": state.started_at.elapsed().as_secs(),
            "sessions_connected": state.metrics.sessions_connected(),
            "meetings_known": fleet.meetings_known,
            "creates_in_flight": fleet.creates_in_flight,
            "creates_sent": fleet.creates_sent,
            "create_failures": fleet.create_failures,
            "creates_saved_by_single_flight": fleet.creates_saved_by_single_flight,
            "joins_from_memory": fleet.joins_from_memory,
            "meetings_moved": fleet.meetings_moved,
            "poll_rounds": fleet.poll_rounds,
        },
        "totals": {
            "servers": s.len(),
            "online": s.iter().filter(|x| x.online).count(),
            "enabled": s.iter().filter(|x| x.state == ServerState::Enabled).count(),
            "meetings": sum(|x| x.meetings.into()),
            "participants": sum(|x| x.participants.into()),
            "listeners": sum(|x| x.listeners.into()),
            "voice": sum(|x| x.voice.into()),
            "videos": sum(|x| x.videos.into()),
            "load": s.iter().map(|x| x.load).sum::<f64>(),
        },
        "servers": s,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    state: ServerState,
}

/// `POST /api/v1/servers/{id}/state`.
pub async fn set_state(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<i32>,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(r) = check(&req, &state) {
        return r;
    }
    let id = path.into_inner();
    let new_state = match parse_body::<StateBody>(&body) {
        Ok(b) => b.state,
        Err(r) => return r,
    };
    match state
        .coordinator
        .send(SetServerState {
            id,
            state: new_state,
        })
        .await
    {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({"id": id, "state": new_state})),
        Ok(Err(e)) => admin_error(e),
        Err(_) => unavailable("the coordinator"),
    }
}

/// `POST /api/v1/servers/{id}/panic`.
pub async fn panic(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<i32>,
) -> HttpResponse {
    if let Err(r) = check(&req, &state) {
        return r;
    }
    let id = path.into_inner();
    match state.coordinator.send(PanicServer { id }).await {
        Ok(Ok(n)) => HttpResponse::Ok().json(json!({"id": id, "meetings_forgotten": n})),
        Ok(Err(e)) => admin_error(e),
        Err(_) => unavailable("the coordinator"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallBody {
    members: Vec<String>,
}

/// Longest uid accepted as a call member, and most members per call.
const MAX_UID: usize = 200;
const MAX_MEMBERS: usize = 1000;

/// `POST /api/v1/worlds/{world}/calls` → `201 {"id": CALL_ID}`.
pub async fn create_call(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(r) = check(&req, &state) {
        return r;
    }
    let world = path.into_inner();
    let body = match parse_body::<CallBody>(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let members: Vec<String> = body
        .members
        .into_iter()
        .map(|m| m.trim().to_owned())
        .collect();
    if members.is_empty() || members.len() > MAX_MEMBERS {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            format!("members: give between 1 and {MAX_MEMBERS} uids"),
        );
    }
    if members.iter().any(|m| m.is_empty() || m.len() > MAX_UID) {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            format!("members: every uid must be 1 to {MAX_UID} characters"),
        );
    }
    match state.worlds.get(&world).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return error(
                actix_web::http::StatusCode::NOT_FOUND,
                format!("no world with id {world:?}"),
            )
        }
        Err(e) => return db_error(e),
    }
    match state
        .db
        .run(move |c| calls::create_call(c, &world, &members))
        .await
    {
        Ok(id) => HttpResponse::Created().json(json!({"id": id})),
        Err(e) => db_error(e),
    }
}

/// `GET /metrics`: Prometheus text format, with the fleet's gauges refreshed first.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    if let Ok(fleet) = state.coordinator.send(GetFleetStatus).await {
        state.metrics.observe_fleet(&fleet);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

const STATUS_PAGE: &str = include_str!("status.html");

/// `GET /admin/`: the HTML status page (it asks for the admin token itself).
pub async fn status_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'",
        ))
        .insert_header(("X-Frame-Options", "DENY"))
        .body(STATUS_PAGE)
}
