use super::*;
use crate::db::schema::worlds;
use crate::db::testing::{for_each_backend, TestDb};
use serde_json::json;

fn world(conn: &mut DbConn, id: &str) {
    with_conn!(conn, |c| diesel::insert_into(worlds::table)
        .values((worlds::id.eq(id), worlds::title.eq(id)))
        .execute(c))
    .unwrap();
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn token_users_are_found_by_world_and_uid() {
    for_each_backend(|conn| {
        world(conn, "w");
        world(conn, "w2");
        let a = find_or_create_token_user(conn, "w", "alice", &strings(&["orga"]), None).unwrap();
        assert_eq!(a.token_id.as_deref(), Some("alice"));
        assert_eq!(a.client_id, None);
        assert_eq!(a.traits, r#"["orga"]"#);
        assert_eq!(a.profile, "{}");
        assert_eq!(a.moderation(), Moderation::None);
        assert!(uuid::Uuid::parse_str(&a.id).is_ok());
        let again =
            find_or_create_token_user(conn, "w", "alice", &strings(&["orga"]), None).unwrap();
        assert_eq!(again, a);
        let other_world = find_or_create_token_user(conn, "w2", "alice", &[], None).unwrap();
        assert_ne!(other_world.id, a.id);
        let client = find_or_create_client_user(conn, "w", "alice").unwrap();
        assert_ne!(
            client.id, a.id,
            "client ids and uids are separate namespaces"
        );
    })
    .unwrap();
}

#[test]
fn every_login_stores_traits_and_merges_the_token_profile() {
    for_each_backend(|conn| {
        world(conn, "w");
        let p = json!({"display_name": "Alice", "avatar": {"url": "https://a/x.png"}});
        let a = find_or_create_token_user(conn, "w", "alice", &strings(&["a"]), Some(&p)).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&a.profile).unwrap(), p);
        let b = find_or_create_token_user(
            conn,
            "w",
            "alice",
            &strings(&["b", "c"]),
            Some(&json!({"display_name": "Alice B."})),
        )
        .unwrap();
        assert_eq!(b.id, a.id);
        assert_eq!(b.traits, r#"["b","c"]"#);
        assert_eq!(
            serde_json::from_str::<Value>(&b.profile).unwrap(),
            json!({"display_name": "Alice B.", "avatar": {"url": "https://a/x.png"}})
        );
        // Without a profile claim the stored profile stays; traits are replaced.
        let c = find_or_create_token_user(conn, "w", "alice", &[], None).unwrap();
        assert_eq!(c.profile, b.profile);
        assert_eq!(c.traits, "[]");
        assert_eq!(find_user(conn, &a.id).unwrap().unwrap(), c);
        // A non-object profile is ignored.
        let d = find_or_create_token_user(conn, "w", "alice", &[], Some(&json!("x"))).unwrap();
        assert_eq!(d.profile, b.profile);
    })
    .unwrap();
}

#[test]
fn a_token_profile_keeps_what_the_frontend_stored_and_the_size_bound() {
    for_each_backend(|conn| {
        world(conn, "w");
        let a = find_or_create_token_user(conn, "w", "bob", &[], None).unwrap();
        let stored = json!({"display_name": "Bob", "greeted": true,
            "avatar": {"identicon": "x"}, "fields": {"org": "O"}});
        update_profile(conn, &a.id, &stored.to_string()).unwrap();
        let b = find_or_create_token_user(
            conn,
            "w",
            "bob",
            &[],
            Some(&json!({"display_name": "Robert"})),
        )
        .unwrap();
        let mut expected = stored.clone();
        expected["display_name"] = json!("Robert");
        assert_eq!(serde_json::from_str::<Value>(&b.profile).unwrap(), expected);
        // A huge token profile: only its name and avatar are taken.
        let huge = json!({"display_name": "Rob", "bio": "x".repeat(9000)});
        let c = find_or_create_token_user(conn, "w", "bob", &[], Some(&huge)).unwrap();
        expected["display_name"] = json!("Rob");
        assert_eq!(serde_json::from_str::<Value>(&c.profile).unwrap(), expected);
        assert!(c.profile.len() <= crate::profile::MAX_PROFILE_BYTES);
        // The user renames themself; logins with the same claim keep that name, a changed
        // claim brings the organiser's.
        let renamed = json!({"display_name": "Bobby", "greeted": true});
        update_profile(conn, &a.id, &renamed.to_string()).unwrap();
        let same = json!({"display_name": "Rob", "bio": "x".repeat(9000)});
        let e = find_or_create_token_user(conn, "w", "bob", &[], Some(&same)).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&e.profile).unwrap(), renamed);
        let f = find_or_create_token_user(
            conn,
            "w",
            "bob",
            &[],
            Some(&json!({"display_name": "Robert B."})),
        )
        .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&f.profile).unwrap(),
            json!({"display_name": "Robert B.", "greeted": true})
        );
        // And on creation.
        let d = find_or_create_token_user(conn, "w", "dora", &[], Some(&huge)).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&d.profile).unwrap(),
            json!({"display_name": "Rob"})
        );
    })
    .unwrap();
}

