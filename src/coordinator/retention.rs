//! Retention, run by the poll leader: deletes in small batches what has been idle longer than
//! `retention.days` (see [`crate::db::retention`]), tells the other instances, and forgets it
//! in memory too, so storage and memory follow the meetings that matter, not all history.

use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::db::changes::Change;
use crate::db::retention::{purge_batch, Purged};
use crate::ids::MeetingKey;

use super::lifecycle::MeetingState;

use super::{BbbCoordinator, LocalActFut};

/// How often the leader looks for what to delete.
pub(super) const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Rows of each kind per batch (one short transaction each).
const BATCH: i64 = 500;
/// The pause between two batches, so other writers get their turn.
const PAUSE: Duration = Duration::from_millis(50);
/// How long shared placement reservations are kept (ms).
const RESERVATIONS_KEPT_MS: i64 = 3_600_000;
/// How long a meeting BBB ended stays in memory (its row stays in the database; a later join
/// reads it from there, as after a restart).
pub(super) const ENDED_KEPT: Duration = Duration::from_secs(600);
/// How long a loaded call stays cached (calls never change; a later join reloads it).
pub(super) const CALL_CACHE_TTL: Duration = Duration::from_secs(3600);

/// Runs a retention pass now (on whichever instance gets it) and answers what it deleted.
#[derive(Debug, Clone, Copy)]
pub struct PurgeNow;

/// Totals of a retention pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PurgeReport {
    pub meetings: usize,
    pub calls: usize,
    pub users: usize,
}

impl Message for PurgeNow {
    type Result = PurgeReport;
}

impl BbbCoordinator {
    /// The retention timer: the leader starts a pass unless one is running.
    pub(super) fn retention_tick(&mut self, ctx: &mut Context<Self>) {
        if !self.is_leader() || self.purging {
            return;
        }
        self.purging = true;
        let pass = self.purge_pass(PurgeReport::default());
        ctx.spawn(pass.map(|report, act, _ctx| {
            act.purging = false;
            if report != PurgeReport::default() {
                log::info!(
                    "retention deleted {} meeting(s), {} call(s), {} anonymous user(s)",
                    report.meetings,
                    report.calls,
                    report.users
                );
            }
        }));
    }

    /// Deletes batch after batch until a batch finds nothing.
    fn purge_pass(&mut self, so_far: PurgeReport) -> LocalActFut<PurgeReport> {
        let cutoff = crate::db::now_ms() - i64::from(self.settings.retention_days) * 86_400_000;
        let db = self.db.clone();
        let first = so_far == PurgeReport::default();
        let batch = async move {
            db.run(move |c| {
                if first {
                    // Reservations matter while their meetings are young; an hour is plenty.
                    let old = crate::db::now_ms() - RESERVATIONS_KEPT_MS;
                    crate::db::reservations::delete_before(c, old)?;
                }
                let purged = purge_batch(c, cutoff, BATCH)?;
                for key in &purged.meetings {
                    crate::db::changes::notify(c, &Change::Deleted { key: key.clone() })?;
                }
                Ok(purged)
            })
            .await
        };
        Box::pin(
            batch
                .into_actor(self)
                .then(move |res, act, _ctx| -> LocalActFut<PurgeReport> {
                    let purged: Purged = match res {
                        Ok(p) => p,
                        Err(e) => {
                            log::warn!("retention stopped: {e}");
                            return Box::pin(fut::ready(so_far));
                        }
                    };
                    if purged.is_empty() {
                        return Box::pin(fut::ready(so_far));
                    }
                    let report = PurgeReport {
                        meetings: so_far.meetings + purged.meetings.len(),
                        calls: so_far.calls + purged.calls.len(),
                        users: so_far.users + purged.users,
                    };
                    act.forget(&purged.meetings);
                    for call in &purged.calls {
                        act.calls.remove(call);
                    }
                    Box::pin(
                        async move { actix_web::rt::time::sleep(PAUSE).await }
                            .into_actor(act)
                            .then(move |(), act, _ctx| act.purge_pass(report)),
                    )
                }),
        )
    }

    /// Forgets deleted meetings in memory, with the cached call of a call's meeting (and
    /// withdraws them from the published table).
    pub(super) fn forget(&mut self, keys: &[MeetingKey]) {
        for key in keys {
            if let Some(call) = self.meetings.get(key).and_then(|e| e.call_id.clone()) {
                self.calls.remove(&call);
            }
            self.meetings.remove(key);
        }
        self.publish();
    }

    /// Forgets meetings that ended more than [`ENDED_KEPT`] ago and have no create in flight,
    /// so memory (and the per-server work of applying a poll) follows the meetings that run,
    /// not every meeting this process ever saw.
    pub(super) fn forget_long_ended(&mut self) {
        let now = Instant::now();
        let stale: Vec<MeetingKey> = self
            .meetings
            .iter()
            .filter(|e| matches!(e.state(), MeetingState::Ended { .. }))
            .filter(|e| now.saturating_duration_since(e.changed_at()) >= ENDED_KEPT)
            .filter(|e| !self.inflight.contains_key(&e.key))
            .map(|e| e.key.clone())
            .collect();
        for key in &stale {
            self.meetings.remove(key);
        }
    }

    /// Drops calls cached longer than [`CALL_CACHE_TTL`].
    pub(super) fn prune_calls(&mut self) {
        let now = Instant::now();
        self.calls
            .retain(|_, c| now.saturating_duration_since(c.1) < CALL_CACHE_TTL);
    }
}

impl Handler<PurgeNow> for BbbCoordinator {
    type Result = ResponseActFuture<Self, PurgeReport>;

    fn handle(&mut self, _msg: PurgeNow, _ctx: &mut Self::Context) -> Self::Result {
        self.purge_pass(PurgeReport::default())
    }
}
