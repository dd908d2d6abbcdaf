//! The typed `call.bigbluebutton` module config of a room, merged with the world's
//! `bbb_defaults` (PROTOCOL.md, "create parameters"). Typed once at load time so the hot path
//! never looks at JSON.

use serde_json::{Map, Value};

/// A room's BBB settings after merging: room keys win, world `bbb_defaults` fill missing
/// (or `null`) keys, and anything still missing is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BbbRoomConfig {
    pub record: bool,
    pub waiting_room: bool,
    pub auto_microphone: bool,
    pub auto_camera: bool,
    pub hide_presentation: bool,
    pub bbb_mute_on_start: bool,
    pub bbb_disable_cam: bool,
    pub bbb_disable_chat: bool,
    /// The 5-digit dial-in number.
    pub voice_bridge: Option<String>,
    /// A server id or URL the room's meetings should go to when it is usable.
    pub prefer_server: Option<String>,
    /// An http(s) URL of a document to preload.
    pub presentation: Option<String>,
    /// How many participants the room's meeting will hold: placement reserves that much room
    /// for a new meeting. `None`: the young-meeting default.
    pub expected_participants: Option<u32>,
}

/// The largest `expected_participants` accepted.
pub const MAX_EXPECTED_PARTICIPANTS: u32 = 1_000_000;

/// A bad value in a BBB config: which key, and whether it came from the world's
/// `bbb_defaults` rather than the room's module config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BbbConfigError {
    pub key: &'static str,
    pub in_defaults: bool,
    pub message: String,
}

/// The boolean keys, all defaulting to false.
const BOOL_KEYS: [&str; 8] = [
    "record",
    "waiting_room",
    "auto_microphone",
    "auto_camera",
    "hide_presentation",
    "bbb_mute_on_start",
    "bbb_disable_cam",
    "bbb_disable_chat",
];

