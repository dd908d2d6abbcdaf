//! Authentication, room visibility and profiles of PROTOCOL.md, end to end through the real
//! server (the frame rules are tested next to the session actor).

use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn authenticate_with_token_lists_visible_rooms() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let (_c, payload) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    assert_eq!(
        payload["world.config"]["world"],
        json!({"id": "w1", "title": "Sample Conference"})
    );
    assert_eq!(payload["user.config"]["profile"]["display_name"], "Bob");
    let rooms: Vec<&str> = payload["world.config"]["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    // backstage needs the speaker trait; stage has only the default viewer grant
    assert_eq!(rooms, vec!["room_1", "stage"]);
    let room_1 = &payload["world.config"]["rooms"][0];
    assert_eq!(
        room_1["modules"],
        json!([{"type": "call.bigbluebutton", "config": {}}])
    );
    let perms = room_1["permissions"].as_array().unwrap();
    assert!(perms.contains(&json!("room:bbb.join")));
    assert!(!perms.contains(&json!("room:bbb.moderate")));
    assert!(payload["world.config"]["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("world:view")));

    // an explicit grant makes alice moderator in room_1
    let (_c, payload) = app.ws_as("w1", "alice", &[], None).await;
    let perms = payload["world.config"]["rooms"][0]["permissions"]
        .as_array()
        .unwrap()
        .clone();
    assert!(perms.contains(&json!("room:bbb.moderate")));
    assert!(perms.contains(&json!("room:bbb.recordings")));
    // a speaker trait reveals the backstage
    let (_c, payload) = app.ws_as("w1", "carol", &["speaker"], None).await;
    assert_eq!(
        payload["world.config"]["rooms"].as_array().unwrap().len(),
        3
    );
}

#[actix_web::test]
async fn client_id_users_need_world_view() {
    let app = spawn_app().await;
    app.import_world(&sample_world("open")).await;
    let mut c = app.ws("open").await;
    c.send(json!(["authenticate", {"client_id": "anon-1"}]))
        .await;
    assert_eq!(c.recv().await.unwrap()[0], "authenticated");

    let mut closed = sample_world("closed");
    closed["trait_grants"] = json!({"viewer": ["attendee"], "participant": ["attendee"]});
    app.import_world(&closed).await;
    let mut c = app.ws("closed").await;
    c.send(json!(["authenticate", {"client_id": "anon-1"}]))
        .await;
    assert_eq!(
        c.recv().await.unwrap(),
        json!(["error", {"code": "auth.missing_token"}])
    );
    c.send(json!(["authenticate", {"token": token_for("bob", &[], None)}]))
        .await;
    assert_eq!(
        c.recv().await.unwrap(),
        json!(["error", {"code": "auth.denied"}])
    );
    c.send(json!(["authenticate", {"token": token_for("bob", &["attendee"], None)}]))
        .await;
    assert_eq!(c.recv().await.unwrap()[0], "authenticated");
}

#[actix_web::test]
async fn user_update_stores_the_profile() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let (mut c, payload) = app.ws_as("w1", "dave", &[], None).await;
    assert!(payload["user.config"]["profile"]
        .get("display_name")
        .is_none());
    assert_eq!(
        c.request(
            "user.update",
            9,
            json!({"profile": {"display_name": "Dave"}})
        )
        .await,
        json!(["success", 9, {}])
    );
    let bad = c
        .request("user.update", 10, json!({"profile": {"display_name": 3}}))
        .await;
    assert_eq!(bad[1], 10);
    assert_eq!(bad[2]["code"], "protocol.invalid_message");
    // a new connection sees the stored name
    let mut c2 = app.ws("w1").await;
    let token = {
        let s = bbb_gateway::world::JwtSecret {
            issuer: "any".into(),
            audience: "venueless".into(),
            secret: WORLD_SECRET.into(),
        };
        bbb_gateway::auth::mint_token(&s, "dave", &[], None, 60).unwrap()
    };
    c2.send(json!(["authenticate", {"token": token}])).await;
    let auth = c2.recv().await.unwrap();
    assert_eq!(auth[1]["user.config"]["profile"]["display_name"], "Dave");
}

#[actix_web::test]
async fn health_routes_report_the_database() {
    let app = spawn_app().await;
    let get = |path: &'static str| {
        let url = app.url(path);
        async move {
            let mut resp = awc::Client::new().get(url).send().await.unwrap();
            let body = resp.json::<serde_json::Value>().await.unwrap();
            (resp.status().as_u16(), body)
        }
    };
    assert_eq!(get("/livez").await, (200, json!({"status": "ok"})));
    for path in ["/readyz", "/healthz"] {
        assert_eq!(
            get(path).await,
            (
                200,
                json!({"status": "ok", "database": "ok", "meetings_in_memory": 0})
            ),
            "{path}"
        );
    }
}

#[actix_web::test]
async fn readyz_turns_503_as_soon_as_a_shutdown_begins() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    // A client that never answers the close frame keeps the shutdown waiting (about 2 s) with
    // the listener still open: a load balancer probing then must be told to go elsewhere.
    let _silent = crate::raw_ws::RawWs::connect(app.port, "/ws/world/w1/").await;
    let ready = |url: String| async move {
        match awc::Client::new().get(url).send().await {
            Ok(resp) => Some(resp.status().as_u16()),
            Err(_) => None,
        }
    };
    assert_eq!(ready(app.url("/readyz")).await, Some(200));
    let shutting_down = app.shut_down();
    let probing = async {
        wait_until("readyz says 503", WAIT, async || {
            ready(app.url("/readyz")).await == Some(503)
        })
        .await;
        assert_eq!(ready(app.url("/livez")).await, Some(200), "still alive");
    };
    tokio::join!(shutting_down, probing);
}
