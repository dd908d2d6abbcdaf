//! The poll loop: each tick re-reads the server registry (so CLI and admin changes apply while
//! running), then calls `getMeetings` on every server concurrently, each with a timeout, and
//! updates load, health and the liveness of meetings.
//!
//! A failed poll makes a server suspect at once; `unhealthy_after` consecutive failures take it
//! offline and forget its meetings (the next join re-creates them on a healthy server);
//! `healthy_after` successes bring it back. A meeting a poll finds on a server it no longer
//! belongs to (moved, panicked, offline) is ended there.

use std::time::Instant;

use actix::prelude::*;
use futures_util::future::join_all;

use crate::bbb::{BbbError, MeetingInfo};
use crate::db::changes::Change;
use crate::db::meetings::MeetingRow;
use crate::db::now_ms;
use crate::db::server_status::ServerStatusRow;
use crate::db::servers::ServerRow;
use crate::ids::{MeetingKey, ServerId};

use super::fleet::Transition;
use super::lifecycle::MeetingEntry;
use super::{with_timeout, BbbCoordinator, LocalActFut};

fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl BbbCoordinator {
    /// Loads servers and stored meetings (at start; retried by later ticks when it failed).
    /// What the database says is a claim: nothing loaded is answered from memory before BBB
    /// confirms it.
    pub(super) fn load_state(&mut self) -> LocalActFut<()> {
        let db = self.db.clone();
        // Reservations other instances made that may still stand.
        let reservations_since = crate::db::now_ms() - super::placement::YOUNG_MEETING_MS;
        let fut = async move {
            db.run(move |c| {
                Ok((
                    crate::db::servers::list(c)?,
                    crate::db::meetings::load_live(c)?,
                    crate::db::reservations::placed_since(c, reservations_since)?,
                ))
            })
            .await
        };
        Box::pin(fut.into_actor(self).map(|res, act, _ctx| match res {
            Ok((rows, meetings, reservations)) => {
                act.apply_rows(rows);
                for r in reservations {
                    act.fleet
                        .reserve(r.server, &r.meeting_id, r.expected, r.placed_at);
                }
                act.absorb_meetings(meetings);
                act.publish();
            }
            Err(e) => log::error!("cannot load BBB servers and meetings (retrying): {e}"),
        }))
    }

    fn absorb_meetings(&mut self, rows: Vec<MeetingRow>) {
        self.note_read(&rows);
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

    /// The poll timer: a round now, unless one is still running.
    pub(super) fn tick(&mut self, ctx: &mut Context<Self>) {
        self.prune_published();
        self.prune_calls();
        self.forget_long_ended();
        // A follower that reads the leader's results on its notices (one per poll) needs no
        // round of its own; without a notice for one and a half intervals it reads on its own.
        let interval = self.settings.poll_interval;
        let noticed_lately = self
            .polled_notice_at
            .is_some_and(|at| !self.is_leader() && at.elapsed() < interval + interval / 2);
        if !self.polling && !noticed_lately {
            self.request_round(ctx, None);
        }
    }

    /// Runs a round, one at a time: asked for while one runs, another one follows it. `done`
    /// is answered when a round that started after the ask has finished.
    pub(super) fn request_round(
        &mut self,
        ctx: &mut Context<Self>,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        if self.polling {
            self.round_again = true;
            self.round_waiters.extend(done);
            return;
        }
        self.polling = true;
        let waiters: Vec<_> = std::mem::take(&mut self.round_waiters)
            .into_iter()
            .chain(done)
            .collect();
        ctx.spawn(self.round().map(move |(), act, ctx| {
            act.polling = false;
            for w in waiters {
                let _ = w.send(());
            }
            if std::mem::take(&mut act.round_again) {
                act.request_round(ctx, None);
            }
        }));
    }

    /// The leader's round: re-read the registry and the changed meetings (placements made by
    /// other instances), then poll every server.
    pub(super) fn poll_round(&mut self) -> LocalActFut<()> {
        let db = self.db.clone();
        let loaded = self.loaded;
        let fut = async move {
            db.run(move |c| {
                let servers = crate::db::servers::list(c)?;
                // Until the first load succeeded, everything (then only what changes).
                let meetings = if loaded {
                    Vec::new()
                } else {
                    crate::db::meetings::load_live(c)?
                };
                Ok((servers, meetings))
            })
            .await
        };
        Box::pin(
            fut.into_actor(self)
                .then(move |res, act, _ctx| -> LocalActFut<()> {
                    match res {
                        Ok((rows, meetings)) => {
                            act.apply_rows(rows);
                            if !act.loaded {
                                act.absorb_meetings(meetings);
                            }
                        }
                        Err(e) => {
                            log::warn!("cannot re-read the BBB servers, using the last known: {e}")
                        }
                    }
                    act.publish();
                    Box::pin(act.sync_changes().then(|(), act, _ctx| act.poll_all()))
                }),
        )
    }

    /// Applies the registry: new, changed and removed servers, and panics done elsewhere.
    pub(super) fn apply_rows(&mut self, rows: Vec<ServerRow>) {
        for row in &rows {
            if let Some(old) = self.panic_epochs.insert(row.id, row.panic_epoch) {
                if old != row.panic_epoch {
                    self.fleet.panicked(row.id);
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
        let timeout = self.settings.request_timeout;
        let polls: Vec<_> = self
            .fleet
            .iter()
            .map(|s| {
                let id = s.id();
                let reply = self.api.get_meetings(s.endpoint());
                let sent_at = Instant::now();
                let sent_ms = now_ms();
                async move { (id, sent_at, sent_ms, with_timeout(timeout, reply).await) }
            })
            .collect();
        Box::pin(
            join_all(polls)
                .into_actor(self)
                .map(move |results, act, ctx| {
                    for (id, sent_at, sent_ms, result) in results {
                        act.apply_poll(id, sent_at, sent_ms, result, ctx);
                    }
                    act.stats.poll_rounds += 1;
                    act.publish();
                    act.store_status(ctx);
                }),
        )
    }

    fn apply_poll(
        &mut self,
        id: ServerId,
        sent_at: Instant,
        sent_ms: i64,
        result: Result<Vec<MeetingInfo>, BbbError>,
        ctx: &mut Context<Self>,
    ) {
        match result {
            Ok(list) => {
                let healthy_after = self.settings.healthy_after;
                if self.fleet.poll_succeeded(id, sent_ms, &list, healthy_after)
                    == Transition::CameOnline
                {
                    log::info!("server {id} is back online");
                }
                self.check_version(id, ctx);
                let inflight = &self.inflight;
                let outcome = self
                    .meetings
                    .apply_poll(id, sent_at, &list, |key| inflight.contains_key(key));
                let strays: Vec<String> = outcome
                    .strays
                    .into_iter()
                    .filter(|m| {
                        self.meetings
                            .by_meeting_id(m)
                            .is_some_and(|e| !self.inflight.contains_key(&e.key))
                    })
                    .collect();
                if !strays.is_empty() {
                    let work = self.end_strays(id, strays);
                    self.spawn_background(ctx, work);
                }
                if !outcome.gone.is_empty() {
                    self.record_gone(id, sent_ms, outcome.gone, ctx);
                }
            }
            Err(e) => {
                let unhealthy_after = self.settings.unhealthy_after;
                if self
                    .fleet
                    .poll_failed(id, e.to_string(), sent_ms, unhealthy_after)
                    == Transition::WentOffline
                {
                    let forgotten = self.meetings.detach_server(id).len();
                    log::warn!(
                        "server {id} is offline after {unhealthy_after} failed poll(s) ({e}); forgot {forgotten} meeting(s)"
                    );
                    let db = self.db.clone();
                    let unplace = async move {
                        if let Err(e) = db
                            .run(move |c| crate::db::meetings::forget_server(c, id))
                            .await
                        {
                            log::warn!("cannot unplace the meetings of offline server {id}: {e}");
                        }
                    };
                    self.spawn_background(ctx, Box::pin(unplace.into_actor(self)));
                } else {
                    log::warn!("poll of server {id} failed: {e}");
                }
            }
        }
    }

    /// Meetings the poll of `server` sent at `polled_at` no longer lists ended there without
    /// a callback: stored, and announced to the other instances, in the background.
    fn record_gone(
        &mut self,
        server: ServerId,
        polled_at: i64,
        keys: Vec<MeetingKey>,
        ctx: &mut Context<Self>,
    ) {
        let db = self.db.clone();
        let store = async move {
            let written = db
                .run(move |c| {
                    for key in keys {
                        if crate::db::meetings::mark_gone(c, &key, server, polled_at)? {
                            let change = crate::db::changes::Change::Gone { key, polled_at };
                            crate::db::changes::notify(c, &change)?;
                        }
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = written {
                log::warn!("cannot record meetings gone from server {server}: {e}");
            }
        };
        self.spawn_background(ctx, Box::pin(store.into_actor(self)));
    }

    /// Meetings `server` runs that memory places elsewhere (moved, panicked, offline): ends
    /// them there, unless the database says they do belong there (another gateway instance
    /// moved them; then memory adopts the stored placement instead).
    fn end_strays(&mut self, server: ServerId, meeting_ids: Vec<String>) -> LocalActFut<()> {
        let keys: Vec<(MeetingKey, String)> = meeting_ids
            .iter()
            .filter_map(|m| {
                self.meetings
                    .by_meeting_id(m)
                    .map(|e| (e.key.clone(), m.clone()))
            })
            .collect();
        let db = self.db.clone();
        let fut = async move {
            db.run(move |c| {
                let mut out = Vec::with_capacity(keys.len());
                for (key, meeting_id) in keys {
                    let stored = crate::db::meetings::get(c, &key)?.and_then(|r| r.server);
                    out.push((key, meeting_id, stored));
                }
                Ok(out)
            })
            .await
        };
        Box::pin(fut.into_actor(self).map(move |res, act, ctx| {
            let found = match res {
                Ok(found) => found,
                Err(e) => {
                    log::warn!("cannot check meetings found on server {server}: {e}");
                    return;
                }
            };
            for (key, meeting_id, stored) in found {
                let Some(current) = act.meetings.get(&key).map(MeetingEntry::server) else {
                    continue;
                };
                if current == Some(server) || act.inflight.contains_key(&key) {
                    continue; // placed here meanwhile
                }
                if stored == Some(server) {
                    log::info!(
                        "adopting the placement of {key} on server {server} from the database"
                    );
                    act.meetings.update(&key, |e| e.adopt(Some(server)));
                } else {
                    log::info!("ending a meeting on server {server} that was moved away from it");
                    act.end_on(server, meeting_id, ctx);
                }
            }
            act.publish();
        }))
    }

    /// Asks a server's API index for its BBB version once after it is first seen or comes
    /// back online (a failed ask is retried after the next good poll).
    fn check_version(&mut self, id: ServerId, ctx: &mut Context<Self>) {
        if !self.fleet.start_version_check(id) {
            return;
        }
        let Some(s) = self.fleet.get(id) else {
            return;
        };
        let reply = self.api.bbb_version(s.endpoint());
        let timeout = self.settings.request_timeout;
        let ask = async move { with_timeout(timeout, reply).await }
            .into_actor(self)
            .map(move |res, act, _ctx| {
                act.record_contact(id, res.as_ref().map(|_| ()));
                match res {
                    Ok(version) => act.fleet.set_version(id, Some(version)),
                    Err(e) => {
                        log::warn!("cannot read the BBB version of server {id}: {e}");
                        act.fleet.set_version(id, None);
                    }
                }
                act.publish();
            });
        self.spawn_background(ctx, Box::pin(ask));
    }

    /// Ends a meeting on `server`, best effort, in the background.
    pub(super) fn end_on(&mut self, server: ServerId, meeting_id: String, ctx: &mut Context<Self>) {
        let Some(s) = self.fleet.get(server) else {
            return;
        };
        self.stats.ends_sent += 1;
        let reply = self.api.end(s.endpoint(), &meeting_id);
        let timeout = self.settings.request_timeout;
        let end = async move { with_timeout(timeout, reply).await }
            .into_actor(self)
            .map(move |res, act, _ctx| {
                if let Err(e) = &res {
                    log::warn!("end on server {server} failed: {e}");
                }
                act.record_contact(server, res.as_ref().map(|_| ()));
                act.publish();
            });
        self.spawn_background(ctx, Box::pin(end));
    }

    /// Publishes every server's health and load for the CLI, the admin routes and other
    /// instances. One store at a time, so an older round never overwrites a newer one.
    fn store_status(&mut self, ctx: &mut Context<Self>) {
        if self.status_storing {
            self.status_dirty = true;
            return;
        }
        self.status_storing = true;
        let rows: Vec<ServerStatusRow> = self
            .fleet
            .iter()
            .map(|s| {
                let load = s.load();
                ServerStatusRow {
                    server_id: s.id().get(),
                    online: s.online(),
                    meetings: clamp_i32(load.meetings),
                    participants: clamp_i32(load.participants),
                    voice: clamp_i32(load.voice),
                    videos: clamp_i32(load.videos),
                    load: load.load,
                    consecutive_failures: clamp_i32(s.poll_failures()),
                    polled_at: s.last_poll_at_ms().unwrap_or(0),
                    bbb_version: s.bbb_version().map(str::to_string),
                    last_error: s.last_error().map(str::to_string),
                    listeners: clamp_i32(load.listeners),
                    largest_meeting: clamp_i32(load.largest_meeting),
                    occupancy: clamp_i32(load.occupancy),
                }
            })
            .collect();
        let db = self.db.clone();
        let fut = async move {
            if let Err(e) = db
                .run(move |c| {
                    crate::db::server_status::store(c, &rows)?;
                    crate::db::changes::notify(c, &Change::Polled)
                })
                .await
            {
                log::warn!("cannot store the server status: {e}");
            }
        };
        let store = fut.into_actor(self).map(|(), act, ctx| {
            act.status_storing = false;
            if std::mem::take(&mut act.status_dirty) {
                act.store_status(ctx);
            }
        });
        self.spawn_background(ctx, Box::pin(store));
    }
}
