//! Semantic checks of a world file, after serde accepted its shape: every error names the JSON
//! path of the offending value, in the form serde_path_to_error uses (`rooms[1].id`).

use std::collections::HashSet;

use serde_json::Map;

use super::bbb_config::{BbbConfigError, BbbRoomConfig};
use super::file::{WorldFile, WorldFileError, BBB_MODULE};
use crate::permissions::{RoleDefs, TraitGrants};

/// Longest world or room id; ids appear in URLs and BBB metadata.
pub const MAX_ID_LEN: usize = 128;
/// Longest uid in an explicit grant (the same limit as a token's `uid`).
pub const MAX_UID_LEN: usize = 200;
/// Shortest JWT secret accepted: HS256 needs a key of at least 256 bits (RFC 7518 §3.2).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// How many of `secrets` are shorter than [`MIN_JWT_SECRET_BYTES`].
pub fn short_secrets(secrets: &[super::JwtSecret]) -> usize {
    secrets
        .iter()
        .filter(|s| s.secret.len() < MIN_JWT_SECRET_BYTES)
        .count()
}

/// Checks a world or room id: non-empty, at most 128 characters, no `/` and no control
/// characters (ids are used in URL paths).
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.chars().count() > MAX_ID_LEN {
        return Err(format!("must be at most {MAX_ID_LEN} characters"));
    }
    if id.contains('/') {
        return Err("must not contain '/'".into());
    }
    if id.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

fn bad(path: impl Into<String>, message: impl Into<String>) -> WorldFileError {
    WorldFileError::new(path, message)
}

/// The role definitions of a file, with the path of an unknown permission name.
pub fn role_defs(file: &WorldFile) -> Result<RoleDefs, WorldFileError> {
    if let Some(roles) = &file.roles {
        for (role, names) in roles {
            if role.trim().is_empty() {
                return Err(bad("roles", "role names must not be empty"));
            }
            for (i, name) in names.iter().enumerate() {
                if name.parse::<crate::permissions::Permission>().is_err() {
                    return Err(bad(
                        format!("roles.{role}[{i}]"),
                        format!(
                            "unknown permission {name:?}; known: world:view, room:view, \
                             room:bbb.join, room:bbb.moderate, room:bbb.recordings"
                        ),
                    ));
                }
            }
        }
    }
    RoleDefs::with_overrides(file.roles.as_ref())
        .map_err(|(role, e)| bad(format!("roles.{role}"), e.to_string()))
}

fn check_trait_grants(
    grants: &TraitGrants,
    roles: &RoleDefs,
    path: &str,
) -> Result<(), WorldFileError> {
    for role in grants.keys() {
        if !roles.contains_role(role) {
            let known: Vec<&str> = roles.role_names().collect();
            return Err(bad(
                format!("{path}.{role}"),
                format!("unknown role {role:?}; known: {}", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn bbb_error(e: BbbConfigError, room_path: &str) -> WorldFileError {
    if e.in_defaults {
        bad(format!("bbb_defaults.{}", e.key), e.message)
    } else {
        bad(format!("{room_path}.config.{}", e.key), e.message)
    }
}

/// Everything `import` checks beyond the JSON shape. The first problem wins.
pub fn validate_world_file(file: &WorldFile) -> Result<(), WorldFileError> {
    check_id(&file.id).map_err(|m| bad("id", m))?;
    if file.timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(bad(
            "timezone",
            format!(
                "unknown time zone {:?}; use an IANA name like \"Europe/Berlin\" or \"UTC\"",
                file.timezone
            ),
        ));
    }
    if file.jwt_secrets.is_empty() {
        return Err(bad("jwt_secrets", "at least one JWT secret is required"));
    }
    if let Some(i) = file
        .jwt_secrets
        .iter()
        .position(|s| s.secret.len() < MIN_JWT_SECRET_BYTES)
    {
        // Neither the secret nor its length is shown.
        return Err(bad(
            format!("jwt_secrets[{i}].secret"),
            format!(
                "too short: a JWT secret must be at least {MIN_JWT_SECRET_BYTES} bytes (HS256 \
                 needs a 256-bit key); generate one with `openssl rand -base64 32`"
            ),
        ));
    }
    let roles = role_defs(file)?;
    check_trait_grants(&file.trait_grants, &roles, "trait_grants")?;
    BbbRoomConfig::merged(&file.bbb_defaults, &Map::new()).map_err(|e| bbb_error(e, ""))?;
    if let Some(url) = file
        .bbb_style_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    {
        let url = url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(bad("bbb_style_url", "must be an http(s) URL"));
        }
    }
    let mut room_ids = HashSet::new();
    for (i, room) in file.rooms.iter().enumerate() {
        let path = format!("rooms[{i}]");
        check_id(&room.id).map_err(|m| bad(format!("{path}.id"), m))?;
        if !room_ids.insert(room.id.as_str()) {
            return Err(bad(
                format!("{path}.id"),
                format!("duplicate room id {:?}", room.id),
            ));
        }
        if let Some(grants) = &room.trait_grants {
            check_trait_grants(grants, &roles, &format!("{path}.trait_grants"))?;
        }
        let mut has_bbb = false;
        for (j, module) in room.modules.iter().enumerate() {
            let mpath = format!("{path}.modules[{j}]");
            if module.module_type.trim().is_empty() {
                return Err(bad(format!("{mpath}.type"), "must not be empty"));
            }
            if module.module_type == BBB_MODULE {
                if has_bbb {
                    return Err(bad(
                        format!("{mpath}.type"),
                        "a room has at most one call.bigbluebutton module",
                    ));
                }
                has_bbb = true;
                BbbRoomConfig::merged(&file.bbb_defaults, &module.config)
                    .map_err(|e| bbb_error(e, &mpath))?;
            }
        }
    }
    for (i, grant) in file.grants.iter().enumerate() {
        let path = format!("grants[{i}]");
        if grant.uid.is_empty() || grant.uid.chars().count() > MAX_UID_LEN {
            return Err(bad(
                format!("{path}.uid"),
                format!("must be 1 to {MAX_UID_LEN} characters"),
            ));
        }
        if !roles.contains_role(&grant.role) {
            return Err(bad(
                format!("{path}.role"),
                format!("unknown role {:?}", grant.role),
            ));
        }
        if let Some(room) = &grant.room {
            if !room_ids.contains(room.as_str()) {
                return Err(bad(
                    format!("{path}.room"),
                    format!("no room {room:?} in this file"),
                ));
            }
        }
    }
    Ok(())
}
