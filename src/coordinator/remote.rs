//! What other instances tell this one (PostgreSQL `NOTIFY`, see [`crate::db::changes`]): a
//! meeting BBB ended, a create they sent and what it confirmed, a placement that changed. And
//! the waiting for another instance's create: a join that finds one in flight waits for its
//! outcome instead of sending a second `create`.

use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::db::changes::Change;
use crate::db::meetings::MeetingRow;
use crate::db::now_ms;
use crate::ids::{MeetingKey, ServerId};

use super::ensure::{Attempts, MeetingSpec};
use super::{failed, BbbCoordinator, JoinResult, LocalActFut, SERVICE_UNAVAILABLE};

/// A change another instance made.
#[derive(Debug, Clone)]
pub struct RemoteChange(pub Change);

impl Message for RemoteChange {
    type Result = ();
}

/// The instant of a wall-clock time in ms (now, if it lies in the future).
pub(super) fn instant_of(ms: i64) -> Instant {
    let age = u64::try_from(now_ms().saturating_sub(ms)).unwrap_or(0);
    Instant::now()
        .checked_sub(Duration::from_millis(age))
        .unwrap_or_else(Instant::now)
}

impl BbbCoordinator {
    /// Wakes the joins waiting for another instance's create of `key`.
    fn wake_remote_waits(&mut self, key: &MeetingKey) {
        for waiter in self.remote_waits.remove(key).unwrap_or_default() {
            let _ = waiter.send(());
        }
    }

    /// Another instance is sending the create of `spec`'s meeting (its row says until when):
    /// wait for its outcome, then plan again (a confirmation it shared is then answered from
    /// memory; a failure or silence until its deadline lets this join try itself).
    pub(super) fn await_remote_create(
        &mut self,
        spec: Rc<MeetingSpec>,
        mut attempts: Attempts,
        row: MeetingRow,
        _ctx: &mut Context<Self>,
    ) -> LocalActFut<JoinResult> {
        let until = row.creating_until.unwrap_or(0);
        self.adopt_row(row);
        self.publish();
        let (tx, rx) = oneshot::channel();
        self.remote_waits
            .entry(spec.key.clone())
            .or_default()
            .push(tx);
        let lock_left = u64::try_from(until.saturating_sub(now_ms())).unwrap_or(0);
        let wait = attempts
            .deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(lock_left + 100));
        self.stats.creates_awaited_elsewhere += 1;
        attempts.waited_elsewhere = true;
        Box::pin(
            async move {
                let _ = tokio::time::timeout(wait, rx).await;
            }
            .into_actor(self)
            .then(move |(), act, ctx| act.attempt(spec, attempts, ctx)),
        )
    }

    /// Another instance's create, sent at `sent_at` (ms), confirmed the meeting (BBB id
    /// `meeting_id`) running on `server`. It claimed the placement before it created: follow it, then take the
    /// confirmation (unless this instance knows something newer).
    fn apply_confirmation(
        &mut self,
        key: &MeetingKey,
        meeting_id: &str,
        server: ServerId,
        create_time: i64,
        sent_at: i64,
    ) {
        // Also where this instance does not know the meeting: its reservation may be here.
        self.fleet.create_answered(server, meeting_id, now_ms());
        let sent = instant_of(sent_at);
        self.meetings.update(key, |e| {
            if e.changed_at() <= sent || e.server() == Some(server) {
                e.adopt(Some(server));
                e.confirm(server, create_time, sent);
            }
        });
    }

    /// The claim found a confirmation another instance's create stored after what this join
    /// knew (its `NOTIFY` may still be on the way): take it and plan again, which answers from
    /// memory when the confirmation is good here; otherwise the next claim no longer defers
    /// to it and this join creates itself.
    pub(super) fn take_stored_confirmation(
        &mut self,
        spec: Rc<MeetingSpec>,
        mut attempts: Attempts,
        row: MeetingRow,
        ctx: &mut Context<Self>,
    ) -> LocalActFut<JoinResult> {
        let (Some(server), Some(create_time), Some(sent_at)) =
            (row.server, row.create_time, row.confirmed_at)
        else {
            return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE))));
        };
        attempts.known_confirmation = sent_at;
        attempts.waited_elsewhere = true;
        self.stats.confirmations_taken_from_database += 1;
        self.apply_confirmation(&spec.key, &row.meeting_id, server, create_time, sent_at);
        self.publish();
        self.attempt(spec, attempts, ctx)
    }

    fn apply_remote(&mut self, change: Change) {
        match change {
            Change::Ended { key, issued_at } => {
                self.apply_end(&key, issued_at);
            }
            Change::Gone { key, polled_at } => {
                let sent = instant_of(polled_at);
                self.meetings.update(&key, |e| {
                    if e.changed_at() <= sent {
                        e.ended(None);
                    }
                });
            }
            Change::Confirmed {
                key,
                meeting_id,
                server,
                create_time,
                sent_at,
            } => {
                self.apply_confirmation(&key, &meeting_id, server, create_time, sent_at);
                self.wake_remote_waits(&key);
            }
            Change::CreateFailed { key } => self.wake_remote_waits(&key),
            Change::Reserved(r) => {
                self.fleet
                    .reserve(r.server, &r.meeting_id, r.expected, r.placed_at)
            }
            Change::Deleted { key } => self.forget(std::slice::from_ref(&key)),
            // Handled with the actor's context (see the handler).
            Change::Polled => {}
        }
        self.publish();
    }
}

impl Handler<RemoteChange> for BbbCoordinator {
    type Result = ();

    fn handle(&mut self, msg: RemoteChange, ctx: &mut Self::Context) {
        match msg.0 {
            // The leader stored new poll results: a follower reads them now, so it trusts the
            // fleet as soon as there is something to trust (at start, or after a new leader's
            // first poll) instead of a poll interval later.
            Change::Polled if !self.is_leader() => {
                self.polled_notice_at = Some(Instant::now());
                self.request_round(ctx, None);
            }
            Change::Polled => {}
            change => self.apply_remote(change),
        }
    }
}
