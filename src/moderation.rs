//! A user's moderation state: silenced users may look but not join, banned ones may do
//! nothing. A leaf module: storage, permissions and sessions all use it.

/// The moderation state of a user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Moderation {
    #[default]
    None,
    Silenced,
    Banned,
}

impl Moderation {
    /// The value stored in `users.moderation_state` (venueless uses the same strings).
    pub fn as_str(self) -> &'static str {
        match self {
            Moderation::None => "",
            Moderation::Silenced => "silenced",
            Moderation::Banned => "banned",
        }
    }

    /// Reads a stored moderation state; anything unknown counts as not moderated.
    pub fn from_stored(s: &str) -> Moderation {
        match s {
            "silenced" => Moderation::Silenced,
            "banned" => Moderation::Banned,
            _ => Moderation::None,
        }
    }
}
