use super::*;
use crate::world::{parse_world_file, WorldSnapshot};
use crate::world::{room_permissions, world_permissions};
use serde_json::{json, Value};
use Permission::*;

fn world(v: Value) -> WorldSnapshot {
    let mut base = json!({
        "id": "w", "title": "W",
        "jwt_secrets": [{"issuer": "i", "audience": "a", "secret": "0123456789abcdef0123456789abcdef"}],
    });
    for (k, val) in v.as_object().unwrap() {
        base[k] = val.clone();
    }
    WorldSnapshot::from_file(&parse_world_file(&base.to_string()).unwrap(), 1).unwrap()
}

fn traits(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| s.to_string()).collect()
}

fn subject<'a>(uid: Option<&'a str>, traits: &'a [String]) -> Subject<'a> {
    Subject {
        uid,
        traits,
        moderation: Moderation::None,
    }
}

fn set(p: &[Permission]) -> PermissionSet {
    PermissionSet::of(p)
}

const VIEWER: &[Permission] = &[WorldView, RoomView];
const PARTICIPANT: &[Permission] = &[WorldView, RoomView, RoomBbbJoin];
const SPEAKER: &[Permission] = &[WorldView, RoomView, RoomBbbJoin, RoomBbbModerate];
const MODERATOR: &[Permission] = &[
    WorldView,
    RoomView,
    RoomBbbJoin,
    RoomBbbModerate,
    RoomBbbRecordings,
];

#[test]
fn permission_names_round_trip() {
    for p in Permission::ALL {
        assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
        assert_eq!(p.to_string(), p.as_str());
    }
    assert_eq!(
        "room:bbb.joins".parse::<Permission>(),
        Err(UnknownPermission("room:bbb.joins".into()))
    );
    assert!("".parse::<Permission>().is_err());
}

