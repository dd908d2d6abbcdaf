//! Where each room's and call's meeting lives (`meetings`), and every server a meeting id was
//! ever placed on (`meeting_placements`), so a restart loses nothing and recordings are found
//! after a move.
//!
//! A meeting keeps its `meeting_id` and passwords for life; only its server changes. A meeting
//! whose server went away (panic, offline) is stored without one (`server_id` NULL), so the
//! next join re-creates it on a healthy server while its recordings stay findable. What is
//! stored about a meeting's BBB instance (createTime, `ended_at`) is a claim with the age it
//! was written at, never a confirmation that it runs now.

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
    callback_issued_at: Option<i64>,
    ended_at: Option<i64>,
    creating_by: Option<String>,
    creating_until: Option<i64>,
    confirmed_at: Option<i64>,
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
    /// Issue time of the end-callback token of the create that started the current instance.
    pub callback_issued_at: Option<i64>,
    /// When BBB reported the meeting ended (see [`mark_ended`]); `None` after a new create.
    pub ended_at: Option<i64>,
    /// The instance sending the meeting's create right now, and until when (see [`claim`]).
    pub creating_by: Option<String>,
    pub creating_until: Option<i64>,
    /// When the create that last confirmed the meeting running was sent (ms, the sending
    /// instance's clock; see [`finish_create`]).
    pub confirmed_at: Option<i64>,
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
            callback_issued_at: self.callback_issued_at,
            ended_at: self.ended_at,
            creating_by: self.creating_by,
            creating_until: self.creating_until,
            confirmed_at: self.confirmed_at,
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

/// The meetings that may be running: placed on a server and not known to have ended. What an
/// instance loads at start, so its start-up cost follows the running meetings, not history
/// (any other meeting is read when it is joined).
pub fn load_live(conn: &mut DbConn) -> Result<Vec<MeetingRow>, DbError> {
    let raw = with_conn!(conn, |c| meetings::table
        .filter(meetings::server_id.is_not_null())
        .filter(meetings::ended_at.is_null())
        .order(meetings::meeting_key)
        .select(RawMeeting::as_select())
        .load(c))?;
    Ok(rows(raw))
}

/// Every stored meeting.
#[cfg(test)]
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

/// A create this instance is about to send: nobody else sends one for the meeting until it is
/// done or `until_ms` (ms, this instance's clock) has passed.
#[derive(Debug, Clone, Copy)]
pub struct CreateLock<'a> {
    pub instance: &'a str,
    pub until_ms: i64,
}

/// How a [`claim`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The meeting is placed where the caller wanted (and its create is the caller's to send).
    Won(MeetingRow),
    /// Another instance placed it elsewhere first: adopt that placement.
    Lost(MeetingRow),
    /// It is where the caller expected, but another instance is sending its create right now:
    /// wait for that result instead of sending another.
    Busy(MeetingRow),
    /// It is where the caller expected, and another instance's create confirmed it running
    /// there after the caller's `known_confirmation`: take that confirmation instead of sending
    /// another create.
    Confirmed(MeetingRow),
    /// No such meeting.
    Unknown,
}

