//! One actor per WebSocket connection: framing (large frames in fragments, see [`outbox`]),
//! heartbeat, flood and size limits, and authentication. `bbb.*` requests go to the
//! [`BbbCoordinator`](crate::coordinator) (actix's `websockets/chat` split), except a join of a
//! meeting the coordinator has published as running, which the session answers from that
//! table ([`WarmJoins`](crate::coordinator::WarmJoins)) without a message.

pub mod authenticate;
pub mod authenticated;
pub mod limits;
pub mod outbox;
pub mod routing;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, ContextFutureSpawner, StreamHandler,
    WrapFuture,
};
use actix_http::ws::Item;
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError};
use serde_json::json;

use crate::coordinator::{BbbCommand, BbbCommandKind};
use crate::protocol::{
    error_frame, parse_frame, success_frame, url_success_frame, ErrorCode, ErrorReply, Request,
};
use crate::state::AppState;
use crate::user::UserContext;
use crate::world::WorldSnapshot;
use limits::InvalidFrameLimiter;
use outbox::{Outbox, Write};
use routing::{route, Route};

/// The WebSocket session actor.
pub struct WsSession {
    app: Arc<AppState>,
    world_id: String,
    /// `None` when the world does not exist: the session reports it and closes.
    world: Option<Arc<WorldSnapshot>>,
    user: Option<Arc<UserContext>>,
    authenticating: bool,
    /// `bbb.*` requests sent to the coordinator and not answered yet.
    in_flight: usize,
    last_heard: Instant,
    limiter: InvalidFrameLimiter,
    /// Every text frame to the client goes through it (see [`outbox`]).
    outbox: Outbox,
}

impl WsSession {
    pub fn new(app: Arc<AppState>, world_id: String, world: Option<Arc<WorldSnapshot>>) -> Self {
        let limiter =
            InvalidFrameLimiter::new(app.session.max_invalid_frames, app.session.invalid_window);
        Self {
            app,
            world_id,
            world,
            user: None,
            authenticating: false,
            in_flight: 0,
            last_heard: Instant::now(),
            limiter,
            outbox: Outbox::default(),
        }
    }

    /// The newest snapshot of this session's world (picks up imports while connected).
    fn current_world(&self) -> Option<Arc<WorldSnapshot>> {
        self.app
            .worlds
            .get_cached(&self.world_id)
            .or_else(|| self.world.clone())
    }

    fn invalid(&mut self, ctx: &mut ws::WebsocketContext<Self>, message: &str) {
        self.send(
            ctx,
            error_frame(
                None,
                &ErrorReply::with_message(ErrorCode::InvalidMessage, message),
            ),
        );
        if self.limiter.record(Instant::now()) {
            log::info!("closing a session that sent too many invalid frames");
            ctx.close(Some(CloseReason {
                code: CloseCode::Policy,
                description: Some("too many invalid messages".into()),
            }));
            ctx.stop();
        }
    }

