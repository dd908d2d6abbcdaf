//! Moving a room's meeting to a server an operator chose (a busy room onto a dedicated server
//! before a keynote, say). The target is checked first (known, enabled, online, allowed for the
//! world), then the meeting is created there — claimed in the database like any move — and
//! only after that create answered SUCCESS is it ended on the server it was on. Joins meanwhile
//! keep getting the old server's URL, then the new one's: there is no gap.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::db::servers::ServerState;
use crate::ids::{MeetingKey, ServerId};
use crate::world::WorldSnapshot;

use super::ensure::{Attempts, MeetingSpec};
use super::{BbbCoordinator, LocalActFut};

/// Moves `room`'s meeting (in `world`) to `server`.
pub struct MoveRoom {
    pub world: Arc<WorldSnapshot>,
    pub room: String,
    pub server: ServerId,
}

/// Where the meeting was and is now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Moved {
    pub from: Option<ServerId>,
    pub to: ServerId,
    /// BBB's createTime of the meeting on the target.
    pub create_time: Option<i64>,
}

/// Why a move was refused; the message names the reason (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    /// No such room, or it has no BBB module (404).
    #[error("no video room {0:?} in this world")]
    UnknownRoom(String),
    /// No such server (404).
    #[error("no server with id {0}")]
    UnknownServer(ServerId),
    /// The target cannot take it (409).
    #[error("{0}")]
    Refused(String),
    /// The create on the target failed; the meeting stays where it was (409).
    #[error("the move failed, the meeting stays where it was: {0}")]
    Failed(String),
}

impl Message for MoveRoom {
    type Result = Result<Moved, MoveError>;
}

impl BbbCoordinator {
    /// Whether `server` may take a meeting of `world` now; the reason when not.
    fn move_target_refusal(&self, world: &str, server: ServerId) -> Result<(), MoveError> {
        let s = self
            .fleet
            .get(server)
            .ok_or(MoveError::UnknownServer(server))?;
        let refuse = |why: String| Err(MoveError::Refused(why));
        if s.state() != ServerState::Enabled {
            return refuse(format!("server {server} is {}", s.state()));
        }
        if !s.online() {
            return refuse(format!("server {server} is offline"));
        }
        if s.suspect() {
            return refuse(format!(
                "server {server} failed its last contact ({})",
                s.last_error().unwrap_or("unknown error")
            ));
        }
        if let Some(only) = s.row().world_id.as_deref().filter(|w| *w != world) {
            return refuse(format!("server {server} is reserved for world {only:?}"));
        }
        Ok(())
    }
}

impl Handler<MoveRoom> for BbbCoordinator {
    type Result = ResponseActFuture<Self, Result<Moved, MoveError>>;

    fn handle(&mut self, msg: MoveRoom, _ctx: &mut Self::Context) -> Self::Result {
        let MoveRoom {
            world,
            room,
            server,
        } = msg;
        let refusal = |e: MoveError| -> Self::Result { Box::pin(fut::ready(Err(e))) };
        let Some(r) = world.room(&room).filter(|r| r.bbb.is_some()).cloned() else {
            return refusal(MoveError::UnknownRoom(room));
        };
        let Some(bbb) = r.bbb.as_ref() else {
            return refusal(MoveError::UnknownRoom(room));
        };
        if let Err(e) = self.move_target_refusal(&world.id, server) {
            return refusal(e);
        }
        let key = MeetingKey::room(&world.id, &room);
        if self.inflight.contains_key(&key) {
            return refusal(MoveError::Refused(
                "the meeting is being created right now; try again in a moment".into(),
            ));
        }
        let from = self.meetings.get(&key).and_then(|e| e.server());
        let spec = MeetingSpec::room(&world, &r, bbb);
        let mut attempts = Attempts::new(Instant::now() + self.settings.join_deadline);
        attempts.forced = Some(server);
        log::info!("moving the meeting of {key} to server {server} (operator)");
        Box::pin(self.lead(spec, attempts).then(
            move |res, act, _ctx| -> LocalActFut<Result<Moved, MoveError>> {
                let e = match res {
                    Ok(target) => {
                        return Box::pin(fut::ready(Ok(Moved {
                            from,
                            to: target.server,
                            create_time: target.create_time,
                        })))
                    }
                    Err(e) => e,
                };
                let failed =
                    MoveError::Failed(e.message.unwrap_or_else(|| "BBB did not create it".into()));
                // The placement on the target was claimed in the database before its create
                // was sent; put it back, or the next poll round would follow the stored
                // placement and end the meeting where it still runs. Conditional: a placement
                // someone else changed meanwhile stays as it is.
                let db = act.db.clone();
                let revert = async move {
                    let put_back = db
                        .run({
                            let key = key.clone();
                            move |c| {
                                crate::db::meetings::claim(
                                    c,
                                    &key,
                                    Some(server),
                                    from,
                                    None,
                                    i64::MAX,
                                )
                            }
                        })
                        .await;
                    if let Err(e) = put_back {
                        log::warn!(
                            "cannot put the placement of {key} back after a failed move: {e}"
                        );
                    }
                    Err(failed)
                };
                Box::pin(revert.into_actor(act))
            },
        ))
    }
}
