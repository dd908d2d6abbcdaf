//! Several gateway instances on one PostgreSQL database: the poll leader (see
//! [`super::election`]) polls the fleet and stores what it saw, every other instance follows
//! by reading it back instead of polling BBB itself.
//!
//! A follower's round reads the registry (state changes and panics made anywhere), the
//! leader's `bbb_server_status` (health, load, version) and the meetings changed since its
//! last read (see [`super::sync`]). Which meetings run it learns from its own creates and
//! from the confirmations, ends and gone meetings other instances announce.

use std::collections::HashMap;

use actix::prelude::*;

use crate::db::now_ms;
use crate::db::server_status::ServerStatusRow;
use crate::ids::ServerId;

use super::fleet::Transition;
use super::{BbbCoordinator, LocalActFut};

impl BbbCoordinator {
    /// One tick: poll (leader) or follow, then judge how old what is known about each
    /// server is.
    pub(super) fn round(&mut self) -> LocalActFut<()> {
        let step = if self.is_leader() {
            self.poll_round()
        } else {
            self.follow_round()
        };
        Box::pin(step.map(|(), act, _ctx| {
            act.judge_staleness();
            act.publish();
        }))
    }

    /// Marks servers whose status is too old to act on (see [`super::election`]).
    pub(super) fn judge_staleness(&mut self) {
        let lost = self.lost_database();
        let leader = self.is_leader();
        let max_age =
            i64::try_from((self.settings.poll_interval * 3).as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        let ids: Vec<ServerId> = self.fleet.iter().map(|s| s.id()).collect();
        for id in ids {
            let old = self.fleet.get(id).is_some_and(|s| {
                s.last_poll_at_ms()
                    .is_none_or(|t| now.saturating_sub(t) > max_age)
            });
            let stale = lost || (!leader && old);
            if self.fleet.set_stale(id, stale) {
                if stale {
                    log::warn!(
                        "what is known about server {id} is too old ({}); its meetings are re-confirmed at every join",
                        if lost { "the database is out of reach" } else { "the leader's last poll is older than 3 poll intervals" }
                    );
                } else {
                    log::info!("server {id}'s status is current again");
                }
            }
        }
    }

    /// A follower's round: the registry and the leader's status, then the changed meetings.
    fn follow_round(&mut self) -> LocalActFut<()> {
        let db = self.db.clone();
        let fut = async move {
            db.run(|c| {
                Ok((
                    crate::db::servers::list(c)?,
                    crate::db::server_status::load_all(c)?,
                ))
            })
            .await
        };
        Box::pin(fut.into_actor(self).then(move |res, act, _ctx| {
            match res {
                Ok((rows, status)) => {
                    act.apply_rows(rows);
                    act.apply_status(&status);
                    act.stats.follow_rounds += 1;
                }
                Err(e) => log::warn!("cannot read the fleet status, using the last known: {e}"),
            }
            act.publish();
            act.sync_changes()
        }))
    }

    /// Takes health and load from the leader's stored polls.
    fn apply_status(&mut self, status: &HashMap<ServerId, ServerStatusRow>) {
        let now = now_ms();
        let timeout = self.settings.request_timeout;
        for row in status.values() {
            match self.fleet.follow_status(row, now, timeout) {
                Transition::WentOffline => {
                    let n = self.meetings.detach_server(row.server()).len();
                    log::warn!(
                        "server {} is offline (leader's poll); forgot {n} meeting(s)",
                        row.server_id
                    );
                }
                Transition::CameOnline => {
                    log::info!("server {} is back online (leader's poll)", row.server_id)
                }
                Transition::None => {}
            }
        }
    }
}
