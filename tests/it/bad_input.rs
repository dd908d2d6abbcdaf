//! Bad input against the real gateway: a proptest run over the frame parser, random payloads
//! for every action through a live session (exactly one well-formed reply each), invalid UTF-8,
//! a flood of invalid frames, hostile JWTs and hostile ids. After each, another session still
//! gets answers and nothing leaks the world's JWT secret.

use std::time::Duration;

use bbb_gateway::client::{Closed, WsClient as RawClient};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use bbb_gateway::config::SessionConfig;

use crate::helpers::{spawn_app_with, TestApp, WORLD_SECRET};
use crate::multi_instance::world;

const WAIT: Duration = Duration::from_secs(10);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_frame_parser_never_panics_on_any_text(text in ".{0,200}") {
        let _ = bbb_gateway::protocol::parse_frame(&text);
    }

    #[test]
    fn parsed_frames_are_well_formed(
        action in "[a-z.]{0,12}",
        id in prop_oneof![Just(None), any::<i64>().prop_map(|i| Some(json!(i))), "[ -~]{0,8}".prop_map(|s| Some(json!(s)))],
        payload in prop_oneof![Just(json!(null)), any::<bool>().prop_map(|b| json!(b)), "[ -~]{0,16}".prop_map(|s| json!({ "room": s })), Just(json!([1, 2]))],
    ) {
        let frame = match &id {
            Some(id) => json!([action, id, payload]),
            None => json!([action, payload]),
        };
        if let Ok(r) = bbb_gateway::protocol::parse_frame(&frame.to_string()) {
            prop_assert_eq!(&r.action, &action);
            prop_assert_eq!(&r.id, &id);
            prop_assert!(r.payload.is_object() || r.action == "ping");
        }
    }
}

/// A random JSON value of bounded depth, with strings that include hostile characters.
fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    let hostile = [
        "'; DROP TABLE meetings; --",
        "../../etc/passwd",
        "\u{0}",
        "r0",
        "é💥",
        "",
    ];
    match rng.gen_range(0..if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>()),
        4 => json!(hostile[rng.gen_range(0..hostile.len())]),
        5 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => random_object(rng, depth - 1),
    }
}

fn random_object(rng: &mut StdRng, depth: u32) -> Value {
    let keys = [
        "room",
        "call",
        "token",
        "client_id",
        "profile",
        "display_name",
        "x",
    ];
    let mut m = serde_json::Map::new();
    for _ in 0..rng.gen_range(0..4) {
        m.insert(
            keys[rng.gen_range(0..keys.len())].into(),
            random_value(rng, depth),
        );
    }
    Value::Object(m)
}

async fn ws(app: &TestApp, world: &str) -> RawClient {
    RawClient::connect(&format!("ws://127.0.0.1:{}/ws/world/{world}/", app.port))
        .await
        .unwrap()
}

/// A session that still answers a ping.
async fn assert_answers(c: &mut RawClient) {
    c.send(&json!(["ping", "still-there"])).await.unwrap();
    assert_eq!(
        c.recv_within(WAIT).await.unwrap(),
        json!(["pong", "still-there"])
    );
}

/// The gateway with the world `multi`. These tests send many frames fast on purpose, so the
/// frame rate limit (tested in `abuse`) is out of their way.
async fn app() -> TestApp {
    let app = spawn_app_with(
        |s| {
            s.limits.frames_per_sec = 100_000;
            s.limits.frames_burst = 100_000;
        },
        SessionConfig::default(),
    )
    .await;
    app.import_world(&world(2)).await;
    app
}

