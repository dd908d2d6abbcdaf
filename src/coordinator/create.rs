//! Sending a `create` (or, for a cordoned server, a `getMeetingInfo` probe) for a meeting
//! that is not answerable from memory, and applying the answer.
//!
//! Every create first claims the placement in the database, conditionally (only if the meeting
//! is still where this instance last saw it), also when it stays on its server, so two
//! instances never split a meeting. A create or probe applies only if neither the meeting's
//! nor the server's generation changed while it was in flight; otherwise its result is
//! discarded (and a meeting created where it no longer belongs is ended there) and the join
//! plans again within its deadline.

use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::bbb::{BbbError, CreateResponse};
use crate::db::changes::Change;
use crate::db::meetings::{Claim, Confirmation, CreateLock, MeetingRow};
use crate::db::reservations::SharedReservation;
use crate::end_callback::callback_url;
use crate::ids::{MeetingKey, ServerId};
use crate::join::JoinTarget;

use super::ensure::{Attempts, MeetingSpec, MAX_RETRIES};
use super::lifecycle::{MeetingEntry, MeetingState};
use super::{failed, with_timeout, BbbCoordinator, JoinResult, LocalActFut, SERVICE_UNAVAILABLE};

/// How a create attempt ended.
enum CreateOutcome {
    /// The create was sent at the instant given (the claim, if any, was won), the create lock
    /// taken when `locked`.
    Sent {
        sent_at: Instant,
        locked: bool,
        result: Result<CreateResponse, BbbError>,
    },
    /// Another instance placed the meeting elsewhere first: the stored row (`None`: deleted).
    LostClaim(Option<MeetingRow>),
    /// Another instance is sending this meeting's create right now (until the deadline in the
    /// row): its result is awaited instead of sending another.
    Busy(MeetingRow),
    /// Another instance's create confirmed the meeting after what this join knew: the stored
    /// row, whose confirmation is taken instead of sending another create.
    Confirmed(MeetingRow),
    /// The claim of a move could not be written: placing without it could split the meeting.
    ClaimFailed,
}

/// What a create or probe started from: its result applies only if both are unchanged.
#[derive(Debug, Clone, Copy)]
struct Started {
    generation: u64,
    server_generation: u64,
}

impl BbbCoordinator {
    /// What a create or probe of `key` on `server` starts from.
    fn start_point(&self, key: &MeetingKey, server: ServerId) -> Option<Started> {
        Some(Started {
            generation: self.meetings.get(key)?.generation(),
            server_generation: self.fleet.get(server)?.generation(),
        })
    }

    /// Whether what `started` recorded is still current.
    fn still_current(&self, key: &MeetingKey, server: ServerId, started: Started) -> bool {
        self.start_point(key, server).is_some_and(|now| {
            now.generation == started.generation
                && now.server_generation == started.server_generation
        })
    }

