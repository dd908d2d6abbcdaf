//! Joins: URL contents, every check's error code, single flight, the memory fast path, restart
//! and panic.

use futures_util::future::join_all;

use super::*;
use crate::coordinator::PanicServer;
use crate::db::servers::ServerState;

#[actix_web::test]
async fn room_join_url_has_the_protocol_contents() {
    let h = Harness::new(1).await;
    let attendee = h
        .room_url(&user("alice", &["p"], Some(" Al:ice ")), "r1")
        .await
        .unwrap();
    let a = JoinUrl::parse(&attendee);
    assert_eq!(a.base, url_of(1));
    assert_eq!(a.get("fullName"), Some("Alice"));
    assert_eq!(a.get("role"), Some("VIEWER"));
    assert_eq!(a.get("userID"), Some("user-alice"));
    assert_eq!(a.get("guest"), Some("true"));
    assert_eq!(a.get("userdata-bbb_listen_only_mode"), Some("false"));
    assert_eq!(a.get("userdata-bbb_auto_share_webcam"), Some("true"));
    assert_eq!(a.get("userdata-bbb_skip_video_preview"), Some("true"));
    assert_eq!(
        a.get("userdata-bbb_hide_presentation_on_join"),
        Some("false")
    );
    assert_eq!(
        a.get("userdata-bbb_show_public_chat_on_login"),
        Some("false")
    );
    assert_eq!(a.get("userdata-bbb_skip_check_audio"), Some("true"));
    assert_eq!(
        a.get("userdata-bbb_custom_style_url"),
        Some("https://style.test/bbb.css")
    );
    assert!(a.get("checksum").is_some());
    let meeting_id = a.get("meetingID").unwrap().to_string();
    assert!(meeting_id.len() >= 24);

    let create = h.fake.0.borrow().last_create.clone().unwrap();
    assert_eq!(create.meeting_id, meeting_id);
    assert_eq!(create.name, "Room: One");
    assert_eq!(a.get("password"), Some(create.attendee_pw.as_str()));
    let extra: std::collections::HashMap<_, _> = create.extra.iter().cloned().collect();
    for (k, v) in [
        ("record", "true"),
        ("meta_Source", "eventyay"),
        ("meta_World", "w"),
        ("meta_Room", "r1"),
        ("muteOnStart", "true"),
        ("lockSettingsDisablePrivateChat", "true"),
        ("lockSettingsDisableCam", "false"),
        ("lockSettingsDisablePublicChat", "false"),
        ("guestPolicy", "ASK_MODERATOR"),
        ("voiceBridge", "12345"),
    ] {
        assert_eq!(extra.get(k).map(String::as_str), Some(v), "{k}");
    }
    // BBB calls the gateway back when this meeting ends, with a token only it can issue.
    let callback = extra
        .get("meta_endCallbackUrl")
        .expect("an end callback URL");
    let token = callback
        .strip_prefix("http://gw.test/bbb/callback/end/")
        .expect("under the public URL");
    let verified = callback_key().verify(token).expect("a valid token");
    assert_eq!(verified.meeting_id, meeting_id);
    let created = h
        .fake
        .with(&url_of(1), |s| s.meetings[&meeting_id].create_time);
    assert_eq!(a.get("createTime"), Some(created.to_string().as_str()));

    let moderator = JoinUrl::parse(
        &h.room_url(&user("bob", &["spk"], Some("Bob")), "r1")
            .await
            .unwrap(),
    );
    assert_eq!(moderator.get("role"), Some("MODERATOR"));
    assert_eq!(
        moderator.get("password"),
        Some(create.moderator_pw.as_str())
    );
    assert_eq!(moderator.get("guest"), None);
    assert_eq!(moderator.get("meetingID"), Some(meeting_id.as_str()));

    // A room without a waiting room: no guest flag, ALWAYS_ACCEPT, listen-only by default.
    let plain = h.join("r2").await;
    assert_eq!(plain.get("guest"), None);
    assert_eq!(plain.get("userdata-bbb_listen_only_mode"), Some("true"));
    let create = h.fake.0.borrow().last_create.clone().unwrap();
    assert!(create
        .extra
        .contains(&("guestPolicy".into(), "ALWAYS_ACCEPT".into())));
    assert!(create.extra.contains(&("record".into(), "false".into())));
    assert!(!create.extra.iter().any(|(k, _)| k == "voiceBridge"));
}

