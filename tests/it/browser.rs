//! Headless Chromium runs a small page of ours that talks to the gateway the way the venueless
//! frontend does: it authenticates as soon as the socket opens, pings every 10 s, makes calls
//! with increasing integer ids and a 15 s timeout, reconnects a second after the socket
//! closes, asks for `bbb.room_url` and loads the URL in an iframe. The bbb-sim page in that
//! (cross-origin) iframe reports back with `postMessage`; the page reports its progress to this
//! test over HTTP. Then the gateway restarts on the same port and database, and the page must
//! reconnect and join again.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use bbb_gateway::bbb::{ChecksumAlgorithm, Secret};
use bbb_gateway::config::SessionConfig;
use bbb_gateway::coordinator::{PollNow, ReloadServers};
use bbb_gateway::db::servers::{self, NewServer};
use bbb_gateway::startup::{Application, Stopper};
use serde_json::{json, Value};

use crate::fleet::{sim_secret, start_sim};
use crate::helpers::{sample_world, test_settings, token_for};

/// How long the page may take for each step (a cold Chromium on a busy machine is slow).
const STEP: Duration = Duration::from_secs(60);

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>frontend-like client</title>
<iframe id="call" width="800" height="500"></iframe>
<script>
const WS_URL = __WS_URL__, TOKEN = __TOKEN__, ROOM = __ROOM__;
function report(event, data) {
  fetch('/report', {method: 'POST', headers: {'content-type': 'application/json'},
    body: JSON.stringify(Object.assign({event: event, at: Date.now()}, data || {}))});
}
window.addEventListener('error', (e) => report('js_error', {message: String(e.message)}));
window.addEventListener('message', (e) => {
  if (e.data && e.data.bbbSim) report('sim_joined', {sim: e.data.bbbSim, origin: e.origin});
});
let socket = null, nextId = 1, pending = {}, latestPong = 0;
function connect() {
  const s = new WebSocket(WS_URL);
  socket = s;
  s.addEventListener('open', () => {
    report('open');
    s.send(JSON.stringify(['authenticate', {token: TOKEN}]));
  });
  s.addEventListener('close', (e) => {
    report('closed', {code: e.code});
    for (const id in pending) { pending[id].reject({code: 'closed'}); }
    pending = {};
    setTimeout(connect, 1000);
  });
  s.addEventListener('message', (e) => {
    const m = JSON.parse(e.data);
    if (m[0] === 'authenticated') {
      report('authenticated', {keys: Object.keys(m[1]).sort()});
      setTimeout(() => ping(s), 10000);
      join();
    } else if (m[0] === 'pong') {
      latestPong = Date.now();
      report('pong');
    } else if ((m[0] === 'success' || m[0] === 'error') && pending[m[1]]) {
      const call = pending[m[1]];
      delete pending[m[1]];
      if (m[0] === 'success') call.resolve(m[2]); else call.reject(m[2]);
    } else if (m[0] === 'error') {
      report('error_event', {frame: m});
    } else {
      report('unmatched', {frame: m});
    }
  });
}
function ping(s) {
  if (s !== socket || s.readyState !== 1) return;
  const ts = Date.now();
  s.send(JSON.stringify(['ping', ts]));
  setTimeout(() => {
    if (s !== socket || s.readyState !== 1) return;
    if (ts > latestPong) { report('ping_timeout'); s.close(); } else ping(s);
  }, 10000);
}
function call(name, data) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending[id] = {resolve, reject};
    socket.send(JSON.stringify([name, id, data]));
    setTimeout(() => {
      if (pending[id]) { delete pending[id]; reject({code: 'timeout'}); }
    }, 15000);
  });
}
async function join() {
  try {
    await call('room.enter', {room: ROOM});
    const reply = await call('bbb.room_url', {room: ROOM});
    report('url', {url: reply.url});
    document.getElementById('call').src = reply.url;
  } catch (e) {
    report('join_failed', {error: e});
  }
}
connect();
</script>
"#;

/// What the page reported, in order.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<Value>>>);

impl Reports {
    fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn count(&self, event: &str) -> usize {
        self.all().iter().filter(|r| r["event"] == event).count()
    }

