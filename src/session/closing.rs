//! The closing handshake (RFC 6455 §7.1.1): whoever closes first, the server closes the TCP
//! connection once both close frames are exchanged, so neither side waits for the other.

use std::time::Duration;

use actix::{ActorContext, AsyncContext};
use actix_web_actors::ws::{self, CloseCode, CloseReason};

use super::WsSession;
use crate::protocol::{error_frame, ErrorCode, ErrorReply};

/// How long a session that sent a close frame waits for the client's.
const CLOSE_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

impl WsSession {
    /// The server closes: sends `reason`, then waits (bounded) for the client's close frame
    /// before ending the connection, so the client reads the code instead of a reset.
    pub(super) fn close_and_wait(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        reason: CloseReason,
    ) {
        if self.closing {
            return;
        }
        ctx.close(Some(reason));
        self.closing = true;
        ctx.run_later(CLOSE_REPLY_TIMEOUT, |act, ctx| act.finish_closing(ctx));
    }

    /// The client closes: the close frame is answered with the same code and the connection
    /// ends right away.
    pub(super) fn answer_close(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        reason: Option<CloseReason>,
    ) {
        if !self.closing {
            ctx.close(reason);
            self.closing = true;
        }
        self.finish_closing(ctx);
    }

    /// Both close frames are exchanged (or the client did not answer in time): the HTTP
    /// dispatcher closes the connection as soon as our last frame is written.
    pub(super) fn finish_closing(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if let Some(socket) = &self.socket {
            socket.finish_reading();
        }
        ctx.stop();
    }

    /// Shutdown: requests still in flight are answered with `bbb.failed` (the frontend
    /// retries them after reconnecting elsewhere), then the session closes with 1001.
    pub(super) fn go_away(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        for (_, id) in std::mem::take(&mut self.pending) {
            let frame = error_frame(
                id.as_ref(),
                &ErrorReply::with_message(
                    ErrorCode::BbbFailed,
                    "the gateway is restarting, retry in a moment",
                ),
            );
            self.send(ctx, frame);
        }
        self.close_and_wait(
            ctx,
            CloseReason {
                code: CloseCode::Away,
                description: Some("the gateway is restarting".into()),
            },
        );
    }
}
