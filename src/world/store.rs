//! Worlds in the database (`worlds`, `rooms`, `grants`): import and export of the world file,
//! version polling for the cache, and loading compiled snapshots.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use diesel::prelude::*;
use serde::de::DeserializeOwned;

use super::file::{GrantFile, JwtSecret, RoomFile, WorldFile};
use super::snapshot::WorldSnapshot;
use super::validate::validate_world_file;
use crate::db::schema::{grants, rooms, worlds};
use crate::db::{now_ms, DbConn, DbError};
use crate::with_conn;

/// What an import did, for the CLI's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub world_id: String,
    /// The world's version after the import (1 for a new world).
    pub version: i64,
    pub world_created: bool,
    pub rooms_added: usize,
    pub rooms_updated: usize,
    /// Stored rooms the file does not list; import keeps them (after the listed ones).
    pub rooms_kept: usize,
    pub grants: usize,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (version {}), rooms: {} added, {} updated, {} kept (not in the file); {} explicit grant(s)",
            if self.world_created { "created" } else { "updated" },
            self.version,
            self.rooms_added,
            self.rooms_updated,
            self.rooms_kept,
            self.grants
        )
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, DbError> {
    serde_json::to_string(v).map_err(|e| DbError::Invalid(format!("cannot encode JSON: {e}")))
}

