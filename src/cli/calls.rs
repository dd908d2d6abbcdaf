use anyhow::bail;
use clap::Subcommand;

use crate::config::Settings;
use crate::db::calls;

#[derive(Debug, Subcommand)]
pub enum CallCommand {
    /// Create a private call for a conversation's members; prints its id.
    Create {
        /// World the call belongs to.
        #[arg(long)]
        world: String,
        /// Comma-separated uids of the invited members.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<String>,
    },
}

pub fn run(settings: &Settings, cmd: CallCommand) -> anyhow::Result<()> {
    let db = super::open(settings)?;
    let mut conn = db.get()?;
    match cmd {
        CallCommand::Create { world, members } => {
            let members: Vec<String> = members
                .into_iter()
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty())
                .collect();
            if members.is_empty() {
                bail!("--members needs at least one uid");
            }
            let id = calls::create_call(&mut conn, &world, &members)?;
            println!("{id}");
        }
    }
    Ok(())
}
