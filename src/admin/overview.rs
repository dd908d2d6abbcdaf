//! The dashboard's data beyond the fleet status: meetings with their world's and room's names,
//! and every server's load over the last hour.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::coordinator::load_history::{BUCKET_MS, SPAN_MS};
use crate::coordinator::{GetLoadHistory, MeetingStatus};
use crate::state::AppState;

use super::routes::{check, ApiResult};

/// The meetings as JSON, each with its world's title and its room's name (looked up in the
/// world cache; a world that cannot be read now leaves them `null`).
pub async fn meetings_json(state: &AppState, meetings: Vec<MeetingStatus>) -> Vec<Value> {
    let mut worlds = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(meetings.len());
    for m in meetings {
        if !worlds.contains_key(&m.world) {
            let snapshot = match state.worlds.get(&m.world).await {
                Ok(w) => w,
                Err(e) => {
                    log::warn!("status: cannot read world {:?}: {e}", m.world);
                    None
                }
            };
            worlds.insert(m.world.clone(), snapshot);
        }
        let world = worlds.get(&m.world).and_then(Option::as_ref);
        let room_name = m
            .room
            .as_deref()
            .and_then(|r| world.and_then(|w| w.room(r)))
            .map(|r| r.name.clone());
        let mut v = serde_json::to_value(&m).unwrap_or(Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("world_title".into(), json!(world.map(|w| w.title.clone())));
            obj.insert("room_name".into(), json!(room_name));
        }
        out.push(v);
    }
    out
}

/// `GET /api/v1/load-history`: per server, one point per 30 s of the last hour (the peaks of
/// the polls in it).
pub async fn load_history(req: HttpRequest, state: web::Data<AppState>) -> ApiResult {
    check(&req, &state)?;
    let servers = state.coordinator.send(GetLoadHistory).await?;
    Ok(HttpResponse::Ok().json(json!({
        "bucket_secs": BUCKET_MS / 1000,
        "span_secs": SPAN_MS / 1000,
        "now_ms": crate::db::now_ms(),
        "servers": servers,
    })))
}