#[actix_web::test]
async fn room_checks_answer_every_error_code_in_order() {
    let h = Harness::new(1).await;
    let p = user("alice", &["p"], Some("Alice"));
    let kind = |room: Option<&str>| BbbCommandKind::RoomUrl {
        room: room.map(str::to_string),
    };
    assert_eq!(code(h.send(&p, kind(None)).await), ErrorCode::RoomUnknown);
    assert_eq!(
        code(h.send(&p, kind(Some("nope"))).await),
        ErrorCode::RoomUnknown
    );
    assert_eq!(
        code(h.send(&p, kind(Some("chat"))).await),
        ErrorCode::RoomUnknown
    );
    let mut stranger = (*p).clone();
    stranger.world_id = "other".into();
    assert_eq!(
        code(h.send(&Arc::new(stranger), kind(Some("r2"))).await),
        ErrorCode::RoomUnknown
    );
    // No room:bbb.join (viewer only), even without a name: denied comes first.
    let viewer = user("v", &[], None);
    assert_eq!(
        code(h.send(&viewer, kind(Some("r2"))).await),
        ErrorCode::Denied
    );
    for name in [None, Some(""), Some("   "), Some(":::")] {
        let nameless = user("n", &["p"], name);
        assert_eq!(
            code(h.send(&nameless, kind(Some("r2"))).await),
            ErrorCode::BbbMissingProfile,
            "{name:?}"
        );
    }
    // Recordings: room checks, then room:bbb.recordings.
    let rec = |room: &str| BbbCommandKind::Recordings {
        room: Some(room.to_string()),
    };
    assert_eq!(code(h.send(&p, rec("nope")).await), ErrorCode::RoomUnknown);
    assert_eq!(code(h.send(&p, rec("chat")).await), ErrorCode::RoomUnknown);
    assert_eq!(code(h.send(&p, rec("r2")).await), ErrorCode::Denied);
    let moderator = user("m", &["mod"], None);
    assert_eq!(
        h.send(&moderator, rec("r2")).await.unwrap(),
        json!({"results": []})
    );
    // Nothing reached BBB.
    assert_eq!(h.fake.count(None, "create"), 0);
}

