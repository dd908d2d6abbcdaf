//! What the database keeps: the poll leader deletes, in small batches, what has been idle
//! longer than `retention.days`, so storage and every instance's memory follow the meetings
//! that matter rather than all history:
//! - private calls created before the cutoff whose meeting (if any) has not changed since,
//!   with their members, meeting and placement history;
//! - meetings of rooms that no longer exist, unchanged since the cutoff;
//! - anonymous users (client ids) not seen since the cutoff.
//!
//! The meetings of existing rooms stay, however idle: their meeting id is how their recordings
//! are found.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::db::schema::{call_members, calls, meeting_placements, meetings, users};
use crate::db::{DbConn, DbError};
use crate::ids::MeetingKey;
use crate::with_conn;

/// What one batch deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    /// Meetings deleted (of calls and of rooms that no longer exist).
    pub meetings: Vec<MeetingKey>,
    /// Call ids deleted.
    pub calls: Vec<String>,
    pub users: usize,
}

impl Purged {
    /// Anything at all.
    pub fn is_empty(&self) -> bool {
        self.meetings.is_empty() && self.calls.is_empty() && self.users == 0
    }
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Text)]
    id: String,
}

/// Runs a query with the cutoff and the batch size as its two parameters, written `{cutoff}`
/// and `{limit}` (each backend numbers parameters its own way).
fn ids(conn: &mut DbConn, sql: &str, cutoff: i64, limit: i64) -> Result<Vec<String>, DbError> {
    let rows: Vec<Id> = match conn {
        DbConn::Sqlite(c) => {
            let q = sql.replace("{cutoff}", "?1").replace("{limit}", "?2");
            diesel::sql_query(q)
                .bind::<BigInt, _>(cutoff)
                .bind::<BigInt, _>(limit)
                .load(&mut **c)?
        }
        DbConn::Postgres(c) => {
            let q = sql.replace("{cutoff}", "$1").replace("{limit}", "$2");
            diesel::sql_query(q)
                .bind::<BigInt, _>(cutoff)
                .bind::<BigInt, _>(limit)
                .load(&mut **c)?
        }
    };
    Ok(rows.into_iter().map(|r| r.id).collect())
}

const IDLE_CALLS: &str = "SELECT c.id AS id FROM calls c \
     WHERE c.created_at < {cutoff} AND NOT EXISTS (SELECT 1 FROM meetings m \
         WHERE m.meeting_key = 'call:' || c.id AND m.updated_at >= {cutoff}) \
     ORDER BY c.created_at LIMIT {limit}";

const ORPHAN_ROOM_MEETINGS: &str = "SELECT m.meeting_key AS id FROM meetings m \
     WHERE m.room_id IS NOT NULL AND m.updated_at < {cutoff} AND NOT EXISTS (SELECT 1 \
         FROM rooms r WHERE r.world_id = m.world_id AND r.id = m.room_id) \
     ORDER BY m.updated_at LIMIT {limit}";

const IDLE_ANONYMOUS_USERS: &str = "SELECT u.id AS id FROM users u \
     WHERE u.client_id IS NOT NULL AND u.token_id IS NULL AND u.last_active_at < {cutoff} \
     ORDER BY u.last_active_at LIMIT {limit}";

