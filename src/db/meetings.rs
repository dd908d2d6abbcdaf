//! Where each room's and call's meeting lives (`meetings`), and every server a meeting id was
//! ever placed on (`meeting_placements`), so a restart loses nothing and recordings are found
//! after a move.
//!
//! A meeting keeps its `meeting_id` and passwords for life; only its server changes. A meeting
//! whose server went away (panic, offline) is stored without one (`server_id` NULL), so the
//! next join re-creates it on a healthy server while its recordings stay findable. What is
//! stored about a meeting's BBB instance (createTime, `seen_at`, `ended_at`) is a claim with
//! the age it was written at, never a confirmation that it runs now.

use diesel::prelude::*;

use crate::db::schema::{meeting_placements, meetings};
use crate::db::{now_ms, DbConn, DbError};
use crate::ids::{MeetingKey, ServerId};
use crate::with_conn;

/// The columns of a meeting, as stored.
#[derive(Queryable, Selectable)]
#[diesel(table_name = meetings)]
struct RawMeeting {
    meeting_key: String,
    world_id: String,
    room_id: Option<String>,
    call_id: Option<String>,
    server_id: Option<i32>,
    meeting_id: String,
    attendee_pw: String,
    moderator_pw: String,
    create_time: Option<i64>,
    created_at: i64,
    updated_at: i64,
    seen_at: Option<i64>,
    callback_issued_at: Option<i64>,
    ended_at: Option<i64>,
}

/// One stored meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRow {
    pub meeting_key: MeetingKey,
    pub world_id: String,
    pub room_id: Option<String>,
    pub call_id: Option<String>,
    /// `None` when the meeting has no server.
    pub server: Option<ServerId>,
    pub meeting_id: String,
    pub attendee_pw: String,
    pub moderator_pw: String,
    /// BBB's createTime (ms) of the last instance seen.
    pub create_time: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// When the leader's poll last listed the meeting on `server` (see [`mark_seen`]).
    pub seen_at: Option<i64>,
    /// Issue time of the end-callback token of the create that started the current instance.
    pub callback_issued_at: Option<i64>,
    /// When BBB reported the meeting ended (see [`mark_ended`]); `None` after a new create.
    pub ended_at: Option<i64>,
}

impl RawMeeting {
    fn into_row(self) -> Result<MeetingRow, DbError> {
        let meeting_key = MeetingKey::parse(&self.meeting_key).ok_or_else(|| {
            DbError::Invalid(format!(
                "stored meeting key {:?} is malformed",
                self.meeting_key
            ))
        })?;
        Ok(MeetingRow {
            meeting_key,
            world_id: self.world_id,
            room_id: self.room_id,
            call_id: self.call_id,
            server: self.server_id.map(ServerId::new),
            meeting_id: self.meeting_id,
            attendee_pw: self.attendee_pw,
            moderator_pw: self.moderator_pw,
            create_time: self.create_time,
            created_at: self.created_at,
            updated_at: self.updated_at,
            seen_at: self.seen_at,
            callback_issued_at: self.callback_issued_at,
            ended_at: self.ended_at,
        })
    }
}

fn rows(raw: Vec<RawMeeting>) -> Vec<MeetingRow> {
    raw.into_iter()
        .filter_map(|r| match r.into_row() {
            Ok(row) => Some(row),
            Err(e) => {
                log::warn!("skipping a meeting row: {e}");
                None
            }
        })
        .collect()
}

fn id_of(server: Option<ServerId>) -> Option<i32> {
    server.map(ServerId::get)
}

/// Every stored meeting.
pub fn load_all(conn: &mut DbConn) -> Result<Vec<MeetingRow>, DbError> {
    let raw = with_conn!(conn, |c| meetings::table
        .order(meetings::meeting_key)
        .select(RawMeeting::as_select())
        .load(c))?;
    Ok(rows(raw))
}

/// One meeting by key.
pub fn get(conn: &mut DbConn, key: &MeetingKey) -> Result<Option<MeetingRow>, DbError> {
    let raw = with_conn!(conn, |c| meetings::table
        .find(key.as_str())
        .select(RawMeeting::as_select())
        .first(c)
        .optional())?;
    raw.map(RawMeeting::into_row).transpose()
}

