use super::*;
use crate::db::testing::{for_each_backend, TestDb};
use crate::world::parse_world_file;
use serde_json::{json, Value};

fn file(v: &Value) -> WorldFile {
    parse_world_file(&v.to_string()).unwrap()
}

fn sample() -> Value {
    let mut v = crate::world::file_tests::sample();
    v["grants"] = json!([
        {"uid": "alice", "role": "moderator", "room": "room_1"},
        {"uid": "bob", "role": "participant"}
    ]);
    v["rooms"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "stage", "name": "Stage", "modules": [{"type": "livestream.native", "config": {"hls_url": "https://x"}}]}));
    v
}

fn room_ids(f: &WorldFile) -> Vec<&str> {
    f.rooms.iter().map(|r| r.id.as_str()).collect()
}

#[test]
fn import_then_export_round_trips() {
    for_each_backend(|conn| {
        let f = file(&sample());
        let s = import_world(conn, &f).unwrap();
        assert_eq!(
            s,
            ImportSummary {
                world_id: "sample".into(),
                version: 1,
                world_created: true,
                rooms_added: 2,
                rooms_updated: 0,
                rooms_kept: 0,
                grants: 2,
            }
        );
        assert!(s.to_string().contains("created (version 1)"));
        let out = export_world(conn, "sample").unwrap().unwrap();
        assert_eq!(out, f);
        // The exported JSON is a valid world file again.
        let text = serde_json::to_string(&out).unwrap();
        assert_eq!(parse_world_file(&text).unwrap(), f);
        assert!(export_world(conn, "nope").unwrap().is_none());
        assert!(load_snapshot(conn, "nope").unwrap().is_none());
    })
    .unwrap();
}

#[test]
fn import_is_idempotent_and_bumps_the_version() {
    for_each_backend(|conn| {
        let f = file(&sample());
        import_world(conn, &f).unwrap();
        let s = import_world(conn, &f).unwrap();
        assert_eq!((s.version, s.world_created), (2, false));
        assert_eq!((s.rooms_added, s.rooms_updated, s.rooms_kept), (0, 2, 0));
        assert_eq!(export_world(conn, "sample").unwrap().unwrap(), f);
        import_world(conn, &f).unwrap();
        assert_eq!(
            world_versions(conn).unwrap(),
            vec![("sample".to_string(), 3)]
        );
    })
    .unwrap();
}

#[test]
fn reimport_updates_adds_keeps_rooms_and_replaces_grants() {
    for_each_backend(|conn| {
        import_world(conn, &file(&sample())).unwrap();
        let mut v = sample();
        v["title"] = json!("Renamed");
        v["rooms"] = json!([
            {"id": "new", "name": "New room"},
            {"id": "room_1", "name": "Gruppenraum Eins",
             "modules": [{"type": "call.bigbluebutton", "config": {"waiting_room": true}}]}
        ]);
        v["grants"] = json!([{"uid": "carol", "role": "speaker", "room": "new"}]);
        v["roles"] = Value::Null;
        let s = import_world(conn, &file(&v)).unwrap();
        assert_eq!(
            (s.rooms_added, s.rooms_updated, s.rooms_kept, s.grants),
            (1, 1, 1, 1)
        );
        let out = export_world(conn, "sample").unwrap().unwrap();
        assert_eq!(out.title, "Renamed");
        assert_eq!(out.roles, None);
        assert_eq!(
            room_ids(&out),
            ["new", "room_1", "stage"],
            "kept rooms go last"
        );
        assert_eq!(out.rooms[1].name, "Gruppenraum Eins");
        assert_eq!(out.rooms[1].trait_grants, None);
        assert_eq!(out.rooms[1].modules[0].config["waiting_room"], json!(true));
        assert_eq!(out.grants.len(), 1);
        assert_eq!(out.grants[0].uid, "carol");

        let snap = load_snapshot(conn, "sample").unwrap().unwrap();
        assert_eq!(snap.version, 2);
        assert!(
            snap.room("room_1")
                .unwrap()
                .bbb
                .as_ref()
                .unwrap()
                .waiting_room
        );
        assert!(snap.room("stage").unwrap().bbb.is_none());
        assert!(!snap.grants_by_uid.contains_key("alice"));
    })
    .unwrap();
}

#[test]
fn duplicate_grants_are_stored_once_and_world_wide_grants_survive() {
    for_each_backend(|conn| {
        let mut v = sample();
        v["grants"] = json!([
            {"uid": "bob", "role": "participant"},
            {"uid": "bob", "role": "participant"},
            {"uid": "bob", "role": "participant", "room": "room_1"}
        ]);
        let s = import_world(conn, &file(&v)).unwrap();
        assert_eq!(s.grants, 2);
        let out = export_world(conn, "sample").unwrap().unwrap();
        assert_eq!(out.grants[0].room, None);
        assert_eq!(out.grants[1].room.as_deref(), Some("room_1"));
    })
    .unwrap();
}

