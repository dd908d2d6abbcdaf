//! Making sure a meeting runs before a join URL is handed out.
//!
//! A meeting confirmed running within `bbb.confirm_ttl_ms` on a trusted server is answered from
//! memory. Any other join re-issues `create` (idempotent), one per meeting however many joins
//! wait for it (single flight), and every waiting join gets the createTime that create
//! returned. The create goes to the meeting's server when that server is usable (it
//! re-confirms the meeting there); when that fails with a server fault, or the server is
//! unusable, the meeting is placed on the next best server within the same request. A FAILED
//! answer to a bad request is not retried. Every request is answered by its deadline. How a
//! create is sent and applied is in [`super::create`].

use std::rc::Rc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::db::meetings::MeetingRow;
use crate::db::servers::ServerState;
use crate::ids::{MeetingKey, ServerId};
use crate::join::params::{self, CreateTemplate};
use crate::world::{BbbRoomConfig, RoomSnapshot, WorldSnapshot};

use super::lifecycle::{MeetingEntry, MeetingState};
use super::placement::{self, Demand, NoEligibleServer};
use super::{failed, BbbCoordinator, JoinResult, LocalActFut, SERVICE_UNAVAILABLE};

/// Which meeting a join needs, and how to create it.
#[derive(Debug, Clone)]
pub(super) struct MeetingSpec {
    pub key: MeetingKey,
    pub world_id: String,
    pub room_id: Option<String>,
    pub call_id: Option<String>,
    pub template: CreateTemplate,
    /// Server id or URL the room prefers for new meetings.
    pub prefer_server: Option<String>,
    /// Participants the room's meeting will hold (`expected_participants`), if it says.
    pub expected_participants: Option<u32>,
}

impl MeetingSpec {
    pub fn room(world: &WorldSnapshot, room: &RoomSnapshot, bbb: &BbbRoomConfig) -> Self {
        MeetingSpec {
            key: MeetingKey::room(&world.id, &room.id),
            world_id: world.id.clone(),
            room_id: Some(room.id.clone()),
            call_id: None,
            template: params::room_create(world, room, bbb),
            prefer_server: bbb.prefer_server.clone(),
            expected_participants: bbb.expected_participants,
        }
    }

    pub fn call(world_id: &str, call_id: &str) -> Self {
        MeetingSpec {
            key: MeetingKey::call(call_id),
            world_id: world_id.to_string(),
            room_id: None,
            call_id: Some(call_id.to_string()),
            template: params::call_create(call_id),
            prefer_server: None,
            expected_participants: None,
        }
    }

    /// Participants a new instance of the meeting reserves room for.
    pub fn expected_size(&self) -> u32 {
        self.expected_participants
            .unwrap_or(placement::YOUNG_MEETING_PARTICIPANTS)
    }
}

/// Progress of one ensure.
#[derive(Debug, Clone)]
pub(super) struct Attempts {
    /// Servers not to try again.
    pub skip: Vec<ServerId>,
    /// Server faults so far.
    pub faults: u32,
    /// Claims lost to another instance that placed the meeting first.
    pub lost_claims: u32,
    /// Results discarded because the meeting or server changed meanwhile.
    pub discarded: u32,
    /// This join waited for another instance's create of the meeting.
    pub waited_elsewhere: bool,
    /// The newest confirmation stored by another instance's create (ms) this join has taken
    /// into account: a claim defers only to a newer one (see [`crate::db::meetings::claim`]).
    pub known_confirmation: i64,
    /// An operator moves the meeting here (see [`super::moves`]): no other server is tried.
    pub forced: Option<ServerId>,
    /// The answer is due by then.
    pub deadline: Instant,
}

impl Attempts {
    pub(super) fn new(deadline: Instant) -> Self {
        Attempts {
            skip: Vec::new(),
            faults: 0,
            lost_claims: 0,
            discarded: 0,
            waited_elsewhere: false,
            known_confirmation: 0,
            forced: None,
            deadline,
        }
    }
}

/// Claims lost, or results discarded, in a row before a join gives up (each needs yet another
/// change by someone else meanwhile).
pub(super) const MAX_RETRIES: u32 = 3;
/// Consecutive failed contacts after which a meeting's server is not even tried for a
/// re-confirmation: the meeting moves at once.
const DEAD_AFTER_FAILURES: u32 = 2;

