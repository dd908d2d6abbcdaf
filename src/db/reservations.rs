//! Reservations every instance's placement sees: a meeting placed on a server holds the places
//! of the people it expects until that server's polls count them (see
//! [`crate::coordinator::fleet`]). Each instance keeps them in memory; this table and the
//! `reserved` change announcement make one instance's placements count in every other
//! instance's load view, so a burst of new meetings arriving through several instances is
//! spread as if one instance placed them all. Rows outlive their use by at most an hour: the
//! leader's retention pass deletes older ones.

use diesel::prelude::*;

use crate::db::changes::{self, Change};
use crate::db::schema::placement_reservations as t;
use crate::db::{DbConn, DbError};
use crate::ids::ServerId;
use crate::with_conn;

/// One meeting placed on a server, expected to bring `expected` participants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedReservation {
    pub server: ServerId,
    pub meeting_id: String,
    pub expected: u32,
    /// When it was placed (ms since the Unix epoch, the placing instance's clock).
    pub placed_at: i64,
}

/// Stores `r` (replacing an older reservation of the same meeting) and announces it.
pub fn record(conn: &mut DbConn, r: &SharedReservation) -> Result<(), DbError> {
    let expected = i32::try_from(r.expected).unwrap_or(i32::MAX);
    let values = (
        t::meeting_id.eq(&r.meeting_id),
        t::server_id.eq(r.server.get()),
        t::expected.eq(expected),
        t::placed_at.eq(r.placed_at),
    );
    with_conn!(conn, |c| diesel::insert_into(t::table)
        .values(values)
        .on_conflict(t::meeting_id)
        .do_update()
        .set((
            t::server_id.eq(r.server.get()),
            t::expected.eq(expected),
            t::placed_at.eq(r.placed_at),
        ))
        .execute(c))?;
    changes::notify(conn, &Change::Reserved(r.clone()))
}

/// The reservations placed at `since_ms` or later.
pub fn placed_since(conn: &mut DbConn, since_ms: i64) -> Result<Vec<SharedReservation>, DbError> {
    let rows: Vec<(String, i32, i32, i64)> = with_conn!(conn, |c| t::table
        .filter(t::placed_at.ge(since_ms))
        .order(t::placed_at)
        .select((t::meeting_id, t::server_id, t::expected, t::placed_at))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(
            |(meeting_id, server, expected, placed_at)| SharedReservation {
                server: ServerId::new(server),
                meeting_id,
                expected: u32::try_from(expected).unwrap_or(0),
                placed_at,
            },
        )
        .collect())
}

/// Deletes the reservations placed before `cutoff_ms`; answers how many.
pub fn delete_before(conn: &mut DbConn, cutoff_ms: i64) -> Result<usize, DbError> {
    Ok(with_conn!(conn, |c| diesel::delete(
        t::table.filter(t::placed_at.lt(cutoff_ms))
    )
    .execute(c))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_support::for_each_backend;

    fn r(meeting: &str, server: i32, expected: u32, at: i64) -> SharedReservation {
        SharedReservation {
            server: ServerId::new(server),
            meeting_id: meeting.into(),
            expected,
            placed_at: at,
        }
    }

    #[test]
    fn reservations_are_replaced_read_back_and_deleted_by_age() {
        for_each_backend(|conn| {
            record(conn, &r("m1", 1, 800, 1_000)).unwrap();
            record(conn, &r("m2", 2, 10, 2_000)).unwrap();
            // A move: the same meeting reserved on another server replaces the first.
            record(conn, &r("m1", 3, 800, 3_000)).unwrap();
            assert_eq!(
                placed_since(conn, 0).unwrap(),
                vec![r("m2", 2, 10, 2_000), r("m1", 3, 800, 3_000)]
            );
            assert_eq!(
                placed_since(conn, 2_500).unwrap(),
                vec![r("m1", 3, 800, 3_000)]
            );
            assert_eq!(delete_before(conn, 2_500).unwrap(), 1);
            assert_eq!(placed_since(conn, 0).unwrap(), vec![r("m1", 3, 800, 3_000)]);
        });
    }
}
