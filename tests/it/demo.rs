//! `bbb-gateway serve --demo` as a newcomer runs it: start it, then run the commands it prints.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::BIN;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Splits the printed example into words, honouring single quotes (as a shell would).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for ch in line.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

/// Starts `serve --demo` on the database `db`; returns the process and what it printed.
fn start_demo(db: &str) -> (KillOnDrop, Vec<String>) {
    let child = Command::new(BIN)
        .args(["serve", "--demo"])
        .env("BBB_GATEWAY__DATABASE__URL", db)
        .env("BBB_GATEWAY__HTTP__LISTEN", "127.0.0.1:0")
        .env("BBB_GATEWAY__HTTP__ADMIN_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let started = Instant::now();
    let mut printed = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        printed.push(line.clone());
        if line.trim_start().starts_with("try it:") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "demo did not start"
        );
    }
    (child, printed)
}

/// The value printed after `name` (e.g. `"attendee token:"`).
fn printed_field(printed: &[String], name: &str) -> String {
    printed
        .iter()
        .find_map(|l| {
            l.trim_start()
                .strip_prefix(name)
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} in {printed:?}"))
}

/// Runs `client` against `ws` with `token` and returns its output.
fn room_url_with(ws: &str, token: &str) -> std::process::Output {
    Command::new(BIN)
        .args([
            "client",
            "--url",
            ws,
            "--token",
            token,
            "bbb.room_url",
            r#"{"room": "demo-room"}"#,
        ])
        .output()
        .unwrap()
}

/// Tokens the demo printed are valid for seven days, so they must survive a restart of the
/// demo on the same data directory: the world's secret and the generated admin token are kept
/// in the database.
#[test]
fn demo_tokens_survive_a_restart_on_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/demo.sqlite3", dir.path().display());
    let (mut first, printed) = start_demo(&db);
    let attendee = printed_field(&printed, "attendee token:");
    let admin = printed_field(&printed, "admin token:");
    // SAFETY: signals the child this test started and still owns.
    assert_eq!(unsafe { libc::kill(first.0.id() as i32, libc::SIGTERM) }, 0);
    let status = first.0.wait().unwrap();
    assert!(status.success(), "{status}");

    let (_second, printed) = start_demo(&db);
    assert_eq!(printed_field(&printed, "admin token:"), admin);
    let ws = printed_field(&printed, "websocket:");
    let out = room_url_with(&ws, &attendee);
    assert!(
        out.status.success(),
        "a token from the first start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("role=VIEWER"));
    let status_url = shell_words(&printed_field(&printed, "status:"))
        .pop()
        .unwrap();
    let status = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {admin}"))
        .arg(status_url)
        .output();
    if let Ok(out) = status {
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "the admin token works"
        );
    }
}

#[test]
fn demo_prints_commands_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/demo.sqlite3", dir.path().display());
    let (_child, printed) = start_demo(&db);
    let field = |name: &str| printed_field(&printed, name);
    let ws = field("websocket:");
    assert!(
        ws.starts_with("ws://127.0.0.1:") && ws.ends_with("/ws/world/demo/"),
        "{ws}"
    );
    let moderator = field("moderator token:");
    let attendee = field("attendee token:");
    let admin = field("admin token:");
    assert!(admin.len() >= 16);

    // the printed example, run as printed (with this build's binary)
    let example = shell_words(&field("try it:"));
    assert!(example[0].ends_with("bbb-gateway"), "{example:?}");
    let out = Command::new(&example[0])
        .args(&example[1..])
        .env("BBB_GATEWAY__DATABASE__URL", &db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let url = reply["url"].as_str().unwrap();
    assert!(
        url.contains("role=VIEWER") && url.contains("checksum="),
        "{url}"
    );
    assert!(example.contains(&attendee));

    // the moderator token gets a moderator URL for the same room
    let out = Command::new(BIN)
        .args([
            "client",
            "--url",
            &ws,
            "--token",
            &moderator,
            "bbb.room_url",
            r#"{"room": "demo-room"}"#,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("role=MODERATOR"));

    // the join URL works in the simulator: it redirects into the client
    let (status_line, location) = http_get_status(url);
    assert!(status_line.contains("302"), "{status_line}");
    assert!(location.contains("/client/join"), "{location}");

    // the printed status command (curl) works
    let status_cmd = shell_words(&field("status:"));
    assert_eq!(status_cmd[0], "curl");
    let out = Command::new("curl")
        .args(["-s", "-f"])
        .args(&status_cmd[1..])
        .output();
    if let Ok(out) = out {
        assert!(out.status.success());
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(status["totals"]["online"], 1);
    }

    // the admin plane is on its own port, the printed URLs reach it, the public one does not
    let ws_port = url::Url::parse(&ws).unwrap().port().unwrap();
    let page = field("dashboard:");
    let page_url = url::Url::parse(&page).unwrap();
    assert_ne!(page_url.port(), Some(ws_port), "{page}");
    assert_eq!(page_url.fragment(), Some(&*format!("token={admin}")));
    let (status_line, _) = http_get_status(page_url.as_str());
    assert!(status_line.contains("200"), "{page}: {status_line}");
    let (status_line, _) = http_get_status(&field("metrics:"));
    assert!(status_line.contains("200"), "metrics: {status_line}");
    for path in ["/api/v1/status", "/metrics", "/admin/"] {
        let (status_line, _) = http_get_status(&format!("http://127.0.0.1:{ws_port}{path}"));
        assert!(
            status_line.contains("404"),
            "{path} on the public port: {status_line}"
        );
    }
    // the printed readiness check works on the public port
    let ready = shell_words(&field("ready:"));
    assert_eq!(ready[0], "curl");
    let ready_url = url::Url::parse(&ready[1]).unwrap();
    assert_eq!(ready_url.port(), Some(ws_port));
    let (status_line, _) = http_get_status(ready_url.as_str());
    assert!(status_line.contains("200"), "readyz: {status_line}");
}

/// A minimal HTTP/1.1 GET over std (the test runs outside an actix system).
fn http_get_status(url: &str) -> (String, String) {
    use std::io::{Read, Write};
    let u = url::Url::parse(url).unwrap();
    let mut s = std::net::TcpStream::connect((u.host_str().unwrap(), u.port().unwrap())).unwrap();
    let path = format!("{}?{}", u.path(), u.query().unwrap_or(""));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf.lines().next().unwrap_or_default().to_owned();
    let location = buf
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("location:")
                .then(|| l[9..].trim().to_owned())
        })
        .unwrap_or_default();
    (status, location)
}
