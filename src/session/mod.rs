//! One actor per WebSocket connection: framing (large frames in fragments, see [`outbox`]),
//! heartbeat, flood and size limits, and authentication. `bbb.*` requests go to the
//! [`BbbCoordinator`](crate::coordinator) (actix's `websockets/chat` split), except a join of a
//! meeting the coordinator has published as running, which the session answers from that
//! table ([`JoinTable`](crate::join::JoinTable)) without a message.

pub mod authenticate;
pub mod authenticated;
mod closing;
mod control;
pub mod limits;
pub mod outbox;
pub mod profile_writes;
pub mod rooms;
pub mod routing;
pub mod socket;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, ContextFutureSpawner, StreamHandler,
    WrapFuture,
};
use actix_http::ws::Item;
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError};
use serde_json::{json, Value};

use crate::coordinator::{BbbCommand, BbbCommandKind, RefreshMeeting};
use crate::limits::{ConnectionSlot, TokenBucket};
use crate::permissions::Permission;
use crate::protocol::{
    error_frame, parse_frame, success_frame, url_success_frame, ErrorCode, ErrorReply,
    InvalidFrame, Request,
};
use crate::registry::{self, SessionRecipients};
use crate::session::socket::ConnectionSocket;
use crate::state::AppState;
use crate::user::{ProfileDocument, UserContext};
use crate::world::world_permissions;
use crate::world::WorldSnapshot;
use limits::InvalidFrameLimiter;
use outbox::{Outbox, Write};
use profile_writes::{ProfileWrite, ProfileWrites, Submitted};
use routing::{route, Route};

/// The WebSocket session actor.
pub struct WsSession {
    app: Arc<AppState>,
    world_id: String,
    /// `None` when the world does not exist: the session reports it and closes.
    world: Option<Arc<WorldSnapshot>>,
    user: Option<Arc<UserContext>>,
    /// The user's whole profile, as `authenticated` returns it.
    profile: ProfileDocument,
    /// The stored version of the user's traits and moderation held in `user` (see
    /// [`registry::UserChanged`]).
    user_version: i64,
    authenticating: bool,
    /// `bbb.*` requests sent to the coordinator and not answered yet: a sequence number and
    /// the request id. Answered at once with `bbb.failed` when the gateway shuts down.
    pending: Vec<(u64, Option<Value>)>,
    next_request: u64,
    last_heard: Instant,
    /// Invalid and refused frames; too many close the connection.
    limiter: InvalidFrameLimiter,
    /// Every frame takes a token (`limits.frames_per_sec`, `limits.frames_burst`).
    frames: TokenBucket,
    /// `user.update` writes, one at a time.
    profile_writes: ProfileWrites,
    /// The client's address (see [`crate::limits::client_ip`]), when known.
    client_ip: Option<IpAddr>,
    /// This connection's place in its address's connection count.
    _connection: Option<ConnectionSlot>,
    /// Every text frame to the client goes through it (see [`outbox`]).
    outbox: Outbox,
    /// This session in the process's [`registry::SessionRegistry`].
    registration: Option<registry::SessionKey>,
    /// The connection's socket, to close it right after the closing handshake.
    socket: Option<ConnectionSocket>,
    /// A close frame was sent: nothing else is sent, and incoming frames other than the
    /// client's close frame are ignored.
    closing: bool,
}