#[test]
fn client_users_profiles_and_moderation() {
    for_each_backend(|conn| {
        world(conn, "w");
        let u = find_or_create_client_user(conn, "w", "c-1").unwrap();
        assert_eq!(u.client_id.as_deref(), Some("c-1"));
        assert_eq!(u.token_id, None);
        assert_eq!(
            find_or_create_client_user(conn, "w", "c-1").unwrap().id,
            u.id
        );
        update_profile(conn, &u.id, r#"{"display_name":"Anon"}"#).unwrap();
        set_moderation(conn, &u.id, Moderation::Silenced).unwrap();
        let u2 = find_or_create_client_user(conn, "w", "c-1").unwrap();
        assert_eq!(u2.profile, r#"{"display_name":"Anon"}"#);
        assert_eq!(u2.moderation(), Moderation::Silenced);
        set_moderation(conn, &u.id, Moderation::Banned).unwrap();
        assert_eq!(
            find_user(conn, &u.id).unwrap().unwrap().moderation_state,
            "banned"
        );
        set_moderation(conn, &u.id, Moderation::None).unwrap();
        assert_eq!(
            find_user(conn, &u.id).unwrap().unwrap().moderation(),
            Moderation::None
        );
        assert!(matches!(
            update_profile(conn, "missing", "{}"),
            Err(DbError::Invalid(_))
        ));
        assert!(matches!(
            set_moderation(conn, "missing", Moderation::Banned),
            Err(DbError::Invalid(_))
        ));
        assert!(find_or_create_client_user(conn, "w", "").is_err());
        assert!(find_or_create_token_user(conn, "w", "", &[], None).is_err());
        assert!(find_user(conn, "missing").unwrap().is_none());
    })
    .unwrap();
}

#[test]
fn concurrent_logins_create_one_user() {
    for t in TestDb::all().unwrap() {
        let mut conn = t.db.get().unwrap();
        world(&mut conn, "w");
        drop(conn);
        let ids: Vec<(String, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let db = t.db.clone();
                    s.spawn(move || {
                        let mut conn = db.get().unwrap();
                        let a = find_or_create_token_user(
                            &mut conn,
                            "w",
                            "same",
                            &[format!("t{i}")],
                            None,
                        )
                        .unwrap();
                        let b = find_or_create_client_user(&mut conn, "w", "same-client").unwrap();
                        (a.id, b.id)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|p| p == &ids[0]), "{ids:?}");
    }
}

#[test]
fn trait_and_moderation_changes_are_versioned_and_found_by_time() {
    for_each_backend(|conn| {
        world(conn, "w");
        let before = now_ms() - 1;
        let a = find_or_create_token_user(conn, "w", "a", &strings(&["x"]), None).unwrap();
        let b = find_or_create_token_user(conn, "w", "b", &[], None).unwrap();
        assert_eq!((a.version, b.version), (0, 0));
        assert!(
            changed_since(conn, before).unwrap().is_empty(),
            "creation is no change"
        );

        // A profile-only change is not versioned; new traits and moderation are.
        let same = find_or_create_token_user(
            conn,
            "w",
            "a",
            &strings(&["x"]),
            Some(&json!({"display_name": "A"})),
        )
        .unwrap();
        assert_eq!(same.version, 0);
        let a2 = find_or_create_token_user(conn, "w", "a", &strings(&["x", "y"]), None).unwrap();
        assert_eq!(a2.version, 1);
        set_moderation(conn, &b.id, Moderation::Banned).unwrap();
        set_moderation(conn, &b.id, Moderation::Banned).unwrap();
        let b2 = find_user(conn, &b.id).unwrap().unwrap();
        assert_eq!(b2.version, 1, "setting the same state again is no change");

        let mut changed = changed_since(conn, before).unwrap();
        changed.sort_by(|x, y| x.id.cmp(&y.id));
        let mut want = vec![
            (a.id.clone(), strings(&["x", "y"]), Moderation::None, 1),
            (b.id.clone(), vec![], Moderation::Banned, 1),
        ];
        want.sort_by(|x, y| x.0.cmp(&y.0));
        let got: Vec<_> = changed
            .iter()
            .map(|u| (u.id.clone(), u.traits.clone(), u.moderation, u.version))
            .collect();
        assert_eq!(got, want);
        let latest = changed.iter().map(|u| u.changed_at).max().unwrap();
        assert!(changed_since(conn, latest).unwrap().is_empty());
        assert_eq!(
            find_token_user(conn, "w", "b").unwrap().map(|u| u.id),
            Some(b.id.clone())
        );
        assert!(find_token_user(conn, "w", "zz").unwrap().is_none());
        assert!(matches!(
            set_moderation(conn, "missing", Moderation::None),
            Err(DbError::Invalid(_))
        ));
    })
    .unwrap();
}

#[test]
fn a_refused_token_login_updates_an_existing_user_and_creates_none() {
    for_each_backend(|conn| {
        world(conn, "w");
        assert_eq!(
            update_token_user(conn, "w", "nobody", &strings(&["x"]), None).unwrap(),
            None
        );
        assert_eq!(count_in_world(conn, "w").unwrap(), 0);
        let a = find_or_create_token_user(conn, "w", "alice", &strings(&["member"]), None).unwrap();
        let updated = update_token_user(conn, "w", "alice", &[], None)
            .unwrap()
            .expect("alice exists");
        assert_eq!(updated.id, a.id);
        assert_eq!(updated.traits, "[]");
        assert_eq!(
            updated.version,
            a.version + 1,
            "her other sessions learn of it"
        );
        assert_eq!(count_in_world(conn, "w").unwrap(), 1);
    })
    .unwrap();
}
