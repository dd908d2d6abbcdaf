//! The `BbbCoordinator` actor: owns the live state of every BBB server and meeting, answers
//! the `bbb.*` requests sessions cannot answer themselves, and polls the fleet.
//!
//! One actor on an arbiter of its own keeps placement decisions consistent (reservations,
//! single flight) without locks. It never blocks: BBB calls and database work run as futures
//! while it keeps serving other requests.
//!
//! What it knows about the outside world is a set of claims with an age: a meeting is answered
//! from memory only while its last confirmation is younger than `bbb.confirm_ttl_ms`, on a
//! server no contact has failed with since (see [`lifecycle`], [`fleet`]). After every change
//! of its state it republishes, by that one rule ([`BbbCoordinator::answerable`]), what the
//! sessions may answer from ([`crate::join::published`]).

mod admin;
mod background;
mod ended;
mod ensure;
pub mod fleet;
mod follower;
pub mod lifecycle;
pub mod meetings;
pub mod placement;
mod poller;
pub mod recordings;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::bbb::{BbbApi, BbbError};
use crate::db::Db;
use crate::end_callback::EndCallbackKey;
use crate::ids::{MeetingKey, ServerId};
use crate::join::checks::{self, CallInfo};
use crate::join::params;
use crate::join::{JoinTable, JoinTarget, Published};
use crate::protocol::{ErrorCode, ErrorReply};
use crate::user::UserContext;
use crate::world::WorldSnapshot;

pub use admin::{
    AdminError, FleetStatus, GetFleetStatus, PanicServer, PollNow, ReloadServers, ServerStatus,
    SetServerState,
};
pub use background::Settle;
pub use ended::{EndCallback, MeetingEnded};
use ensure::MeetingSpec;
use fleet::Fleet;
use meetings::MeetingTable;

/// Where BBB sends end callbacks, and the key their tokens are signed with.
#[derive(Debug, Clone)]
pub struct EndCallbacks {
    /// `http.public_url`: the base URL BBB servers reach this gateway at.
    pub public_url: String,
    pub key: EndCallbackKey,
}

/// Timings and thresholds from the `[bbb]` configuration section.
#[derive(Debug, Clone)]
pub struct CoordinatorSettings {
    /// How often every server is polled with `getMeetings`.
    pub poll_interval: Duration,
    /// Consecutive failed polls before a server is offline (its meetings are then forgotten).
    pub unhealthy_after: u32,
    /// Consecutive good polls before an offline server is back.
    pub healthy_after: u32,
    /// How many other servers a create that failed with a server fault may try.
    pub create_retry_servers: u32,
    /// Upper bound of every BBB call the coordinator makes (on top of the client's own).
    pub request_timeout: Duration,
    /// How long a confirmation that a meeting runs is trusted.
    pub confirm_ttl: Duration,
    /// Every `bbb.*` request is answered within it (re-confirmations started by sessions too).
    pub join_deadline: Duration,
    /// `None`: creates carry no `meta_endCallbackUrl`.
    pub end_callbacks: Option<EndCallbacks>,
}

/// A `bbb.*` request of a session. The session passes its world snapshot and user so the
/// coordinator checks permissions without a database round trip, and the instant by which it
/// must have an answer.
pub struct BbbCommand {
    pub world: Arc<WorldSnapshot>,
    pub user: Arc<UserContext>,
    pub kind: BbbCommandKind,
    pub deadline: Instant,
}

/// Which `bbb.*` command, with its (possibly missing) target id from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BbbCommandKind {
    RoomUrl { room: Option<String> },
    CallUrl { call: Option<String> },
    Recordings { room: Option<String> },
}

/// `Ok({"url": …})` or `Ok({"results": […]})`, else the error frame's code and message.
impl Message for BbbCommand {
    type Result = Result<Value, ErrorReply>;
}

/// A session answered a join from the published table past the entry's refresh time: the
/// room's meeting should be re-confirmed in the background before its confirmation expires.
pub struct RefreshMeeting {
    pub world: Arc<WorldSnapshot>,
    pub room: String,
}

impl Message for RefreshMeeting {
    type Result = ();
}

