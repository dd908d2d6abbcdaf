//! The `bbb-gateway` command line: the server and its admin commands, all reading the same
//! layered configuration.

mod calls;
mod client;
mod rooms;
mod servers;
mod users;
mod worlds;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "bbb-gateway",
    version,
    about = "WebSocket gateway that load-balances eventyay/venueless video calls over BigBlueButton servers"
)]
pub(crate) struct Cli {
    /// Configuration file (TOML) whose keys override the built-in defaults.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run migrations, then serve WebSocket, admin REST, health and metrics.
    Serve {
        /// Also start an in-process BBB simulator and seed a demo world, printing tokens.
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage the BBB servers meetings are placed on.
    #[command(subcommand)]
    Server(servers::ServerCommand),
    /// Move a room's meeting to another server (through the running gateway).
    #[command(subcommand)]
    Room(rooms::RoomCommand),
    /// Import or export worlds (rooms, permissions, JWT secrets).
    #[command(subcommand)]
    World(worlds::WorldCommand),
    /// Manage private calls.
    #[command(subcommand)]
    Call(calls::CallCommand),
    /// Moderate users.
    #[command(subcommand)]
    User(users::UserCommand),
    /// Mint a JWT signed with the world's first secret (for tests and demos).
    Token(worlds::TokenArgs),
    /// Send one request over the WebSocket protocol and print the reply (for demos).
    Client(client::ClientArgs),
}

/// Parses arguments, loads configuration and runs the command. Returns the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let result = match cli.command {
        Command::Serve { demo } => serve(settings, demo),
        Command::Migrate => migrate(&settings),
        Command::Server(cmd) => servers::run(&settings, cmd),
        Command::Room(cmd) => rooms::run(&settings, cmd),
        Command::World(cmd) => worlds::run(&settings, cmd),
        Command::Call(cmd) => calls::run(&settings, cmd),
        Command::User(cmd) => users::run(&settings, cmd),
        Command::Token(args) => worlds::token(&settings, args),
        Command::Client(args) => client::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = crate::startup::open_database(settings)?;
    drop(db);
    println!("database is up to date");
    Ok(())
}

fn serve(settings: Settings, demo: bool) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let signals = crate::startup::ShutdownSignals::install()?;
        let app = if demo {
            start_demo(settings).await?
        } else {
            let app = crate::startup::Application::build(settings).await?;
            log::info!("bbb-gateway listening on port {}", app.port());
            log::info!("admin routes listening on port {}", app.admin_port());
            app
        };
        app.run_until_signal(signals).await?;
        Ok(())
    })
}

#[cfg(feature = "demo")]
async fn start_demo(settings: Settings) -> anyhow::Result<crate::startup::Application> {
    crate::demo::start(settings).await
}

#[cfg(not(feature = "demo"))]
async fn start_demo(_settings: Settings) -> anyhow::Result<crate::startup::Application> {
    anyhow::bail!("--demo needs bbb-gateway built with its `demo` feature (on by default)")
}

/// Opens the database (applying migrations) for a one-shot admin command.
fn open(settings: &Settings) -> anyhow::Result<crate::db::Db> {
    crate::startup::open_database(settings)
}
