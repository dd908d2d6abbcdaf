//! Leader election among gateway instances sharing one PostgreSQL database: the instance that
//! holds a session-level advisory lock polls the BBB fleet; the others read what it stores.
//!
//! The lock lives on a connection of its own, outside the pool, that stays open while this
//! instance leads. A pooled connection would not do: returning it to the pool would keep the
//! session (and the lock) alive after the coordinator stopped. When the leader process dies or
//! its coordinator is dropped, the connection closes, PostgreSQL ends the session and releases
//! the lock, and the next instance to try takes it — within one poll interval.
//!
//! SQLite is a single-instance database: there the caller is always the leader.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::sql_types::Bool;
use diesel::{Connection, PgConnection, RunQueryDsl};

use crate::db::{Backend, Db, DbError};

/// The advisory lock key of the poll leader (the migration lock uses 7317001).
pub const LEADER_LOCK_KEY: i64 = 7_317_002;

/// This instance's side of the election. Blocking: call [`LeaderLock::refresh`] from
/// `spawn_blocking`.
#[derive(Default)]
pub struct LeaderLock {
    /// The lock connection; kept open between tries so followers do not reconnect each tick.
    conn: Option<PgConnection>,
    held: bool,
}

#[derive(diesel::QueryableByName)]
struct Acquired {
    #[diesel(sql_type = Bool)]
    acquired: bool,
}

/// Adds a connect timeout to a PostgreSQL URL unless it has one, so a dead database cannot
/// block the election (libpq waits forever by default).
pub(crate) fn with_connect_timeout(url: &str, timeout: Duration) -> String {
    if url.contains("connect_timeout=") {
        return url.to_string();
    }
    let secs = timeout.as_secs().max(1);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}connect_timeout={secs}")
}

impl LeaderLock {
    /// Whether this instance held the lock at the last refresh.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Checks or tries to take the lock; answers whether this instance leads now. An error
    /// (database unreachable) drops the connection and with it any lock, so a partitioned
    /// instance stops leading instead of polling alongside a new leader.
    pub fn refresh(&mut self, db: &Db) -> Result<bool, DbError> {
        if db.backend() == Backend::Sqlite {
            self.held = true;
            return Ok(true);
        }
        let result = self.try_refresh(db);
        if result.is_err() {
            // The connection is broken or the database gone: no query on it, just drop it.
            self.conn = None;
            self.held = false;
        }
        result
    }

    fn try_refresh(&mut self, db: &Db) -> Result<bool, DbError> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                let (url, timeout) = db.url_and_timeout();
                let c = PgConnection::establish(&with_connect_timeout(url, timeout))
                    // The libpq message names host and port at most, never the password.
                    .map_err(|e| DbError::Unavailable(e.to_string()))?;
                self.conn.insert(c)
            }
        };
        if self.held {
            // Still our session? A terminated backend fails this query.
            conn.batch_execute("SELECT 1")?;
            return Ok(true);
        }
        let row: Acquired = diesel::sql_query(format!(
            "SELECT pg_try_advisory_lock({LEADER_LOCK_KEY}) AS acquired"
        ))
        .get_result(conn)?;
        self.held = row.acquired;
        Ok(self.held)
    }

    /// Gives the lock up and closes the lock connection. The unlock is explicit because
    /// PostgreSQL frees a closed session's locks only once its backend has exited, which
    /// happens after the client has already moved on; a successor must not have to wait for it.
    pub fn release(&mut self) {
        if let (Some(conn), true) = (&mut self.conn, self.held) {
            // Best effort: if it fails, closing the session below frees the lock anyway.
            let _ = conn.batch_execute(&format!("SELECT pg_advisory_unlock({LEADER_LOCK_KEY})"));
        }
        self.conn = None;
        self.held = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::TestDb;

    #[test]
    fn connect_timeout_is_added_once() {
        let t = Duration::from_secs(3);
        assert_eq!(
            with_connect_timeout("postgres://h/db", t),
            "postgres://h/db?connect_timeout=3"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?sslmode=disable", t),
            "postgres://h/db?sslmode=disable&connect_timeout=3"
        );
        let given = "postgres://h/db?connect_timeout=9";
        assert_eq!(with_connect_timeout(given, t), given);
    }

    #[test]
    fn sqlite_always_leads() {
        let t = TestDb::sqlite().unwrap();
        let mut a = LeaderLock::default();
        let mut b = LeaderLock::default();
        assert!(a.refresh(&t.db).unwrap() && b.refresh(&t.db).unwrap());
    }

    #[test]
    fn one_leader_on_postgres_and_a_new_one_after_release() {
        let Some(t) = TestDb::postgres() else {
            return;
        };
        let t = t.unwrap();
        let mut a = LeaderLock::default();
        let mut b = LeaderLock::default();
        assert!(a.refresh(&t.db).unwrap());
        assert!(!b.refresh(&t.db).unwrap());
        assert!(a.refresh(&t.db).unwrap(), "the leader keeps leading");
        assert!(!b.refresh(&t.db).unwrap());
        a.release();
        assert!(
            b.refresh(&t.db).unwrap(),
            "the lock is free once the session ends"
        );
        assert!(!a.refresh(&t.db).unwrap());
    }
}