/// Counters for the status route and the measurements.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CoordinatorStats {
    /// `create` calls sent to BBB.
    pub creates_sent: u64,
    /// `create` calls that failed.
    pub create_failures: u64,
    /// Creates of meetings believed running whose confirmation had expired or was about to
    /// (included in `creates_sent`).
    pub reconfirm_creates: u64,
    /// Joins that waited for another join's in-flight create instead of sending their own.
    pub creates_saved_by_single_flight: u64,
    /// Joins answered from memory (meeting confirmed running recently): no create, no database.
    pub joins_from_memory: u64,
    /// Meetings moved to another server (failover, panic, offline, disabled).
    pub meetings_moved: u64,
    /// `end` calls sent to servers a meeting moved away from.
    pub ends_sent: u64,
    /// End callbacks that ended a meeting, and those refused (stale, unknown or forged).
    pub end_callbacks: u64,
    pub end_callbacks_refused: u64,
    /// Results of creates and probes discarded because the meeting or its server changed
    /// while they were in flight.
    pub results_discarded: u64,
    /// Poll rounds completed.
    pub poll_rounds: u64,
    /// Rounds that read the leader's results instead of polling (another instance leads).
    pub follow_rounds: u64,
}

type JoinResult = Result<JoinTarget, ErrorReply>;
type Waiters = Vec<oneshot::Sender<JoinResult>>;
type LocalActFut<T> = std::pin::Pin<Box<dyn ActorFuture<BbbCoordinator, Output = T>>>;

/// Bounds a BBB call by `d`; a call still running then is a [`BbbError::Timeout`].
pub(crate) async fn with_timeout<T>(
    d: Duration,
    fut: impl Future<Output = Result<T, BbbError>>,
) -> Result<T, BbbError> {
    tokio::time::timeout(d, fut)
        .await
        .unwrap_or(Err(BbbError::Timeout))
}

fn failed(message: &str) -> ErrorReply {
    ErrorReply::with_message(ErrorCode::BbbFailed, message)
}

const SERVICE_UNAVAILABLE: &str = "the video service is unavailable, please try again shortly";

/// The actor. Start it with `BbbCoordinator::start_in_arbiter(&arbiter, move |_| BbbCoordinator::new(…))`.
pub struct BbbCoordinator {
    db: Db,
    api: Rc<dyn BbbApi>,
    settings: CoordinatorSettings,
    fleet: Fleet,
    meetings: MeetingTable,
    /// Single flight: joins waiting for the create of a meeting, by meeting key.
    inflight: HashMap<MeetingKey, Waiters>,
    /// Calls seen so far (members never change after creation), by call id.
    calls: HashMap<String, Rc<CallInfo>>,
    /// Last seen `panic_epoch` of each server (a bump by the CLI forgets its meetings).
    panic_epochs: HashMap<ServerId, i64>,
    stats: CoordinatorStats,
    rng: StdRng,
    polling: bool,
    /// A status store is running / another one is due after it.
    status_storing: bool,
    status_dirty: bool,
    /// Stored meetings were loaded (retried each tick until they are).
    loaded: bool,
    /// This instance's side of the poll-leader election (PostgreSQL; SQLite always leads).
    leader_lock: Arc<std::sync::Mutex<crate::db::leader_lock::LeaderLock>>,
    /// This instance polls the fleet (else it follows the leader's stored results).
    leader: bool,
    /// Meeting ids each server listed in polls whose status is not stored yet.
    pending_seen: Vec<(ServerId, Vec<String>)>,
    /// What sessions answer warm joins from.
    joins: Arc<JoinTable>,
    /// Background work in flight, and who waits for it to finish (see [`Settle`]).
    background: background::Background,
}