/// Decodes a JSON column. The error names the column but never quotes its content (it may be
/// a secret).
fn from_json<T: DeserializeOwned>(text: &str, world: &str, column: &str) -> Result<T, DbError> {
    serde_json::from_str(text).map_err(|e| {
        DbError::Invalid(format!(
            "stored world {world:?}: column {column} is not valid (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

fn position(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

/// Creates or updates a world from a (validated) file, in one transaction: upserts the world
/// and bumps `worlds.version` so every process reloads it, upserts the listed rooms in file
/// order (rooms not listed are kept, after them), and replaces the explicit grants with the
/// file's. Importing the same file twice changes nothing but the version.
/// The file is validated again (it may have been built in code), so a bad file changes
/// nothing.
pub fn import_world(conn: &mut DbConn, file: &WorldFile) -> Result<ImportSummary, DbError> {
    validate_world_file(file).map_err(|e| DbError::Invalid(format!("invalid world file: {e}")))?;
    let jwt_secrets = to_json(&file.jwt_secrets)?;
    let roles = file.roles.as_ref().map(to_json).transpose()?;
    let trait_grants = to_json(&file.trait_grants)?;
    let bbb_defaults = to_json(&file.bbb_defaults)?;
    let mut room_rows = Vec::with_capacity(file.rooms.len());
    for (i, r) in file.rooms.iter().enumerate() {
        let modules = to_json(&r.modules)?;
        let grants = r.trait_grants.as_ref().map(to_json).transpose()?;
        room_rows.push((r.id.as_str(), r.name.as_str(), position(i), modules, grants));
    }
    let grant_rows: BTreeSet<(&str, &str, &str)> = file
        .grants
        .iter()
        .map(|g| {
            (
                g.uid.as_str(),
                g.room.as_deref().unwrap_or(""),
                g.role.as_str(),
            )
        })
        .collect();
    let now = now_ms();
    let id = file.id.as_str();
    with_conn!(conn, |c| c.transaction(|c| {
        // Write first: on SQLite a transaction that reads before writing can fail with
        // "database is locked" instead of waiting for a concurrent import.
        diesel::insert_into(worlds::table)
            .values((
                worlds::id.eq(id),
                worlds::title.eq(&file.title),
                worlds::timezone.eq(&file.timezone),
                worlds::jwt_secrets.eq(&jwt_secrets),
                worlds::roles.eq(&roles),
                worlds::trait_grants.eq(&trait_grants),
                worlds::bbb_defaults.eq(&bbb_defaults),
                worlds::bbb_disable_privatechat.eq(file.bbb_disable_privatechat),
                worlds::bbb_style_url.eq(&file.bbb_style_url),
                worlds::version.eq(1i64),
                worlds::updated_at.eq(now),
            ))
            .on_conflict(worlds::id)
            .do_update()
            .set((
                worlds::title.eq(&file.title),
                worlds::timezone.eq(&file.timezone),
                worlds::jwt_secrets.eq(&jwt_secrets),
                worlds::roles.eq(&roles),
                worlds::trait_grants.eq(&trait_grants),
                worlds::bbb_defaults.eq(&bbb_defaults),
                worlds::bbb_disable_privatechat.eq(file.bbb_disable_privatechat),
                worlds::bbb_style_url.eq(&file.bbb_style_url),
                worlds::version.eq(worlds::version + 1i64),
                worlds::updated_at.eq(now),
            ))
            .execute(c)?;
        let version: i64 = worlds::table.find(id).select(worlds::version).first(c)?;

        let stored: Vec<String> = rooms::table
            .filter(rooms::world_id.eq(id))
            .order((rooms::position, rooms::id))
            .select(rooms::id)
            .load(c)?;
        let stored_set: HashSet<&str> = stored.iter().map(String::as_str).collect();
        let mut rooms_added = 0;
        for (room_id, name, pos, modules, grants) in &room_rows {
            if !stored_set.contains(room_id) {
                rooms_added += 1;
            }
            diesel::insert_into(rooms::table)
                .values((
                    rooms::world_id.eq(id),
                    rooms::id.eq(room_id),
                    rooms::name.eq(name),
                    rooms::position.eq(pos),
                    rooms::modules.eq(modules),
                    rooms::trait_grants.eq(grants),
                ))
                .on_conflict((rooms::world_id, rooms::id))
                .do_update()
                .set((
                    rooms::name.eq(name),
                    rooms::position.eq(pos),
                    rooms::modules.eq(modules),
                    rooms::trait_grants.eq(grants),
                ))
                .execute(c)?;
        }
        let listed: HashSet<&str> = room_rows.iter().map(|r| r.0).collect();
        let kept: Vec<&String> = stored
            .iter()
            .filter(|r| !listed.contains(r.as_str()))
            .collect();
        for (k, room_id) in kept.iter().enumerate() {
            diesel::update(rooms::table.find((id, room_id.as_str())))
                .set(rooms::position.eq(position(room_rows.len() + k)))
                .execute(c)?;
        }

        diesel::delete(grants::table.filter(grants::world_id.eq(id))).execute(c)?;
        for (uid, room, role) in &grant_rows {
            diesel::insert_into(grants::table)
                .values((
                    grants::world_id.eq(id),
                    grants::uid.eq(uid),
                    grants::room_id.eq(room),
                    grants::role.eq(role),
                ))
                .execute(c)?;
        }
        Ok::<_, DbError>(ImportSummary {
            world_id: id.to_owned(),
            version,
            // A new world starts at version 1 and every later import bumps it.
            world_created: version == 1,
            rooms_added,
            rooms_updated: room_rows.len() - rooms_added,
            rooms_kept: kept.len(),
            grants: grant_rows.len(),
        })
    }))
}

/// A stored `worlds` row.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = worlds)]
struct WorldRow {
    id: String,
    title: String,
    timezone: String,
    jwt_secrets: String,
    roles: Option<String>,
    trait_grants: String,
    bbb_defaults: String,
    bbb_disable_privatechat: bool,
    bbb_style_url: Option<String>,
    version: i64,
}

/// A stored `rooms` row.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = rooms)]
struct RoomRow {
    id: String,
    name: String,
    modules: String,
    trait_grants: Option<String>,
}

/// A stored world as a file, with its version.
fn load_world(conn: &mut DbConn, id: &str) -> Result<Option<(WorldFile, i64)>, DbError> {
    let loaded = with_conn!(conn, |c| {
        let world: Option<WorldRow> = worlds::table
            .find(id)
            .select(WorldRow::as_select())
            .first(c)
            .optional()?;
        let Some(world) = world else {
            return Ok(None);
        };
        let room_rows: Vec<RoomRow> = rooms::table
            .filter(rooms::world_id.eq(id))
            .order((rooms::position, rooms::id))
            .select(RoomRow::as_select())
            .load(c)?;
        let grant_rows: Vec<(String, String, String)> = grants::table
            .filter(grants::world_id.eq(id))
            .order((grants::uid, grants::room_id, grants::role))
            .select((grants::uid, grants::room_id, grants::role))
            .load(c)?;
        Ok::<_, DbError>(Some((world, room_rows, grant_rows)))
    })?;
    let Some((w, room_rows, grant_rows)) = loaded else {
        return Ok(None);
    };
    let mut rooms_out = Vec::with_capacity(room_rows.len());
    for r in room_rows {
        rooms_out.push(RoomFile {
            modules: from_json(&r.modules, &w.id, "rooms.modules")?,
            trait_grants: r
                .trait_grants
                .as_deref()
                .map(|t| from_json(t, &w.id, "rooms.trait_grants"))
                .transpose()?,
            id: r.id,
            name: r.name,
        });
    }
    let file = WorldFile {
        jwt_secrets: from_json(&w.jwt_secrets, &w.id, "jwt_secrets")?,
        roles: w
            .roles
            .as_deref()
            .map(|r| from_json(r, &w.id, "roles"))
            .transpose()?,
        trait_grants: from_json(&w.trait_grants, &w.id, "trait_grants")?,
        bbb_defaults: from_json(&w.bbb_defaults, &w.id, "bbb_defaults")?,
        bbb_disable_privatechat: w.bbb_disable_privatechat,
        bbb_style_url: w.bbb_style_url,
        rooms: rooms_out,
        grants: grant_rows
            .into_iter()
            .map(|(uid, room, role)| GrantFile {
                uid,
                role,
                room: (!room.is_empty()).then_some(room),
            })
            .collect(),
        id: w.id,
        title: w.title,
        timezone: w.timezone,
    };
    Ok(Some((file, w.version)))
}

/// A stored world in the form `import` reads (`world export`); `None` when unknown. Grants
/// come sorted by uid, room and role; rooms in their stored order.
pub fn export_world(conn: &mut DbConn, id: &str) -> Result<Option<WorldFile>, DbError> {
    Ok(load_world(conn, id)?.map(|(file, _)| file))
}

/// Every world's id and version, for the cache's change detection.
pub fn world_versions(conn: &mut DbConn) -> Result<Vec<(String, i64)>, DbError> {
    Ok(with_conn!(conn, |c| worlds::table
        .select((worlds::id, worlds::version))
        .order(worlds::id)
        .load(c))?)
}

/// Stored worlds with JWT secrets shorter than import accepts today (imported before the
/// rule), and how many each has. Tokens signed with them keep working; start-up warns.
pub fn worlds_with_short_secrets(conn: &mut DbConn) -> Result<Vec<(String, usize)>, DbError> {
    let rows: Vec<(String, String)> = with_conn!(conn, |c| worlds::table
        .select((worlds::id, worlds::jwt_secrets))
        .order(worlds::id)
        .load(c))?;
    let mut short = Vec::new();
    for (id, secrets) in rows {
        let secrets: Vec<JwtSecret> = from_json(&secrets, &id, "jwt_secrets")?;
        let n = super::validate::short_secrets(&secrets);
        if n > 0 {
            short.push((id, n));
        }
    }
    Ok(short)
}

/// Loads and compiles a stored world; `None` when unknown.
pub fn load_snapshot(conn: &mut DbConn, world_id: &str) -> Result<Option<WorldSnapshot>, DbError> {
    let Some((file, version)) = load_world(conn, world_id)? else {
        return Ok(None);
    };
    WorldSnapshot::from_file(&file, version)
        .map(Some)
        .map_err(|e| DbError::Invalid(format!("stored world {world_id:?} is invalid: {e}")))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