/// Places a meeting on `server` (or nowhere) if it is still where the caller last saw it
/// (`expected`), taking the create `lock` with it when given.
///
/// This is the one write that decides where a meeting runs and who creates it when several
/// gateway instances race: the conditional `UPDATE … WHERE server_id = expected AND (no create
/// in flight elsewhere)` lets exactly one of them win (PostgreSQL re-checks the condition after
/// waiting for the row lock; SQLite serialises writers). A claim that keeps the meeting where it
/// is (a re-create on its server) is still conditional, so an instance that missed a move
/// elsewhere finds out instead of splitting the meeting.
///
/// A re-create on the meeting's own server is not needed when another instance's create
/// confirmed the meeting there after `known_confirmation` (ms; the newest confirmation the
/// caller has taken into account) and BBB did not report it ended since: the claim then
/// answers [`Claim::Confirmed`] and changes nothing. This closes the window between another
/// instance releasing its create lock and its `NOTIFY` arriving, in which the caller would
/// otherwise win the claim and send a second create. A move ignores confirmations.
pub fn claim(
    conn: &mut DbConn,
    key: &MeetingKey,
    expected: Option<ServerId>,
    server: Option<ServerId>,
    lock: Option<CreateLock<'_>>,
    known_confirmation: i64,
) -> Result<Claim, DbError> {
    let now = now_ms();
    let moved = expected != server;
    // A move goes ahead whatever was confirmed where the meeting was.
    let known = if moved { i64::MAX } else { known_confirmation };
    let (holder, until) = match lock {
        Some(l) => (Some(l.instance.to_string()), Some(l.until_ms)),
        None => (None, None),
    };
    let (updated, raw) = with_conn!(conn, |c| c.transaction(|c| {
        // Write first (no SQLITE_BUSY upgrade from a read lock).
        let target = meetings::table.find(key.as_str());
        let lock_free = meetings::creating_until
            .is_null()
            .or(meetings::creating_until.lt(now))
            .or(meetings::creating_by.eq(holder.clone().unwrap_or_default()));
        // No confirmation newer than the caller's, or BBB ended the meeting after it.
        let unconfirmed = meetings::confirmed_at
            .is_null()
            .or(meetings::confirmed_at.le(known))
            .or(meetings::ended_at.ge(meetings::confirmed_at));
        let set = (
            meetings::server_id.eq(id_of(server)),
            meetings::creating_by.eq(holder.clone()),
            meetings::creating_until.eq(until),
            meetings::updated_at.eq(now),
        );
        let updated = match (expected, lock.is_some()) {
            (Some(e), true) => diesel::update(
                target
                    .filter(meetings::server_id.eq(e.get()))
                    .filter(lock_free)
                    .filter(unconfirmed),
            )
            .set(set)
            .execute(c)?,
            (None, true) => diesel::update(
                target
                    .filter(meetings::server_id.is_null())
                    .filter(lock_free)
                    .filter(unconfirmed),
            )
            .set(set)
            .execute(c)?,
            (Some(e), false) => diesel::update(
                target
                    .filter(meetings::server_id.eq(e.get()))
                    .filter(unconfirmed),
            )
            .set(set)
            .execute(c)?,
            (None, false) => diesel::update(
                target
                    .filter(meetings::server_id.is_null())
                    .filter(unconfirmed),
            )
            .set(set)
            .execute(c)?,
        };
        if updated == 1 && moved {
            // A confirmation is of the server it was made on: a move drops it.
            diesel::update(meetings::table.find(key.as_str()))
                .set(meetings::confirmed_at.eq(None::<i64>))
                .execute(c)?;
        }
        let row = meetings::table
            .find(key.as_str())
            .select(RawMeeting::as_select())
            .first(c)
            .optional()?;
        if let (1, true, Some(row), Some(server)) = (updated, moved, &row, server) {
            record_placement!(c, &row.meeting_id, server, now)?;
        }
        Ok::<_, DbError>((updated, row))
    }))?;
    let Some(row) = raw.map(RawMeeting::into_row).transpose()? else {
        return Ok(Claim::Unknown);
    };
    let confirmed_since = row
        .confirmed_at
        .is_some_and(|at| at > known && row.ended_at.is_none_or(|ended| ended < at));
    Ok(match (updated, row.server == expected) {
        (1, _) => Claim::Won(row),
        (_, false) => Claim::Lost(row),
        (_, true) if confirmed_since => Claim::Confirmed(row),
        (_, true) => Claim::Busy(row),
    })
}

/// What a successful create confirmed, for [`finish_create`].
#[derive(Debug, Clone, Copy)]
pub struct Confirmation {
    /// The server the create went to.
    pub server: ServerId,
    /// BBB's createTime.
    pub create_time: i64,
    /// When the create was sent (ms, this instance's clock).
    pub sent_at: i64,
    /// The issue time of its end-callback token when it started a new BBB instance (no
    /// `duplicateWarning`).
    pub started: Option<i64>,
}

