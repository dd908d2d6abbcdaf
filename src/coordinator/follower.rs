//! Several gateway instances on one PostgreSQL database: each tick elects the poll leader
//! (advisory lock, see [`crate::db::leader_lock`]); the leader polls the fleet and stores what
//! it saw, every other instance follows by reading it back instead of polling BBB itself.
//!
//! A follower's round reads the registry (state changes and panics made anywhere), the
//! leader's `bbb_server_status` (health, load, version) and the stored meetings (placements
//! made by other instances, and `seen_at`: whether the leader's last poll listed them).

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::Instant;

use actix::prelude::*;

use crate::db::meetings::MeetingRow;
use crate::db::now_ms;
use crate::db::server_status::ServerStatusRow;
use crate::db::DbError;

use super::fleet::Transition;
use super::{BbbCoordinator, LocalActFut};

fn ms_since(at: Instant) -> i64 {
    i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX)
}

impl BbbCoordinator {
    /// One tick: elect, then poll (leader) or follow. When the election cannot reach the
    /// database, the instance keeps its role: a leader keeps tracking BBB health through a
    /// database outage (two instances polling for a while is harmless, polls only read).
    pub(super) fn round(&mut self) -> LocalActFut<()> {
        let db = self.db.clone();
        let lock = self.leader_lock.clone();
        let elect = async move {
            tokio::task::spawn_blocking(move || {
                lock.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .refresh(&db)
            })
            .await
            .map_err(|e| DbError::Unavailable(format!("election task failed: {e}")))?
        };
        Box::pin(elect.into_actor(self).then(|res, act, _ctx| {
            match res {
                Ok(leader) => act.set_leader(leader),
                Err(e) => log::warn!("leader election failed (keeping the current role): {e}"),
            }
            if act.leader {
                act.poll_round()
            } else {
                act.follow_round()
            }
        }))
    }

    fn set_leader(&mut self, leader: bool) {
        if leader != self.leader {
            if leader {
                log::info!("this instance now polls the BBB fleet (leader)");
            } else {
                log::info!("another instance polls the BBB fleet; following its results");
            }
        }
        self.leader = leader;
    }

    /// A follower's round: registry, the leader's status, stored meetings.
    fn follow_round(&mut self) -> LocalActFut<()> {
        let db = self.db.clone();
        let started = Instant::now();
        let fut = async move {
            db.run(|c| {
                Ok((
                    crate::db::servers::list(c)?,
                    crate::db::server_status::load_all(c)?,
                    crate::db::meetings::load_all(c)?,
                ))
            })
            .await
        };
        Box::pin(fut.into_actor(self).map(move |res, act, _ctx| match res {
            Ok((rows, status, meetings)) => {
                act.apply_rows(rows);
                act.apply_status(&status);
                act.sync_meetings(meetings, Some(&status), started);
                act.loaded = true;
                act.stats.follow_rounds += 1;
            }
            Err(e) => log::warn!("cannot read the fleet status, using the last known: {e}"),
        }))
    }

    /// Takes health and load from the leader's stored polls.
    fn apply_status(&mut self, status: &HashMap<i32, ServerStatusRow>) {
        let now = now_ms();
        let timeout = self.settings.request_timeout;
        for row in status.values() {
            match self.fleet.follow_status(row, now, timeout) {
                Transition::WentOffline => {
                    let n = self.meetings.detach_server(row.server_id).len();
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

    /// Makes memory follow the stored meetings read at `read_at`: placements made by other
    /// instances are adopted; a follower (`status` given) also takes liveness from the leader:
    /// a meeting runs while its `seen_at` is not older than its server's last poll, unless
    /// this instance confirmed it after that poll.
    ///
    /// Entries changed here after the read started (a create in flight or confirmed since)
    /// are left alone: the read may predate their new placement.
    pub(super) fn sync_meetings(
        &mut self,
        rows: Vec<MeetingRow>,
        status: Option<&HashMap<i32, ServerStatusRow>>,
        read_at: Instant,
    ) {
        let now = now_ms();
        for row in rows {
            if self.inflight.contains_key(&row.meeting_key) {
                continue;
            }
            let key = row.meeting_key.clone();
            let seen_at = row.seen_at;
            if let Some(e) = self.meetings.get(&key) {
                if e.confirmed_at.is_some_and(|c| c > read_at) {
                    continue;
                }
            }
            self.adopt_row(row);
            let (Some(status), Some(mut entry)) = (status, self.meetings.get_mut(&key)) else {
                continue;
            };
            let Some(polled_at) = entry
                .server
                .and_then(|s| status.get(&s))
                .map(|st| st.polled_at)
                .filter(|t| *t > 0)
            else {
                continue;
            };
            let confirmed_after_poll = entry
                .confirmed_at
                .is_some_and(|c| now.saturating_sub(ms_since(c)) > polled_at);
            if !confirmed_after_poll {
                entry.live = seen_at.is_some_and(|t| t >= polled_at);
            }
        }
    }
}
