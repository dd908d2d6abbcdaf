use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::config::Settings;
use crate::world::{export_world, import_world, parse_world_file};

#[derive(Debug, Subcommand)]
pub enum WorldCommand {
    /// Create or update a world from a JSON file (idempotent, all or nothing).
    Import {
        /// The world file (see PROTOCOL.md, "World file").
        file: PathBuf,
    },
    /// Print a world as JSON, in the form `import` reads.
    Export {
        /// World id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// World whose first JWT secret signs the token.
    #[arg(long)]
    pub world: String,
    /// The user's uid claim.
    #[arg(long)]
    pub uid: String,
    /// Comma-separated traits.
    #[arg(long, value_delimiter = ',')]
    pub traits: Vec<String>,
    /// Display name put in the token's profile.
    #[arg(long)]
    pub name: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86400)]
    pub ttl: u64,
}

pub fn run(settings: &Settings, cmd: WorldCommand) -> anyhow::Result<()> {
    let db = super::open(settings)?;
    let mut conn = db.get()?;
    match cmd {
        WorldCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let world = parse_world_file(&text)
                .with_context(|| format!("{} is not a valid world file", file.display()))?;
            let summary = import_world(&mut conn, &world)?;
            println!("imported world {}: {summary}", world.id);
        }
        WorldCommand::Export { id } => {
            let Some(world) = export_world(&mut conn, &id)? else {
                bail!("no world with id {id:?}");
            };
            println!("{}", serde_json::to_string_pretty(&world)?);
        }
    }
    Ok(())
}

pub fn token(settings: &Settings, args: TokenArgs) -> anyhow::Result<()> {
    let db = super::open(settings)?;
    let mut conn = db.get()?;
    let Some(world) = export_world(&mut conn, &args.world)? else {
        bail!("no world with id {:?}; import it first", args.world);
    };
    let Some(secret) = world.jwt_secrets.first() else {
        bail!("world {:?} has no JWT secret", args.world);
    };
    let token = crate::auth::mint_token(
        secret,
        &args.uid,
        &args.traits,
        args.name.as_deref(),
        args.ttl,
    )?;
    println!("{token}");
    Ok(())
}
