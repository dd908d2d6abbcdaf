//! Parsing and validation of the world file.

use super::*;
use serde_json::{json, Value};

/// The example of PROTOCOL.md.
pub(crate) fn sample() -> Value {
    json!({
      "id": "sample", "title": "Sample Conference", "timezone": "Europe/Berlin",
      "jwt_secrets": [{"issuer": "any", "audience": "venueless", "secret": "top-secret-value-0123456789abcdef"}],
      "roles": {"helper": ["world:view", "room:view"]},
      "trait_grants": {"viewer": [], "participant": [], "moderator": ["orga"]},
      "bbb_defaults": {"record": false},
      "bbb_disable_privatechat": true,
      "bbb_style_url": null,
      "rooms": [
        {"id": "room_1", "name": "Gruppenraum 1",
         "trait_grants": {"viewer": [], "participant": []},
         "modules": [{"type": "call.bigbluebutton", "config": {"record": true, "waiting_room": false}}]}
      ],
      "grants": [{"uid": "alice", "role": "moderator", "room": "room_1"}]
    })
}

fn parse(v: &Value) -> Result<WorldFile, WorldFileError> {
    parse_world_file(&v.to_string())
}

/// The error path of `v` after `edit`.
fn error_path(edit: impl FnOnce(&mut Value)) -> String {
    let mut v = sample();
    edit(&mut v);
    let e = parse(&v).expect_err("must be rejected");
    assert!(
        !e.to_string().contains("top-secret-value-0123456789abcdef"),
        "{e}"
    );
    e.path
}

#[test]
fn the_protocol_example_parses() {
    let f = parse(&sample()).unwrap();
    assert_eq!(f.id, "sample");
    assert_eq!(f.rooms[0].modules[0].module_type, BBB_MODULE);
    assert_eq!(f.grants[0].room.as_deref(), Some("room_1"));
    assert!(f.bbb_disable_privatechat);
    assert_eq!(f.bbb_style_url, None);
}

#[test]
fn optional_keys_have_defaults() {
    let f = parse(&json!({"id": "w", "title": "T",
        "jwt_secrets": [{"issuer": "i", "audience": "a", "secret": "0123456789abcdef0123456789abcdef"}],
        "rooms": [{"id": "r", "name": "R"}], "ignored_key": 1}))
    .unwrap();
    assert_eq!(f.timezone, "UTC");
    assert!(f.bbb_disable_privatechat, "defaults to true");
    assert!(f.roles.is_none() && f.trait_grants.is_empty() && f.bbb_defaults.is_empty());
    assert!(f.grants.is_empty());
    assert!(f.rooms[0].trait_grants.is_none() && f.rooms[0].modules.is_empty());
}

#[test]
fn serialising_round_trips() {
    let f = parse(&sample()).unwrap();
    let text = serde_json::to_string_pretty(&f).unwrap();
    assert_eq!(parse_world_file(&text).unwrap(), f);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["rooms"][0]["modules"][0]["type"], "call.bigbluebutton");
    assert!(v["grants"][0].get("room").is_some());
}

#[test]
fn type_errors_name_the_json_path() {
    assert_eq!(
        error_path(|v| v["rooms"][0]["modules"][0]["type"] = json!(5)),
        "rooms[0].modules[0].type"
    );
    assert_eq!(error_path(|v| v["title"] = json!([])), "title");
    assert_eq!(
        error_path(|v| v["trait_grants"]["viewer"] = json!([1])),
        "trait_grants.viewer[0]"
    );
    assert_eq!(
        error_path(|v| v["bbb_disable_privatechat"] = json!("no")),
        "bbb_disable_privatechat"
    );
    assert_eq!(
        error_path(|v| v["grants"][0]["uid"] = json!(null)),
        "grants[0].uid"
    );
    assert_eq!(
        error_path(|v| {
            v.as_object_mut().unwrap().remove("jwt_secrets");
        }),
        "."
    );
    let e = parse_world_file("{\"id\": ").unwrap_err();
    assert!(e.message.contains("line 1"), "{e}");
}

#[test]
fn secrets_never_appear_in_errors() {
    let mut v = sample();
    v["jwt_secrets"] = json!("top-secret-value-0123456789abcdef");
    let e = parse(&v).unwrap_err();
    assert_eq!(e.path, "jwt_secrets");
    assert!(!e.message.contains("top-secret-value-0123456789abcdef"));
    let mut v = sample();
    v["jwt_secrets"][0]["secret"] = json!(["top-secret-value-0123456789abcdef"]);
    assert!(!parse(&v)
        .unwrap_err()
        .to_string()
        .contains("top-secret-value-0123456789abcdef"));
}

