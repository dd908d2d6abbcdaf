//! The `authenticate` and `user.update` commands: the only places a session touches the
//! database; everything they produce is kept in memory for the session's hot path.

use serde_json::Value;

use crate::auth::{verify_token, AuthError};
use crate::db::users::{self, UserRow};
use crate::db::Db;
use crate::permissions::{Moderation, Permission, Subject};
use crate::protocol::{ErrorCode, ErrorReply};
use crate::user::{Profile, ProfileDocument, UserContext};
use crate::world::world_permissions;
use crate::world::WorldSnapshot;

/// Longest accepted `client_id`.
const MAX_CLIENT_ID: usize = 200;

/// A successful login: the user as the hot path needs it, and their whole profile.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: UserContext,
    pub profile: ProfileDocument,
    /// The stored version of the user's traits and moderation state.
    pub version: i64,
}

fn user_from_row(row: UserRow) -> Authenticated {
    let (document, profile) = ProfileDocument::load(&row.profile);
    let traits = serde_json::from_str::<Vec<String>>(&row.traits).unwrap_or_default();
    let moderation = row.moderation();
    let version = row.version;
    Authenticated {
        version,
        user: UserContext {
            id: row.id,
            world_id: row.world_id,
            uid: row.token_id,
            traits,
            profile,
            moderation,
        },
        profile: document,
    }
}

/// Whether a user with this uid and these traits, not moderated, would have `world:view`.
/// Moderation only ever takes permissions away, so a user this denies is denied whatever is
/// stored about them: the login is refused before any user is created.
fn could_view(world: &WorldSnapshot, uid: Option<&str>, traits: &[String]) -> bool {
    let subject = Subject {
        uid,
        traits,
        moderation: Moderation::None,
    };
    world_permissions(world, &subject).contains(Permission::WorldView)
}

/// Runs the `authenticate` command: verifies the token (or takes the client id), checks
/// `world:view`, and only then finds or creates the user (and checks its moderation), so
/// logins that are refused never add users.
pub async fn authenticate(
    db: &Db,
    world: &WorldSnapshot,
    payload: &Value,
) -> Result<Authenticated, ErrorReply> {
    let token = payload.get("token").and_then(Value::as_str);
    let client_id = payload.get("client_id").and_then(Value::as_str);
    let world_id = world.id.clone();
    let (login, anonymous) = if let Some(token) = token.filter(|t| !t.is_empty()) {
        let claims = verify_token(token, &world.jwt_secrets).map_err(|e| match e {
            AuthError::Expired => ErrorReply::new(ErrorCode::AuthExpiredToken),
            _ => ErrorReply::new(ErrorCode::AuthInvalidToken),
        })?;
        let profile = claims.profile.clone();
        if !could_view(world, Some(&claims.uid), &claims.traits) {
            // A stored user still learns its new traits (its other sessions lose access).
            db.run(move |conn| {
                users::update_token_user(
                    conn,
                    &world_id,
                    &claims.uid,
                    &claims.traits,
                    profile.as_ref(),
                )
            })
            .await
            .map_err(db_error)?;
            return Err(ErrorReply::new(ErrorCode::AuthDenied));
        }
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
        if !could_view(world, None, &[]) {
            return Err(ErrorReply::new(ErrorCode::AuthMissingToken));
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
    let user = &login.user;
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
    Ok(login)
}

fn db_error(e: crate::db::DbError) -> ErrorReply {
    log::error!("database error during authentication: {e}");
    ErrorReply::with_message(
        ErrorCode::ServerError,
        "the database is unavailable, retry later",
    )
}

/// Validates a `user.update` payload: `Some` new profile (replacing the stored one whole, as
/// venueless does), or `None` when the payload has no `profile` (nothing to change).
pub fn parse_profile_update(
    payload: &Value,
) -> Result<Option<(ProfileDocument, Profile)>, ErrorReply> {
    let Some(profile) = payload.get("profile") else {
        return Ok(None);
    };
    ProfileDocument::from_client(profile)
        .map(Some)
        .map_err(|e| ErrorReply::with_message(ErrorCode::InvalidMessage, e.to_string()))
}

/// Stores a profile set by `user.update`.
pub async fn store_profile(
    db: &Db,
    user_id: String,
    profile: &ProfileDocument,
) -> Result<(), ErrorReply> {
    let text = profile.as_str().to_owned();
    db.run(move |conn| users::update_profile(conn, &user_id, &text))
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
        let (doc, p) = parse_profile_update(&json!({"profile": {"display_name": "Ada"}}))
            .unwrap()
            .unwrap();
        assert_eq!(p.usable_name(), Some("Ada"));
        assert_eq!(doc.as_str(), r#"{"display_name":"Ada"}"#);
        let (_, p) = parse_profile_update(
            &json!({"profile": {"display_name": " ", "avatar": {"url": "https://x/a.png"}}}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.usable_name(), None);
        assert_eq!(p.avatar_url.as_deref(), Some("https://x/a.png"));
        for bad in [
            json!({"profile": "x"}),
            json!({"profile": null}),
            json!({"profile": [1]}),
            json!({"profile": {"display_name": 5}}),
            json!({"profile": {"display_name": "x".repeat(201)}}),
            json!({"profile": {"fields": {"bio": "x".repeat(8 * 1024)}}}),
        ] {
            let e = parse_profile_update(&bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidMessage, "{bad}");
        }
    }

    #[test]
    fn the_whole_profile_is_kept_and_only_web_avatars_go_to_bbb() {
        let sent = json!({"display_name": "Ada", "greeted": true,
            "avatar": {"identicon": "abc"}, "fields": {"org": "X"}});
        let (doc, p) = parse_profile_update(&json!({ "profile": sent }))
            .unwrap()
            .unwrap();
        assert_eq!(serde_json::from_str::<Value>(doc.as_str()).unwrap(), sent);
        assert_eq!(p.avatar_url, None);
        let (_, p) =
            parse_profile_update(&json!({"profile": {"avatar": {"url": "javascript:alert(1)"}}}))
                .unwrap()
                .unwrap();
        assert_eq!(p.avatar_url, None);
    }

    #[test]
    fn an_update_without_a_profile_changes_nothing() {
        assert!(parse_profile_update(&json!({"client_state": {}}))
            .unwrap()
            .is_none());
    }
}