impl BbbRoomConfig {
    /// Merges a room's module config over the world defaults and types the result.
    pub fn merged(
        defaults: &Map<String, Value>,
        room: &Map<String, Value>,
    ) -> Result<BbbRoomConfig, BbbConfigError> {
        let pick = |key: &'static str| -> Option<(&Value, bool)> {
            match room.get(key) {
                Some(v) if !v.is_null() => Some((v, false)),
                _ => defaults
                    .get(key)
                    .filter(|v| !v.is_null())
                    .map(|v| (v, true)),
            }
        };
        let err = |key: &'static str, in_defaults: bool, message: &str| BbbConfigError {
            key,
            in_defaults,
            message: message.to_owned(),
        };
        let mut flags = [false; BOOL_KEYS.len()];
        for (flag, key) in flags.iter_mut().zip(BOOL_KEYS) {
            if let Some((v, d)) = pick(key) {
                *flag = v
                    .as_bool()
                    .ok_or_else(|| err(key, d, "must be true or false"))?;
            }
        }
        let voice_bridge = match pick("voice_bridge") {
            None => None,
            Some((v, d)) => {
                let s = match v {
                    Value::String(s) => s.trim().to_owned(),
                    Value::Number(n) if n.is_u64() => n.to_string(),
                    _ => return Err(err("voice_bridge", d, "must be a 5-digit string")),
                };
                if s.is_empty() {
                    None
                } else if s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit()) {
                    Some(s)
                } else {
                    return Err(err("voice_bridge", d, "must be exactly 5 digits"));
                }
            }
        };
        let prefer_server = match pick("prefer_server") {
            None => None,
            Some((Value::String(s), _)) if s.trim().is_empty() => None,
            Some((Value::String(s), _)) => Some(s.trim().to_owned()),
            Some((Value::Number(n), _)) if n.is_u64() => Some(n.to_string()),
            Some((_, d)) => {
                return Err(err(
                    "prefer_server",
                    d,
                    "must be a server id or a server URL",
                ))
            }
        };
        let presentation = match pick("presentation") {
            None => None,
            Some((Value::String(s), _)) if s.trim().is_empty() => None,
            Some((Value::String(s), d)) => {
                let s = s.trim();
                if !(s.starts_with("https://") || s.starts_with("http://")) {
                    return Err(err("presentation", d, "must be an http(s) URL"));
                }
                Some(s.to_owned())
            }
            Some((_, d)) => return Err(err("presentation", d, "must be an http(s) URL")),
        };
        let expected_participants = match pick("expected_participants") {
            None => None,
            Some((v, d)) => Some(
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n <= MAX_EXPECTED_PARTICIPANTS)
                    .ok_or_else(|| {
                        err(
                            "expected_participants",
                            d,
                            &format!(
                                "must be a whole number of participants from 0 to \
                                 {MAX_EXPECTED_PARTICIPANTS}"
                            ),
                        )
                    })?,
            ),
        };
        let [record, waiting_room, auto_microphone, auto_camera, hide_presentation, bbb_mute_on_start, bbb_disable_cam, bbb_disable_chat] =
            flags;
        Ok(BbbRoomConfig {
            record,
            waiting_room,
            auto_microphone,
            auto_camera,
            hide_presentation,
            bbb_mute_on_start,
            bbb_disable_cam,
            bbb_disable_chat,
            voice_bridge,
            prefer_server,
            presentation,
            expected_participants,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn everything_defaults_to_off() {
        let c = BbbRoomConfig::merged(&Map::new(), &Map::new()).unwrap();
        assert_eq!(c, BbbRoomConfig::default());
    }

    #[test]
    fn room_keys_win_and_defaults_fill_missing_or_null_keys() {
        let defaults = map(
            json!({"record": true, "waiting_room": true, "auto_camera": true,
            "voice_bridge": "12345", "prefer_server": 3}),
        );
        let room = map(
            json!({"record": false, "waiting_room": null, "presentation": " https://x/a.pdf ",
            "bbb_disable_chat": true, "unknown_key": [1]}),
        );
        let c = BbbRoomConfig::merged(&defaults, &room).unwrap();
        assert!(!c.record);
        assert!(c.waiting_room);
        assert!(c.auto_camera);
        assert!(c.bbb_disable_chat);
        assert!(!c.auto_microphone);
        assert_eq!(c.voice_bridge.as_deref(), Some("12345"));
        assert_eq!(c.prefer_server.as_deref(), Some("3"));
        assert_eq!(c.presentation.as_deref(), Some("https://x/a.pdf"));
    }

    #[test]
    fn every_key_is_typed() {
        let all = [
            "record",
            "waiting_room",
            "auto_microphone",
            "auto_camera",
            "hide_presentation",
            "bbb_mute_on_start",
            "bbb_disable_cam",
            "bbb_disable_chat",
        ];
        for key in all {
            let room = map(json!({ key: true }));
            let c = BbbRoomConfig::merged(&Map::new(), &room).unwrap();
            let on = [
                c.record,
                c.waiting_room,
                c.auto_microphone,
                c.auto_camera,
                c.hide_presentation,
                c.bbb_mute_on_start,
                c.bbb_disable_cam,
                c.bbb_disable_chat,
            ];
            assert_eq!(on.iter().filter(|b| **b).count(), 1, "{key}");
            let e = BbbRoomConfig::merged(&Map::new(), &map(json!({ key: "yes" }))).unwrap_err();
            assert_eq!(e.key, key);
            assert!(!e.in_defaults);
        }
    }

    #[test]
    fn expected_participants_is_a_whole_number_from_the_room_or_the_defaults() {
        let defaults = map(json!({"expected_participants": 20}));
        let c = BbbRoomConfig::merged(&defaults, &Map::new()).unwrap();
        assert_eq!(c.expected_participants, Some(20));
        let room = map(json!({"expected_participants": 800}));
        let c = BbbRoomConfig::merged(&defaults, &room).unwrap();
        assert_eq!(c.expected_participants, Some(800));
        let c =
            BbbRoomConfig::merged(&Map::new(), &map(json!({"expected_participants": 0}))).unwrap();
        assert_eq!(c.expected_participants, Some(0));
        for bad in [
            json!(-1),
            json!(2.5),
            json!("800"),
            json!(true),
            json!(2_000_000),
        ] {
            let e = BbbRoomConfig::merged(
                &Map::new(),
                &map(json!({ "expected_participants": bad.clone() })),
            )
            .unwrap_err();
            assert_eq!(
                (e.key, e.in_defaults),
                ("expected_participants", false),
                "{bad}"
            );
            assert!(e.message.contains("whole number"), "{}", e.message);
            let e =
                BbbRoomConfig::merged(&map(json!({ "expected_participants": bad })), &Map::new())
                    .unwrap_err();
            assert_eq!((e.key, e.in_defaults), ("expected_participants", true));
        }
    }

    #[test]
    fn bad_values_name_their_key_and_source() {
        let e =
            BbbRoomConfig::merged(&map(json!({"voice_bridge": "1234"})), &Map::new()).unwrap_err();
        assert_eq!((e.key, e.in_defaults), ("voice_bridge", true));
        for bad in [json!("12a45"), json!(true), json!("123456")] {
            let e = BbbRoomConfig::merged(&Map::new(), &map(json!({ "voice_bridge": bad })))
                .unwrap_err();
            assert_eq!(e.key, "voice_bridge");
        }
        let ok = BbbRoomConfig::merged(&Map::new(), &map(json!({"voice_bridge": 54321}))).unwrap();
        assert_eq!(ok.voice_bridge.as_deref(), Some("54321"));
        let e = BbbRoomConfig::merged(&Map::new(), &map(json!({"presentation": "file:///etc"})))
            .unwrap_err();
        assert_eq!(e.key, "presentation");
        let e =
            BbbRoomConfig::merged(&Map::new(), &map(json!({"prefer_server": [1]}))).unwrap_err();
        assert_eq!(e.key, "prefer_server");
        let blank = BbbRoomConfig::merged(
            &Map::new(),
            &map(json!({"prefer_server": " ", "presentation": "", "voice_bridge": ""})),
        )
        .unwrap();
        assert_eq!(blank, BbbRoomConfig::default());
    }
}
