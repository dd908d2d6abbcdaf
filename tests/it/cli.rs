//! The `bbb-gateway` admin command line, run as an operator would.

use std::io::Write;
use std::process::{Command, Output};

use bbb_gateway::bbb::ChecksumAlgorithm;

use crate::admin::{post_state, TOKEN};
use crate::fleet::{add_sim, port_of};
use crate::helpers::{sample_world, spawn_app, WORLD_SECRET};

use crate::process::BIN;

/// A temp database and config file shared by the commands of one test.
struct Env {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gw.toml");
        let mut f = std::fs::File::create(&config).unwrap();
        writeln!(
            f,
            "[database]\nurl = \"sqlite://{}/cli.sqlite3\"",
            dir.path().display()
        )
        .unwrap();
        Env { dir, config }
    }

    /// A config file with `text` (besides the database) in place of the default one.
    fn configure(&mut self, name: &str, text: &str) {
        let path = self.dir.path().join(name);
        let database = format!(
            "[database]\nurl = \"sqlite://{}/cli.sqlite3\"\n",
            self.dir.path().display()
        );
        std::fs::write(&path, format!("{text}\n{database}")).unwrap();
        self.config = path;
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }

    /// Runs the command off the test's runtime, so an in-process gateway keeps answering.
    async fn run_async(&self, args: &[&str]) -> Output {
        let config = self.config.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        actix_web::web::block(move || {
            Command::new(BIN)
                .arg("--config")
                .arg(config)
                .args(args)
                .env("RUST_LOG", "warn")
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

#[test]
fn world_import_export_and_token() {
    let env = Env::new();
    env.ok(&["migrate"]);
    let file = env.write("w.json", &sample_world("cli").to_string());
    let out = env.ok(&["world", "import", &file]);
    assert!(out.contains("cli"), "{out}");
    env.ok(&["world", "import", &file]); // idempotent
    let exported: serde_json::Value =
        serde_json::from_str(&env.ok(&["world", "export", "cli"])).unwrap();
    assert_eq!(exported["id"], "cli");
    assert_eq!(exported["rooms"].as_array().unwrap().len(), 3);

    // a bad file changes nothing and names the JSON path
    let mut bad = sample_world("cli");
    bad["title"] = serde_json::json!("Changed");
    bad["rooms"][1]["modules"][0]["config"] = serde_json::json!("not an object");
    let bad_file = env.write("bad.json", &bad.to_string());
    let err = env.fails(&["world", "import", &bad_file]);
    assert!(err.contains("rooms[1]"), "{err}");
    let again: serde_json::Value =
        serde_json::from_str(&env.ok(&["world", "export", "cli"])).unwrap();
    assert_eq!(again["title"], "Sample Conference");
    assert!(env.fails(&["world", "export", "nope"]).contains("nope"));

    // a JWT secret shorter than 32 bytes is refused, naming its path but not the secret
    let mut short = sample_world("cli");
    short["jwt_secrets"].as_array_mut().unwrap().push(
        serde_json::json!({"issuer": "x", "audience": "y", "secret": "only-20-bytes-secret"}),
    );
    let short_file = env.write("short.json", &short.to_string());
    let err = env.fails(&["world", "import", &short_file]);
    assert!(err.contains("jwt_secrets[1].secret"), "{err}");
    assert!(err.contains("32 bytes"), "{err}");
    assert!(!err.contains("only-20-bytes-secret"), "{err}");

    let token = env.ok(&[
        "token", "--world", "cli", "--uid", "zoe", "--traits", "a,b", "--name", "Zoe",
    ]);
    let secrets = vec![bbb_gateway::world::JwtSecret {
        issuer: "any".into(),
        audience: "venueless".into(),
        secret: WORLD_SECRET.into(),
    }];
    let claims = bbb_gateway::auth::verify_token(token.trim(), &secrets).unwrap();
    assert_eq!(claims.uid, "zoe");
    assert_eq!(claims.traits, vec!["a", "b"]);
    assert_eq!(claims.profile.unwrap()["display_name"], "Zoe");
}

#[test]
fn server_commands_manage_the_fleet() {
    let env = Env::new();
    let secret = "cli-server-secret-must-not-leak";
    let id = env.ok(&[
        "server",
        "add",
        "--url",
        "https://bbb1.example.org/bigbluebutton/api/",
        "--secret",
        secret,
        "--checksum",
        "sha1",
        "--weight",
        "2",
        "--tag",
        "big",
    ]);
    let id = id.trim().to_owned();
    assert!(id.parse::<i32>().is_ok(), "{id}");
    let id2 = env.ok(&[
        "server",
        "add",
        "--url",
        "https://bbb2.example.org/bigbluebutton",
        "--secret",
        "x2-secret",
    ]);
    let list = env.ok(&["server", "list"]);
    assert!(!list.contains(secret), "{list}");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[0].starts_with("id"));
    for col in [
        "url",
        "state",
        "online",
        "meetings",
        "participants",
        "videos",
        "load",
        "weight",
        "tag",
    ] {
        assert!(lines[0].contains(col), "{col} missing: {list}");
    }
    // aligned: the url column starts at the same offset on every line
    let offset = lines[0].find("url").unwrap();
    assert_eq!(lines[1].find("https://").unwrap(), offset, "{list}");
    assert_eq!(lines[2].find("https://").unwrap(), offset, "{list}");
    assert!(
        lines[1].contains("https://bbb1.example.org/bigbluebutton "),
        "normalised: {list}"
    );
    assert!(lines[1].contains("big"));

    env.ok(&["server", "set-state", &id, "cordoned"]);
    assert!(env
        .ok(&["server", "list"])
        .lines()
        .nth(1)
        .unwrap()
        .contains("cordoned"));
    assert!(env
        .fails(&["server", "set-state", &id, "sleeping"])
        .contains("sleeping"));
    assert!(env
        .fails(&["server", "set-state", "999", "enabled"])
        .contains("999"));
    env.ok(&["server", "panic", &id]);
    env.ok(&["server", "remove", id2.trim()]);
    assert_eq!(env.ok(&["server", "list"]).lines().count(), 2);
    assert!(env.fails(&["server", "remove", "999"]).contains("999"));
    // duplicates and bad input are refused with a reason
    assert!(env
        .fails(&[
            "server",
            "add",
            "--url",
            "https://bbb1.example.org/bigbluebutton",
            "--secret",
            "s"
        ])
        .contains("already"));
    env.fails(&["server", "add", "--url", "ftp://x", "--secret", "s"]);
    env.fails(&[
        "server",
        "add",
        "--url",
        "https://x.org/b",
        "--secret",
        "s",
        "--weight",
        "0",
    ]);
}

#[test]
fn server_capacity_is_set_listed_and_checked() {
    let env = Env::new();
    let add = |url: &str, extra: &[&str]| {
        let mut args = vec!["server", "add", "--url", url, "--secret", "cap-secret"];
        args.extend_from_slice(extra);
        env.ok(&args).trim().to_owned()
    };
    let big = add(
        "https://bbb1.example.org/bigbluebutton",
        &["--capacity", "500"],
    );
    let free = add("https://bbb2.example.org/bigbluebutton", &[]);
    let list = env.ok(&["server", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[0].contains("capacity") && lines[0].contains("occupancy"),
        "{list}"
    );
    let cap_col = lines[0].find("capacity").unwrap();
    assert_eq!(
        lines[1][cap_col..].split_whitespace().next(),
        Some("500"),
        "{list}"
    );
    assert_eq!(
        lines[2][cap_col..].split_whitespace().next(),
        Some("unlimited"),
        "{list}"
    );

    let out = env.ok(&["server", "set-capacity", &free, "250"]);
    assert!(out.contains("250"), "{out}");
    env.ok(&["server", "set-capacity", &big, "none"]);
    let list = env.ok(&["server", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(
        lines[1][cap_col..].split_whitespace().next(),
        Some("unlimited"),
        "{list}"
    );
    assert_eq!(
        lines[2][cap_col..].split_whitespace().next(),
        Some("250"),
        "{list}"
    );

    // Bad values are refused with a reason and change nothing.
    for bad in ["0", "-3", "lots", "1000001"] {
        let err = env.fails(&["server", "set-capacity", &free, bad]);
        assert!(
            err.contains("capacity") || err.contains(bad),
            "{bad}: {err}"
        );
    }
    assert!(env
        .fails(&["server", "set-capacity", "999", "10"])
        .contains("999"));
    let err = env.fails(&[
        "server",
        "add",
        "--url",
        "https://bbb3.example.org/bigbluebutton",
        "--secret",
        "s",
        "--capacity",
        "0",
    ]);
    assert!(err.contains("capacity"), "{err}");
    let list = env.ok(&["server", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    assert_eq!(
        list.lines().nth(2).unwrap()[cap_col..]
            .split_whitespace()
            .next(),
        Some("250")
    );
}

#[test]
fn call_create_prints_an_id() {
    let env = Env::new();
    let file = env.write("w.json", &sample_world("cw").to_string());
    env.ok(&["world", "import", &file]);
    let id = env.ok(&["call", "create", "--world", "cw", "--members", "alice,bob"]);
    assert!(uuid::Uuid::parse_str(id.trim()).is_ok(), "{id}");
    env.fails(&["call", "create", "--world", "nope", "--members", "alice"]);
}

#[test]
fn configuration_errors_name_the_key() {
    let env = Env::new();
    let bad = env.write("bad.toml", "[bbb]\npoll_interval_secs = 0\n");
    let out = Command::new(BIN)
        .args(["migrate", "--config", &bad])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bbb.poll_interval_secs"));
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent.toml", "migrate"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(BIN)
        .args(["--config"])
        .arg(&env.config)
        .arg("migrate")
        .env("BBB_GATEWAY__HTTP__LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("http.listen"));
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["server", "--help"],
        vec!["server", "add", "--help"],
        vec!["server", "list", "--help"],
        vec!["server", "set-state", "--help"],
        vec!["server", "set-capacity", "--help"],
        vec!["server", "panic", "--help"],
        vec!["server", "remove", "--help"],
        vec!["world", "import", "--help"],
        vec!["world", "export", "--help"],
        vec!["call", "create", "--help"],
        vec!["token", "--help"],
        vec!["client", "--help"],
        vec!["room", "--help"],
        vec!["room", "move", "--help"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

/// `stdout` of a command that succeeded, `stderr` of one that failed.
fn outcome(out: &Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[actix_web::test]
async fn room_move_asks_the_running_gateway() {
    let app = spawn_app().await;
    app.import_world(&sample_world("w1")).await;
    let (sim1, id1) = add_sim(&app, 1, ChecksumAlgorithm::Sha256).await;
    let (mut bob, _) = app.ws_as("w1", "bob", &[], Some("Bob")).await;
    assert_eq!(port_of(&bob.room_url("room_1").await), sim1.port());
    let (sim2, id2) = add_sim(&app, 2, ChecksumAlgorithm::Sha256).await;
    let (id1, id2) = (id1.to_string(), id2.to_string());
    fn args(a: &[String]) -> Vec<&str> {
        a.iter().map(String::as_str).collect()
    }
    let move_to = |server: &str| {
        [
            "room", "move", "--world", "w1", "--room", "room_1", "--server", server,
        ]
        .map(str::to_owned)
    };

    // The admin listener and token come from the same configuration the server reads.
    let mut env = Env::new();
    env.configure(
        "gw.toml",
        &format!(
            "[http]\nadmin_listen = \"127.0.0.1:{}\"\n[admin]\ntokens = [\"{TOKEN}\"]",
            app.admin_port
        ),
    );
    let out = outcome(&env.run_async(&args(&move_to(&id2))).await).expect("moved");
    assert!(
        out.contains(&format!("from server {id1} to server {id2}")),
        "{out}"
    );
    assert_eq!(port_of(&bob.room_url("room_1").await), sim2.port());

    // Refusals exit non-zero with the gateway's reason.
    let status = post_state(&app, &id1, "cordoned").await;
    assert_eq!(status, 200);
    let err = outcome(&env.run_async(&args(&move_to(&id1))).await).unwrap_err();
    assert!(err.contains("409") && err.contains("cordoned"), "{err}");
    let err = outcome(&env.run_async(&args(&move_to("4242"))).await).unwrap_err();
    assert!(err.contains("404") && err.contains("4242"), "{err}");
    assert_eq!(port_of(&bob.room_url("room_1").await), sim2.port());

    // --url and --token override the configuration.
    env.configure(
        "elsewhere.toml",
        "[http]\nadmin_listen = \"127.0.0.1:9\"\n[admin]\ntokens = [\"not-the-gateways-token-xxxxxxxx\"]",
    );
    let err = outcome(&env.run_async(&args(&move_to(&id2))).await).unwrap_err();
    assert!(
        err.contains("cannot reach") && err.contains("127.0.0.1:9"),
        "{err}"
    );
    let mut with_url = move_to(&id2).to_vec();
    with_url.extend(["--url".into(), app.admin_url("/")]);
    let err = outcome(&env.run_async(&args(&with_url)).await).unwrap_err();
    assert!(err.contains("401"), "{err}");
    post_state(&app, &id1, "enabled").await;
    let mut overridden = move_to(&id1).to_vec();
    overridden.extend([
        "--url".into(),
        app.admin_url(""),
        "--token".into(),
        TOKEN.into(),
    ]);
    let out = outcome(&env.run_async(&args(&overridden)).await).expect("moved back");
    assert!(out.contains(&format!("to server {id1}")), "{out}");
    assert_eq!(port_of(&bob.room_url("room_1").await), sim1.port());
}