/// One meeting by its BBB meeting id.
pub fn by_meeting_id(conn: &mut DbConn, meeting_id: &str) -> Result<Option<MeetingRow>, DbError> {
    let raw = with_conn!(conn, |c| meetings::table
        .filter(meetings::meeting_id.eq(meeting_id))
        .select(RawMeeting::as_select())
        .first(c)
        .optional())?;
    raw.map(RawMeeting::into_row).transpose()
}

/// Records that `meeting_id` was placed on `server` at `now`.
macro_rules! record_placement {
    ($c:expr, $meeting_id:expr, $server:expr, $now:expr) => {
        diesel::insert_into(meeting_placements::table)
            .values((
                meeting_placements::meeting_id.eq($meeting_id),
                meeting_placements::server_id.eq($server.get()),
                meeting_placements::placed_at.eq($now),
            ))
            .on_conflict((
                meeting_placements::meeting_id,
                meeting_placements::server_id,
            ))
            .do_update()
            .set(meeting_placements::placed_at.eq($now))
            .execute($c)
    };
}

/// Stores a new meeting unless its key exists already, and returns the stored row: the given one,
/// or the one another instance stored first (then its ids and passwords win). When placed, the
/// placement is recorded too.
pub fn insert_or_get(conn: &mut DbConn, row: &MeetingRow) -> Result<MeetingRow, DbError> {
    let now = now_ms();
    let raw = with_conn!(conn, |c| c.transaction(|c| {
        let inserted = diesel::insert_into(meetings::table)
            .values((
                meetings::meeting_key.eq(row.meeting_key.as_str()),
                meetings::world_id.eq(&row.world_id),
                meetings::room_id.eq(&row.room_id),
                meetings::call_id.eq(&row.call_id),
                meetings::server_id.eq(id_of(row.server)),
                meetings::meeting_id.eq(&row.meeting_id),
                meetings::attendee_pw.eq(&row.attendee_pw),
                meetings::moderator_pw.eq(&row.moderator_pw),
                meetings::create_time.eq(row.create_time),
                meetings::created_at.eq(now),
                meetings::updated_at.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(c)?;
        if let (1, Some(server)) = (inserted, row.server) {
            record_placement!(c, &row.meeting_id, server, now)?;
        }
        meetings::table
            .find(row.meeting_key.as_str())
            .select(RawMeeting::as_select())
            .first(c)
            .map_err(DbError::from)
    }))?;
    raw.into_row()
}

/// Places a meeting on `server` (or nowhere) if it is still where the caller last saw it
/// (`expected`), and returns the stored row afterwards (`None`: unknown key).
///
/// This is the one write that decides where a meeting runs when several gateway instances
/// race: the conditional `UPDATE … WHERE server_id = expected` lets exactly one of them win
/// (PostgreSQL re-checks the condition after waiting for the row lock; SQLite serialises
/// writers). A claim that keeps the meeting where it is (a re-create on its server) is still
/// conditional, so an instance that missed a move elsewhere finds out instead of splitting the
/// meeting. A caller whose claim found another server must adopt that placement.
pub fn claim(
    conn: &mut DbConn,
    key: &MeetingKey,
    expected: Option<ServerId>,
    server: Option<ServerId>,
) -> Result<Option<MeetingRow>, DbError> {
    let now = now_ms();
    let moved = expected != server;
    let raw = with_conn!(conn, |c| c.transaction(|c| {
        // Write first (no SQLITE_BUSY upgrade from a read lock).
        let target = meetings::table.find(key.as_str());
        let updated = match (expected, moved) {
            (Some(e), true) => diesel::update(target.filter(meetings::server_id.eq(e.get())))
                .set((
                    meetings::server_id.eq(id_of(server)),
                    meetings::seen_at.eq(None::<i64>),
                    meetings::updated_at.eq(now),
                ))
                .execute(c)?,
            (None, true) => diesel::update(target.filter(meetings::server_id.is_null()))
                .set((
                    meetings::server_id.eq(id_of(server)),
                    meetings::seen_at.eq(None::<i64>),
                    meetings::updated_at.eq(now),
                ))
                .execute(c)?,
            (Some(e), false) => diesel::update(target.filter(meetings::server_id.eq(e.get())))
                .set(meetings::updated_at.eq(now))
                .execute(c)?,
            (None, false) => diesel::update(target.filter(meetings::server_id.is_null()))
                .set(meetings::updated_at.eq(now))
                .execute(c)?,
        };
        let row = meetings::table
            .find(key.as_str())
            .select(RawMeeting::as_select())
            .first(c)
            .optional()?;
        if let (1, true, Some(row), Some(server)) = (updated, moved, &row, server) {
            record_placement!(c, &row.meeting_id, server, now)?;
        }
        Ok::<_, DbError>(row)
    }))?;
    raw.map(RawMeeting::into_row).transpose()
}

/// Notes that a poll at `polled_at` listed `meeting_ids` on `server`: followers treat a
/// meeting as seen while its `seen_at` is not older than the server's last poll.
pub fn mark_seen(
    conn: &mut DbConn,
    server: ServerId,
    polled_at: i64,
    meeting_ids: &[String],
) -> Result<usize, DbError> {
    let mut n = 0;
    // Bounded IN lists (SQLite limits bound parameters).
    for chunk in meeting_ids.chunks(500) {
        n += with_conn!(conn, |c| diesel::update(
            meetings::table
                .filter(meetings::server_id.eq(server.get()))
                .filter(meetings::meeting_id.eq_any(chunk))
        )
        .set(meetings::seen_at.eq(polled_at))
        .execute(c))?;
    }
    Ok(n)
}

/// Records the createTime BBB answered a `create` with. When that create started a new BBB
/// instance (`started_instance`: the issue time of its end-callback token), the instance's
/// callbacks are the ones to accept from now on and the meeting no longer counts as ended.
pub fn record_create(
    conn: &mut DbConn,
    key: &MeetingKey,
    create_time: i64,
    started_instance: Option<i64>,
) -> Result<bool, DbError> {
    let now = now_ms();
    let target = meetings::table.find(key.as_str());
    let n = with_conn!(conn, |c| match started_instance {
        Some(issued_at) => diesel::update(target)
            .set((
                meetings::create_time.eq(create_time),
                meetings::callback_issued_at.eq(issued_at),
                meetings::ended_at.eq(None::<i64>),
                meetings::updated_at.eq(now),
            ))
            .execute(c),
        None => diesel::update(target)
            .set((
                meetings::create_time.eq(create_time),
                meetings::updated_at.eq(now),
            ))
            .execute(c),
    })?;
    Ok(n > 0)
}

/// BBB says the instance of `meeting_id` whose end-callback token was issued at `issued_at`
/// ended. Applied (and the meeting's key returned) unless the stored meeting is a newer
/// instance: a callback of an older instance, delivered late, changes nothing.
pub fn mark_ended(
    conn: &mut DbConn,
    meeting_id: &str,
    issued_at: i64,
) -> Result<Option<MeetingKey>, DbError> {
    let now = now_ms();
    let raw = with_conn!(conn, |c| c.transaction(|c| {
        let updated = diesel::update(
            meetings::table
                .filter(meetings::meeting_id.eq(meeting_id))
                .filter(
                    meetings::callback_issued_at
                        .is_null()
                        .or(meetings::callback_issued_at.le(issued_at)),
                ),
        )
        .set((
            meetings::ended_at.eq(now),
            meetings::callback_issued_at.eq(issued_at),
            meetings::seen_at.eq(None::<i64>),
            meetings::updated_at.eq(now),
        ))
        .execute(c)?;
        if updated == 0 {
            return Ok::<_, DbError>(None);
        }
        Ok(meetings::table
            .filter(meetings::meeting_id.eq(meeting_id))
            .select(meetings::meeting_key)
            .first::<String>(c)
            .optional()?)
    }))?;
    Ok(raw.and_then(|k| MeetingKey::parse(&k)))
}

/// Unplaces every meeting on `server` (panic, server offline or removed) so the next join
/// re-creates it elsewhere; ids, passwords and placement history are kept. Returns how many.
pub fn forget_server(conn: &mut DbConn, server: ServerId) -> Result<usize, DbError> {
    let now = now_ms();
    Ok(with_conn!(conn, |c| diesel::update(
        meetings::table.filter(meetings::server_id.eq(server.get()))
    )
    .set((
        meetings::server_id.eq(None::<i32>),
        meetings::updated_at.eq(now),
    ))
    .execute(c))?)
}

/// Deletes a meeting row (its placement history stays for recordings).
pub fn delete(conn: &mut DbConn, key: &MeetingKey) -> Result<bool, DbError> {
    let n = with_conn!(conn, |c| diesel::delete(meetings::table.find(key.as_str()))
        .execute(c))?;
    Ok(n > 0)
}

/// Every server a meeting id was ever placed on, most recent first.
pub fn servers_ever(conn: &mut DbConn, meeting_id: &str) -> Result<Vec<ServerId>, DbError> {
    let ids: Vec<i32> = with_conn!(conn, |c| meeting_placements::table
        .filter(meeting_placements::meeting_id.eq(meeting_id))
        .order((
            meeting_placements::placed_at.desc(),
            meeting_placements::server_id,
        ))
        .select(meeting_placements::server_id)
        .load(c))?;
    Ok(ids.into_iter().map(ServerId::new).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_support::for_each_backend;

    fn key(s: &str) -> MeetingKey {
        MeetingKey::parse(s).expect("test key")
    }

    fn sid(n: i32) -> Option<ServerId> {
        Some(ServerId::new(n))
    }

    fn row(k: &str, meeting_id: &str, server: Option<ServerId>) -> MeetingRow {
        MeetingRow {
            meeting_key: key(k),
            world_id: "w".into(),
            room_id: Some("r".into()),
            call_id: None,
            server,
            meeting_id: meeting_id.into(),
            attendee_pw: "ap".into(),
            moderator_pw: "mp".into(),
            create_time: None,
            created_at: 0,
            updated_at: 0,
            seen_at: None,
            callback_issued_at: None,
            ended_at: None,
        }
    }

    #[test]
    fn insert_claim_move_and_history() {
        for_each_backend(|conn| {
            let stored = insert_or_get(conn, &row("room:w:r", "m1", sid(1))).unwrap();
            assert_eq!(stored.server, sid(1));
            // A second instance with other ids loses: the first row wins.
            let again = insert_or_get(conn, &row("room:w:r", "m-other", sid(2))).unwrap();
            assert_eq!((again.meeting_id.as_str(), again.server), ("m1", sid(1)));

            let moved = claim(conn, &key("room:w:r"), sid(1), sid(2))
                .unwrap()
                .unwrap();
            assert_eq!(moved.server, sid(2));
            assert!(record_create(conn, &key("room:w:r"), 99, None).unwrap());
            assert_eq!(
                get(conn, &key("room:w:r")).unwrap().unwrap().create_time,
                Some(99)
            );
            assert!(!record_create(conn, &key("room:w:nope"), 1, None).unwrap());

            let mut ever = servers_ever(conn, "m1").unwrap();
            ever.sort();
            assert_eq!(ever, vec![ServerId::new(1), ServerId::new(2)]);
            assert!(servers_ever(conn, "m-other").unwrap().is_empty());
            assert_eq!(
                by_meeting_id(conn, "m1").unwrap().map(|r| r.meeting_key),
                Some(key("room:w:r"))
            );
        });
    }

    #[test]
    fn forget_server_unplaces_and_keeps_history() {
        for_each_backend(|conn| {
            insert_or_get(conn, &row("room:w:a", "ma", sid(1))).unwrap();
            insert_or_get(conn, &row("room:w:b", "mb", sid(1))).unwrap();
            insert_or_get(conn, &row("room:w:c", "mc", sid(2))).unwrap();
            assert_eq!(forget_server(conn, ServerId::new(1)).unwrap(), 2);
            let all = load_all(conn).unwrap();
            let servers: Vec<Option<ServerId>> = all.iter().map(|r| r.server).collect();
            assert_eq!(servers, vec![None, None, sid(2)]);
            assert_eq!(servers_ever(conn, "ma").unwrap(), vec![ServerId::new(1)]);
            assert!(delete(conn, &key("room:w:a")).unwrap());
            assert!(get(conn, &key("room:w:a")).unwrap().is_none());
            assert_eq!(servers_ever(conn, "ma").unwrap(), vec![ServerId::new(1)]);
        });
    }

    #[test]
    fn claim_lets_exactly_one_placement_win() {
        for_each_backend(|conn| {
            let k = key("room:w:r");
            insert_or_get(conn, &row("room:w:r", "m1", None)).unwrap();
            // Both instances saw it unplaced; the first claim wins, the second finds server 1.
            assert_eq!(
                claim(conn, &k, None, sid(1)).unwrap().unwrap().server,
                sid(1)
            );
            assert_eq!(
                claim(conn, &k, None, sid(2)).unwrap().unwrap().server,
                sid(1)
            );
            assert_eq!(servers_ever(conn, "m1").unwrap(), vec![ServerId::new(1)]);
            // A re-create where it is confirms the placement; one where it no longer is finds
            // out where it went instead of splitting the meeting.
            assert_eq!(
                claim(conn, &k, sid(1), sid(1)).unwrap().unwrap().server,
                sid(1)
            );
            assert_eq!(
                claim(conn, &k, sid(1), sid(2)).unwrap().unwrap().server,
                sid(2)
            );
            assert_eq!(
                claim(conn, &k, sid(1), sid(1)).unwrap().unwrap().server,
                sid(2)
            );
            assert!(claim(conn, &key("room:w:nope"), None, sid(1))
                .unwrap()
                .is_none());
        });
    }

    #[test]
    fn concurrent_claims_on_separate_connections_have_one_winner() {
        for t in crate::db::testing::TestDb::all().unwrap() {
            let mut conn = t.db.get().unwrap();
            insert_or_get(&mut conn, &row("room:w:race", "mr", None)).unwrap();
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
                        claim(&mut conn, &key("room:w:race"), None, sid(server))
                            .unwrap()
                            .unwrap()
                            .server
                    })
                })
                .collect();
            let seen: Vec<Option<ServerId>> =
                handles.into_iter().map(|h| h.join().unwrap()).collect();
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
            insert_or_get(conn, &row("room:w:a", "ma", sid(1))).unwrap();
            insert_or_get(conn, &row("room:w:b", "mb", sid(2))).unwrap();
            let ids = vec!["ma".to_string(), "mb".to_string(), "foreign".to_string()];
            assert_eq!(mark_seen(conn, ServerId::new(1), 77, &ids).unwrap(), 1);
            assert_eq!(
                get(conn, &key("room:w:a")).unwrap().unwrap().seen_at,
                Some(77)
            );
            assert_eq!(get(conn, &key("room:w:b")).unwrap().unwrap().seen_at, None);
        });
    }

    #[test]
    fn unplaced_insert_records_no_placement() {
        for_each_backend(|conn| {
            insert_or_get(conn, &row("call:x", "mx", None)).unwrap();
            assert!(servers_ever(conn, "mx").unwrap().is_empty());
        });
    }

    #[test]
    fn end_callbacks_of_older_instances_are_stale() {
        for_each_backend(|conn| {
            let k = key("room:w:a");
            insert_or_get(conn, &row("room:w:a", "ma", sid(1))).unwrap();
            // Nothing known about the instance yet: any callback ends it.
            assert_eq!(mark_ended(conn, "ma", 100).unwrap(), Some(k.clone()));
            assert!(get(conn, &k).unwrap().unwrap().ended_at.is_some());
            // A new instance, started by a create whose token was issued at 200.
            record_create(conn, &k, 5, Some(200)).unwrap();
            let stored = get(conn, &k).unwrap().unwrap();
            assert_eq!(
                (stored.ended_at, stored.callback_issued_at),
                (None, Some(200))
            );
            // The old instance's callback, delivered late: nothing changes.
            assert_eq!(mark_ended(conn, "ma", 100).unwrap(), None);
            assert_eq!(get(conn, &k).unwrap().unwrap().ended_at, None);
            // The current instance's callback ends it; an unknown meeting id changes nothing.
            assert_eq!(mark_ended(conn, "ma", 200).unwrap(), Some(k.clone()));
            assert_eq!(mark_ended(conn, "nope", 300).unwrap(), None);
            // A duplicate create does not revive it.
            record_create(conn, &k, 5, None).unwrap();
            assert!(get(conn, &k).unwrap().unwrap().ended_at.is_some());
        });
    }
}
