//! A throwaway PostgreSQL for the tests of one process when `DATABASE_URL_PG` names none:
//! `initdb` into a temp directory, then `pg_ctl start` on 127.0.0.1 and a free port, with
//! durability off. PostgreSQL refuses to run as root, so as root it runs as the `postgres` user
//! (`runuser`) in a directory that user owns, as `.ci/run` does.
//!
//! Cleanup cannot rely on destructors (statics are never dropped) nor on the process exiting
//! politely. A watchdog shell waits on a pipe whose only writer is this process: however the
//! process ends, the kernel closes the pipe, the watchdog's `read` returns, and it stops the
//! server and removes the directory.

use std::ffi::OsString;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// The watchdog's pipe, held open (never written) for the life of the process.
static WATCHDOG: Mutex<Option<ChildStdin>> = Mutex::new(None);

/// The unprivileged user PostgreSQL runs as when this process is root.
const PG_USER: &str = "postgres";

/// Starts a server and returns its base URL; `Ok(None)` when PostgreSQL is not installed.
pub(super) fn start() -> io::Result<Option<String>> {
    let Some(bin) = find_bin_dir() else {
        return Ok(None);
    };
    let as_root = is_root();
    let dir = std::env::temp_dir().join(format!(
        "bbb-gateway-test-pg-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir(&dir)?;
    if as_root {
        let (uid, gid) = user_ids(PG_USER)?;
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
    }
    // The watchdog first, so whatever the steps below leave behind is cleaned up.
    start_watchdog(&bin, &dir, as_root)?;
    let data = dir.join("data");
    run(
        pg_command(as_root, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync"),
        "initdb",
    )?;
    // A port that was free a moment ago can be taken before the server binds it: try again.
    let mut last_error = None;
    for _ in 0..3 {
        let port = free_port()?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            dir.display()
        );
        let started = run(
            pg_command(as_root, &bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-w", "-t", "60", "-l"])
                .arg(dir.join("server.log"))
                .args(["-o", &options, "start"]),
            "pg_ctl start",
        );
        match started {
            Ok(()) => {
                return Ok(Some(format!(
                    "postgres://postgres@127.0.0.1:{port}/postgres"
                )))
            }
            Err(e) => last_error = Some(e),
        }
    }
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    Err(io::Error::other(format!(
        "{}; server log ends: {}",
        last_error.map_or_else(|| "no attempt".into(), |e| e.to_string()),
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    )))
}

/// The directory holding `initdb` and `pg_ctl`: on `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian and Ubuntu keep them there).
fn find_bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d)) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of `user`, from `/etc/passwd`.
fn user_ids(user: &str) -> io::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&user))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .ok_or_else(|| {
            io::Error::other(format!(
                "running as root, PostgreSQL needs a `{user}` user to run as, and there is none"
            ))
        })
}

/// `program`, run as [`PG_USER`] when this process is root.
fn pg_command(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", PG_USER, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Runs `command` to completion; its output only shows up in the error.
fn run(command: &mut Command, what: &str) -> io::Result<()> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::other(format!("cannot run {what}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts the shell that stops the server in `dir` and removes `dir` once this process is
/// gone. Rust creates the pipe close-on-exec, so no other child (the server included) holds
/// its write end open.
fn start_watchdog(bin: &Path, dir: &Path, as_root: bool) -> io::Result<()> {
    let mut stop: Vec<OsString> = Vec::new();
    if as_root {
        stop.extend(["runuser", "-u", PG_USER, "--"].map(OsString::from));
    }
    stop.push(bin.join("pg_ctl").into());
    stop.push("-D".into());
    stop.push(dir.join("data").into());
    stop.extend(["-m", "immediate", "stop"].map(OsString::from));
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#"read line; "$@" >/dev/null 2>&1; rm -rf "$0""#)
        .arg(dir)
        .args(stop)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pipe = child
        .stdin
        .ok_or_else(|| io::Error::other("the watchdog has no stdin"))?;
    *WATCHDOG.lock().unwrap_or_else(|e| e.into_inner()) = Some(pipe);
    Ok(())
}
