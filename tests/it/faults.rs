//! Fault suite: BBB servers misbehaving in every way bbb-sim can, the database going away,
//! SQLite under concurrent writers, and a gateway restart. Every wait is bounded (the client's
//! receive timeout, bounded polling loops); no assertion depends on timing.

use std::time::Duration;

use bbb_gateway::bbb::ChecksumAlgorithm;
use bbb_gateway::client::WsClient as RawClient;
use bbb_gateway::config::SessionConfig;
use bbb_gateway::db::{testing::TestDb, DbConn};
use diesel::connection::SimpleConnection;
use serde_json::{json, Value};

use crate::fleet::{add_sim, control, open_join, port_of, query, refresh};
use crate::helpers::{spawn_app_with, test_settings, token_for, wait_until, TestApp};
use crate::multi_instance::{world, Instance};

const WAIT: Duration = Duration::from_secs(10);

async fn app_with_rooms(tweak: impl FnOnce(&mut bbb_gateway::config::Settings)) -> TestApp {
    let app = spawn_app_with(tweak, SessionConfig::default()).await;
    app.import_world(&world(16)).await;
    app
}

async fn set_fault(port: u16, mode: &str) {
    control(port, "/sim/fault", json!({ "mode": mode })).await;
}

fn code(reply: &Value) -> &str {
    reply[2]["code"].as_str().unwrap_or_default()
}

/// Asks for a room URL on `c` while `other` pings: the ping is answered whatever BBB does.
async fn join_while_pinging(
    c: &mut crate::helpers::WsClient,
    other: &mut crate::helpers::WsClient,
    room: &str,
) -> Value {
    let (reply, pong) = tokio::join!(
        c.request("bbb.room_url", 1, json!({ "room": room })),
        async {
            other.send(json!(["ping", 42])).await;
            other.recv().await
        }
    );
    assert_eq!(
        pong.unwrap(),
        json!(["pong", 42]),
        "other users are unaffected"
    );
    reply
}

#[actix_web::test]
async fn every_bbb_fault_fails_over_or_answers_bbb_failed_and_nothing_hangs() {
    let app = app_with_rooms(|_| {}).await;
    let (s0, _) = add_sim(&app, 0, ChecksumAlgorithm::Sha256).await;
    let (s1, _) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (mut c, _) = app.ws_as("multi", "alice", &[], Some("Alice")).await;
    let (mut other, _) = app.ws_as("multi", "bob", &[], Some("Bob")).await;
    let mut room = 0;
    for mode in ["http500", "garbage", "checksum_error", "hang"] {
        // One server misbehaves: new meetings go to (or fail over to) the healthy one.
        set_fault(s0.port(), mode).await;
        let reply = join_while_pinging(&mut c, &mut other, &format!("r{room}")).await;
        room += 1;
        assert_eq!(reply[0], "success", "{mode}: {reply}");
        let url = reply[2]["url"].as_str().unwrap();
        assert_eq!(
            port_of(url),
            s1.port(),
            "{mode}: placed on the healthy server"
        );
        assert!(open_join(url).await.is_ok(), "{mode}: the URL works");
        // Both misbehave: an error frame, bounded by the request timeout and retry count.
        set_fault(s1.port(), mode).await;
        let reply = join_while_pinging(&mut c, &mut other, &format!("r{room}")).await;
        room += 1;
        assert_eq!(
            (reply[0].as_str(), code(&reply)),
            (Some("error"), "bbb.failed"),
            "{mode}"
        );
        let text = reply.to_string();
        assert!(
            !text.contains("sim-0-shared") && !text.contains("sim-1-shared"),
            "{text}"
        );
        set_fault(s0.port(), "none").await;
        set_fault(s1.port(), "none").await;
        // Back to health (polls clear `suspect` and bring offline servers back).
        refresh(&app).await;
        refresh(&app).await;
    }
    // A server that is really down (stopped): new meetings go to the other one.
    let s0_port = s0.port();
    s0.stop().await;
    let reply = join_while_pinging(&mut c, &mut other, &format!("r{room}")).await;
    assert_eq!(reply[0], "success", "{reply}");
    assert_eq!(port_of(reply[2]["url"].as_str().unwrap()), s1.port());
    assert_ne!(s0_port, s1.port());
}

