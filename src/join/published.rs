//! The join table: meetings the coordinator has confirmed running recently, published for the
//! sessions so they answer `bbb.room_url` themselves, without a message to the coordinator, a
//! database query or a BBB call.
//!
//! Every entry carries the age of the fact it rests on. It may be answered from only until
//! `expires_at` (its confirmation plus `bbb.confirm_ttl_ms`); past `refresh_at` a join also
//! asks the coordinator, once, to re-confirm the meeting, so a meeting that keeps being joined
//! is re-confirmed in the background and never makes a join wait.
//!
//! Only the coordinator writes. After each change of its state it republishes what that change
//! touched, computed from the state by one rule ([`crate::coordinator`]); sessions read an
//! immutable snapshot (`arc-swap`), sharded so a republish copies one small map, not all.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::bbb::{JoinParams, JoinPrefix};
use crate::ids::MeetingKey;
use crate::protocol::ErrorReply;
use crate::user::UserContext;
use crate::world::WorldSnapshot;

use super::checks::{self, RoomJoin};
use super::params::room_join;
use super::target::JoinTarget;

thread_local! {
    static ROOM_KEY: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(96));
}

/// Meeting halves of join URLs kept per published meeting: moderator and attendee, and room
/// settings from before and after a world import.
const MAX_PREFIXES: usize = 4;
/// Shards of the table: a republish copies one shard's map.
const SHARDS: usize = 64;

/// One published meeting: where it runs, until when that may be trusted, and the encoded,
/// hashed meeting halves of its join URLs (see [`JoinPrefix`]), filled by the joins that need
/// them.
pub struct Published {
    pub target: JoinTarget,
    /// The confirmation plus the TTL: no join is answered from this entry after it.
    pub expires_at: Instant,
    /// After this a join asks the coordinator to re-confirm the meeting.
    pub refresh_at: Instant,
    refresh_requested: AtomicBool,
    prefixes: RwLock<Vec<Arc<JoinPrefix>>>,
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published")
            .field("target", &self.target)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Published {
    /// A meeting running at `target`, trusted until `expires_at`, due for re-confirmation at
    /// `refresh_at`.
    pub fn new(target: JoinTarget, refresh_at: Instant, expires_at: Instant) -> Self {
        Published {
            target,
            expires_at,
            refresh_at,
            refresh_requested: AtomicBool::new(false),
            prefixes: RwLock::default(),
        }
    }

    /// The same meeting with a newer confirmation, keeping the URL halves built for it.
    pub fn renewed(&self, refresh_at: Instant, expires_at: Instant) -> Self {
        let prefixes = self
            .prefixes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Published {
            target: self.target.clone(),
            expires_at,
            refresh_at,
            refresh_requested: AtomicBool::new(false),
            prefixes: RwLock::new(prefixes),
        }
    }

    /// May a join be answered from this entry at `now`?
    pub fn valid_at(&self, now: Instant) -> bool {
        now < self.expires_at
    }

    /// True once per entry, for the first join after `refresh_at`: that join asks the
    /// coordinator to re-confirm.
    pub fn take_refresh(&self, now: Instant) -> bool {
        now >= self.refresh_at && !self.refresh_requested.swap(true, Ordering::Relaxed)
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

    #[cfg(test)]
    fn prefix_count(&self) -> usize {
        self.prefixes.read().map(|p| p.len()).unwrap_or(0)
    }
}

type Shard = HashMap<MeetingKey, Arc<Published>>;
/// What a change does to one key: its new entry, or `None` to withdraw it.
type Change = (MeetingKey, Option<Arc<Published>>);

/// A session's warm join: the URL, and whether the session should ask the coordinator to
/// re-confirm the meeting (fire and forget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmJoin {
    pub url: String,
    pub refresh: bool,
}

/// The published meetings, by meeting key.
pub struct JoinTable {
    shards: Box<[ArcSwap<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    /// Joins sessions answered from here (the coordinator adds them to `joins_from_memory`).
    served: AtomicU64,
}

impl std::fmt::Debug for JoinTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinTable")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for JoinTable {
    fn default() -> Self {
        JoinTable {
            shards: (0..SHARDS)
                .map(|_| ArcSwap::from_pointee(Shard::new()))
                .collect(),
            hasher: Default::default(),
            served: AtomicU64::new(0),
        }
    }
}

impl JoinTable {
    fn shard_of(&self, key: &str) -> usize {
        // Truncation is the point: any bits of the hash pick a shard.
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    /// The published meeting of `key`, expired or not.
    pub fn get(&self, key: &str) -> Option<Arc<Published>> {
        self.shards[self.shard_of(key)].load().get(key).cloned()
    }

    /// How many meetings are published (expired ones included until they are withdrawn).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.load().len()).sum()
    }

