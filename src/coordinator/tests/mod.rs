//! Actor tests of the coordinator against a scripted BBB backend ([`fake::FakeBbb`]) and a temp
//! SQLite database.

mod capacity_actor;
mod fake;
mod health;
mod joins;
mod liveness;
mod measure;
mod moves;
mod placement_actor;
mod recordings_actor;
mod retention;
mod warm_actor;
mod warm_invariant;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::{json, Value};

use std::time::Instant;

use crate::bbb::{ChecksumAlgorithm, Secret};
use crate::db::servers::{self, NewServer};
use crate::db::Db;
use crate::end_callback::EndCallbackKey;
use crate::ids::{MeetingKey, ServerId};
use crate::join::JoinTable;
use crate::protocol::{ErrorCode, ErrorReply};
use crate::user::{Profile, UserContext};
use crate::world::WorldSnapshot;

use super::{
    BbbCommand, BbbCommandKind, BbbCoordinator, CoordinatorSettings, EndCallbacks, FleetStatus,
    GetFleetStatus, PollNow, RefreshMeeting, Settle,
};
use fake::FakeBbb;

/// The end-callback key of every test coordinator.
pub(super) fn callback_key() -> EndCallbackKey {
    EndCallbackKey::from_bytes([9; 32])
}

pub(super) fn settings() -> CoordinatorSettings {
    CoordinatorSettings {
        // Tests poll explicitly with `PollNow` (one poll also runs at start).
        poll_interval: Duration::from_secs(3600),
        unhealthy_after: 2,
        healthy_after: 2,
        create_retry_servers: 2,
        request_timeout: Duration::from_secs(2),
        // Long enough that only the tests about it see a confirmation expire.
        confirm_ttl: Duration::from_secs(600),
        join_deadline: Duration::from_secs(10),
        end_callbacks: Some(EndCallbacks {
            public_url: "http://gw.test".into(),
            key: callback_key(),
        }),
        lease: Duration::from_secs(10),
        instance: "coordinator-test".into(),
        retention_days: 30,
        placement_overflow: super::placement::Overflow::LeastFull,
    }
}

pub(super) fn url_of(n: usize) -> String {
    format!("https://bbb{n}.test/bigbluebutton")
}

/// A test world: `r1` (waiting room, record, voice bridge, a `:` in its name), `r2` (plain),
/// `chat` (no BBB module), `pref` (prefers server 2), and `extra_rooms` more plain rooms
/// `room0`…; traits `p` → participant, `spk` → speaker, `mod` → moderator.
pub(super) fn world_with(extra_rooms: usize) -> Arc<WorldSnapshot> {
    let file = world_file(extra_rooms);
    Arc::new(WorldSnapshot::from_file(&file, 1).expect("test world snapshot"))
}

/// The world file behind [`world_with`], for tests that store it too.
pub(super) fn world_file(extra_rooms: usize) -> crate::world::WorldFile {
    let mut rooms = vec![
        json!({"id": "r1", "name": "Room: One", "modules": [{"type": "call.bigbluebutton", "config": {
            "record": true, "waiting_room": true, "auto_microphone": true, "auto_camera": true,
            "voice_bridge": "12345", "bbb_mute_on_start": true}}]}),
        json!({"id": "r2", "name": "Room 2", "modules": [{"type": "call.bigbluebutton", "config": {}}]}),
        json!({"id": "chat", "name": "Chat", "modules": [{"type": "chat.native", "config": {}}]}),
        json!({"id": "pref", "name": "Pref", "modules": [{"type": "call.bigbluebutton", "config": {
            "prefer_server": url_of(2)}}]}),
    ];
    for i in 0..extra_rooms {
        rooms.push(
            json!({"id": format!("room{i}"), "name": format!("Room {i}"),
            "modules": [{"type": "call.bigbluebutton", "config": {}}]}),
        );
    }
    let file = json!({
        "id": "w", "title": "W", "timezone": "Europe/Berlin",
        "jwt_secrets": [{"issuer": "any", "audience": "venueless", "secret": "0123456789abcdef0123456789abcdef"}],
        "trait_grants": {"viewer": [], "participant": ["p"], "speaker": ["spk"], "moderator": ["mod"]},
        "bbb_defaults": {"record": false},
        "bbb_disable_privatechat": true,
        "bbb_style_url": "https://style.test/bbb.css",
        "rooms": rooms,
    });
    crate::world::parse_world_file(&file.to_string()).expect("test world")
}

pub(super) fn user(uid: &str, traits: &[&str], name: Option<&str>) -> Arc<UserContext> {
    Arc::new(UserContext {
        id: format!("user-{uid}"),
        world_id: "w".into(),
        uid: Some(uid.into()),
        traits: traits.iter().map(|t| t.to_string()).collect(),
        profile: Profile {
            display_name: name.map(str::to_string),
            avatar_url: None,
        },
        moderation: Default::default(),
    })
}

