//! `bbb.room_url`, `bbb.call_url` and `bbb.recordings` end to end: WebSocket → gateway →
//! bbb-sim, checking what a browser and a real BBB would see.

use bbb_gateway::bbb::ChecksumAlgorithm;
use bbb_gateway::coordinator::SetServerState;
use bbb_gateway::db::calls;
use bbb_gateway::db::servers::ServerState;
use bbb_gateway::ids::ServerId;
use serde_json::json;

use crate::fleet::*;
use crate::helpers::*;

async fn set_state(app: &TestApp, id: ServerId, state: ServerState) {
    app.state
        .coordinator
        .send(SetServerState { id, state })
        .await
        .unwrap()
        .unwrap();
}

async fn app_with_world() -> TestApp {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    app
}

#[actix_web::test]
async fn room_url_gives_a_join_url_bbb_accepts() {
    let app = app_with_world().await;
    let (sim, _) = add_sim(&app, 1, ChecksumAlgorithm::Sha1).await;

    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob: the Builder")).await;
    let reply = bob
        .request("bbb.room_url", 1, json!({"room": "room_1"}))
        .await;
    assert_eq!(reply[0], "success", "{reply}");
    assert_eq!(reply[1], 1);
    let url = reply[2]["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&sim.base_url()), "{url}");
    let q = query(&url);
    assert_eq!(q["role"], "VIEWER");
    assert_eq!(q["fullName"], "Bob the Builder", "':' is removed");
    assert_eq!(q["userdata-bbb_skip_check_audio"], "true");
    assert_eq!(q["userdata-bbb_show_public_chat_on_login"], "false");
    assert!(q.contains_key("createTime"));
    assert!(q.contains_key("password"));
    assert_eq!(q["checksum"].len(), 40, "sha1 for this server");
    assert_eq!(open_join(&url).await, Ok("viewer".into()));

    let created = creates(sim.port()).await;
    assert_eq!(created.len(), 1);
    let c = &created[0];
    assert_eq!(c["meta_Source"], "eventyay");
    assert_eq!(c["meta_World"], "w1");
    assert_eq!(c["meta_Room"], "room_1");
    assert_eq!(c["record"], "true");
    assert_eq!(c["guestPolicy"], "ALWAYS_ACCEPT");
    assert_eq!(c["lockSettingsDisablePrivateChat"], "true");
    assert_eq!(c["name"], "Gruppenraum 1");
    assert!(c["meetingID"].len() >= 24);

    // the moderator (explicit grant) gets MODERATOR for the same meeting, without a new create
    let (mut alice, _) = app.ws_as("w1", "alice", &[], Some("Alice")).await;
    let reply = alice
        .request("bbb.room_url", 2, json!({"room": "room_1"}))
        .await;
    let url = reply[2]["url"].as_str().unwrap().to_owned();
    assert_eq!(query(&url)["role"], "MODERATOR");
    assert_eq!(query(&url)["meetingID"], c["meetingID"]);
    assert_eq!(open_join(&url).await, Ok("moderator".into()));
    assert_eq!(
        creates(sim.port()).await.len(),
        1,
        "a running meeting needs no create"
    );
}

#[actix_web::test]
async fn room_errors_in_documented_order() {
    let app = app_with_world().await;
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let code = |v: serde_json::Value| v[2]["code"].as_str().unwrap().to_owned();
    assert_eq!(
        code(
            bob.request("bbb.room_url", 1, json!({"room": "nope"}))
                .await
        ),
        "room.unknown"
    );
    assert_eq!(
        code(bob.request("bbb.room_url", 2, json!({})).await),
        "room.unknown"
    );
    assert_eq!(
        code(bob.request("bbb.room_url", 3, json!({"room": 5})).await),
        "room.unknown"
    );
    assert_eq!(
        code(
            bob.request("bbb.room_url", 4, json!({"room": "stage"}))
                .await
        ),
        "room.unknown"
    );
    assert_eq!(
        code(
            bob.request("bbb.room_url", 5, json!({"room": "backstage"}))
                .await
        ),
        "protocol.denied"
    );
    // rooms of another world are unknown here
    app.import_world(&sample_world("w2")).await;
    let (mut dora, _) = app.ws_as("w2", "dora", &[], None).await;
    assert_eq!(
        code(
            dora.request("bbb.room_url", 6, json!({"room": "room_1"}))
                .await
        ),
        "bbb.join.missing_profile"
    );
    // no display name → missing_profile, fixed with user.update; then no server → bbb.failed
    let (mut eve, _) = app.ws_as("w1", "eve", &[], None).await;
    assert_eq!(
        code(
            eve.request("bbb.room_url", 7, json!({"room": "room_1"}))
                .await
        ),
        "bbb.join.missing_profile"
    );
    eve.request(
        "user.update",
        8,
        json!({"profile": {"display_name": "   "}}),
    )
    .await;
    assert_eq!(
        code(
            eve.request("bbb.room_url", 9, json!({"room": "room_1"}))
                .await
        ),
        "bbb.join.missing_profile"
    );
    eve.request(
        "user.update",
        10,
        json!({"profile": {"display_name": "Eve"}}),
    )
    .await;
    let failed = eve
        .request("bbb.room_url", 11, json!({"room": "room_1"}))
        .await;
    assert_eq!(code(failed.clone()), "bbb.failed");
    assert!(failed[2]["message"].is_string());
    // the connection survives
    eve.send(json!(["ping", 1])).await;
    assert_eq!(eve.recv().await.unwrap(), json!(["pong", 1]));
}

#[actix_web::test]
async fn waiting_room_makes_attendees_guests() {
    let app = spawn_app().await;
    let mut world = sample_world("w1");
    world["rooms"][0]["modules"][0]["config"] = json!({"waiting_room": true, "auto_camera": true});
    app.import_world(&world).await;
    let (sim, _) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let url = bob.room_url("room_1").await;
    let q = query(&url);
    assert_eq!(q["guest"], "true");
    assert_eq!(q["userdata-bbb_auto_share_webcam"], "true");
    assert_eq!(q["checksum"].len(), 64, "sha256 for this server");
    assert_eq!(creates(sim.port()).await[0]["guestPolicy"], "ASK_MODERATOR");
    let (mut alice, _) = app.ws_as("w1", "alice", &[], Some("Alice")).await;
    let url = alice.room_url("room_1").await;
    assert!(!query(&url).contains_key("guest") || query(&url)["guest"] == "false");
}

#[actix_web::test]
async fn call_url_for_invited_members_only() {
    let app = app_with_world().await;
    let (sim, _) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let call_id = app
        .state
        .db
        .run(|c| calls::create_call(c, "w1", &["bob".to_string(), "carol".to_string()]))
        .await
        .unwrap();
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let reply = bob
        .request("bbb.call_url", 1, json!({"call": call_id}))
        .await;
    let url = reply[2]["url"].as_str().unwrap().to_owned();
    let q = query(&url);
    assert_eq!(q["role"], "MODERATOR");
    assert_eq!(q["userdata-bbb_auto_share_webcam"], "true");
    assert_eq!(q["userdata-bbb_listen_only_mode"], "false");
    assert_eq!(q["userdata-bbb_auto_swap_layout"], "true");
    assert_eq!(open_join(&url).await, Ok("moderator".into()));
    let c = &creates(sim.port()).await[0];
    assert_eq!(c["name"], "Call");
    assert_eq!(c["record"], "false");
    assert_eq!(c["meta_Call"], call_id);

    let (mut dave, _) = app.ws_as("w1", "dave", &[], Some("Dave")).await;
    for call in [
        json!(call_id),
        json!("not-a-uuid"),
        json!("f160bf4f-93c4-4b50-b348-6ef61db4dbe7"),
        json!(42),
        json!("../../etc"),
    ] {
        let reply = dave.request("bbb.call_url", 2, json!({"call": call})).await;
        assert_eq!(
            reply,
            json!(["error", 2, {"code": "protocol.denied"}]),
            "{call}"
        );
    }
}

#[actix_web::test]
async fn concurrent_joins_of_a_new_room_send_one_create() {
    let app = app_with_world().await;
    let (sim, _) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    control(
        sim.port(),
        "/sim/fault",
        json!({"mode": "none", "latency_ms": 200}),
    )
    .await;
    let mut clients = Vec::new();
    for i in 0..40 {
        let (c, _) = app
            .ws_as("w1", &format!("user{i}"), &[], Some("User"))
            .await;
        clients.push(c);
    }
    let joins = clients.iter_mut().enumerate().map(|(i, c)| async move {
        c.request("bbb.room_url", i as i64, json!({"room": "room_1"}))
            .await
    });
    let replies = futures_util::future::join_all(joins).await;
    for r in &replies {
        assert_eq!(r[0], "success", "{r}");
    }
    assert_eq!(creates(sim.port()).await.len(), 1);
}

#[actix_web::test]
async fn a_dead_server_moves_the_next_joins_elsewhere() {
    let app = app_with_world().await;
    let (sim_a, _) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (sim_b, id_b) = add_sim(&app, 2, ChecksumAlgorithm::Sha256).await;
    // make A the only choice for the first meeting
    set_state(&app, id_b, ServerState::Cordoned).await;
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let url = bob.room_url("room_1").await;
    assert_eq!(port_of(&url), sim_a.port());
    set_state(&app, id_b, ServerState::Enabled).await;

    let port_a = sim_a.port();
    sim_a.stop().await;
    // the next join notices (create fails or the poller takes A offline) and lands on B
    let mut moved = None;
    let mut id = 10;
    wait_until("a join answered on the live server", WAIT, async || {
        id += 1;
        let reply = bob
            .request("bbb.room_url", id, json!({"room": "room_1"}))
            .await;
        if reply[0] == "success" {
            let url = reply[2]["url"].as_str().unwrap().to_owned();
            if port_of(&url) == sim_b.port() {
                moved = Some(url);
                return true;
            }
        }
        refresh(&app).await;
        false
    })
    .await;
    let url = moved.expect("the meeting moved to the live server");
    assert_eq!(open_join(&url).await, Ok("viewer".into()));
    assert_ne!(port_of(&url), port_a);
}

#[actix_web::test]
async fn recordings_merge_servers_and_survive_one_down() {
    let app = app_with_world().await;
    let (sim_a, id_a) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (sim_b, id_b) = add_sim(&app, 2, ChecksumAlgorithm::Sha256).await;
    let (mut alice, _) = app.ws_as("w1", "alice", &[], Some("Alice")).await;
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    assert_eq!(
        bob.request("bbb.recordings", 1, json!({"room": "room_1"}))
            .await,
        json!(["error", 1, {"code": "protocol.denied"}])
    );
    // place the meeting on one server, then panic it over to the other: both may hold recordings
    let url = alice.room_url("room_1").await;
    let meeting_id = query(&url)["meetingID"].clone();
    let (first, first_id, second) = if port_of(&url) == sim_a.port() {
        (sim_a, id_a, sim_b)
    } else {
        (sim_b, id_b, sim_a)
    };
    app.state
        .coordinator
        .send(bbb_gateway::coordinator::PanicServer { id: first_id })
        .await
        .unwrap()
        .unwrap();
    set_state(&app, first_id, ServerState::Cordoned).await;
    let url2 = alice.room_url("room_1").await;
    assert_eq!(port_of(&url2), second.port());

    let rec = |id: &str, start: i64| {
        json!({"meetingID": meeting_id, "recordID": id, "state": "published",
               "startTime": start, "endTime": start + 3_600_000, "participants": 3,
               "formats": [{"type": "presentation", "url": format!("https://x/{id}")},
                           {"type": "video", "url": format!("https://x/{id}.mp4")}]})
    };
    control(
        first.port(),
        "/sim/recordings",
        rec("rec-old", 1_596_389_400_000),
    )
    .await;
    control(
        second.port(),
        "/sim/recordings",
        rec("rec-new", 1_596_475_800_000),
    )
    .await;
    let reply = alice
        .request("bbb.recordings", 4, json!({"room": "room_1"}))
        .await;
    let results = reply[2]["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 2, "{reply}");
    assert_eq!(results[0]["url"], "https://x/rec-new", "newest first");
    assert_eq!(results[1]["url"], "https://x/rec-old");
    assert_eq!(results[0]["participants"], "3");
    assert_eq!(results[0]["url_video"], "https://x/rec-new.mp4");
    assert!(results[0]["url_notes"].is_null());
    // 2020-08-02T19:30:00+02:00 in the world's timezone (Europe/Berlin)
    assert!(
        results[1]["start"]
            .as_str()
            .unwrap()
            .starts_with("2020-08-02T19:30:00"),
        "{}",
        results[1]["start"]
    );
    assert!(results[1]["start"].as_str().unwrap().ends_with("+02:00"));

    // one server down: the other's recordings still come back
    second.stop().await;
    let reply = alice
        .request("bbb.recordings", 5, json!({"room": "room_1"}))
        .await;
    assert_eq!(reply[0], "success", "{reply}");
    assert_eq!(reply[2]["results"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn one_connection_cannot_queue_unbounded_requests() {
    let app = app_with_world().await;
    let (sim, _) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    control(
        sim.port(),
        "/sim/fault",
        json!({"mode": "none", "latency_ms": 300}),
    )
    .await;
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    for id in 0..12 {
        bob.send(json!(["bbb.room_url", id, {"room": "room_1"}]))
            .await;
    }
    let mut answered = std::collections::BTreeMap::new();
    for _ in 0..12 {
        let reply = bob.recv().await.unwrap();
        let previous = answered.insert(reply[1].as_i64().unwrap(), reply.clone());
        assert!(previous.is_none(), "answered twice: {reply}");
    }
    let ok = answered.values().filter(|r| r[0] == "success").count();
    let refused: Vec<_> = answered.values().filter(|r| r[0] == "error").collect();
    assert_eq!(ok, 8, "{answered:?}");
    assert_eq!(refused.len(), 4);
    assert!(refused.iter().all(|r| r[2]["code"] == "bbb.failed"));
    // once answered, the connection may ask again
    assert!(bob.room_url("room_1").await.contains("checksum="));
}