impl BbbCoordinator {
    /// A coordinator over `db`, talking to BBB through `api`, publishing the meetings sessions
    /// may answer from to `joins`.
    pub fn new(
        db: Db,
        api: Rc<dyn BbbApi>,
        settings: CoordinatorSettings,
        joins: Arc<JoinTable>,
    ) -> Self {
        BbbCoordinator {
            db,
            api,
            settings,
            fleet: Fleet::default(),
            meetings: MeetingTable::default(),
            joins,
            inflight: HashMap::new(),
            calls: HashMap::new(),
            panic_epochs: HashMap::new(),
            stats: CoordinatorStats::default(),
            rng: StdRng::from_entropy(),
            polling: false,
            status_storing: false,
            status_dirty: false,
            loaded: false,
            leader_lock: Arc::default(),
            leader: false,
            pending_seen: Vec::new(),
            background: Default::default(),
        }
    }

    /// Reservations older than this stop counting even if no poll saw them (polls failing).
    fn max_reservation_age(&self) -> Duration {
        self.settings.poll_interval * 3
    }

    /// The rule for answering a join from memory: the meeting runs on a server no contact has
    /// failed with since, confirmed by a request sent less than `confirm_ttl` before `now`.
    /// Returns the target and when that confirmation was sent.
    pub(crate) fn answerable(
        &self,
        key: &MeetingKey,
        now: Instant,
    ) -> Option<(JoinTarget, Instant)> {
        let entry = self.meetings.get(key)?;
        let (server, create_time, confirmed_at) = entry.state().running()?;
        let live = self.fleet.get(server).filter(|s| s.trusted())?;
        if now.saturating_duration_since(confirmed_at) >= self.settings.confirm_ttl {
            return None;
        }
        let target = JoinTarget {
            server,
            endpoint: live.endpoint().clone(),
            meeting_id: entry.meeting_id.clone(),
            attendee_pw: entry.attendee_pw.clone(),
            moderator_pw: entry.moderator_pw.clone(),
            create_time: (create_time > 0).then_some(create_time),
        };
        Some((target, confirmed_at))
    }

    /// Republishes every meeting whose state or server changed since the last call, by
    /// [`answerable`](Self::answerable). Called at the end of every step that changes state.
    fn publish(&mut self) {
        let mut keys = self.meetings.take_dirty();
        for server in self.fleet.take_dirty() {
            keys.extend(self.meetings.keys_on(server).cloned());
        }
        if keys.is_empty() {
            return;
        }
        let now = Instant::now();
        let changes = keys
            .into_iter()
            .map(|key| {
                let entry = self.published_entry(&key, now);
                (key, entry)
            })
            .collect();
        self.joins.apply(changes);
    }

    fn published_entry(&self, key: &MeetingKey, now: Instant) -> Option<Arc<Published>> {
        let (target, confirmed_at) = self.answerable(key, now)?;
        let ttl = self.settings.confirm_ttl;
        let expires_at = confirmed_at + ttl;
        let refresh_at = confirmed_at + ttl / 2;
        match self.joins.get(key.as_str()) {
            Some(old) if old.target == target && old.expires_at == expires_at => Some(old),
            Some(old) if old.target == target => {
                Some(Arc::new(old.renewed(refresh_at, expires_at)))
            }
            _ => Some(Arc::new(Published::new(target, refresh_at, expires_at))),
        }
    }

    /// Withdraws published meetings whose confirmation expired (readers ignore them already;
    /// this keeps the table small).
    fn prune_published(&mut self) {
        let now = Instant::now();
        let expired: Vec<_> = self
            .joins
            .keys()
            .into_iter()
            .filter(|k| self.joins.get(k.as_str()).is_some_and(|p| !p.valid_at(now)))
            .map(|k| (k, None))
            .collect();
        if !expired.is_empty() {
            self.joins.apply(expired);
        }
    }