/// Makes a PostgreSQL database refuse connections and ends the open ones, or lets them in.
async fn set_database_available(base: &str, name: &str, available: bool) {
    let (base, name) = (base.to_owned(), name.to_owned());
    actix_web::web::block(move || {
        let admin = bbb_gateway::db::Db::connect(&base, 1, Duration::from_secs(10)).unwrap();
        let DbConn::Postgres(mut c) = admin.get().unwrap() else {
            unreachable!("the test server is PostgreSQL")
        };
        c.batch_execute(&format!(
            "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {available}"
        ))
        .unwrap();
        if !available {
            c.batch_execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .unwrap();
        }
    })
    .await
    .unwrap();
}

/// A health route's status and JSON body.
async fn health(app: &TestApp, path: &str) -> (u16, Value) {
    let mut resp = awc::Client::default()
        .get(app.url(path))
        .send()
        .await
        .unwrap();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (resp.status().as_u16(), body)
}

#[actix_web::test]
async fn database_outage_serves_running_meetings_and_recovers_new_ones() {
    let Some(pg) = TestDb::postgres() else {
        return; // reported as skipped by TestDb
    };
    let pg = pg.expect("a fresh PostgreSQL database");
    let base = pg.server_url().expect("a PostgreSQL server").to_owned();
    let name = url::Url::parse(&pg.url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned();
    let url = pg.url.clone();
    let app = app_with_rooms(move |s| {
        s.database.url = url;
        s.database.connect_timeout_ms = 500;
    })
    .await;
    add_sim(&app, 0, ChecksumAlgorithm::Sha256).await;
    let (mut alice, _) = app.ws_as("multi", "alice", &[], Some("Alice")).await;
    let (mut bob, _) = app.ws_as("multi", "bob", &[], Some("Bob")).await;

    // Without the database and with no meeting to serve from memory: not ready.
    set_database_available(&base, &name, false).await;
    let (status, body) = health(&app, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        (
            &body["database"],
            &body["degraded"],
            &body["meetings_in_memory"]
        ),
        (&json!("unavailable"), &json!(["database"]), &json!(0))
    );
    assert_eq!(health(&app, "/livez").await.0, 200, "alive all the same");
    set_database_available(&base, &name, true).await;
    wait_until("ready once the database is back", WAIT, async || {
        health(&app, "/readyz").await.0 == 200
    })
    .await;

    let running = alice.room_url("r0").await;
    set_database_available(&base, &name, false).await;
    // A running meeting is joined from memory.
    let again = bob.room_url("r0").await;
    assert_eq!(query(&again)["meetingID"], query(&running)["meetingID"]);
    assert!(open_join(&again).await.is_ok());
    // A new meeting cannot be stored: bbb.failed, without a secret or the database URL.
    let reply = bob.request("bbb.room_url", 2, json!({"room": "r1"})).await;
    assert_eq!(
        (reply[0].as_str(), code(&reply)),
        (Some("error"), "bbb.failed"),
        "{reply}"
    );
    assert!(!reply.to_string().contains("postgres://"), "{reply}");
    // Ready all the same (a load balancer must keep this instance), naming what is degraded.
    for path in ["/readyz", "/healthz"] {
        let (status, body) = health(&app, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["status"], "degraded", "{path}: {body}");
        assert_eq!(body["database"], "unavailable", "{path}: {body}");
        assert_eq!(body["degraded"], json!(["database"]), "{path}: {body}");
        assert_eq!(body["meetings_in_memory"], 1, "{path}: {body}");
    }
    assert_eq!(health(&app, "/livez").await.0, 200);

    set_database_available(&base, &name, true).await;
    // The pool replaces its dead connections: the same join succeeds again.
    let mut id = 3;
    wait_until(
        "a new meeting after the database returns",
        WAIT,
        async || {
            id += 1;
            let reply = bob.request("bbb.room_url", id, json!({"room": "r1"})).await;
            reply[0] == "success"
        },
    )
    .await;
}

#[actix_web::test]
async fn sqlite_survives_many_concurrent_writers() {
    let app = app_with_rooms(|s| s.database.pool_size = 8).await;
    let ws_url = format!("ws://127.0.0.1:{}/ws/world/multi/", app.port);
    let clients = (0..40).map(|i| {
        let ws_url = ws_url.clone();
        async move {
            let mut c = RawClient::connect(&ws_url).await.unwrap();
            let token = token_for(&format!("writer{i}"), &[], None);
            let auth = c
                .authenticate(json!({ "token": token }), WAIT)
                .await
                .unwrap();
            assert_eq!(auth[0], "authenticated", "{auth}");
            for n in 0..5 {
                let profile = json!({"profile": {"display_name": format!("Writer {i}.{n}")}});
                let r = c
                    .request("user.update", json!(n), profile, WAIT)
                    .await
                    .unwrap();
                assert_eq!(r[0], "success", "{r}");
            }
        }
    });
    // Every authenticate (a user row insert) and every update succeeded: no SQLITE_BUSY.
    futures_util::future::join_all(clients).await;
}

#[actix_web::test]
async fn restart_keeps_meetings_calls_and_server_states() {
    let dir = tempfile::tempdir().unwrap();
    let settings = || test_settings(&dir);
    let first = Instance::start(settings()).await;
    let file = bbb_gateway::world::parse_world_file(&world(2).to_string()).unwrap();
    first
        .state
        .db
        .run(move |c| bbb_gateway::world::import_world(c, &file))
        .await
        .unwrap();
    first.state.worlds.refresh().await.unwrap();
    let sims = [
        crate::fleet::start_sim(0).await,
        crate::fleet::start_sim(1).await,
    ];
    let mut ids = Vec::new();
    for (i, sim) in sims.iter().enumerate() {
        let new = bbb_gateway::db::servers::NewServer {
            url: sim.base_url(),
            secret: bbb_gateway::bbb::Secret::new(crate::fleet::sim_secret(i)),
            checksum: ChecksumAlgorithm::Sha256,
            weight: 1.0,
            tag: None,
            world_id: None,
            capacity: None,
        };
        ids.push(
            first
                .state
                .db
                .run(move |c| bbb_gateway::db::servers::add(c, &new))
                .await
                .unwrap()
                .id,
        );
    }
    wait_until("servers known", WAIT, async || {
        first.status().await.servers.len() == 2
    })
    .await;
    let mut c = first.ws_as("multi", "alice").await;
    let room = c
        .request("bbb.room_url", json!(1), json!({"room": "r0"}), WAIT)
        .await
        .unwrap();
    let room_url = room[2]["url"].as_str().unwrap().to_owned();
    let created = awc::Client::default()
        .post(format!(
            "http://127.0.0.1:{}/api/v1/worlds/multi/calls",
            first.admin_port
        ))
        .insert_header(("Authorization", "Bearer test-admin-token-0123456789"))
        .send_json(&json!({"members": ["alice", "bob"]}))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let call_id = created["id"].as_str().unwrap().to_owned();
    let call = c
        .request("bbb.call_url", json!(2), json!({"call": call_id}), WAIT)
        .await
        .unwrap();
    let call_url = call[2]["url"].as_str().unwrap().to_owned();
    // Cordon the server the room runs on: its meeting stays, new ones go elsewhere.
    let hosting = ids[sims
        .iter()
        .position(|s| s.port() == port_of(&room_url))
        .unwrap()];
    let path = format!("/api/v1/servers/{hosting}/state");
    assert_eq!(
        first.admin_post(&path, json!({"state": "cordoned"})).await,
        200
    );
    first.stopper.clone().stop().await;
    drop(first);

    let second = Instance::start(settings()).await;
    wait_until("servers known again", WAIT, async || {
        second.status().await.servers.len() == 2
    })
    .await;
    let status = second.status().await;
    let state = status
        .servers
        .iter()
        .find(|s| s.id == hosting)
        .unwrap()
        .state;
    assert_eq!(state, bbb_gateway::db::servers::ServerState::Cordoned);
    let mut c = second.ws_as("multi", "alice").await;
    let room = c
        .request("bbb.room_url", json!(1), json!({"room": "r0"}), WAIT)
        .await
        .unwrap();
    let again = room[2]["url"].as_str().unwrap();
    assert_eq!(
        port_of(again),
        port_of(&room_url),
        "same server after the restart"
    );
    assert_eq!(query(again)["meetingID"], query(&room_url)["meetingID"]);
    let call = c
        .request("bbb.call_url", json!(2), json!({"call": call_id}), WAIT)
        .await
        .unwrap();
    let call_again = call[2]["url"].as_str().unwrap();
    assert_eq!(port_of(call_again), port_of(&call_url));
    assert_eq!(
        query(call_again)["meetingID"],
        query(&call_url)["meetingID"]
    );
    assert!(open_join(again).await.is_ok() && open_join(call_again).await.is_ok());
}
