use anyhow::bail;
use clap::{Subcommand, ValueEnum};

use crate::config::Settings;
use crate::db::users;
use crate::permissions::Moderation;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Silence or ban a user (or lift it). Open sessions of the user apply it within
    /// `cache.refresh_interval_ms`, without a reconnect.
    Moderate {
        /// World of the user.
        #[arg(long)]
        world: String,
        /// The user's token `uid`.
        #[arg(long)]
        uid: String,
        /// `silenced` users may view but not join; `banned` users may do nothing.
        #[arg(value_enum)]
        state: ModerationArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModerationArg {
    None,
    Silenced,
    Banned,
}

impl From<ModerationArg> for Moderation {
    fn from(m: ModerationArg) -> Moderation {
        match m {
            ModerationArg::None => Moderation::None,
            ModerationArg::Silenced => Moderation::Silenced,
            ModerationArg::Banned => Moderation::Banned,
        }
    }
}

pub fn run(settings: &Settings, cmd: UserCommand) -> anyhow::Result<()> {
    let db = super::open(settings)?;
    let mut conn = db.get()?;
    match cmd {
        UserCommand::Moderate { world, uid, state } => {
            let Some(user) = users::find_token_user(&mut conn, &world, &uid)? else {
                bail!(
                    "no user with uid {uid:?} in world {world:?} (users exist once they logged in)"
                );
            };
            let moderation = Moderation::from(state);
            users::set_moderation(&mut conn, &user.id, moderation)?;
            let shown = match moderation.as_str() {
                "" => "none",
                s => s,
            };
            println!("user {uid:?} in world {world:?} is now: {shown}");
        }
    }
    Ok(())
}
