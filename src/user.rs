//! The authenticated user of one WebSocket session, as the hot path needs it: no database
//! access is required to check permissions or build a join URL. Its profile is in
//! [`crate::profile`].

use crate::permissions::{Moderation, Subject};
pub use crate::profile::{
    Profile, ProfileDocument, ProfileError, MAX_DISPLAY_NAME, MAX_PROFILE_BYTES,
};

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
