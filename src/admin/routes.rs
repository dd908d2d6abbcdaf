use actix_web::error::PathError;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;
use serde_json::json;

use crate::coordinator::{
    AdminError, FleetStatus, GetFleetStatus, ListMeetings, PanicServer, SetServerCapacity,
    SetServerState,
};
use crate::db::servers::ServerState;
use crate::db::{calls, DbError};
use crate::state::AppState;

/// An admin route's failure: a status and a message for the `{"error": …}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    fn unavailable(what: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} is unavailable, retry later"),
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(json!({"error": self.message}))
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::UnknownServer(id) => ApiError::not_found(format!("no server with id {id}")),
            AdminError::Db(e) => e.into(),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Invalid(msg) => ApiError::bad_request(msg),
            other => {
                log::error!("admin route: {other}");
                ApiError::unavailable("the database")
            }
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(_: actix::MailboxError) -> Self {
        ApiError::unavailable("the coordinator")
    }
}

pub(super) type ApiResult = Result<HttpResponse, ApiError>;

pub(super) fn check(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    if super::authorized(req, &state.settings.admin.tokens) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a valid admin token is required (Authorization: Bearer <token>)",
        ))
    }
}

/// Parses a JSON body; the 400 names the JSON path of the problem (`state: unknown variant…`).
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::bad_request(format!("invalid body: {}", e.inner()))
        } else {
            ApiError::bad_request(format!("invalid body: {path}: {}", e.inner()))
        }
    })
}

/// Unparseable path ids are 404s: no such resource.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    let response = ApiError::not_found("no such resource").error_response();
    actix_web::error::InternalError::from_response(err, response).into()
}

/// `GET /api/v1/status`: the fleet, the meetings placed on it, and when this was taken.
pub async fn status(req: HttpRequest, state: web::Data<AppState>) -> ApiResult {
    check(&req, &state)?;
    let fleet = state.coordinator.send(GetFleetStatus).await?;
    let meetings = state.coordinator.send(ListMeetings).await?;
    let mut doc = status_json(&state, &fleet);
    doc["meetings"] =
        serde_json::Value::Array(super::overview::meetings_json(&state, meetings).await);
    doc["now_ms"] = json!(crate::db::now_ms());
    Ok(HttpResponse::Ok().json(doc))
}

/// The status document: servers, totals, gateway figures. Built from [`FleetStatus`], which
/// has no secret field.
pub fn status_json(state: &AppState, fleet: &FleetStatus) -> serde_json::Value {
    let s = &fleet.servers;
    let sum = |f: fn(&crate::coordinator::ServerStatus) -> u64| s.iter().map(f).sum::<u64>();
    let mut gateway = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started_at.elapsed().as_secs(),
        "sessions_connected": state.metrics.sessions_connected(),
        "meetings_known": fleet.meetings_known,
        "creates_in_flight": fleet.creates_in_flight,
        "leader": fleet.leader,
    });
    // The coordinator's counters, each under its own name.
    if let (Some(g), Ok(serde_json::Value::Object(stats))) =
        (gateway.as_object_mut(), serde_json::to_value(&fleet.stats))
    {
        g.extend(stats);
    }
    json!({
        "gateway": gateway,
        "totals": {
            "servers": s.len(),
            "online": s.iter().filter(|x| x.online).count(),
            "enabled": s.iter().filter(|x| x.state == ServerState::Enabled).count(),
            "meetings": sum(|x| x.meetings.into()),
            "participants": sum(|x| x.participants.into()),
            "listeners": sum(|x| x.listeners.into()),
            "voice": sum(|x| x.voice.into()),
            "videos": sum(|x| x.videos.into()),
            "load": s.iter().map(|x| x.load).fold(0.0, |a, b| a + b),
            "occupancy": sum(|x| x.occupancy),
            // Of the servers that have a capacity; servers without one are unlimited.
            "capacity": sum(|x| x.capacity.map_or(0, u64::from)),
            "unlimited_servers": s.iter().filter(|x| x.capacity.is_none()).count(),
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
) -> ApiResult {
    check(&req, &state)?;
    let id = crate::ids::ServerId::new(path.into_inner());
    let new_state = parse_body::<StateBody>(&body)?.state;
    state
        .coordinator
        .send(SetServerState {
            id,
            state: new_state,
        })
        .await??;
    Ok(HttpResponse::Ok().json(json!({"id": id, "state": new_state})))
}

/// The capacity in a `{"capacity": N | null}` body; the 400 names the field.
fn parse_capacity(body: &[u8]) -> Result<Option<u32>, ApiError> {
    use crate::db::servers::MAX_CAPACITY;
    let expected = "expected {\"capacity\": a number of participants, or null for unlimited}";
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request(format!("invalid body: {expected}")))?;
    if let Some(k) = obj.keys().find(|k| *k != "capacity") {
        return Err(ApiError::bad_request(format!(
            "invalid body: unknown field `{k}`, {expected}"
        )));
    }
    match obj.get("capacity") {
        None => Err(ApiError::bad_request(
            "invalid body: missing field `capacity`",
        )),
        Some(serde_json::Value::Null) => Ok(None),
        Some(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=MAX_CAPACITY).contains(n))
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid body: capacity: must be a whole number of participants from 1 to \
                     {MAX_CAPACITY}, or null for unlimited"
                ))
            }),
    }
}

/// `POST /api/v1/servers/{id}/capacity`: `{"capacity": N}` participants, or `null` for
/// unlimited.
pub async fn set_capacity(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<i32>,
    body: web::Bytes,
) -> ApiResult {
    check(&req, &state)?;
    let id = crate::ids::ServerId::new(path.into_inner());
    let capacity = parse_capacity(&body)?;
    state
        .coordinator
        .send(SetServerCapacity { id, capacity })
        .await??;
    Ok(HttpResponse::Ok().json(json!({"id": id, "capacity": capacity})))
}

/// `POST /api/v1/servers/{id}/panic`.
pub async fn panic(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<i32>,
) -> ApiResult {
    check(&req, &state)?;
    let id = crate::ids::ServerId::new(path.into_inner());
    let n = state.coordinator.send(PanicServer { id }).await??;
    Ok(HttpResponse::Ok().json(json!({"id": id, "meetings_forgotten": n})))
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
) -> ApiResult {
    check(&req, &state)?;
    let world = path.into_inner();
    let members: Vec<String> = parse_body::<CallBody>(&body)?
        .members
        .into_iter()
        .map(|m| m.trim().to_owned())
        .collect();
    if members.is_empty() || members.len() > MAX_MEMBERS {
        return Err(ApiError::bad_request(format!(
            "members: give between 1 and {MAX_MEMBERS} uids"
        )));
    }
    if members.iter().any(|m| m.is_empty() || m.len() > MAX_UID) {
        return Err(ApiError::bad_request(format!(
            "members: every uid must be 1 to {MAX_UID} characters"
        )));
    }
    if state.worlds.get(&world).await?.is_none() {
        return Err(ApiError::not_found(format!("no world with id {world:?}")));
    }
    let id = state
        .db
        .run(move |c| calls::create_call(c, &world, &members))
        .await?;
    Ok(HttpResponse::Created().json(json!({"id": id})))
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
