//! The `/admin/` status page rendered by headless Chromium (Debian's `chromium`; `.ci/run`
//! installs it): it logs in with the token and draws one load bar per server.

use std::process::Command;

use bbb_gateway::bbb::ChecksumAlgorithm;
use serde_json::json;

use crate::fleet::*;
use crate::helpers::*;

fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// Loads `url` in headless Chromium, lets its scripts run, and returns the DOM.
async fn render(url: String) -> String {
    let Some(bin) = chromium() else {
        assert!(
            std::env::var("CI").is_err(),
            "chromium is missing on CI: .ci/run must install it"
        );
        eprintln!("skipping: chromium is not installed");
        return String::new();
    };
    let profile = tempfile::tempdir().unwrap();
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let out = actix_web::web::block(move || {
        Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=8000",
                "--dump-dom",
                &profile_arg,
                &url,
            ])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[actix_web::test]
async fn status_page_draws_servers_in_chromium() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let (_sim1, id1) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (_sim2, id2) = add_sim(&app, 2, ChecksumAlgorithm::Sha256).await;
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let url = bob.room_url("room_1").await;
    set_participants(&url, json!({"participants": 12, "voice": 4, "video": 3})).await;
    refresh(&app).await;

    let dom = render(app.admin_url("/admin/#token=test-admin-token-0123456789")).await;
    if dom.is_empty() {
        return;
    }
    assert!(dom.contains(&format!("data-server-id=\"{id1}\"")), "{dom}");
    assert!(dom.contains(&format!("data-server-id=\"{id2}\"")), "{dom}");
    assert!(dom.contains("servers online"), "{dom}");
    assert!(
        dom.contains("width: 100"),
        "the busier server has a full bar: {dom}"
    );
    assert!(
        !dom.contains("test-admin-token"),
        "the token is not shown in the page"
    );

    // a wrong token shows the login form and an error, no data
    let dom = render(app.admin_url("/admin/#token=wrong-token-wrong-token")).await;
    assert!(dom.contains("not accepted"), "{dom}");
    assert!(!dom.contains("data-server-id"), "{dom}");
}
