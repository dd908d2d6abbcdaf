//! A fleet of bbb-sim servers registered with a running gateway, for end-to-end tests.

use std::collections::HashMap;

use bbb_gateway::bbb::{ChecksumAlgorithm, Secret, ServerEndpoint};
use bbb_gateway::coordinator::{PollNow, ReloadServers};
use bbb_gateway::db::servers::{self, NewServer};
use bbb_sim::{self as sim, SimConfig, SimHandle};
use serde_json::Value;

use crate::helpers::TestApp;

pub fn sim_secret(i: usize) -> String {
    format!("sim-{i}-shared-secret-abcdefghijkl")
}

/// How to call sim `i` listening on `sim_port` directly, as the gateway does (SHA-256).
pub fn sim_endpoint(sim_port: u16, i: usize) -> ServerEndpoint {
    ServerEndpoint {
        base_url: format!("http://127.0.0.1:{sim_port}/bigbluebutton"),
        secret: Secret::new(sim_secret(i)),
        algorithm: ChecksumAlgorithm::Sha256,
    }
}

pub fn sim_config(i: usize) -> SimConfig {
    SimConfig {
        secret: sim_secret(i),
        checksum: None,
        latency_ms: 0,
        time_scale: 1.0,
    }
}

pub async fn start_sim(i: usize) -> SimHandle {
    sim::start("127.0.0.1:0".parse().unwrap(), sim_config(i))
        .await
        .unwrap()
}

/// Registers `sim` with the gateway and makes the coordinator see it; returns the server id.
pub async fn register(
    app: &TestApp,
    sim: &SimHandle,
    i: usize,
    algo: ChecksumAlgorithm,
) -> bbb_gateway::ids::ServerId {
    add_server(app, sim_server(sim, i, algo)).await
}

/// Sim `i` as a server to register (shared by every world, no capacity).
pub fn sim_server(sim: &SimHandle, i: usize, algo: ChecksumAlgorithm) -> NewServer {
    NewServer {
        url: sim.base_url(),
        secret: Secret::new(sim_secret(i)),
        checksum: algo,
        weight: 1.0,
        tag: Some(format!("sim{i}")),
        world_id: None,
        capacity: None,
    }
}

/// Stores `new` and makes the coordinator see it; returns the server id.
pub async fn add_server(app: &TestApp, new: NewServer) -> bbb_gateway::ids::ServerId {
    let row = app
        .state
        .db
        .run(move |c| servers::add(c, &new))
        .await
        .unwrap();
    refresh(app).await;
    row.id
}

/// Starts sim `i` and registers it; returns the sim and its server id.
pub async fn add_sim(
    app: &TestApp,
    i: usize,
    algo: ChecksumAlgorithm,
) -> (SimHandle, bbb_gateway::ids::ServerId) {
    let sim = start_sim(i).await;
    let id = register(app, &sim, i, algo).await;
    (sim, id)
}

/// Sets the counts of the meeting behind a join URL on the sim that hosts it.
pub async fn set_participants(join_url: &str, counts: Value) {
    let mut body = counts;
    body["meetingID"] = Value::from(query(join_url)["meetingID"].clone());
    control(port_of(join_url), "/sim/participants", body).await;
}

/// Reloads servers from the database and polls them now.
pub async fn refresh(app: &TestApp) {
    app.state
        .coordinator
        .send(ReloadServers)
        .await
        .unwrap()
        .unwrap();
    app.state.coordinator.send(PollNow).await.unwrap();
}

/// Every API call a sim received, as (call name, params).
pub async fn calls(sim_port: u16) -> Vec<(String, HashMap<String, String>)> {
    let mut resp = awc::Client::default()
        .get(format!("http://127.0.0.1:{sim_port}/sim/calls"))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().limit(64 << 20).await.unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let params = c["params"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            (c["call"].as_str().unwrap().to_owned(), params)
        })
        .collect()
}

pub async fn creates(sim_port: u16) -> Vec<HashMap<String, String>> {
    calls(sim_port)
        .await
        .into_iter()
        .filter(|(c, _)| c == "create")
        .map(|(_, p)| p)
        .collect()
}

pub async fn control(sim_port: u16, path: &str, body: Value) -> Value {
    let mut resp = awc::Client::default()
        .post(format!("http://127.0.0.1:{sim_port}{path}"))
        .send_json(&body)
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}

/// The query parameters of a URL.
pub fn query(url: &str) -> HashMap<String, String> {
    let u = url::Url::parse(url).unwrap();
    u.query_pairs().into_owned().collect()
}

/// Port of a join URL's server.
pub fn port_of(url: &str) -> u16 {
    url::Url::parse(url).unwrap().port().unwrap()
}

/// Opens a join URL like a browser: `Ok("moderator" | "viewer")` when bbb-sim accepted it and
/// redirected into the client, `Err(body)` otherwise.
pub async fn open_join(url: &str) -> Result<String, String> {
    let client = awc::Client::builder().disable_redirects().finish();
    let mut resp = client.get(url).send().await.unwrap();
    let body = String::from_utf8_lossy(&resp.body().await.unwrap()).into_owned();
    let Some(location) = resp.headers().get("location").and_then(|l| l.to_str().ok()) else {
        return Err(body);
    };
    let mut page = client.get(location).send().await.unwrap();
    let page = String::from_utf8_lossy(&page.body().await.unwrap()).into_owned();
    if page.contains(" as moderator.") {
        Ok("moderator".into())
    } else if page.contains(" as viewer.") {
        Ok("viewer".into())
    } else {
        Err(page)
    }
}
