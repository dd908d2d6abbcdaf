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
mod create;
mod election;
mod ended;
mod ensure;
pub mod fleet;
mod follower;
pub mod lifecycle;
pub mod load_history;
pub mod meetings;
mod moves;
mod overview;
pub mod placement;
mod poller;
pub mod recordings;
mod remote;
mod requests;
mod retention;
mod sync;
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
use serde_json::Value;
use tokio::sync::oneshot;

use crate::bbb::{BbbApi, BbbError};
use crate::db::Db;
use crate::end_callback::EndCallbackKey;
use crate::ids::{MeetingKey, ServerId};
use crate::join::checks::CallInfo;
use crate::join::{JoinTable, JoinTarget, Published};
use crate::protocol::{ErrorCode, ErrorReply};
use crate::user::UserContext;
use crate::world::WorldSnapshot;

pub use admin::{
    AdminError, FleetStatus, GetFleetStatus, PanicServer, PollNow, ReloadServers, ServerStatus,
    SetServerCapacity, SetServerState,
};
pub use background::Settle;
pub use election::StepDown;
pub use ended::EndCallback;
use ensure::MeetingSpec;
use fleet::Fleet;
use meetings::MeetingTable;
pub use moves::{MoveError, MoveRoom, Moved};
pub use overview::{GetLoadHistory, ListMeetings, MeetingStatus, ServerHistory};
pub use remote::RemoteChange;
pub use retention::{PurgeNow, PurgeReport};

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
    /// How long the poll lease lasts (see [`election`]).
    pub lease: Duration,
    /// This instance's name in leases and in-flight creates (unique per process).
    pub instance: String,
    /// The leader deletes what has been idle this many days (see [`retention`]).
    pub retention_days: u32,
    /// What happens to a new meeting when no eligible server has room for it.
    pub placement_overflow: placement::Overflow,
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
    /// Creates this instance did not send because another instance was sending them.
    pub creates_awaited_elsewhere: u64,
    /// Creates this instance did not send because another instance's create had confirmed the
    /// meeting meanwhile (found in the database before its `NOTIFY` arrived).
    pub confirmations_taken_from_database: u64,
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
    /// New meetings placed on a server without room for them (no eligible server had room,
    /// `bbb.placement_overflow = "least_full"`).
    pub placements_over_capacity: u64,
    /// Joins refused because no eligible server had room (`placement_overflow = "refuse"`).
    pub placements_refused_full: u64,
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
    /// Joins waiting for another instance's create of a meeting.
    remote_waits: HashMap<MeetingKey, Vec<oneshot::Sender<()>>>,
    /// Calls seen lately (members never change after creation), by call id, with when each
    /// was loaded.
    calls: HashMap<String, (Rc<CallInfo>, Instant)>,
    /// A retention pass is running.
    purging: bool,
    /// Last seen `panic_epoch` of each server (a bump by the CLI forgets its meetings).
    panic_epochs: HashMap<ServerId, i64>,
    stats: CoordinatorStats,
    rng: StdRng,
    /// A round (poll or follow) is running; another is due after it; who waits for that.
    polling: bool,
    round_again: bool,
    round_waiters: Vec<oneshot::Sender<()>>,
    /// A status store is running / another one is due after it.
    status_storing: bool,
    status_dirty: bool,
    /// Stored meetings were loaded (retried each tick until they are).
    loaded: bool,
    /// Whether this instance polls the fleet (else it follows the leader's stored results).
    election: election::Election,
    /// Where the reads of changed meetings stand.
    sync: sync::SyncState,
    /// What sessions answer warm joins from.
    joins: Arc<JoinTable>,
    /// Background work in flight, and who waits for it to finish (see [`Settle`]).
    background: background::Background,
    /// When this coordinator started (ms): confirmations stored before it are not trusted.
    started_ms: i64,
    /// When the leader's last `NOTIFY polled` made this follower read its results.
    polled_notice_at: Option<Instant>,
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
        let mut fleet = Fleet::default();
        fleet.set_create_window(settings.request_timeout);
        BbbCoordinator {
            db,
            api,
            settings,
            fleet,
            meetings: MeetingTable::default(),
            joins,
            inflight: HashMap::new(),
            remote_waits: HashMap::new(),
            started_ms: crate::db::now_ms(),
            polled_notice_at: None,
            calls: HashMap::new(),
            purging: false,
            panic_epochs: HashMap::new(),
            stats: CoordinatorStats::default(),
            rng: StdRng::from_entropy(),
            polling: false,
            round_again: false,
            round_waiters: Vec::new(),
            status_storing: false,
            status_dirty: false,
            loaded: false,
            election: Default::default(),
            sync: Default::default(),
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
        ctx.run_interval(
            election::election_interval(self.settings.lease),
            |act, ctx| act.elect(ctx),
        );
        self.elect(ctx);
        let interval = self.settings.poll_interval;
        ctx.run_interval(interval, |act, ctx| act.tick(ctx));
        self.tick(ctx);
        ctx.run_interval(retention::RETENTION_EVERY, |act, ctx| {
            act.retention_tick(ctx)
        });
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