#[actix_web::test]
async fn random_payloads_for_every_action_get_exactly_one_reply() {
    let app = app().await;
    let actions = [
        "ping",
        "authenticate",
        "user.update",
        "bbb.room_url",
        "bbb.call_url",
        "bbb.recordings",
        "bbb.nope",
        "foo.bar",
        "",
    ];
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..4 {
        let mut c = ws(&app, "multi").await;
        if round % 2 == 1 {
            let token = crate::helpers::token_for("fuzzer", &[], Some("Fuzz"));
            let auth = c
                .authenticate(json!({ "token": token }), WAIT)
                .await
                .unwrap();
            assert_eq!(auth[0], "authenticated");
        }
        for i in 0..100 {
            let action = actions[rng.gen_range(0..actions.len())];
            let payload = random_object(&mut rng, 3);
            c.send(&json!([action, i, payload])).await.unwrap();
            let reply = c.recv_within(WAIT).await.unwrap();
            assert!(
                matches!(
                    reply[0].as_str(),
                    Some("success" | "error" | "pong" | "authenticated")
                ),
                "{action}: {reply}"
            );
            assert!(!reply.to_string().contains(WORLD_SECRET));
            // Exactly one reply: the next frame answers the next request.
            assert_answers(&mut c).await;
        }
    }
}

/// Sends one masked WebSocket text frame with `payload` (not necessarily UTF-8) over a raw
/// connection, after a hand-made upgrade.
async fn raw_text_frame(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = "GET /ws/world/multi/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n";
    s.write_all(req.as_bytes()).await.unwrap();
    let mut frame = vec![
        0x81,
        0x80 | u8::try_from(payload.len()).unwrap(),
        1,
        2,
        3,
        4,
    ];
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
    );
    s.write_all(&frame).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    out
}

#[actix_web::test]
async fn invalid_utf8_and_floods_do_not_affect_others() {
    let app = app().await;
    let mut bystander = ws(&app, "multi").await;
    let answer = raw_text_frame(app.port, &[0xff, 0xfe, b'[', 0xc3]).await;
    assert!(answer.starts_with(b"HTTP/1.1 101"), "upgraded, then closed");
    assert_answers(&mut bystander).await;

    // 1,000 invalid frames from one client: it is closed (1008), others keep being answered.
    let mut flood = ws(&app, "multi").await;
    let flooding = async {
        for i in 0..1000 {
            let frame = if i % 2 == 0 {
                "not json".to_string()
            } else {
                format!("[{i}]")
            };
            if flood.send_text(&frame).await.is_err() {
                break;
            }
        }
        loop {
            match flood.recv_within(WAIT).await {
                Ok(_) => continue,
                Err(end) => break end,
            }
        }
    };
    let answering = async {
        for _ in 0..20 {
            assert_answers(&mut bystander).await;
        }
    };
    let (end, ()) = tokio::join!(flooding, answering);
    assert!(
        matches!(end, Closed::Code(Some(1008)) | Closed::Eof),
        "{end:?}"
    );
    assert_answers(&mut bystander).await;
}

