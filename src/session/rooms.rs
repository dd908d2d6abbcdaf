//! `room.enter` and `room.leave`: the frontend announces every room it shows, and stops
//! (no questions, no polls) when the announcement is refused. The gateway keeps no viewer
//! lists, so both are checks against the world snapshot and nothing else.

use crate::permissions::Permission;
use crate::protocol::{ErrorCode, ErrorReply};
use crate::user::UserContext;
use crate::world::room_permissions;
use crate::world::WorldSnapshot;

/// Whether the user enters (`room:view` needed) or leaves (the room must merely exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Enter,
    Leave,
}

/// The room checks of PROTOCOL.md: a room that is missing, unknown or in another world →
/// `room.unknown`; entering without `room:view` → `protocol.denied`.
pub fn check(
    world: &WorldSnapshot,
    user: &UserContext,
    room: Option<&str>,
    presence: Presence,
) -> Result<(), ErrorReply> {
    let room = room
        .filter(|_| user.world_id == world.id)
        .and_then(|id| world.room(id))
        .ok_or_else(|| ErrorReply::from(ErrorCode::RoomUnknown))?;
    if presence == Presence::Enter
        && !room_permissions(world, room, &user.subject()).contains(Permission::RoomView)
    {
        return Err(ErrorCode::Denied.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::permissions::Moderation;
    use crate::user::Profile;

    fn world() -> WorldSnapshot {
        let file = json!({
            "id": "w", "title": "W",
            "jwt_secrets": [{"issuer": "i", "audience": "a", "secret": "0123456789abcdef0123456789abcdef"}],
            "roles": {"attendee": ["world:view"]},
            "trait_grants": {"attendee": ["member"]},
            "rooms": [
                {"id": "open", "name": "Open", "modules": []},
                {"id": "vip", "name": "VIP", "trait_grants": {"viewer": ["vip"]}, "modules": []},
            ]
        });
        let file = crate::world::parse_world_file(&file.to_string()).expect("world");
        WorldSnapshot::from_file(&file, 1).expect("snapshot")
    }

    fn user(world_id: &str, moderation: Moderation) -> UserContext {
        UserContext {
            id: "u".into(),
            world_id: world_id.into(),
            uid: Some("uid".into()),
            traits: vec!["member".into()],
            profile: Profile::default(),
            moderation,
        }
    }

    #[test]
    fn enter_needs_a_known_room_and_room_view() {
        let w = world();
        let u = user("w", Moderation::None);
        let code = |room, presence| check(&w, &u, room, presence).map_err(|e| e.code);
        assert_eq!(code(Some("open"), Presence::Enter), Ok(()));
        assert_eq!(code(Some("vip"), Presence::Enter), Err(ErrorCode::Denied));
        assert_eq!(
            code(Some("nope"), Presence::Enter),
            Err(ErrorCode::RoomUnknown)
        );
        assert_eq!(code(None, Presence::Enter), Err(ErrorCode::RoomUnknown));
    }

    #[test]
    fn leave_needs_only_a_known_room() {
        let w = world();
        let u = user("w", Moderation::None);
        assert!(check(&w, &u, Some("vip"), Presence::Leave).is_ok());
        assert_eq!(
            check(&w, &u, Some("nope"), Presence::Leave).map_err(|e| e.code),
            Err(ErrorCode::RoomUnknown)
        );
    }

    #[test]
    fn other_worlds_and_banned_users_are_refused() {
        let w = world();
        let stranger = user("elsewhere", Moderation::None);
        assert_eq!(
            check(&w, &stranger, Some("open"), Presence::Enter).map_err(|e| e.code),
            Err(ErrorCode::RoomUnknown)
        );
        let banned = user("w", Moderation::Banned);
        assert_eq!(
            check(&w, &banned, Some("open"), Presence::Enter).map_err(|e| e.code),
            Err(ErrorCode::Denied)
        );
    }
}
