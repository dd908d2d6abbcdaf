//! Warm joins without an actor hop. The coordinator publishes here the join target of every
//! meeting it has just found running, and withdraws it whenever anything that decision rests on
//! changes (the meeting's server, ids, liveness or createTime; the server's health, state or
//! endpoint). A session answers `bbb.room_url` for a published meeting itself: the permission
//! checks and the signing are pure functions over its world snapshot, so the hot path of a
//! keynote start touches neither the coordinator's mailbox nor the database nor the network.
//!
//! Only the coordinator writes, from its own thread, so publish and withdraw happen in the same
//! order as the coordinator's state changes. A session that reads an entry just before it is
//! withdrawn gets the answer the coordinator would have given had the join arrived a moment
//! earlier: the same guarantee its mailbox gave.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::bbb::{JoinParams, JoinPrefix};
use crate::protocol::ErrorReply;
use crate::user::UserContext;
use crate::world::WorldSnapshot;

use super::checks::{self, RoomJoin};
use super::join_url;
use super::meetings::{push_room_key, JoinTarget};

thread_local! {
    static ROOM_KEY: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(96));
}

/// Meeting halves of join URLs kept per published meeting: moderator and attendee, and room
/// settings from before and after a world import.
const MAX_PREFIXES: usize = 4;

/// One published meeting: where it runs, and the encoded, hashed meeting halves of its join
/// URLs (see [`JoinPrefix`]), filled by the joins that need them.
pub struct Published {
    pub target: JoinTarget,
    prefixes: RwLock<Vec<Arc<JoinPrefix>>>,
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Published {
    fn new(target: JoinTarget) -> Self {
        Published {
            target,
            prefixes: RwLock::default(),
        }
    }

    /// The signed join URL for `p`, from a cached meeting half when one fits.
    pub fn signed_url(&self, p: &JoinParams<'_>) -> String {
        let endpoint = &self.target.endpoint;
        let cached = self
            .prefixes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|prefix| prefix.fits(endpoint, p))
            .cloned();
        if let Some(prefix) = cached {
            return prefix.sign(p, &endpoint.secret);
        }
        let prefix = Arc::new(JoinPrefix::new(endpoint, p));
        let url = prefix.sign(p, &endpoint.secret);
        let mut prefixes = self
            .prefixes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if prefixes.len() >= MAX_PREFIXES {
            prefixes.remove(0);
        }
        prefixes.push(prefix);
        url
    }
}

/// The published running meetings, by meeting key (`room:{world}:{room}` / `call:{id}`).
#[derive(Debug, Default)]
pub struct WarmJoins {
    targets: RwLock<HashMap<String, Arc<Published>>>,
    /// Joins sessions answered from here (the coordinator adds them to `joins_from_memory`).
    served: AtomicU64,
}

impl WarmJoins {
    /// The published meeting of `key`, if any.
    pub fn get(&self, key: &str) -> Option<Arc<Published>> {
        self.read().get(key).cloned()
    }

    /// How many meetings are published.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// No meeting is published.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Joins answered by sessions from here so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// `key`'s meeting is running at `target`. Called by the coordinator (public for the
    /// benchmarks, which publish without one).
    pub fn publish(&self, key: &str, target: &JoinTarget) {
        let mut map = self.write();
        match map.get(key) {
            // Unchanged: keep it, with the join URL halves already built for it.
            Some(current) if current.target == *target => {}
            _ => {
                map.insert(key.to_string(), Arc::new(Published::new(target.clone())));
            }
        }
    }

    /// Coordinator only: `key`'s meeting may have changed; sessions must ask again.
    pub(crate) fn withdraw(&self, key: &str) {
        if self.read().contains_key(key) {
            self.write().remove(key);
        }
    }

    /// Coordinator only: server `id` may have changed (health, state, endpoint, removal).
    pub(crate) fn withdraw_server(&self, id: i32) {
        self.write().retain(|_, p| p.target.server_id != id);
    }

