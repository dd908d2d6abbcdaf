//! Messages for the admin REST routes, the CLI-driven demo and the tests: fleet status (never a
//! secret), registry reload, server state and capacity changes, panic, and an immediate poll.

use actix::prelude::*;
use serde::Serialize;

use crate::db::servers::ServerState;
use crate::db::DbError;
use crate::ids::ServerId;

use super::{BbbCoordinator, CoordinatorStats};

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No server with this id (404).
    #[error("no server with id {0}")]
    UnknownServer(ServerId),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// One server in [`FleetStatus`]. Has no secret field, so it can be serialised as is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerStatus {
    pub id: ServerId,
    pub url: String,
    pub state: ServerState,
    pub online: bool,
    /// A recent poll or create failed: no new meetings while a healthy server is left.
    pub suspect: bool,
    /// What this instance knows about the server is too old to act on (the leader's polls
    /// stopped arriving, or the database is out of reach): its meetings are not answered from
    /// memory.
    pub stale: bool,
    /// Meetings BBB reported at the last poll (all of them, ours or not).
    pub meetings: u32,
    /// Meetings of this gateway placed here.
    pub meetings_placed: usize,
    pub participants: u32,
    pub listeners: u32,
    pub voice: u32,
    pub videos: u32,
    pub largest_meeting: u32,
    /// Live load from the last poll (before weight and reservations), young meetings at their
    /// expected size.
    pub load: f64,
    /// Meetings placed since the last poll that saw them.
    pub reserved: u32,
    /// Participants those meetings are expected to hold.
    pub reserved_participants: u32,
    /// Placement score without capacities: (load + reservations) × weight; lower gets the next
    /// meeting (relative to the capacity where servers have one).
    pub score: f64,
    /// Participants the server can carry; `None`: unlimited.
    pub capacity: Option<u32>,
    /// Participants here and on their way: polled participants with young meetings at their
    /// expected size, plus the reservations.
    pub occupancy: u64,
    /// Places left within the capacity (negative: over it); `None`: unlimited.
    pub headroom: Option<i64>,
    /// `occupancy / capacity` (1.0 is full); `None`: unlimited.
    pub capacity_used: Option<f64>,
    pub weight: f64,
    pub tag: Option<String>,
    /// Exclusive to this world; `None`: shared.
    pub world: Option<String>,
    /// When the last poll was sent, whether it succeeded or not (ms since the Unix epoch).
    pub last_poll_at_ms: Option<i64>,
    /// When the last successful poll was sent.
    pub last_good_poll_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    /// `bbbVersion` from the server's API index, once it answered.
    pub bbb_version: Option<String>,
}

/// The coordinator's view of the fleet, for `/api/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    pub servers: Vec<ServerStatus>,
    /// Meetings in the coordinator's table (placed or not).
    pub meetings_known: usize,
    /// Meetings whose create is in flight right now.
    pub creates_in_flight: usize,
    /// The coordinator's counters (joins answered by sessions included in
    /// `joins_from_memory`).
    #[serde(flatten)]
    pub stats: CoordinatorStats,
    /// This instance polls the fleet; others with `false` follow its stored results.
    pub leader: bool,
}

/// Asks for a [`FleetStatus`].
#[derive(Debug, Clone, Copy)]
pub struct GetFleetStatus;

impl Message for GetFleetStatus {
    type Result = FleetStatus;
}

/// Re-reads the server registry now (instead of at the next poll tick).
#[derive(Debug, Clone, Copy)]
pub struct ReloadServers;

impl Message for ReloadServers {
    type Result = Result<(), DbError>;
}

/// Stores and applies a server's state.
#[derive(Debug, Clone, Copy)]
pub struct SetServerState {
    pub id: ServerId,
    pub state: ServerState,
}

impl Message for SetServerState {
    type Result = Result<(), AdminError>;
}

/// Stores and applies a server's capacity (`None`: unlimited).
#[derive(Debug, Clone, Copy)]
pub struct SetServerCapacity {
    pub id: ServerId,
    pub capacity: Option<u32>,
}

impl Message for SetServerCapacity {
    type Result = Result<(), AdminError>;
}

/// Ends (best effort) and forgets every meeting on a server, so each is re-created elsewhere
/// at its next join. Answers how many stored meetings were forgotten.
#[derive(Debug, Clone, Copy)]
pub struct PanicServer {
    pub id: ServerId,
}

impl Message for PanicServer {
    type Result = Result<usize, AdminError>;
}

/// Runs a poll round now and answers when it is done (tests, and after admin changes).
#[derive(Debug, Clone, Copy)]
pub struct PollNow;

impl Message for PollNow {
    type Result = ();
}