/// Deletes one batch (at most `batch` of each kind) of what has been idle since `cutoff_ms`.
pub fn purge_batch(conn: &mut DbConn, cutoff_ms: i64, batch: i64) -> Result<Purged, DbError> {
    let call_ids = ids(conn, IDLE_CALLS, cutoff_ms, batch)?;
    let mut keys: Vec<String> = call_ids
        .iter()
        .map(|id| MeetingKey::call(id).as_str().to_string())
        .collect();
    keys.extend(ids(conn, ORPHAN_ROOM_MEETINGS, cutoff_ms, batch)?);
    let user_ids = ids(conn, IDLE_ANONYMOUS_USERS, cutoff_ms, batch)?;
    let (deleted_keys, deleted_users) = with_conn!(conn, |c| c.transaction(|c| {
        let found: Vec<(String, String)> = meetings::table
            .filter(meetings::meeting_key.eq_any(&keys))
            .select((meetings::meeting_key, meetings::meeting_id))
            .load(c)?;
        let meeting_ids: Vec<&String> = found.iter().map(|(_, id)| id).collect();
        diesel::delete(
            meeting_placements::table.filter(meeting_placements::meeting_id.eq_any(&meeting_ids)),
        )
        .execute(c)?;
        diesel::delete(meetings::table.filter(meetings::meeting_key.eq_any(&keys))).execute(c)?;
        diesel::delete(call_members::table.filter(call_members::call_id.eq_any(&call_ids)))
            .execute(c)?;
        diesel::delete(calls::table.filter(calls::id.eq_any(&call_ids))).execute(c)?;
        let n = diesel::delete(users::table.filter(users::id.eq_any(&user_ids))).execute(c)?;
        let deleted: Vec<String> = found.into_iter().map(|(key, _)| key).collect();
        Ok::<_, DbError>((deleted, n))
    }))?;
    Ok(Purged {
        meetings: deleted_keys
            .iter()
            .filter_map(|k| MeetingKey::parse(k))
            .collect(),
        calls: call_ids,
        users: deleted_users,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::meetings::{insert_or_get, MeetingRow};
    use crate::db::now_ms;
    use crate::db::test_support::{for_each_backend, insert_world};
    use crate::with_conn;

    fn meeting(key: &MeetingKey, room: Option<&str>, call: Option<&str>, id: &str) -> MeetingRow {
        MeetingRow {
            meeting_key: key.clone(),
            world_id: "w".into(),
            room_id: room.map(str::to_string),
            call_id: call.map(str::to_string),
            server: None,
            meeting_id: id.into(),
            attendee_pw: "a".into(),
            moderator_pw: "m".into(),
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

    /// Makes every row look `days` old.
    fn age_everything(conn: &mut DbConn, days: i64) {
        let then = now_ms() - days * 86_400_000;
        with_conn!(conn, |c| {
            diesel::update(meetings::table)
                .set(meetings::updated_at.eq(then))
                .execute(c)
                .unwrap();
            diesel::update(calls::table)
                .set(calls::created_at.eq(then))
                .execute(c)
                .unwrap();
            diesel::update(users::table)
                .set(users::last_active_at.eq(then))
                .execute(c)
                .unwrap();
        });
    }

    #[test]
    fn only_what_is_idle_and_unneeded_goes_in_batches() {
        for_each_backend(|conn| {
            insert_world(conn, "w");
            with_conn!(conn, |c| diesel::insert_into(
                crate::db::schema::rooms::table
            )
            .values((
                crate::db::schema::rooms::world_id.eq("w"),
                crate::db::schema::rooms::id.eq("kept"),
                crate::db::schema::rooms::name.eq("Kept"),
            ))
            .execute(c))
            .unwrap();
            let kept_room = MeetingKey::room("w", "kept");
            let gone_room = MeetingKey::room("w", "deleted");
            insert_or_get(conn, &meeting(&kept_room, Some("kept"), None, "m-kept")).unwrap();
            insert_or_get(conn, &meeting(&gone_room, Some("deleted"), None, "m-gone")).unwrap();
            let mut call_ids = Vec::new();
            for _ in 0..3 {
                let id = crate::db::calls::create_call(conn, "w", &["a".into()]).unwrap();
                let key = MeetingKey::call(&id);
                insert_or_get(conn, &meeting(&key, None, Some(&id), &format!("m-{id}"))).unwrap();
                call_ids.push(id);
            }
            crate::db::users::find_or_create_client_user(conn, "w", "anon").unwrap();
            crate::db::users::find_or_create_token_user(conn, "w", "tok", &[], None).unwrap();
            let cutoff = now_ms() - 30 * 86_400_000;
            // Nothing is old yet.
            assert!(purge_batch(conn, cutoff, 10).unwrap().is_empty());
            age_everything(conn, 31);
            // One call and the deleted room's meeting per batch of one.
            let first = purge_batch(conn, cutoff, 1).unwrap();
            assert_eq!(
                (first.calls.len(), first.meetings.len(), first.users),
                (1, 2, 1)
            );
            assert!(first.meetings.contains(&gone_room));
            let rest = purge_batch(conn, cutoff, 10).unwrap();
            assert_eq!(rest.calls.len(), 2);
            assert!(purge_batch(conn, cutoff, 10).unwrap().is_empty());
            // The existing room's meeting and the token user stay.
            assert!(crate::db::meetings::get(conn, &kept_room)
                .unwrap()
                .is_some());
            assert_eq!(crate::db::users::count_in_world(conn, "w").unwrap(), 1);
            for id in &call_ids {
                assert!(crate::db::calls::load_call(conn, id).unwrap().is_none());
            }
        });
    }

    #[test]
    fn a_call_whose_meeting_was_joined_lately_stays() {
        for_each_backend(|conn| {
            insert_world(conn, "w");
            let id = crate::db::calls::create_call(conn, "w", &["a".into()]).unwrap();
            let key = MeetingKey::call(&id);
            insert_or_get(conn, &meeting(&key, None, Some(&id), "m1")).unwrap();
            age_everything(conn, 31);
            // Joined again: the meeting changed today.
            crate::db::meetings::claim(conn, &key, None, None, None, 0).unwrap();
            let cutoff = now_ms() - 30 * 86_400_000;
            assert!(purge_batch(conn, cutoff, 10).unwrap().is_empty());
        });
    }
}
