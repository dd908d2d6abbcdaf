//! The real binary under SIGTERM and SIGINT, as systemd or Ctrl-C stop it: open sessions get
//! close code 1001 at once and the process exits within 10 s.

use std::process::Command;
use std::time::{Duration, Instant};

use bbb_gateway::client::{Closed, WsClient};
use serde_json::json;

use crate::helpers::{sample_world, token_for};

use crate::process::{GatewayProcess, BIN};

/// Starts `serve` on a fresh database holding the sample world.
fn serve(dir: &tempfile::TempDir) -> GatewayProcess {
    let db = format!("sqlite://{}/gw.sqlite3", dir.path().display());
    let world = dir.path().join("world.json");
    std::fs::write(&world, sample_world("w").to_string()).unwrap();
    let import = Command::new(BIN)
        .args(["world", "import"])
        .arg(&world)
        .env("BBB_GATEWAY__DATABASE__URL", &db)
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    GatewayProcess::serve(&[("BBB_GATEWAY__DATABASE__URL", db)])
}

async fn exits_within(gateway: &mut GatewayProcess, bound: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if let Some(status) = gateway.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            return started.elapsed();
        }
        assert!(started.elapsed() < bound, "still running after {bound:?}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn sigterm_and_sigint_close_sessions_with_1001_and_exit_within_10_s() {
    for (name, signal) in [("SIGTERM", libc::SIGTERM), ("SIGINT", libc::SIGINT)] {
        let dir = tempfile::tempdir().unwrap();
        let mut gateway = serve(&dir);
        let url = format!("ws://127.0.0.1:{}/ws/world/w/", gateway.port);
        let mut c = WsClient::connect(&url).await.unwrap();
        let reply = c
            .authenticate(
                json!({"token": token_for("sig", &[], Some("Sig"))}),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(reply[0], "authenticated");
        let mut anonymous = WsClient::connect(&url).await.unwrap();

        let pid = i32::try_from(gateway.child.id()).unwrap();
        // SAFETY: sends a signal to the child this test started and still owns.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let sent = Instant::now();
        assert_eq!(
            c.recv_within(Duration::from_secs(10)).await,
            Err(Closed::Code(Some(1001))),
            "{name}"
        );
        assert_eq!(
            anonymous.recv_within(Duration::from_secs(10)).await,
            Err(Closed::Code(Some(1001))),
            "{name}"
        );
        let closed = sent.elapsed();
        c.close().await;
        anonymous.close().await;
        let exited = exits_within(&mut gateway, Duration::from_secs(10)).await;
        eprintln!("{name}: sessions closed after {closed:?}, process exited {exited:?} later");
    }
}
