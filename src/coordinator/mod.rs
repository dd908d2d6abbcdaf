//! The `BbbCoordinator` actor: owns the live state of every BBB server and meeting, answers
//! `bbb.room_url`, `bbb.call_url` and `bbb.recordings` for all sessions, and polls the fleet.
//!
//! One actor on an arbiter of its own keeps placement decisions consistent (reservations,
//! single flight) without locks. It never blocks: BBB calls and database work run as futures
//! (`ResponseActFuture`, `ctx.spawn`) while it keeps serving other requests, and a join of a
//! meeting known to be running is answered from memory alone.

mod admin;
pub mod checks;
mod ensure;
pub mod fleet;
mod follower;
pub mod join_url;
pub mod meetings;
pub mod placement;
mod poller;
pub mod recordings;
#[cfg(test)]
mod tests;
pub mod warm;

use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::bbb::{BbbApi, BbbError};
use crate::db::Db;
use crate::protocol::{ErrorCode, ErrorReply};
use crate::user::UserContext;
use crate::world::WorldSnapshot;

pub use admin::{
    AdminError, FleetStatus, GetFleetStatus, PanicServer, PollNow, ReloadServers, ServerStatus,
    SetServerState,
};
use checks::CallInfo;
use ensure::MeetingSpec;
use fleet::Fleet;
use meetings::{JoinTarget, MeetingTable};
pub use warm::WarmJoins;

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
}

/// A `bbb.*` request of a session. The session passes its world snapshot and user so the
/// coordinator checks permissions without a database round trip.
pub struct BbbCommand {
    pub world: Arc<WorldSnapshot>,
    pub user: Arc<UserContext>,
    pub kind: BbbCommandKind,
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

/// Counters for the status route and the measurements.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CoordinatorStats {
    /// `create` calls sent to BBB.
    pub creates_sent: u64,
    /// `create` calls that failed.
    pub create_failures: u64,
    /// Joins that waited for another join's in-flight create instead of sending their own.
    pub creates_saved_by_single_flight: u64,
    /// Joins answered from memory (meeting known running): no create, no database.
    pub joins_from_memory: u64,
    /// Meetings moved to another server (failover, panic, offline, disabled).
    pub meetings_moved: u64,
    /// `end` calls sent to servers a meeting moved away from.
    pub ends_sent: u64,
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

/// The actor. Start it with `BbbCoordinator::start_in_arbiter(&arbiter, move |_| BbbCoordinator::new(…))`.
pub struct BbbCoordinator {
    db: Db,
    api: Rc<dyn BbbApi>,
    settings: CoordinatorSettings,
    fleet: Fleet,
    meetings: MeetingTable,
    /// Single flight: joins waiting for the create of a meeting, by meeting key.
    inflight: HashMap<String, Waiters>,
    /// Calls seen so far (members never change after creation), by call id.
    calls: HashMap<String, Rc<CallInfo>>,
    /// Last seen `panic_epoch` of each server (a bump by the CLI forgets its meetings).
    panic_epochs: HashMap<i32, i64>,
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
    pending_seen: Vec<(i32, Vec<String>)>,
    /// Where running meetings are published for sessions' warm joins.
    warm: Arc<WarmJoins>,
}

impl BbbCoordinator {
    /// A coordinator over `db`, talking to BBB through `api`.
    pub fn new(db: Db, api: Rc<dyn BbbApi>, settings: CoordinatorSettings) -> Self {
        Self::publishing_to(db, api, settings, Arc::default())
    }

    /// A coordinator that publishes running meetings to `warm`, where sessions answer warm
    /// joins without a message to the actor (see [`warm`]).
    pub fn publishing_to(
        db: Db,
        api: Rc<dyn BbbApi>,
        settings: CoordinatorSettings,
        warm: Arc<WarmJoins>,
    ) -> Self {
        BbbCoordinator {
            db,
            api,
            settings,
            fleet: Fleet::publishing_to(warm.clone()),
            meetings: MeetingTable::publishing_to(warm.clone()),
            warm,
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
        }
    }

