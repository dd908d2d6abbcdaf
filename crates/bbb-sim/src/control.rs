//! JSON control routes (`/sim/...`) that let tests and benchmarks script the simulated server:
//! participant counts, recordings, faults, and the log of calls received.

use std::time::Instant;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use sha1::{Digest, Sha1};

use super::server::Data;
use super::state::{now_ms, FaultMode, SimFormat, SimRecording};

fn bad(status: actix_web::http::StatusCode, msg: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": msg.into() }))
}

/// `GET /sim/calls`
pub(crate) async fn calls(shared: Data) -> HttpResponse {
    let calls = shared.lock().calls.clone();
    HttpResponse::Ok().json(calls)
}

/// `POST /sim/reset`
pub(crate) async fn reset(shared: Data) -> HttpResponse {
    let callbacks = {
        let mut st = shared.lock();
        st.reset();
        st.take_callbacks()
    };
    super::callbacks::send(&shared, callbacks);
    HttpResponse::Ok().json(json!({ "ok": true }))
}

/// `GET /sim/callbacks`: every end callback sent, with when the meeting ended and when (and
/// how) the callee answered.
pub(crate) async fn callbacks(shared: Data) -> HttpResponse {
    let sent = shared.lock().callbacks_sent.clone();
    HttpResponse::Ok().json(sent)
}

/// Body of `POST /sim/participants`; absent counts stay as they are.
#[derive(Deserialize)]
pub(crate) struct ParticipantsBody {
    #[serde(rename = "meetingID")]
    meeting_id: String,
    participants: Option<u32>,
    voice: Option<u32>,
    video: Option<u32>,
    moderators: Option<u32>,
    listeners: Option<u32>,
}

/// `POST /sim/participants`
pub(crate) async fn participants(shared: Data, body: web::Json<ParticipantsBody>) -> HttpResponse {
    let b = body.into_inner();
    let now = Instant::now();
    let mut st = shared.lock();
    st.purge_expired(now);
    let Some(m) = st.meetings.get_mut(&b.meeting_id) else {
        return bad(
            actix_web::http::StatusCode::NOT_FOUND,
            format!("no running meeting {:?}", b.meeting_id),
        );
    };
    if let Some(n) = b.participants {
        m.set_participants(n, now);
    }
    if let Some(n) = b.voice {
        m.voice = n;
    }
    if let Some(n) = b.video {
        m.video = n;
    }
    if let Some(n) = b.moderators {
        m.moderators = n;
    }
    if let Some(n) = b.listeners {
        m.listeners = n;
    }
    HttpResponse::Ok().json(json!({
        "meetingID": m.meeting_id, "participants": m.participants, "voice": m.voice,
        "video": m.video, "moderators": m.moderators, "listeners": m.listeners,
    }))
}

fn default_state() -> String {
    "published".into()
}

/// Body of `POST /sim/recordings`.
#[derive(Deserialize)]
pub(crate) struct RecordingBody {
    #[serde(rename = "meetingID")]
    meeting_id: String,
    #[serde(rename = "recordID")]
    record_id: Option<String>,
    name: Option<String>,
    #[serde(default = "default_state")]
    state: String,
    #[serde(rename = "startTime")]
    start_time: Option<i64>,
    #[serde(rename = "endTime")]
    end_time: Option<i64>,
    #[serde(default)]
    participants: u32,
    #[serde(default)]
    formats: Vec<SimFormat>,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, String>,
}

/// `POST /sim/recordings`
pub(crate) async fn recordings(shared: Data, body: web::Json<RecordingBody>) -> HttpResponse {
    let b = body.into_inner();
    if b.meeting_id.is_empty() {
        return bad(
            actix_web::http::StatusCode::BAD_REQUEST,
            "meetingID is required",
        );
    }
    let start = b.start_time.unwrap_or_else(now_ms);
    let internal = format!(
        "{}-{start}",
        hex::encode(Sha1::digest(b.meeting_id.as_bytes()))
    );
    let rec = SimRecording {
        record_id: b.record_id.unwrap_or_else(|| internal.clone()),
        internal_meeting_id: internal,
        name: b.name.unwrap_or_else(|| b.meeting_id.clone()),
        meeting_id: b.meeting_id,
        state: b.state,
        start_time: start,
        end_time: b.end_time.unwrap_or(start),
        participants: b.participants,
        formats: b.formats,
        metadata: b.metadata.into_iter().collect(),
    };
    let id = rec.record_id.clone();
    let mut st = shared.lock();
    st.recordings.retain(|r| r.record_id != id);
    st.recordings.push(rec);
    HttpResponse::Ok().json(json!({ "recordID": id }))
}

/// Body of `POST /sim/fault`.
#[derive(Deserialize)]
pub(crate) struct FaultBody {
    mode: FaultMode,
    #[serde(default)]
    latency_ms: u64,
}

/// `POST /sim/fault`
pub(crate) async fn fault(shared: Data, body: web::Json<FaultBody>) -> HttpResponse {
    let mut st = shared.lock();
    st.fault = body.mode;
    st.fault_latency_ms = body.latency_ms;
    HttpResponse::Ok().json(json!({ "mode": body.mode, "latency_ms": body.latency_ms }))
}