    /// Waits until the page reported `event` `n` times; panics with everything reported
    /// after [`STEP`], or when the browser is gone.
    async fn wait_for(&self, event: &str, n: usize, browser: &mut Browser) {
        let started = Instant::now();
        while self.count(event) < n {
            if let Some(status) = browser.0.try_wait().expect("browser status") {
                panic!(
                    "the browser exited ({status}); the page reported {:#?}",
                    self.all()
                );
            }
            assert!(
                started.elapsed() < STEP,
                "no {event} #{n} within {STEP:?}; the page reported {:#?}",
                self.all()
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The page's own server: the page, and where it reports.
async fn page_server(page: String, reports: Reports) -> u16 {
    let server = HttpServer::new(move || {
        let page = page.clone();
        let reports = reports.clone();
        App::new()
            .route(
                "/page",
                web::get().to(move || {
                    let page = page.clone();
                    async move {
                        HttpResponse::Ok()
                            .content_type("text/html; charset=utf-8")
                            .body(page)
                    }
                }),
            )
            .route(
                "/report",
                web::post().to(move |body: web::Json<Value>| {
                    let reports = reports.clone();
                    async move {
                        reports
                            .0
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(body.into_inner());
                        HttpResponse::NoContent().finish()
                    }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("bind the page server");
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    port
}

/// A headless Chromium, stopped (SIGTERM, then SIGKILL) on drop.
struct Browser(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: signals the browser process this test started and still owns.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Chromium binary: `$CHROMIUM`, or the first of the usual names found on `PATH`.
fn find_chromium() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|p| p.is_file())
}

fn start_browser(chromium: &std::path::Path, url: &str) -> std::io::Result<Browser> {
    let profile = tempfile::tempdir()?;
    let child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Browser(child, profile))
}

/// Builds and runs a gateway on `settings`, with the BBB servers of its database polled;
/// returns its port and stopper.
async fn run_gateway(settings: &bbb_gateway::config::Settings) -> (u16, Stopper) {
    let started = Instant::now();
    let app = loop {
        // The port of a stopped instance may take a moment to be free again.
        match Application::build_with(settings.clone(), SessionConfig::default()).await {
            Ok(app) => break app,
            Err(e) if started.elapsed() < STEP => {
                eprintln!("gateway not up yet: {e:#}");
                actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the gateway does not start: {e:#}"),
        }
    };
    let port = app.port();
    let stopper = app.stopper();
    let coordinator = app.state().coordinator.clone();
    actix_web::rt::spawn(app.run_until_stopped());
    coordinator.send(ReloadServers).await.unwrap().unwrap();
    coordinator.send(PollNow).await.unwrap();
    (port, stopper)
}

#[actix_web::test]
async fn a_browser_joins_through_the_iframe_and_again_after_a_gateway_restart() {
    let Some(chromium) = find_chromium() else {
        eprintln!(
            "\n!!! SKIPPED browser test: no Chromium found (set CHROMIUM or install the \
             `chromium` package, as .ci/run does) !!!\n"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&dir);
    // The world and a BBB server, stored in the database both gateway instances use.
    let sim = start_sim(1).await;
    let file = bbb_gateway::world::parse_world_file(&sample_world("w").to_string()).unwrap();
    let new_server = NewServer {
        url: sim.base_url(),
        secret: Secret::new(sim_secret(1)),
        checksum: ChecksumAlgorithm::Sha256,
        weight: 1.0,
        tag: None,
        world_id: None,
        capacity: None,
    };
    let db_settings = settings.clone();
    web::block(move || -> anyhow::Result<()> {
        let db = bbb_gateway::startup::open_database(&db_settings)?;
        let mut conn = db.get()?;
        bbb_gateway::world::import_world(&mut conn, &file)?;
        servers::add(&mut conn, &new_server)?;
        Ok(())
    })
    .await
    .unwrap()
    .unwrap();
    let (port, stopper) = run_gateway(&settings).await;
    // The restarted instance listens on the same port.
    settings.http.listen = format!("127.0.0.1:{port}").parse().unwrap();

    let reports = Reports::default();
    let page = PAGE
        .replace(
            "__WS_URL__",
            &json!(format!("ws://127.0.0.1:{port}/ws/world/w/")).to_string(),
        )
        .replace(
            "__TOKEN__",
            &json!(token_for("browser", &[], Some("Browser User"))).to_string(),
        )
        .replace("__ROOM__", &json!("room_1").to_string());
    let page_port = page_server(page, reports.clone()).await;
    let page_url = format!("http://127.0.0.1:{page_port}/page");
    let mut browser = match start_browser(&chromium, &page_url) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "\n!!! SKIPPED browser test: {} cannot start: {e} !!!\n",
                chromium.display()
            );
            return;
        }
    };
    // A browser that cannot start exits at once: skip then, loudly.
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    if let Ok(Some(status)) = browser.0.try_wait() {
        if reports.all().is_empty() {
            eprintln!(
                "\n!!! SKIPPED browser test: {} exited at start ({status}) !!!\n",
                chromium.display()
            );
            return;
        }
    }

    reports.wait_for("authenticated", 1, &mut browser).await;
    reports.wait_for("sim_joined", 1, &mut browser).await;
    // The frontend's ping: 10 s after login, answered.
    reports.wait_for("pong", 1, &mut browser).await;

    // Restart: the page sees 1001, reconnects while the gateway is down, and joins again.
    let restarted = Instant::now();
    stopper.shut_down().await;
    reports.wait_for("closed", 1, &mut browser).await;
    let (_port, second) = run_gateway(&settings).await;
    reports.wait_for("authenticated", 2, &mut browser).await;
    reports.wait_for("sim_joined", 2, &mut browser).await;
    let rejoined = restarted.elapsed();

    let all = reports.all();
    eprintln!("rejoined {rejoined:?} after the restart began; the page reported {all:#?}");
    let first_close = all.iter().find(|r| r["event"] == "closed").unwrap();
    assert_eq!(first_close["code"], 1001, "{all:#?}");
    for bad in [
        "js_error",
        "join_failed",
        "ping_timeout",
        "unmatched",
        "error_event",
    ] {
        assert_eq!(reports.count(bad), 0, "{bad}: {all:#?}");
    }
    let joined: Vec<&Value> = all.iter().filter(|r| r["event"] == "sim_joined").collect();
    for j in &joined {
        assert_eq!(j["sim"]["fullName"], "Browser User");
        assert_eq!(j["sim"]["role"], "viewer");
        assert_eq!(j["origin"], format!("http://127.0.0.1:{}", sim.port()));
    }
    let keys = &all.iter().find(|r| r["event"] == "authenticated").unwrap()["keys"];
    assert_eq!(
        keys,
        &json!([
            "announcements",
            "chat.channels",
            "chat.notification_counts",
            "chat.read_pointers",
            "exhibition",
            "user.config",
            "world.config"
        ])
    );
    drop(browser);
    second.shut_down().await;
}
