//! What the venueless frontend relies on, one test per expectation. Each test says in its
//! comment what the frontend does with the answer; together they are the written record of the
//! contract between that frontend and this gateway.

use std::time::{Duration, Instant};

use bbb_gateway::bbb::ChecksumAlgorithm;
use bbb_gateway::client::{Closed, WsClient};
use serde_json::{json, Value};

use crate::fleet::{add_sim, control};
use crate::helpers::*;
use crate::raw_ws::RawWs;

const WAIT: Duration = Duration::from_secs(10);

async fn app() -> TestApp {
    let app = spawn_app().await;
    app.import_world(&sample_world("w")).await;
    app
}

async fn connect(app: &TestApp, world: &str) -> WsClient {
    WsClient::connect(&format!("ws://127.0.0.1:{}/ws/world/{world}/", app.port))
        .await
        .expect("connects")
}

/// Connects and authenticates the way the frontend does: `["authenticate", {token}]`, two
/// elements, no id.
async fn login(app: &TestApp, uid: &str, traits: &[&str], name: Option<&str>) -> (WsClient, Value) {
    let mut c = connect(app, "w").await;
    let reply = c
        .authenticate(json!({ "token": token_for(uid, traits, name) }), WAIT)
        .await
        .expect("an answer");
    assert_eq!(reply[0], "authenticated", "{reply}");
    (c, reply[1].clone())
}

async fn send_and_read(c: &mut WsClient, frame: &str) -> Value {
    c.send_text(frame).await.expect("send");
    c.recv_within(WAIT).await.expect("a reply")
}

