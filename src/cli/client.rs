//! `bbb-gateway client`: send one request and print the reply, so the demo's printed example
//! works without any other tool installed.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use serde_json::{json, Value};

use crate::client::WsClient;

/// How long to wait for each answer.
const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// WebSocket URL, e.g. ws://127.0.0.1:8375/ws/world/demo/
    #[arg(long)]
    pub url: String,
    /// JWT to authenticate with.
    #[arg(long, conflicts_with = "client_id")]
    pub token: Option<String>,
    /// Anonymous client id to authenticate with instead of a token.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Action to send, e.g. bbb.room_url.
    pub action: String,
    /// JSON payload of the action.
    #[arg(default_value = "{}")]
    pub payload: String,
}

/// Connects, authenticates, sends one request and prints the reply's payload. Fails (exit 1)
/// on an error reply.
pub fn run(args: ClientArgs) -> anyhow::Result<()> {
    let payload: Value = serde_json::from_str(&args.payload).context("PAYLOAD is not JSON")?;
    let auth = match (&args.token, &args.client_id) {
        (Some(t), _) => json!({"token": t}),
        (None, Some(c)) => json!({"client_id": c}),
        (None, None) => bail!("give --token or --client-id"),
    };
    actix_web::rt::System::new().block_on(async move {
        let mut client = WsClient::connect(&args.url).await.map_err(|e| anyhow!(e))?;
        let reply = client.authenticate(auth, WAIT).await?;
        if reply.get(0) != Some(&json!("authenticated")) {
            bail!("authentication failed: {reply}");
        }
        let reply = client
            .request(&args.action, json!(1), payload, WAIT)
            .await?;
        client.close().await;
        match reply.get(0).and_then(Value::as_str) {
            Some("success") => {
                println!("{}", serde_json::to_string_pretty(&reply[2])?);
                Ok(())
            }
            _ => bail!("the gateway answered {reply}"),
        }
    })
}