/// The create this instance sent is done: the lock is released, and when it succeeded its
/// createTime and when it was sent are recorded (if the meeting is still on that server), so an
/// instance about to re-create the meeting takes this confirmation instead (see [`claim`]).
/// When it started a new BBB instance, that instance's callbacks are the ones to accept from
/// now on and the meeting no longer counts as ended.
pub fn finish_create(
    conn: &mut DbConn,
    key: &MeetingKey,
    instance: &str,
    created: Option<Confirmation>,
) -> Result<(), DbError> {
    let now = now_ms();
    let mine = meetings::table
        .find(key.as_str())
        .filter(meetings::creating_by.eq(instance));
    // Releasing the lock is no change other instances need to read.
    let release = (
        meetings::creating_by.eq(None::<String>),
        meetings::creating_until.eq(None::<i64>),
    );
    with_conn!(conn, |c| c.transaction(|c| {
        diesel::update(mine).set(release).execute(c)?;
        if let Some(done) = created {
            let target = meetings::table
                .find(key.as_str())
                .filter(meetings::server_id.eq(done.server.get()));
            let confirmed = (
                meetings::create_time.eq(done.create_time),
                meetings::confirmed_at.eq(done.sent_at),
            );
            match done.started {
                // A new BBB instance is a change every instance should read.
                Some(issued_at) => diesel::update(target)
                    .set((
                        confirmed,
                        meetings::callback_issued_at.eq(issued_at),
                        meetings::ended_at.eq(None::<i64>),
                        meetings::updated_at.eq(now),
                    ))
                    .execute(c)?,
                None => diesel::update(target).set(confirmed).execute(c)?,
            };
        }
        Ok::<_, DbError>(())
    }))
}

/// The leader's poll of `server`, sent at `polled_at`, no longer lists the meeting: it ended
/// there without a callback. Recorded unless the meeting changed after the poll was sent (moved
/// or created again). Answers whether it was recorded.
pub fn mark_gone(
    conn: &mut DbConn,
    key: &MeetingKey,
    server: ServerId,
    polled_at: i64,
) -> Result<bool, DbError> {
    let n = with_conn!(conn, |c| diesel::update(
        meetings::table
            .find(key.as_str())
            .filter(meetings::server_id.eq(server.get()))
            .filter(meetings::ended_at.is_null())
            .filter(meetings::updated_at.lt(polled_at))
    )
    .set((
        meetings::ended_at.eq(polled_at),
        meetings::updated_at.eq(now_ms()),
    ))
    .execute(c))?;
    Ok(n > 0)
}

/// Meetings changed at or after `since_ms` (by `updated_at`, the writer's clock), oldest change
/// first, at most `limit`; with `after`, only those after that `(updated_at, key)` (the last
/// one of the previous batch).
pub fn changed_since(
    conn: &mut DbConn,
    since_ms: i64,
    after: Option<&(i64, String)>,
    limit: i64,
) -> Result<Vec<MeetingRow>, DbError> {
    let order = (meetings::updated_at, meetings::meeting_key);
    let raw = match after {
        None => with_conn!(conn, |c| meetings::table
            .filter(meetings::updated_at.ge(since_ms))
            .order(order)
            .limit(limit)
            .select(RawMeeting::as_select())
            .load(c))?,
        Some((at, key)) => with_conn!(conn, |c| meetings::table
            .filter(
                meetings::updated_at.gt(*at).or(meetings::updated_at
                    .eq(*at)
                    .and(meetings::meeting_key.gt(key))),
            )
            .order(order)
            .limit(limit)
            .select(RawMeeting::as_select())
            .load(c))?,
    };
    Ok(rows(raw))
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
        meetings::confirmed_at.eq(None::<i64>),
        meetings::updated_at.eq(now),
    ))
    .execute(c))?)
}