    fn handle_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let req = match parse_frame(text) {
            Ok(r) => r,
            Err(message) => return self.invalid(ctx, &message),
        };
        match route(&req, self.user.is_some()) {
            Route::Pong => self.send(ctx, json!(["pong", req.payload]).to_string()),
            Route::Authenticate => self.authenticate(req, ctx),
            Route::UserUpdate => self.user_update(req, ctx),
            Route::RoomUrl => {
                if !self.answer_warm_join(&req, ctx) {
                    self.forward(req, ctx, |room| BbbCommandKind::RoomUrl { room }, "room")
                }
            }
            Route::CallUrl => {
                self.forward(req, ctx, |call| BbbCommandKind::CallUrl { call }, "call")
            }
            Route::Recordings => {
                self.forward(req, ctx, |room| BbbCommandKind::Recordings { room }, "room")
            }
            Route::Reject(code) => {
                self.app.metrics.request("other", code.as_str());
                self.send(ctx, error_frame(req.id.as_ref(), &code.into()))
            }
        }
    }

    fn authenticate(&mut self, req: Request, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(world) = self.current_world() else {
            return self.send(ctx, error_frame(None, &ErrorCode::WorldUnknown.into()));
        };
        if self.authenticating {
            return self.send(
                ctx,
                error_frame(
                    None,
                    &ErrorReply::with_message(
                        ErrorCode::InvalidMessage,
                        "authentication in progress",
                    ),
                ),
            );
        }
        self.authenticating = true;
        let db = self.app.db.clone();
        async move {
            let result = authenticate::authenticate(&db, &world, &req.payload).await;
            (result, world)
        }
        .into_actor(self)
        .map(|(result, world), act, ctx| {
            act.authenticating = false;
            match result {
                Ok(user) => {
                    let frame = authenticated::authenticated_frame(&world, &user);
                    act.send(ctx, frame);
                    act.user = Some(Arc::new(user));
                }
                Err(e) => act.send(ctx, error_frame(None, &e)),
            }
        })
        .spawn(ctx);
    }

    fn user_update(&mut self, req: Request, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(user) = self.user.clone() else {
            return self.send(
                ctx,
                error_frame(req.id.as_ref(), &ErrorCode::Unauthenticated.into()),
            );
        };
        let profile = match authenticate::parse_profile_update(&req.payload, &user.profile) {
            Ok(p) => p,
            Err(e) => return self.send(ctx, error_frame(req.id.as_ref(), &e)),
        };
        let db = self.app.db.clone();
        let user_id = user.id.clone();
        let id = req.id;
        async move {
            let r = authenticate::store_profile(&db, user_id, &profile).await;
            (r, profile)
        }
        .into_actor(self)
        .map(move |(result, profile), act, ctx| match result {
            Ok(()) => {
                if let Some(current) = &act.user {
                    let mut next = (**current).clone();
                    next.profile = profile;
                    act.user = Some(Arc::new(next));
                }
                act.send(ctx, success_frame(id.as_ref(), json!({})));
            }
            Err(e) => act.send(ctx, error_frame(id.as_ref(), &e)),
        })
        .spawn(ctx);
    }

    /// The hot path: a `bbb.room_url` whose checks fail, or whose meeting the coordinator has
    /// published as running, is answered here without a message to the coordinator. Returns
    /// whether it was answered.
    fn answer_warm_join(&mut self, req: &Request, ctx: &mut ws::WebsocketContext<Self>) -> bool {
        let (Some(user), Some(world)) = (&self.user, self.current_world()) else {
            return false;
        };
        let Some(result) = self.app.warm.room_url(&world, user, req.str_field("room")) else {
            return false;
        };
        let (frame, code) = match result {
            Ok(url) => (url_success_frame(req.id.as_ref(), &url), "success"),
            Err(e) => (error_frame(req.id.as_ref(), &e), e.code.as_str()),
        };
        self.app.metrics.request(&req.action, code);
        self.send(ctx, frame);
        true
    }

    fn forward(
        &mut self,
        req: Request,
        ctx: &mut ws::WebsocketContext<Self>,
        kind: fn(Option<String>) -> BbbCommandKind,
        field: &str,
    ) {
        let (Some(user), Some(world)) = (self.user.clone(), self.current_world()) else {
            return self.send(
                ctx,
                error_frame(req.id.as_ref(), &ErrorCode::Unauthenticated.into()),
            );
        };
        if self.in_flight >= self.app.session.max_in_flight {
            self.app.metrics.request(&req.action, "too_many_in_flight");
            return self.send(ctx, error_frame(
                req.id.as_ref(),
                &ErrorReply::with_message(
                    ErrorCode::BbbFailed,
                    "too many video requests at once from this connection, retry when the others are answered",
                ),
            ));
        }
        self.in_flight += 1;
        let target = req.str_field(field).map(str::to_owned);
        let command = BbbCommand {
            world,
            user,
            kind: kind(target),
        };
        let id = req.id;
        let action = req.action;
        self.app
            .coordinator
            .send(command)
            .into_actor(self)
            .map(move |result, act, ctx| {
                let result = result.unwrap_or_else(|e| {
                    log::error!("coordinator unreachable: {e}");
                    Err(ErrorReply::with_message(
                        ErrorCode::BbbFailed,
                        "the video service is busy, retry in a moment",
                    ))
                });
                let (frame, code) = match result {
                    Ok(payload) => (success_frame(id.as_ref(), payload), "success"),
                    Err(e) => (error_frame(id.as_ref(), &e), e.code.as_str()),
                };
                act.in_flight = act.in_flight.saturating_sub(1);
                act.app.metrics.request(&action, code);
                act.send(ctx, frame);
            })
            .spawn(ctx);
    }
}

impl WsSession {
    /// Sends a text frame through the outbox: whole, in fragments, or after the fragmented
    /// message under way.
    fn send(&mut self, ctx: &mut ws::WebsocketContext<Self>, frame: String) {
        if let Some(w) = self.outbox.send(frame) {
            Self::write(ctx, w);
        }
    }

    fn write(ctx: &mut ws::WebsocketContext<Self>, w: Write) {
        let more = w.more_follows();
        match w {
            Write::Text(t) => ctx.text(t),
            Write::First(b) => ctx.write_raw(ws::Message::Continuation(Item::FirstText(b))),
            Write::Continue(b) => ctx.write_raw(ws::Message::Continuation(Item::Continue(b))),
            Write::Last(b) => ctx.write_raw(ws::Message::Continuation(Item::Last(b))),
        }
        if more {
            // The next fragment on a later turn, once this one has been flushed.
            ctx.run_later(Duration::ZERO, |act, ctx| {
                for w in act.outbox.next_turn() {
                    Self::write(ctx, w);
                }
            });
        }
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.app.metrics.session_opened();
        if self.world.is_none() {
            self.send(ctx, error_frame(None, &ErrorCode::WorldUnknown.into()));
            ctx.close(Some(CloseCode::Normal.into()));
            ctx.stop();
            return;
        }
        let interval = self.app.session.heartbeat_interval;
        let timeout = self.app.session.client_timeout;
        ctx.run_interval(interval, move |act, ctx| {
            if act.last_heard.elapsed() > timeout {
                log::debug!("dropping a silent client");
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.app.metrics.session_closed();
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match msg {
            Ok(ws::Message::Text(text)) => {
                if text.len() > crate::protocol::MAX_FRAME_BYTES {
                    return close_too_big(ctx);
                }
                self.handle_text(&text, ctx)
            }
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Pong(_)) => {}
            Ok(ws::Message::Binary(_)) => self.invalid(ctx, "binary frames are not supported"),
            Ok(ws::Message::Continuation(_)) => {
                self.invalid(ctx, "fragmented frames are not supported")
            }
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Nop) => {}
            Err(ProtocolError::Overflow) => close_too_big(ctx),
            Err(e) => {
                log::debug!("closing a session after a protocol error: {e}");
                ctx.close(Some(CloseCode::Protocol.into()));
                ctx.stop();
            }
        }
    }
}

fn close_too_big(ctx: &mut ws::WebsocketContext<WsSession>) {
    ctx.close(Some(CloseReason {
        code: CloseCode::Size,
        description: Some("frame too large".into()),
    }));
    ctx.stop();
}