#[test]
fn permission_set_operations() {
    let mut s = PermissionSet::EMPTY;
    assert!(s.is_empty());
    s.insert(RoomBbbRecordings);
    s.insert(WorldView);
    s.insert(WorldView);
    assert!(s.contains(WorldView) && s.contains(RoomBbbRecordings));
    assert!(!s.contains(RoomView));
    assert_eq!(
        s.names().collect::<Vec<_>>(),
        ["world:view", "room:bbb.recordings"],
        "stable order, not insertion order"
    );
    assert_eq!(format!("{s:?}"), r#"{"world:view", "room:bbb.recordings"}"#);
    let t = set(&[RoomView, WorldView]);
    assert_eq!(s.union(t), set(&[WorldView, RoomView, RoomBbbRecordings]));
    assert_eq!(s.intersection(t), set(&[WorldView]));
    assert_eq!(set(Permission::ALL.as_slice()).iter().count(), 5);
}

#[test]
fn requirements_parse_from_strings_and_lists() {
    let g: TraitGrants =
        serde_json::from_value(json!({"a": [], "b": ["x", ["y", "z"]], "c": [[]]})).unwrap();
    assert_eq!(g["a"], vec![]);
    assert_eq!(
        g["b"],
        vec![
            Requirement::Trait("x".into()),
            Requirement::AnyOf(vec!["y".into(), "z".into()])
        ]
    );
    assert_eq!(g["c"], vec![Requirement::AnyOf(vec![])]);
    assert!(serde_json::from_value::<TraitGrants>(json!({"a": [1]})).is_err());
    assert!(serde_json::from_value::<TraitGrants>(json!({"a": "x"})).is_err());
    assert_eq!(
        serde_json::to_value(&g).unwrap()["b"],
        json!(["x", ["y", "z"]])
    );
}

#[test]
fn requirement_matching() {
    let t = traits(&["orga", "day1"]);
    assert!(Requirement::Trait("orga".into()).matches(&t));
    assert!(!Requirement::Trait("org".into()).matches(&t));
    assert!(Requirement::AnyOf(vec!["x".into(), "day1".into()]).matches(&t));
    assert!(!Requirement::AnyOf(vec!["x".into(), "y".into()]).matches(&t));
    assert!(
        !Requirement::AnyOf(vec![]).matches(&t),
        "empty any-of matches nothing"
    );
}

#[test]
fn default_roles_are_the_venueless_ones() {
    let r = RoleDefs::default();
    assert_eq!(r.get("viewer"), Some(set(VIEWER)));
    assert_eq!(r.get("participant"), Some(set(PARTICIPANT)));
    assert_eq!(r.get("speaker"), Some(set(SPEAKER)));
    assert_eq!(r.get("moderator"), Some(set(MODERATOR)));
    assert_eq!(r.get("admin"), Some(set(MODERATOR)));
    assert_eq!(r.get("nobody"), None);
    assert_eq!(
        r.role_names().collect::<Vec<_>>(),
        ["admin", "moderator", "participant", "speaker", "viewer"]
    );
}

#[test]
fn world_roles_override_and_extend_the_defaults() {
    let overrides = std::collections::BTreeMap::from([
        ("viewer".to_string(), vec!["room:view".to_string()]),
        (
            "recorder".to_string(),
            vec!["room:bbb.recordings".to_string()],
        ),
    ]);
    let r = RoleDefs::with_overrides(Some(&overrides)).unwrap();
    assert_eq!(r.get("viewer"), Some(set(&[RoomView])));
    assert_eq!(r.get("recorder"), Some(set(&[RoomBbbRecordings])));
    assert_eq!(
        r.get("moderator"),
        Some(set(MODERATOR)),
        "others keep their defaults"
    );
    let bad = std::collections::BTreeMap::from([("x".to_string(), vec!["world:fly".to_string()])]);
    let (role, e) = RoleDefs::with_overrides(Some(&bad)).unwrap_err();
    assert_eq!((role.as_str(), e.0.as_str()), ("x", "world:fly"));
    assert_eq!(RoleDefs::with_overrides(None).unwrap(), RoleDefs::default());
}

#[test]
fn empty_requirement_list_matches_everybody_including_anonymous_users() {
    let w =
        world(json!({"trait_grants": {"participant": []}, "rooms": [{"id": "r", "name": "R"}]}));
    let none: Vec<String> = vec![];
    let some = traits(&["x"]);
    for s in [
        subject(None, &none),
        subject(Some("u"), &none),
        subject(Some("u"), &some),
    ] {
        assert_eq!(world_permissions(&w, &s), set(PARTICIPANT));
        assert_eq!(room_permissions(&w, &w.rooms[0], &s), set(PARTICIPANT));
    }
}

#[test]
fn every_requirement_must_match_and_lists_mean_any_of() {
    let w = world(json!({"trait_grants": {
        "viewer": [],
        "moderator": ["orga", ["day1", "day2"]],
    }}));
    let check = |t: &[&str], expected: &[Permission]| {
        let t = traits(t);
        assert_eq!(
            world_permissions(&w, &subject(Some("u"), &t)),
            set(expected),
            "{t:?}"
        );
    };
    check(&[], VIEWER);
    check(&["orga"], VIEWER);
    check(&["day1"], VIEWER);
    check(&["orga", "day2"], MODERATOR);
    check(&["day1", "orga", "other"], MODERATOR);
}

#[test]
fn no_grants_means_no_permissions() {
    let w = world(json!({"rooms": [{"id": "r", "name": "R"}]}));
    let t = traits(&["orga"]);
    assert_eq!(
        world_permissions(&w, &subject(Some("u"), &t)),
        PermissionSet::EMPTY
    );
    // The room's default {"viewer": []} still lets everybody view the room.
    assert_eq!(
        room_permissions(&w, &w.rooms[0], &subject(Some("u"), &t)),
        set(VIEWER)
    );
}

#[test]
fn rooms_without_trait_grants_default_to_viewer_and_explicit_empty_means_nothing() {
    let w = world(json!({"rooms": [
        {"id": "default", "name": "D"},
        {"id": "closed", "name": "C", "trait_grants": {}},
        {"id": "speakers", "name": "S", "trait_grants": {"speaker": ["speaker"]}},
        {"id": "anyof", "name": "A", "trait_grants": {"participant": [["a", "b"]]}},
    ]}));
    let none: Vec<String> = vec![];
    let speaker = traits(&["speaker"]);
    let b = traits(&["b"]);
    let room = |id: &str| w.room(id).unwrap().clone();
    assert_eq!(
        room_permissions(&w, &room("default"), &subject(None, &none)),
        set(VIEWER)
    );
    assert_eq!(
        room_permissions(&w, &room("closed"), &subject(None, &none)),
        PermissionSet::EMPTY
    );
    assert_eq!(
        room_permissions(&w, &room("speakers"), &subject(None, &none)),
        PermissionSet::EMPTY
    );
    assert_eq!(
        room_permissions(&w, &room("speakers"), &subject(None, &speaker)),
        set(SPEAKER)
    );
    assert_eq!(
        room_permissions(&w, &room("anyof"), &subject(None, &b)),
        set(PARTICIPANT)
    );
    assert_eq!(
        room_permissions(&w, &room("anyof"), &subject(None, &none)),
        PermissionSet::EMPTY
    );
}

#[test]
fn world_grants_apply_in_every_room_and_room_grants_add_to_them() {
    let w = world(json!({
        "trait_grants": {"viewer": [], "moderator": ["orga"]},
        "rooms": [
            {"id": "r1", "name": "1", "trait_grants": {"participant": ["ticket"]}},
            {"id": "r2", "name": "2", "trait_grants": {}},
        ]
    }));
    let orga = traits(&["orga"]);
    let ticket = traits(&["ticket"]);
    for r in &w.rooms {
        assert_eq!(
            room_permissions(&w, r, &subject(None, &orga)),
            set(MODERATOR)
        );
    }
    assert_eq!(
        room_permissions(&w, &w.rooms[0], &subject(None, &ticket)),
        set(PARTICIPANT)
    );
    assert_eq!(
        room_permissions(&w, &w.rooms[1], &subject(None, &ticket)),
        set(VIEWER)
    );
    // Room grants do not leak into world permissions.
    assert_eq!(world_permissions(&w, &subject(None, &ticket)), set(VIEWER));
}

#[test]
fn explicit_grants_world_wide_and_per_room() {
    let w = world(json!({
        "rooms": [{"id": "r1", "name": "1", "trait_grants": {}}, {"id": "r2", "name": "2", "trait_grants": {}}],
        "grants": [
            {"uid": "alice", "role": "moderator", "room": "r1"},
            {"uid": "bob", "role": "participant"},
            {"uid": "bob", "role": "speaker", "room": "r2"},
        ]
    }));
    let none: Vec<String> = vec![];
    let alice = subject(Some("alice"), &none);
    let bob = subject(Some("bob"), &none);
    assert_eq!(world_permissions(&w, &alice), PermissionSet::EMPTY);
    assert_eq!(room_permissions(&w, &w.rooms[0], &alice), set(MODERATOR));
    assert_eq!(
        room_permissions(&w, &w.rooms[1], &alice),
        PermissionSet::EMPTY
    );
    assert_eq!(world_permissions(&w, &bob), set(PARTICIPANT));
    assert_eq!(room_permissions(&w, &w.rooms[0], &bob), set(PARTICIPANT));
    assert_eq!(room_permissions(&w, &w.rooms[1], &bob), set(SPEAKER));
    // Grants are keyed by token uid: anonymous users and other uids get nothing from them.
    assert_eq!(
        room_permissions(&w, &w.rooms[0], &subject(None, &none)),
        PermissionSet::EMPTY
    );
    assert_eq!(
        room_permissions(&w, &w.rooms[0], &subject(Some("ALICE"), &none)),
        PermissionSet::EMPTY
    );
}

#[test]
fn silenced_users_keep_only_viewing() {
    let w = world(json!({
        "trait_grants": {"moderator": []},
        "rooms": [{"id": "r", "name": "R"}],
        "grants": [{"uid": "u", "role": "admin", "room": "r"}]
    }));
    let none: Vec<String> = vec![];
    let s = Subject {
        uid: Some("u"),
        traits: &none,
        moderation: Moderation::Silenced,
    };
    assert_eq!(world_permissions(&w, &s), set(VIEWER));
    assert_eq!(room_permissions(&w, &w.rooms[0], &s), set(VIEWER));
    // Silencing never adds anything.
    let w2 = world(json!({"rooms": [{"id": "r", "name": "R", "trait_grants": {}}]}));
    assert_eq!(world_permissions(&w2, &s), PermissionSet::EMPTY);
    assert_eq!(
        room_permissions(&w2, &w2.rooms[0], &s),
        PermissionSet::EMPTY
    );
    let custom = world(json!({"roles": {"viewer": ["room:view", "room:bbb.join"]},
        "trait_grants": {"viewer": []}, "rooms": [{"id": "r", "name": "R"}]}));
    assert_eq!(
        room_permissions(&custom, &custom.rooms[0], &s),
        set(&[RoomView])
    );
}

#[test]
fn banned_users_have_nothing() {
    let w = world(json!({
        "trait_grants": {"admin": []},
        "rooms": [{"id": "r", "name": "R"}],
        "grants": [{"uid": "u", "role": "admin"}]
    }));
    let t = traits(&["orga"]);
    let s = Subject {
        uid: Some("u"),
        traits: &t,
        moderation: Moderation::Banned,
    };
    assert_eq!(world_permissions(&w, &s), PermissionSet::EMPTY);
    assert_eq!(room_permissions(&w, &w.rooms[0], &s), PermissionSet::EMPTY);
}

#[test]
fn custom_roles_from_the_world_file() {
    let w = world(json!({
        "roles": {"attendee": ["world:view", "room:view", "room:bbb.join"],
                  "moderator": ["world:view", "room:view", "room:bbb.join"]},
        "trait_grants": {"attendee": [], "moderator": ["orga"]},
        "rooms": [{"id": "r", "name": "R", "trait_grants": {"attendee": []}}]
    }));
    let orga = traits(&["orga"]);
    assert_eq!(
        world_permissions(&w, &subject(None, &orga)),
        set(PARTICIPANT)
    );
    assert_eq!(
        room_permissions(&w, &w.rooms[0], &subject(None, &orga)),
        set(PARTICIPANT)
    );
}

#[test]
fn unknown_role_names_are_ignored() {
    // A parsed file cannot name unknown roles, but a stored room kept from an earlier import
    // may; such grants give nothing.
    let mut w = world(json!({"trait_grants": {"viewer": []}, "rooms": [{"id": "r", "name": "R"}]}));
    w.trait_grants.insert("ghost".into(), vec![]);
    w.grants_by_uid.insert(
        "u".into(),
        vec![(None, "phantom".into()), (Some("r".into()), "nope".into())],
    );
    let mut room = (*w.rooms[0]).clone();
    room.trait_grants = Some(TraitGrants::from([("spectre".to_string(), vec![])]));
    let none: Vec<String> = vec![];
    assert_eq!(
        world_permissions(&w, &subject(Some("u"), &none)),
        set(VIEWER)
    );
    assert_eq!(
        room_permissions(&w, &room, &subject(Some("u"), &none)),
        set(VIEWER)
    );
}

#[test]
fn moderation_strings_round_trip() {
    for m in [Moderation::None, Moderation::Silenced, Moderation::Banned] {
        assert_eq!(Moderation::from_stored(m.as_str()), m);
    }
    assert_eq!(Moderation::from_stored("weird"), Moderation::None);
}