    /// No meeting is published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every published key (tests compare the table with the coordinator's rule).
    pub fn keys(&self) -> Vec<MeetingKey> {
        self.shards
            .iter()
            .flat_map(|s| s.load().keys().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Joins sessions answered from here so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Coordinator only: makes each key's entry what the change computed (`None`: withdrawn),
    /// one snapshot per touched shard.
    pub(crate) fn apply(&self, changes: Vec<Change>) {
        let mut by_shard: HashMap<usize, Vec<Change>> = HashMap::new();
        for (key, entry) in changes {
            by_shard
                .entry(self.shard_of(key.as_str()))
                .or_default()
                .push((key, entry));
        }
        for (shard, changes) in by_shard {
            let current = self.shards[shard].load();
            let mut next: Shard = (**current).clone();
            let mut changed = false;
            for (key, entry) in changes {
                changed |= match entry {
                    Some(e) => {
                        next.insert(key, e);
                        true
                    }
                    None => next.remove(&key).is_some(),
                };
            }
            if changed {
                self.shards[shard].store(Arc::new(next));
            }
        }
    }

    /// A session's `bbb.room_url` done in place: `Some(Err)` for a failed check (they need no
    /// BBB), `Some(Ok)` for a meeting published and still trusted at `now`, `None` when the
    /// coordinator must decide (unknown, expired, or needing a create).
    pub fn room_url(
        &self,
        world: &WorldSnapshot,
        user: &UserContext,
        room: Option<&str>,
        now: Instant,
    ) -> Option<Result<WarmJoin, ErrorReply>> {
        let join = match checks::room_join(world, user, room) {
            Ok(join) => join,
            Err(e) => return Some(Err(e)),
        };
        // The key is built in a per-thread buffer: no allocation per join.
        let published = ROOM_KEY.with_borrow_mut(|key| {
            key.clear();
            MeetingKey::write_room(key, &world.id, &join.room.id);
            self.get(key)
        })?;
        if !published.valid_at(now) {
            return None;
        }
        self.served.fetch_add(1, Ordering::Relaxed);
        Some(Ok(warm_join(world, user, &join, &published, now)))
    }
}

/// The answer to a room join that passed the checks, from a published meeting valid at `now`.
pub fn warm_join(
    world: &WorldSnapshot,
    user: &UserContext,
    join: &RoomJoin<'_>,
    published: &Published,
    now: Instant,
) -> WarmJoin {
    let params = room_join(
        world,
        join.bbb,
        user,
        &join.full_name,
        join.moderator,
        &published.target,
    );
    WarmJoin {
        url: published.signed_url(&params),
        refresh: published.take_refresh(now),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bbb::{ChecksumAlgorithm, Secret, ServerEndpoint};
    use crate::ids::ServerId;

    fn target(server: i32, meeting_id: &str) -> JoinTarget {
        JoinTarget {
            server: ServerId::new(server),
            endpoint: ServerEndpoint {
                base_url: format!("https://bbb{server}.example/bigbluebutton"),
                secret: Secret::new("s"),
                algorithm: ChecksumAlgorithm::Sha256,
            },
            meeting_id: meeting_id.into(),
            attendee_pw: "ap".into(),
            moderator_pw: "mp".into(),
            create_time: Some(1),
        }
    }

    fn entry(server: i32, meeting_id: &str, ttl: Duration) -> Option<Arc<Published>> {
        let now = Instant::now();
        Some(Arc::new(Published::new(
            target(server, meeting_id),
            now + ttl / 2,
            now + ttl,
        )))
    }

    fn key(k: &str) -> MeetingKey {
        MeetingKey::parse(k).unwrap()
    }

    #[test]
    fn apply_publishes_and_withdraws_across_shards() {
        let t = JoinTable::default();
        let ttl = Duration::from_secs(60);
        let changes: Vec<_> = (0..200)
            .map(|i| (key(&format!("call:{i}")), entry(1, &format!("m{i}"), ttl)))
            .collect();
        t.apply(changes);
        assert_eq!(t.len(), 200);
        assert_eq!(
            t.get("call:7").map(|p| p.target.meeting_id.clone()),
            Some("m7".into())
        );
        t.apply(
            (0..100)
                .map(|i| (key(&format!("call:{i}")), None))
                .collect(),
        );
        assert_eq!(t.len(), 100);
        assert!(t.get("call:7").is_none() && t.get("call:150").is_some());
        t.apply(vec![(key("call:never"), None)]);
        assert_eq!(t.len(), 100);
    }

    #[test]
    fn entries_expire_and_ask_for_one_refresh() {
        let now = Instant::now();
        let p = Published::new(
            target(1, "m"),
            now + Duration::from_secs(1),
            now + Duration::from_secs(2),
        );
        assert!(p.valid_at(now) && !p.take_refresh(now));
        let later = now + Duration::from_millis(1500);
        assert!(p.valid_at(later));
        assert!(p.take_refresh(later), "the first join past refresh_at asks");
        assert!(!p.take_refresh(later), "only once");
        assert!(!p.valid_at(now + Duration::from_secs(2)));
        let renewed = p.renewed(now + Duration::from_secs(3), now + Duration::from_secs(4));
        assert!(renewed.valid_at(now + Duration::from_secs(3)));
        assert!(renewed.take_refresh(now + Duration::from_secs(3)));
    }

    #[test]
    fn cached_url_halves_sign_like_fresh_urls_and_stay_bounded() {
        use crate::bbb::{join_url, Role};
        let now = Instant::now();
        let p = Published::new(target(1, "m1"), now, now);
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
        assert_eq!(p.prefix_count(), MAX_PREFIXES);
        assert_eq!(p.renewed(now, now).prefix_count(), MAX_PREFIXES);
    }
}
