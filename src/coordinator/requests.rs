//! The `bbb.*` requests sessions send: `bbb.room_url` and `bbb.call_url` (checks, then the
//! join target from memory or [`super::ensure`]), and `bbb.recordings`.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use serde_json::{json, Value};

use crate::ids::MeetingKey;
use crate::join::checks::{self, CallInfo};
use crate::join::params;
use crate::protocol::{ErrorCode, ErrorReply};
use crate::user::UserContext;
use crate::world::WorldSnapshot;

use super::ensure::MeetingSpec;
use super::{failed, recordings, BbbCoordinator, LocalActFut, SERVICE_UNAVAILABLE};

impl BbbCoordinator {
    pub(super) fn room_url(
        &mut self,
        world: Arc<WorldSnapshot>,
        user: Arc<UserContext>,
        room: Option<String>,
        deadline: Instant,
    ) -> LocalActFut<Result<Value, ErrorReply>> {
        let join = match checks::room_join(&world, &user, room.as_deref()) {
            Ok(j) => j,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let key = MeetingKey::room(&world.id, &join.room.id);
        if let Some((target, _)) = self.answerable(&key, Instant::now()) {
            self.stats.joins_from_memory += 1;
            let p = params::room_join(
                &world,
                join.bbb,
                &user,
                &join.full_name,
                join.moderator,
                &target,
            );
            let url = crate::bbb::join_url(&target.endpoint, &p);
            return Box::pin(fut::ready(Ok(json!({ "url": url }))));
        }
        let spec = MeetingSpec::room(&world, join.room, join.bbb);
        let moderator = join.moderator;
        let full_name = join.full_name;
        let room_id = join.room.id.clone();
        Box::pin(
            self.join_target(spec, deadline)
                .map(move |target, _act, _ctx| {
                    let target = target?;
                    let Some(bbb) = world.room(&room_id).and_then(|r| r.bbb.as_ref()) else {
                        return Err(ErrorCode::RoomUnknown.into());
                    };
                    let p = params::room_join(&world, bbb, &user, &full_name, moderator, &target);
                    Ok(json!({ "url": crate::bbb::join_url(&target.endpoint, &p) }))
                }),
        )
    }

    pub(super) fn call_url(
        &mut self,
        world: Arc<WorldSnapshot>,
        user: Arc<UserContext>,
        call: Option<String>,
        deadline: Instant,
    ) -> LocalActFut<Result<Value, ErrorReply>> {
        let call_id = match checks::parse_call_id(call.as_deref()) {
            Ok(id) => id,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let lookup: LocalActFut<Result<Option<Rc<CallInfo>>, ErrorReply>> =
            match self.calls.get(&call_id) {
                Some((info, _)) => Box::pin(fut::ready(Ok(Some(info.clone())))),
                None => self.load_call(call_id.clone()),
            };
        Box::pin(lookup.then(
            move |info, act, _ctx| -> LocalActFut<Result<Value, ErrorReply>> {
                let info = match info {
                    Ok(info) => info,
                    Err(e) => return Box::pin(fut::ready(Err(e))),
                };
                let full_name = match checks::call_join(&world, &user, info.as_deref()) {
                    Ok(n) => n,
                    Err(e) => return Box::pin(fut::ready(Err(e))),
                };
                let spec = MeetingSpec::call(&world.id, &call_id);
                Box::pin(
                    act.join_target(spec, deadline)
                        .map(move |target, _act, _ctx| {
                            let target = target?;
                            let p = params::call_join(&world, &user, &full_name, &target);
                            Ok(json!({ "url": crate::bbb::join_url(&target.endpoint, &p) }))
                        }),
                )
            },
        ))
    }

    /// Loads a call from the database and caches it when it exists.
    fn load_call(
        &mut self,
        call_id: String,
    ) -> LocalActFut<Result<Option<Rc<CallInfo>>, ErrorReply>> {
        let db = self.db.clone();
        let id = call_id.clone();
        let fut = async move { db.run(move |c| crate::db::calls::load_call(c, &id)).await };
        Box::pin(fut.into_actor(self).map(move |res, act, _ctx| match res {
            Ok(Some((world_id, members))) => {
                let info = Rc::new(CallInfo {
                    world_id,
                    members: members.into_iter().collect(),
                });
                act.calls.insert(call_id, (info.clone(), Instant::now()));
                Ok(Some(info))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                log::error!("cannot load call: {e}");
                Err(failed(SERVICE_UNAVAILABLE))
            }
        }))
    }

    pub(super) fn recordings(
        &mut self,
        world: Arc<WorldSnapshot>,
        user: Arc<UserContext>,
        room: Option<String>,
        deadline: Instant,
    ) -> LocalActFut<Result<Value, ErrorReply>> {
        let room = match checks::recordings_room(&world, &user, room.as_deref()) {
            Ok(r) => r,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let key = MeetingKey::room(&world.id, &room.id);
        let known = self
            .meetings
            .get(&key)
            .map(|e| (e.meeting_id.clone(), e.server()));
        let db = self.db.clone();
        let known_id = known.as_ref().map(|k| k.0.clone());
        // Which meeting id, and every server it was ever placed on.
        let lookup = async move {
            db.run(move |c| {
                let meeting_id = match known_id {
                    Some(id) => Some(id),
                    None => crate::db::meetings::get(c, &key)?.map(|r| r.meeting_id),
                };
                let Some(meeting_id) = meeting_id else {
                    return Ok(None);
                };
                let servers = crate::db::meetings::servers_ever(c, &meeting_id)?;
                Ok(Some((meeting_id, servers)))
            })
            .await
        };
        let current_server = known.as_ref().and_then(|k| k.1);
        let tz = world.timezone;
        Box::pin(lookup.into_actor(self).then(
            move |res, act, _ctx| -> LocalActFut<Result<Value, ErrorReply>> {
                let (meeting_id, mut server_ids) = match res {
                    Ok(Some(found)) => found,
                    Ok(None) => match known {
                        Some((id, server)) => (id, server.into_iter().collect()),
                        None => return Box::pin(fut::ready(Ok(json!({ "results": [] })))),
                    },
                    Err(e) => {
                        log::error!("cannot look up recordings servers: {e}");
                        match known {
                            Some((id, server)) => (id, server.into_iter().collect()),
                            None => return Box::pin(fut::ready(Err(failed(SERVICE_UNAVAILABLE)))),
                        }
                    }
                };
                if let Some(current) = current_server {
                    if !server_ids.contains(&current) {
                        server_ids.push(current);
                    }
                }
                let servers: Vec<_> = server_ids
                    .iter()
                    .filter_map(|id| act.fleet.get(*id).map(|s| (*id, s.endpoint().clone())))
                    .collect();
                let timeout = act.call_timeout(deadline);
                let fetch = recordings::fetch(act.api.clone(), servers, meeting_id, timeout);
                Box::pin(fetch.into_actor(act).map(move |answers, act, _ctx| {
                    for (server, answer) in &answers {
                        act.record_contact(*server, answer.as_ref().map(|_| ()));
                    }
                    act.publish();
                    recordings::answer(answers, tz)
                }))
            },
        ))
    }
}
