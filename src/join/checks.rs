//! The checks of `bbb.room_url`, `bbb.call_url` and `bbb.recordings` in the order PROTOCOL.md
//! documents, as pure functions, so every error code is tested without BBB or a database.

use std::collections::HashSet;
use std::sync::Arc;

use crate::permissions::{Moderation, Permission};
use crate::protocol::{ErrorCode, ErrorReply};
use crate::user::UserContext;
use crate::world::room_permissions;
use crate::world::{BbbRoomConfig, RoomSnapshot, WorldSnapshot};

use super::params::bbb_full_name;

/// A room join that passed every check.
#[derive(Debug)]
pub struct RoomJoin<'a> {
    pub room: &'a Arc<RoomSnapshot>,
    pub bbb: &'a BbbRoomConfig,
    pub moderator: bool,
    /// Display name for BBB (`:` removed).
    pub full_name: String,
}

/// A stored call, as the checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub world_id: String,
    pub members: HashSet<String>,
}

fn missing_profile() -> ErrorReply {
    ErrorReply::with_message(
        ErrorCode::BbbMissingProfile,
        "set a display name in your profile to join the video call",
    )
}

/// Steps 1–2: the room exists in this world and has a BBB module.
fn bbb_room<'a>(
    world: &'a WorldSnapshot,
    user: &UserContext,
    room: Option<&str>,
) -> Result<(&'a Arc<RoomSnapshot>, &'a BbbRoomConfig), ErrorReply> {
    if user.world_id != world.id {
        return Err(ErrorCode::RoomUnknown.into());
    }
    let room = room
        .and_then(|id| world.room(id))
        .ok_or_else(|| ErrorReply::from(ErrorCode::RoomUnknown))?;
    let bbb = room
        .bbb
        .as_ref()
        .ok_or_else(|| ErrorReply::from(ErrorCode::RoomUnknown))?;
    Ok((room, bbb))
}

/// `bbb.room_url`: room unknown / other world / no BBB module → `room.unknown`; no
/// `room:bbb.join` → `protocol.denied`; no usable display name → `bbb.join.missing_profile`.
/// Moderator iff `room:bbb.moderate`.
pub fn room_join<'a>(
    world: &'a WorldSnapshot,
    user: &UserContext,
    room: Option<&str>,
) -> Result<RoomJoin<'a>, ErrorReply> {
    let (room, bbb) = bbb_room(world, user, room)?;
    let perms = room_permissions(world, room, &user.subject());
    if !perms.contains(Permission::RoomBbbJoin) {
        return Err(ErrorCode::Denied.into());
    }
    let full_name = bbb_full_name(user).ok_or_else(missing_profile)?;
    Ok(RoomJoin {
        room,
        bbb,
        moderator: perms.contains(Permission::RoomBbbModerate),
        full_name,
    })
}

/// `bbb.recordings`: the room checks (unknown / no BBB module → `room.unknown`), then
/// `room:bbb.recordings` or `protocol.denied`. No display name is needed to list recordings.
pub fn recordings_room<'a>(
    world: &'a WorldSnapshot,
    user: &UserContext,
    room: Option<&str>,
) -> Result<&'a Arc<RoomSnapshot>, ErrorReply> {
    let (room, _) = bbb_room(world, user, room)?;
    if !room_permissions(world, room, &user.subject()).contains(Permission::RoomBbbRecordings) {
        return Err(ErrorCode::Denied.into());
    }
    Ok(room)
}

/// `bbb.call_url` step 1: a call id must be a UUID; anything else is `protocol.denied`, the
/// same answer as an unknown call. Returns the canonical (lowercase, hyphenated) form.
pub fn parse_call_id(call: Option<&str>) -> Result<String, ErrorReply> {
    call.and_then(|c| uuid::Uuid::parse_str(c.trim()).ok())
        .map(|u| u.hyphenated().to_string())
        .ok_or_else(|| ErrorCode::Denied.into())
}

/// `bbb.call_url` step 2: the call exists in this world and the user (by token uid) is
/// invited and not silenced or banned (they keep view permissions only), else
/// `protocol.denied` (one answer for all, so ids cannot be probed); then a usable display name
/// or `bbb.join.missing_profile`. Returns the BBB display name.
pub fn call_join(
    world: &WorldSnapshot,
    user: &UserContext,
    call: Option<&CallInfo>,
) -> Result<String, ErrorReply> {
    let invited = call.is_some_and(|c| {
        c.world_id == world.id
            && user.world_id == world.id
            && user.moderation == Moderation::None
            && user.uid.as_ref().is_some_and(|uid| c.members.contains(uid))
    });
    if !invited {
        return Err(ErrorCode::Denied.into());
    }
    bbb_full_name(user).ok_or_else(missing_profile)
}
