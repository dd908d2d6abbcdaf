//! The poll loop: each tick re-reads the server registry (so CLI and admin changes apply while
//! running), then calls `getMeetings` on every server concurrently, each with a timeout, and
//! updates load, health and the liveness of meetings.
//!
//! `unhealthy_after` consecutive failures take a server offline and forget its meetings (the
//! next join re-creates them on a healthy server); `healthy_after` successes bring it back. A
//! meeting a poll finds on a server it no longer belongs to (moved, panicked, offline) is ended
//! there.

use std::time::Instant;

use actix::prelude::*;
use futures_util::future::join_all;

use crate::bbb::{BbbError, MeetingInfo};
use crate::db::meetings::MeetingRow;
use crate::db::now_ms;
use crate::db::server_status::ServerStatusRow;
use crate::db::servers::ServerRow;

use super::fleet::Transition;
use super::meetings::MeetingEntry;
use super::{with_timeout, BbbCoordinator, LocalActFut};

fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl BbbCoordinator {
    /// Loads servers and stored meetings (at start; retried by later ticks when it failed).
    pub(super) fn load_state(&mut self) -> LocalActFut<()> {
        let db = self.db.clone();
        let fut = async move {
            db.run(|c| {
                Ok((
                    crate::db::servers::list(c)?,
                    crate::db::meetings::load_all(c)?,
                ))
            })
            .await
        };
        Box::pin(fut.into_actor(self).map(|res, act, _ctx| match res {
            Ok((rows, meetings)) => {
                act.apply_rows(rows);
                act.absorb_meetings(meetings);
            }
            Err(e) => log::error!("cannot load BBB servers and meetings (retrying): {e}"),
        }))
    }

    fn absorb_meetings(&mut self, rows: Vec<MeetingRow>) {
        for row in rows {
            if self.meetings.get(&row.meeting_key).is_none() {
                self.meetings.insert(MeetingEntry::from_row(row));
            }
        }
        self.loaded = true;
        log::info!(
            "coordinator knows {} server(s) and {} meeting(s)",
            self.fleet.len(),
            self.meetings.len()
        );
    }

    /// Starts a poll round unless one is still running.
    pub(super) fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.polling {
            return;
        }
        self.polling = true;
        ctx.spawn(self.poll_round().map(|(), act, _ctx| act.polling = false));
    }

    /// One round: re-read the registry, then poll every server.
    pub(super) fn poll_round(&mut self) -> LocalActFut<()> {
        let db = self.db.clone();
        let load_meetings = !self.loaded;
        let fut = async move {
            db.run(move |c| {
                let rows = crate::db::servers::list(c)?;
                let meetings = if load_meetings {
                    Some(crate::db::meetings::load_all(c)?)
                } else {
                    None
                };
                Ok((rows, meetings))
            })
            .await
        };
        Box::pin(fut.into_actor(self).then(|res, act, _ctx| {
            match res {
                Ok((rows, meetings)) => {
                    act.apply_rows(rows);
                    if let Some(m) = meetings {
                        act.absorb_meetings(m);
                    }
                }
                Err(e) => log::warn!("cannot re-read the BBB servers, using the last known: {e}"),
            }
            act.poll_all()
        }))
    }

    /// Applies the registry: new, changed and removed servers, and panics done elsewhere.
    pub(super) fn apply_rows(&mut self, rows: Vec<ServerRow>) {
        for row in &rows {
            if let Some(old) = self.panic_epochs.insert(row.id, row.panic_epoch) {
                if old != row.panic_epoch {
                    let n = self.meetings.detach_server(row.id).len();
                    log::warn!("server {} was panicked: forgot {n} meeting(s)", row.id);
                }
            }
        }
        for id in self.fleet.apply_rows(rows) {
            self.panic_epochs.remove(&id);
            let n = self.meetings.detach_server(id).len();
            log::warn!("server {id} was removed: forgot {n} meeting(s)");
        }
    }

    fn poll_all(&mut self) -> LocalActFut<()> {
        let started = Instant::now();
        let timeout = self.settings.request_timeout;
        let polls: Vec<_> = self
            .fleet
            .iter()
            .map(|s| {
                let id = s.id();
                let reply = self.api.get_meetings(&s.endpoint);
                async move { (id, with_timeout(timeout, reply).await) }
            })
            .collect();
        Box::pin(
            join_all(polls)
                .into_actor(self)
                .map(move |results, act, _ctx| {
                    for (id, result) in results {
                        act.apply_poll(id, started, result);
                    }
                    act.stats.poll_rounds += 1;
                    act.store_status();
                }),
        )
    }

    fn apply_poll(
        &mut self,
        id: i32,
        started: Instant,
        result: Result<Vec<MeetingInfo>, BbbError>,
    ) {
        let now = now_ms();
        match result {
            Ok(list) => {
                let load = super::fleet::PollLoad::from_meetings(&list, now);
                let healthy_after = self.settings.healthy_after;
                if self
                    .fleet
                    .poll_succeeded(id, started, load, now, healthy_after)
                    == Transition::CameOnline
                {
                    log::info!("server {id} is back online");
                }
                for meeting_id in self.meetings.apply_poll(id, started, &list) {
                    let busy = self
                        .meetings
                        .by_meeting_id(&meeting_id)
                        .is_some_and(|e| self.inflight.contains_key(&e.key));
                    if !busy {
                        log::info!("ending a meeting on server {id} that was moved away from it");
                        self.end_on(id, meeting_id);
                    }
                }
            }
            Err(e) => {
                let unhealthy_after = self.settings.unhealthy_after;
                if self
                    .fleet
                    .poll_failed(id, e.to_string(), now, unhealthy_after)
                    == Transition::WentOffline
                {
                    let forgotten = self.meetings.detach_server(id).len();
                    log::warn!(
                        "server {id} is offline after {unhealthy_after} failed poll(s) ({e}); forgot {forgotten} meeting(s)"
                    );
                    let db = self.db.clone();
                    actix::spawn(async move {
                        if let Err(e) = db
                            .run(move |c| crate::db::meetings::forget_server(c, id))
                            .await
                        {
                            log::warn!("cannot unplace the meetings of offline server {id}: {e}");
                        }
                    });
                } else {
                    log::warn!("poll of server {id} failed: {e}");
                }
            }
        }
    }

    /// Ends a meeting on `server`, best effort, in the background.
    pub(super) fn end_on(&mut self, server: i32, meeting_id: String) {
        let Some(s) = self.fleet.get(server) else {
            return;
        };
        self.stats.ends_sent += 1;
        let reply = self.api.end(&s.endpoint, &meeting_id);
        let timeout = self.settings.request_timeout;
        actix::spawn(async move {
            if let Err(e) = with_timeout(timeout, reply).await {
                log::warn!("end on server {server} failed: {e}");
            }
        });
    }

    /// Publishes every server's health and load for the CLI, the admin routes and other
    /// instances.
    fn store_status(&self) {
        let rows: Vec<ServerStatusRow> = self
            .fleet
            .iter()
            .map(|s| ServerStatusRow {
                server_id: s.id(),
                online: s.online,
                meetings: clamp_i32(s.load.meetings),
                participants: clamp_i32(s.load.participants),
                voice: clamp_i32(s.load.voice),
                videos: clamp_i32(s.load.videos),
                load: s.load.load,
                consecutive_failures: clamp_i32(s.consecutive_failures),
                polled_at: s.last_poll_at_ms.unwrap_or(0),
            })
            .collect();
        let db = self.db.clone();
        actix::spawn(async move {
            if let Err(e) = db
                .run(move |c| crate::db::server_status::store(c, &rows))
                .await
            {
                log::warn!("cannot store the server status: {e}");
            }
        });
    }
}
