//! Worlds: the world file (import/export), its storage, compiled snapshots for the hot path and
//! the in-memory cache that keeps them current across processes.

mod access;
mod bbb_config;
mod cache;
mod file;
mod snapshot;
mod store;
mod validate;

pub use access::{room_permissions, world_permissions};
pub use bbb_config::{BbbConfigError, BbbRoomConfig};
pub use cache::WorldCache;
pub use file::{
    parse_world_file, GrantFile, JwtSecret, ModuleFile, RoomFile, WorldFile, WorldFileError,
    BBB_MODULE,
};
pub use snapshot::{RoomSnapshot, WorldSnapshot};
pub use store::{
    export_world, import_world, load_snapshot, world_versions, worlds_with_short_secrets,
    ImportSummary,
};
pub use validate::{check_id, validate_world_file, MAX_ID_LEN, MIN_JWT_SECRET_BYTES};

#[cfg(test)]
mod file_tests;