    fn room_url(
        &mut self,
        world: Arc<WorldSnapshot>,
        user: Arc<UserContext>,
        room: Option<String>,
        deadline: Instant,
    ) -> LocalActFut<Result<Value, ErrorReply>> {
        let join = match checks::room_join(&world, &user, room.as_deref()) {
            Ok(j) => j,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let key = MeetingKey::room(&world.id, &join.room.id);
        if let Some((target, _)) = self.answerable(&key, Instant::now()) {
            self.stats.joins_from_memory += 1;
            let p = params::room_join(
                &world,
                join.bbb,
                &user,
                &join.full_name,
                join.moderator,
                &target,
            );
            let url = crate::bbb::join_url(&target.endpoint, &p);
            return Box::pin(fut::ready(Ok(json!({ "url": url }))));
        }
        let spec = MeetingSpec::room(&world, join.room, join.bbb);
        let moderator = join.moderator;
        let full_name = join.full_name;
        let room_id = join.room.id.clone();
        Box::pin(
            self.join_target(spec, deadline)
                .map(move |target, _act, _ctx| {
                    let target = target?;
                    let Some(bbb) = world.room(&room_id).and_then(|r| r.bbb.as_ref()) else {
                        return Err(ErrorCode::RoomUnknown.into());
                    };
                    let p = params::room_join(&world, bbb, &user, &full_name, moderator, &target);
                    Ok(json!({ "url": crate::bbb::join_url(&target.endpoint, &p) }))
                }),
        )
    }

    fn call_url(
        &mut self,
        world: Arc<WorldSnapshot>,
        user: Arc<UserContext>,
        call: Option<String>,
        deadline: Instant,
    ) -> LocalActFut<Result<Value, ErrorReply>> {
        let call_id = match checks::parse_call_id(call.as_deref()) {
            Ok(id) => id,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let lookup: LocalActFut<Result<Option<Rc<CallInfo>>, ErrorReply>> =
            match self.calls.get(&call_id) {
                Some(info) => Box::pin(fut::ready(Ok(Some(info.clone())))),
                None => self.load_call(call_id.clone()),
            };
        Box::pin(lookup.then(
            move |info, act, _ctx| -> LocalActFut<Result<Value, ErrorReply>> {
                let info = match info {
                    Ok(info) => info,
                    Err(e) => return Box::pin(fut::ready(Err(e))),
                };
                let full_name = match checks::call_join(&world, &user, info.as_deref()) {
                    Ok(n) => n,
                    Err(e) => return Box::pin(fut::ready(Err(e))),
                };
                let spec = MeetingSpec::call(&world.id, &call_id);
                Box::pin(
                    act.join_target(spec, deadline)
                        .map(move |target, _act, _ctx| {
                            let target = target?;
                            let p = params::call_join(&world, &user, &full_name, &target);
                            Ok(json!({ "url": crate::bbb::join_url(&target.endpoint, &p) }))
                        }),
                )
            },
        ))
    }

    /// Loads a call from the database and caches it when it exists.
    fn load_call(
        &mut self,
        call_id: String,
    ) -> LocalActFut<Result<Option<Rc<CallInfo>>, ErrorReply>> {
        let db = self.db.clone();
        let id = call_id.clone();
        let fut = async move { db.run(move |c| crate::db::calls::load_call(c, &id)).await };
        Box::pin(fut.into_actor(self).map(move |res, act, _ctx| match res {
            Ok(Some((world_id, members))) => {
                let info = Rc::new(CallInfo {
                    world_id,
                    members: members.into_iter().collect(),
                });
                act.calls.insert(call_id, info.clone());
                Ok(Some(info))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                log::error!("cannot load call: {e}");
                Err(failed(SERVICE_UNAVAILABLE))
            }
        }))
    }

    fn recordings(
        &mut self,
        world: Arc<WorldSnapshot>,
        user: Arc<UserContext>,
        room: Option<String>,
        deadline: Instant,
    ) -> LocalActFut<Result<Value, ErrorReply>> {
        let room = match checks::recordings_room(&world, &user, room.as_deref()) {
            Ok(r) => r,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let key = MeetingKey::room(&world.id, &room.id);
        let known = self
            .meetings
            .get(&key)
            .map(|e| (e.meeting_id.clone(), e.server()));
        let db = self.db.clone();
        let known_id = known.as_ref().map(|k| k.0.clone());
        // Which meeting id, and every server it was ever placed on.
        let lookup = async move {
            db.run(move |c| {
                let meeting_id = match known_id {
                    Some(id) => Some(id),
                    None => crate::db::meetings::get(c, &key)?.map(|r| r.meeting_id),
                };
                let Some(meeting_id) = meeting_id else {
                    return Ok(None);
                };
                let servers = crate::db::meetings::servers_ever(c, &meeting_id)?;
                Ok(Some((meeting_id, servers)))
            })
            .await
        };
        let current_server = known.as_ref().and_then(|k| k.1);
        let tz = world.timezone;
        Box::pin(lookup.into_actor(self).then(
            move |res, act, _ctx| -> LocalActFut<Result<Value, ErrorReply>> {
                let (meeting_id, mut server_ids) = match res {
                    Ok(Some(found)) => found,
                    Ok(None) => match known {
                        Some((id, server)) => (id, server.into_iter().collect()),
                        None => return Box::pin(fut::ready(Ok(json!({ "results": [] })))),
                    },
                    Err(e) => {
                        log::error!("cannot look up recordings servers: {e}");
                        match known {
                            Some((id, server)) => (id, server.into_iter().collect()),
                            None => return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE)))),
                        }
                    }
                };
                if let Some(current) = current_server {
                    if !server_ids.contains(&current) {
                        server_ids.push(current);
                    }
                }
                let servers: Vec<_> = server_ids
                    .iter()
                    .filter_map(|id| act.fleet.get(*id).map(|s| (*id, s.endpoint().clone())))
                    .collect();
                let timeout = act.call_timeout(deadline);
                let fetch = recordings::fetch(act.api.clone(), servers, meeting_id, timeout);
                Box::pin(fetch.into_actor(act).map(move |answers, act, _ctx| {
                    for (server, answer) in &answers {
                        act.record_contact(*server, answer.as_ref().map(|_| ()));
                    }
                    act.publish();
                    recordings::answer(answers, tz)
                }))
            },
        ))
    }

    /// The timeout of one BBB call made for a request due at `deadline`.
    fn call_timeout(&self, deadline: Instant) -> Duration {
        self.settings
            .request_timeout
            .min(deadline.saturating_duration_since(Instant::now()))
    }

    /// Notes how a contact with `server` went: a server fault makes it suspect at once, a
    /// good answer (or a FAILED answer to a bad request, which the server gave properly)
    /// clears that.
    fn record_contact(&mut self, server: ServerId, result: Result<(), &BbbError>) {
        match result {
            Err(e) if e.is_server_fault() => self.fleet.contact_failed(server, e.to_string()),
            _ => self.fleet.contact_succeeded(server),
        }
    }
}

