//! The bbb-sim control routes the scenarios use: set a create latency, count creates.

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

/// The `create` calls a sim received: their `meta_Room` (or `""`) and `meetingID`.
pub async fn creates(port: u16) -> anyhow::Result<Vec<(String, String)>> {
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
            (s("meta_Room"), s("meetingID"))
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