#[test]
fn ids_are_checked() {
    assert_eq!(error_path(|v| v["id"] = json!("")), "id");
    assert_eq!(error_path(|v| v["id"] = json!("a/b")), "id");
    assert_eq!(error_path(|v| v["id"] = json!("x".repeat(129))), "id");
    assert!(parse(&{
        let mut v = sample();
        v["id"] = json!("x".repeat(128));
        v
    })
    .is_ok());
    assert_eq!(
        error_path(|v| v["rooms"][0]["id"] = json!("")),
        "rooms[0].id"
    );
    assert_eq!(
        error_path(|v| v["rooms"][0]["id"] = json!("r/1")),
        "rooms[0].id"
    );
    assert_eq!(
        error_path(|v| {
            let room = v["rooms"][0].clone();
            v["rooms"].as_array_mut().unwrap().push(room);
        }),
        "rooms[1].id"
    );
}

#[test]
fn semantic_errors_name_the_json_path() {
    assert_eq!(
        error_path(|v| v["timezone"] = json!("Europe/Atlantis")),
        "timezone"
    );
    assert_eq!(error_path(|v| v["jwt_secrets"] = json!([])), "jwt_secrets");
    assert_eq!(
        error_path(|v| v["jwt_secrets"][0]["secret"] = json!("")),
        "jwt_secrets[0].secret"
    );
    // HS256 needs 256-bit keys: every secret of at least 32 bytes, the path names which.
    assert_eq!(
        error_path(|v| v["jwt_secrets"][0]["secret"] = json!("0123456789abcdef0123456789abcde")),
        "jwt_secrets[0].secret"
    );
    assert_eq!(
        error_path(|v| v["jwt_secrets"]
            .as_array_mut()
            .unwrap()
            .push(json!({"issuer": "x", "audience": "y", "secret": "too-short-secret"}))),
        "jwt_secrets[1].secret"
    );
    assert_eq!(
        error_path(|v| v["roles"]["helper"][1] = json!("room:fly")),
        "roles.helper[1]"
    );
    assert_eq!(
        error_path(|v| v["trait_grants"]["boss"] = json!([])),
        "trait_grants.boss"
    );
    assert_eq!(
        error_path(|v| v["rooms"][0]["trait_grants"]["boss"] = json!([])),
        "rooms[0].trait_grants.boss"
    );
    assert_eq!(
        error_path(|v| v["grants"][0]["role"] = json!("boss")),
        "grants[0].role"
    );
    assert_eq!(
        error_path(|v| v["grants"][0]["room"] = json!("room_9")),
        "grants[0].room"
    );
    assert_eq!(
        error_path(|v| v["grants"][0]["uid"] = json!("")),
        "grants[0].uid"
    );
    assert_eq!(
        error_path(|v| v["bbb_defaults"]["record"] = json!(1)),
        "bbb_defaults.record"
    );
    assert_eq!(
        error_path(|v| v["rooms"][0]["modules"][0]["config"]["voice_bridge"] = json!("12")),
        "rooms[0].modules[0].config.voice_bridge"
    );
    assert_eq!(
        error_path(|v| v["bbb_defaults"]["expected_participants"] = json!(-5)),
        "bbb_defaults.expected_participants"
    );
    assert_eq!(
        error_path(
            |v| v["rooms"][0]["modules"][0]["config"]["expected_participants"] = json!("many")
        ),
        "rooms[0].modules[0].config.expected_participants"
    );
    assert_eq!(
        error_path(|v| {
            let m = v["rooms"][0]["modules"][0].clone();
            v["rooms"][0]["modules"].as_array_mut().unwrap().push(m);
        }),
        "rooms[0].modules[1].type"
    );
    assert_eq!(
        error_path(|v| v["bbb_style_url"] = json!("javascript:x")),
        "bbb_style_url"
    );
}

#[test]
fn custom_roles_may_be_granted() {
    let mut v = sample();
    v["trait_grants"]["helper"] = json!(["crew"]);
    v["grants"][0]["role"] = json!("helper");
    assert!(parse(&v).is_ok());
}

#[test]
fn secrets_are_redacted_in_debug() {
    let f = parse(&sample()).unwrap();
    let dbg = format!("{f:?}");
    assert!(!dbg.contains("top-secret-value-0123456789abcdef"));
    assert!(dbg.contains("<redacted>"));
}
