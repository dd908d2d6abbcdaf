//! The operator dashboard (`/admin/`) in headless Chromium at 700 px: it logs in with the token
//! from the URL fragment, shows servers, meetings with their room names, moves a meeting, shows
//! an offline server with its reason, cordons a server after a confirmation, and says it is
//! stale once the gateway stops answering. Screenshots of each step are written under
//! `target/test-artifacts/dashboard/`. Without Chromium (`.ci/run` installs it) the test says
//! it skipped.

use std::path::PathBuf;

use bbb_gateway::bbb::ChecksumAlgorithm;
use serde_json::{json, Value};

use crate::admin::{get, TOKEN};
use crate::cdp::{find_chromium, Browser};
use crate::fleet::*;
use crate::helpers::*;

const WIDTH: u32 = 700;

fn artifacts() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp
        .parent()
        .map_or_else(|| tmp.clone(), PathBuf::from)
        .join("test-artifacts")
        .join("dashboard");
    std::fs::create_dir_all(&dir).expect("the artifacts folder");
    dir
}

/// The card of server `id` as the page shows it: its health, state and text.
fn card(id: impl std::fmt::Display) -> String {
    format!(
        "(() => {{ const c = document.querySelector('[data-server-id=\"{id}\"]'); \
         return c ? {{health: c.dataset.health, state: c.dataset.state, text: c.innerText}} : null; }})()"
    )
}

const PAGE_TEXT: &str = "document.body.innerText";

async fn server_status(app: &TestApp, id: bbb_gateway::ids::ServerId) -> Value {
    let (status, body) = get(app, "/api/v1/status", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.get())
        .cloned()
        .unwrap()
}

/// Readable at 700 px: nothing scrolls sideways.
async fn assert_fits(page: &mut Browser) {
    let widths = page
        .eval("[document.documentElement.scrollWidth, window.innerWidth]")
        .await;
    assert!(
        widths[0].as_u64() <= widths[1].as_u64(),
        "sideways scrolling at {WIDTH} px: {widths}"
    );
}

