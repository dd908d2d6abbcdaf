//! Operator room moves over REST (`POST /api/v1/worlds/{world}/rooms/{room}/move`) against real
//! bbb-sim servers: the meeting runs on the target, is ended where it ran, joins keep working,
//! and every refusal names its reason.

use bbb_gateway::bbb::ChecksumAlgorithm;
use bbb_gateway::db::servers::NewServer;
use bbb_gateway::ids::ServerId;
use serde_json::{json, Value};

use crate::admin::{post, post_state, TOKEN};
use crate::fleet::*;
use crate::helpers::*;

async fn move_room(app: &TestApp, world: &str, room: &str, body: &str) -> (u16, Value) {
    post(
        app,
        &format!("/api/v1/worlds/{world}/rooms/{room}/move"),
        Some(TOKEN),
        body,
    )
    .await
}

async fn move_to(app: &TestApp, server: ServerId) -> (u16, Value) {
    move_room(
        app,
        "w1",
        "room_1",
        &json!({ "server": server }).to_string(),
    )
    .await
}

/// Whether `sim_port` runs the meeting `meeting_id` now (its control route knows it).
async fn runs(sim_port: u16, meeting_id: &str) -> bool {
    awc::Client::default()
        .post(format!("http://127.0.0.1:{sim_port}/sim/participants"))
        .send_json(&json!({ "meetingID": meeting_id }))
        .await
        .unwrap()
        .status()
        .is_success()
}

async fn ends(sim_port: u16, meeting_id: &str) -> usize {
    calls(sim_port)
        .await
        .iter()
        .filter(|(c, p)| c == "end" && p.get("meetingID").map(String::as_str) == Some(meeting_id))
        .count()
}

#[actix_web::test]
async fn a_moved_meeting_runs_on_the_target_and_is_ended_where_it_was() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let (sim1, id1) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let before = bob.room_url("room_1").await;
    assert_eq!(port_of(&before), sim1.port());
    let meeting_id = query(&before)["meetingID"].clone();
    let (sim2, id2) = add_sim(&app, 2, ChecksumAlgorithm::Sha256).await;

    let (status, body) = move_to(&app, id2).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["world"], &body["room"], &body["from"], &body["to"]),
        (&json!("w1"), &json!("room_1"), &json!(id1), &json!(id2))
    );
    assert!(body["create_time"].as_i64().unwrap() > 0, "{body}");

    // Created on the target under the same meeting id, ended on the old server after that.
    assert!(runs(sim2.port(), &meeting_id).await, "runs on the target");
    wait_until("the end on the old server", WAIT, async || {
        ends(sim1.port(), &meeting_id).await == 1
    })
    .await;
    assert!(
        !runs(sim1.port(), &meeting_id).await,
        "ended on the old server"
    );
    assert_eq!(ends(sim2.port(), &meeting_id).await, 0);
    let created_there = creates(sim2.port())
        .await
        .iter()
        .any(|p| p.get("meetingID") == Some(&meeting_id));
    assert!(created_there);

    // Joins keep working, now on the target: the session that joined before and a new one.
    let after = bob.room_url("room_1").await;
    assert_eq!(port_of(&after), sim2.port());
    assert_eq!(query(&after)["meetingID"], meeting_id);
    assert_eq!(open_join(&after).await, Ok("viewer".to_string()));
    let (mut alice, _) = app.ws_as("w1", "alice", &[], Some("Alice")).await;
    let hers = alice.room_url("room_1").await;
    assert_eq!(port_of(&hers), sim2.port());
    assert_eq!(open_join(&hers).await, Ok("moderator".to_string()));
    // The polls agree: nothing is moved back.
    refresh(&app).await;
    assert_eq!(port_of(&bob.room_url("room_1").await), sim2.port());
    assert!(runs(sim2.port(), &meeting_id).await);
}

#[actix_web::test]
async fn a_room_not_running_anywhere_is_started_on_the_target() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let (_sim1, _) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (sim2, id2) = add_sim(&app, 2, ChecksumAlgorithm::Sha256).await;
    let (status, body) = move_to(&app, id2).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["from"], &body["to"]), (&Value::Null, &json!(id2)));
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    assert_eq!(port_of(&bob.room_url("room_1").await), sim2.port());
}

