//! The `create` parameters and `join` URL contents of PROTOCOL.md ("Join URL contents",
//! "create parameters"), built from the world, the room's merged BBB config and the user.
//! Pure: the coordinator sends the create, and the session or the coordinator signs the join
//! with the server's secret.

use crate::bbb::{CreateMeeting, JoinParams, Role};
use crate::user::UserContext;
use crate::world::{BbbRoomConfig, RoomSnapshot, WorldSnapshot};

use super::target::JoinTarget;

/// The per-room (or per-call) part of a `create`; ids and passwords come from the meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTemplate {
    pub name: String,
    pub extra: Vec<(String, String)>,
    pub presentation_url: Option<String>,
}

impl CreateTemplate {
    /// The full `create` request for a meeting's ids and passwords; with an end-callback URL,
    /// BBB calls it when the instance this create starts ends.
    pub fn request(
        &self,
        meeting_id: &str,
        attendee_pw: &str,
        moderator_pw: &str,
        end_callback_url: Option<String>,
    ) -> CreateMeeting {
        let mut extra = self.extra.clone();
        if let Some(url) = end_callback_url {
            extra.push(kv("meta_endCallbackUrl", url));
        }
        CreateMeeting {
            meeting_id: meeting_id.to_string(),
            name: self.name.clone(),
            attendee_pw: attendee_pw.to_string(),
            moderator_pw: moderator_pw.to_string(),
            extra,
            presentation_url: self.presentation_url.clone(),
        }
    }
}

fn flag(b: bool) -> String {
    if b { "true" } else { "false" }.to_string()
}

fn kv(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

/// `create` parameters of a room's meeting.
pub fn room_create(
    world: &WorldSnapshot,
    room: &RoomSnapshot,
    bbb: &BbbRoomConfig,
) -> CreateTemplate {
    let name = match room.name.trim() {
        "" => "Meeting".to_string(),
        n => n.to_string(),
    };
    let mut extra = vec![
        kv("record", flag(bbb.record)),
        kv("meta_Source", "eventyay"),
        kv("meta_World", world.id.as_str()),
        kv("meta_Room", room.id.as_str()),
        kv("muteOnStart", flag(bbb.bbb_mute_on_start)),
        kv(
            "lockSettingsDisablePrivateChat",
            flag(world.bbb_disable_privatechat),
        ),
        kv("lockSettingsDisableCam", flag(bbb.bbb_disable_cam)),
        kv("lockSettingsDisablePublicChat", flag(bbb.bbb_disable_chat)),
        kv(
            "guestPolicy",
            if bbb.waiting_room {
                "ASK_MODERATOR"
            } else {
                "ALWAYS_ACCEPT"
            },
        ),
    ];
    if let Some(vb) = bbb
        .voice_bridge
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        extra.push(kv("voiceBridge", vb));
    }
    CreateTemplate {
        name,
        extra,
        presentation_url: bbb
            .presentation
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string),
    }
}

/// `create` parameters of a private call's meeting.
pub fn call_create(call_id: &str) -> CreateTemplate {
    CreateTemplate {
        name: "Call".into(),
        extra: vec![
            kv("record", "false"),
            kv("meta_Source", "eventyay"),
            kv("meta_Call", call_id),
            kv("lockSettingsDisablePrivateChat", "true"),
        ],
        presentation_url: None,
    }
}

/// The display name as BBB gets it: trimmed, without `:` (BBB splits on it). `None` when
/// nothing usable is left.
pub fn bbb_full_name(user: &UserContext) -> Option<String> {
    let name = user.profile.usable_name()?.trim();
    if !name.contains(':') {
        // The common case, on every join: one allocation.
        return (!name.is_empty()).then(|| name.to_string());
    }
    let name: String = name.replace(':', "");
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// `"true"` / `"false"` without an allocation (join URLs are built on every join).
fn on(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn common<'a>(
    world: &'a WorldSnapshot,
    user: &'a UserContext,
    full_name: &'a str,
    target: &'a JoinTarget,
    role: Role,
) -> JoinParams<'a> {
    let mut extra = Vec::with_capacity(8);
    extra.extend([
        ("userdata-bbb_show_public_chat_on_login", "false"),
        ("userdata-bbb_skip_check_audio", "true"),
    ]);
    if let Some(url) = world
        .bbb_style_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        extra.push(("userdata-bbb_custom_style_url", url));
    }
    JoinParams {
        meeting_id: &target.meeting_id,
        full_name,
        user_id: &user.id,
        role,
        password: Some(match role {
            Role::Moderator => &target.moderator_pw,
            Role::Viewer => &target.attendee_pw,
        }),
        create_time: target.create_time,
        avatar_url: user.profile.avatar_url.as_deref(),
        guest: false,
        extra,
    }
}

/// Join parameters for a room: MODERATOR iff `moderator`, else VIEWER (a guest when the room
/// has a waiting room).
pub fn room_join<'a>(
    world: &'a WorldSnapshot,
    bbb: &BbbRoomConfig,
    user: &'a UserContext,
    full_name: &'a str,
    moderator: bool,
    target: &'a JoinTarget,
) -> JoinParams<'a> {
    let role = if moderator {
        Role::Moderator
    } else {
        Role::Viewer
    };
    let mut p = common(world, user, full_name, target, role);
    p.guest = bbb.waiting_room && !moderator;
    p.extra.extend([
        ("userdata-bbb_listen_only_mode", on(!bbb.auto_microphone)),
        ("userdata-bbb_auto_share_webcam", on(bbb.auto_camera)),
        ("userdata-bbb_skip_video_preview", on(bbb.auto_camera)),
        (
            "userdata-bbb_hide_presentation_on_join",
            on(bbb.hide_presentation),
        ),
    ]);
    p
}

/// Join parameters for a private call: everyone is MODERATOR, camera and microphone on.
pub fn call_join<'a>(
    world: &'a WorldSnapshot,
    user: &'a UserContext,
    full_name: &'a str,
    target: &'a JoinTarget,
) -> JoinParams<'a> {
    let mut p = common(world, user, full_name, target, Role::Moderator);
    p.extra.extend([
        ("userdata-bbb_auto_share_webcam", "true"),
        ("userdata-bbb_listen_only_mode", "false"),
        ("userdata-bbb_auto_swap_layout", "true"),
    ]);
    p
}
