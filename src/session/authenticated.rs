//! The `authenticated` event, serialised straight from the world snapshot. A connect storm
//! builds one per user, and the frame lists every room the user may view: a JSON value tree of
//! it would cost thousands of small allocations per user, whose holes then fragment the heap
//! that thousands of idle sessions live in. Here the only allocation is the output string.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::permissions::{Permission, PermissionSet, Subject};
use crate::user::{ProfileDocument, UserContext};
use crate::world::{room_permissions, world_permissions};
use crate::world::{ModuleFile, RoomSnapshot, WorldSnapshot};

/// `["authenticated", {"user.config": …, "world.config": …, …}]` as PROTOCOL.md gives it: the
/// user, the world and the rooms this user may view (module configs always `{}`), then the
/// chat, exhibition and announcement keys, empty: the frontend's store reads each of them on
/// every login and stops (no rooms, no video) when one is missing.
pub fn authenticated_frame(
    world: &WorldSnapshot,
    user: &UserContext,
    profile: &ProfileDocument,
) -> String {
    let payload = Payload {
        world,
        user,
        profile,
    };
    // Serialising borrowed strings and sequences into a String cannot fail.
    serde_json::to_string(&("authenticated", payload)).unwrap_or_default()
}

struct Payload<'a> {
    world: &'a WorldSnapshot,
    user: &'a UserContext,
    profile: &'a ProfileDocument,
}

impl Serialize for Payload<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let subject = self.user.subject();
        let mut m = s.serialize_map(Some(7))?;
        m.serialize_entry("user.config", &UserConfig(self.user, self.profile))?;
        m.serialize_entry(
            "world.config",
            &WorldConfig {
                world: self.world,
                subject: &subject,
            },
        )?;
        m.serialize_entry("chat.channels", &EmptyList)?;
        m.serialize_entry("chat.read_pointers", &EmptyObject)?;
        m.serialize_entry("chat.notification_counts", &EmptyObject)?;
        m.serialize_entry("exhibition", &Exhibition)?;
        m.serialize_entry("announcements", &EmptyList)?;
        m.end()
    }
}

/// The user, with the whole stored profile as it was stored.
struct UserConfig<'a>(&'a UserContext, &'a ProfileDocument);

impl Serialize for UserConfig<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("id", &self.0.id)?;
        m.serialize_entry("profile", self.1)?;
        m.serialize_entry("traits", &self.0.traits)?;
        m.end()
    }
}

struct WorldConfig<'a> {
    world: &'a WorldSnapshot,
    subject: &'a Subject<'a>,
}

impl Serialize for WorldConfig<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let world = self.world;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry(
            "permissions",
            &Names(world_permissions(world, self.subject)),
        )?;
        m.serialize_entry(
            "rooms",
            &Rooms {
                world,
                subject: self.subject,
            },
        )?;
        m.serialize_entry(
            "world",
            &WorldRef {
                id: &world.id,
                title: &world.title,
            },
        )?;
        m.end()
    }
}

#[derive(serde::Serialize)]
struct WorldRef<'a> {
    id: &'a str,
    title: &'a str,
}

struct Names(PermissionSet);

impl Serialize for Names {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.names())
    }
}

/// The rooms the subject may view, each with its permissions.
struct Rooms<'a> {
    world: &'a WorldSnapshot,
    subject: &'a Subject<'a>,
}

impl Serialize for Rooms<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.world.rooms.iter().filter_map(|room| {
            let perms = room_permissions(self.world, room, self.subject);
            perms
                .contains(Permission::RoomView)
                .then_some(RoomOut { room, perms })
        }))
    }
}

struct RoomOut<'a> {
    room: &'a RoomSnapshot,
    perms: PermissionSet,
}

impl Serialize for RoomOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("id", &self.room.id)?;
        m.serialize_entry("modules", &Modules(&self.room.modules))?;
        m.serialize_entry("name", &self.room.name)?;
        m.serialize_entry("permissions", &Names(self.perms))?;
        m.end()
    }
}

struct Modules<'a>(&'a [ModuleFile]);

impl Serialize for Modules<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|m| ModuleOut {
            module_type: &m.module_type,
            config: EmptyObject,
        }))
    }
}

#[derive(serde::Serialize)]
struct ModuleOut<'a> {
    config: EmptyObject,
    #[serde(rename = "type")]
    module_type: &'a str,
}

/// `{"exhibitors": [], "contact_requests": []}`: the gateway has no exhibition.
struct Exhibition;

impl Serialize for Exhibition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("exhibitors", &EmptyList)?;
        m.serialize_entry("contact_requests", &EmptyList)?;
        m.end()
    }
}

/// `[]`.
struct EmptyList;

impl Serialize for EmptyList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_seq(Some(0))?.end()
    }
}

