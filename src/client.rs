//! A small client of the gateway's WebSocket protocol, for `bbb-gateway client`, the tests and
//! anyone scripting against a gateway. It answers the gateway's heartbeat pings while waiting.

use std::time::Duration;

use actix_http::ws::Item;
use actix_web::web::Bytes;
use awc::ws::{self, Frame};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

type Framed = actix_codec::Framed<awc::BoxedSocket, ws::Codec>;

/// Why no JSON frame could be read (or sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Closed {
    /// The gateway closed the connection with this close code.
    #[error("the gateway closed the connection (code {0:?})")]
    Code(Option<u16>),
    #[error("the connection ended")]
    Eof,
    #[error("no reply in time")]
    Timeout,
    #[error("cannot send: {0}")]
    Send(String),
    #[error("the gateway sent a frame that is not JSON")]
    NotJson,
}

/// Largest message put back together from fragments (as the largest frame accepted).
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Puts fragmented text messages back together: the gateway sends large frames (such as
/// `authenticated` for a world with many rooms) as WebSocket fragments.
#[derive(Debug, Default)]
pub struct Reassembler {
    partial: Option<actix_web::web::BytesMut>,
}

impl Reassembler {
    /// Takes one fragment; returns the whole message when this was its last fragment. Binary
    /// messages, fragments without a start and oversized messages are dropped.
    pub fn push(&mut self, item: Item) -> Option<Bytes> {
        match item {
            Item::FirstText(b) => {
                self.partial = Some(actix_web::web::BytesMut::from(&b[..]));
                None
            }
            Item::FirstBinary(_) => {
                self.partial = None;
                None
            }
            Item::Continue(b) => {
                self.append(&b);
                None
            }
            Item::Last(b) => {
                self.append(&b);
                self.partial.take().map(|p| p.freeze())
            }
        }
    }

    fn append(&mut self, b: &[u8]) {
        if let Some(p) = self.partial.as_mut() {
            if p.len() + b.len() > MAX_MESSAGE_BYTES {
                self.partial = None;
            } else {
                p.extend_from_slice(b);
            }
        }
    }
}

/// One WebSocket connection speaking JSON frames.
pub struct WsClient {
    conn: Framed,
    fragments: Reassembler,
}

impl WsClient {
    /// Connects to a `ws://…/ws/world/{world}/` URL.
    pub async fn connect(url: &str) -> Result<WsClient, String> {
        Self::connect_with_headers(url, &[]).await
    }

    /// Connects with extra request headers (a proxy's `X-Forwarded-For`, say).
    pub async fn connect_with_headers(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, String> {
        let mut request = awc::Client::new().ws(url).max_frame_size(1 << 20);
        for (name, value) in headers {
            request = request.set_header(*name, *value);
        }
        let (_resp, conn) = request
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        Ok(WsClient {
            conn,
            fragments: Reassembler::default(),
        })
    }

    async fn send_message(&mut self, m: ws::Message) -> Result<(), Closed> {
        self.conn
            .send(m)
            .await
            .map_err(|e| Closed::Send(e.to_string()))
    }

    pub async fn send(&mut self, v: &Value) -> Result<(), Closed> {
        self.send_text(&v.to_string()).await
    }

    pub async fn send_text(&mut self, s: &str) -> Result<(), Closed> {
        self.send_message(ws::Message::Text(s.to_owned().into()))
            .await
    }

    /// Sends text frames back to back and flushes once, as a client pipelining requests does.
    pub async fn send_pipelined(&mut self, frames: &[String]) -> Result<(), Closed> {
        for f in frames {
            self.conn
                .feed(ws::Message::Text(f.clone().into()))
                .await
                .map_err(|e| Closed::Send(e.to_string()))?;
        }
        self.conn
            .flush()
            .await
            .map_err(|e| Closed::Send(e.to_string()))
    }

    pub async fn send_binary(&mut self, b: &[u8]) -> Result<(), Closed> {
        self.send_message(ws::Message::Binary(Bytes::copy_from_slice(b)))
            .await
    }

    /// The next text frame as JSON within `within`, answering pings on the way.
    pub async fn recv_within(&mut self, within: Duration) -> Result<Value, Closed> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.conn.next()).await {
                Err(_) => return Err(Closed::Timeout),
                Ok(None) | Ok(Some(Err(_))) => return Err(Closed::Eof),
                Ok(Some(Ok(Frame::Text(t)))) => {
                    return serde_json::from_slice(&t).map_err(|_| Closed::NotJson)
                }
                Ok(Some(Ok(Frame::Continuation(item)))) => {
                    if let Some(t) = self.fragments.push(item) {
                        return serde_json::from_slice(&t).map_err(|_| Closed::NotJson);
                    }
                }
                Ok(Some(Ok(Frame::Close(reason)))) => {
                    return Err(Closed::Code(reason.map(|r| u16::from(r.code))))
                }
                Ok(Some(Ok(Frame::Ping(p)))) => {
                    let _ = self.conn.send(ws::Message::Pong(p)).await;
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Sends `[action, id, payload]` and returns the next frame (the reply).
    pub async fn request(
        &mut self,
        action: &str,
        id: Value,
        payload: Value,
        within: Duration,
    ) -> Result<Value, Closed> {
        self.send(&json!([action, id, payload])).await?;
        self.recv_within(within).await
    }

    /// Sends `["authenticate", payload]` and returns the answer (`authenticated` or an error).
    pub async fn authenticate(
        &mut self,
        payload: Value,
        within: Duration,
    ) -> Result<Value, Closed> {
        self.send(&json!(["authenticate", payload])).await?;
        self.recv_within(within).await
    }

    /// Closes politely.
    pub async fn close(mut self) {
        let _ = self.conn.send(ws::Message::Close(None)).await;
    }
}
