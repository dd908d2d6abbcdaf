//! Changes to a user made while they are connected (an operator's `user moderate`, new traits
//! from a login elsewhere) reach their open sessions within the refresh interval, without a
//! reconnect, on the warm-join path too.

use std::process::Command;
use std::time::{Duration, Instant};

use bbb_gateway::bbb::ChecksumAlgorithm;
use serde_json::{json, Value};

use crate::fleet::add_sim;
use crate::helpers::*;

use crate::process::BIN;
/// Within this bound (venueless: 30 s) a change must have reached the sessions.
const BOUND: Duration = Duration::from_secs(30);

/// `bbb-gateway user moderate` against the test gateway's database.
fn moderate(app: &TestApp, uid: &str, state: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["user", "moderate", "--world", "w", "--uid", uid, state])
        .env(
            "BBB_GATEWAY__DATABASE__URL",
            &app.state.settings.database.url,
        )
        .env("RUST_LOG", "warn")
        .output()
        .expect("the command runs")
}

/// Asks until the reply's outcome (`"success"` or an error code) is `want`; returns how long
/// that took. Panics after [`BOUND`].
async fn until_outcome(c: &mut WsClient, action: &str, payload: Value, want: &str) -> Duration {
    let started = Instant::now();
    let mut id = 0;
    loop {
        id += 1;
        let reply = c.request(action, id, payload.clone()).await;
        let outcome = match reply[0].as_str() {
            Some("success") => "success",
            _ => reply[2]["code"].as_str().unwrap_or("?"),
        };
        if outcome == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < BOUND,
            "{action} still answers {reply} after {BOUND:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_user_banned_while_connected_is_denied_within_the_bound() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w")).await;
    let (_sim, _) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (mut bob, _) = app.ws_as("w", "bob", &[], Some("Bob")).await;
    let room = json!({"room": "room_1"});
    // The first join creates the meeting; the next ones are warm (answered by the session).
    bob.room_url("room_1").await;
    bob.room_url("room_1").await;

    let out = moderate(&app, "bob", "banned");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = until_outcome(&mut bob, "bbb.room_url", room.clone(), "protocol.denied").await;
    eprintln!("ban reached the open session after {took:?}");
    // Banned users have no permission at all, and cannot log in again.
    let reply = bob.request("room.enter", 99, room.clone()).await;
    assert_eq!(reply[2]["code"], "protocol.denied");
    let reply = bob
        .request("user.update", 98, json!({"profile": {"display_name": "B"}}))
        .await;
    assert_eq!(reply[2]["code"], "protocol.denied");
    let mut again = app.ws("w").await;
    again
        .send(json!(["authenticate", {"token": token_for("bob", &[], None)}]))
        .await;
    assert_eq!(
        again.recv().await.unwrap(),
        json!(["error", {"code": "auth.denied"}])
    );

    // Silenced: may still view rooms, may not join the call.
    let out = moderate(&app, "bob", "silenced");
    assert!(out.status.success());
    until_outcome(&mut bob, "room.enter", room.clone(), "success").await;
    let reply = bob.request("bbb.room_url", 100, room.clone()).await;
    assert_eq!(reply[2]["code"], "protocol.denied", "{reply}");

    // Lifted: joins work again, without a reconnect.
    let out = moderate(&app, "bob", "none");
    assert!(out.status.success());
    until_outcome(&mut bob, "bbb.room_url", room, "success").await;

    // Only that user is affected, and unknown users are reported.
    let out = moderate(&app, "nobody", "banned");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
}

#[actix_web::test]
async fn traits_from_a_newer_login_reach_the_open_session() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w")).await;
    let (mut carol, _) = app.ws_as("w", "carol", &[], Some("Carol")).await;
    let backstage = json!({"room": "backstage"});
    let reply = carol.request("room.enter", 1, backstage.clone()).await;
    assert_eq!(reply[2]["code"], "protocol.denied");
    // Carol logs in on another device with a token that makes her a speaker.
    let (_other, _) = app.ws_as("w", "carol", &["speaker"], Some("Carol")).await;
    let took = until_outcome(&mut carol, "room.enter", backstage, "success").await;
    eprintln!("new traits reached the open session after {took:?}");
}
