//! Following the stored meetings, at a cost that grows with change, not with history: every
//! instance reads only the meetings changed since its last read (by `updated_at`, looking back
//! [`LOOKBACK_MS`] for writers whose clocks lag or whose transactions committed late), in
//! batches, on every tick (changes that must arrive sooner are announced by `NOTIFY`, see
//! [`super::remote`]). What it reads is applied to memory: placements other instances made
//! are adopted, and meetings BBB ended (whose notification this instance may have missed) end
//! here too.

use std::time::Instant;

use actix::prelude::*;

use crate::db::meetings::MeetingRow;

use super::remote::instant_of;
use super::{BbbCoordinator, LocalActFut};

/// How far before the newest change already read every read starts again (ms).
pub(super) const LOOKBACK_MS: i64 = 10_000;
/// Meetings read per query.
const BATCH: i64 = 1_000;

/// Where the reads stand.
#[derive(Debug, Default)]
pub(super) struct SyncState {
    /// The newest `updated_at` read so far.
    newest_ms: i64,
}

impl BbbCoordinator {
    /// Notes the newest change among `rows` (loaded at start or read since).
    pub(super) fn note_read(&mut self, rows: &[MeetingRow]) {
        if let Some(newest) = rows.iter().map(|r| r.updated_at).max() {
            self.sync.newest_ms = self.sync.newest_ms.max(newest);
        }
    }

    /// Reads and applies the meetings changed since the last read, batch by batch.
    pub(super) fn sync_changes(&mut self) -> LocalActFut<()> {
        let since = self.sync.newest_ms.saturating_sub(LOOKBACK_MS);
        self.sync_from(since, None)
    }

    fn sync_from(&mut self, since: i64, after: Option<(i64, String)>) -> LocalActFut<()> {
        let db = self.db.clone();
        let read_at = Instant::now();
        let read = async move {
            db.run(move |c| crate::db::meetings::changed_since(c, since, after.as_ref(), BATCH))
                .await
        };
        Box::pin(
            read.into_actor(self)
                .then(move |res, act, _ctx| -> LocalActFut<()> {
                    let rows = match res {
                        Ok(rows) => rows,
                        Err(e) => {
                            log::warn!("cannot read the changed meetings: {e}");
                            return Box::pin(fut::ready(()));
                        }
                    };
                    let full = rows.len() as i64 >= BATCH;
                    let last = rows
                        .last()
                        .map(|r| (r.updated_at, r.meeting_key.as_str().to_string()));
                    act.note_read(&rows);
                    act.apply_rows_read(rows, read_at);
                    act.publish();
                    match (full, last) {
                        (true, Some(last)) => act.sync_from(since, Some(last)),
                        _ => Box::pin(fut::ready(())),
                    }
                }),
        )
    }

    /// Makes memory follow stored meetings read at `read_at`: placements made by other
    /// instances are adopted, and a meeting stored as ended after memory's confirmation of it
    /// ends here too (unless memory knows a newer instance). Entries that changed after the
    /// read started, or whose create is in flight here, are left alone: the read may predate
    /// their new state.
    pub(super) fn apply_rows_read(&mut self, rows: Vec<MeetingRow>, read_at: Instant) {
        for row in rows {
            let key = row.meeting_key.clone();
            if self.inflight.contains_key(&key)
                || self
                    .meetings
                    .get(&key)
                    .is_some_and(|e| e.changed_at() > read_at)
            {
                continue;
            }
            let (ended_at, issued_at) = (row.ended_at, row.callback_issued_at);
            self.adopt_row(row);
            let Some(ended_at) = ended_at else {
                continue;
            };
            let ended = instant_of(ended_at);
            self.meetings.update(&key, |e| {
                let confirmed_later = e
                    .state()
                    .running()
                    .is_some_and(|(_, _, confirmed_at)| confirmed_at > ended);
                let stale = issued_at.is_some_and(|t| e.callback_is_stale(t));
                if !confirmed_later && !stale {
                    e.ended(issued_at);
                }
            });
        }
    }
}