/// Makes every stored confirmation `by_ms` older, as if that much time had passed (tests of
/// the confirmation TTL).
#[cfg(test)]
pub fn age_confirmations(conn: &mut DbConn, by_ms: i64) -> Result<usize, DbError> {
    Ok(with_conn!(conn, |c| diesel::update(
        meetings::table.filter(meetings::confirmed_at.is_not_null())
    )
    .set(meetings::confirmed_at.eq(meetings::confirmed_at - by_ms))
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

    /// A successful create on server `n`, sent now.
    fn confirmed(n: i32, create_time: i64, started: Option<i64>) -> Confirmation {
        Confirmation {
            server: ServerId::new(n),
            create_time,
            sent_at: now_ms(),
            started,
        }
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
            callback_issued_at: None,
            ended_at: None,
            creating_by: None,
            creating_until: None,
            confirmed_at: None,
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

            let Claim::Won(moved) = claim(conn, &key("room:w:r"), sid(1), sid(2), None, 0).unwrap()
            else {
                panic!("the move is won");
            };
            assert_eq!(moved.server, sid(2));
            finish_create(conn, &key("room:w:r"), "me", Some(confirmed(2, 99, None))).unwrap();
            assert_eq!(
                get(conn, &key("room:w:r")).unwrap().unwrap().create_time,
                Some(99)
            );

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
    fn only_placed_meetings_not_known_to_have_ended_are_loaded_at_start() {
        for_each_backend(|conn| {
            insert_or_get(conn, &row("room:w:placed", "mp", sid(1))).unwrap();
            insert_or_get(conn, &row("room:w:unplaced", "mu", None)).unwrap();
            insert_or_get(conn, &row("room:w:ended", "me", sid(2))).unwrap();
            mark_ended(conn, "me", 0).unwrap();
            let live: Vec<String> = load_live(conn)
                .unwrap()
                .into_iter()
                .map(|r| r.meeting_id)
                .collect();
            assert_eq!(live, vec!["mp".to_string()]);
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
            let server = |c: Claim| match c {
                Claim::Won(r) | Claim::Lost(r) | Claim::Busy(r) | Claim::Confirmed(r) => r.server,
                Claim::Unknown => panic!("a known meeting"),
            };
            // Both instances saw it unplaced; the first claim wins, the second finds server 1.
            let first = claim(conn, &k, None, sid(1), None, 0).unwrap();
            assert!(matches!(first, Claim::Won(_)));
            let second = claim(conn, &k, None, sid(2), None, 0).unwrap();
            assert!(matches!(second, Claim::Lost(_)));
            assert_eq!(server(second), sid(1));
            assert_eq!(servers_ever(conn, "m1").unwrap(), vec![ServerId::new(1)]);
            // A re-create where it is confirms the placement; one where it no longer is finds
            // out where it went instead of splitting the meeting.
            assert!(matches!(
                claim(conn, &k, sid(1), sid(1), None, 0).unwrap(),
                Claim::Won(_)
            ));
            assert_eq!(
                server(claim(conn, &k, sid(1), sid(2), None, 0).unwrap()),
                sid(2)
            );
            let stale = claim(conn, &k, sid(1), sid(1), None, 0).unwrap();
            assert!(matches!(stale, Claim::Lost(_)));
            assert_eq!(server(stale), sid(2));
            assert_eq!(
                claim(conn, &key("room:w:nope"), None, sid(1), None, 0).unwrap(),
                Claim::Unknown
            );
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
                        match claim(&mut conn, &key("room:w:race"), None, sid(server), None, 0)
                            .unwrap()
                        {
                            Claim::Won(r)
                            | Claim::Lost(r)
                            | Claim::Busy(r)
                            | Claim::Confirmed(r) => r.server,
                            Claim::Unknown => None,
                        }
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
    fn one_instance_creates_while_the_others_wait_until_it_is_done_or_late() {
        for_each_backend(|conn| {
            let k = key("room:w:r");
            insert_or_get(conn, &row("room:w:r", "m1", sid(1))).unwrap();
            let lock = |instance, until_ms| Some(CreateLock { instance, until_ms });
            let later = now_ms() + 60_000;
            assert!(matches!(
                claim(conn, &k, sid(1), sid(1), lock("a", later), 0).unwrap(),
                Claim::Won(_)
            ));
            // b sees the create in flight, even where it meant to move the meeting.
            assert!(matches!(
                claim(conn, &k, sid(1), sid(1), lock("b", later), 0).unwrap(),
                Claim::Busy(_)
            ));
            assert!(matches!(
                claim(conn, &k, sid(1), sid(2), lock("b", later), 0).unwrap(),
                Claim::Busy(_)
            ));
            // a may re-take its own lock; once a is done, b may create.
            assert!(matches!(
                claim(conn, &k, sid(1), sid(1), lock("a", later), 0).unwrap(),
                Claim::Won(_)
            ));
            let done = confirmed(1, 7, Some(100));
            finish_create(conn, &k, "a", Some(done)).unwrap();
            let stored = get(conn, &k).unwrap().unwrap();
            assert_eq!(
                (stored.create_time, stored.callback_issued_at),
                (Some(7), Some(100))
            );
            // b, not yet told of a's result, takes it from the database instead of creating.
            assert_eq!(
                claim(conn, &k, sid(1), sid(1), lock("b", later), 0).unwrap(),
                Claim::Confirmed(stored)
            );
            // Once b knows that confirmation (or it is too old for b), b may create again.
            assert!(matches!(
                claim(
                    conn,
                    &k,
                    sid(1),
                    sid(1),
                    lock("b", now_ms() - 1),
                    done.sent_at
                )
                .unwrap(),
                Claim::Won(_)
            ));
            // b's lock ran out (its deadline passed): c takes over.
            assert!(matches!(
                claim(conn, &k, sid(1), sid(1), lock("c", later), done.sent_at).unwrap(),
                Claim::Won(_)
            ));
            // Finishing someone else's create changes nothing of the lock.
            finish_create(conn, &k, "b", None).unwrap();
            assert!(matches!(
                claim(conn, &k, sid(1), sid(1), lock("d", later), done.sent_at).unwrap(),
                Claim::Busy(_)
            ));
        });
    }

    #[test]
    fn a_re_create_defers_to_a_newer_stored_confirmation_of_the_same_server_only() {
        for_each_backend(|conn| {
            let k = key("room:w:r");
            insert_or_get(conn, &row("room:w:r", "m1", sid(1))).unwrap();
            let done = confirmed(1, 7, Some(100));
            finish_create(conn, &k, "a", Some(done)).unwrap();
            let stored = get(conn, &k).unwrap().unwrap();
            assert_eq!(stored.confirmed_at, Some(done.sent_at));
            // Newer than what the caller knew: taken, nothing written.
            assert_eq!(
                claim(conn, &k, sid(1), sid(1), None, done.sent_at - 1).unwrap(),
                Claim::Confirmed(stored.clone())
            );
            assert_eq!(get(conn, &k).unwrap().unwrap(), stored);
            // Known already: the re-create goes ahead.
            assert!(matches!(
                claim(conn, &k, sid(1), sid(1), None, done.sent_at).unwrap(),
                Claim::Won(_)
            ));
            // BBB ended it after that confirmation: no longer a reason not to create.
            assert!(mark_ended(conn, "m1", 100).unwrap().is_some());
            assert!(matches!(
                claim(conn, &k, sid(1), sid(1), None, 0).unwrap(),
                Claim::Won(_)
            ));
            // A move ignores the confirmation where the meeting was, and drops it.
            finish_create(conn, &k, "a", Some(confirmed(1, 8, Some(101)))).unwrap();
            let Claim::Won(moved) = claim(conn, &k, sid(1), sid(2), None, 0).unwrap() else {
                panic!("the move is won");
            };
            assert_eq!(moved.confirmed_at, None);
            // A create that finishes after the meeting moved confirms nothing where it is now.
            finish_create(conn, &k, "a", Some(confirmed(1, 9, None))).unwrap();
            let now = get(conn, &k).unwrap().unwrap();
            assert_eq!((now.confirmed_at, now.create_time), (None, Some(8)));
            assert!(matches!(
                claim(conn, &k, sid(2), sid(2), None, 0).unwrap(),
                Claim::Won(_)
            ));
        });
    }

    #[test]
    fn changes_are_read_since_a_time_and_polls_record_meetings_gone() {
        for_each_backend(|conn| {
            let before = now_ms();
            insert_or_get(conn, &row("room:w:a", "ma", sid(1))).unwrap();
            insert_or_get(conn, &row("room:w:b", "mb", sid(2))).unwrap();
            let changed = changed_since(conn, before, None, 10).unwrap();
            assert_eq!(changed.len(), 2);
            assert!(changed_since(conn, now_ms() + 1000, None, 10)
                .unwrap()
                .is_empty());
            let first = changed_since(conn, before, None, 1).unwrap();
            assert_eq!(first.len(), 1, "limited");
            let after = (
                first[0].updated_at,
                first[0].meeting_key.as_str().to_string(),
            );
            let rest = changed_since(conn, before, Some(&after), 10).unwrap();
            assert_eq!(rest.len(), 1, "the next batch");
            assert_ne!(rest[0].meeting_key, first[0].meeting_key);
            // A poll sent before the last change says nothing about it.
            assert!(!mark_gone(conn, &key("room:w:a"), ServerId::new(1), before - 1).unwrap());
            let later = now_ms() + 1;
            assert!(!mark_gone(conn, &key("room:w:a"), ServerId::new(2), later).unwrap());
            assert!(mark_gone(conn, &key("room:w:a"), ServerId::new(1), later).unwrap());
            assert_eq!(
                get(conn, &key("room:w:a")).unwrap().unwrap().ended_at,
                Some(later)
            );
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
            finish_create(conn, &k, "me", Some(confirmed(1, 5, Some(200)))).unwrap();
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
            finish_create(conn, &k, "me", Some(confirmed(1, 5, None))).unwrap();
            assert!(get(conn, &k).unwrap().unwrap().ended_at.is_some());
        });
    }
}
