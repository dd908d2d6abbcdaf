//! `bbb-gateway room move`: a move needs the running gateway's coordinator (it creates the
//! meeting on the target, then ends it where it ran), so the command asks the gateway through
//! its admin REST route instead of changing the database itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::config::Settings;

/// How long to wait for the gateway: a move creates a meeting, bounded by the join deadline.
const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Move a room's meeting to another server: created there first, then ended where it ran.
    /// Talks to the running gateway's admin listener.
    Move(MoveArgs),
}

#[derive(Debug, Args)]
pub struct MoveArgs {
    #[arg(long)]
    pub world: String,
    #[arg(long)]
    pub room: String,
    /// Id of the target server (`server list`).
    #[arg(long)]
    pub server: i32,
    /// Base URL of the gateway's admin listener [default: http:// and `http.admin_listen`].
    #[arg(long)]
    pub url: Option<String>,
    /// Admin token [default: the first of `admin.tokens`].
    #[arg(long)]
    pub token: Option<String>,
}

pub fn run(settings: &Settings, cmd: RoomCommand) -> anyhow::Result<()> {
    match cmd {
        RoomCommand::Move(args) => move_room(settings, args),
    }
}

/// Where a client on this machine reaches a listener bound to `addr` (a wildcard address is
/// reached on loopback).
fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// The route's URL under `base`, with the ids percent-encoded as path segments.
fn move_url(base: &str, world: &str, room: &str) -> anyhow::Result<url::Url> {
    let mut url = url::Url::parse(base).with_context(|| format!("--url {base:?} is not a URL"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow!("--url {base:?} cannot have a path"))?
        .pop_if_empty()
        .extend(["api", "v1", "worlds", world, "rooms", room, "move"]);
    Ok(url)
}

fn move_room(settings: &Settings, args: MoveArgs) -> anyhow::Result<()> {
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", reachable(settings.http.admin_listen)));
    let token = match args
        .token
        .clone()
        .or_else(|| settings.admin.tokens.first().cloned())
    {
        Some(t) => t,
        None => bail!("no admin token: give --token, or set admin.tokens in the configuration"),
    };
    let url = move_url(&base, &args.world, &args.room)?;
    let (status, body) = actix_web::rt::System::new().block_on(async move {
        let client = awc::Client::builder().timeout(WAIT).finish();
        let mut resp = client
            .post(url.as_str())
            .insert_header(("Authorization", format!("Bearer {token}")))
            .send_json(&json!({"server": args.server}))
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot reach the gateway's admin listener at {base} ({e}); is `bbb-gateway \
                     serve` running with this configuration? --url overrides the address"
                )
            })?;
        let body = resp
            .body()
            .await
            .context("cannot read the gateway's answer")?;
        anyhow::Ok((resp.status(), body))
    })?;
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        let why = answer["error"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("the gateway refused the move ({status}): {why}");
    }
    let from = match answer["from"].as_i64() {
        Some(id) => format!("server {id}"),
        None => "no server (it was not running)".into(),
    };
    println!(
        "moved the meeting of room {:?} in world {:?} from {from} to server {}",
        args.room, args.world, answer["to"]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:8376".parse().unwrap();
        assert_eq!(reachable(any).to_string(), "127.0.0.1:8376");
        let any6: SocketAddr = "[::]:8376".parse().unwrap();
        assert_eq!(reachable(any6).to_string(), "[::1]:8376");
        let private: SocketAddr = "10.1.2.3:9000".parse().unwrap();
        assert_eq!(reachable(private), private);
    }

    #[test]
    fn ids_are_encoded_as_path_segments() {
        let url = move_url("http://127.0.0.1:8376/", "my world", "a/b").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8376/api/v1/worlds/my%20world/rooms/a%2Fb/move"
        );
        let under = move_url("https://gw.example.org/admin-api", "w", "r").unwrap();
        assert_eq!(
            under.as_str(),
            "https://gw.example.org/admin-api/api/v1/worlds/w/rooms/r/move"
        );
        assert!(move_url("not a url", "w", "r").is_err());
    }
}
