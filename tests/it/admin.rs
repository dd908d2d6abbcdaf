//! The admin surface: REST status and server control, private calls, metrics, status page.

use bbb_gateway::bbb::ChecksumAlgorithm;
use serde_json::{json, Value};

use crate::fleet::*;
use crate::helpers::*;

pub const TOKEN: &str = "test-admin-token-0123456789";

pub async fn get(app: &TestApp, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = awc::Client::default().get(app.admin_url(path));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut resp = req.send().await.unwrap();
    let body = resp.body().limit(16 << 20).await.unwrap();
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

pub async fn post(app: &TestApp, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = awc::Client::default()
        .post(app.admin_url(path))
        .insert_header(("Content-Type", "application/json"));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut resp = req.send_body(body.to_owned()).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.body().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Sets a server's state through the REST route, as an operator does; answers the status.
pub async fn post_state(app: &TestApp, id: impl std::fmt::Display, state: &str) -> u16 {
    let body = json!({ "state": state }).to_string();
    let path = format!("/api/v1/servers/{id}/state");
    post(app, &path, Some(TOKEN), &body).await.0
}

/// Asserts that no configured secret appears in `text`.
pub fn assert_no_secrets(text: &str) {
    for secret in [
        sim_secret(1),
        sim_secret(2),
        WORLD_SECRET.to_string(),
        TOKEN.to_string(),
    ] {
        assert!(!text.contains(&secret), "a secret leaked: {text}");
    }
    assert!(!text.contains("checksum="), "a signed URL leaked: {text}");
}

#[actix_web::test]
async fn admin_routes_need_the_token() {
    let app = spawn_app().await;
    for token in [None, Some("wrong-token-wrong-token"), Some("")] {
        let (status, body) = get(&app, "/api/v1/status", token).await;
        assert_eq!(status, 401, "{token:?}");
        assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
        let (status, _) = post(&app, "/api/v1/servers/1/panic", token, "{}").await;
        assert_eq!(status, 401);
        let (status, _) = post(
            &app,
            "/api/v1/servers/1/state",
            token,
            r#"{"state":"cordoned"}"#,
        )
        .await;
        assert_eq!(status, 401);
        let (status, _) = post(
            &app,
            "/api/v1/worlds/w1/calls",
            token,
            r#"{"members":["a"]}"#,
        )
        .await;
        assert_eq!(status, 401);
    }
}

/// Any request on `port` and its status code.
async fn status_on(port: u16, method: &str, path: &str, auth: Option<&str>) -> u16 {
    let url = format!("http://127.0.0.1:{port}{path}");
    let client = awc::Client::default();
    let mut req = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    };
    if let Some(value) = auth {
        req = req.insert_header(("Authorization", value));
    }
    req.send().await.unwrap().status().as_u16()
}

#[actix_web::test]
async fn the_admin_plane_is_only_on_the_admin_listener() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    assert_ne!(app.port, app.admin_port);
    let bearer = format!("Bearer {TOKEN}");
    let admin_routes = [
        ("GET", "/metrics", 200),
        ("GET", "/admin/", 200),
        ("GET", "/admin", 200),
        ("GET", "/api/v1/status", 200),
        ("POST", "/api/v1/servers/4242/state", 400),
        ("POST", "/api/v1/worlds/w1/calls", 400),
    ];
    for (method, path, admin_status) in admin_routes {
        assert_eq!(
            status_on(app.admin_port, method, path, Some(&bearer)).await,
            admin_status,
            "{method} {path} on the admin listener"
        );
        assert_eq!(
            status_on(app.port, method, path, Some(&bearer)).await,
            404,
            "{method} {path} must not be reachable on the public listener"
        );
    }
    // The public routes stay public, and are not on the admin listener.
    for path in ["/livez", "/readyz", "/healthz"] {
        assert_eq!(status_on(app.port, "GET", path, None).await, 200, "{path}");
        assert_eq!(
            status_on(app.admin_port, "GET", path, None).await,
            404,
            "{path}"
        );
    }
    assert_eq!(
        status_on(app.admin_port, "GET", "/ws/world/w1/", None).await,
        404
    );
    assert_eq!(
        status_on(app.admin_port, "GET", "/bbb/callback/end/x", None).await,
        404
    );
    let (mut c, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    c.send(json!(["ping", 1])).await;
    assert_eq!(c.recv().await.unwrap(), json!(["pong", 1]));
}

#[actix_web::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {TOKEN}");
        assert_eq!(
            status_on(app.admin_port, "GET", "/api/v1/status", Some(&auth)).await,
            200,
            "{auth}"
        );
    }
    for auth in [
        format!("Basic {TOKEN}"),
        format!("Bearer{TOKEN}"),
        format!("Bearer {TOKEN}x"),
        format!("Bearer {}", &TOKEN[1..]),
        TOKEN.to_owned(),
    ] {
        assert_eq!(
            status_on(app.admin_port, "GET", "/api/v1/status", Some(&auth)).await,
            401,
            "{auth}"
        );
    }
}

