//! Users (`users`): found or created at authentication, by (world, token uid) or
//! (world, client_id). Find-or-create is safe under concurrent logins of the same user on
//! several connections or gateway instances: insert-or-ignore, then select.

use diesel::prelude::*;
use serde_json::{Map, Value};

use crate::db::schema::users;
use crate::db::{now_ms, DbConn, DbError};
use crate::moderation::Moderation;
use crate::profile::ProfileDocument;
use crate::with_conn;

/// A stored user. `profile` and `traits` are JSON text (an object and a list of strings).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    /// Our id (uuid v4), sent to BBB as `userID`.
    pub id: String,
    pub world_id: String,
    /// The token's `uid`; `None` for client_id users.
    pub token_id: Option<String>,
    pub client_id: Option<String>,
    pub profile: String,
    pub traits: String,
    /// `""`, `"silenced"` or `"banned"`; see [`Moderation::from_stored`].
    pub moderation_state: String,
    pub created_at: i64,
    /// Bumped by every change to `traits` or `moderation_state`.
    pub version: i64,
    /// When `traits` or `moderation_state` last changed (ms), for [`changed_since`].
    pub changed_at: i64,
    /// The `profile` claim of the last token this user logged in with (JSON object text).
    pub token_profile: Option<String>,
}

impl UserRow {
    /// The moderation state as a type.
    pub fn moderation(&self) -> Moderation {
        Moderation::from_stored(&self.moderation_state)
    }
}

fn json_text(v: &impl serde::Serialize) -> Result<String, DbError> {
    serde_json::to_string(v).map_err(|e| DbError::Invalid(format!("cannot encode JSON: {e}")))
}

