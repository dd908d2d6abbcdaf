//! Where each room's and call's meeting lives (`meetings`), and every server a meeting id was
//! ever placed on (`meeting_placements`), so a restart loses nothing and recordings are found
//! after a move.
//!
//! A meeting keeps its `meeting_id` and passwords for life; only its server changes. A meeting
//! whose server went away (panic, offline) is stored with `server_id` [`UNPLACED`], so the next
//! join re-creates it on a healthy server while its recordings stay findable.

use diesel::prelude::*;

use crate::db::schema::{meeting_placements, meetings};
use crate::db::{now_ms, DbConn, DbError};
use crate::with_conn;

/// `server_id` of a meeting that is not placed on any server (server ids start at 1).
pub const UNPLACED: i32 = 0;

/// One stored meeting.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = meetings)]
pub struct MeetingRow {
    /// `room:{world}:{room}` or `call:{id}`.
    pub meeting_key: String,
    pub world_id: String,
    pub room_id: Option<String>,
    pub call_id: Option<String>,
    /// [`UNPLACED`] when the meeting has no server.
    pub server_id: i32,
    pub meeting_id: String,
    pub attendee_pw: String,
    pub moderator_pw: String,
    /// BBB's createTime (ms) of the last instance created.
    pub create_time: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// When the leader's poll last listed the meeting on `server_id` (see [`mark_seen`]).
    pub seen_at: Option<i64>,
}

impl MeetingRow {
    /// The server, or `None` when [`UNPLACED`].
    pub fn server(&self) -> Option<i32> {
        (self.server_id != UNPLACED).then_some(self.server_id)
    }
}

/// Every stored meeting (loaded once when the coordinator starts).
pub fn load_all(conn: &mut DbConn) -> Result<Vec<MeetingRow>, DbError> {
    Ok(with_conn!(conn, |c| meetings::table
        .order(meetings::meeting_key)
        .select(MeetingRow::as_select())
        .load(c))?)
}

/// One meeting by key.
pub fn get(conn: &mut DbConn, key: &str) -> Result<Option<MeetingRow>, DbError> {
    Ok(with_conn!(conn, |c| meetings::table
        .find(key)
        .select(MeetingRow::as_select())
        .first(c)
        .optional())?)
}

