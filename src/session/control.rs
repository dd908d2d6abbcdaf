//! Messages from the rest of the process to a session: shutdown, and changes to its user made
//! elsewhere (moderation, traits) that must take effect without a reconnect.

use std::sync::Arc;

use actix::Handler;

use super::WsSession;
use crate::registry::{GoingAway, UserChanged};

impl Handler<GoingAway> for WsSession {
    type Result = ();

    fn handle(&mut self, _: GoingAway, ctx: &mut Self::Context) {
        self.go_away(ctx);
    }
}

impl Handler<UserChanged> for WsSession {
    type Result = ();

    /// Applies a newer stored state of this session's user: every later check (the warm-join
    /// path included) sees the new moderation state and traits.
    fn handle(&mut self, UserChanged(state): UserChanged, _: &mut Self::Context) {
        let Some(current) = &self.user else {
            return;
        };
        if current.id != state.id || state.version <= self.user_version {
            return;
        }
        let mut next = (**current).clone();
        next.traits.clone_from(&state.traits);
        next.moderation = state.moderation;
        log::debug!("a session's user changed (version {})", state.version);
        self.user = Some(Arc::new(next));
        self.user_version = state.version;
    }
}