/// `{}`: module configs stay server-side, and the chat maps are empty.
struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_map(Some(0))?.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::permissions::Moderation;
    use crate::user::Profile;

    /// The payload as a JSON value, written the obvious way: the reference the streamed
    /// frame must equal.
    fn reference_payload(world: &WorldSnapshot, user: &UserContext, profile: &Value) -> Value {
        let subject = user.subject();
        let rooms: Vec<Value> = world
            .rooms
            .iter()
            .filter_map(|room| {
                let perms = room_permissions(world, room, &subject);
                perms.contains(Permission::RoomView).then(|| {
                    let modules: Vec<Value> = room
                        .modules
                        .iter()
                        .map(|m| json!({"type": m.module_type, "config": {}}))
                        .collect();
                    json!({
                        "id": room.id,
                        "name": room.name,
                        "modules": modules,
                        "permissions": perms.names().collect::<Vec<_>>(),
                    })
                })
            })
            .collect();
        json!({
            "user.config": {
                "id": user.id,
                "profile": profile,
                "traits": user.traits,
            },
            "world.config": {
                "world": {"id": world.id, "title": world.title},
                "permissions": world_permissions(world, &subject).names().collect::<Vec<_>>(),
                "rooms": rooms,
            },
            "chat.channels": [],
            "chat.read_pointers": {},
            "chat.notification_counts": {},
            "exhibition": {"exhibitors": [], "contact_requests": []},
            "announcements": [],
        })
    }

    fn world() -> WorldSnapshot {
        let file = json!({
            "id": "w", "title": "W \"quoted\" ü",
            "jwt_secrets": [{"issuer": "i", "audience": "a", "secret": "0123456789abcdef0123456789abcdef"}],
            "roles": {"attendee": ["world:view"]},
            "trait_grants": {"attendee": ["member"], "moderator": ["mod"]},
            "rooms": [
                {"id": "open", "name": "Open", "modules": [
                    {"type": "call.bigbluebutton", "config": {"record": true}},
                    {"type": "chat.native", "config": {"volatile": true}}]},
                {"id": "hidden", "name": "Hidden", "trait_grants": {"viewer": ["vip"]},
                 "modules": []},
            ]
        });
        let file = crate::world::parse_world_file(&file.to_string()).expect("world");
        WorldSnapshot::from_file(&file, 1).expect("snapshot")
    }

    fn user(traits: &[&str], profile: Profile, moderation: Moderation) -> UserContext {
        UserContext {
            id: "u-1".into(),
            world_id: "w".into(),
            uid: Some("uid".into()),
            traits: traits.iter().map(|t| t.to_string()).collect(),
            profile,
            moderation,
        }
    }

    fn document(v: &Value) -> (ProfileDocument, Profile) {
        ProfileDocument::from_client(v).expect("a valid profile")
    }

    #[test]
    fn the_streamed_frame_equals_the_reference_payload() {
        let w = world();
        let profiles = [
            json!({}),
            json!({"display_name": "Ada \"A\" Lovelace", "avatar": {"url": "https://a/x.png"}}),
            json!({"display_name": "Only name"}),
            json!({"display_name": "Greeted", "greeted": true, "avatar": {"identicon": "f00"},
                "fields": {"org": "Ü \u{1F600}", "nested": [1, 2.5, null, {"a": false}]}}),
        ];
        let cases = [
            (&["member"][..], Moderation::None),
            (&["member", "vip", "mod"][..], Moderation::None),
            (&[][..], Moderation::None),
            (&["member", "mod"][..], Moderation::Banned),
            (&["member"][..], Moderation::Silenced),
        ];
        for sent in &profiles {
            let (doc, profile) = document(sent);
            for (traits, moderation) in cases {
                let u = user(traits, profile.clone(), moderation);
                let frame: Value =
                    serde_json::from_str(&authenticated_frame(&w, &u, &doc)).expect("valid JSON");
                assert_eq!(
                    frame,
                    json!(["authenticated", reference_payload(&w, &u, sent)]),
                    "{traits:?} {moderation:?} {sent}"
                );
            }
        }
    }

    #[test]
    fn rooms_the_user_may_not_view_are_left_out() {
        let w = world();
        let frame: Value = serde_json::from_str(&authenticated_frame(
            &w,
            &user(&["member"], Profile::default(), Moderation::None),
            &ProfileDocument::default(),
        ))
        .unwrap();
        let ids: Vec<&str> = frame[1]["world.config"]["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["id"].as_str())
            .collect();
        assert_eq!(ids, ["open"]);
        assert_eq!(
            frame[1]["world.config"]["rooms"][0]["modules"][0],
            json!({"type": "call.bigbluebutton", "config": {}})
        );
    }
}
