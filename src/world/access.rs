//! What a user may do in a world and its rooms: the world's roles and grants (from its
//! snapshot) applied to a [`Subject`], capped by moderation. Pure functions over the
//! snapshot, so every check on the hot path is free of I/O.

use crate::permissions::{granted_roles, Moderation, PermissionSet, Subject, DEFAULT_ROOM_ROLE};

use super::{RoomSnapshot, WorldSnapshot};

/// Roles given world-wide: world trait grants and world-wide explicit grants.
fn world_roles<'w>(world: &'w WorldSnapshot, s: &Subject<'w>) -> Vec<&'w str> {
    let mut roles: Vec<&str> = granted_roles(&world.trait_grants, s.traits).collect();
    if let Some(grants) = s.uid.and_then(|uid| world.grants_by_uid.get(uid)) {
        roles.extend(
            grants
                .iter()
                .filter(|(room, _)| room.is_none())
                .map(|(_, role)| role.as_str()),
        );
    }
    roles
}

/// The world-level permissions of a user: from the world's trait grants and the user's
/// world-wide explicit grants, capped by moderation.
pub fn world_permissions(world: &WorldSnapshot, s: &Subject) -> PermissionSet {
    if s.moderation == Moderation::Banned {
        return PermissionSet::EMPTY;
    }
    let set = world.roles.permissions_of(world_roles(world, s));
    s.moderation.cap(set)
}

/// The permissions of a user in a room: the world-level ones plus the room's trait grants (or
/// `{"viewer": []}` when the room has none) and the user's explicit grants for that room,
/// capped by moderation.
pub fn room_permissions(world: &WorldSnapshot, room: &RoomSnapshot, s: &Subject) -> PermissionSet {
    if s.moderation == Moderation::Banned {
        return PermissionSet::EMPTY;
    }
    let mut roles = world_roles(world, s);
    match &room.trait_grants {
        Some(grants) => roles.extend(granted_roles(grants, s.traits)),
        // The default `{"viewer": []}` matches everybody.
        None => roles.push(DEFAULT_ROOM_ROLE),
    }
    if let Some(grants) = s.uid.and_then(|uid| world.grants_by_uid.get(uid)) {
        roles.extend(
            grants
                .iter()
                .filter(|(r, _)| r.as_deref() == Some(room.id.as_str()))
                .map(|(_, role)| role.as_str()),
        );
    }
    s.moderation.cap(world.roles.permissions_of(roles))
}
