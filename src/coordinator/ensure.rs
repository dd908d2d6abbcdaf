//! Making sure a meeting exists before a join URL is handed out.
//!
//! Fast path: the meeting is known to be running on a server that serves it → the target comes
//! from memory (no create, no database). Otherwise one `create` (idempotent) is sent, shared by
//! every join arriving meanwhile (single flight). A create failing with a server fault marks the
//! server suspect and is retried on the next best server, moving the meeting; a FAILED answer to
//! a bad request is not retried.

use std::rc::Rc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::bbb::{BbbError, CreateResponse};
use crate::db::servers::ServerState;
use crate::world::{BbbRoomConfig, RoomSnapshot, WorldSnapshot};

use super::join_url::{self, CreateTemplate};
use super::meetings::{self, JoinTarget, MeetingEntry};
use super::placement::{self, NoEligibleServer};
use super::{failed, with_timeout, BbbCoordinator, JoinResult, LocalActFut};

const SERVICE_UNAVAILABLE: &str = "the video service is unavailable, please try again shortly";

/// Which meeting a join needs, and how to create it.
#[derive(Debug, Clone)]
pub(super) struct MeetingSpec {
    pub key: String,
    pub world_id: String,
    pub room_id: Option<String>,
    pub call_id: Option<String>,
    pub template: CreateTemplate,
    /// Server id or URL the room prefers for new meetings.
    pub prefer_server: Option<String>,
}

impl MeetingSpec {
    pub fn room(world: &WorldSnapshot, room: &RoomSnapshot, bbb: &BbbRoomConfig) -> Self {
        MeetingSpec {
            key: meetings::room_key(&world.id, &room.id),
            world_id: world.id.clone(),
            room_id: Some(room.id.clone()),
            call_id: None,
            template: join_url::room_create(world, room, bbb),
            prefer_server: bbb.prefer_server.clone(),
        }
    }

    pub fn call(world_id: &str, call_id: &str) -> Self {
        MeetingSpec {
            key: meetings::call_key(call_id),
            world_id: world_id.to_string(),
            room_id: None,
            call_id: Some(call_id.to_string()),
            template: join_url::call_create(call_id),
            prefer_server: None,
        }
    }
}

/// Progress of one ensure: servers not to try again, and how many server faults so far.
#[derive(Debug, Clone, Default)]
struct Attempts {
    skip: Vec<i32>,
    faults: u32,
    /// Claims lost to another instance that placed the meeting first.
    lost_claims: u32,
}

/// Claims lost in a row before a join gives up (each loss adopts the winner's placement, so a
/// second loss needs yet another instance moving the meeting meanwhile).
const MAX_LOST_CLAIMS: u32 = 3;

/// How a create attempt ended.
enum CreateOutcome {
    /// The create was sent (the claim, if any, was won).
    Sent(Result<CreateResponse, BbbError>),
    /// Another instance placed the meeting first: the stored row (`None`: deleted meanwhile).
    LostClaim(Option<crate::db::meetings::MeetingRow>),
    /// The claim could not be written: placing without it could split the meeting.
    ClaimFailed,
}

/// What to do with a meeting that is not known to be running.
enum Plan {
    /// Send `create` to this server (its current one, or a newly chosen one).
    Create(i32),
    /// Its server is cordoned: ask whether it still runs there before moving it.
    Probe(i32),
}

