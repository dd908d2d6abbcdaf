//! Private calls (`calls`, `call_members`): created by the system that owns a conversation, joined
//! through `bbb.call_url` by their members only.

use diesel::prelude::*;

use crate::db::schema::{call_members, calls, worlds};
use crate::db::{now_ms, DbConn, DbError};
use crate::with_conn;

/// Creates a call in `world_id` for the given member uids (trimmed, de-duplicated, at least one)
/// and returns its id, a random UUID v4 so ids cannot be guessed.
pub fn create_call(
    conn: &mut DbConn,
    world_id: &str,
    members: &[String],
) -> Result<String, DbError> {
    let mut uids: Vec<&str> = members
        .iter()
        .map(|m| m.trim())
        .filter(|m| !m.is_empty())
        .collect();
    uids.sort_unstable();
    uids.dedup();
    if uids.is_empty() {
        return Err(DbError::Invalid(
            "a call needs at least one member uid".into(),
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    let known: i64 = with_conn!(conn, |c| worlds::table
        .filter(worlds::id.eq(world_id))
        .count()
        .get_result(c))?;
    if known == 0 {
        return Err(DbError::Invalid(format!("unknown world {world_id:?}")));
    }
    // Writes only inside the transaction (a read first could fail with SQLITE_BUSY under a
    // concurrent writer instead of waiting).
    with_conn!(conn, |c| c.transaction(|c| {
        diesel::insert_into(calls::table)
            .values((
                calls::id.eq(&id),
                calls::world_id.eq(world_id),
                calls::created_at.eq(now),
            ))
            .execute(c)?;
        for uid in &uids {
            diesel::insert_into(call_members::table)
                .values((call_members::call_id.eq(&id), call_members::uid.eq(uid)))
                .execute(c)?;
        }
        Ok::<_, DbError>(())
    }))?;
    Ok(id)
}

/// The world and member uids of a call, or `None` when no such call exists.
pub fn load_call(conn: &mut DbConn, id: &str) -> Result<Option<(String, Vec<String>)>, DbError> {
    with_conn!(conn, |c| {
        let world: Option<String> = calls::table
            .find(id)
            .select(calls::world_id)
            .first(c)
            .optional()?;
        let Some(world) = world else {
            return Ok(None);
        };
        let members: Vec<String> = call_members::table
            .filter(call_members::call_id.eq(id))
            .select(call_members::uid)
            .order(call_members::uid)
            .load(c)?;
        Ok(Some((world, members)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_support::{for_each_backend, insert_world};

    #[test]
    fn create_and_load() {
        for_each_backend(|conn| {
            insert_world(conn, "w1");
            let members = vec!["bob".to_string(), " alice ".into(), "bob".into(), "".into()];
            let id = create_call(conn, "w1", &members).unwrap();
            assert!(uuid::Uuid::parse_str(&id).is_ok());
            let (world, uids) = load_call(conn, &id).unwrap().unwrap();
            assert_eq!(world, "w1");
            assert_eq!(uids, vec!["alice", "bob"]);
            assert!(load_call(conn, "00000000-0000-4000-8000-000000000000")
                .unwrap()
                .is_none());
        });
    }

    #[test]
    fn refuses_unknown_world_and_no_members() {
        for_each_backend(|conn| {
            insert_world(conn, "w1");
            assert!(matches!(
                create_call(conn, "nope", &["a".into()]),
                Err(DbError::Invalid(m)) if m.contains("unknown world")
            ));
            assert!(matches!(
                create_call(conn, "w1", &[" ".into()]),
                Err(DbError::Invalid(_))
            ));
        });
    }
}