impl Actor for BbbCoordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Joins must see the stored meetings, so nothing is served before they are loaded.
        ctx.wait(self.load_state());
        let interval = self.settings.poll_interval;
        ctx.run_interval(interval, |act, ctx| act.tick(ctx));
        self.tick(ctx);
    }
}

impl Handler<BbbCommand> for BbbCoordinator {
    type Result = ResponseActFuture<Self, Result<Value, ErrorReply>>;

    fn handle(&mut self, msg: BbbCommand, _ctx: &mut Self::Context) -> Self::Result {
        let BbbCommand {
            world,
            user,
            kind,
            deadline,
        } = msg;
        match kind {
            BbbCommandKind::RoomUrl { room } => self.room_url(world, user, room, deadline),
            BbbCommandKind::CallUrl { call } => self.call_url(world, user, call, deadline),
            BbbCommandKind::Recordings { room } => self.recordings(world, user, room, deadline),
        }
    }
}

impl Handler<RefreshMeeting> for BbbCoordinator {
    type Result = ();

    fn handle(&mut self, msg: RefreshMeeting, ctx: &mut Self::Context) {
        let RefreshMeeting { world, room } = msg;
        let Some(bbb_room) = world.room(&room).filter(|r| r.bbb.is_some()).cloned() else {
            return;
        };
        let Some(bbb) = bbb_room.bbb.as_ref() else {
            return;
        };
        let spec = MeetingSpec::room(&world, &bbb_room, bbb);
        if self.inflight.contains_key(&spec.key) {
            return;
        }
        let deadline = Instant::now() + self.settings.join_deadline;
        ctx.spawn(
            self.reconfirm(spec, deadline)
                .map(|_res: JoinResult, _act, _ctx| ()),
        );
    }
}