fn b64(bytes: &[u8]) -> String {
    use std::fmt::Write;
    // base64url without padding, enough for tokens in tests.
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            let _ = write!(out, "{}", A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn sign(claims: &Value, key: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

#[actix_web::test]
async fn hostile_tokens_are_refused_without_leaking_the_secret() {
    let app = app().await;
    let now = chrono::Utc::now().timestamp();
    let claims = |aud: &str, exp: i64| json!({"iss": "any", "aud": aud, "exp": exp, "iat": now, "uid": "mallory", "traits": []});
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims("venueless", now + 600).to_string().as_bytes())
    );
    let huge = sign(
        &json!({"iss": "any", "aud": "venueless", "exp": now + 600, "uid": "m",
                "traits": vec!["t".repeat(100); 400]}),
        WORLD_SECRET,
    );
    let cases = [
        ("alg none", none, "auth.invalid_token"),
        (
            "wrong key",
            sign(
                &claims("venueless", now + 600),
                "another-secret-key-0123456789",
            ),
            "auth.invalid_token",
        ),
        (
            "wrong audience",
            sign(&claims("elsewhere", now + 600), WORLD_SECRET),
            "auth.invalid_token",
        ),
        (
            "expired",
            sign(&claims("venueless", now - 3600), WORLD_SECRET),
            "auth.expired_token",
        ),
        ("huge", huge, "auth.invalid_token"),
        (
            "not valid before an hour from now (nbf)",
            sign(
                &json!({"iss": "any", "aud": "venueless", "exp": now + 7200, "nbf": now + 3600,
                        "uid": "early", "traits": []}),
                WORLD_SECRET,
            ),
            "auth.invalid_token",
        ),
    ];
    let mut bystander = ws(&app, "multi").await;
    for (what, token, expected) in cases {
        let mut c = ws(&app, "multi").await;
        match c.authenticate(json!({ "token": token }), WAIT).await {
            Ok(reply) => {
                assert_eq!(reply[0], "error", "{what}: {reply}");
                assert_eq!(reply[1]["code"], expected, "{what}: {reply}");
                assert!(!reply.to_string().contains(WORLD_SECRET), "{what}");
            }
            // Over 64 KiB: closed with 1009 before any parsing.
            Err(end) => assert_eq!(end, Closed::Code(Some(1009)), "{what}"),
        }
        assert_answers(&mut bystander).await;
    }
}

#[actix_web::test]
async fn a_not_before_within_the_clock_leeway_is_accepted() {
    let app = app().await;
    let now = chrono::Utc::now().timestamp();
    for nbf in [now - 3600, now, now + 10] {
        let token = sign(
            &json!({"iss": "any", "aud": "venueless", "exp": now + 600, "nbf": nbf,
                    "uid": "clock-skew", "traits": []}),
            WORLD_SECRET,
        );
        let mut c = ws(&app, "multi").await;
        let reply = c
            .authenticate(json!({ "token": token }), WAIT)
            .await
            .unwrap();
        assert_eq!(reply[0], "authenticated", "nbf {}: {reply}", nbf - now);
    }
}

#[actix_web::test]
async fn hostile_ids_in_rooms_calls_and_world_urls_are_refused_cleanly() {
    let app = app().await;
    let long = "x".repeat(10 * 1024);
    let ids = [
        "'; DROP TABLE meetings; --",
        "r0' OR '1'='1",
        "../../etc/passwd",
        "a/b\\c",
        "%00",
        long.as_str(),
    ];
    let mut c = ws(&app, "multi").await;
    let token = crate::helpers::token_for("eve", &[], Some("Eve"));
    c.authenticate(json!({ "token": token }), WAIT)
        .await
        .unwrap();
    for (i, id) in ids.iter().enumerate() {
        for (action, field) in [
            ("bbb.room_url", "room"),
            ("bbb.call_url", "call"),
            ("bbb.recordings", "room"),
        ] {
            let r = c
                .request(action, json!(i), json!({ field: id }), WAIT)
                .await
                .unwrap();
            assert_eq!(r[0], "error", "{action} {}: {r}", &id[..id.len().min(30)]);
            assert!(
                matches!(
                    r[2]["code"].as_str(),
                    Some("room.unknown" | "protocol.denied")
                ),
                "{r}"
            );
        }
    }
    for world in [
        "%27%3B%20DROP%20TABLE%20worlds%3B--",
        "..%2F..%2Fetc",
        long.as_str(),
    ] {
        let url = format!("ws://127.0.0.1:{}/ws/world/{world}/", app.port);
        // Either refused at the HTTP level (too long) or told the world is unknown.
        if let Ok(mut w) = RawClient::connect(&url).await {
            let r = w.recv_within(WAIT).await.unwrap();
            assert_eq!(r, json!(["error", {"code": "world.unknown_world"}]));
        }
    }
    // The tables are all still there and the session still works.
    assert_answers(&mut c).await;
    let r = c
        .request("bbb.room_url", json!(99), json!({"room": "r0"}), WAIT)
        .await
        .unwrap();
    assert_eq!(r[2]["code"], "bbb.failed", "no server registered: {r}");
    let health = awc::Client::default()
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