/// The frontend matches replies to its pending calls by the id it sent (`api.call` uses
/// increasing integers); any request it sends must come back with that id, success or error,
/// or the call hangs until its 15 s timeout. Requests without an id get replies without one.
#[actix_web::test]
async fn every_request_shape_gets_its_id_back() {
    let app = app().await;
    let (mut c, _) = login(&app, "ids", &[], Some("Ids")).await;
    for (frame, reply) in [
        (
            r#"["user.update", 7, {"profile": {"display_name": "I"}}]"#,
            json!(["success", 7, {}]),
        ),
        (
            r#"["user.update", "req-8", {"profile": {"display_name": "I"}}]"#,
            json!(["success", "req-8", {}]),
        ),
        (
            r#"["room.enter", 1700000000123, {"room": "room_1"}]"#,
            json!(["success", 1700000000123u64, {}]),
        ),
        (
            r#"["room.enter", 9, {"room": "nope"}]"#,
            json!(["error", 9, {"code": "room.unknown"}]),
        ),
        (
            r#"["chat.send", 10, {}]"#,
            json!(["error", 10, {"code": "protocol.unknown_command"}]),
        ),
        (
            r#"["bbb.nope", "x", {}]"#,
            json!(["error", "x", {"code": "bbb.unsupported_command"}]),
        ),
        (
            r#"["room.enter", {"room": "room_1"}]"#,
            json!(["success", {}]),
        ),
        (
            r#"["ping", 1700000000123]"#,
            json!(["pong", 1700000000123u64]),
        ),
    ] {
        assert_eq!(send_and_read(&mut c, frame).await, reply, "{frame}");
    }
    // Malformed requests too: the id comes back whenever the frame has one.
    for (frame, id) in [
        (r#"["bbb.room_url", 11, "not an object"]"#, json!(11)),
        (r#"["bbb.room_url", "s-12", [1, 2]]"#, json!("s-12")),
        (r#"[null, 13, {}]"#, json!(13)),
        (r#"["bbb.room_url", 14, {}, "extra"]"#, json!(14)),
    ] {
        let reply = send_and_read(&mut c, frame).await;
        assert_eq!(reply[0], "error", "{frame}");
        assert_eq!(reply[1], id, "{frame}");
        assert_eq!(reply[2]["code"], "protocol.invalid_message", "{frame}");
    }
    let reply = send_and_read(&mut c, "not json").await;
    assert_eq!(reply.as_array().map(Vec::len), Some(2), "{reply}");
    assert_eq!(reply[1]["code"], "protocol.invalid_message");
}

/// `api.call(name)` without data sends `[name, id, null]`; the gateway treats the null as `{}`
/// and answers the command, instead of refusing the frame (which left the call hanging).
#[actix_web::test]
async fn null_payloads_are_empty_objects() {
    let app = app().await;
    let (mut c, _) = login(&app, "nulls", &[], Some("N")).await;
    for (frame, reply) in [
        (
            r#"["room.enter", 3, null]"#,
            json!(["error", 3, {"code": "room.unknown"}]),
        ),
        (
            r#"["bbb.room_url", 4, null]"#,
            json!(["error", 4, {"code": "room.unknown"}]),
        ),
        (r#"["user.update", 5, null]"#, json!(["success", 5, {}])),
        (r#"["ping", null]"#, json!(["pong", null])),
    ] {
        assert_eq!(send_and_read(&mut c, frame).await, reply, "{frame}");
    }
}

fn assert_type(v: &Value, path: &str, check: fn(&Value) -> bool, kind: &str) {
    let mut cur = v;
    for key in path.split('/') {
        cur = &cur[key];
    }
    assert!(check(cur), "{path} should be {kind}: {cur}");
}

/// The store's `authenticated` handler reads every one of these keys unconditionally (user,
/// world, permissions, rooms, chat channels and pointers, exhibition data, announcements) and
/// stops, without rooms or video, when one is missing or of another type.
#[actix_web::test]
async fn authenticated_carries_every_key_the_store_reads() {
    let app = app().await;
    let (_c, p) = login(&app, "keys", &[], Some("Keys")).await;
    let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = vec![
        "announcements",
        "chat.channels",
        "chat.notification_counts",
        "chat.read_pointers",
        "exhibition",
        "user.config",
        "world.config",
    ];
    let mut keys = keys;
    keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    for (path, check, kind) in [
        (
            "user.config/id",
            Value::is_string as fn(&Value) -> bool,
            "a string",
        ),
        ("user.config/profile", Value::is_object, "an object"),
        ("user.config/traits", Value::is_array, "a list"),
        ("world.config/world/id", Value::is_string, "a string"),
        ("world.config/world/title", Value::is_string, "a string"),
        ("world.config/permissions", Value::is_array, "a list"),
        ("world.config/rooms", Value::is_array, "a list"),
        ("chat.channels", Value::is_array, "a list"),
        ("chat.read_pointers", Value::is_object, "an object"),
        ("chat.notification_counts", Value::is_object, "an object"),
        ("exhibition/exhibitors", Value::is_array, "a list"),
        ("exhibition/contact_requests", Value::is_array, "a list"),
        ("announcements", Value::is_array, "a list"),
    ] {
        assert_type(&p, path, check, kind);
    }
    for room in p["world.config"]["rooms"].as_array().unwrap() {
        assert!(room["id"].is_string() && room["name"].is_string(), "{room}");
        assert!(room["permissions"].is_array(), "{room}");
        for m in room["modules"].as_array().unwrap() {
            assert!(m["type"].is_string() && m["config"].is_object(), "{m}");
        }
    }
    assert!(p["world.config"]["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .all(Value::is_string));
}

/// The greeting prompt stores `display_name`, `greeted`, an `avatar` and profile `fields`; the
/// app shows the greeting again, and unmounts the video call, whenever `greeted` is missing
/// from the profile after a reconnect. So the profile comes back exactly as stored, and a later
/// `user.update` replaces it whole.
#[actix_web::test]
async fn the_profile_comes_back_whole_after_a_reconnect() {
    let app = app().await;
    let (mut c, first) = login(&app, "greta", &[], Some("Greta")).await;
    assert_eq!(
        first["user.config"]["profile"],
        json!({"display_name": "Greta"})
    );
    let profile = json!({
        "display_name": "Greta G.",
        "greeted": true,
        "avatar": {"identicon": "4f2a"},
        "fields": {"company": "ACME", "links": [{"url": "https://x.example", "label": "x"}]}
    });
    let reply = c
        .request("user.update", json!(1), json!({ "profile": profile }), WAIT)
        .await
        .unwrap();
    assert_eq!(reply, json!(["success", 1, {}]));
    c.close().await;

    // Reconnecting with the same token keeps everything, the name the user chose included
    // (the token's claim, unchanged since the last login, is not laid over it again).
    let (mut c, again) = login(&app, "greta", &[], Some("Greta")).await;
    assert_eq!(again["user.config"]["profile"], profile);
    assert_eq!(again["user.config"]["id"], first["user.config"]["id"]);

    let replaced = json!({"display_name": "Greta G.", "greeted": true});
    let reply = c
        .request(
            "user.update",
            json!(2),
            json!({ "profile": replaced }),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(reply, json!(["success", 2, {}]));
    c.close().await;
    // A token without a profile claim leaves the stored profile alone; one whose claim
    // changed updates the keys it changed.
    let mut c = connect(&app, "w").await;
    let again = c
        .authenticate(json!({ "token": token_for("greta", &[], None) }), WAIT)
        .await
        .unwrap();
    assert_eq!(again[1]["user.config"]["profile"], replaced);
    let (_renamed, renamed) = login(&app, "greta", &[], Some("Greta Garbo")).await;
    assert_eq!(
        renamed["user.config"]["profile"],
        json!({"display_name": "Greta Garbo", "greeted": true})
    );

    // Too large or not an object: refused, with the id, and nothing changes.
    let huge = json!({"display_name": "G", "fields": {"bio": "x".repeat(9000)}});
    for (id, bad) in [
        (3, huge),
        (4, json!("a string")),
        (5, json!({"display_name": 7})),
    ] {
        let reply = c
            .request("user.update", json!(id), json!({ "profile": bad }), WAIT)
            .await
            .unwrap();
        assert_eq!(reply[1], id);
        assert_eq!(reply[2]["code"], "protocol.invalid_message", "{reply}");
    }
    c.close().await;
    let (_c, again) = login(&app, "greta", &[], None).await;
    assert_eq!(
        again["user.config"]["profile"],
        json!({"display_name": "Greta Garbo", "greeted": true})
    );
}

/// The store sends `room.enter` for every room with a stream or call it shows (and the media
/// source sends `room.leave` when it goes); a refusal stops the room's questions and polls.
/// Entering needs `room:view`; leaving only a room that exists.
#[actix_web::test]
async fn rooms_are_entered_and_left_with_the_room_checks() {
    let app = app().await;
    let (mut c, _) = login(&app, "visitor", &[], Some("V")).await;
    for (i, (action, room, reply)) in [
        ("room.enter", "room_1", json!({})),
        ("room.enter", "stage", json!({})),
        (
            "room.enter",
            "backstage",
            json!({"code": "protocol.denied"}),
        ),
        ("room.enter", "nope", json!({"code": "room.unknown"})),
        ("room.leave", "room_1", json!({})),
        ("room.leave", "backstage", json!({})),
        ("room.leave", "nope", json!({"code": "room.unknown"})),
    ]
    .into_iter()
    .enumerate()
    {
        let got = c
            .request(action, json!(i), json!({ "room": room }), WAIT)
            .await
            .unwrap();
        let kind = if reply.get("code").is_some() {
            "error"
        } else {
            "success"
        };
        assert_eq!(got, json!([kind, i, reply]), "{action} {room}");
    }
    let (mut speaker, _) = login(&app, "speaker", &["speaker"], Some("S")).await;
    let got = speaker
        .request("room.enter", json!(1), json!({"room": "backstage"}), WAIT)
        .await
        .unwrap();
    assert_eq!(got, json!(["success", 1, {}]));
}

/// The store treats these error codes as fatal: it shows the error and stops reconnecting.
/// They answer `authenticate` (sent without an id), so they come as `["error", {"code"}]`,
/// which the client hands to the store's error handler.
#[actix_web::test]
async fn fatal_errors_come_without_an_id() {
    let app = app().await;
    let mut closed_world = sample_world("closed");
    closed_world["roles"] = json!({"attendee": []});
    app.import_world(&closed_world).await;
    let expired = {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({"iss": "any", "aud": "venueless", "uid": "late",
            "iat": now - 7200, "exp": now - 3600, "traits": []});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(WORLD_SECRET.as_bytes()),
        )
        .unwrap()
    };
    // A banned user: logged in once, then banned.
    let (_b, banned) = login(&app, "banned", &[], Some("B")).await;
    let banned_id = banned["user.config"]["id"].as_str().unwrap().to_owned();
    app.state
        .db
        .run(move |c| {
            bbb_gateway::db::users::set_moderation(
                c,
                &banned_id,
                bbb_gateway::permissions::Moderation::Banned,
            )
        })
        .await
        .unwrap();
    for (world, payload, code) in [
        ("w", json!({}), "auth.missing_id_or_token"),
        ("w", json!({"token": "not.a.jwt"}), "auth.invalid_token"),
        ("w", json!({ "token": expired }), "auth.expired_token"),
        (
            "w",
            json!({"token": token_for("banned", &[], None)}),
            "auth.denied",
        ),
        (
            "closed",
            json!({"token": token_for("x", &[], None)}),
            "auth.denied",
        ),
        (
            "closed",
            json!({"client_id": "anon-1"}),
            "auth.missing_token",
        ),
    ] {
        let mut c = connect(&app, world).await;
        let reply = c.authenticate(payload.clone(), WAIT).await.unwrap();
        assert_eq!(reply, json!(["error", {"code": code}]), "{world} {payload}");
    }
    // An unknown world is reported on connect, then the socket is closed normally.
    let mut c = connect(&app, "no-such-world").await;
    assert_eq!(
        c.recv_within(WAIT).await.unwrap(),
        json!(["error", {"code": "world.unknown_world"}])
    );
    assert_eq!(c.recv_within(WAIT).await, Err(Closed::Code(Some(1000))));
}

/// On shutdown every session gets close code 1001 ("going away") at once, so the frontend
/// reconnects (to another instance) right away instead of showing its firewall hint after a
/// dropped connection; a call still waiting for BBB is answered `bbb.failed` first, so its
/// promise rejects instead of timing out. The process side is done within 10 s.
#[actix_web::test]
async fn shutdown_closes_every_session_with_1001() {
    let app = app().await;
    let (sim, _) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    control(sim.port(), "/sim/fault", json!({"mode": "hang"})).await;
    let (mut joining, _) = login(&app, "joining", &[], Some("J")).await;
    let (mut idle, _) = login(&app, "idle", &[], Some("I")).await;
    let mut anonymous = connect(&app, "w").await;
    joining
        .send(&json!(["bbb.room_url", 5, {"room": "room_1"}]))
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while app.state.bbb_in_flight.count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the join never reached the coordinator"
        );
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }

    let started = Instant::now();
    let shutting_down = app.shut_down();
    let observing = async {
        let first = joining
            .recv_within(WAIT)
            .await
            .expect("the join is answered");
        assert_eq!(
            (&first[0], &first[1]),
            (&json!("error"), &json!(5)),
            "{first}"
        );
        assert_eq!(first[2]["code"], "bbb.failed");
        assert_eq!(
            joining.recv_within(WAIT).await,
            Err(Closed::Code(Some(1001)))
        );
        assert_eq!(idle.recv_within(WAIT).await, Err(Closed::Code(Some(1001))));
        assert_eq!(
            anonymous.recv_within(WAIT).await,
            Err(Closed::Code(Some(1001)))
        );
        started.elapsed()
    };
    let ((), closed_after) = tokio::join!(shutting_down, observing);
    let done_after = started.elapsed();
    eprintln!("sessions closed after {closed_after:?}, shutdown done after {done_after:?}");
    assert!(closed_after < Duration::from_secs(5), "{closed_after:?}");
    assert!(done_after < Duration::from_secs(10), "{done_after:?}");
    assert_eq!(
        app.state.bbb_in_flight.count(),
        0,
        "the coordinator finished the join"
    );
    assert!(
        WsClient::connect(&format!("ws://127.0.0.1:{}/ws/world/w/", app.port))
            .await
            .is_err(),
        "no new connections after shutdown"
    );
}

/// A client sending many invalid frames is closed with 1008, one sending a frame over 64 KiB
/// with 1009; the frontend reconnects after either.
#[actix_web::test]
async fn floods_close_with_1008_and_oversized_frames_with_1009() {
    let app = app().await;
    let (mut flood, _) = login(&app, "flood", &[], Some("F")).await;
    let mut end = None;
    for i in 0..40 {
        if flood.send_text(&format!("[{i}")).await.is_err() {
            break;
        }
    }
    for _ in 0..40 {
        match flood.recv_within(WAIT).await {
            Ok(reply) => assert_eq!(reply[1]["code"], "protocol.invalid_message"),
            Err(e) => {
                end = Some(e);
                break;
            }
        }
    }
    assert_eq!(end, Some(Closed::Code(Some(1008))));

    let (mut big, _) = login(&app, "big", &[], Some("B")).await;
    let frame = format!(r#"["ping", "{}"]"#, "x".repeat(70 * 1024));
    let _ = big.send_text(&frame).await;
    assert_eq!(big.recv_within(WAIT).await, Err(Closed::Code(Some(1009))));
}

/// Clients following RFC 6455 wait for the server to close the TCP connection after the
/// closing handshake; a browser only reports the socket closed (and the frontend only
/// reconnects) once that happened. The server closes it right after answering the close frame
/// (best of three tries under 500 ms; waiting for the client instead takes a second every time).
#[actix_web::test]
async fn the_server_closes_tcp_right_after_the_closing_handshake() {
    let app = app().await;
    let mut times = Vec::new();
    for _ in 0..3 {
        let mut c = RawWs::connect(app.port, "/ws/world/w/").await;
        c.send_close(1000).await;
        let took = c
            .wait_for_eof(WAIT)
            .await
            .expect("the server closes the connection");
        assert_eq!(c.close_code(), Some(1000), "the close frame is answered");
        times.push(took);
        if took < Duration::from_millis(500) {
            break;
        }
    }
    eprintln!("EOF after the closing handshake: {times:?}");
    assert!(
        times.iter().any(|t| *t < Duration::from_millis(500)),
        "the server waited for the client to close first: {times:?}"
    );

    // When the server closes (here: shutdown), it closes TCP as soon as the client answered.
    let mut c = RawWs::connect(app.port, "/ws/world/w/").await;
    let shutting_down = app.shut_down();
    let client = async {
        let deadline = Instant::now() + WAIT;
        while c.close_code().is_none() {
            assert!(Instant::now() < deadline, "no close frame");
            let _ = c.wait_for_eof(Duration::from_millis(20)).await;
        }
        assert_eq!(c.close_code(), Some(1001));
        c.send_close(1001).await;
        c.wait_for_eof(WAIT).await
    };
    let ((), eof) = tokio::join!(shutting_down, client);
    let eof = eof.expect("the server closes the connection");
    eprintln!("EOF after answering the server's close frame: {eof:?}");
}
