//! The `authenticate` and `user.update` commands: the only places a session touches the
//! database; everything they produce is kept in memory for the session's hot path.

use serde_json::Value;

use crate::auth::{verify_token, AuthError};
use crate::db::users::{self, UserRow};
use crate::db::Db;
use crate::permissions::{world_permissions, Moderation, Permission};
use crate::protocol::{ErrorCode, ErrorReply};
use crate::user::{Profile, UserContext};
use crate::world::WorldSnapshot;

/// Longest accepted display name; BBB shows it in a narrow user list.
const MAX_DISPLAY_NAME: usize = 200;
/// Longest accepted `client_id`.
const MAX_CLIENT_ID: usize = 200;

fn user_from_row(row: UserRow) -> UserContext {
    let profile = serde_json::from_str::<Value>(&row.profile)
        .map(|v| Profile::from_json(&v))
        .unwrap_or_default();
    let traits = serde_json::from_str::<Vec<String>>(&row.traits).unwrap_or_default();
    let moderation = match row.moderation_state.as_str() {
        "banned" => Moderation::Banned,
        "silenced" => Moderation::Silenced,
        _ => Moderation::None,
    };
    UserContext {
        id: row.id,
        world_id: row.world_id,
        uid: row.token_id,
        traits,
        profile,
        moderation,
    }
}

/// Runs the `authenticate` command: verifies the token (or takes the client id), finds or
/// creates the user and checks `world:view`.
pub async fn authenticate(
    db: &Db,
    world: &WorldSnapshot,
    payload: &Value,
) -> Result<UserContext, ErrorReply> {
    let token = payload.get("token").and_then(Value::as_str);
    let client_id = payload.get("client_id").and_then(Value::as_str);
    let world_id = world.id.clone();
    let (user, anonymous) = if let Some(token) = token.filter(|t| !t.is_empty()) {
        let claims = verify_token(token, &world.jwt_secrets).map_err(|e| match e {
            AuthError::Expired => ErrorReply::new(ErrorCode::AuthExpiredToken),
            _ => ErrorReply::new(ErrorCode::AuthInvalidToken),
        })?;
        let profile = claims.profile.clone();
        let row = db
            .run(move |conn| {
                users::find_or_create_token_user(
                    conn,
                    &world_id,
                    &claims.uid,
                    &claims.traits,
                    profile.as_ref(),
                )
            })
            .await
            .map_err(db_error)?;
        (user_from_row(row), false)
    } else if let Some(client_id) = client_id.filter(|c| !c.is_empty()) {
        if client_id.len() > MAX_CLIENT_ID {
            return Err(ErrorReply::new(ErrorCode::AuthMissingIdOrToken));
        }
        let client_id = client_id.to_owned();
        let row = db
            .run(move |conn| users::find_or_create_client_user(conn, &world_id, &client_id))
            .await
            .map_err(db_error)?;
        (user_from_row(row), true)
    } else {
        return Err(ErrorReply::new(ErrorCode::AuthMissingIdOrToken));
    };
    if user.moderation == Moderation::Banned {
        return Err(ErrorReply::new(ErrorCode::AuthDenied));
    }
    if !world_permissions(world, &user.subject()).contains(Permission::WorldView) {
        return Err(ErrorReply::new(if anonymous {
            ErrorCode::AuthMissingToken
        } else {
            ErrorCode::AuthDenied
        }));
    }
    Ok(user)
}

fn db_error(e: crate::db::DbError) -> ErrorReply {
    log::error!("database error during authentication: {e}");
    ErrorReply::with_message(
        ErrorCode::ServerError,
        "the database is unavailable, retry later",
    )
}

/// Validates a `user.update` payload into the new profile.
pub fn parse_profile_update(payload: &Value, current: &Profile) -> Result<Profile, ErrorReply> {
    let invalid = |m: &str| ErrorReply::with_message(ErrorCode::InvalidMessage, m);
    let profile = payload
        .get("profile")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("user.update needs a profile object"))?;
    let mut next = current.clone();
    if let Some(name) = profile.get("display_name") {
        let name = name
            .as_str()
            .ok_or_else(|| invalid("profile.display_name must be a string"))?;
        if name.chars().count() > MAX_DISPLAY_NAME {
            return Err(invalid(
                "profile.display_name is too long (200 characters at most)",
            ));
        }
        next.display_name = Some(name.to_owned());
    }
    if let Some(avatar) = profile.get("avatar") {
        next.avatar_url = match avatar {
            Value::Null => None,
            Value::Object(o) => match o.get("url") {
                None | Some(Value::Null) => None,
                Some(Value::String(u)) if u.is_empty() => None,
                Some(Value::String(u))
                    if u.len() <= 2048
                        && (u.starts_with("https://") || u.starts_with("http://")) =>
                {
                    Some(u.clone())
                }
                _ => return Err(invalid("profile.avatar.url must be an http(s) URL")),
            },
            _ => return Err(invalid("profile.avatar must be an object")),
        };
    }
    Ok(next)
}

/// Stores a profile set by `user.update`.
pub async fn store_profile(db: &Db, user_id: String, profile: &Profile) -> Result<(), ErrorReply> {
    let json = profile.to_json();
    db.run(move |conn| users::update_profile(conn, &user_id, &json))
        .await
        .map_err(|e| {
            log::error!("database error storing a profile: {e}");
            ErrorReply::with_message(
                ErrorCode::ServerError,
                "the database is unavailable, retry later",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn profile_updates_are_validated() {
        let cur = Profile::default();
        let p = parse_profile_update(&json!({"profile": {"display_name": "Ada"}}), &cur).unwrap();
        assert_eq!(p.usable_name(), Some("Ada"));
        let p = parse_profile_update(
            &json!({"profile": {"display_name": " ", "avatar": {"url": "https://x/a.png"}}}),
            &cur,
        )
        .unwrap();
        assert_eq!(p.usable_name(), None);
        assert_eq!(p.avatar_url.as_deref(), Some("https://x/a.png"));
        for bad in [
            json!({}),
            json!({"profile": "x"}),
            json!({"profile": {"display_name": 5}}),
            json!({"profile": {"display_name": "x".repeat(201)}}),
            json!({"profile": {"avatar": {"url": "javascript:alert(1)"}}}),
            json!({"profile": {"avatar": 3}}),
        ] {
            let e = parse_profile_update(&bad, &cur).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidMessage, "{bad}");
        }
    }
}
