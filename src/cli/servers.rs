use anyhow::{bail, Context};
use clap::Subcommand;

use crate::bbb::{ChecksumAlgorithm, Secret};
use crate::config::Settings;
use crate::db::server_status;
use crate::db::servers::{self, NewServer, ServerState};
use crate::ids::ServerId;

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Register a BBB server; prints its id.
    Add {
        /// Base URL, e.g. https://bbb1.example.org/bigbluebutton (with or without /api).
        #[arg(long)]
        url: String,
        /// The server's shared secret (`bbb-conf --secret`).
        #[arg(long)]
        secret: String,
        /// Checksum algorithm the server accepts.
        #[arg(long, default_value = "sha256")]
        checksum: ChecksumAlgorithm,
        /// Load multiplier (> 0); a bigger value makes the server look busier.
        #[arg(long, default_value_t = 1.0)]
        weight: f64,
        /// Free-form label shown in listings.
        #[arg(long)]
        tag: Option<String>,
        /// Make the server exclusive to this world.
        #[arg(long)]
        world: Option<String>,
    },
    /// List servers with their live state (never the secret).
    List,
    /// Enable, cordon (keep running meetings, no new ones) or disable a server.
    SetState { id: ServerId, state: ServerState },
    /// Forget every meeting on a server so they are re-created elsewhere at the next join.
    Panic { id: ServerId },
    /// Unregister a server.
    Remove { id: ServerId },
}

pub fn run(settings: &Settings, cmd: ServerCommand) -> anyhow::Result<()> {
    let db = super::open(settings)?;
    let mut conn = db.get()?;
    match cmd {
        ServerCommand::Add {
            url,
            secret,
            checksum,
            weight,
            tag,
            world,
        } => {
            let row = servers::add(
                &mut conn,
                &NewServer {
                    url,
                    secret: Secret::new(secret),
                    checksum,
                    weight,
                    tag,
                    world_id: world,
                },
            )?;
            println!("{}", row.id);
        }
        ServerCommand::List => {
            let rows = servers::list(&mut conn)?;
            let status = server_status::load_all(&mut conn)?;
            print!("{}", render_table(&rows, &status));
        }
        ServerCommand::SetState { id, state } => {
            if !servers::set_state(&mut conn, id, state)? {
                bail!("no server with id {id}");
            }
            println!("server {id} is now {state}");
        }
        ServerCommand::Panic { id } => {
            let forgotten = servers::panic(&mut conn, id)
                .with_context(|| format!("cannot panic server {id}"))?
                .with_context(|| format!("no server with id {id}"))?;
            println!(
                "server {id}: forgot {forgotten} meeting(s); running gateways move them at their next join"
            );
        }
        ServerCommand::Remove { id } => {
            if !servers::remove(&mut conn, id)? {
                bail!("no server with id {id}");
            }
            println!("server {id} removed");
        }
    }
    Ok(())
}

/// An aligned text table of the fleet.
pub fn render_table(
    rows: &[servers::ServerRow],
    status: &std::collections::HashMap<crate::ids::ServerId, server_status::ServerStatusRow>,
) -> String {
    let header = [
        "id",
        "url",
        "state",
        "online",
        "meetings",
        "participants",
        "videos",
        "load",
        "weight",
        "tag",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let s = status.get(&r.id);
        let num = |f: fn(&server_status::ServerStatusRow) -> String| {
            s.map(f).unwrap_or_else(|| "-".into())
        };
        table.push(vec![
            r.id.to_string(),
            r.url.clone(),
            r.state.to_string(),
            s.map(|s| if s.online { "yes" } else { "no" }.to_string())
                .unwrap_or_else(|| "unknown".into()),
            num(|s| s.meetings.to_string()),
            num(|s| s.participants.to_string()),
            num(|s| s.videos.to_string()),
            num(|s| format!("{:.1}", s.load)),
            format!("{}", r.weight),
            r.tag.clone().unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            table
                .iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