/// What to do with a meeting that is not answerable from memory.
enum Plan {
    /// Send `create` to this server (its current one, or a newly chosen one).
    Create(ServerId),
    /// Its server is cordoned: ask whether it still runs there before moving it.
    Probe(ServerId),
}

impl BbbCoordinator {
    /// The join target of `spec`'s meeting, creating the meeting when needed.
    pub(super) fn join_target(
        &mut self,
        spec: MeetingSpec,
        deadline: Instant,
    ) -> LocalActFut<JoinResult> {
        if let Some((target, _)) = self.answerable(&spec.key, Instant::now()) {
            self.stats.joins_from_memory += 1;
            return Box::pin(fut::ready(Ok(target)));
        }
        if let Some(waiters) = self.inflight.get_mut(&spec.key) {
            let (tx, rx) = oneshot::channel();
            waiters.push(tx);
            self.stats.creates_saved_by_single_flight += 1;
            return Box::pin(
                async move {
                    rx.await
                        .unwrap_or_else(|_| Err(failed(SERVICE_UNAVAILABLE)))
                }
                .into_actor(self),
            );
        }
        self.lead(spec, Attempts::new(deadline))
    }

    /// Re-confirms a meeting sessions are joining before its confirmation expires (no join
    /// waits for it). Nothing happens when a create for it is in flight already.
    pub(super) fn reconfirm(
        &mut self,
        spec: MeetingSpec,
        deadline: Instant,
    ) -> LocalActFut<JoinResult> {
        if self.inflight.contains_key(&spec.key) {
            return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))));
        }
        self.lead(spec, Attempts::new(deadline))
    }

    /// This request runs the ensure and hands the result to everyone who waited meanwhile.
    pub(super) fn lead(
        &mut self,
        spec: MeetingSpec,
        attempts: Attempts,
    ) -> LocalActFut<JoinResult> {
        let key = spec.key.clone();
        self.inflight.insert(key.clone(), Vec::new());
        Box::pin(
            self.ensure(Rc::new(spec), attempts)
                .map(move |res, act, _ctx| {
                    for waiter in act.inflight.remove(&key).unwrap_or_default() {
                        let _ = waiter.send(res.clone());
                    }
                    act.publish();
                    res
                }),
        )
    }

    /// Reads (or stores) the meeting's row, then creates it. The row is read even when memory
    /// knows the meeting: another gateway instance may have placed or moved it since, and the
    /// database is where placements are decided. When the database is unreachable, a meeting
    /// memory knows still goes ahead on its known server.
    fn ensure(&mut self, spec: Rc<MeetingSpec>, attempts: Attempts) -> LocalActFut<JoinResult> {
        let fresh = MeetingEntry::new(
            spec.key.clone(),
            &spec.world_id,
            spec.room_id.as_deref(),
            spec.call_id.as_deref(),
        );
        let row = fresh.to_row();
        let db = self.db.clone();
        let stored = async move {
            db.run(
                move |c| match crate::db::meetings::get(c, &row.meeting_key)? {
                    Some(existing) => Ok(existing),
                    None => crate::db::meetings::insert_or_get(c, &row),
                },
            )
            .await
        };
        Box::pin(
            stored
                .into_actor(self)
                .then(move |res, act, ctx| match res {
                    Ok(row) => {
                        act.adopt_row(row);
                        act.publish();
                        act.attempt(spec, attempts, ctx)
                    }
                    Err(e) if act.meetings.get(&spec.key).is_some() => {
                        log::warn!(
                            "cannot re-read the meeting of {} (using memory): {e}",
                            spec.key
                        );
                        act.attempt(spec, attempts, ctx)
                    }
                    Err(e) => {
                        log::error!("cannot store the meeting of {}: {e}", spec.key);
                        Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))))
                    }
                }),
        )
    }

    /// Makes memory agree with a stored row: a meeting memory lacks is added, one stored with
    /// other ids replaces memory's, and one another instance placed elsewhere is followed there
    /// (unconfirmed until a create or a poll confirms it).
    pub(super) fn adopt_row(&mut self, row: MeetingRow) {
        let same_ids = self
            .meetings
            .get(&row.meeting_key)
            .map(|e| e.meeting_id == row.meeting_id);
        match same_ids {
            Some(true) => {
                let key = row.meeting_key.clone();
                self.meetings.update(&key, |e| {
                    if e.server() != row.server {
                        log::info!(
                            "{key} was placed on {:?} by another instance; following it",
                            row.server
                        );
                    }
                    e.adopt(row.server);
                });
            }
            _ => self.meetings.insert(MeetingEntry::from_row(row)),
        }
    }

    fn plan(&mut self, spec: &MeetingSpec, attempts: &Attempts) -> Result<Plan, NoEligibleServer> {
        if let Some(target) = attempts.forced {
            return if attempts.skip.contains(&target) {
                Err(NoEligibleServer {
                    message: format!("server {target} did not answer the create"),
                    full: false,
                })
            } else {
                Ok(Plan::Create(target))
            };
        }
        let entry = self.meetings.get(&spec.key);
        let ended = entry.is_some_and(|e| matches!(e.state(), MeetingState::Ended { .. }));
        let current = entry
            .and_then(MeetingEntry::server)
            .filter(|s| !attempts.skip.contains(s))
            .and_then(|s| self.fleet.get(s))
            .filter(|s| s.online() && s.contact_failures() < DEAD_AFTER_FAILURES);
        let candidates = self
            .fleet
            .candidates(crate::db::now_ms(), self.max_reservation_age());
        let expected = spec.expected_size();
        if let Some(s) = current {
            match s.state() {
                ServerState::Enabled if !ended => return Ok(Plan::Create(s.id())),
                // An ended meeting starts afresh: where it was, if it still fits there.
                ServerState::Enabled => {
                    let fits = candidates
                        .iter()
                        .find(|c| c.id == s.id())
                        .is_none_or(|c| c.has_room_for(expected));
                    if fits {
                        return Ok(Plan::Create(s.id()));
                    }
                }
                // A cordoned server keeps its running meetings but gets no new ones.
                ServerState::Cordoned if !ended => return Ok(Plan::Probe(s.id())),
                _ => {}
            }
        }
        let demand = Demand {
            world: &spec.world_id,
            prefer: spec.prefer_server.as_deref(),
            exclude: &attempts.skip,
            participants: expected,
            overflow: self.settings.placement_overflow,
        };
        let placed = placement::choose(&candidates, &demand, &mut self.rng)?;
        if placed.over_capacity {
            self.stats.placements_over_capacity += 1;
            let left = candidates
                .iter()
                .find(|c| c.id == placed.server)
                .and_then(|c| c.headroom())
                .unwrap_or(0);
            log::warn!(
                "no BBB server has room for {} ({expected} participants expected): placing it \
                 on server {}, the least full ({left} places left)",
                spec.key,
                placed.server
            );
        }
        Ok(Plan::Create(placed.server))
    }

    pub(super) fn attempt(
        &mut self,
        spec: Rc<MeetingSpec>,
        attempts: Attempts,
        ctx: &mut Context<Self>,
    ) -> LocalActFut<JoinResult> {
        // Confirmed by the other instance's create this join waited for.
        if attempts.waited_elsewhere {
            if let Some((target, _)) = self.answerable(&spec.key, Instant::now()) {
                return Box::pin(fut::ready(Ok(target)));
            }
        }
        if Instant::now() >= attempts.deadline {
            log::warn!("giving up on {}: its join deadline passed", spec.key);
            return Box::pin(fut::ready(Err(failed(
                "the video servers did not answer in time, please try again shortly",
            ))));
        }
        match self.plan(&spec, &attempts) {
            Ok(Plan::Create(server)) => self.create_on(spec, server, attempts),
            Ok(Plan::Probe(server)) => self.probe(spec, server, attempts, ctx),
            Err(NoEligibleServer { message, full }) => {
                if full {
                    self.stats.placements_refused_full += 1;
                }
                log::warn!("no BBB server for {}: {message}", spec.key);
                Box::pin(fut::ready(Err(failed(&message))))
            }
        }
    }
}