impl BbbCoordinator {
    /// The join target of `spec`'s meeting, creating the meeting when needed.
    pub(super) fn join_target(&mut self, spec: MeetingSpec) -> LocalActFut<JoinResult> {
        if let Some(target) = self.meetings.known_running(&spec.key, &self.fleet) {
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
        // This join leads: it runs the ensure and hands the result to everyone who waited.
        let key = spec.key.clone();
        self.inflight.insert(key.clone(), Vec::new());
        Box::pin(self.ensure(Rc::new(spec)).map(move |res, act, _ctx| {
            for waiter in act.inflight.remove(&key).unwrap_or_default() {
                let _ = waiter.send(res.clone());
            }
            res
        }))
    }

    /// Reads (or stores) the meeting's row, then creates it. The row is read even when memory
    /// knows the meeting: another gateway instance may have placed or moved it since, and the
    /// database is where placements are decided (see [`crate::db::meetings::claim`]). When the
    /// database is unreachable, a meeting memory knows still goes ahead on its known server.
    fn ensure(&mut self, spec: Rc<MeetingSpec>) -> LocalActFut<JoinResult> {
        let fresh = MeetingEntry::new(
            &spec.key,
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
                .then(move |res, act, _ctx| match res {
                    Ok(row) => {
                        act.adopt_row(row);
                        act.attempt(spec, Attempts::default())
                    }
                    Err(e) if act.meetings.get(&spec.key).is_some() => {
                        log::warn!(
                            "cannot re-read the meeting of {} (using memory): {e}",
                            spec.key
                        );
                        act.attempt(spec, Attempts::default())
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
    /// (its liveness is then unknown until a create or a poll confirms it).
    pub(super) fn adopt_row(&mut self, row: crate::db::meetings::MeetingRow) {
        let known_server = self
            .meetings
            .get(&row.meeting_key)
            .filter(|e| e.meeting_id == row.meeting_id)
            .map(|e| e.server);
        match known_server {
            Some(server) if server == row.server() => {}
            Some(_) => {
                log::info!(
                    "{} was placed on {:?} by another instance; following it",
                    row.meeting_key,
                    row.server()
                );
                if let Some(mut entry) = self.meetings.get_mut(&row.meeting_key) {
                    entry.server = row.server();
                    entry.live = false;
                    entry.confirmed_at = None;
                }
            }
            None => self.meetings.insert(MeetingEntry::from_row(row)),
        }
    }

    fn plan(&mut self, spec: &MeetingSpec, attempts: &Attempts) -> Result<Plan, NoEligibleServer> {
        let current = self
            .meetings
            .get(&spec.key)
            .and_then(|e| e.server)
            .filter(|s| !attempts.skip.contains(s))
            .and_then(|s| self.fleet.get(s));
        if let Some(s) = current {
            if s.online && !s.suspect && s.state() == ServerState::Enabled {
                return Ok(Plan::Create(s.id()));
            }
            if s.online && s.state() == ServerState::Cordoned {
                return Ok(Plan::Probe(s.id()));
            }
        }
        let candidates = self.fleet.candidates(self.max_reservation_age());
        placement::choose(
            &candidates,
            &spec.world_id,
            spec.prefer_server.as_deref(),
            &attempts.skip,
            &mut self.rng,
        )
        .map(Plan::Create)
    }

    fn attempt(&mut self, spec: Rc<MeetingSpec>, attempts: Attempts) -> LocalActFut<JoinResult> {
        match self.plan(&spec, &attempts) {
            Ok(Plan::Create(server)) => self.create_on(spec, server, attempts),
            Ok(Plan::Probe(server)) => self.probe(spec, server, attempts),
            Err(NoEligibleServer(message)) => {
                log::warn!("no BBB server for {}: {message}", spec.key);
                Box::pin(fut::ready(Err(failed(&message))))
            }
        }
    }

    fn create_on(
        &mut self,
        spec: Rc<MeetingSpec>,
        server: i32,
        attempts: Attempts,
    ) -> LocalActFut<JoinResult> {
        let (Some(entry), Some(live)) = (self.meetings.get(&spec.key), self.fleet.get(server))
        else {
            return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))));
        };
        let endpoint = live.endpoint.clone();
        let request =
            spec.template
                .request(&entry.meeting_id, &entry.attendee_pw, &entry.moderator_pw);
        let meeting_id = entry.meeting_id.clone();
        let previous = entry.server;
        // Claim the new placement before the create: the database decides between instances
        // racing to place the meeting, and a crash in between still knows where it may run.
        let claim = (previous != Some(server)).then(|| (self.db.clone(), spec.key.clone()));
        self.fleet.reserve(server, &meeting_id);
        let api = self.api.clone();
        let timeout = self.settings.request_timeout;
        let fut = async move {
            if let Some((db, key)) = claim {
                match db
                    .run(move |c| crate::db::meetings::claim(c, &key, previous, server))
                    .await
                {
                    Ok(Some(row)) if row.server() == Some(server) => {}
                    Ok(row) => return CreateOutcome::LostClaim(row),
                    Err(e) => {
                        log::error!("cannot claim a meeting's placement on server {server}: {e}");
                        return CreateOutcome::ClaimFailed;
                    }
                }
            }
            CreateOutcome::Sent(with_timeout(timeout, api.create(&endpoint, &request)).await)
        };
        Box::pin(fut.into_actor(self).then(move |outcome, act, _ctx| {
            let res = match outcome {
                CreateOutcome::Sent(res) => res,
                CreateOutcome::LostClaim(row) => {
                    return act.lost_claim(spec, server, meeting_id, attempts, row)
                }
                CreateOutcome::ClaimFailed => {
                    act.fleet.unreserve(server, &meeting_id);
                    return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))));
                }
            };
            act.stats.creates_sent += 1;
            act.after_create(spec, server, previous, meeting_id, attempts, res)
        }))
    }

    /// Another instance placed the meeting first: adopt its placement and plan again, which
    /// creates (idempotently) on the winner's server when it is eligible here too.
    fn lost_claim(
        &mut self,
        spec: Rc<MeetingSpec>,
        server: i32,
        meeting_id: String,
        mut attempts: Attempts,
        row: Option<crate::db::meetings::MeetingRow>,
    ) -> LocalActFut<JoinResult> {
        self.fleet.unreserve(server, &meeting_id);
        attempts.lost_claims += 1;
        let Some(row) = row else {
            return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))));
        };
        log::info!(
            "{} was placed on {:?} by another instance first; joining it there",
            spec.key,
            row.server()
        );
        self.adopt_row(row);
        if attempts.lost_claims > MAX_LOST_CLAIMS {
            return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))));
        }
        self.attempt(spec, attempts)
    }

    fn after_create(
        &mut self,
        spec: Rc<MeetingSpec>,
        server: i32,
        previous: Option<i32>,
        meeting_id: String,
        mut attempts: Attempts,
        res: Result<CreateResponse, BbbError>,
    ) -> LocalActFut<JoinResult> {
        match res {
            Ok(reply) => {
                if previous.is_some_and(|p| p != server) {
                    self.stats.meetings_moved += 1;
                    if let Some(old) = previous {
                        log::info!(
                            "meeting of {} moved from server {old} to {server}",
                            spec.key
                        );
                        // Moving a meeting ends it where it was (best effort; if that server is
                        // down, the poller ends it when it answers again).
                        self.end_on(old, meeting_id);
                    }
                }
                Box::pin(fut::ready(self.confirm(
                    &spec.key,
                    server,
                    reply.create_time,
                )))
            }
            Err(e) if e.is_server_fault() => {
                self.stats.create_failures += 1;
                self.fleet.mark_suspect(server);
                self.fleet.unreserve(server, &meeting_id);
                attempts.skip.push(server);
                attempts.faults += 1;
                log::warn!("create of {} on server {server} failed: {e}", spec.key);
                if attempts.faults > self.settings.create_retry_servers {
                    return Box::pin(fut::ready(Err(failed(
                        "the video servers did not answer, please try again shortly",
                    ))));
                }
                self.attempt(spec, attempts)
            }
            Err(e) => {
                self.stats.create_failures += 1;
                self.fleet.unreserve(server, &meeting_id);
                log::warn!("server {server} refused to create {}: {e}", spec.key);
                Box::pin(fut::ready(Err(failed("BBB refused to create the meeting"))))
            }
        }
    }

    /// The meeting exists on `server` with `create_time`: remember it, persist a changed
    /// createTime in the background, and return the join target.
    fn confirm(&mut self, key: &str, server: i32, create_time: i64) -> JoinResult {
        let endpoint = self
            .fleet
            .get(server)
            .map(|s| s.endpoint.clone())
            .ok_or_else(|| failed(SERVICE_UNAVAILABLE))?;
        let mut entry = self
            .meetings
            .get_mut(key)
            .ok_or_else(|| failed(SERVICE_UNAVAILABLE))?;
        entry.server = Some(server);
        entry.live = true;
        entry.confirmed_at = Some(Instant::now());
        if create_time > 0 && entry.create_time != Some(create_time) {
            entry.create_time = Some(create_time);
            let db = self.db.clone();
            let key = key.to_string();
            actix::spawn(async move {
                if let Err(e) = db
                    .run(move |c| crate::db::meetings::set_create_time(c, &key, create_time))
                    .await
                {
                    log::warn!("cannot store a meeting's createTime: {e}");
                }
            });
        }
        let target = JoinTarget::new(&entry, server, endpoint);
        drop(entry);
        // Publish at once, so the crowd behind this join is answered by the sessions.
        self.meetings.known_running(key, &self.fleet);
        Ok(target)
    }

    /// The meeting's server is cordoned: keep it there if it still runs, else move it.
    fn probe(
        &mut self,
        spec: Rc<MeetingSpec>,
        server: i32,
        mut attempts: Attempts,
    ) -> LocalActFut<JoinResult> {
        let (Some(entry), Some(live)) = (self.meetings.get(&spec.key), self.fleet.get(server))
        else {
            return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))));
        };
        let info = self.api.get_meeting_info(&live.endpoint, &entry.meeting_id);
        let timeout = self.settings.request_timeout;
        Box::pin(
            async move { with_timeout(timeout, info).await }
                .into_actor(self)
                .then(move |res, act, _ctx| match res {
                    Ok(Some(info)) => {
                        Box::pin(fut::ready(act.confirm(&spec.key, server, info.create_time)))
                    }
                    other => {
                        if let Err(e) = &other {
                            log::warn!("getMeetingInfo on cordoned server {server} failed: {e}");
                            if e.is_server_fault() {
                                act.fleet.mark_suspect(server);
                                attempts.faults += 1;
                            }
                        }
                        attempts.skip.push(server);
                        act.attempt(spec, attempts)
                    }
                }),
        )
    }
}