#[actix_web::test]
async fn call_checks_and_url() {
    let h = Harness::new(1).await;
    let call_id = {
        let mut conn = h.db.get().unwrap();
        crate::db::calls::create_call(&mut conn, "w", &["alice".into(), "bob".into()]).unwrap()
    };
    let other_world_call = {
        let mut conn = h.db.get().unwrap();
        crate::db::calls::create_call(&mut conn, "other", &["alice".into()]).unwrap()
    };
    let kind = |c: Option<&str>| BbbCommandKind::CallUrl {
        call: c.map(str::to_string),
    };
    let alice = user("alice", &[], Some("Alice"));
    let eve = user("eve", &["mod"], Some("Eve"));
    for bad in [None, Some("not-a-uuid"), Some("1234"), Some("")] {
        assert_eq!(
            code(h.send(&alice, kind(bad)).await),
            ErrorCode::Denied,
            "{bad:?}"
        );
    }
    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_eq!(
        code(h.send(&alice, kind(Some(unknown))).await),
        ErrorCode::Denied
    );
    assert_eq!(
        code(h.send(&eve, kind(Some(&call_id))).await),
        ErrorCode::Denied
    );
    assert_eq!(
        code(h.send(&alice, kind(Some(&other_world_call))).await),
        ErrorCode::Denied
    );
    let mut anonymous = (*alice).clone();
    anonymous.uid = None;
    assert_eq!(
        code(h.send(&Arc::new(anonymous), kind(Some(&call_id))).await),
        ErrorCode::Denied
    );
    let mut silenced = (*alice).clone();
    silenced.moderation = crate::permissions::Moderation::Silenced;
    assert_eq!(
        code(h.send(&Arc::new(silenced), kind(Some(&call_id))).await),
        ErrorCode::Denied
    );
    let nameless = user("bob", &[], None);
    assert_eq!(
        code(h.send(&nameless, kind(Some(&call_id))).await),
        ErrorCode::BbbMissingProfile
    );

    let url = JoinUrl::parse(
        &h.send(&alice, kind(Some(&call_id.to_uppercase())))
            .await
            .unwrap(),
    );
    assert_eq!(url.get("role"), Some("MODERATOR"));
    assert_eq!(url.get("userdata-bbb_auto_share_webcam"), Some("true"));
    assert_eq!(url.get("userdata-bbb_listen_only_mode"), Some("false"));
    assert_eq!(url.get("userdata-bbb_auto_swap_layout"), Some("true"));
    let create = h.fake.0.borrow().last_create.clone().unwrap();
    assert_eq!(create.name, "Call");
    assert_eq!(url.get("password"), Some(create.moderator_pw.as_str()));
    for (k, v) in [
        ("record", "false"),
        ("meta_Source", "eventyay"),
        ("meta_Call", call_id.as_str()),
        ("lockSettingsDisablePrivateChat", "true"),
    ] {
        assert!(create.extra.contains(&(k.into(), v.into())), "{k}");
    }
    // Bob joins the same meeting without a second create.
    let bob = JoinUrl::parse(
        &h.send(&user("bob", &[], Some("Bob")), kind(Some(&call_id)))
            .await
            .unwrap(),
    );
    assert_eq!(bob.get("meetingID"), url.get("meetingID"));
    assert_eq!(h.fake.count(None, "create"), 1);
}