fn as_object(text: Option<&str>) -> Map<String, Value> {
    text.and_then(|t| serde_json::from_str::<Value>(t).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default()
}

/// `update`'s keys laid over the stored profile (they win), so a token that only carries a
/// display name keeps what the frontend stored besides (`greeted`, an avatar, profile fields).
/// When the result would exceed [`MAX_PROFILE_BYTES`](crate::profile::MAX_PROFILE_BYTES), only
/// `display_name` and `avatar` are laid over; when even that is too large, the stored profile
/// stays as it was.
fn merge_profile(stored: &str, update: &Map<String, Value>) -> String {
    let stored_map = as_object(Some(stored));
    let mut merged = stored_map.clone();
    for (k, v) in update {
        merged.insert(k.clone(), v.clone());
    }
    if let Some(doc) = ProfileDocument::bounded(&merged) {
        return doc.as_str().to_owned();
    }
    log::warn!("a token's profile would make the stored profile larger than 8 KiB; keeping its name and avatar only");
    let mut merged = stored_map;
    for key in ["display_name", "avatar"] {
        if let Some(v) = update.get(key) {
            merged.insert(key.to_owned(), v.clone());
        }
    }
    match ProfileDocument::bounded(&merged) {
        Some(doc) => doc.as_str().to_owned(),
        None => stored.to_owned(),
    }
}

/// The claim as remembered for the next login: whole when it fits the profile bound, else its
/// `display_name` and `avatar`.
fn remembered_claim(claim: &Map<String, Value>) -> Option<String> {
    if let Some(doc) = ProfileDocument::bounded(claim) {
        return Some(doc.as_str().to_owned());
    }
    let small: Map<String, Value> = claim
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "display_name" | "avatar"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    ProfileDocument::bounded(&small).map(|d| d.as_str().to_owned())
}

/// Finds or creates the user of a token uid in a world, storing the token's traits on every
/// login. A token's `profile` claim updates the stored profile: all of it when the user is
/// created, afterwards the claim's keys whose values changed since the user's previous token
/// (laid over the stored profile, see [`merge_profile`]). So a name the user changed in the
/// frontend survives reconnects with the same token, and a name the organiser changed in the
/// ticket system arrives with the next token.
pub fn find_or_create_token_user(
    conn: &mut DbConn,
    world_id: &str,
    uid: &str,
    traits: &[String],
    profile: Option<&Value>,
) -> Result<UserRow, DbError> {
    token_login(conn, world_id, uid, traits, profile, true)?
        .ok_or_else(|| DbError::Invalid(format!("no user {uid:?} after creating it")))
}

/// Like [`find_or_create_token_user`] for a login that is refused: the stored user, if there
/// is one, gets the token's traits and profile (so the user's other open sessions learn of
/// traits that were taken away), but no user is created.
pub fn update_token_user(
    conn: &mut DbConn,
    world_id: &str,
    uid: &str,
    traits: &[String],
    profile: Option<&Value>,
) -> Result<Option<UserRow>, DbError> {
    token_login(conn, world_id, uid, traits, profile, false)
}

/// A token login's database work; `create`: insert the user when it does not exist.
fn token_login(
    conn: &mut DbConn,
    world_id: &str,
    uid: &str,
    traits: &[String],
    profile: Option<&Value>,
    create: bool,
) -> Result<Option<UserRow>, DbError> {
    if uid.is_empty() {
        return Err(DbError::Invalid("a token user needs a uid".into()));
    }
    let traits_json = json_text(&traits)?;
    let claim = profile.and_then(Value::as_object);
    let initial_profile = match claim {
        Some(u) => merge_profile("{}", u),
        None => "{}".to_owned(),
    };
    let claim_json = claim.and_then(remembered_claim);
    let new_id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    with_conn!(conn, |c| c.transaction(|c| {
        if create {
            diesel::insert_into(users::table)
                .values((
                    users::id.eq(&new_id),
                    users::world_id.eq(world_id),
                    users::token_id.eq(uid),
                    users::profile.eq(&initial_profile),
                    users::traits.eq(&traits_json),
                    users::created_at.eq(now),
                    users::last_active_at.eq(now),
                    users::token_profile.eq(&claim_json),
                ))
                .on_conflict((users::world_id, users::token_id))
                .do_nothing()
                .execute(c)?;
        }
        let Some(row): Option<UserRow> = users::table
            .filter(users::world_id.eq(world_id))
            .filter(users::token_id.eq(uid))
            .select(UserRow::as_select())
            .first(c)
            .optional()?
        else {
            return Ok(None);
        };
        let (profile_json, token_profile) = match claim {
            Some(u) if row.id != new_id => {
                let previous = as_object(row.token_profile.as_deref());
                let changed: Map<String, Value> = u
                    .iter()
                    .filter(|(k, v)| previous.get(*k) != Some(*v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let profile = if changed.is_empty() {
                    row.profile.clone()
                } else {
                    merge_profile(&row.profile, &changed)
                };
                (profile, claim_json.clone())
            }
            _ => (row.profile.clone(), row.token_profile.clone()),
        };
        if row.traits == traits_json
            && row.profile == profile_json
            && row.token_profile == token_profile
        {
            return Ok::<_, DbError>(Some(row));
        }
        if row.traits == traits_json {
            diesel::update(users::table.find(&row.id))
                .set((
                    users::profile.eq(&profile_json),
                    users::token_profile.eq(&token_profile),
                ))
                .execute(c)?;
            return Ok(Some(UserRow {
                profile: profile_json,
                token_profile,
                ..row
            }));
        }
        // New traits reach the user's other open sessions (see `changed_since`).
        let version = diesel::update(users::table.find(&row.id))
            .set((
                users::traits.eq(&traits_json),
                users::profile.eq(&profile_json),
                users::token_profile.eq(&token_profile),
                users::version.eq(users::version + 1),
                users::changed_at.eq(now),
            ))
            .returning(users::version)
            .get_result::<i64>(c)?;
        Ok(Some(UserRow {
            traits: traits_json.clone(),
            profile: profile_json,
            token_profile,
            version,
            changed_at: now,
            ..row
        }))
    }))
}

/// How stale `last_active_at` may get before a login writes it again (ms).
const LAST_ACTIVE_RESOLUTION_MS: i64 = 3_600_000;

/// Finds or creates the anonymous user of a client id in a world; a login counts as activity
/// (anonymous users idle for `retention.days` are deleted).
pub fn find_or_create_client_user(
    conn: &mut DbConn,
    world_id: &str,
    client_id: &str,
) -> Result<UserRow, DbError> {
    if client_id.is_empty() {
        return Err(DbError::Invalid("a client user needs a client id".into()));
    }
    let new_id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    with_conn!(conn, |c| {
        diesel::insert_into(users::table)
            .values((
                users::id.eq(&new_id),
                users::world_id.eq(world_id),
                users::client_id.eq(client_id),
                users::created_at.eq(now),
                users::last_active_at.eq(now),
            ))
            .on_conflict((users::world_id, users::client_id))
            .do_nothing()
            .execute(c)?;
        // Seen again: kept from retention. At most one write an hour per user.
        diesel::update(
            users::table
                .filter(users::world_id.eq(world_id))
                .filter(users::client_id.eq(client_id))
                .filter(users::last_active_at.lt(now - LAST_ACTIVE_RESOLUTION_MS)),
        )
        .set(users::last_active_at.eq(now))
        .execute(c)?;
        Ok(users::table
            .filter(users::world_id.eq(world_id))
            .filter(users::client_id.eq(client_id))
            .select(UserRow::as_select())
            .first(c)?)
    })
}

/// The user with this id, if any.
pub fn find_user(conn: &mut DbConn, user_id: &str) -> Result<Option<UserRow>, DbError> {
    Ok(with_conn!(conn, |c| users::table
        .find(user_id)
        .select(UserRow::as_select())
        .first(c)
        .optional())?)
}

fn require_one(updated: usize, user_id: &str) -> Result<(), DbError> {
    if updated == 0 {
        return Err(DbError::Invalid(format!("no user with id {user_id:?}")));
    }
    Ok(())
}

/// Replaces a user's profile (from `user.update`) with `profile`, a JSON object as text.
pub fn update_profile(conn: &mut DbConn, user_id: &str, profile: &str) -> Result<(), DbError> {
    let updated = with_conn!(conn, |c| diesel::update(users::table.find(user_id))
        .set(users::profile.eq(profile))
        .execute(c))?;
    require_one(updated, user_id)
}

/// Sets a user's moderation state (banned users are denied, silenced ones lose joins); open
/// sessions of the user pick it up through [`changed_since`].
pub fn set_moderation(
    conn: &mut DbConn,
    user_id: &str,
    moderation: Moderation,
) -> Result<(), DbError> {
    let now = now_ms();
    let updated = with_conn!(conn, |c| diesel::update(users::table.find(user_id))
        .filter(users::moderation_state.ne(moderation.as_str()))
        .set((
            users::moderation_state.eq(moderation.as_str()),
            users::version.eq(users::version + 1),
            users::changed_at.eq(now),
        ))
        .execute(c))?;
    if updated == 0 {
        // Already in that state, or no such user.
        return require_one(usize::from(find_user(conn, user_id)?.is_some()), user_id);
    }
    Ok(())
}

/// How many users a world has.
pub fn count_in_world(conn: &mut DbConn, world_id: &str) -> Result<i64, DbError> {
    Ok(with_conn!(conn, |c| users::table
        .filter(users::world_id.eq(world_id))
        .count()
        .get_result::<i64>(c))?)
}

/// The user of a token uid in a world, if any.
pub fn find_token_user(
    conn: &mut DbConn,
    world_id: &str,
    uid: &str,
) -> Result<Option<UserRow>, DbError> {
    Ok(with_conn!(conn, |c| users::table
        .filter(users::world_id.eq(world_id))
        .filter(users::token_id.eq(uid))
        .select(UserRow::as_select())
        .first(c)
        .optional())?)
}

/// The traits and moderation state of one user as stored, with their version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUserState {
    pub id: String,
    pub traits: Vec<String>,
    pub moderation: Moderation,
    pub version: i64,
    pub changed_at: i64,
}

/// Users whose traits or moderation state changed after `since_ms` (an indexed range read:
/// its cost depends on how many users changed, not on how many are connected).
pub fn changed_since(conn: &mut DbConn, since_ms: i64) -> Result<Vec<StoredUserState>, DbError> {
    let rows: Vec<(String, String, String, i64, i64)> = with_conn!(conn, |c| users::table
        .filter(users::changed_at.gt(since_ms))
        .order(users::changed_at)
        .select((
            users::id,
            users::traits,
            users::moderation_state,
            users::version,
            users::changed_at,
        ))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(
            |(id, traits, moderation, version, changed_at)| StoredUserState {
                id,
                traits: serde_json::from_str(&traits).unwrap_or_default(),
                moderation: Moderation::from_stored(&moderation),
                version,
                changed_at,
            },
        )
        .collect())
}

#[cfg(test)]
#[path = "users_tests.rs"]
mod tests;
