//! The poll leader's lease (`leader_lease`): among gateway instances sharing one PostgreSQL
//! database, the one holding the unexpired lease polls the BBB fleet; the others read what it
//! stores. The holder renews it well before it expires; when the holder dies or loses the
//! database, the lease runs out and the next instance to try takes it over. Times are the
//! database's clock, so the instances' clocks need not agree.
//!
//! A lease (unlike a session-level lock) cannot outlive a hung connection: an instance that
//! cannot renew in time stops leading on its own, and nobody waits for TCP to notice.
//!
//! SQLite is a single-instance database: there the caller always leads.

use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel::RunQueryDsl;

use crate::db::{DbConn, DbError};

/// The lease of the fleet poll.
pub const POLL_LEASE: &str = "poll";

/// The database's clock in ms, as SQL.
const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

#[derive(diesel::QueryableByName)]
struct Holder {
    #[diesel(sql_type = Text)]
    instance: String,
}

/// Renews the lease `name` for `instance` for `lease`, or takes it over when it expired (or
/// nobody held it). Answers whether `instance` holds it now.
pub fn acquire(
    conn: &mut DbConn,
    name: &str,
    instance: &str,
    lease: Duration,
) -> Result<bool, DbError> {
    let DbConn::Postgres(c) = conn else {
        return Ok(true);
    };
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let held: Vec<Holder> = diesel::sql_query(format!(
        "INSERT INTO leader_lease (name, instance, expires_at, renewed_at) \
         VALUES ($1, $2, {DB_NOW_MS} + $3, {DB_NOW_MS}) \
         ON CONFLICT (name) DO UPDATE SET instance = EXCLUDED.instance, \
             expires_at = EXCLUDED.expires_at, renewed_at = EXCLUDED.renewed_at \
         WHERE leader_lease.instance = EXCLUDED.instance \
            OR leader_lease.expires_at < EXCLUDED.renewed_at \
         RETURNING instance"
    ))
    .bind::<Text, _>(name)
    .bind::<Text, _>(instance)
    .bind::<BigInt, _>(lease_ms)
    .load(&mut **c)?;
    Ok(held.iter().any(|h| h.instance == instance))
}

/// Gives the lease up at once (a clean stop), so a successor need not wait for it to expire.
pub fn release(conn: &mut DbConn, name: &str, instance: &str) -> Result<(), DbError> {
    if let DbConn::Postgres(c) = conn {
        diesel::sql_query(
            "UPDATE leader_lease SET expires_at = 0 WHERE name = $1 AND instance = $2",
        )
        .bind::<Text, _>(name)
        .bind::<Text, _>(instance)
        .execute(&mut **c)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::TestDb;

    #[test]
    fn sqlite_always_leads() {
        let t = TestDb::sqlite().unwrap();
        let mut conn = t.db.get().unwrap();
        let lease = Duration::from_secs(5);
        assert!(acquire(&mut conn, POLL_LEASE, "a", lease).unwrap());
        assert!(acquire(&mut conn, POLL_LEASE, "b", lease).unwrap());
    }

    #[test]
    fn one_holder_at_a_time_and_a_new_one_when_it_expires_or_is_released() {
        let Some(t) = TestDb::postgres() else {
            return;
        };
        let t = t.expect("a PostgreSQL test database");
        let mut conn = t.db.get().unwrap();
        let long = Duration::from_secs(60);
        assert!(acquire(&mut conn, POLL_LEASE, "a", long).unwrap());
        assert!(!acquire(&mut conn, POLL_LEASE, "b", long).unwrap());
        assert!(
            acquire(&mut conn, POLL_LEASE, "a", long).unwrap(),
            "renewed"
        );
        release(&mut conn, POLL_LEASE, "b").unwrap();
        assert!(
            !acquire(&mut conn, POLL_LEASE, "b", long).unwrap(),
            "not b's to give up"
        );
        release(&mut conn, POLL_LEASE, "a").unwrap();
        assert!(
            acquire(&mut conn, POLL_LEASE, "b", long).unwrap(),
            "given up: b takes it"
        );
        // A short lease that nobody renews runs out.
        assert!(acquire(&mut conn, "other", "a", Duration::from_millis(1)).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            acquire(&mut conn, "other", "b", long).unwrap(),
            "taken over once expired"
        );
        assert!(!acquire(&mut conn, "other", "a", long).unwrap());
    }
}
