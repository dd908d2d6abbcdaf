//! Spawns the real gateway on port 0 with a temp database, plus a small WebSocket client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bbb_gateway::config::{SessionConfig, Settings};
use bbb_gateway::startup::{Application, Stopper};
use bbb_gateway::state::AppState;
use serde_json::Value;

pub const WORLD_SECRET: &str = "test-world-jwt-secret-0123456789";

/// A running gateway and what a test needs to reach it.
pub struct TestApp {
    /// The public listener (WebSocket, end callbacks, health).
    pub port: u16,
    /// The admin listener (REST, metrics, status page).
    pub admin_port: u16,
    pub state: Arc<AppState>,
    _dir: tempfile::TempDir,
    handle: actix_web::dev::ServerHandle,
    stopper: Stopper,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        actix_web::rt::spawn(async move { handle.stop(false).await });
    }
}

/// Default test settings: a temp SQLite file, port 0, short poll interval.
pub fn test_settings(dir: &tempfile::TempDir) -> Settings {
    let mut s = Settings::load_with_env(None, Vec::new()).expect("defaults load");
    s.http.listen = "127.0.0.1:0".parse().expect("addr");
    s.http.admin_listen = "127.0.0.1:0".parse().expect("addr");
    s.database.url = format!("sqlite://{}/gw.sqlite3", dir.path().display());
    s.bbb.poll_interval_secs = 1;
    s.bbb.request_timeout_ms = 1000;
    s.bbb.connect_timeout_ms = 500;
    s.cache.refresh_interval_ms = 200;
    s.admin.tokens = vec!["test-admin-token-0123456789".into()];
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}, SessionConfig::default()).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings), session: SessionConfig) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(&dir);
    tweak(&mut settings);
    let app = Application::build_with(settings, session)
        .await
        .expect("the gateway starts");
    let port = app.port();
    let admin_port = app.admin_port();
    let state = app.state();
    let handle = app.handle();
    let stopper = app.stopper();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        port,
        admin_port,
        state,
        _dir: dir,
        handle,
        stopper,
    }
}

impl TestApp {
    /// The graceful shutdown SIGTERM triggers (see `Stopper::shut_down`).
    pub async fn shut_down(&self) {
        self.stopper.clone().shut_down().await;
    }

    /// A URL on the public listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.admin_port, path)
    }

    /// Imports a world JSON through the same code path as `bbb-gateway world import`.
    pub async fn import_world(&self, json: &Value) {
        let file = bbb_gateway::world::parse_world_file(&json.to_string()).expect("valid world");
        let db = self.state.db.clone();
        db.run(move |conn| bbb_gateway::world::import_world(conn, &file))
            .await
            .expect("import");
        self.state.worlds.refresh().await.expect("refresh");
    }

    pub async fn ws(&self, world: &str) -> WsClient {
        let url = format!("ws://127.0.0.1:{}/ws/world/{world}/", self.port);
        let inner = bbb_gateway::client::WsClient::connect(&url)
            .await
            .expect("websocket connects");
        WsClient { inner }
    }

    /// Connects and authenticates with a token for `uid`; returns the client and the
    /// `authenticated` payload.
    pub async fn ws_as(
        &self,
        world: &str,
        uid: &str,
        traits: &[&str],
        name: Option<&str>,
    ) -> (WsClient, Value) {
        let mut c = self.ws(world).await;
        let token = token_for(uid, traits, name);
        c.send(serde_json::json!(["authenticate", {"token": token}]))
            .await;
        let reply = c.recv().await.expect("a reply");
        assert_eq!(reply[0], "authenticated", "{reply}");
        (c, reply[1].clone())
    }
}

/// A token signed with the test world's secret.
pub fn token_for(uid: &str, traits: &[&str], name: Option<&str>) -> String {
    let secret = bbb_gateway::world::JwtSecret {
        issuer: "any".into(),
        audience: "venueless".into(),
        secret: WORLD_SECRET.into(),
    };
    let traits: Vec<String> = traits.iter().map(|t| t.to_string()).collect();
    bbb_gateway::auth::mint_token(&secret, uid, &traits, name, 3600).expect("mint")
}

/// A world with one BBB room, one room without BBB, and an orga-only room.
pub fn sample_world(id: &str) -> Value {
    serde_json::json!({
        "id": id, "title": "Sample Conference", "timezone": "Europe/Berlin",
        "jwt_secrets": [{"issuer": "any", "audience": "venueless", "secret": WORLD_SECRET}],
        "roles": {"attendee": ["world:view"]},
        "trait_grants": {"attendee": [], "moderator": ["orga"]},
        "bbb_defaults": {"record": false},
        "rooms": [
            {"id": "room_1", "name": "Gruppenraum 1",
             "trait_grants": {"viewer": [], "participant": []},
             "modules": [{"type": "call.bigbluebutton", "config": {"record": true}}]},
            {"id": "stage", "name": "Stage",
             "modules": [{"type": "livestream.native", "config": {"hls_url": "https://x"}}]},
            {"id": "backstage", "name": "Backstage",
             "trait_grants": {"viewer": ["speaker"], "participant": ["speaker"]},
             "modules": [{"type": "call.bigbluebutton", "config": {}}]}
        ],
        "grants": [{"uid": "alice", "role": "moderator", "room": "room_1"}]
    })
}

pub use bbb_gateway::client::Closed;

/// The library's protocol client, with test-friendly methods that panic on transport errors.
pub struct WsClient {
    inner: bbb_gateway::client::WsClient,
}

/// How long a test waits for a frame, or for something the gateway does in the background.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often [`wait_until`] checks its condition.
const POLL: Duration = Duration::from_millis(25);

/// Checks `condition` every few milliseconds until it holds; fails the test, naming `what`, when
/// it still does not hold after `within`. Tests wait for what they expect to happen, never for a
/// fixed time, so a slow machine makes them slower, not red.
pub async fn wait_until(what: &str, within: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        actix_web::rt::time::sleep(POLL).await;
    }
}

impl WsClient {
    pub async fn send(&mut self, v: Value) {
        self.inner.send(&v).await.expect("send");
    }

    /// The next text frame as JSON; `Err` tells how the stream ended.
    pub async fn recv(&mut self) -> Result<Value, Closed> {
        self.inner.recv_within(WAIT).await
    }

    /// Asks for a room's join URL; panics with the reply unless it is a success.
    pub async fn room_url(&mut self, room: &str) -> String {
        let reply = self
            .request("bbb.room_url", 1, serde_json::json!({ "room": room }))
            .await;
        assert_eq!(reply[0], "success", "{reply}");
        reply[2]["url"].as_str().expect("a url").to_owned()
    }

    /// Sends a request with an id and returns the reply.
    pub async fn request(&mut self, action: &str, id: impl Into<Value>, payload: Value) -> Value {
        self.inner
            .request(action, id.into(), payload, WAIT)
            .await
            .expect("a reply")
    }
}
