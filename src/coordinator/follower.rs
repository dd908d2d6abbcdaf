//! Several gateway instances on one PostgreSQL database: each tick elects the poll leader
//! (advisory lock, see [`crate::db::leader_lock`]); the leader polls the fleet and stores what
//! it saw, every other instance follows by reading it back instead of polling BBB itself.
//!
//! A follower's round reads the registry (state changes and panics made anywhere), the
//! leader's `bbb_server_status` (health, load, version) and the stored meetings (placements
//! made by other instances, and `seen_at`: whether the leader's last poll listed them).

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::db::meetings::MeetingRow;
use crate::db::now_ms;
use crate::db::server_status::ServerStatusRow;
use crate::db::DbError;
use crate::ids::ServerId;

use super::fleet::Transition;
use super::{BbbCoordinator, LocalActFut};

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
        Box::pin(fut.into_actor(self).map(move |res, act, _ctx| {
            match res {
                Ok((rows, status, meetings)) => {
                    act.apply_rows(rows);
                    act.apply_status(&status);
                    act.sync_meetings(meetings, Some(&status), started);
                    act.loaded = true;
                    act.stats.follow_rounds += 1;
                }
                Err(e) => log::warn!("cannot read the fleet status, using the last known: {e}"),
            }
            act.publish();
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

    /// Makes memory follow the stored meetings read at `read_at`: placements made by other
    /// instances are adopted, and a meeting BBB ended (an end callback another instance
    /// received, whose notification this instance may have missed) ends here too. A follower
    /// (`status` given) also takes liveness from the leader's last poll: a meeting it listed is
    /// confirmed as of when that poll was sent; one it did not list has ended.
    ///
    /// Entries that changed after the read started are left alone: the read may predate their
    /// new state.
    pub(super) fn sync_meetings(
        &mut self,
        rows: Vec<MeetingRow>,
        status: Option<&HashMap<ServerId, ServerStatusRow>>,
        read_at: Instant,
    ) {
        for row in rows {
            let key = row.meeting_key.clone();
            if self.inflight.contains_key(&key) {
                continue;
            }
            if self
                .meetings
                .get(&key)
                .is_some_and(|e| e.changed_at() > read_at)
            {
                continue;
            }
            let (seen_at, ended, issued_at, create_time) = (
                row.seen_at,
                row.ended_at,
                row.callback_issued_at,
                row.create_time,
            );
            self.adopt_row(row);
            if let (Some(ended_at), Some(issued_at)) = (ended, issued_at) {
                let ended_since_confirmation = self
                    .meetings
                    .get(&key)
                    .and_then(|e| e.state().running())
                    .is_none_or(|(_, _, confirmed_at)| instant_of(ended_at) > confirmed_at);
                if ended_since_confirmation {
                    self.meetings.update(&key, |e| {
                        if !e.callback_is_stale(issued_at) {
                            e.ended(Some(issued_at));
                        }
                    });
                    continue;
                }
            }
            let Some(status) = status else {
                continue;
            };
            let Some(server) = self.meetings.get(&key).and_then(|e| e.server()) else {
                continue;
            };
            let Some(polled_at) = status
                .get(&server)
                .map(|st| st.polled_at)
                .filter(|t| *t > 0)
            else {
                continue;
            };
            let poll_sent = instant_of(polled_at);
            self.meetings.update(&key, |e| {
                if e.changed_at() > poll_sent {
                    return;
                }
                match (seen_at.is_some_and(|t| t >= polled_at), create_time) {
                    (true, Some(ct)) if ct > 0 => e.confirm(server, ct, poll_sent),
                    (true, _) => {}
                    (false, _) => e.ended(None),
                }
            });
        }
    }
}

/// The instant of a wall-clock time in ms (now, if it lies in the future).
fn instant_of(ms: i64) -> Instant {
    let age = u64::try_from(now_ms().saturating_sub(ms)).unwrap_or(0);
    Instant::now()
        .checked_sub(Duration::from_millis(age))
        .unwrap_or_else(Instant::now)
}
