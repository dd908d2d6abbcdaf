//! Actor tests of [`WsSession`]: a session behind a bare HTTP server (only the WebSocket and
//! health routes), a world held in memory, and a coordinator without any BBB server. Every
//! frame rule of PROTOCOL.md, every authentication error, and the per-connection limits.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;
use actix_web::{web, App, HttpServer};
use futures_util::future::LocalBoxFuture;
use serde_json::{json, Value};

use crate::bbb::{
    BbbApi, BbbError, CreateMeeting, CreateResponse, MeetingInfo, Recording, ServerEndpoint,
};
use crate::client::{Closed, WsClient};
use crate::config::{SessionConfig, Settings};
use crate::coordinator::{BbbCoordinator, CoordinatorSettings};
use crate::db::testing::TestDb;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::world::{import_world, parse_world_file, JwtSecret, WorldCache};

const SECRET: &str = "session-test-secret-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(10);

/// A BBB backend that is never reachable; the coordinator has no server to use anyway.
struct NoBbb;

fn down<T: 'static>() -> LocalBoxFuture<'static, Result<T, BbbError>> {
    Box::pin(async { Err(BbbError::Connect("no BBB in session tests".into())) })
}

impl BbbApi for NoBbb {
    fn create(
        &self,
        _: &ServerEndpoint,
        _: &CreateMeeting,
    ) -> LocalBoxFuture<'static, Result<CreateResponse, BbbError>> {
        down()
    }
    fn get_meetings(
        &self,
        _: &ServerEndpoint,
    ) -> LocalBoxFuture<'static, Result<Vec<MeetingInfo>, BbbError>> {
        down()
    }
    fn get_meeting_info(
        &self,
        _: &ServerEndpoint,
        _: &str,
    ) -> LocalBoxFuture<'static, Result<Option<MeetingInfo>, BbbError>> {
        down()
    }
    fn is_meeting_running(
        &self,
        _: &ServerEndpoint,
        _: &str,
    ) -> LocalBoxFuture<'static, Result<bool, BbbError>> {
        down()
    }
    fn end(&self, _: &ServerEndpoint, _: &str) -> LocalBoxFuture<'static, Result<(), BbbError>> {
        down()
    }
    fn get_recordings(
        &self,
        _: &ServerEndpoint,
        _: &[String],
    ) -> LocalBoxFuture<'static, Result<Vec<Recording>, BbbError>> {
        down()
    }
}

/// A running session endpoint; the temp database lives as long as it.
struct Harness {
    port: u16,
    /// What the coordinator publishes; tests publish meetings here directly.
    joins: Arc<crate::join::JoinTable>,
    _db: TestDb,
}

async fn harness(session: SessionConfig) -> Harness {
    harness_with_rooms(session, 0).await
}