#[actix_web::test]
async fn five_hundred_concurrent_joins_send_one_create() {
    let h = Harness::new(2).await;
    for i in 1..=2 {
        h.fake.with(&url_of(i), |s| {
            s.latency = std::time::Duration::from_millis(200)
        });
    }
    let started = std::time::Instant::now();
    let joins = (0..500).map(|i| {
        let u = user(&format!("u{i}"), &["p"], Some("Someone"));
        let h = &h;
        async move { h.room_url(&u, "r2").await }
    });
    let results = join_all(joins).await;
    let elapsed = started.elapsed();
    let ids: std::collections::HashSet<String> = results
        .iter()
        .map(|r| {
            JoinUrl::parse(r.as_ref().unwrap())
                .get("meetingID")
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(h.fake.count(None, "create"), 1);
    let status = h.status().await;
    assert_eq!(status.stats.creates_sent, 1);
    assert_eq!(status.stats.creates_saved_by_single_flight, 499);
    eprintln!("500 concurrent cold joins (200 ms create latency): {elapsed:?}");
}

#[actix_web::test]
async fn a_known_running_meeting_is_joined_without_create_or_database() {
    let h = Harness::new(1).await;
    let first = h.join("r2").await;
    assert_eq!(h.fake.count(None, "create"), 1);
    // The database may be gone: the fast path does not touch it.
    let mut conn = h.db.get().unwrap();
    crate::with_conn!(&mut conn, |c| {
        diesel::connection::SimpleConnection::batch_execute(c, "DROP TABLE meetings")
    })
    .unwrap();
    drop(conn);
    let started = std::time::Instant::now();
    for _ in 0..1000 {
        let again = h.join("r2").await;
        assert_eq!(again.get("meetingID"), first.get("meetingID"));
    }
    eprintln!("1000 sequential warm joins: {:?}", started.elapsed());
    assert_eq!(h.fake.count(None, "create"), 1);
    assert_eq!(h.status().await.stats.joins_from_memory, 1000);
}

#[actix_web::test]
async fn a_meeting_that_ended_is_created_again() {
    let h = Harness::new(1).await;
    let first = h.join("r2").await;
    let mid = first.get("meetingID").unwrap().to_string();
    // Still listed by the poll: no create.
    h.poll().await;
    h.join("r2").await;
    assert_eq!(h.fake.count(None, "create"), 1);
    // It expired on BBB; the next poll notices, the next join re-creates it (same id).
    h.fake.with(&url_of(1), |s| s.meetings.clear());
    h.poll().await;
    let again = h.join("r2").await;
    assert_eq!(again.get("meetingID"), Some(mid.as_str()));
    assert_eq!(h.fake.count(None, "create"), 2);
    assert_ne!(again.get("createTime"), first.get("createTime"));
}

#[actix_web::test]
async fn a_restart_keeps_the_meeting_on_its_server() {
    let mut h = Harness::new(2).await;
    let first = h.join("r2").await;
    let server = first.base.clone();
    let other = if server == url_of(1) {
        url_of(2)
    } else {
        url_of(1)
    };
    // Make the meeting's server look much busier, so a new placement would go elsewhere.
    let mid = first.get("meetingID").unwrap().to_string();
    h.fake.set_participants(&server, &mid, 500, 20);
    h.restart();
    h.poll().await;
    // Known running after the restart's poll: no create.
    let again = h.join("r2").await;
    assert_eq!(
        (again.base.as_str(), again.get("meetingID")),
        (server.as_str(), Some(mid.as_str()))
    );
    assert_eq!(h.fake.count(None, "create"), 1);
    // Ended on BBB, then a restart: re-created on its stored server, not the emptier one.
    h.fake.with(&server, |s| {
        s.meetings.clear();
        s.meetings.insert(
            "foreign".into(),
            crate::bbb::MeetingInfo {
                meeting_id: "foreign".into(),
                participant_count: 300,
                create_time: 1,
                ..Default::default()
            },
        );
    });
    h.restart();
    h.poll().await;
    let third = h.join("r2").await;
    assert_eq!(third.base, server);
    assert_eq!(h.fake.creates(), vec![server.clone(), server]);
    assert!(h.fake.count(Some(&other), "create") == 0);
}

#[actix_web::test]
async fn panic_ends_and_forgets_the_servers_meetings() {
    let h = Harness::new(2).await;
    let first = h.join("r2").await;
    let mid = first.get("meetingID").unwrap().to_string();
    let server_id = if first.base == url_of(1) {
        h.ids[0]
    } else {
        h.ids[1]
    };
    // Cordon it, so the re-created meeting must go to the other server.
    h.set_state(server_id, ServerState::Cordoned).await;
    let forgotten = h
        .addr
        .send(PanicServer { id: server_id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(forgotten, 1);
    h.settle().await;
    assert!(!h.fake.runs(&first.base, &mid), "the meeting was not ended");
    assert_eq!(h.fake.count(Some(&first.base), "end"), 1);
    let next = h.join("r2").await;
    assert_ne!(next.base, first.base);
    assert_eq!(next.get("meetingID"), Some(mid.as_str()));
    assert_eq!(h.fake.count(None, "create"), 2);
    let unknown = ServerId::new(999);
    assert!(matches!(
        h.addr.send(PanicServer { id: unknown }).await.unwrap(),
        Err(crate::coordinator::AdminError::UnknownServer(id)) if id == unknown
    ));
}

#[actix_web::test]
async fn a_cli_panic_is_picked_up_at_the_next_poll() {
    let h = Harness::new(1).await;
    let first = h.join("r2").await;
    let mid = first.get("meetingID").unwrap().to_string();
    {
        let mut conn = h.db.get().unwrap();
        assert_eq!(
            crate::db::servers::panic(&mut conn, h.ids[0]).unwrap(),
            Some(1)
        );
    }
    h.poll().await;
    h.settle().await;
    // Forgotten, then found still running where it no longer belongs: ended there.
    assert!(!h.fake.runs(&url_of(1), &mid));
    h.join("r2").await;
    assert_eq!(h.fake.count(None, "create"), 2);
}
