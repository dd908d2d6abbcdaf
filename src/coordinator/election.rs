//! Who polls the fleet: the instance holding the poll lease ([`crate::db::lease`]). The
//! election runs on a timer of its own (a third of the lease), each try bounded by a deadline,
//! so a hung database connection cannot stall it or the poll. An instance leads only until its
//! last successful renewal plus the lease minus a margin, measured from when the renewal was
//! sent; a renewal that fails or misses its deadline ends the lead at once.
//!
//! What an instance knows about the fleet ages too: a follower treats a server whose stored
//! status is older than three poll intervals as unknown, and an instance that has not reached
//! the database for a whole lease treats every server so (it can neither see the leader's polls
//! nor other instances' moves and ends). Joins of unknown servers' meetings are not answered
//! from memory; they re-confirm with a `create`.

use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::db::lease::{self, POLL_LEASE};

use super::BbbCoordinator;

/// The election's state.
#[derive(Debug, Default)]
pub(super) struct Election {
    /// This instance leads until then.
    leading_until: Option<Instant>,
    /// A try is running.
    electing: bool,
    /// When the database last answered an election (its knowledge is current until a lease
    /// later).
    last_db_contact: Option<Instant>,
    /// The instance's own view of whether it reached the database lately (for the log).
    db_lost: bool,
}

/// Renewals happen this often, relative to the lease.
pub(super) const RENEWALS_PER_LEASE: u32 = 3;

impl BbbCoordinator {
    /// Whether this instance leads now (on SQLite, the only instance, always).
    pub(super) fn is_leader(&self) -> bool {
        self.single_instance()
            || self
                .election
                .leading_until
                .is_some_and(|until| Instant::now() < until)
    }

    /// Whether what this instance learnt from the database is too old to act on (never on
    /// SQLite: no other instance changes anything there).
    pub(super) fn lost_database(&self) -> bool {
        !self.single_instance()
            && self
                .election
                .last_db_contact
                .is_none_or(|at| at.elapsed() > self.settings.lease)
    }

    fn single_instance(&self) -> bool {
        self.db.backend() == crate::db::Backend::Sqlite
    }

    /// Renews or takes the lease, within a third of it.
    pub(super) fn elect(&mut self, ctx: &mut Context<Self>) {
        if self.election.electing {
            return;
        }
        self.election.electing = true;
        let lease = self.settings.lease;
        let deadline = lease / RENEWALS_PER_LEASE;
        let db = self.db.clone();
        let instance = self.settings.instance.clone();
        let sent = Instant::now();
        let try_lease = async move {
            tokio::time::timeout(
                deadline,
                db.run(move |c| lease::acquire(c, POLL_LEASE, &instance, lease)),
            )
            .await
        };
        ctx.spawn(try_lease.into_actor(self).map(move |res, act, ctx| {
            act.election.electing = false;
            let was = act.is_leader();
            match res {
                Ok(Ok(held)) => {
                    act.election.last_db_contact = Some(Instant::now());
                    if std::mem::take(&mut act.election.db_lost) {
                        log::info!("the database answers again");
                    }
                    // Stop a little before the database would let another instance in.
                    act.election.leading_until = held.then(|| sent + lease - lease / 6);
                }
                Ok(Err(e)) => {
                    act.election.leading_until = None;
                    act.lose_database(&format!("{e}"));
                }
                Err(_) => {
                    act.election.leading_until = None;
                    act.lose_database("the database did not answer the election in time");
                }
            }
            // Whether the database answered decides how far memory is trusted, also while a
            // round is stuck on it.
            act.judge_staleness();
            act.publish();
            let now = act.is_leader();
            if now != was {
                if now {
                    log::info!("this instance now polls the BBB fleet (leader)");
                    // At once, not a poll interval later: until a leader's poll is stored, no
                    // instance trusts any server.
                    act.request_round(ctx, None);
                } else {
                    log::info!("this instance no longer polls the BBB fleet (follower)");
                }
            }
        }));
    }

    fn lose_database(&mut self, why: &str) {
        if !self.election.db_lost {
            log::warn!("cannot renew the poll lease, not leading: {why}");
            self.election.db_lost = true;
        }
    }
}

/// The interval of the election timer.
pub(super) fn election_interval(lease: Duration) -> Duration {
    (lease / RENEWALS_PER_LEASE).max(Duration::from_millis(50))
}

/// Gives the lease up at once (a clean stop), so another instance takes over the poll without
/// waiting for it to expire. Answers when done (or when the database did not answer in time).
#[derive(Debug, Clone, Copy)]
pub struct StepDown;

impl Message for StepDown {
    type Result = ();
}

impl Handler<StepDown> for BbbCoordinator {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: StepDown, _ctx: &mut Self::Context) -> Self::Result {
        let was_leader = self.is_leader();
        self.election.leading_until = None;
        let db = self.db.clone();
        let instance = self.settings.instance.clone();
        let deadline = election_interval(self.settings.lease);
        Box::pin(
            async move {
                if was_leader {
                    let release = db.run(move |c| lease::release(c, POLL_LEASE, &instance));
                    if let Ok(Err(e)) = tokio::time::timeout(deadline, release).await {
                        log::warn!("cannot give the poll lease up: {e}");
                    }
                }
            }
            .into_actor(self),
        )
    }
}