impl BbbCoordinator {
    /// The fleet status, without secrets.
    pub fn fleet_status(&self) -> FleetStatus {
        let age = self.max_reservation_age();
        let now = crate::db::now_ms();
        let servers = self
            .fleet
            .iter()
            .map(|s| {
                let c = s.candidate(now, age);
                let load = s.load();
                ServerStatus {
                    id: s.id(),
                    url: s.row().url.clone(),
                    state: s.state(),
                    online: s.online(),
                    suspect: s.suspect(),
                    stale: s.stale(),
                    meetings: load.meetings,
                    meetings_placed: self.meetings.count_on(s.id()),
                    participants: load.participants,
                    listeners: load.listeners,
                    voice: load.voice,
                    videos: load.videos,
                    largest_meeting: load.largest_meeting,
                    load: load.load,
                    reserved: c.reserved,
                    reserved_participants: c.reserved_participants,
                    score: c.score(),
                    capacity: c.capacity,
                    occupancy: c.occupied(),
                    headroom: c.headroom(),
                    capacity_used: c
                        .capacity
                        .map(|cap| c.occupied() as f64 / f64::from(cap.max(1))),
                    weight: s.row().weight,
                    tag: s.row().tag.clone(),
                    world: s.row().world_id.clone(),
                    last_poll_at_ms: s.last_poll_at_ms(),
                    last_good_poll_at_ms: s.last_good_poll_at_ms(),
                    last_error: s.last_error().map(str::to_string),
                    consecutive_failures: s.poll_failures(),
                    bbb_version: s.bbb_version().map(str::to_string),
                }
            })
            .collect();
        let mut stats = self.stats.clone();
        stats.joins_from_memory += self.joins.served();
        FleetStatus {
            servers,
            meetings_known: self.meetings.len(),
            creates_in_flight: self.inflight.len(),
            stats,
            leader: self.is_leader(),
        }
    }
}

impl Handler<GetFleetStatus> for BbbCoordinator {
    type Result = MessageResult<GetFleetStatus>;

    fn handle(&mut self, _msg: GetFleetStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.fleet_status())
    }
}

impl Handler<ReloadServers> for BbbCoordinator {
    type Result = ResponseActFuture<Self, Result<(), DbError>>;

    fn handle(&mut self, _msg: ReloadServers, _ctx: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let fut = async move { db.run(crate::db::servers::list).await };
        Box::pin(fut.into_actor(self).map(|res, act, _ctx| {
            act.apply_rows(res?);
            act.publish();
            Ok(())
        }))
    }
}

impl Handler<SetServerState> for BbbCoordinator {
    type Result = ResponseActFuture<Self, Result<(), AdminError>>;

    fn handle(&mut self, msg: SetServerState, _ctx: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let SetServerState { id, state } = msg;
        let fut = async move {
            db.run(move |c| crate::db::servers::set_state(c, id, state))
                .await
        };
        Box::pin(fut.into_actor(self).map(move |res, act, _ctx| {
            if !res? {
                return Err(AdminError::UnknownServer(id));
            }
            act.fleet.set_state(id, state);
            act.publish();
            log::info!("server {id} is now {state}");
            Ok(())
        }))
    }
}

impl Handler<SetServerCapacity> for BbbCoordinator {
    type Result = ResponseActFuture<Self, Result<(), AdminError>>;

    fn handle(&mut self, msg: SetServerCapacity, _ctx: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let SetServerCapacity { id, capacity } = msg;
        let fut = async move {
            db.run(move |c| crate::db::servers::set_capacity(c, id, capacity))
                .await
        };
        Box::pin(fut.into_actor(self).map(move |res, act, _ctx| {
            if !res? {
                return Err(AdminError::UnknownServer(id));
            }
            act.fleet.set_capacity(id, capacity);
            match capacity {
                Some(c) => log::info!("server {id} can now carry {c} participants"),
                None => log::info!("server {id} now has no capacity limit"),
            }
            Ok(())
        }))
    }
}

impl Handler<PanicServer> for BbbCoordinator {
    type Result = ResponseActFuture<Self, Result<usize, AdminError>>;

    fn handle(&mut self, msg: PanicServer, _ctx: &mut Self::Context) -> Self::Result {
        let id = msg.id;
        let db = self.db.clone();
        let fut = async move {
            db.run(move |c| {
                let forgotten = crate::db::servers::panic(c, id)?;
                let epoch = crate::db::servers::get(c, id)?.map(|r| r.panic_epoch);
                Ok(forgotten.zip(epoch))
            })
            .await
        };
        Box::pin(fut.into_actor(self).map(move |res, act, ctx| {
            let (forgotten, epoch) = res?.ok_or(AdminError::UnknownServer(id))?;
            // Our own panic: do not treat the epoch bump as someone else's at the next reload.
            act.panic_epochs.insert(id, epoch);
            act.fleet.panicked(id);
            let meeting_ids = act.meetings.detach_server(id);
            log::warn!(
                "server {id} panicked: forgetting {} meeting(s) and ending them there",
                meeting_ids.len()
            );
            for meeting_id in meeting_ids {
                act.end_on(id, meeting_id, ctx);
            }
            act.publish();
            Ok(forgotten)
        }))
    }
}

impl Handler<PollNow> for BbbCoordinator {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: PollNow, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.request_round(ctx, Some(tx));
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
