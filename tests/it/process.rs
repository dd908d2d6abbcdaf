//! The real `bbb-gateway serve` binary as a child process, for what only a process shows
//! (signals, SIGKILL, a restart).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_bbb-gateway");

/// A running `serve` and the ports it listens on; killed with SIGKILL when dropped.
pub struct GatewayProcess {
    pub child: Child,
    pub port: u16,
    pub admin_port: u16,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl GatewayProcess {
    /// Starts `serve` with the settings in `env` (`BBB_GATEWAY__…`), both listeners on port 0,
    /// and waits until it reports both ports on stderr.
    pub fn serve(env: &[(&str, String)]) -> GatewayProcess {
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .env("BBB_GATEWAY__HTTP__LISTEN", "127.0.0.1:0")
            .env("BBB_GATEWAY__HTTP__ADMIN_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for (prefix, admin) in [
                    ("bbb-gateway listening on port ", false),
                    ("admin routes listening on port ", true),
                ] {
                    if let Some(port) = line
                        .split(prefix)
                        .nth(1)
                        .and_then(|p| p.trim().parse::<u16>().ok())
                    {
                        let _ = tx.send((admin, port));
                    }
                }
            }
        });
        let mut process = GatewayProcess {
            child,
            port: 0,
            admin_port: 0,
        };
        while process.port == 0 || process.admin_port == 0 {
            let (admin, port) = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the gateway reports its ports");
            if admin {
                process.admin_port = port;
            } else {
                process.port = port;
            }
        }
        process
    }
}