#[actix_web::test]
async fn unusable_targets_and_bad_requests_are_refused_naming_why() {
    // Polls run only when the test asks (`refresh`), so no poll notices a fault early.
    let app = spawn_app_with(
        |s| s.bbb.poll_interval_secs = 3600,
        bbb_gateway::config::SessionConfig::default(),
    )
    .await;
    app.import_world(&sample_world("w1")).await;
    app.import_world(&sample_world("other")).await;
    let (sim1, id1) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let url = bob.room_url("room_1").await;
    let meeting_id = query(&url)["meetingID"].clone();
    let (sim2, id2) = add_sim(&app, 2, ChecksumAlgorithm::Sha256).await;
    let (sim3, id3) = add_sim(&app, 3, ChecksumAlgorithm::Sha256).await;
    let sim4 = start_sim(4).await;
    let id4 = add_server(
        &app,
        NewServer {
            world_id: Some("other".into()),
            ..sim_server(&sim4, 4, ChecksumAlgorithm::Sha256)
        },
    )
    .await;

    let conflict = async |server: ServerId, reason: &str| {
        let (status, body) = move_to(&app, server).await;
        assert_eq!(status, 409, "{body}");
        let message = body["error"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(reason), "{reason:?} not in {body}");
        message
    };

    // Not enabled.
    let status = post_state(&app, id2, "cordoned").await;
    assert_eq!(status, 200);
    conflict(id2, "cordoned").await;
    post_state(&app, id2, "disabled").await;
    conflict(id2, "disabled").await;
    post_state(&app, id2, "enabled").await;

    // Offline: its polls fail (`bbb.unhealthy_after` = 2).
    sim3.stop().await;
    refresh(&app).await;
    refresh(&app).await;
    conflict(id3, "offline").await;

    // Reserved for another world.
    conflict(id4, "reserved for world \"other\"").await;

    // The create on the target fails: the meeting stays where it was, nothing is ended.
    control(sim2.port(), "/sim/fault", json!({"mode": "http500"})).await;
    conflict(id2, "stays where it was").await;
    assert!(runs(sim1.port(), &meeting_id).await);
    assert_eq!(ends(sim1.port(), &meeting_id).await, 0);
    assert_eq!(port_of(&bob.room_url("room_1").await), sim1.port());
    control(sim2.port(), "/sim/fault", json!({"mode": "none"})).await;
    // Its failed create made it suspect until a contact succeeds again.
    conflict(id2, "failed its last contact").await;
    refresh(&app).await;

    // Unknown world, room, video room and server: 404.
    for (world, room, body) in [
        ("nope", "room_1", json!({"server": id2})),
        ("w1", "nope", json!({"server": id2})),
        ("w1", "stage", json!({"server": id2})),
        ("w1", "room_1", json!({"server": 4242})),
    ] {
        let (status, reply) = move_room(&app, world, room, &body.to_string()).await;
        assert_eq!(status, 404, "{world}/{room} {body}: {reply}");
        assert!(reply["error"].is_string(), "{reply}");
    }

    // Bad bodies: 400 naming the field.
    for body in [
        "{}",
        r#"{"server": "two"}"#,
        r#"{"server": 1.5}"#,
        r#"{"server": null}"#,
    ] {
        let (status, reply) = move_room(&app, "w1", "room_1", body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        let message = reply["error"].as_str().unwrap_or_default();
        assert!(message.contains("server"), "{body}: {reply}");
    }
    let (status, reply) = move_room(&app, "w1", "room_1", r#"{"server": 2, "to": 3}"#).await;
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().unwrap().contains("to"), "{reply}");
    let (status, _) = move_room(&app, "w1", "room_1", "not json").await;
    assert_eq!(status, 400);
    // Without the token: 401, and nothing moved.
    let (status, _) = post(
        &app,
        "/api/v1/worlds/w1/rooms/room_1/move",
        None,
        &json!({ "server": id2 }).to_string(),
    )
    .await;
    assert_eq!(status, 401);

    // After all that the meeting is still where it was, and a good move still works.
    assert_eq!(port_of(&bob.room_url("room_1").await), sim1.port());
    let (status, body) = move_to(&app, id2).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["from"], json!(id1));
    assert_eq!(port_of(&bob.room_url("room_1").await), sim2.port());
}
