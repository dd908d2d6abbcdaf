//! The world file of PROTOCOL.md ("World file") as serde types: what `bbb-gateway world import`
//! reads and `world export` prints. Parsing names the JSON path of any error, so an admin can
//! fix a large file quickly.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::permissions::TraitGrants;

/// A whole world: identity, JWT secrets, roles, trait grants, BBB defaults, rooms and explicit
/// grants. Keys the gateway does not use are ignored, so venueless exports can be imported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldFile {
    pub id: String,
    pub title: String,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    pub jwt_secrets: Vec<JwtSecret>,
    /// Role → permission names, overriding or adding to the default roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub trait_grants: TraitGrants,
    /// Fills keys missing from every room's `call.bigbluebutton` config.
    #[serde(default)]
    pub bbb_defaults: Map<String, Value>,
    #[serde(default = "default_true")]
    pub bbb_disable_privatechat: bool,
    #[serde(default)]
    pub bbb_style_url: Option<String>,
    #[serde(default)]
    pub rooms: Vec<RoomFile>,
    #[serde(default)]
    pub grants: Vec<GrantFile>,
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

fn default_true() -> bool {
    true
}

/// A room: its id is what clients send in `bbb.room_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomFile {
    pub id: String,
    pub name: String,
    /// `None`: the room uses `{"viewer": []}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trait_grants: Option<TraitGrants>,
    #[serde(default)]
    pub modules: Vec<ModuleFile>,
}

/// A room module; only `call.bigbluebutton` means something to the gateway, the others are
/// listed to clients as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleFile {
    #[serde(rename = "type")]
    pub module_type: String,
    #[serde(default)]
    pub config: Map<String, Value>,
}

/// The module type of a BigBlueButton room.
pub const BBB_MODULE: &str = "call.bigbluebutton";

/// One accepted JWT signer. The secret never appears in Debug output, logs or errors.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtSecret {
    pub issuer: String,
    pub audience: String,
    pub secret: String,
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSecret")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// An explicit role grant to a token uid, world-wide (`room` absent) or for one room.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GrantFile {
    pub uid: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

/// Why a world file was rejected, with the JSON path of the offending value (`.` for the
/// whole document). Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct WorldFileError {
    pub path: String,
    pub message: String,
}

impl WorldFileError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        WorldFileError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Parses and validates a world file. The error names the JSON path (`rooms[2].modules[0].type`)
/// of the first problem, whether a syntax, type or semantic one.
pub fn parse_world_file(json: &str) -> Result<WorldFile, WorldFileError> {
    let de = &mut serde_json::Deserializer::from_str(json);
    let file: WorldFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let mut message = e.into_inner().to_string();
        // serde quotes the offending value in type errors; under `jwt_secrets` that may be a
        // secret, so only say what was expected.
        if path.starts_with("jwt_secrets")
            && (message.starts_with("invalid type") || message.starts_with("invalid value"))
        {
            message = "invalid value (not shown, it may be a secret); expected a list of \
                       {\"issuer\", \"audience\", \"secret\"} objects with string values"
                .to_owned();
        }
        WorldFileError::new(path, message)
    })?;
    super::validate::validate_world_file(&file)?;
    Ok(file)
}