#[actix_web::test]
async fn status_lists_servers_without_secrets() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let (sim1, id1) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (sim2, _) = add_sim(&app, 2, ChecksumAlgorithm::Sha1).await;
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let url = bob.room_url("room_1").await;
    set_participants(
        &url,
        json!({"participants": 7, "voice": 3, "video": 2, "moderators": 1}),
    )
    .await;
    refresh(&app).await;

    let (status, body) = get(&app, "/api/v1/status", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_no_secrets(&body);
    let v: Value = serde_json::from_str(&body).unwrap();
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    for key in [
        "id",
        "url",
        "state",
        "online",
        "meetings",
        "participants",
        "listeners",
        "voice",
        "videos",
        "largest_meeting",
        "load",
        "weight",
        "tag",
        "last_poll_at_ms",
        "last_good_poll_at_ms",
        "last_error",
        "capacity",
        "occupancy",
        "headroom",
        "capacity_used",
    ] {
        assert!(
            servers[0].get(key).is_some(),
            "missing {key}: {}",
            servers[0]
        );
    }
    assert_eq!(v["totals"]["servers"], 2);
    assert_eq!(v["totals"]["online"], 2);
    assert_eq!(v["totals"]["participants"], 7);
    assert_eq!(v["totals"]["meetings"], 1);
    assert_eq!(v["gateway"]["sessions_connected"], 1);
    // The meetings, with their names and polled figures.
    let meetings = v["meetings"].as_array().unwrap();
    assert_eq!(meetings.len(), 1, "{}", v["meetings"]);
    let m = &meetings[0];
    assert_eq!(
        (&m["world"], &m["world_title"], &m["room"], &m["room_name"]),
        (
            &json!("w1"),
            &json!("Sample Conference"),
            &json!("room_1"),
            &json!("Gruppenraum 1")
        )
    );
    assert_eq!(m["state"], "running");
    assert_eq!((&m["participants"], &m["voice"]), (&json!(7), &json!(3)));
    assert_eq!(m["meeting_id"], query(&url)["meetingID"]);
    assert!(m["create_time_ms"].as_i64().unwrap() > 0);
    assert!(m.get("attendee_pw").is_none() && m.get("moderator_pw").is_none());
    let on = m["server"].as_i64().unwrap();
    assert_eq!(
        port_of(&url),
        if on == i64::from(id1.get()) {
            sim1.port()
        } else {
            sim2.port()
        }
    );
    assert!(v["now_ms"].as_i64().unwrap() > 0);
    // The load history has a point for every server, with the participants polled.
    let (status, body) = get(&app, "/api/v1/load-history", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&h["bucket_secs"], &h["span_secs"]),
        (&json!(30), &json!(3600))
    );
    let hosting = h["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == on)
        .unwrap();
    let last = hosting["points"].as_array().unwrap().last().unwrap();
    assert_eq!(last["participants"], 7);
    assert!(last["load"].as_f64().unwrap() > 0.0);
    assert_eq!(get(&app, "/api/v1/load-history", None).await.0, 401);
    assert!(v["gateway"]["uptime_secs"].is_number());
    // The coordinator's counters, each under its own name.
    for key in [
        "creates_sent",
        "create_failures",
        "creates_saved_by_single_flight",
        "joins_from_memory",
        "meetings_moved",
        "ends_sent",
        "poll_rounds",
        "follow_rounds",
        "leader",
        "meetings_known",
        "creates_in_flight",
    ] {
        assert!(
            v["gateway"][key].is_number() || v["gateway"][key].is_boolean(),
            "missing gateway.{key}: {}",
            v["gateway"]
        );
    }

    // state changes and errors
    let (status, body) = post(
        &app,
        &format!("/api/v1/servers/{id1}/state"),
        Some(TOKEN),
        r#"{"state":"cordoned"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = get(&app, "/api/v1/status", Some(TOKEN)).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let s1 = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id1.get())
        .unwrap()
        .clone();
    assert_eq!(s1["state"], "cordoned");
    let (status, body) = post(
        &app,
        "/api/v1/servers/9999/state",
        Some(TOKEN),
        r#"{"state":"cordoned"}"#,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = post(
        &app,
        &format!("/api/v1/servers/{id1}/state"),
        Some(TOKEN),
        r#"{"state":"sleeping"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("state"), "{body}");
    let (status, body) = post(
        &app,
        &format!("/api/v1/servers/{id1}/state"),
        Some(TOKEN),
        r#"{}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("state"), "{body}");
    let (status, _) = post(
        &app,
        "/api/v1/servers/abc/state",
        Some(TOKEN),
        r#"{"state":"enabled"}"#,
    )
    .await;
    assert_eq!(status, 404);
    let big = format!(r#"{{"state":"enabled","x":"{}"}}"#, "y".repeat(40_000));
    let (status, _) = post(
        &app,
        &format!("/api/v1/servers/{id1}/state"),
        Some(TOKEN),
        &big,
    )
    .await;
    assert_eq!(status, 413);
}

#[actix_web::test]
async fn panic_moves_meetings_to_another_server() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let (sim1, id1) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (sim2, id2) = add_sim(&app, 2, ChecksumAlgorithm::Sha256).await;
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let url = bob.room_url("room_1").await;
    let (first_id, first_port, other_port) = if port_of(&url) == sim1.port() {
        (id1, sim1.port(), sim2.port())
    } else {
        (id2, sim2.port(), sim1.port())
    };
    let (status, body) = post(
        &app,
        &format!("/api/v1/servers/{first_id}/panic"),
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meetings_forgotten"], 1);
    post_state(&app, first_id, "disabled").await;
    let url2 = bob.room_url("room_1").await;
    assert_eq!(port_of(&url2), other_port);
    // the meeting was ended on the server it left, not on the target
    wait_until("end on the panicked server", WAIT, async || {
        calls(first_port).await.iter().any(|(c, _)| c == "end")
    })
    .await;
    assert!(!calls(other_port).await.iter().any(|(c, _)| c == "end"));
    let (status, _) = post(&app, "/api/v1/servers/4242/panic", Some(TOKEN), "").await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn capacity_is_set_over_rest_and_shown_in_status_and_metrics() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let (_sim1, id1) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (_sim2, id2) = add_sim(&app, 2, ChecksumAlgorithm::Sha256).await;
    let path = format!("/api/v1/servers/{id1}/capacity");
    let (status, body) = post(&app, &path, Some(TOKEN), r#"{"capacity": 50}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"id": id1.get(), "capacity": 50}));
    for (bad, names) in [
        (r#"{}"#, "capacity"),
        (r#"{"capacity": 0}"#, "capacity"),
        (r#"{"capacity": -5}"#, "capacity"),
        (r#"{"capacity": 2.5}"#, "capacity"),
        (r#"{"capacity": "100"}"#, "capacity"),
        (r#"{"capacity": 50, "weight": 2}"#, "weight"),
        (r#"[50]"#, "capacity"),
        ("fifty", "invalid body"),
    ] {
        let (status, body) = post(&app, &path, Some(TOKEN), bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(names), "{bad}: {msg}");
    }
    let (status, _) = post(&app, &path, None, r#"{"capacity": 5}"#).await;
    assert_eq!(status, 401);
    let (status, _) = post(
        &app,
        "/api/v1/servers/4242/capacity",
        Some(TOKEN),
        r#"{"capacity": 5}"#,
    )
    .await;
    assert_eq!(status, 404);

    // A meeting placed since the last poll counts at its expected size (the default 10 here).
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    bob.room_url("room_1").await;
    let (_, body) = get(&app, "/api/v1/status", Some(TOKEN)).await;
    assert_no_secrets(&body);
    let v: Value = serde_json::from_str(&body).unwrap();
    let server = |id: bbb_gateway::ids::ServerId| {
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id.get())
            .unwrap()
            .clone()
    };
    let (s1, s2) = (server(id1), server(id2));
    assert_eq!(s1["capacity"], 50, "{s1}");
    let occupancy = s1["occupancy"].as_i64().unwrap();
    assert_eq!(s1["headroom"].as_i64(), Some(50 - occupancy), "{s1}");
    assert_eq!(s1["capacity_used"].as_f64(), Some(occupancy as f64 / 50.0));
    assert!(s2["capacity"].is_null() && s2["headroom"].is_null(), "{s2}");
    assert_eq!(
        s1["occupancy"].as_u64().unwrap() + s2["occupancy"].as_u64().unwrap(),
        10,
        "one new meeting of the default size"
    );
    assert_eq!(v["totals"]["capacity"], 50);
    assert_eq!(v["totals"]["unlimited_servers"], 1);
    assert_eq!(v["totals"]["occupancy"], 10);

    let (_, text) = get(&app, "/metrics", None).await;
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let gauge = |server: &str, figure: &str| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "bbb_gateway_server"
                    && s.labels.get("server") == Some(server)
                    && s.labels.get("figure") == Some(figure)
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("unexpected {other:?}"),
            })
    };
    let one = id1.to_string();
    let two = id2.to_string();
    assert_eq!(gauge(&one, "capacity"), Some(50.0));
    assert_eq!(gauge(&one, "headroom"), Some(50.0 - occupancy as f64));
    assert_eq!(gauge(&one, "occupancy"), Some(occupancy as f64));
    assert_eq!(
        gauge(&two, "capacity"),
        None,
        "unlimited: no capacity gauge"
    );
    assert!(gauge(&two, "occupancy").is_some());
    for counter in [
        "bbb_gateway_placements_over_capacity_total",
        "bbb_gateway_placements_refused_full_total",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == counter),
            "{counter} missing"
        );
    }

    // null lifts the limit.
    let (status, body) = post(&app, &path, Some(TOKEN), r#"{"capacity": null}"#).await;
    assert_eq!((status, &body["capacity"]), (200, &Value::Null), "{body}");
    let (_, body) = get(&app, "/api/v1/status", Some(TOKEN)).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["capacity"].is_null()));
}

#[actix_web::test]
async fn calls_api_creates_joinable_calls() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let (_sim, _) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (status, body) = post(
        &app,
        "/api/v1/worlds/w1/calls",
        Some(TOKEN),
        r#"{"members": ["bob", "carol"]}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let reply = bob.request("bbb.call_url", 1, json!({"call": id})).await;
    assert_eq!(reply[0], "success", "{reply}");

    let (status, _) = post(
        &app,
        "/api/v1/worlds/nope/calls",
        Some(TOKEN),
        r#"{"members": ["bob"]}"#,
    )
    .await;
    assert_eq!(status, 404);
    for bad in [
        r#"{"members": []}"#,
        r#"{}"#,
        r#"{"members": "bob"}"#,
        "not json",
        r#"{"members": [""]}"#,
    ] {
        let (status, body) = post(&app, "/api/v1/worlds/w1/calls", Some(TOKEN), bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
}

#[actix_web::test]
async fn metrics_parse_and_count() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let (_sim, _) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    bob.request("bbb.room_url", 1, json!({"room": "room_1"}))
        .await;
    bob.request("bbb.room_url", 2, json!({"room": "nope"}))
        .await;
    let (status, text) = get(&app, "/metrics", None).await;
    assert_eq!(status, 200);
    assert_no_secrets(&text);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let find = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    };
    let value = |s: Option<&prometheus_parse::Sample>| match s.map(|s| &s.value) {
        Some(prometheus_parse::Value::Counter(v))
        | Some(prometheus_parse::Value::Gauge(v))
        | Some(prometheus_parse::Value::Untyped(v)) => *v,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(value(find("bbb_gateway_sessions_connected", &[])), 1.0);
    assert_eq!(
        value(find(
            "bbb_gateway_requests_total",
            &[("command", "bbb.room_url"), ("result", "success")]
        )),
        1.0
    );
    assert_eq!(
        value(find(
            "bbb_gateway_requests_total",
            &[("command", "bbb.room_url"), ("result", "room.unknown")]
        )),
        1.0
    );
    assert!(
        value(find(
            "bbb_gateway_bbb_api_calls_total",
            &[("call", "create"), ("outcome", "ok")]
        )) >= 1.0
    );
    assert!(
        value(find(
            "bbb_gateway_bbb_api_calls_total",
            &[("call", "getMeetings"), ("outcome", "ok")]
        )) >= 1.0
    );
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric.starts_with("bbb_gateway_bbb_api_latency_seconds")));
    assert_eq!(value(find("bbb_gateway_creates_sent_total", &[])), 1.0);
    assert_eq!(
        value(find("bbb_gateway_server", &[("figure", "online")])),
        1.0
    );
    assert_eq!(
        value(find("bbb_gateway_server", &[("figure", "enabled")])),
        1.0
    );
    assert!(find("bbb_gateway_creates_saved_by_single_flight_total", &[]).is_some());
}
