//! The bbb-sim control routes the scenarios use: set a create latency, count creates; and the
//! BBB API itself for what a server runs.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use serde_json::{json, Value};

fn client() -> awc::Client {
    awc::Client::default()
}

/// `POST /sim/fault {"mode":"none","latency_ms":ms}`: every API reply is delayed by `ms`.
pub async fn set_latency(port: u16, ms: u64) -> anyhow::Result<()> {
    let resp = client()
        .post(format!("http://127.0.0.1:{port}/sim/fault"))
        .send_json(&json!({"mode": "none", "latency_ms": ms}))
        .await
        .map_err(|e| anyhow::anyhow!("bbb-sim on port {port}: {e}"))?;
    if !resp.status().is_success() {
        bail!(
            "bbb-sim on port {port} refused the fault: {}",
            resp.status()
        );
    }
    Ok(())
}

/// `POST /sim/participants`: sets a running meeting's participant count (0: everyone left, and
/// BBB ends the meeting a minute later).
pub async fn set_participants(
    port: u16,
    meeting_id: &str,
    participants: u32,
) -> anyhow::Result<()> {
    let resp = client()
        .post(format!("http://127.0.0.1:{port}/sim/participants"))
        .send_json(&json!({"meetingID": meeting_id, "participants": participants}))
        .await
        .map_err(|e| anyhow::anyhow!("bbb-sim on port {port}: {e}"))?;
    // A meeting that ended meanwhile is a 404: nothing to empty.
    if !(resp.status().is_success() || resp.status().as_u16() == 404) {
        bail!(
            "bbb-sim on port {port} refused the counts: {}",
            resp.status()
        );
    }
    Ok(())
}

/// One `create` call a sim received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCall {
    /// `meta_Room`, or `""`.
    pub room: String,
    pub meeting_id: String,
    /// When the sim received it (ms since the Unix epoch).
    pub at_ms: i64,
}

/// The `create` calls a sim received: their `meta_Room` (or `""`) and `meetingID`.
pub async fn creates(port: u16) -> anyhow::Result<Vec<(String, String)>> {
    Ok(create_log(port)
        .await?
        .into_iter()
        .map(|c| (c.room, c.meeting_id))
        .collect())
}

/// The `create` calls a sim received, oldest first.
pub async fn create_log(port: u16) -> anyhow::Result<Vec<CreateCall>> {
    let mut resp = client()
        .get(format!("http://127.0.0.1:{port}/sim/calls"))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("bbb-sim on port {port}: {e}"))?;
    let calls: Value = resp
        .json()
        .limit(512 << 20)
        .await
        .context("bbb-sim sent an unreadable call log")?;
    let list = calls.as_array().context("bbb-sim call log is not a list")?;
    Ok(list
        .iter()
        .filter(|c| c["call"] == "create")
        .map(|c| {
            let p = &c["params"];
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            CreateCall {
                room: s("meta_Room"),
                meeting_id: s("meetingID"),
                at_ms: c["at_ms"].as_i64().unwrap_or_default(),
            }
        })
        .collect())
}

/// An end callback a sim sent: the meeting, when it ended and when the gateway answered.
#[derive(Debug, Clone)]
pub struct CallbackSent {
    pub meeting_id: String,
    pub ended_at_ms: i64,
    pub answered_at_ms: Option<i64>,
}

/// `GET /sim/callbacks`: the end callbacks a sim sent so far.
pub async fn callbacks(port: u16) -> anyhow::Result<Vec<CallbackSent>> {
    let mut resp = client()
        .get(format!("http://127.0.0.1:{port}/sim/callbacks"))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("bbb-sim on port {port}: {e}"))?;
    let list: Value = resp
        .json()
        .limit(64 << 20)
        .await
        .context("bbb-sim sent an unreadable callback log")?;
    Ok(list
        .as_array()
        .context("bbb-sim callback log is not a list")?
        .iter()
        .map(|c| CallbackSent {
            meeting_id: c["meetingID"].as_str().unwrap_or_default().to_string(),
            ended_at_ms: c["ended_at_ms"].as_i64().unwrap_or(0),
            answered_at_ms: c["answered_at_ms"].as_i64(),
        })
        .collect())
}

/// The meetings a BBB server (a sim) runs, by meeting id, with their participant counts: what
/// the gateway's poll sees, asked the same way (`getMeetings`).
pub async fn participants(
    endpoint: &bbb_api::ServerEndpoint,
) -> anyhow::Result<BTreeMap<String, u32>> {
    use bbb_api::BbbApi;
    let client = bbb_api::AwcBbbClient::new(bbb_api::BbbClientConfig {
        connect_timeout: std::time::Duration::from_secs(2),
        request_timeout: std::time::Duration::from_secs(10),
        max_body_bytes: 64 << 20,
    });
    let meetings = client
        .get_meetings(endpoint)
        .await
        .map_err(|e| anyhow::anyhow!("getMeetings on {}: {e}", endpoint.base_url))?;
    Ok(meetings
        .into_iter()
        .map(|m| (m.meeting_id, m.participant_count))
        .collect())
}

/// `create` calls for `room` over all `ports`.
pub async fn creates_for_room(ports: &[u16], room: &str) -> anyhow::Result<usize> {
    let mut n = 0;
    for p in ports {
        n += creates(*p).await?.iter().filter(|(r, _)| r == room).count();
    }
    Ok(n)
}

/// Distinct meetings created on each port (keyed by port).
pub async fn meetings_per_server(ports: &[u16]) -> anyhow::Result<BTreeMap<u16, usize>> {
    let mut out = BTreeMap::new();
    for p in ports {
        let ids: BTreeSet<String> = creates(*p).await?.into_iter().map(|(_, m)| m).collect();
        out.insert(*p, ids.len());
    }
    Ok(out)
}