/// The harness with `extra` more rooms (`extra-0`, …) everyone may view.
async fn harness_with_rooms(session: SessionConfig, extra: usize) -> Harness {
    let t = TestDb::sqlite().expect("sqlite");
    let mut rooms = vec![
        json!({"id": "r", "name": "R", "trait_grants": {"participant": []},
                       "modules": [{"type": "call.bigbluebutton", "config": {}}]}),
    ];
    for i in 0..extra {
        rooms.push(
            json!({"id": format!("extra-{i}"), "name": format!("Extra room “{i}”"),
                          "trait_grants": {"participant": []},
                          "modules": [{"type": "call.bigbluebutton", "config": {}}]}),
        );
    }
    let file = parse_world_file(
        &json!({
            "id": "w", "title": "W",
            "jwt_secrets": [{"issuer": "i", "audience": "a", "secret": SECRET}],
            "roles": {"attendee": ["world:view"]},
            "trait_grants": {"attendee": ["member"]},
            "rooms": rooms,
        })
        .to_string(),
    )
    .expect("world");
    let db = t.db.clone();
    db.run(move |c| import_world(c, &file))
        .await
        .expect("import");
    let worlds = WorldCache::new(db.clone());
    worlds.refresh().await.expect("refresh");
    let settings = Settings::load_with_env(None, Vec::new()).expect("defaults");
    let joins = Arc::new(crate::join::JoinTable::default());
    let coordinator = BbbCoordinator::new(
        db.clone(),
        Rc::new(NoBbb),
        CoordinatorSettings {
            poll_interval: Duration::from_secs(3600),
            unhealthy_after: 2,
            healthy_after: 1,
            create_retry_servers: 1,
            request_timeout: Duration::from_secs(1),
            confirm_ttl: Duration::from_secs(2),
            join_deadline: Duration::from_secs(10),
            end_callbacks: None,
            lease: Duration::from_secs(10),
            instance: "session-test".into(),
            retention_days: 30,
            placement_overflow: Default::default(),
        },
        joins.clone(),
    )
    .start();
    let ip_limits = AppState::ip_limits_for(&settings);
    let state = web::Data::new(AppState {
        settings,
        db,
        worlds,
        coordinator,
        joins: joins.clone(),
        end_callback_key: crate::end_callback::EndCallbackKey::from_bytes([1; 32]),
        session,
        sessions: Arc::default(),
        bbb_in_flight: Arc::default(),
        metrics: Arc::new(Metrics::new()),
        ip_limits,
        started_at: Instant::now(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(crate::http::routes)
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    Harness {
        port,
        joins,
        _db: t,
    }
}

impl Harness {
    async fn connect(&self, world: &str) -> WsClient {
        WsClient::connect(&format!("ws://127.0.0.1:{}/ws/world/{world}/", self.port))
            .await
            .expect("connect")
    }

    /// A session authenticated as `uid` with the `member` trait.
    async fn member(&self, uid: &str) -> WsClient {
        let mut c = self.connect("w").await;
        let reply = c
            .authenticate(json!({"token": token(uid, &["member"])}), WAIT)
            .await
            .unwrap();
        assert_eq!(reply[0], "authenticated", "{reply}");
        c
    }
}

fn secret(value: &str, audience: &str) -> JwtSecret {
    JwtSecret {
        issuer: "i".into(),
        audience: audience.into(),
        secret: value.into(),
    }
}

fn token(uid: &str, traits: &[&str]) -> String {
    let traits: Vec<String> = traits.iter().map(|t| t.to_string()).collect();
    crate::auth::mint_token(&secret(SECRET, "a"), uid, &traits, None, 600).unwrap()
}

async fn next(c: &mut WsClient) -> Value {
    c.recv_within(WAIT).await.expect("a frame")
}

async fn ask(c: &mut WsClient, frame: Value) -> Value {
    c.send(&frame).await.unwrap();
    next(c).await
}

#[actix_web::test]
async fn unknown_world_is_reported_then_closed_normally() {
    let h = harness(SessionConfig::default()).await;
    for world in ["nope", "%27%3B--", "a%2Fb"] {
        let mut c = h.connect(world).await;
        assert_eq!(
            next(&mut c).await,
            json!(["error", {"code": "world.unknown_world"}])
        );
        assert_eq!(c.recv_within(WAIT).await, Err(Closed::Code(Some(1000))));
    }
}

#[actix_web::test]
async fn ping_answers_before_and_after_auth() {
    let h = harness(SessionConfig::default()).await;
    let mut c = h.connect("w").await;
    assert_eq!(ask(&mut c, json!(["ping", 42])).await, json!(["pong", 42]));
    assert_eq!(
        ask(&mut c, json!(["ping", {"t": 1}])).await,
        json!(["pong", {"t": 1}])
    );
    let mut c = h.member("m1").await;
    assert_eq!(
        ask(&mut c, json!(["ping", "x"])).await,
        json!(["pong", "x"])
    );
}

#[actix_web::test]
async fn everything_but_ping_and_authenticate_needs_auth() {
    let h = harness(SessionConfig::default()).await;
    let mut c = h.connect("w").await;
    for (frame, reply) in [
        (
            json!(["bbb.room_url", 1, {"room": "r"}]),
            json!(["error", 1, {"code": "protocol.unauthenticated"}]),
        ),
        (
            json!(["user.update", "a", {"profile": {}}]),
            json!(["error", "a", {"code": "protocol.unauthenticated"}]),
        ),
        (
            json!(["foo.bar", {}]),
            json!(["error", {"code": "protocol.unauthenticated"}]),
        ),
    ] {
        assert_eq!(ask(&mut c, frame).await, reply);
    }
}

#[actix_web::test]
async fn every_auth_error() {
    let h = harness(SessionConfig::default()).await;
    let mut c = h.connect("w").await;
    let code = |v: Value| v[1]["code"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        code(ask(&mut c, json!(["authenticate", {}])).await),
        "auth.missing_id_or_token"
    );
    assert_eq!(
        code(ask(&mut c, json!(["authenticate", {"token": ""}])).await),
        "auth.missing_id_or_token"
    );
    assert_eq!(
        code(ask(&mut c, json!(["authenticate", {"token": "x.y.z"}])).await),
        "auth.invalid_token"
    );
    let wrong_key =
        crate::auth::mint_token(&secret("another-key-0123456789", "a"), "u", &[], None, 60)
            .unwrap();
    assert_eq!(
        code(ask(&mut c, json!(["authenticate", {"token": wrong_key}])).await),
        "auth.invalid_token"
    );
    let wrong_aud = crate::auth::mint_token(&secret(SECRET, "other"), "u", &[], None, 60).unwrap();
    assert_eq!(
        code(ask(&mut c, json!(["authenticate", {"token": wrong_aud}])).await),
        "auth.invalid_token"
    );
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": "i", "aud": "a", "uid": "u", "exp": chrono::Utc::now().timestamp() - 600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        code(ask(&mut c, json!(["authenticate", {"token": expired}])).await),
        "auth.expired_token"
    );
    // a valid token without the member trait has no world:view
    assert_eq!(
        code(ask(&mut c, json!(["authenticate", {"token": token("u", &[])}])).await),
        "auth.denied"
    );
    // an anonymous client id gets no trait, hence no world:view either
    assert_eq!(
        code(ask(&mut c, json!(["authenticate", {"client_id": "anon"}])).await),
        "auth.missing_token"
    );
    // errors are not final
    let ok = ask(
        &mut c,
        json!(["authenticate", {"token": token("u", &["member"])}]),
    )
    .await;
    assert_eq!(ok[0], "authenticated");
}

#[actix_web::test]
async fn banned_users_are_denied() {
    let h = harness(SessionConfig::default()).await;
    drop(h.member("bad").await);
    let db = h._db.db.clone();
    db.run(|c| {
        let user = crate::db::users::find_or_create_token_user(c, "w", "bad", &[], None)?;
        crate::db::users::set_moderation(c, &user.id, crate::permissions::Moderation::Banned)
    })
    .await
    .unwrap();
    let mut c = h.connect("w").await;
    let reply = ask(
        &mut c,
        json!(["authenticate", {"token": token("bad", &["member"])}]),
    )
    .await;
    assert_eq!(reply, json!(["error", {"code": "auth.denied"}]));
}

#[actix_web::test]
async fn command_routing_echoes_ids() {
    let h = harness(SessionConfig::default()).await;
    let mut c = h.member("m").await;
    assert_eq!(
        ask(&mut c, json!(["foo.bar", 5, {}])).await,
        json!(["error", 5, {"code": "protocol.unknown_command"}])
    );
    assert_eq!(
        ask(&mut c, json!(["bbb.bla", "id", {}])).await,
        json!(["error", "id", {"code": "bbb.unsupported_command"}])
    );
    assert_eq!(
        ask(&mut c, json!(["bbb.bla", {}])).await,
        json!(["error", {"code": "bbb.unsupported_command"}])
    );
    // forwarded to the coordinator, which has no server: bbb.failed, id echoed
    c.send(&json!(["user.update", 1, {"profile": {"display_name": "M"}}]))
        .await
        .unwrap();
    assert_eq!(next(&mut c).await, json!(["success", 1, {}]));
    let reply = ask(&mut c, json!(["bbb.room_url", 2.5, {"room": "r"}])).await;
    assert_eq!(
        (reply[0].clone(), reply[1].clone(), reply[2]["code"].clone()),
        (json!("error"), json!(2.5), json!("bbb.failed"))
    );
    assert_eq!(
        ask(&mut c, json!(["bbb.room_url", 3, {"room": "x"}])).await,
        json!(["error", 3, {"code": "room.unknown"}])
    );
}

#[actix_web::test]
async fn published_meetings_are_joined_by_the_session_itself() {
    let h = harness(SessionConfig {
        max_in_flight: 1,
        ..SessionConfig::default()
    })
    .await;
    let mut c = h.member("m").await;
    c.send(&json!(["user.update", 1, {"profile": {"display_name": "M"}}]))
        .await
        .unwrap();
    assert_eq!(next(&mut c).await, json!(["success", 1, {}]));
    let key = crate::ids::MeetingKey::room("w", "r");
    let publish = |expires_at: Instant| {
        let target = crate::join::JoinTarget {
            server: crate::ids::ServerId::new(1),
            endpoint: ServerEndpoint {
                base_url: "https://bbb.test/bigbluebutton".into(),
                secret: crate::bbb::Secret::new("s"),
                algorithm: crate::bbb::ChecksumAlgorithm::Sha256,
            },
            meeting_id: "mid".into(),
            attendee_pw: "ap".into(),
            moderator_pw: "mp".into(),
            create_time: Some(7),
        };
        h.joins.apply(vec![(
            key.clone(),
            Some(Arc::new(crate::join::Published::new(
                target, expires_at, expires_at,
            ))),
        )]);
    };
    publish(Instant::now() + Duration::from_secs(600));
    // More joins at once than the in-flight limit: none waits for the coordinator (which has
    // no server and would answer bbb.failed), so none is refused.
    for id in 0..5 {
        c.send(&json!(["bbb.room_url", id, {"room": "r"}]))
            .await
            .unwrap();
    }
    for id in 0..5 {
        let reply = next(&mut c).await;
        assert_eq!((&reply[0], &reply[1]), (&json!("success"), &json!(id)));
        let url = reply[2]["url"].as_str().expect("url");
        assert!(
            url.starts_with("https://bbb.test/bigbluebutton/api/join?"),
            "{url}"
        );
        assert!(
            url.contains("meetingID=mid") && url.contains("createTime=7"),
            "{url}"
        );
    }
    assert_eq!(h.joins.served(), 5);
    // Its confirmation expired: never answered from it; back to the coordinator, which
    // cannot create it.
    publish(Instant::now());
    let reply = ask(&mut c, json!(["bbb.room_url", 8, {"room": "r"}])).await;
    assert_eq!(reply[2]["code"], "bbb.failed");
    // Withdrawn: the same.
    h.joins.apply(vec![(key.clone(), None)]);
    let reply = ask(&mut c, json!(["bbb.room_url", 9, {"room": "r"}])).await;
    assert_eq!(reply[2]["code"], "bbb.failed");
    assert_eq!(h.joins.served(), 5);
}

#[actix_web::test]
async fn a_large_authenticated_frame_arrives_in_fragments_before_later_replies() {
    let h = harness_with_rooms(SessionConfig::default(), 120).await;
    // A raw socket, to see the frames themselves.
    let (_resp, mut raw) = awc::Client::new()
        .ws(format!("ws://127.0.0.1:{}/ws/world/w/", h.port))
        .connect()
        .await
        .expect("connect");
    use futures_util::{SinkExt, StreamExt};
    let auth = json!(["authenticate", {"token": token("m", &["member"])}]).to_string();
    raw.send(awc::ws::Message::Text(auth.into())).await.unwrap();
    // Sent at once: its answer must wait for the whole authenticated message.
    raw.send(awc::ws::Message::Text(r#"["ping", 7]"#.into()))
        .await
        .unwrap();
    let mut fragments = 0;
    let mut reassembler = crate::client::Reassembler::default();
    let authenticated = loop {
        let frame = tokio::time::timeout(WAIT, raw.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("a frame");
        match frame {
            awc::ws::Frame::Continuation(item) => {
                fragments += 1;
                let len = match &item {
                    actix_http::ws::Item::FirstText(b)
                    | actix_http::ws::Item::Continue(b)
                    | actix_http::ws::Item::Last(b) => b.len(),
                    actix_http::ws::Item::FirstBinary(_) => panic!("binary"),
                };
                assert!(len <= super::outbox::FRAGMENT_BYTES, "{len}");
                if let Some(whole) = reassembler.push(item) {
                    break whole;
                }
            }
            awc::ws::Frame::Ping(_) => {}
            other => panic!("expected fragments, got {other:?}"),
        }
    };
    assert!(fragments >= 3, "{fragments} fragments");
    let v: Value = serde_json::from_slice(&authenticated).expect("JSON");
    assert_eq!(v[0], "authenticated");
    assert_eq!(v[1]["world.config"]["rooms"].as_array().unwrap().len(), 121);
    let next = tokio::time::timeout(WAIT, raw.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next, awc::ws::Frame::Text(r#"["pong",7]"#.into()));
    // The protocol client puts it together too.
    let mut c = h.member("m2").await;
    assert_eq!(ask(&mut c, json!(["ping", 1])).await, json!(["pong", 1]));
}

#[actix_web::test]
async fn invalid_frames_get_an_error_and_the_session_lives_on() {
    let h = harness(SessionConfig::default()).await;
    let mut c = h.member("m").await;
    for (bad, id) in [
        ("not json", None),
        ("{\"a\": 1}", None),
        ("[1, 2, 3]", Some(json!(2))),
        ("[\"x\", 1, []]", Some(json!(1))),
        ("[\"x\", \"s\", 7]", Some(json!("s"))),
        ("[]", None),
        ("[\"x\"]", None),
        ("[\"x\", {}, {}]", None),
        ("[\"x\", [1], {}]", None),
        ("\"str\"", None),
        ("null", None),
    ] {
        c.send_text(bad).await.unwrap();
        let reply = next(&mut c).await;
        assert_eq!(reply[0], "error", "{bad}");
        let payload = match &id {
            Some(id) => {
                assert_eq!(&reply[1], id, "{bad}");
                &reply[2]
            }
            None => &reply[1],
        };
        assert_eq!(payload["code"], "protocol.invalid_message", "{bad}");
        assert!(payload["message"].is_string(), "{bad}");
    }
    c.send_binary(b"\x00\xff").await.unwrap();
    assert_eq!(next(&mut c).await[1]["code"], "protocol.invalid_message");
    assert_eq!(ask(&mut c, json!(["ping", 1])).await, json!(["pong", 1]));
}

#[actix_web::test]
async fn oversized_frames_close_with_1009_and_spare_others() {
    let h = harness(SessionConfig::default()).await;
    let mut big = h.member("a").await;
    let mut other = h.member("b").await;
    big.send_text(&format!("[\"ping\", \"{}\"]", "x".repeat(65 * 1024)))
        .await
        .unwrap();
    assert_eq!(big.recv_within(WAIT).await, Err(Closed::Code(Some(1009))));
    assert_eq!(
        ask(&mut other, json!(["ping", 2])).await,
        json!(["pong", 2])
    );
    // just under the limit is fine
    let mut fits = h.member("c").await;
    let payload = "y".repeat(60 * 1024);
    assert_eq!(ask(&mut fits, json!(["ping", payload])).await[0], "pong");
}

#[actix_web::test]
async fn a_flood_of_invalid_frames_closes_with_1008() {
    let h = harness(SessionConfig::default()).await;
    let mut flood = h.connect("w").await;
    let mut other = h.member("o").await;
    for i in 0..21 {
        flood.send_text("garbage").await.unwrap();
        assert_eq!(
            next(&mut flood).await[1]["code"],
            "protocol.invalid_message",
            "frame {i}"
        );
    }
    assert_eq!(flood.recv_within(WAIT).await, Err(Closed::Code(Some(1008))));
    assert_eq!(
        ask(&mut other, json!(["ping", 3])).await,
        json!(["pong", 3])
    );
}

#[actix_web::test]
async fn silent_clients_are_dropped_and_answering_ones_kept() {
    let h = harness(SessionConfig {
        heartbeat_interval: Duration::from_millis(100),
        client_timeout: Duration::from_millis(400),
        ..SessionConfig::default()
    })
    .await;
    let mut silent = h.connect("w").await;
    let mut alive = h.connect("w").await;
    // `alive` keeps reading (and so answers pings) while `silent` does not read at all.
    let deadline = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < deadline {
        let _ = alive.recv_within(Duration::from_millis(50)).await;
    }
    assert_eq!(
        ask(&mut alive, json!(["ping", 4])).await,
        json!(["pong", 4])
    );
    let mut ended = false;
    for _ in 0..40 {
        match silent.recv_within(Duration::from_millis(250)).await {
            Err(Closed::Eof) | Err(Closed::Code(_)) => {
                ended = true;
                break;
            }
            _ => {}
        }
    }
    assert!(ended, "the silent client was not dropped");
}