impl WsSession {
    /// A session for `world_id` (`world` is `None` when it does not exist) on the connection
    /// whose socket is `socket` (when the server remembers sockets, see
    /// [`socket`]), from `client` (its address and place in that address's
    /// connection count) when known.
    pub fn new(
        app: Arc<AppState>,
        world_id: String,
        world: Option<Arc<WorldSnapshot>>,
        socket: Option<ConnectionSocket>,
        client: Option<(IpAddr, ConnectionSlot)>,
    ) -> Self {
        let limiter =
            InvalidFrameLimiter::new(app.session.max_invalid_frames, app.session.invalid_window);
        let limits = &app.settings.limits;
        let frames = TokenBucket::new(limits.frames_per_sec, limits.frames_burst, Instant::now());
        let profile_writes = ProfileWrites::new(app.session.max_in_flight);
        let (client_ip, connection) = match client {
            Some((ip, slot)) => (Some(ip), Some(slot)),
            None => (None, None),
        };
        Self {
            app,
            world_id,
            world,
            user: None,
            profile: ProfileDocument::default(),
            user_version: 0,
            authenticating: false,
            pending: Vec::new(),
            next_request: 0,
            last_heard: Instant::now(),
            limiter,
            frames,
            profile_writes,
            client_ip,
            _connection: connection,
            outbox: Outbox::default(),
            registration: None,
            socket,
            closing: false,
        }
    }

    /// The newest snapshot of this session's world (picks up imports while connected).
    fn current_world(&self) -> Option<Arc<WorldSnapshot>> {
        self.app
            .worlds
            .get_cached(&self.world_id)
            .or_else(|| self.world.clone())
    }

    /// Answers a frame that is not a well-formed request (echoing its id when it has one) and
    /// counts it against the flood limit.
    fn invalid(&mut self, ctx: &mut ws::WebsocketContext<Self>, frame: InvalidFrame) {
        self.send(ctx, frame.error_frame());
        self.count_bad_frame(ctx);
    }

    /// Counts an invalid or refused frame; too many within the window close the connection
    /// with 1008.
    fn count_bad_frame(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.limiter.record(Instant::now()) {
            log::info!("closing a session that sent too many invalid or refused frames");
            self.close_and_wait(
                ctx,
                CloseReason {
                    code: CloseCode::Policy,
                    description: Some("too many invalid or rate-limited messages".into()),
                },
            );
        }
    }

    /// Takes a token for an incoming frame; `false` when the session is over its frame rate.
    fn frame_allowed(&mut self) -> bool {
        self.frames.try_take(Instant::now())
    }

    /// A frame over the session's rate: not processed. A text frame is answered with
    /// `protocol.rate_limited` (echoing its id when it has one); every refused frame counts
    /// toward closing the connection (see [`Self::count_bad_frame`]).
    fn refuse_frame(&mut self, ctx: &mut ws::WebsocketContext<Self>, text: Option<&str>) {
        self.app.metrics.limited("frames");
        if let Some(text) = text {
            let id = match parse_frame(text) {
                Ok(req) => req.id,
                Err(invalid) => invalid.id,
            };
            self.send(
                ctx,
                error_frame(id.as_ref(), &rate_limited("too many messages, slow down")),
            );
        }
        self.count_bad_frame(ctx);
    }

