//! [`WorldSnapshot`]: an immutable, compiled world for the hot path. Sessions and the
//! coordinator share it behind an `Arc`; permission checks and join URLs read it without any
//! database query or JSON handling.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::bbb_config::BbbRoomConfig;
use super::file::{JwtSecret, ModuleFile, WorldFile, WorldFileError, BBB_MODULE};
use super::validate::role_defs;
use crate::permissions::{RoleDefs, TraitGrants};

/// A compiled world; replaced as a whole when its `version` changes.
#[derive(Debug, Clone)]
pub struct WorldSnapshot {
    pub id: String,
    pub title: String,
    pub timezone: chrono_tz::Tz,
    pub jwt_secrets: Vec<JwtSecret>,
    pub roles: RoleDefs,
    pub trait_grants: TraitGrants,
    /// In the order of the world file (as listed to clients).
    pub rooms: Vec<Arc<RoomSnapshot>>,
    room_index: HashMap<String, usize>,
    /// Token uid → explicit grants as (room, role); room `None` means world-wide.
    pub grants_by_uid: HashMap<String, Vec<(Option<String>, String)>>,
    pub bbb_defaults: Map<String, Value>,
    pub bbb_disable_privatechat: bool,
    pub bbb_style_url: Option<String>,
    /// `worlds.version` this snapshot was built from; other processes bump it on import.
    pub version: i64,
}

/// A compiled room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSnapshot {
    pub id: String,
    pub name: String,
    /// The room's own trait grants; `None` means `{"viewer": []}`.
    pub trait_grants: Option<TraitGrants>,
    pub modules: Vec<ModuleFile>,
    /// The `call.bigbluebutton` module's config merged with the world's `bbb_defaults`;
    /// `None` when the room has no BBB module.
    pub bbb: Option<BbbRoomConfig>,
}

impl WorldSnapshot {
    /// Compiles a world file. Checks only what compiling needs (time zone, role permission
    /// names, BBB config types), so snapshots of stored worlds load even when, say, a kept room
    /// names a role a later import removed (unknown roles grant nothing). Pure: usable in unit
    /// tests without a database.
    pub fn from_file(file: &WorldFile, version: i64) -> Result<WorldSnapshot, WorldFileError> {
        let timezone = file.timezone.parse::<chrono_tz::Tz>().map_err(|_| {
            WorldFileError::new("timezone", format!("unknown time zone {:?}", file.timezone))
        })?;
        let roles = role_defs(file)?;
        let mut rooms = Vec::with_capacity(file.rooms.len());
        let mut room_index = HashMap::with_capacity(file.rooms.len());
        for (i, room) in file.rooms.iter().enumerate() {
            let bbb = match room
                .modules
                .iter()
                .position(|m| m.module_type == BBB_MODULE)
            {
                None => None,
                Some(j) => Some(
                    BbbRoomConfig::merged(&file.bbb_defaults, &room.modules[j].config).map_err(
                        |e| {
                            let path = if e.in_defaults {
                                format!("bbb_defaults.{}", e.key)
                            } else {
                                format!("rooms[{i}].modules[{j}].config.{}", e.key)
                            };
                            WorldFileError::new(path, e.message)
                        },
                    )?,
                ),
            };
            // The first room of a duplicated id wins, as in the index.
            room_index.entry(room.id.clone()).or_insert(rooms.len());
            rooms.push(Arc::new(RoomSnapshot {
                id: room.id.clone(),
                name: room.name.clone(),
                trait_grants: room.trait_grants.clone(),
                modules: room.modules.clone(),
                bbb,
            }));
        }
        let mut grants_by_uid: HashMap<String, Vec<(Option<String>, String)>> = HashMap::new();
        for g in &file.grants {
            grants_by_uid
                .entry(g.uid.clone())
                .or_default()
                .push((g.room.clone(), g.role.clone()));
        }
        Ok(WorldSnapshot {
            id: file.id.clone(),
            title: file.title.clone(),
            timezone,
            jwt_secrets: file.jwt_secrets.clone(),
            roles,
            trait_grants: file.trait_grants.clone(),
            rooms,
            room_index,
            grants_by_uid,
            bbb_defaults: file.bbb_defaults.clone(),
            bbb_disable_privatechat: file.bbb_disable_privatechat,
            bbb_style_url: file
                .bbb_style_url
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            version,
        })
    }

    /// The room with this id.
    pub fn room(&self, id: &str) -> Option<&Arc<RoomSnapshot>> {
        self.room_index.get(id).and_then(|i| self.rooms.get(*i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::parse_world_file;
    use serde_json::json;

    fn file() -> WorldFile {
        parse_world_file(
            &json!({
                "id": "w", "title": "W", "timezone": "Europe/Berlin",
                "jwt_secrets": [{"issuer": "i", "audience": "a", "secret": "0123456789abcdef0123456789abcdef"}],
                "bbb_defaults": {"record": true, "waiting_room": true},
                "bbb_style_url": "  ",
                "rooms": [
                    {"id": "r2", "name": "Second",
                     "modules": [{"type": "call.bigbluebutton", "config": {"record": false}}]},
                    {"id": "r1", "name": "First", "trait_grants": {},
                     "modules": [{"type": "chat.native"}]}
                ],
                "grants": [{"uid": "u", "role": "moderator", "room": "r1"},
                           {"uid": "u", "role": "viewer"}]
            })
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn compiles_rooms_in_file_order_with_an_index() {
        let s = WorldSnapshot::from_file(&file(), 7).unwrap();
        assert_eq!(s.version, 7);
        assert_eq!(s.timezone, chrono_tz::Europe::Berlin);
        let ids: Vec<&str> = s.rooms.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r2", "r1"]);
        assert_eq!(s.room("r1").unwrap().name, "First");
        assert!(s.room("nope").is_none());
        let bbb = s.room("r2").unwrap().bbb.clone().unwrap();
        assert!(!bbb.record, "room key wins");
        assert!(bbb.waiting_room, "default fills");
        assert!(s.room("r1").unwrap().bbb.is_none());
        assert_eq!(s.room("r1").unwrap().trait_grants, Some(TraitGrants::new()));
        assert_eq!(s.room("r2").unwrap().trait_grants, None);
        assert_eq!(s.bbb_style_url, None);
        assert!(s.bbb_disable_privatechat);
        let mut g = s.grants_by_uid["u"].clone();
        g.sort();
        assert_eq!(
            g,
            vec![
                (None, "viewer".to_owned()),
                (Some("r1".to_owned()), "moderator".to_owned())
            ]
        );
    }

    #[test]
    fn compiling_needs_a_valid_timezone_and_bbb_config() {
        let mut f = file();
        f.timezone = "Mars/Olympus".into();
        assert_eq!(
            WorldSnapshot::from_file(&f, 1).unwrap_err().path,
            "timezone"
        );
        let mut f = file();
        f.rooms[0].modules[0]
            .config
            .insert("record".into(), json!("yes"));
        assert_eq!(
            WorldSnapshot::from_file(&f, 1).unwrap_err().path,
            "rooms[0].modules[0].config.record"
        );
    }

    #[test]
    fn unknown_roles_in_stored_grants_do_not_prevent_loading() {
        let mut f = file();
        f.trait_grants.insert("ghost".into(), vec![]);
        f.grants[0].role = "ghost".into();
        assert!(WorldSnapshot::from_file(&f, 1).is_ok());
    }
}