    pub(super) fn create_on(
        &mut self,
        spec: Rc<MeetingSpec>,
        server: ServerId,
        attempts: Attempts,
    ) -> LocalActFut<JoinResult> {
        let (Some(entry), Some(live), Some(started)) = (
            self.meetings.get(&spec.key),
            self.fleet.get(server),
            self.start_point(&spec.key, server),
        ) else {
            return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))));
        };
        let endpoint = live.endpoint().clone();
        let issued_at = crate::db::now_ms();
        let callback =
            self.settings.end_callbacks.as_ref().map(|cb| {
                callback_url(&cb.public_url, &cb.key.token(&entry.meeting_id, issued_at))
            });
        let request = spec.template.request(
            &entry.meeting_id,
            &entry.attendee_pw,
            &entry.moderator_pw,
            callback,
        );
        let meeting_id = entry.meeting_id.clone();
        let previous = entry.server();
        let moving = previous != Some(server);
        let restarting = matches!(entry.state(), MeetingState::Ended { .. });
        if previous.is_some() && !moving {
            self.stats.reconfirm_creates += 1;
        }
        let shared = self.db.backend() == crate::db::Backend::Postgres;
        let mut reservation = None;
        if moving || restarting {
            // A new instance of the meeting: room is held for the people expected in it, here
            // and (once the claim is won) on every other instance.
            let r = SharedReservation {
                server,
                meeting_id: meeting_id.clone(),
                expected: spec.expected_size(),
                placed_at: crate::db::now_ms(),
            };
            self.fleet
                .reserve(server, &meeting_id, r.expected, r.placed_at);
            reservation = shared.then_some(r);
        }
        let db = self.db.clone();
        let key = spec.key.clone();
        let api = self.api.clone();
        let timeout = self.call_timeout(attempts.deadline);
        // Where other instances may create too, the create is announced with the claim: they
        // wait for it (until a little after it must have been answered) instead of sending
        // their own.
        let lock_until = issued_at
            + i64::try_from((timeout + Duration::from_secs(1)).as_millis()).unwrap_or(i64::MAX);
        let instance = self.settings.instance.clone();
        let known = attempts
            .known_confirmation
            .max(self.stored_confirmation_floor(entry, issued_at));
        let fut = async move {
            let claimed = db
                .run(move |c| {
                    let lock = shared.then_some(CreateLock {
                        instance: &instance,
                        until_ms: lock_until,
                    });
                    let claim =
                        crate::db::meetings::claim(c, &key, previous, Some(server), lock, known)?;
                    if let (Claim::Won(_), Some(r)) = (&claim, &reservation) {
                        if let Err(e) = crate::db::reservations::record(c, r) {
                            log::warn!("cannot share a placement's reservation: {e}");
                        }
                    }
                    Ok(claim)
                })
                .await;
            let locked = match claimed {
                Ok(Claim::Won(_)) => shared,
                Ok(Claim::Lost(row)) => return CreateOutcome::LostClaim(Some(row)),
                Ok(Claim::Unknown) => return CreateOutcome::LostClaim(None),
                Ok(Claim::Busy(row)) => return CreateOutcome::Busy(row),
                Ok(Claim::Confirmed(row)) => return CreateOutcome::Confirmed(row),
                Err(e) if moving => {
                    log::error!("cannot claim a meeting's placement on server {server}: {e}");
                    return CreateOutcome::ClaimFailed;
                }
                Err(e) => {
                    log::warn!("cannot confirm a meeting's placement on server {server} (re-creating it there anyway): {e}");
                    false
                }
            };
            let sent_at = Instant::now();
            let result = with_timeout(timeout, api.create(&endpoint, &request)).await;
            CreateOutcome::Sent {
                sent_at,
                locked,
                result,
            }
        };
        Box::pin(fut.into_actor(self).then(move |outcome, act, ctx| {
            let (sent_at, locked, res) = match outcome {
                CreateOutcome::Sent {
                    sent_at,
                    locked,
                    result,
                } => (sent_at, locked, result),
                CreateOutcome::LostClaim(row) => {
                    act.fleet.unreserve(server, &meeting_id);
                    return act.lost_claim(spec, attempts, row, ctx);
                }
                CreateOutcome::Busy(row) => {
                    act.fleet.unreserve(server, &meeting_id);
                    return act.await_remote_create(spec, attempts, row, ctx);
                }
                CreateOutcome::Confirmed(row) => {
                    act.fleet.unreserve(server, &meeting_id);
                    return act.take_stored_confirmation(spec, attempts, row, ctx);
                }
                CreateOutcome::ClaimFailed => {
                    act.fleet.unreserve(server, &meeting_id);
                    return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))));
                }
            };
            act.stats.creates_sent += 1;
            let created = CreateResult {
                server,
                previous,
                meeting_id,
                started,
                sent_at,
                issued_at,
            };
            act.finish_create(&spec.key, &created, locked, res.as_ref().ok(), ctx);
            act.after_create(spec, created, attempts, res, ctx)
        }))
    }

    /// Another instance placed the meeting first: adopt its placement and plan again, which
    /// creates (idempotently) on the winner's server when it is usable here too.
    fn lost_claim(
        &mut self,
        spec: Rc<MeetingSpec>,
        mut attempts: Attempts,
        row: Option<MeetingRow>,
        ctx: &mut Context<Self>,
    ) -> LocalActFut<JoinResult> {
        attempts.lost_claims += 1;
        let Some(row) = row else {
            return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))));
        };
        log::info!(
            "{} was placed on {:?} by another instance first; joining it there",
            spec.key,
            row.server
        );
        self.adopt_row(row);
        self.publish();
        if attempts.lost_claims > MAX_RETRIES {
            return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))));
        }
        self.attempt(spec, attempts, ctx)
    }

    fn after_create(
        &mut self,
        spec: Rc<MeetingSpec>,
        created: CreateResult,
        mut attempts: Attempts,
        res: Result<CreateResponse, BbbError>,
        ctx: &mut Context<Self>,
    ) -> LocalActFut<JoinResult> {
        let CreateResult {
            server,
            previous,
            ref meeting_id,
            started,
            ..
        } = created;
        self.record_contact(server, res.as_ref().map(|_| ()));
        if res.is_ok() {
            self.fleet
                .create_answered(server, meeting_id, crate::db::now_ms());
        }
        let current = self.still_current(&spec.key, server, started);
        let outcome = match res {
            Ok(reply) if current => {
                if let Some(old) = previous.filter(|p| *p != server) {
                    self.stats.meetings_moved += 1;
                    log::info!(
                        "meeting of {} moved from server {old} to {server}",
                        spec.key
                    );
                    // Moving a meeting ends it where it was (best effort; if that server is
                    // down, the poller ends it when it answers again).
                    self.end_on(old, meeting_id.clone(), ctx);
                }
                Ok(self.confirm_created(&spec.key, &created, &reply))
            }
            Ok(_) => {
                // The meeting or the server changed while the create was in flight (panic,
                // move, end callback, new secret): this result is void.
                self.stats.results_discarded += 1;
                self.fleet.unreserve(server, meeting_id);
                let belongs = self
                    .meetings
                    .get(&spec.key)
                    .is_some_and(|e| e.server() == Some(server));
                if !belongs {
                    log::info!(
                        "{} changed while it was being created on server {server}; ending it there",
                        spec.key
                    );
                    self.end_on(server, meeting_id.clone(), ctx);
                }
                attempts.discarded += 1;
                let server_changed = self
                    .fleet
                    .get(server)
                    .is_none_or(|s| s.generation() != started.server_generation);
                if !belongs || server_changed {
                    attempts.skip.push(server);
                }
                Err(attempts)
            }
            Err(e) if e.is_server_fault() => {
                self.stats.create_failures += 1;
                self.fleet.unreserve(server, meeting_id);
                attempts.skip.push(server);
                attempts.faults += 1;
                log::warn!("create of {} on server {server} failed: {e}", spec.key);
                if attempts.faults > self.settings.create_retry_servers {
                    self.publish();
                    return Box::pin(fut::ready(Err(failed(
                        "the video servers did not answer, please try again shortly",
                    ))));
                }
                Err(attempts)
            }
            Err(e) => {
                self.stats.create_failures += 1;
                self.fleet.unreserve(server, meeting_id);
                log::warn!("server {server} refused to create {}: {e}", spec.key);
                self.publish();
                return Box::pin(fut::ready(Err(failed("BBB refused to create the meeting"))));
            }
        };
        self.publish();
        match outcome {
            Ok(target) => Box::pin(fut::ready(target)),
            Err(attempts) if attempts.discarded > MAX_RETRIES => {
                Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))))
            }
            Err(attempts) => self.attempt(spec, attempts, ctx),
        }
    }

    /// The create answered SUCCESS: the meeting runs there as the instance BBB named,
    /// confirmed when the create was sent. A create that started the instance (no
    /// `duplicateWarning`) also makes its end-callback token the one that counts.
    fn confirm_created(
        &mut self,
        key: &MeetingKey,
        created: &CreateResult,
        reply: &CreateResponse,
    ) -> JoinResult {
        self.meetings.update(key, |e| {
            e.confirm(created.server, reply.create_time, created.sent_at);
            if !reply.duplicate {
                e.started_instance(created.issued_at);
            }
        });
        self.target_of(key)
    }

    /// Records the create's outcome in the database in the background (its createTime, the
    /// instance it started) and releases its lock; tells the other instances, who may be
    /// waiting for it and whose sessions may then answer from the confirmation.
    fn finish_create(
        &mut self,
        key: &MeetingKey,
        created: &CreateResult,
        locked: bool,
        reply: Option<&CreateResponse>,
        ctx: &mut Context<Self>,
    ) {
        let outcome = reply.map(|r| Confirmation {
            server: created.server,
            create_time: r.create_time,
            sent_at: created.issued_at,
            started: (!r.duplicate).then_some(created.issued_at),
        });
        if outcome.is_none() && !locked {
            return;
        }
        let change = match reply {
            Some(r) => Change::Confirmed {
                key: key.clone(),
                meeting_id: created.meeting_id.clone(),
                server: created.server,
                create_time: r.create_time,
                sent_at: created.issued_at,
            },
            None => Change::CreateFailed { key: key.clone() },
        };
        let db = self.db.clone();
        let key = key.clone();
        let instance = self.settings.instance.clone();
        let store = async move {
            let written = db
                .run(move |c| {
                    crate::db::meetings::finish_create(c, &key, &instance, outcome)?;
                    crate::db::changes::notify(c, &change)
                })
                .await;
            if let Err(e) = written {
                log::warn!("cannot record a create's outcome: {e}");
            }
        };
        self.spawn_background(ctx, Box::pin(store.into_actor(self)));
    }

    /// The join target of a meeting just confirmed running.
    fn target_of(&self, key: &MeetingKey) -> JoinResult {
        let entry = self
            .meetings
            .get(key)
            .ok_or_else(|| failed(SERVICE_UNAVAILABLE))?;
        let (server, create_time, _) = entry
            .state()
            .running()
            .ok_or_else(|| failed(SERVICE_UNAVAILABLE))?;
        let live = self
            .fleet
            .get(server)
            .ok_or_else(|| failed(SERVICE_UNAVAILABLE))?;
        Ok(JoinTarget {
            server,
            endpoint: live.endpoint().clone(),
            meeting_id: entry.meeting_id.clone(),
            attendee_pw: entry.attendee_pw.clone(),
            moderator_pw: entry.moderator_pw.clone(),
            create_time: (create_time > 0).then_some(create_time),
        })
    }

    /// The meeting's server is cordoned: keep it there if it still runs, else move it.
    pub(super) fn probe(
        &mut self,
        spec: Rc<MeetingSpec>,
        server: ServerId,
        mut attempts: Attempts,
        _ctx: &mut Context<Self>,
    ) -> LocalActFut<JoinResult> {
        let (Some(entry), Some(live), Some(started)) = (
            self.meetings.get(&spec.key),
            self.fleet.get(server),
            self.start_point(&spec.key, server),
        ) else {
            return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))));
        };
        let info = self
            .api
            .get_meeting_info(live.endpoint(), &entry.meeting_id);
        let timeout = self.call_timeout(attempts.deadline);
        let sent_at = Instant::now();
        Box::pin(
            async move { with_timeout(timeout, info).await }
                .into_actor(self)
                .then(move |res, act, ctx| -> LocalActFut<JoinResult> {
                    act.record_contact(server, res.as_ref().map(|_| ()));
                    let current = act.still_current(&spec.key, server, started);
                    match res {
                        Ok(Some(info)) if current && info.create_time > 0 => {
                            act.meetings.update(&spec.key, |e| {
                                e.confirm(server, info.create_time, sent_at)
                            });
                            let target = act.target_of(&spec.key);
                            act.publish();
                            return Box::pin(fut::ready(target));
                        }
                        Ok(_) if !current => {
                            // The meeting or server changed meanwhile: plan again from what
                            // is known now.
                            act.stats.results_discarded += 1;
                            attempts.discarded += 1;
                            act.publish();
                            if attempts.discarded > MAX_RETRIES {
                                return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))));
                            }
                            return act.attempt(spec, attempts, ctx);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            log::warn!("getMeetingInfo on cordoned server {server} failed: {e}");
                            if e.is_server_fault() {
                                attempts.faults += 1;
                            }
                        }
                    }
                    act.publish();
                    attempts.skip.push(server);
                    act.attempt(spec, attempts, ctx)
                }),
        )
    }
}