    /// Reservations older than this stop counting even if no poll saw them (polls failing).
    fn max_reservation_age(&self) -> Duration {
        self.settings.poll_interval * 3
    }

    fn room_url(
        &mut self,
        world: Arc<WorldSnapshot>,
        user: Arc<UserContext>,
        room: Option<String>,
    ) -> LocalActFut<Result<Value, ErrorReply>> {
        let join = match checks::room_join(&world, &user, room.as_deref()) {
            Ok(j) => j,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        // Warm join (the hot path): answered at once, without building the create parameters
        // or boxing a continuation; same rule as `join_target`'s fast path.
        let key = meetings::room_key(&world.id, &join.room.id);
        if let Some(target) = self.meetings.known_running(&key, &self.fleet) {
            self.stats.joins_from_memory += 1;
            let url = warm::signed_room_url(&world, &user, &join, &target);
            return Box::pin(fut::ready(Ok(json!({ "url": url }))));
        }
        let spec = MeetingSpec::room(&world, join.room, join.bbb);
        let moderator = join.moderator;
        let full_name = join.full_name;
        let room_id = join.room.id.clone();
        Box::pin(self.join_target(spec).map(move |target, _act, _ctx| {
            let target = target?;
            let Some(bbb) = world.room(&room_id).and_then(|r| r.bbb.as_ref()) else {
                return Err(ErrorCode::RoomUnknown.into());
            };
            let params = join_url::room_join(&world, bbb, &user, &full_name, moderator, &target);
            Ok(json!({ "url": crate::bbb::join_url(&target.endpoint, &params) }))
        }))
    }

    fn call_url(
        &mut self,
        world: Arc<WorldSnapshot>,
        user: Arc<UserContext>,
        call: Option<String>,
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
                Box::pin(act.join_target(spec).map(move |target, _act, _ctx| {
                    let target = target?;
                    let params = join_url::call_join(&world, &user, &full_name, &target);
                    Ok(json!({ "url": crate::bbb::join_url(&target.endpoint, &params) }))
                }))
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
                Err(failed(
                    "the video service is unavailable, please try again shortly",
                ))
            }
        }))
    }

    fn recordings(
        &mut self,
        world: Arc<WorldSnapshot>,
        user: Arc<UserContext>,
        room: Option<String>,
    ) -> LocalActFut<Result<Value, ErrorReply>> {
        let room = match checks::recordings_room(&world, &user, room.as_deref()) {
            Ok(r) => r,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let key = meetings::room_key(&world.id, &room.id);
        let known = self
            .meetings
            .get(&key)
            .map(|e| (e.meeting_id.clone(), e.server));
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
        let timeout = self.settings.request_timeout;
        Box::pin(lookup.into_actor(self).then(
            move |res, act, _ctx| -> LocalActFut<Result<Value, ErrorReply>> {
                let (meeting_id, mut server_ids) =
                    match res {
                        Ok(Some(found)) => found,
                        Ok(None) => match known {
                            Some((id, server)) => (id, server.into_iter().collect()),
                            None => return Box::pin(fut::ready(Ok(json!({ "results": [] })))),
                        },
                        Err(e) => {
                            log::error!("cannot look up recordings servers: {e}");
                            match known {
                                Some((id, server)) => (id, server.into_iter().collect()),
                                None => return Box::pin(fut::ready(Err(failed(
                                    "the video service is unavailable, please try again shortly",
                                )))),
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
                    .filter_map(|id| act.fleet.get(*id).map(|s| (*id, s.endpoint.clone())))
                    .collect();
                let api = act.api.clone();
                Box::pin(recordings::fetch(api, servers, meeting_id, timeout, tz).into_actor(act))
            },
        ))
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
        let BbbCommand { world, user, kind } = msg;
        match kind {
            BbbCommandKind::RoomUrl { room } => self.room_url(world, user, room),
            BbbCommandKind::CallUrl { call } => self.call_url(world, user, call),
            BbbCommandKind::Recordings { room } => self.recordings(world, user, room),
        }
    }
}
