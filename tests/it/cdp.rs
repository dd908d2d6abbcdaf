//! Headless Chromium driven over the Chrome DevTools Protocol, the WebSocket Chromium opens
//! with `--remote-debugging-port`: enough to load a page, evaluate script, answer JavaScript
//! dialogs and take screenshots, with no WebDriver and nothing but Chromium installed.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::web::{Bytes, BytesMut};
use awc::ws::{self, Frame};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

/// How long one step (start, a page condition, a dialog) may take on a busy machine.
pub const STEP: Duration = Duration::from_secs(45);

/// The Chromium binary: `$CHROMIUM`, else Debian's or Ubuntu's usual paths.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

type Socket = actix_codec::Framed<awc::BoxedSocket, ws::Codec>;

/// One headless Chromium with one page, stopped (and its profile removed) on drop.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: Socket,
    next_id: u64,
    replies: HashMap<u64, Value>,
    events: VecDeque<Value>,
    partial: Option<BytesMut>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the DevTools port Chromium writes into its profile once it listens.
async fn devtools_port(profile: &Path, child: &mut Child) -> Result<u16, String> {
    let file = profile.join("DevToolsActivePort");
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok()) {
                return Ok(port);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("chromium exited at start ({status})"));
        }
        if started.elapsed() > STEP {
            return Err("chromium opened no DevTools port".into());
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Browser {
    /// Starts `bin` headless with a `width` × `height` window on `about:blank` and connects to
    /// its page.
    pub async fn launch(bin: &Path, width: u32, height: u32) -> Result<Browser, String> {
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let port = match devtools_port(profile.path(), &mut child).await {
            Ok(p) => p,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let targets: Value = awc::Client::default()
            .get(format!("http://127.0.0.1:{port}/json/list"))
            .send()
            .await
            .map_err(|e| format!("DevTools target list: {e}"))?
            .json()
            .await
            .map_err(|e| format!("DevTools target list: {e}"))?;
        let page = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .ok_or_else(|| format!("no page target in {targets}"))?
            .to_owned();
        let (_, socket) = awc::Client::default()
            .ws(page)
            .max_frame_size(64 << 20)
            .connect()
            .await
            .map_err(|e| format!("DevTools socket: {e}"))?;
        let mut browser = Browser {
            child,
            _profile: profile,
            socket,
            next_id: 1,
            replies: HashMap::new(),
            events: VecDeque::new(),
            partial: None,
        };
        browser.call("Page.enable", json!({})).await?;
        browser.call("Runtime.enable", json!({})).await?;
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await?;
        Ok(browser)
    }

    /// Sends a command without waiting for its reply; returns its id.
    pub async fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let text = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket
            .send(ws::Message::Text(text.into()))
            .await
            .expect("send to chromium");
        id
    }

    /// Reads one message from Chromium and files it as a reply or an event.
    async fn read_one(&mut self, within: Duration) -> Result<(), String> {
        let frame = actix_web::rt::time::timeout(within, self.socket.next())
            .await
            .map_err(|_| "chromium sent nothing in time".to_string())?
            .ok_or("the DevTools socket closed")?
            .map_err(|e| format!("DevTools socket: {e}"))?;
        let text: Bytes = match frame {
            Frame::Text(b) => b,
            Frame::Continuation(item) => {
                use actix_http::ws::Item;
                match item {
                    Item::FirstText(b) => {
                        self.partial = Some(BytesMut::from(&b[..]));
                        return Ok(());
                    }
                    Item::Continue(b) => {
                        if let Some(p) = self.partial.as_mut() {
                            p.extend_from_slice(&b);
                        }
                        return Ok(());
                    }
                    Item::Last(b) => {
                        let mut p = self.partial.take().unwrap_or_default();
                        p.extend_from_slice(&b);
                        p.freeze()
                    }
                    Item::FirstBinary(_) => return Ok(()),
                }
            }
            Frame::Ping(p) => {
                let _ = self.socket.send(ws::Message::Pong(p)).await;
                return Ok(());
            }
            Frame::Close(reason) => return Err(format!("chromium closed the socket: {reason:?}")),
            _ => return Ok(()),
        };
        let v: Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
        match v["id"].as_u64() {
            Some(id) => {
                self.replies.insert(id, v);
            }
            None => self.events.push_back(v),
        }
        Ok(())
    }

    /// The reply to command `id`; `Err` with Chromium's error.
    pub async fn reply(&mut self, id: u64) -> Result<Value, String> {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(v) = self.replies.remove(&id) {
                if v.get("error").is_some() {
                    return Err(format!("chromium: {}", v["error"]));
                }
                return Ok(v["result"].clone());
            }
            self.read_one(deadline.saturating_duration_since(Instant::now()))
                .await?;
        }
    }

    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.send(method, params).await;
        self.reply(id).await
    }

    /// Waits for the next event named `method` (earlier ones of other names are dropped).
    pub async fn event(&mut self, method: &str) -> Value {
        let deadline = Instant::now() + STEP;
        loop {
            while let Some(e) = self.events.pop_front() {
                if e["method"] == method {
                    return e["params"].clone();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(e) = self.read_one(left).await {
                panic!("no {method} event: {e}");
            }
        }
    }

    /// Loads `url` and waits until its document has loaded.
    pub async fn navigate(&mut self, url: &str) {
        self.events.clear();
        self.call("Page.navigate", json!({ "url": url }))
            .await
            .expect("navigate");
        self.event("Page.loadEventFired").await;
    }

    /// Evaluates `expression` in the page (promises awaited) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await
            .expect("Runtime.evaluate");
        if let Some(ex) = result.get("exceptionDetails") {
            panic!("{expression}: {ex}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is truthy; panics naming `what` and showing `explain`
    /// (another expression, evaluated then) after [`STEP`].
    pub async fn wait_for(&mut self, what: &str, expression: &str, explain: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.eval(expression).await;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return v;
            }
            if started.elapsed() > STEP {
                let seen = self.eval(explain).await;
                panic!("the page never showed {what}; it shows: {seen}");
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Evaluates `expression` (a click) that opens a JavaScript dialog, answers it with
    /// `accept`, and returns the dialog's message.
    pub async fn answer_dialog(&mut self, expression: &str, accept: bool) -> String {
        self.events.clear();
        let id = self
            .send(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        let dialog = self.event("Page.javascriptDialogOpening").await;
        self.call("Page.handleJavaScriptDialog", json!({ "accept": accept }))
            .await
            .expect("answer the dialog");
        self.reply(id).await.expect("the click");
        dialog["message"].as_str().unwrap_or_default().to_owned()
    }

    /// Writes a PNG of the page to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await
            .expect("screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("base64 PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }
}
