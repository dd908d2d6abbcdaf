//! Round trips of the real BBB client against bbb-sim on 127.0.0.1: what the gateway relies on
//! (create, signed joins, load polling, recordings) and what must fail like a real BBB.

use std::time::Duration;

use bbb_gateway::bbb::{
    join_url, AwcBbbClient, BbbApi, BbbClientConfig, BbbError, ChecksumAlgorithm, CreateMeeting,
    JoinParams, Role, Secret, ServerEndpoint,
};
use bbb_sim::{self as sim, SimConfig, SimHandle};
use serde_json::{json, Value};

use crate::helpers::{wait_until, WAIT};

const SECRET: &str = "sim-secret-0123456789";

fn sim_config() -> SimConfig {
    SimConfig {
        secret: SECRET.into(),
        checksum: None,
        latency_ms: 0,
        time_scale: 1.0,
    }
}

async fn start_sim(config: SimConfig) -> SimHandle {
    sim::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

fn endpoint(sim: &SimHandle, secret: &str, algorithm: ChecksumAlgorithm) -> ServerEndpoint {
    ServerEndpoint {
        base_url: sim.base_url(),
        secret: Secret::new(secret),
        algorithm,
    }
}

fn client_with_timeout(ms: u64) -> AwcBbbClient {
    AwcBbbClient::new(BbbClientConfig {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(ms),
        max_body_bytes: 1 << 20,
    })
}

fn client() -> AwcBbbClient {
    client_with_timeout(3000)
}

fn meeting(id: &str) -> CreateMeeting {
    CreateMeeting {
        meeting_id: id.into(),
        name: format!("Room {id}"),
        attendee_pw: "ap".into(),
        moderator_pw: "mp".into(),
        extra: vec![("meta_eventyay-room".into(), "room_1".into())],
        presentation_url: None,
    }
}

/// POSTs JSON to a control route and returns the JSON reply.
async fn control(sim: &SimHandle, path: &str, body: Value) -> Value {
    let url = format!("http://127.0.0.1:{}{path}", sim.port());
    let mut resp = awc::Client::default()
        .post(url)
        .send_json(&body)
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

/// GETs a URL (no redirects followed) and returns status, Location and body.
async fn get(url: &str) -> (u16, Option<String>, String) {
    let client = awc::Client::builder().disable_redirects().finish();
    let mut resp = client.get(url).send().await.unwrap();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.body().await.unwrap();
    (
        resp.status().as_u16(),
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn join_params(meeting_id: &str, role: Role, create_time: Option<i64>) -> JoinParams<'_> {
    JoinParams {
        meeting_id,
        full_name: "Ada Lovelace",
        user_id: "u1",
        role,
        password: None,
        create_time,
        avatar_url: Some("https://example.org/a.png"),
        guest: false,
        extra: vec![
            ("userdata-bbb_auto_join_audio", "true"),
            ("redirect", "false"),
        ],
    }
}

fn assert_failed<T: std::fmt::Debug>(r: Result<T, BbbError>, key: &str) {
    match r {
        Err(BbbError::Failed { message_key, .. }) => assert_eq!(message_key, key),
        other => panic!("expected FAILED {key}, got {other:?}"),
    }
}

#[actix_web::test]
async fn create_join_and_poll_round_trip() {
    let sim = start_sim(sim_config()).await;
    let ep = endpoint(&sim, SECRET, ChecksumAlgorithm::Sha256);
    let c = client();

    let (status, _, index) = get(&format!("{}/api/", sim.base_url())).await;
    assert_eq!(status, 200);
    assert!(index.contains("<apiVersion>2.0</apiVersion>"), "{index}");

    let first = c.create(&ep, &meeting("room-1")).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.meeting_id, "room-1");
    assert!(first.create_time > 0);
    let again = c.create(&ep, &meeting("room-1")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.create_time, first.create_time);
    assert_eq!(again.moderator_pw.as_deref(), Some("mp"));
    let mut with_slides = meeting("room-2");
    with_slides.presentation_url = Some("https://example.org/slides.pdf?a=1&b=2".into());
    assert!(!c.create(&ep, &with_slides).await.unwrap().duplicate);

    // Before anyone joins the meeting exists but is not running.
    assert!(!c.is_meeting_running(&ep, "room-1").await.unwrap());

    // A signed join URL is accepted, with role and createTime.
    let url = join_url(
        &ep,
        &join_params("room-1", Role::Moderator, Some(first.create_time)),
    );
    let (status, _, body) = get(&url).await;
    assert_eq!(status, 200);
    assert!(body.contains("successfullyJoined"), "{body}");

    // Wrong createTime and wrong password are rejected.
    let stale = join_url(
        &ep,
        &join_params("room-1", Role::Viewer, Some(first.create_time - 1)),
    );
    assert!(get(&stale).await.2.contains("mismatchCreateTimeParam"));
    let mut bad_pw = join_params("room-1", Role::Viewer, None);
    bad_pw.password = Some("wrong");
    assert!(get(&join_url(&ep, &bad_pw))
        .await
        .2
        .contains("invalidPassword"));
    // Join before create fails.
    let early = join_url(&ep, &join_params("never-created", Role::Viewer, None));
    assert!(get(&early).await.2.contains("invalidMeetingIdentifier"));
    // A tampered URL fails the checksum.
    let (status, _, body) = get(&url.replace("Ada+Lovelace", "Eve")).await;
    assert_eq!(status, 200);
    assert!(body.contains("checksumError"), "{body}");

    // With redirect (the browser's case) the sim answers 302 to its client page.
    let mut browser = join_params("room-1", Role::Viewer, Some(first.create_time));
    browser.extra.clear();
    let (status, location, _) = get(&join_url(&ep, &browser)).await;
    assert_eq!(status, 302);
    let location = location.unwrap();
    assert!(
        location.contains("/client/join?sessionToken="),
        "{location}"
    );
    let (status, _, page) = get(&location).await;
    assert_eq!(status, 200);
    assert!(page.contains("room-1") && page.contains("viewer"), "{page}");
    assert!(
        page.contains("window.parent.postMessage({\"bbbSim\""),
        "{page}"
    );

    let meetings = c.get_meetings(&ep).await.unwrap();
    assert_eq!(meetings.len(), 2);
    let m = meetings.iter().find(|m| m.meeting_id == "room-1").unwrap();
    assert!(m.running);
    assert_eq!((m.participant_count, m.moderator_count), (2, 1));
    assert_eq!(m.create_time, first.create_time);
    assert!(c.is_meeting_running(&ep, "room-1").await.unwrap());

    control(
        &sim,
        "/sim/participants",
        json!({"meetingID": "room-1", "participants": 7, "voice": 5, "video": 3, "moderators": 2}),
    )
    .await;
    let info = c.get_meeting_info(&ep, "room-1").await.unwrap().unwrap();
    assert_eq!(
        (
            info.participant_count,
            info.voice_participant_count,
            info.video_count,
            info.moderator_count
        ),
        (7, 5, 3, 2)
    );
    assert_eq!(c.get_meeting_info(&ep, "nope").await.unwrap(), None);

    c.end(&ep, "room-1").await.unwrap();
    c.end(&ep, "room-1").await.unwrap(); // already over: still Ok
    assert!(!c.is_meeting_running(&ep, "room-1").await.unwrap());
    assert_eq!(c.get_meetings(&ep).await.unwrap().len(), 1);

    // The call log has every call, parameters decoded and without the checksum.
    let mut resp = awc::Client::default()
        .get(format!("http://127.0.0.1:{}/sim/calls", sim.port()))
        .send()
        .await
        .unwrap();
    let calls: Value = resp.json().await.unwrap();
    let calls = calls.as_array().unwrap();
    assert_eq!(calls[1]["call"], "create");
    assert_eq!(calls[1]["params"]["name"], "Room room-1");
    assert_eq!(calls[1]["params"]["meta_eventyay-room"], "room_1");
    assert!(calls[1]["params"].get("checksum").is_none());
    assert!(calls[1]["at_ms"].as_i64().unwrap() > 0);
    assert!(calls.iter().any(|c| c["call"] == "join"));

    control(&sim, "/sim/reset", json!({})).await;
    assert!(c.get_meetings(&ep).await.unwrap().is_empty());
    sim.stop().await;
}

#[actix_web::test]
async fn recordings_for_several_meetings() {
    let sim = start_sim(sim_config()).await;
    let ep = endpoint(&sim, SECRET, ChecksumAlgorithm::Sha1);
    let c = client();
    assert!(c
        .get_recordings(&ep, &["m1".into()])
        .await
        .unwrap()
        .is_empty());
    for (id, state) in [("m1", "published"), ("m2", "deleted"), ("m3", "published")] {
        control(
            &sim,
            "/sim/recordings",
            json!({"meetingID": id, "state": state, "startTime": 1_596_389_400_000i64,
                   "endTime": 1_596_393_000_000i64, "participants": 3,
                   "formats": [{"type": "presentation", "url": format!("https://x/{id}")}]}),
        )
        .await;
    }
    let mut recs = c
        .get_recordings(&ep, &["m1".into(), "m2".into()])
        .await
        .unwrap();
    recs.sort_by(|a, b| a.meeting_id.cmp(&b.meeting_id));
    assert_eq!(recs.len(), 2);
    assert_eq!(
        (recs[0].meeting_id.as_str(), recs[0].published),
        ("m1", true)
    );
    assert_eq!(recs[1].state, "deleted");
    assert_eq!(recs[0].formats[0].url, "https://x/m1");
    assert_eq!(recs[0].formats[0].length_minutes, Some(60));
    assert_eq!(recs[0].participants, "3");
    sim.stop().await;
}

#[actix_web::test]
async fn checksum_errors_like_bbb() {
    let sim = start_sim(sim_config()).await;
    let c = client();
    let wrong = endpoint(&sim, "not-the-secret", ChecksumAlgorithm::Sha256);
    assert_failed(c.get_meetings(&wrong).await, "checksumError");
    for algo in ChecksumAlgorithm::ALL {
        c.get_meetings(&endpoint(&sim, SECRET, algo)).await.unwrap();
    }
    // Signing one encoding and sending another is caught.
    let sum = bbb_gateway::bbb::checksum(
        ChecksumAlgorithm::Sha256,
        "isMeetingRunning",
        "meetingID=a%20b",
        &Secret::new(SECRET),
    );
    let url = format!(
        "{}/api/isMeetingRunning?meetingID=a+b&checksum={sum}",
        sim.base_url()
    );
    assert!(get(&url).await.2.contains("checksumError"));
    let missing = format!("{}/api/getMeetings", sim.base_url());
    assert!(get(&missing).await.2.contains("checksumError"));
    sim.stop().await;

    let restricted = start_sim(SimConfig {
        checksum: Some(ChecksumAlgorithm::Sha1),
        ..sim_config()
    })
    .await;
    let sha256 = endpoint(&restricted, SECRET, ChecksumAlgorithm::Sha256);
    assert_failed(c.get_meetings(&sha256).await, "checksumError");
    let sha1 = endpoint(&restricted, SECRET, ChecksumAlgorithm::Sha1);
    c.get_meetings(&sha1).await.unwrap();
    // The failed call is logged too.
    let mut resp = awc::Client::default()
        .get(format!("http://127.0.0.1:{}/sim/calls", restricted.port()))
        .send()
        .await
        .unwrap();
    let calls: Value = resp.json().await.unwrap();
    assert_eq!(calls.as_array().unwrap().len(), 2);
    restricted.stop().await;
}

/// The ids of the meetings `ep` lists, sorted.
async fn meeting_ids(c: &AwcBbbClient, ep: &ServerEndpoint) -> Vec<String> {
    let meetings = c.get_meetings(ep).await.expect("getMeetings");
    let mut ids: Vec<String> = meetings.into_iter().map(|m| m.meeting_id).collect();
    ids.sort();
    ids
}

#[actix_web::test]
async fn meetings_expire_on_bbb_schedule() {
    // 120: a BBB minute lasts 500 ms, so the two expiries below are 2 s apart.
    let sim = start_sim(SimConfig {
        time_scale: 120.0,
        ..sim_config()
    })
    .await;
    let ep = endpoint(&sim, SECRET, ChecksumAlgorithm::Sha256);
    let c = client();
    c.create(&ep, &meeting("nobody")).await.unwrap(); // expires after 5 BBB minutes
    c.create(&ep, &meeting("left")).await.unwrap();
    control(
        &sim,
        "/sim/participants",
        json!({"meetingID": "left", "participants": 2}),
    )
    .await;
    control(
        &sim,
        "/sim/participants",
        json!({"meetingID": "left", "participants": 0}),
    )
    .await;
    assert_eq!(meeting_ids(&c, &ep).await, ["left", "nobody"]);
    wait_until(
        "the meeting its last user left to expire (1 BBB minute)",
        WAIT,
        async || !meeting_ids(&c, &ep).await.contains(&"left".to_string()),
    )
    .await;
    // A meeting nobody joined lives 5 BBB minutes, 4 more than the one above.
    assert_eq!(meeting_ids(&c, &ep).await, ["nobody"]);
    wait_until(
        "the meeting nobody joined to expire (5 BBB minutes)",
        WAIT,
        async || meeting_ids(&c, &ep).await.is_empty(),
    )
    .await;
    // After expiry a join URL fails, and create starts a new instance.
    let late = join_url(&ep, &join_params("nobody", Role::Viewer, None));
    assert!(get(&late).await.2.contains("invalidMeetingIdentifier"));
    let again = c.create(&ep, &meeting("nobody")).await.unwrap();
    assert!(!again.duplicate);
    sim.stop().await;
}

#[actix_web::test]
async fn faults_map_to_distinct_errors() {
    let sim = start_sim(sim_config()).await;
    let ep = endpoint(&sim, SECRET, ChecksumAlgorithm::Sha256);
    let c = client_with_timeout(300);

    control(&sim, "/sim/fault", json!({"mode": "http500"})).await;
    assert_eq!(c.get_meetings(&ep).await, Err(BbbError::Status(500)));
    control(&sim, "/sim/fault", json!({"mode": "garbage"})).await;
    assert!(matches!(
        c.get_meetings(&ep).await,
        Err(BbbError::InvalidXml(_))
    ));
    control(&sim, "/sim/fault", json!({"mode": "checksum_error"})).await;
    assert_failed(c.get_meetings(&ep).await, "checksumError");
    control(&sim, "/sim/fault", json!({"mode": "hang"})).await;
    assert_eq!(c.get_meetings(&ep).await, Err(BbbError::Timeout));
    control(
        &sim,
        "/sim/fault",
        json!({"mode": "none", "latency_ms": 500}),
    )
    .await;
    assert_eq!(c.get_meetings(&ep).await, Err(BbbError::Timeout));
    control(&sim, "/sim/fault", json!({"mode": "none"})).await;
    c.get_meetings(&ep).await.unwrap();

    let tiny = AwcBbbClient::new(BbbClientConfig {
        max_body_bytes: 64,
        ..c.config()
    });
    assert_eq!(tiny.get_meetings(&ep).await, Err(BbbError::BodyTooLarge));
    sim.stop().await;
}

#[actix_web::test]
async fn stopped_sim_refuses_and_restart_forgets() {
    let sim = start_sim(sim_config()).await;
    let port = sim.port();
    let ep = endpoint(&sim, SECRET, ChecksumAlgorithm::Sha256);
    let c = client();
    c.create(&ep, &meeting("room-1")).await.unwrap();
    sim.stop().await;

    let err = c.get_meetings(&ep).await.unwrap_err();
    assert!(matches!(err, BbbError::Connect(_)), "{err:?}");
    let msg = format!("{err} {err:?}");
    assert!(!msg.contains("checksum") && !msg.contains(SECRET), "{msg}");

    let restarted = sim::start(format!("127.0.0.1:{port}").parse().unwrap(), sim_config())
        .await
        .unwrap();
    assert_eq!(restarted.port(), port);
    assert!(c.get_meetings(&ep).await.unwrap().is_empty());
    restarted.stop().await;
}