#[actix_web::test]
async fn the_dashboard_in_headless_chromium() {
    let Some(bin) = find_chromium() else {
        eprintln!(
            "\n!!! SKIPPED the dashboard browser test: no chromium on this machine \
             (apt-get install chromium; .ci/run installs it) !!!\n"
        );
        return;
    };
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let (sim1, id1) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    let url = bob.room_url("room_1").await;
    assert_eq!(port_of(&url), sim1.port());
    let (sim2, id2) = add_sim(&app, 2, ChecksumAlgorithm::Sha256).await;
    set_participants(&url, json!({"participants": 12, "voice": 4, "video": 3})).await;
    let (status, _) = crate::admin::post(
        &app,
        &format!("/api/v1/servers/{id2}/capacity"),
        Some(TOKEN),
        r#"{"capacity": 50}"#,
    )
    .await;
    assert_eq!(status, 200);
    refresh(&app).await;

    let mut page = match Browser::launch(&bin, WIDTH, 1000).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "\n!!! SKIPPED the dashboard browser test: {} does not start: {e} !!!\n",
                bin.display()
            );
            return;
        }
    };
    let dir = artifacts();
    let shot = async |page: &mut Browser, name: &str| {
        let path = dir.join(name);
        page.screenshot(&path).await;
        eprintln!("dashboard screenshot: {}", path.display());
    };

    // A wrong token: the login form and a reason, no data.
    page.navigate(&app.admin_url("/admin/#token=wrong-token-wrong-token"))
        .await;
    page.wait_for(
        "the login form after a wrong token",
        "document.getElementById('login').style.display === 'flex' && \
         document.getElementById('message').innerText.includes('not accepted')",
        PAGE_TEXT,
    )
    .await;
    assert_eq!(
        page.eval("document.querySelectorAll('[data-server-id]').length")
            .await,
        json!(0)
    );

    // The token from the fragment: both servers, the meeting with its room's name.
    page.navigate("about:blank").await;
    page.navigate(&app.admin_url(&format!("/admin/#token={TOKEN}")))
        .await;
    let row = format!("[data-server-id=\"{id1}\"] tr[data-room=\"room_1\"]");
    let meeting = page
        .wait_for(
            "the meeting under its server",
            &format!("document.querySelector('{row}')?.innerText"),
            PAGE_TEXT,
        )
        .await;
    let meeting = meeting.as_str().unwrap().to_owned();
    assert!(meeting.contains("Gruppenraum 1"), "{meeting}");
    assert!(meeting.contains("Sample Conference"), "{meeting}");
    assert!(meeting.contains("12"), "participants: {meeting}");
    let text = page.eval(PAGE_TEXT).await.as_str().unwrap().to_owned();
    assert!(text.contains("updated"), "{text}");
    assert!(text.contains("2 of 2 servers online"), "{text}");
    assert!(
        text.contains("No capacity set"),
        "no capacity is said: {text}"
    );
    assert!(text.contains("0 of 50 participants (0 %)"), "{text}");
    assert_eq!(
        page.eval("document.querySelectorAll('.bar').length").await,
        json!(1),
        "a bar only where there is a capacity"
    );
    assert!(text.contains("load, last hour"), "{text}");
    assert_eq!(
        page.eval("document.querySelectorAll('.spark svg').length")
            .await,
        json!(2)
    );
    // The token left the address bar and is nowhere in the page.
    assert_eq!(page.eval("location.hash").await, json!(""));
    let html = page.eval("document.documentElement.outerHTML").await;
    assert!(!html.as_str().unwrap().contains(TOKEN));
    assert_fits(&mut page).await;
    shot(&mut page, "1-overview.png").await;

    // Move the meeting to server 2 from its row: pick the target, confirm.
    page.eval(&format!(
        "document.querySelector('{row} button[data-action=\"move\"]').click()"
    ))
    .await;
    page.wait_for(
        "the move dialog",
        "document.getElementById('move-dialog').open",
        PAGE_TEXT,
    )
    .await;
    shot(&mut page, "2-move-dialog.png").await;
    let question = page
        .answer_dialog(
            &format!(
                "document.getElementById('move-target').value = '{id2}'; \
                 document.getElementById('move-go').click()"
            ),
            true,
        )
        .await;
    assert!(
        question.contains("Gruppenraum 1") && question.contains(&format!("#{id2}")),
        "{question}"
    );
    page.wait_for(
        "the meeting under its new server",
        &format!(
            "document.querySelector('[data-server-id=\"{id2}\"] tr[data-room=\"room_1\"]') \
             && document.getElementById('message').innerText.includes('Moved')"
        ),
        PAGE_TEXT,
    )
    .await;
    assert_eq!(port_of(&bob.room_url("room_1").await), sim2.port());

    // Server 1 goes away: the page says it is offline, and why.
    sim1.stop().await;
    let offline = page
        .wait_for(
            "server 1 offline",
            &format!(
                "(() => {{ const c = {}; return c && c.health === 'offline' ? c : null; }})()",
                card(id1)
            ),
            &card(id1),
        )
        .await;
    let status = server_status(&app, id1).await;
    let reason = status["last_error"].as_str().expect("a last error");
    let shown = offline["text"].as_str().unwrap();
    assert!(shown.contains(reason), "{reason:?} not in {shown}");
    assert!(shown.contains("failed poll"), "{shown}");
    assert!(shown.contains("last good poll"), "{shown}");
    assert_fits(&mut page).await;
    shot(&mut page, "3-offline.png").await;

    // Cordon server 2 with its button, accepting the confirmation.
    let question = page
        .answer_dialog(
            &format!(
                "document.querySelector('[data-server-id=\"{id2}\"] button[data-action=\"cordon\"]').click()"
            ),
            true,
        )
        .await;
    assert!(question.contains("Cordon server"), "{question}");
    page.wait_for(
        "server 2 cordoned",
        &format!("{}?.state === 'cordoned'", card(id2)),
        &card(id2),
    )
    .await;
    assert_eq!(server_status(&app, id2).await["state"], "cordoned");
    // A declined confirmation changes nothing.
    page.answer_dialog(
        &format!(
            "document.querySelector('[data-server-id=\"{id2}\"] button[data-action=\"disable\"]').click()"
        ),
        false,
    )
    .await;
    assert_eq!(server_status(&app, id2).await["state"], "cordoned");
    shot(&mut page, "4-cordoned.png").await;

    // The gateway stops: the page says its figures are stale.
    app.shut_down().await;
    let banner = page
        .wait_for(
            "the stale state",
            "document.body.classList.contains('stale') && \
             !document.getElementById('stale-banner').hidden && \
             document.getElementById('stale-banner').innerText",
            PAGE_TEXT,
        )
        .await;
    assert!(
        banner.as_str().unwrap().contains("not answering"),
        "{banner}"
    );
    assert_eq!(
        page.eval("[...document.querySelectorAll('#servers button')].every(b => b.disabled)")
            .await,
        json!(true),
        "no action on stale data"
    );
    shot(&mut page, "5-stale.png").await;
    drop(sim2);
}
