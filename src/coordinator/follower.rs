//! Several gateway instances on one PostgreSQL database: the poll leader (see
//! [`super::election`]) polls the fleet and stores what it saw, every other instance follows
//! by reading it back instead of polling BBB itself.
//!
//! A follower's round reads the registry (state changes and panics made anywhere), the
//! leader's `bbb_server_status` (health, load, version) and the stored meetings (placements
//! made by other instances, and `seen_at`: whether the leader's last poll listed them).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::db::meetings::MeetingRow;
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
