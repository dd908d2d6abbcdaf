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
        /// Participants the server can carry (default: unlimited). Placement keeps a server
        /// within it while another server has room.
        #[arg(long)]
        capacity: Option<u32>,
    },
    /// List servers with their live state (never the secret).
    List,
    /// Enable, cordon (keep running meetings, no new ones) or disable a server.
    SetState { id: ServerId, state: ServerState },
    /// Set the participants a server can carry, or `none` for unlimited.
    SetCapacity { id: ServerId, capacity: CapacityArg },
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
            capacity,
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
                    capacity,
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
        ServerCommand::SetCapacity { id, capacity } => {
            if !servers::set_capacity(&mut conn, id, capacity.0)? {
                bail!("no server with id {id}");
            }
            match capacity.0 {
                Some(n) => println!("server {id} can carry {n} participants"),
                None => println!("server {id} has no capacity limit"),
            }
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

/// A capacity on the command line: a number of participants, or `none` / `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityArg(pub Option<u32>);

impl std::str::FromStr for CapacityArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("unlimited") {
            return Ok(CapacityArg(None));
        }
        s.parse::<u32>().map(|n| CapacityArg(Some(n))).map_err(|_| {
            format!("{s:?} is not a capacity: give a number of participants, or none for unlimited")
        })
    }
}

/// Occupancy as polled, with the share of the capacity it takes when there is one.
fn occupancy_cell(occupancy: i32, capacity: Option<u32>) -> String {
    match capacity {
        Some(c) => format!(
            "{occupancy} ({:.0} %)",
            100.0 * f64::from(occupancy) / f64::from(c.max(1))
        ),
        None => occupancy.to_string(),
    }
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
        "capacity",
        "occupancy",
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
            r.capacity
                .map_or_else(|| "unlimited".into(), |c| c.to_string()),
            s.map_or_else(|| "-".into(), |s| occupancy_cell(s.occupancy, r.capacity)),
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
