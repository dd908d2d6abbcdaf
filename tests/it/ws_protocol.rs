//! The WebSocket frame rules, authentication and profile of PROTOCOL.md, end to end.

use std::time::Duration;

use bbb_gateway::session::SessionConfig;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn unknown_world_reports_and_closes() {
    let app = spawn_app().await;
    let mut c = app.ws("nope").await;
    let frame = c.recv().await.unwrap();
    assert_eq!(frame, json!(["error", {"code": "world.unknown_world"}]));
    assert_eq!(c.recv().await, Err(Closed::Code(Some(1000))));
}

#[actix_web::test]
async fn ping_works_before_auth_and_everything_else_needs_auth() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let mut c = app.ws("w1").await;
    c.send(json!(["ping", 42])).await;
    assert_eq!(c.recv().await.unwrap(), json!(["pong", 42]));
    assert_eq!(
        c.request("bbb.room_url", 1, json!({"room": "room_1"}))
            .await,
        json!(["error", 1, {"code": "protocol.unauthenticated"}])
    );
    c.send(json!(["user.update", {"profile": {}}])).await;
    assert_eq!(
        c.recv().await.unwrap(),
        json!(["error", {"code": "protocol.unauthenticated"}])
    );
}

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
async fn auth_errors() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let mut c = app.ws("w1").await;
    c.send(json!(["authenticate", {}])).await;
    assert_eq!(
        c.recv().await.unwrap(),
        json!(["error", {"code": "auth.missing_id_or_token"}])
    );
    c.send(json!(["authenticate", {"token": "garbage"}])).await;
    assert_eq!(
        c.recv().await.unwrap(),
        json!(["error", {"code": "auth.invalid_token"}])
    );
    let wrong_key = {
        let s = bbb_gateway::world::JwtSecret {
            issuer: "any".into(),
            audience: "venueless".into(),
            secret: "another-secret-entirely-0123456789".into(),
        };
        bbb_gateway::auth::mint_token(&s, "bob", &[], None, 60).unwrap()
    };
    c.send(json!(["authenticate", {"token": wrong_key}])).await;
    assert_eq!(
        c.recv().await.unwrap(),
        json!(["error", {"code": "auth.invalid_token"}])
    );
    let expired = {
        let s = bbb_gateway::world::JwtSecret {
            issuer: "any".into(),
            audience: "venueless".into(),
            secret: WORLD_SECRET.into(),
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        let claims = json!({"iss": "any", "aud": "venueless", "uid": "bob",
                            "exp": chrono::Utc::now().timestamp() - 3600});
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(s.secret.as_bytes()),
        )
        .unwrap()
    };
    c.send(json!(["authenticate", {"token": expired}])).await;
    assert_eq!(
        c.recv().await.unwrap(),
        json!(["error", {"code": "auth.expired_token"}])
    );
    // still usable afterwards
    c.send(json!(["authenticate", {"token": token_for("bob", &[], None)}]))
        .await;
    assert_eq!(c.recv().await.unwrap()[0], "authenticated");
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
async fn unknown_commands_and_invalid_frames_keep_the_session() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let (mut c, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    assert_eq!(
        c.request("foo.bar", 5, json!({})).await,
        json!(["error", 5, {"code": "protocol.unknown_command"}])
    );
    assert_eq!(
        c.request("bbb.bla", "x", json!({})).await,
        json!(["error", "x", {"code": "bbb.unsupported_command"}])
    );
    for bad in [
        "not json",
        "{\"a\": 1}",
        "[1, 2, 3]",
        "[\"bbb.room_url\", 1, []]",
        "[]",
    ] {
        c.send_text(bad).await;
        let reply = c.recv().await.unwrap();
        assert_eq!(reply[0], "error", "{bad}");
        assert_eq!(reply[1]["code"], "protocol.invalid_message", "{bad}");
        assert!(reply[1]["message"].is_string());
    }
    c.send_binary(b"\x00\x01").await;
    assert_eq!(
        c.recv().await.unwrap()[1]["code"],
        "protocol.invalid_message"
    );
    c.send(json!(["ping", "still here"])).await;
    assert_eq!(c.recv().await.unwrap(), json!(["pong", "still here"]));
}

#[actix_web::test]
async fn oversized_frame_closes_only_that_connection() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let (mut big, _) = app.ws_as("w1", "bob", &[], None).await;
    let (mut other, _) = app.ws_as("w1", "carol", &[], None).await;
    let huge = format!("[\"ping\", \"{}\"]", "x".repeat(70 * 1024));
    big.send_text(&huge).await;
    assert_eq!(big.recv().await, Err(Closed::Code(Some(1009))));
    other.send(json!(["ping", 1])).await;
    assert_eq!(other.recv().await.unwrap(), json!(["pong", 1]));
}

#[actix_web::test]
async fn flood_of_invalid_frames_closes_with_1008_and_spares_others() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let mut flood = app.ws("w1").await;
    let mut other = app.ws("w1").await;
    for _ in 0..20 {
        flood.send_text("garbage").await;
        assert_eq!(
            flood.recv().await.unwrap()[1]["code"],
            "protocol.invalid_message"
        );
    }
    flood.send_text("garbage").await;
    assert_eq!(
        flood.recv().await.unwrap()[1]["code"],
        "protocol.invalid_message"
    );
    assert_eq!(flood.recv().await, Err(Closed::Code(Some(1008))));
    other.send(json!(["ping", 2])).await;
    assert_eq!(other.recv().await.unwrap(), json!(["pong", 2]));
}

#[actix_web::test]
async fn silent_clients_are_dropped() {
    let session = SessionConfig {
        heartbeat_interval: Duration::from_millis(100),
        client_timeout: Duration::from_millis(300),
        ..SessionConfig::default()
    };
    let app = spawn_app_with(|_| {}, session).await;
    app.import_world(&sample_world("w1")).await;
    // This client never answers pings (recv is not called), so the server drops it.
    let mut c = app.ws("w1").await;
    actix_web::rt::time::sleep(Duration::from_millis(800)).await;
    let mut ended = false;
    for _ in 0..50 {
        match c.recv_within(Duration::from_millis(500)).await {
            Err(Closed::Eof) | Err(Closed::Code(_)) => {
                ended = true;
                break;
            }
            _ => continue,
        }
    }
    assert!(ended, "the silent client was not dropped");
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
async fn healthz_reports_the_database() {
    let app = spawn_app().await;
    let resp = awc::Client::new()
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(resp, json!({"status": "ok", "database": "ok"}));
}
