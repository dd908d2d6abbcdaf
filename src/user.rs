//! The authenticated user of one WebSocket session, as the hot path needs it: no database
//! access is required to check permissions or build a join URL.

use serde_json::{json, Value};

use crate::permissions::{Moderation, Subject};

/// Display name and avatar, as set by the token or `user.update`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

impl Profile {
    /// Reads the venueless profile object (`display_name`, `avatar.url`), ignoring other keys.
    pub fn from_json(v: &Value) -> Profile {
        Profile {
            display_name: v
                .get("display_name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            avatar_url: v
                .get("avatar")
                .and_then(|a| a.get("url"))
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({});
        if let Some(name) = &self.display_name {
            v["display_name"] = json!(name);
        }
        if let Some(url) = &self.avatar_url {
            v["avatar"] = json!({ "url": url });
        }
        v
    }

    /// The display name when it is usable for BBB (not missing, empty or whitespace).
    pub fn usable_name(&self) -> Option<&str> {
        self.display_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
    }
}

/// Who is behind a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserContext {
    /// Our user id (uuid), sent to BBB as `userID`.
    pub id: String,
    pub world_id: String,
    /// The token's `uid`; `None` for anonymous client_id users.
    pub uid: Option<String>,
    pub traits: Vec<String>,
    pub profile: Profile,
    pub moderation: Moderation,
}

impl UserContext {
    /// The view of this user that permission resolution needs.
    pub fn subject(&self) -> Subject<'_> {
        Subject {
            uid: self.uid.as_deref(),
            traits: &self.traits,
            moderation: self.moderation,
        }
    }
}
