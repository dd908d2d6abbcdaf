//! HTTP layer of the simulator: logs each API call, applies latency and faults, verifies the
//! checksum over the raw query string exactly as BBB does, then runs the call.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::api::{self, Ctx, Params, Reply};
use super::state::{CallRecord, FaultMode, SimState};
use super::xml_out::{escape, failed, XmlOut};
use super::SimConfig;
use bbb_api::checksum::{split_checksum, verify};
use bbb_api::{ChecksumAlgorithm, Secret};

/// Shared by every worker of one simulator instance.
pub(crate) struct Shared {
    pub secret: Secret,
    pub allowed: Vec<ChecksumAlgorithm>,
    pub latency_ms: u64,
    pub time_scale: f64,
    pub state: Mutex<SimState>,
    /// Set when the simulator is stopped: a dead BBB ends nothing and calls nobody.
    pub stopped: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn new(config: &SimConfig) -> Self {
        Self {
            secret: Secret::new(config.secret.clone()),
            allowed: match config.checksum {
                Some(a) => vec![a],
                None => ChecksumAlgorithm::ALL.to_vec(),
            },
            latency_ms: config.latency_ms,
            time_scale: config.time_scale,
            state: Mutex::new(SimState::default()),
            stopped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The state; a panic in another handler must not take the simulator down.
    pub fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) type Data = web::Data<Arc<Shared>>;

fn xml(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml;charset=utf-8")
        .body(body)
}

/// Logs the call and waits out latency and faults. `Some(response)` short-circuits the call.
async fn preamble(shared: &Shared, call: &str, params: &Params) -> Option<HttpResponse> {
    let latency = {
        let mut st = shared.lock();
        let mut map = serde_json::Map::new();
        for (k, v) in params.iter().filter(|(k, _)| k != "checksum") {
            map.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        st.calls.push(CallRecord {
            call: call.to_string(),
            params: map,
            at_ms: super::state::now_ms(),
        });
        shared.latency_ms.saturating_add(st.fault_latency_ms)
    };
    if latency > 0 {
        actix_web::rt::time::sleep(Duration::from_millis(latency)).await;
    }
    loop {
        let fault = shared.lock().fault;
        match fault {
            FaultMode::None => return None,
            FaultMode::Http500 => {
                return Some(HttpResponse::InternalServerError().body("Internal Server Error"))
            }
            FaultMode::Garbage => {
                return Some(
                    HttpResponse::Ok()
                        .content_type("text/xml")
                        .body("<<<this is not <xml at all &&&"),
                )
            }
            FaultMode::ChecksumError => {
                return Some(xml(failed("checksumError", "Checksums do not match")))
            }
            FaultMode::Hang => actix_web::rt::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

fn parse_params(raw: &str) -> Params {
    form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `GET /bigbluebutton/api/`: the version document (no checksum).
pub(crate) async fn index(req: HttpRequest, shared: Data) -> HttpResponse {
    let params = parse_params(req.query_string());
    if let Some(r) = preamble(&shared, "", &params).await {
        return r;
    }
    let mut x = XmlOut::response("SUCCESS");
    x.el("version", "2.0")
        .el("apiVersion", "2.0")
        .el("bbbVersion", "2.7.0");
    xml(x.finish())
}

/// `GET|POST /bigbluebutton/api/{call}`. A POST body (create's `<modules>`) is read so the
/// connection stays usable, but like every parameter BBB reads, the signed ones are in the query.
pub(crate) async fn call(
    req: HttpRequest,
    path: web::Path<String>,
    _body: web::Bytes,
    shared: Data,
) -> HttpResponse {
    let call = path.into_inner();
    let raw = req.query_string();
    let params = parse_params(raw);
    if let Some(r) = preamble(&shared, &call, &params).await {
        return r;
    }
    let (query, sum) = split_checksum(raw);
    let ok = sum.is_some_and(|s| verify(&call, &query, &s, &shared.secret, &shared.allowed));
    if !ok {
        return xml(failed("checksumError", "Checksums do not match"));
    }
    let info = req.connection_info();
    let origin = format!("{}://{}", info.scheme(), info.host());
    let ctx = Ctx {
        now: Instant::now(),
        now_ms: super::state::now_ms(),
        time_scale: shared.time_scale,
        origin: &origin,
    };
    let (reply, callbacks) = {
        let mut st = shared.lock();
        let reply = api::handle(&mut st, &ctx, &call, &params);
        (reply, st.take_callbacks())
    };
    super::callbacks::send(&shared, callbacks);
    match reply {
        Some(Reply::Xml(body)) => xml(body),
        Some(Reply::Redirect(url)) => HttpResponse::Found()
            .insert_header((header::LOCATION, url))
            .finish(),
        None => HttpResponse::NotFound().body("unknown API call"),
    }
}

/// `GET /client/join?sessionToken=…`: the page a join redirect lands on.
pub(crate) async fn client_page(
    query: web::Query<std::collections::HashMap<String, String>>,
    shared: Data,
) -> HttpResponse {
    let session = query
        .get("sessionToken")
        .and_then(|t| shared.lock().sessions.get(t).cloned());
    let body = match session {
        Some(s) => {
            let role = if s.moderator { "moderator" } else { "viewer" };
            // A page that embeds the client (as the frontend does, in an iframe of another
            // origin) learns that the user is in the meeting: a simulator addition for
            // browser tests, who cannot read a cross-origin frame.
            let message = serde_json::json!({
                "bbbSim": {"joined": true, "meetingID": s.meeting_id, "fullName": s.full_name, "role": role},
            })
            .to_string()
            .replace('<', "\\u003c");
            format!(
                "<!doctype html><title>bbb-sim</title><h1>bbb-sim</h1><p>{} joined meeting <b>{}</b> as {role}.</p>\
                 <script>if (window.parent !== window) window.parent.postMessage({message}, \"*\");</script>",
                escape(&s.full_name),
                escape(&s.meeting_id),
            )
        }
        None => "<!doctype html><title>bbb-sim</title><p>Unknown or expired session.</p>".into(),
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
}
