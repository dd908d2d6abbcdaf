//! [`UserRefresher`]: brings changes to users made elsewhere (moderation by an admin command,
//! new traits from a login on another connection or instance) to this process's open sessions
//! within one refresh interval, as venueless does within 30 s. One indexed "changed since"
//! query per interval serves every session, so its cost does not grow with connections, and
//! sessions never touch the database for it: the [`SessionRegistry`] hands each change to the
//! sessions of that user.

use std::sync::Arc;
use std::time::Duration;

use crate::db::users::{changed_since, StoredUserState};
use crate::db::{now_ms, Db, DbError};
use crate::registry::{SessionRegistry, UserState};

/// How far each look reaches back before the previous one started (besides one interval):
/// changes written with a clock slightly behind ours (another instance, the CLI), committed
/// just after our last read, or made while a session was authenticating are still seen.
/// Sessions ignore what they already hold (by version), so seeing a change again is harmless.
const OVERLAP_MS: i64 = 10_000;

/// The periodic look for changed users (see the module doc).
pub struct UserRefresher {
    db: Db,
    sessions: Arc<SessionRegistry>,
    /// Users changed after this (ms) are read at the next look.
    since: i64,
    /// How far back each look reaches before the previous one.
    overlap_ms: i64,
}

impl UserRefresher {
    /// A refresher looking every `every` (see [`UserRefresher::run`]).
    pub fn new(db: Db, sessions: Arc<SessionRegistry>, every: Duration) -> UserRefresher {
        let overlap_ms = OVERLAP_MS.saturating_add(i64::try_from(every.as_millis()).unwrap_or(0));
        UserRefresher {
            db,
            sessions,
            since: now_ms() - overlap_ms,
            overlap_ms,
        }
    }

    /// Looks every `every` for ever.
    pub async fn run(mut self, every: Duration) {
        let mut interval = actix_web::rt::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(e) = self.look().await {
                log::warn!("cannot read changed users: {e}");
            }
        }
    }

    /// One look: reads the users changed since the last one and delivers what is new to their
    /// sessions. Returns how many sessions were told. Without authenticated sessions nothing is
    /// read (a session that authenticates later reads its user anyway).
    pub async fn look(&mut self) -> Result<usize, DbError> {
        let started = now_ms();
        if self.sessions.users() == 0 {
            self.since = started - self.overlap_ms;
            return Ok(0);
        }
        let since = self.since;
        let changed: Vec<StoredUserState> = self.db.run(move |c| changed_since(c, since)).await?;
        self.since = started - self.overlap_ms;
        if changed.is_empty() {
            return Ok(0);
        }
        let states: Vec<Arc<UserState>> = changed
            .into_iter()
            .map(|user| {
                Arc::new(UserState {
                    id: user.id,
                    traits: user.traits,
                    moderation: user.moderation,
                    version: user.version,
                })
            })
            .collect();
        Ok(self.sessions.deliver(&states))
    }
}
