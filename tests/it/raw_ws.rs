//! A WebSocket client written against the bytes of RFC 6455, for what the protocol client
//! hides: who closes the TCP connection, and when.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One raw connection after a hand-made upgrade.
pub struct RawWs {
    stream: TcpStream,
    /// Bytes received after the upgrade response.
    pub received: Vec<u8>,
}

impl RawWs {
    /// Connects and upgrades `path` on `port`; panics unless the answer is `101`.
    pub async fn connect(port: u16, path: &str) -> RawWs {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("tcp connect");
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.expect("upgrade");
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
                .await
                .expect("an upgrade answer in time")
                .expect("read");
            assert!(n > 0, "closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        assert!(
            buf.starts_with(b"HTTP/1.1 101"),
            "{:?}",
            String::from_utf8_lossy(&buf)
        );
        RawWs {
            stream,
            received: buf.split_off(head_end),
        }
    }

    /// Sends one masked frame.
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        assert!(payload.len() < 126);
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await.expect("send a frame");
    }

    /// Sends a close frame with `code`.
    pub async fn send_close(&mut self, code: u16) {
        self.send_frame(0x8, &code.to_be_bytes()).await;
    }

    /// Reads until the server closes the TCP connection (or `within` passes): how long it
    /// took, `None` on timeout.
    pub async fn wait_for_eof(&mut self, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                Ok(Ok(n)) => self.received.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The close code of the first close frame the server sent, if any (server frames are
    /// unmasked; only short frames are expected before it).
    pub fn close_code(&self) -> Option<u16> {
        let mut rest = &self.received[..];
        while rest.len() >= 2 {
            let opcode = rest[0] & 0x0f;
            let (len, head) = match rest[1] & 0x7f {
                126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
                127 => return None,
                n => (n as usize, 2),
            };
            let body = rest.get(head..head + len)?;
            if opcode == 0x8 {
                return (body.len() >= 2).then(|| u16::from_be_bytes([body[0], body[1]]));
            }
            rest = &rest[head + len..];
        }
        None
    }
}