/// A coordinator over `n` fake servers (ids 1..=n, URLs [`url_of`]).
pub(super) struct Harness {
    pub db: Db,
    pub fake: FakeBbb,
    pub addr: Addr<BbbCoordinator>,
    /// What the coordinator publishes; `room_url` asks it first, as a session does.
    pub joins: Arc<JoinTable>,
    pub settings: CoordinatorSettings,
    pub ids: Vec<ServerId>,
    pub world: Arc<WorldSnapshot>,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn new(n: usize) -> Harness {
        Self::with(n, settings(), 0).await
    }

    pub async fn with(n: usize, settings: CoordinatorSettings, extra_rooms: usize) -> Harness {
        let (db, dir) = crate::db::test_support::temp_sqlite();
        let fake = FakeBbb::default();
        let mut ids = Vec::new();
        {
            let mut conn = db.get().expect("conn");
            crate::db::test_support::insert_world(&mut conn, "w");
            crate::db::test_support::insert_world(&mut conn, "other");
            for i in 1..=n {
                let row = servers::add(
                    &mut conn,
                    &NewServer {
                        url: url_of(i),
                        secret: Secret::new(format!("secret-{i}")),
                        checksum: ChecksumAlgorithm::Sha1,
                        weight: 1.0,
                        tag: None,
                        world_id: None,
                        capacity: None,
                    },
                )
                .expect("add server");
                fake.add_server(&row.url);
                ids.push(row.id);
            }
        }
        let joins = Arc::new(JoinTable::default());
        let addr = BbbCoordinator::new(
            db.clone(),
            Rc::new(fake.clone()),
            settings.clone(),
            joins.clone(),
        )
        .start();
        let h = Harness {
            db,
            fake,
            addr,
            joins,
            settings,
            ids,
            world: world_with(extra_rooms),
            _dir: dir,
        };
        h.poll().await;
        h
    }

    /// A second coordinator on the same database and BBB fleet (a restart).
    pub fn restart(&mut self) {
        self.joins = Arc::new(JoinTable::default());
        self.addr = BbbCoordinator::new(
            self.db.clone(),
            Rc::new(self.fake.clone()),
            self.settings.clone(),
            self.joins.clone(),
        )
        .start();
    }

    /// Waits until the coordinator's background work (ends, database writes) is done.
    pub async fn settle(&self) {
        self.addr.send(Settle).await.expect("coordinator");
    }

    /// Sets a server's state through the coordinator (as the admin route does).
    pub async fn set_state(&self, id: ServerId, state: crate::db::servers::ServerState) {
        self.addr
            .send(super::SetServerState { id, state })
            .await
            .expect("coordinator")
            .expect("known server");
    }

    pub async fn poll(&self) {
        self.addr.send(PollNow).await.expect("poll");
    }

    pub async fn status(&self) -> FleetStatus {
        self.addr.send(GetFleetStatus).await.expect("status")
    }

    pub async fn send(
        &self,
        user: &Arc<UserContext>,
        kind: BbbCommandKind,
    ) -> Result<Value, ErrorReply> {
        self.addr
            .send(BbbCommand {
                world: self.world.clone(),
                user: user.clone(),
                kind,
                deadline: Instant::now() + self.settings.join_deadline,
            })
            .await
            .expect("coordinator")
    }

    /// `bbb.room_url` as a session does it: answered from the published warm joins when it
    /// can be, else by the coordinator. Every test joining through here so also checks that
    /// nothing stale is ever published.
    pub async fn room_url(&self, user: &Arc<UserContext>, room: &str) -> Result<Value, ErrorReply> {
        let answer = self
            .joins
            .room_url(&self.world, user, Some(room), Instant::now());
        if let Some(answer) = answer {
            return answer.map(|warm| {
                if warm.refresh {
                    self.addr.do_send(RefreshMeeting {
                        world: self.world.clone(),
                        room: room.into(),
                    });
                }
                json!({ "url": warm.url })
            });
        }
        self.send(
            user,
            BbbCommandKind::RoomUrl {
                room: Some(room.into()),
            },
        )
        .await
    }

    /// Joins `room` as a participant and returns the parsed join URL.
    pub async fn join(&self, room: &str) -> JoinUrl {
        let v = self
            .room_url(&user("alice", &["p"], Some("Alice")), room)
            .await
            .expect("join");
        JoinUrl::parse(&v)
    }