    /// A session's `bbb.room_url` done in place: `Some(Err)` for a failed check (they need no
    /// BBB), `Some(Ok(url))` for a published meeting, `None` when the coordinator must decide
    /// (the meeting may need a create).
    pub fn room_url(
        &self,
        world: &WorldSnapshot,
        user: &UserContext,
        room: Option<&str>,
    ) -> Option<Result<String, ErrorReply>> {
        let join = match checks::room_join(world, user, room) {
            Ok(join) => join,
            Err(e) => return Some(Err(e)),
        };
        // The key is built in a per-thread buffer: no allocation per join.
        let published = ROOM_KEY.with_borrow_mut(|key| {
            key.clear();
            push_room_key(key, &world.id, &join.room.id);
            self.get(key)
        })?;
        self.served.fetch_add(1, Ordering::Relaxed);
        let params = room_join_params(world, user, &join, &published.target);
        Some(Ok(published.signed_url(&params)))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Published>>> {
        // Nothing panics while holding the lock, and the map stays consistent if it did.
        self.targets.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Published>>> {
        self.targets.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The join parameters of a room join that passed the checks, at `target`.
fn room_join_params<'a>(
    world: &'a WorldSnapshot,
    user: &'a UserContext,
    join: &'a RoomJoin<'_>,
    target: &'a JoinTarget,
) -> JoinParams<'a> {
    join_url::room_join(
        world,
        join.bbb,
        user,
        &join.full_name,
        join.moderator,
        target,
    )
}

/// The signed join URL of a room join that passed the checks, at `target`.
pub fn signed_room_url(
    world: &WorldSnapshot,
    user: &UserContext,
    join: &RoomJoin<'_>,
    target: &JoinTarget,
) -> String {
    crate::bbb::join_url(
        &target.endpoint,
        &room_join_params(world, user, join, target),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bbb::{ChecksumAlgorithm, Secret, ServerEndpoint};

    fn target(server_id: i32, meeting_id: &str) -> JoinTarget {
        JoinTarget {
            server_id,
            endpoint: ServerEndpoint {
                base_url: format!("https://bbb{server_id}.example/bigbluebutton"),
                secret: Secret::new("s"),
                algorithm: ChecksumAlgorithm::Sha256,
            },
            meeting_id: meeting_id.into(),
            attendee_pw: "ap".into(),
            moderator_pw: "mp".into(),
            create_time: Some(1),
        }
    }

    #[test]
    fn publish_withdraw_and_withdraw_server() {
        let w = WarmJoins::default();
        w.publish("a", &target(1, "m1"));
        w.publish("b", &target(1, "m2"));
        w.publish("c", &target(2, "m3"));
        assert_eq!(w.len(), 3);
        assert_eq!(
            w.get("a").map(|t| t.target.meeting_id.clone()),
            Some("m1".into())
        );
        w.withdraw("a");
        assert!(w.get("a").is_none());
        w.withdraw_server(1);
        assert!(w.get("b").is_none());
        assert!(w.get("c").is_some(), "other servers' meetings stay");
        w.withdraw("never-published");
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn cached_url_halves_sign_like_fresh_urls_and_stay_bounded() {
        use crate::bbb::{join_url, Role};
        let p = Published::new(target(1, "m1"));
        let params = |role, name, extra: Vec<(&'static str, &'static str)>| JoinParams {
            meeting_id: "m1",
            full_name: name,
            user_id: "u",
            role,
            password: Some("pw"),
            create_time: Some(1),
            avatar_url: None,
            guest: false,
            extra,
        };
        let settings = [
            vec![],
            vec![("userdata-a", "true")],
            vec![("userdata-a", "false")],
            vec![("userdata-b", "x")],
            vec![("userdata-c", "y")],
        ];
        for round in 0..2 {
            for extra in &settings {
                for role in [Role::Moderator, Role::Viewer] {
                    for name in ["Ada", "Bob"] {
                        let q = params(role, name, extra.clone());
                        assert_eq!(
                            p.signed_url(&q),
                            join_url(&p.target.endpoint, &q),
                            "round {round}"
                        );
                    }
                }
            }
        }
        assert_eq!(p.prefixes.read().unwrap().len(), MAX_PREFIXES);
    }

    #[test]
    fn republishing_a_changed_target_replaces_it() {
        let w = WarmJoins::default();
        w.publish("a", &target(1, "m1"));
        let first = w.get("a");
        w.publish("a", &target(1, "m1"));
        assert!(
            Arc::ptr_eq(&first.clone().unwrap(), &w.get("a").unwrap()),
            "same target kept"
        );
        w.publish("a", &target(2, "m1"));
        assert_eq!(w.get("a").map(|t| t.target.server_id), Some(2));
    }
}