impl BbbCoordinator {
    /// The time (ms) a confirmation another instance stored must be newer than for a join to
    /// take it instead of creating: it must be within the TTL, made since this coordinator
    /// started (a restart trusts nothing stored before), newer than memory's confirmation
    /// (which may be this instance's own, stored) and than an end memory learned of.
    fn stored_confirmation_floor(&self, entry: &MeetingEntry, now_ms: i64) -> i64 {
        let ttl_ms = i64::try_from(self.settings.confirm_ttl.as_millis()).unwrap_or(i64::MAX);
        // An instant as ms, rounded up: a time stamped at that instant is never newer.
        let ms_of = |at: Instant| {
            let age = i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX);
            now_ms.saturating_sub(age).saturating_add(1)
        };
        let memory = match entry.state() {
            MeetingState::Running { confirmed_at, .. } => ms_of(confirmed_at),
            MeetingState::Ended { .. } => ms_of(entry.changed_at()),
            MeetingState::Placed { .. } | MeetingState::Unplaced => 0,
        };
        memory
            .max(now_ms.saturating_sub(ttl_ms))
            .max(self.started_ms)
    }
}

/// What a create was sent with, for applying its answer.
struct CreateResult {
    server: ServerId,
    previous: Option<ServerId>,
    meeting_id: String,
    started: Started,
    sent_at: Instant,
    /// Issue time of the end-callback token the create carried.
    issued_at: i64,
}