    /// Registers another server while the coordinator runs (picked up at the next poll).
    pub fn add_server(&mut self, url: &str, world: Option<&str>) -> ServerId {
        let mut conn = self.db.get().expect("conn");
        let row = servers::add(
            &mut conn,
            &NewServer {
                url: url.into(),
                secret: Secret::new("secret-x"),
                checksum: ChecksumAlgorithm::Sha256,
                weight: 1.0,
                tag: None,
                world_id: world.map(str::to_string),
                capacity: None,
            },
        )
        .expect("add server");
        self.fake.add_server(&row.url);
        self.ids.push(row.id);
        row.id
    }

    /// The stored server of a room's meeting.
    pub fn stored_server(&self, room: &str) -> Option<ServerId> {
        let mut conn = self.db.get().expect("conn");
        crate::db::meetings::get(&mut conn, &MeetingKey::room("w", room))
            .expect("meeting row")
            .and_then(|r| r.server)
    }

    /// Lets `by` pass for every confirmation the coordinator holds, and for those stored in
    /// the database (once the background work that stores them is done).
    pub async fn age(&self, by: Duration) {
        self.settle().await;
        self.addr.send(Age(by)).await.expect("coordinator");
    }

    /// What the coordinator and its published table disagree on (see [`CheckPublished`]).
    pub async fn published_violations(&self) -> Vec<String> {
        self.addr.send(CheckPublished).await.expect("coordinator")
    }

    /// The meeting id of a room's meeting, as stored.
    pub fn meeting_id(&self, room: &str) -> String {
        let mut conn = self.db.get().expect("conn");
        crate::db::meetings::get(&mut conn, &MeetingKey::room("w", room))
            .expect("meeting row")
            .expect("a stored meeting")
            .meeting_id
    }
}

/// Stops the coordinator at once, dropping whatever it had in flight (a kill -9).
pub(super) struct Kill;

impl Message for Kill {
    type Result = ();
}

impl Handler<Kill> for BbbCoordinator {
    type Result = ();

    fn handle(&mut self, _msg: Kill, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Waits until `condition` holds, checking every few milliseconds; panics naming it after 10 s.
pub(super) async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Makes every confirmation `0` older, as if that much time had passed without news.
pub(super) struct Age(pub Duration);

impl Message for Age {
    type Result = ();
}

impl Handler<Age> for BbbCoordinator {
    type Result = ();

    fn handle(&mut self, msg: Age, _ctx: &mut Self::Context) {
        let keys: Vec<MeetingKey> = self.meetings.iter().map(|e| e.key.clone()).collect();
        for key in keys {
            self.meetings.update(&key, |e| e.age(msg.0));
        }
        let by_ms = i64::try_from(msg.0.as_millis()).expect("a test's age fits");
        let mut conn = self.db.get().expect("conn");
        crate::db::meetings::age_confirmations(&mut conn, by_ms).expect("aged");
        self.publish();
    }
}

/// Asks the coordinator whether its published table holds exactly what its rule allows: no
/// entry a session could answer from that the rule would not answer, and nothing changed
/// since the last publish. Answers the violations found.
pub(super) struct CheckPublished;

impl Message for CheckPublished {
    type Result = Vec<String>;
}

impl Handler<CheckPublished> for BbbCoordinator {
    type Result = MessageResult<CheckPublished>;

    fn handle(&mut self, _msg: CheckPublished, _ctx: &mut Self::Context) -> Self::Result {
        let mut violations = Vec::new();
        let dirty = self.meetings.take_dirty();
        let dirty_servers = self.fleet.take_dirty();
        if !dirty.is_empty() || !dirty_servers.is_empty() {
            violations.push(format!(
                "state changed without being republished: {dirty:?} {dirty_servers:?}"
            ));
        }
        let now = Instant::now();
        for key in self.joins.keys() {
            let Some(published) = self.joins.get(key.as_str()) else {
                continue;
            };
            if !published.valid_at(now) {
                continue;
            }
            match self.answerable(&key, now) {
                Some((target, _)) if target == published.target => {}
                other => violations.push(format!(
                    "{key} published as {:?} but the rule says {:?}",
                    published.target,
                    other.map(|o| o.0)
                )),
            }
        }
        MessageResult(violations)
    }
}

/// A join URL split into its base and parameters.
#[derive(Debug)]
pub(super) struct JoinUrl {
    pub base: String,
    pub params: HashMap<String, String>,
}

impl JoinUrl {
    pub fn parse(v: &Value) -> JoinUrl {
        let url = v["url"].as_str().expect("url");
        let (base, query) = url.split_once("/api/join?").expect("join url");
        JoinUrl {
            base: base.to_string(),
            params: form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        }
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str)
    }
}

pub(super) fn code(r: Result<Value, ErrorReply>) -> ErrorCode {
    r.expect_err("expected an error").code
}