#[test]
fn worlds_are_independent() {
    for_each_backend(|conn| {
        import_world(conn, &file(&sample())).unwrap();
        let mut v = sample();
        v["id"] = json!("other");
        v["rooms"] = json!([{"id": "room_1", "name": "Other room one"}]);
        v["grants"] = json!([]);
        import_world(conn, &file(&v)).unwrap();
        let a = export_world(conn, "sample").unwrap().unwrap();
        assert_eq!(a.rooms[0].name, "Gruppenraum 1");
        assert_eq!(a.grants.len(), 2);
        let b = export_world(conn, "other").unwrap().unwrap();
        assert_eq!(room_ids(&b), ["room_1"]);
        assert_eq!(
            world_versions(conn).unwrap(),
            vec![("other".to_string(), 1), ("sample".to_string(), 1)]
        );
    })
    .unwrap();
}

#[test]
fn snapshots_load_with_merged_bbb_config() {
    for_each_backend(|conn| {
        let mut v = sample();
        v["bbb_defaults"] = json!({"record": false, "auto_camera": true});
        import_world(conn, &file(&v)).unwrap();
        let snap = load_snapshot(conn, "sample").unwrap().unwrap();
        assert_eq!(snap.timezone, chrono_tz::Europe::Berlin);
        let bbb = snap.room("room_1").unwrap().bbb.clone().unwrap();
        assert!(bbb.record && bbb.auto_camera && !bbb.waiting_room);
        assert_eq!(
            snap.jwt_secrets[0].secret,
            "top-secret-value-0123456789abcdef"
        );
        assert!(snap.roles.contains_role("helper"));
        assert_eq!(
            snap.grants_by_uid["bob"],
            vec![(None, "participant".to_string())]
        );
    })
    .unwrap();
}

#[test]
fn invalid_files_change_nothing() {
    for_each_backend(|conn| {
        let good = file(&sample());
        import_world(conn, &good).unwrap();
        let mut bad = good.clone();
        bad.title = "Changed".into();
        bad.grants[0].room = Some("missing".into());
        assert!(matches!(import_world(conn, &bad), Err(DbError::Invalid(_))));
        assert_eq!(export_world(conn, "sample").unwrap().unwrap(), good);
        assert_eq!(world_versions(conn).unwrap()[0].1, 1);
    })
    .unwrap();
}

#[test]
fn concurrent_imports_all_apply() {
    for t in TestDb::all().unwrap() {
        let f = file(&sample());
        std::thread::scope(|s| {
            for _ in 0..4 {
                let db = t.db.clone();
                let f = &f;
                s.spawn(move || import_world(&mut db.get().unwrap(), f).unwrap());
            }
        });
        let mut conn = t.db.get().unwrap();
        assert_eq!(
            world_versions(&mut conn).unwrap(),
            vec![("sample".to_string(), 4)]
        );
        assert_eq!(export_world(&mut conn, "sample").unwrap().unwrap(), f);
    }
}

#[test]
fn stored_short_secrets_still_load_and_are_reported() {
    for_each_backend(|conn| {
        import_world(conn, &file(&sample())).unwrap();
        assert!(worlds_with_short_secrets(conn).unwrap().is_empty());
        // A world imported before the length rule, with one short and one long secret.
        let secrets = r#"[{"issuer":"a","audience":"b","secret":"short"},
                          {"issuer":"a","audience":"b","secret":"0123456789abcdef0123456789abcdef"}]"#;
        crate::with_conn!(conn, |c| diesel::update(
            crate::db::schema::worlds::table.find("sample")
        )
        .set(crate::db::schema::worlds::jwt_secrets.eq(secrets))
        .execute(c))
        .unwrap();
        assert_eq!(
            worlds_with_short_secrets(conn).unwrap(),
            vec![("sample".to_owned(), 1)]
        );
        let snap = load_snapshot(conn, "sample").unwrap().unwrap();
        assert_eq!(snap.jwt_secrets[0].secret, "short");
        // Exporting works; importing that export is refused until the secret is replaced.
        let exported = export_world(conn, "sample").unwrap().unwrap();
        match import_world(conn, &exported) {
            Err(DbError::Invalid(m)) => {
                assert!(m.contains("jwt_secrets[0].secret"), "{m}");
                assert!(!m.contains("short\""), "{m}");
            }
            other => panic!("{other:?}"),
        }
    })
    .unwrap();
}
