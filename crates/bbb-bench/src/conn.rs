//! One benchmark WebSocket connection: a local task that owns the socket, answers the
//! gateway's heartbeat pings even while idle (so 10,000 idle sessions stay connected), and
//! runs one request at a time on command, timing it from send to reply.

use std::time::{Duration, Instant};

use awc::ws::{self, Frame};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

/// How long a reply may take before it counts as the error `timeout`.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

type Framed = actix_codec::Framed<awc::BoxedSocket, ws::Codec>;

/// The answer to one request: its latency and, when asked for, the reply's text; or an error
/// code (the gateway's, or `timeout`, `closed`, `send`).
pub type Outcome = Result<(Duration, Option<bytes::Bytes>), String>;

/// A request for the connection task: a text frame and where to report the outcome.
pub struct Command {
    pub text: String,
    /// Hand back the reply's text (only for replies that are used, e.g. join URLs to open).
    pub keep_text: bool,
    pub reply: oneshot::Sender<Outcome>,
}

/// Opens a WebSocket to `url` and, with a token, authenticates it. Returns the socket or an
/// error code.
pub async fn open(client: &awc::Client, url: &str, token: Option<&str>) -> Result<Framed, String> {
    let (_resp, mut framed) = client
        .ws(url)
        .max_frame_size(1 << 20)
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if let Some(token) = token {
        let frame = serde_json::json!(["authenticate", {"token": token}]).to_string();
        framed
            .send(ws::Message::Text(frame.into()))
            .await
            .map_err(|_| "send".to_string())?;
        match next_text(&mut framed).await {
            Ok(t) if t.starts_with(b"[\"authenticated\"") => {}
            Ok(t) => return Err(error_code(&t)),
            Err(e) => return Err(e),
        }
    }
    Ok(framed)
}

/// The `code` of an error frame, or `unexpected` for anything else.
fn error_code(text: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(text).unwrap_or_default();
    let code = v
        .as_array()
        .filter(|a| a.first().and_then(|f| f.as_str()) == Some("error"))
        .and_then(|a| a.iter().find_map(|x| x.get("code")?.as_str()));
    code.unwrap_or("unexpected").to_string()
}

/// The next text frame within [`REPLY_TIMEOUT`], answering pings on the way. Not copied or
/// decoded: replies are judged by their first bytes.
async fn next_text(framed: &mut Framed) -> Result<bytes::Bytes, String> {
    let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    // A message the gateway sent in fragments, being put back together.
    let mut fragments = bbb_gateway::client::Reassembler::default();
    loop {
        match tokio::time::timeout_at(deadline, framed.next()).await {
            Err(_) => return Err("timeout".into()),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Frame::Close(_)))) => {
                return Err("closed".into())
            }
            Ok(Some(Ok(Frame::Text(t)))) => return Ok(t),
            Ok(Some(Ok(Frame::Continuation(item)))) => {
                if let Some(t) = fragments.push(item) {
                    return Ok(t);
                }
            }
            Ok(Some(Ok(Frame::Ping(p)))) => {
                let _ = framed.send(ws::Message::Pong(p)).await;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Whether a reply frame is a success (`pong` or `success`); else its error code.
fn judge(text: &[u8]) -> Result<(), String> {
    if text.starts_with(b"[\"pong\"") || text.starts_with(b"[\"success\"") {
        Ok(())
    } else {
        Err(error_code(text))
    }
}

/// Drives one connection until its command channel closes (then it closes the socket
/// politely) or the gateway closes it.
pub async fn run(mut framed: Framed, mut commands: mpsc::UnboundedReceiver<Command>) {
    loop {
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else {
                    let _ = framed.send(ws::Message::Close(None)).await;
                    // Wait (briefly) for the gateway's close so both ends release the socket.
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Some(Ok(f)) = framed.next().await {
                            if matches!(f, Frame::Close(_)) { break; }
                        }
                    }).await;
                    return;
                };
                let started = Instant::now();
                let keep = cmd.keep_text;
                let outcome = match framed.send(ws::Message::Text(cmd.text.into())).await {
                    Err(_) => Err("send".to_string()),
                    Ok(()) => next_text(&mut framed).await.and_then(|t| {
                        judge(&t)?;
                        Ok((started.elapsed(), keep.then_some(t)))
                    }),
                };
                let broken = matches!(&outcome, Err(e) if e == "closed" || e == "send");
                let _ = cmd.reply.send(outcome);
                if broken {
                    return;
                }
            }
            frame = framed.next() => match frame {
                Some(Ok(Frame::Ping(p))) => {
                    let _ = framed.send(ws::Message::Pong(p)).await;
                }
                Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_judged_by_their_first_element() {
        assert_eq!(judge(br#"["pong", 1]"#), Ok(()));
        assert_eq!(judge(br#"["success", 1, {"url": "x"}]"#), Ok(()));
        assert_eq!(
            judge(br#"["error", 1, {"code": "bbb.failed"}]"#),
            Err("bbb.failed".into())
        );
        assert_eq!(judge(br#"["error", {"code": "x"}]"#), Err("x".into()));
        assert_eq!(judge(b"garbage"), Err("unexpected".into()));
    }
}