/// Stores a new meeting unless its key exists already, and returns the stored row: the given one,
/// or the one another instance stored first (then its ids and passwords win). When placed, the
/// placement is recorded too.
pub fn insert_or_get(conn: &mut DbConn, row: &MeetingRow) -> Result<MeetingRow, DbError> {
    let now = now_ms();
    with_conn!(conn, |c| c.transaction(|c| {
        let inserted = diesel::insert_into(meetings::table)
            .values((
                meetings::meeting_key.eq(&row.meeting_key),
                meetings::world_id.eq(&row.world_id),
                meetings::room_id.eq(&row.room_id),
                meetings::call_id.eq(&row.call_id),
                meetings::server_id.eq(row.server_id),
                meetings::meeting_id.eq(&row.meeting_id),
                meetings::attendee_pw.eq(&row.attendee_pw),
                meetings::moderator_pw.eq(&row.moderator_pw),
                meetings::create_time.eq(row.create_time),
                meetings::created_at.eq(now),
                meetings::updated_at.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(c)?;
        if inserted > 0 && row.server_id != UNPLACED {
            diesel::insert_into(meeting_placements::table)
                .values((
                    meeting_placements::meeting_id.eq(&row.meeting_id),
                    meeting_placements::server_id.eq(row.server_id),
                    meeting_placements::placed_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(c)?;
        }
        meetings::table
            .find(&row.meeting_key)
            .select(MeetingRow::as_select())
            .first(c)
            .map_err(DbError::from)
    }))
}

/// Places (or moves) a meeting on `server_id` and records the placement; `create_time` is
/// updated when given. `false` when the key is unknown.
pub fn place(
    conn: &mut DbConn,
    key: &str,
    server_id: i32,
    create_time: Option<i64>,
) -> Result<bool, DbError> {
    let now = now_ms();
    with_conn!(conn, |c| c.transaction(|c| {
        // Write first: under SQLite a transaction that reads before it writes can fail with
        // SQLITE_BUSY when another connection writes meanwhile.
        let target = meetings::table.find(key);
        let updated = match create_time {
            Some(t) => diesel::update(target)
                .set((
                    meetings::server_id.eq(server_id),
                    meetings::create_time.eq(t),
                    meetings::updated_at.eq(now),
                ))
                .execute(c)?,
            None => diesel::update(target)
                .set((
                    meetings::server_id.eq(server_id),
                    meetings::updated_at.eq(now),
                ))
                .execute(c)?,
        };
        if updated == 0 {
            return Ok(false);
        }
        let meeting_id: String = meetings::table
            .find(key)
            .select(meetings::meeting_id)
            .first(c)?;
        if server_id != UNPLACED {
            diesel::insert_into(meeting_placements::table)
                .values((
                    meeting_placements::meeting_id.eq(&meeting_id),
                    meeting_placements::server_id.eq(server_id),
                    meeting_placements::placed_at.eq(now),
                ))
                .on_conflict((
                    meeting_placements::meeting_id,
                    meeting_placements::server_id,
                ))
                .do_update()
                .set(meeting_placements::placed_at.eq(now))
                .execute(c)?;
        }
        Ok::<_, DbError>(true)
    }))
}

/// Moves a meeting from `expected` (`None`: unplaced) to `server_id`, but only if it is still
/// where the caller last saw it, and returns the stored row afterwards (`None`: unknown key).
///
/// This is the one write that decides where a meeting runs when several gateway instances
/// race: the conditional `UPDATE … WHERE server_id = expected` lets exactly one of them win
/// (PostgreSQL re-checks the condition after waiting for the row lock; SQLite serialises
/// writers). A caller whose claim found another server must adopt that placement.
pub fn claim(
    conn: &mut DbConn,
    key: &str,
    expected: Option<i32>,
    server_id: i32,
) -> Result<Option<MeetingRow>, DbError> {
    let now = now_ms();
    let expected = expected.unwrap_or(UNPLACED);
    with_conn!(conn, |c| c.transaction(|c| {
        // Write first (no SQLITE_BUSY upgrade from a read lock).
        let updated = diesel::update(
            meetings::table
                .find(key)
                .filter(meetings::server_id.eq(expected)),
        )
        .set((
            meetings::server_id.eq(server_id),
            meetings::seen_at.eq(None::<i64>),
            meetings::updated_at.eq(now),
        ))
        .execute(c)?;
        let row = meetings::table
            .find(key)
            .select(MeetingRow::as_select())
            .first(c)
            .optional()?;
        if let (1, Some(row)) = (updated, &row) {
            if server_id != UNPLACED {
                diesel::insert_into(meeting_placements::table)
                    .values((
                        meeting_placements::meeting_id.eq(&row.meeting_id),
                        meeting_placements::server_id.eq(server_id),
                        meeting_placements::placed_at.eq(now),
                    ))
                    .on_conflict((
                        meeting_placements::meeting_id,
                        meeting_placements::server_id,
                    ))
                    .do_update()
                    .set(meeting_placements::placed_at.eq(now))
                    .execute(c)?;
            }
        }
        Ok::<_, DbError>(row)
    }))
}

/// Notes that a poll at `polled_at` listed `meeting_ids` on `server_id`: followers treat a
/// meeting as running while its `seen_at` is not older than the server's last poll.
pub fn mark_seen(
    conn: &mut DbConn,
    server_id: i32,
    polled_at: i64,
    meeting_ids: &[String],
) -> Result<usize, DbError> {
    let mut n = 0;
    // Bounded IN lists (SQLite limits bound parameters).
    for chunk in meeting_ids.chunks(500) {
        n += with_conn!(conn, |c| diesel::update(
            meetings::table
                .filter(meetings::server_id.eq(server_id))
                .filter(meetings::meeting_id.eq_any(chunk))
        )
        .set(meetings::seen_at.eq(polled_at))
        .execute(c))?;
    }
    Ok(n)
}

/// Records the createTime BBB reported for the meeting's current instance.
pub fn set_create_time(conn: &mut DbConn, key: &str, create_time: i64) -> Result<bool, DbError> {
    let now = now_ms();
    let n = with_conn!(conn, |c| diesel::update(meetings::table.find(key))
        .set((
            meetings::create_time.eq(create_time),
            meetings::updated_at.eq(now),
        ))
        .execute(c))?;
    Ok(n > 0)
}

/// Unplaces every meeting on `server_id` (panic, server offline or removed) so the next join
/// re-creates it elsewhere; ids, passwords and placement history are kept. Returns how many.
pub fn forget_server(conn: &mut DbConn, server_id: i32) -> Result<usize, DbError> {
    let now = now_ms();
    Ok(with_conn!(conn, |c| diesel::update(
        meetings::table.filter(meetings::server_id.eq(server_id))
    )
    .set((
        meetings::server_id.eq(UNPLACED),
        meetings::updated_at.eq(now),
    ))
    .execute(c))?)
}

/// Deletes a meeting row (its placement history stays for recordings).
pub fn delete(conn: &mut DbConn, key: &str) -> Result<bool, DbError> {
    let n = with_conn!(conn, |c| diesel::delete(meetings::table.find(key))
        .execute(c))?;
    Ok(n > 0)
}

/// Every server a meeting id was ever placed on, most recent first.
pub fn servers_ever(conn: &mut DbConn, meeting_id: &str) -> Result<Vec<i32>, DbError> {
    Ok(with_conn!(conn, |c| meeting_placements::table
        .filter(meeting_placements::meeting_id.eq(meeting_id))
        .order((
            meeting_placements::placed_at.desc(),
            meeting_placements::server_id,
        ))
        .select(meeting_placements::server_id)
        .load(c))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_support::for_each_backend;

    fn row(key: &str, meeting_id: &str, server: i32) -> MeetingRow {
        MeetingRow {
            meeting_key: key.into(),
            world_id: "w".into(),
            room_id: Some("r".into()),
            call_id: None,
            server_id: server,
            meeting_id: meeting_id.into(),
            attendee_pw: "ap".into(),
            moderator_pw: "mp".into(),
            create_time: None,
            created_at: 0,
            updated_at: 0,
            seen_at: None,
        }
    }

    #[test]
    fn insert_place_move_and_history() {
        for_each_backend(|conn| {
            let stored = insert_or_get(conn, &row("room:w:r", "m1", 1)).unwrap();
            assert_eq!(stored.server(), Some(1));
            // A second instance with other ids loses: the first row wins.
            let again = insert_or_get(conn, &row("room:w:r", "m-other", 2)).unwrap();
            assert_eq!(again.meeting_id, "m1");
            assert_eq!(again.server_id, 1);

            assert!(place(conn, "room:w:r", 2, Some(1234)).unwrap());
            let moved = get(conn, "room:w:r").unwrap().unwrap();
            assert_eq!((moved.server_id, moved.create_time), (2, Some(1234)));
            assert!(set_create_time(conn, "room:w:r", 99).unwrap());
            assert_eq!(
                get(conn, "room:w:r").unwrap().unwrap().create_time,
                Some(99)
            );
            assert!(!place(conn, "room:w:nope", 2, None).unwrap());

            let mut ever = servers_ever(conn, "m1").unwrap();
            ever.sort();
            assert_eq!(ever, vec![1, 2]);
            assert!(servers_ever(conn, "m-other").unwrap().is_empty());
        });
    }

    #[test]
    fn forget_server_unplaces_and_keeps_history() {
        for_each_backend(|conn| {
            insert_or_get(conn, &row("room:w:a", "ma", 1)).unwrap();
            insert_or_get(conn, &row("room:w:b", "mb", 1)).unwrap();
            insert_or_get(conn, &row("room:w:c", "mc", 2)).unwrap();
            assert_eq!(forget_server(conn, 1).unwrap(), 2);
            let all = load_all(conn).unwrap();
            let servers: Vec<Option<i32>> = all.iter().map(MeetingRow::server).collect();
            assert_eq!(servers, vec![None, None, Some(2)]);
            assert_eq!(servers_ever(conn, "ma").unwrap(), vec![1]);
            assert!(delete(conn, "room:w:a").unwrap());
            assert!(get(conn, "room:w:a").unwrap().is_none());
            assert_eq!(servers_ever(conn, "ma").unwrap(), vec![1]);
        });
    }

    #[test]
    fn claim_lets_exactly_one_placement_win() {
        for_each_backend(|conn| {
            insert_or_get(conn, &row("room:w:r", "m1", UNPLACED)).unwrap();
            // Both instances saw it unplaced; the first claim wins, the second finds server 1.
            let won = claim(conn, "room:w:r", None, 1).unwrap().unwrap();
            assert_eq!(won.server(), Some(1));
            let lost = claim(conn, "room:w:r", None, 2).unwrap().unwrap();
            assert_eq!(lost.server(), Some(1));
            assert_eq!(servers_ever(conn, "m1").unwrap(), vec![1]);
            // A move from where it really is succeeds.
            let moved = claim(conn, "room:w:r", Some(1), 2).unwrap().unwrap();
            assert_eq!(moved.server(), Some(2));
            assert!(claim(conn, "room:w:nope", None, 1).unwrap().is_none());
        });
    }

    #[test]
    fn concurrent_claims_on_separate_connections_have_one_winner() {
        for t in crate::db::testing::TestDb::all().unwrap() {
            let mut conn = t.db.get().unwrap();
            insert_or_get(&mut conn, &row("room:w:race", "mr", UNPLACED)).unwrap();
            drop(conn);
            // One connection per claimant (the test pool has two).
            let db = crate::db::Db::connect(&t.url, 8, std::time::Duration::from_secs(10)).unwrap();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let handles: Vec<_> = (1..=8)
                .map(|server| {
                    let (db, barrier) = (db.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let mut conn = db.get().unwrap();
                        barrier.wait();
                        claim(&mut conn, "room:w:race", None, server)
                            .unwrap()
                            .unwrap()
                            .server()
                    })
                })
                .collect();
            let seen: Vec<Option<i32>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            // Every claimant sees the same (winning) server, and only it was ever placed.
            assert!(
                seen.iter().all(|s| *s == seen[0] && s.is_some()),
                "{seen:?}"
            );
            let mut conn = t.db.get().unwrap();
            assert_eq!(servers_ever(&mut conn, "mr").unwrap().len(), 1);
        }
    }

    #[test]
    fn mark_seen_only_touches_meetings_on_that_server() {
        for_each_backend(|conn| {
            insert_or_get(conn, &row("room:w:a", "ma", 1)).unwrap();
            insert_or_get(conn, &row("room:w:b", "mb", 2)).unwrap();
            let ids = vec!["ma".to_string(), "mb".to_string(), "foreign".to_string()];
            assert_eq!(mark_seen(conn, 1, 77, &ids).unwrap(), 1);
            assert_eq!(get(conn, "room:w:a").unwrap().unwrap().seen_at, Some(77));
            assert_eq!(get(conn, "room:w:b").unwrap().unwrap().seen_at, None);
        });
    }

    #[test]
    fn unplaced_insert_records_no_placement() {
        for_each_backend(|conn| {
            insert_or_get(conn, &row("call:x", "mx", UNPLACED)).unwrap();
            assert!(servers_ever(conn, "mx").unwrap().is_empty());
        });
    }
}