    fn handle_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let req = match parse_frame(text) {
            Ok(r) => r,
            Err(invalid) => return self.invalid(ctx, invalid),
        };
        match route(&req, self.user.is_some()) {
            Route::Pong => self.send(ctx, json!(["pong", req.payload]).to_string()),
            Route::Authenticate => self.authenticate(req, ctx),
            Route::UserUpdate => self.user_update(req, ctx),
            Route::RoomPresence(presence) => self.room_presence(&req, presence, ctx),
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

    /// Runs `authenticate`. Its errors carry the request's id when the frame had one (the
    /// frontend sends it without, and then treats `auth.*` errors as fatal).
    fn authenticate(&mut self, req: Request, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(world) = self.current_world() else {
            return self.send(
                ctx,
                error_frame(req.id.as_ref(), &ErrorCode::WorldUnknown.into()),
            );
        };
        if self.authenticating {
            return self.send(
                ctx,
                error_frame(
                    req.id.as_ref(),
                    &ErrorReply::with_message(
                        ErrorCode::InvalidMessage,
                        "authentication in progress",
                    ),
                ),
            );
        }
        if let Some(ip) = self.client_ip {
            if !self.app.ip_limits.allow_authenticate(ip, Instant::now()) {
                // The venueless frontend reconnects by itself after a close, so the login is
                // retried once this address's budget allows it.
                self.app.metrics.limited("authenticate_per_ip");
                self.send(
                    ctx,
                    error_frame(
                        req.id.as_ref(),
                        &rate_limited("too many logins from your address, retry in a moment"),
                    ),
                );
                return self.close_and_wait(
                    ctx,
                    CloseReason {
                        code: CloseCode::Again,
                        description: Some("too many logins from this address".into()),
                    },
                );
            }
        }
        self.authenticating = true;
        let db = self.app.db.clone();
        let Request { id, payload, .. } = req;
        async move {
            let result = authenticate::authenticate(&db, &world, &payload).await;
            (result, world)
        }
        .into_actor(self)
        .map(move |(result, world), act, ctx| {
            act.authenticating = false;
            match result {
                Ok(login) => {
                    let frame =
                        authenticated::authenticated_frame(&world, &login.user, &login.profile);
                    act.send(ctx, frame);
                    if let Some(key) = act.registration {
                        act.app.sessions.bind_user(key, &login.user.id);
                    }
                    act.user = Some(Arc::new(login.user));
                    act.user_version = login.version;
                    act.profile = login.profile;
                }
                Err(e) => act.send(ctx, error_frame(id.as_ref(), &e)),
            }
        })
        .spawn(ctx);
    }

    /// `user.update`: replaces the stored profile whole (a payload without `profile` changes
    /// nothing, as in venueless); needs `world:view`, so a user banned meanwhile cannot. The
    /// writes of one session go one at a time, in order (see [`profile_writes`]).
    fn user_update(&mut self, req: Request, ctx: &mut ws::WebsocketContext<Self>) {
        let (Some(user), Some(world)) = (self.user.clone(), self.current_world()) else {
            return self.send(
                ctx,
                error_frame(req.id.as_ref(), &ErrorCode::Unauthenticated.into()),
            );
        };
        if !world_permissions(&world, &user.subject()).contains(Permission::WorldView) {
            return self.send(ctx, error_frame(req.id.as_ref(), &ErrorCode::Denied.into()));
        }
        let (document, profile) = match authenticate::parse_profile_update(&req.payload) {
            Ok(Some(p)) => p,
            Ok(None) => return self.send(ctx, success_frame(req.id.as_ref(), json!({}))),
            Err(e) => return self.send(ctx, error_frame(req.id.as_ref(), &e)),
        };
        match self
            .profile_writes
            .submit(&user.id, document, profile, req.id.clone())
        {
            Submitted::Start(write) => self.write_profile(write, ctx),
            Submitted::Queued => {}
            Submitted::Refused => {
                self.app.metrics.limited("in_flight");
                self.send(
                    ctx,
                    error_frame(
                        req.id.as_ref(),
                        &rate_limited("too many profile updates at once from this connection"),
                    ),
                );
            }
        }
    }

    /// Stores one profile, answers the updates it covers, then starts the next waiting write.
    fn write_profile(&mut self, write: ProfileWrite, ctx: &mut ws::WebsocketContext<Self>) {
        let db = self.app.db.clone();
        let ProfileWrite {
            user_id,
            document,
            profile,
            ids,
        } = write;
        async move {
            let r = authenticate::store_profile(&db, user_id.clone(), &document).await;
            (r, document, profile, user_id)
        }
        .into_actor(self)
        .map(move |(result, document, profile, user_id), act, ctx| {
            match result {
                Ok(()) => {
                    // The session may be someone else's by now (logged in again).
                    if let Some(current) = act.user.as_ref().filter(|u| u.id == user_id) {
                        let mut next = (**current).clone();
                        next.profile = profile;
                        act.user = Some(Arc::new(next));
                        act.profile = document;
                    }
                    for id in &ids {
                        act.send(ctx, success_frame(id.as_ref(), json!({})));
                    }
                }
                Err(e) => {
                    for id in &ids {
                        act.send(ctx, error_frame(id.as_ref(), &e));
                    }
                }
            }
            if let Some(next) = act.profile_writes.finished() {
                act.write_profile(next, ctx);
            }
        })
        .spawn(ctx);
    }

    fn room_presence(
        &mut self,
        req: &Request,
        presence: rooms::Presence,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let (Some(user), Some(world)) = (&self.user, self.current_world()) else {
            return self.send(
                ctx,
                error_frame(req.id.as_ref(), &ErrorCode::Unauthenticated.into()),
            );
        };
        let (frame, code) = match rooms::check(&world, user, req.str_field("room"), presence) {
            Ok(()) => (success_frame(req.id.as_ref(), json!({})), "success"),
            Err(e) => (error_frame(req.id.as_ref(), &e), e.code.as_str()),
        };
        self.app.metrics.request(&req.action, code);
        self.send(ctx, frame);
    }

    /// The hot path: a `bbb.room_url` whose checks fail, or whose meeting the coordinator has
    /// published as confirmed running recently, is answered here without a message to the
    /// coordinator. Returns whether it was answered. A join past the entry's refresh time also
    /// asks the coordinator (once, without waiting) to re-confirm the meeting.
    fn answer_warm_join(&mut self, req: &Request, ctx: &mut ws::WebsocketContext<Self>) -> bool {
        let (Some(user), Some(world)) = (&self.user, self.current_world()) else {
            return false;
        };
        let room = req.str_field("room");
        let Some(result) = self.app.joins.room_url(&world, user, room, Instant::now()) else {
            return false;
        };
        let (frame, code) = match result {
            Ok(warm) => {
                if let (true, Some(room)) = (warm.refresh, room) {
                    self.app.coordinator.do_send(RefreshMeeting {
                        world: world.clone(),
                        room: room.to_string(),
                    });
                }
                (url_success_frame(req.id.as_ref(), &warm.url), "success")
            }
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
        if self.pending.len() >= self.app.session.max_in_flight {
            self.app.metrics.limited("in_flight");
            self.app.metrics.request(&req.action, "too_many_in_flight");
            return self.send(ctx, error_frame(
                req.id.as_ref(),
                &ErrorReply::with_message(
                    ErrorCode::BbbFailed,
                    "too many video requests at once from this connection, retry when the others are answered",
                ),
            ));
        }
        let target = req.str_field(field).map(str::to_owned);
        let deadline = self.app.settings.join_deadline();
        let command = BbbCommand {
            world,
            user,
            kind: kind(target),
            deadline: Instant::now() + deadline,
        };
        self.next_request += 1;
        let seq = self.next_request;
        self.pending.push((seq, req.id));
        let action = req.action;
        // The coordinator's answer is awaited by a task of its own, counted in `bbb_in_flight`:
        // when the session goes away first (shutdown), the coordinator still finishes the work
        // and a shutdown waits for it.
        let guard = self.app.bbb_in_flight.start();
        let send = self.app.coordinator.send(command);
        let (tx, rx) = tokio::sync::oneshot::channel();
        actix_web::rt::spawn(async move {
            let result = send.await;
            drop(guard);
            let _ = tx.send(result);
        });
        // Answered by the deadline whatever the coordinator is waiting for.
        tokio::time::timeout(deadline, rx)
            .into_actor(self)
            .map(move |result, act, ctx| {
                let Some(at) = act.pending.iter().position(|(s, _)| *s == seq) else {
                    // Already answered (the gateway is shutting down).
                    return;
                };
                let (_, id) = act.pending.swap_remove(at);
                let result = match result {
                    Ok(Ok(Ok(r))) => r,
                    Ok(Ok(Err(e))) => {
                        log::error!("coordinator unreachable: {e}");
                        Err(busy())
                    }
                    Ok(Err(_)) => Err(busy()),
                    Err(_) => Err(ErrorReply::with_message(
                        ErrorCode::BbbFailed,
                        "the video servers did not answer in time, please try again shortly",
                    )),
                };
                let (frame, code) = match result {
                    Ok(payload) => (success_frame(id.as_ref(), payload), "success"),
                    Err(e) => (error_frame(id.as_ref(), &e), e.code.as_str()),
                };
                act.app.metrics.request(&action, code);
                act.send(ctx, frame);
            })
            .spawn(ctx);
    }
}

fn rate_limited(message: &str) -> ErrorReply {
    ErrorReply::with_message(ErrorCode::RateLimited, message)
}

fn busy() -> ErrorReply {
    ErrorReply::with_message(
        ErrorCode::BbbFailed,
        "the video service is busy, retry in a moment",
    )
}

impl WsSession {
    /// Sends a text frame through the outbox: whole, in fragments, or after the fragmented
    /// message under way.
    fn send(&mut self, ctx: &mut ws::WebsocketContext<Self>, frame: String) {
        if self.closing {
            // Nothing may follow a close frame.
            return;
        }
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
                if act.closing {
                    return;
                }
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
        let addr = ctx.address();
        self.registration = self.app.sessions.register(SessionRecipients::new(
            addr.clone().recipient(),
            addr.recipient(),
        ));
        if self.world.is_none() {
            self.send(ctx, error_frame(None, &ErrorCode::WorldUnknown.into()));
            return self.close_and_wait(ctx, CloseCode::Normal.into());
        }
        if self.registration.is_none() {
            return self.go_away(ctx);
        }
        let interval = self.app.session.heartbeat_interval;
        let timeout = self.app.session.client_timeout;
        ctx.run_interval(interval, move |act, ctx| {
            if act.last_heard.elapsed() > timeout {
                log::debug!("dropping a silent client");
                ctx.stop();
            } else if !act.closing {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let Some(key) = self.registration.take() {
            self.app.sessions.unregister(key);
        }
        self.app.metrics.session_closed();
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        if self.closing {
            // After our close frame only the client's close frame matters.
            if let Ok(ws::Message::Close(_)) = msg {
                self.finish_closing(ctx);
            }
            return;
        }
        let counted = matches!(
            msg,
            Ok(ws::Message::Text(_)
                | ws::Message::Binary(_)
                | ws::Message::Continuation(_)
                | ws::Message::Ping(_))
        );
        if counted && !self.frame_allowed() {
            let text = match &msg {
                Ok(ws::Message::Text(t)) if t.len() <= crate::protocol::MAX_FRAME_BYTES => {
                    Some(&t[..])
                }
                _ => None,
            };
            return self.refuse_frame(ctx, text);
        }
        match msg {
            Ok(ws::Message::Text(text)) => {
                if text.len() > crate::protocol::MAX_FRAME_BYTES {
                    return close_too_big(ctx);
                }
                self.handle_text(&text, ctx)
            }
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Pong(_)) => {}
            Ok(ws::Message::Binary(_)) => self.invalid(
                ctx,
                InvalidFrame {
                    id: None,
                    message: "binary frames are not supported",
                },
            ),
            Ok(ws::Message::Continuation(_)) => self.invalid(
                ctx,
                InvalidFrame {
                    id: None,
                    message: "fragmented frames are not supported",
                },
            ),
            Ok(ws::Message::Close(reason)) => self.answer_close(ctx, reason),
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

/// Closes with 1009 and stops at once: the rest of the oversized frame cannot be read, so
/// there is no waiting for the client's close frame.
fn close_too_big(ctx: &mut ws::WebsocketContext<WsSession>) {
    ctx.close(Some(CloseReason {
        code: CloseCode::Size,
        description: Some("frame too large".into()),
    }));
    ctx.stop();
}
