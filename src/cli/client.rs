//! `bbb-gateway client`: a tiny WebSocket client so the demo's printed example works without
//! any other tool installed.

use std::time::Duration;

use anyhow::{bail, Context};
use awc::ws::{Frame, Message};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

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
    actix_web::rt::System::new().block_on(async move {
        let (_, mut conn) = awc::Client::new()
            .ws(args.url.as_str())
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", args.url))?;
        let auth = match (&args.token, &args.client_id) {
            (Some(t), _) => json!({"token": t}),
            (None, Some(c)) => json!({"client_id": c}),
            (None, None) => bail!("give --token or --client-id"),
        };
        conn.send(Message::Text(
            json!(["authenticate", auth]).to_string().into(),
        ))
        .await?;
        let reply = next_json(&mut conn).await?;
        if reply.get(0) != Some(&json!("authenticated")) {
            bail!("authentication failed: {reply}");
        }
        conn.send(Message::Text(
            json!([args.action, 1, payload]).to_string().into(),
        ))
        .await?;
        let reply = next_json(&mut conn).await?;
        let _ = conn.send(Message::Close(None)).await;
        match reply.get(0).and_then(Value::as_str) {
            Some("success") => {
                println!("{}", serde_json::to_string_pretty(&reply[2])?);
                Ok(())
            }
            _ => bail!("the gateway answered {reply}"),
        }
    })
}

async fn next_json(
    conn: &mut actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
) -> anyhow::Result<Value> {
    loop {
        let frame = actix_web::rt::time::timeout(Duration::from_secs(30), conn.next())
            .await
            .context("no reply within 30 s")?;
        match frame {
            Some(Ok(Frame::Text(t))) => return Ok(serde_json::from_slice(&t)?),
            Some(Ok(Frame::Ping(p))) => conn.send(Message::Pong(p)).await?,
            Some(Ok(Frame::Close(r))) => bail!("the gateway closed the connection: {r:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("websocket error: {e}"),
            None => bail!("the gateway closed the connection"),
        }
    }
}
