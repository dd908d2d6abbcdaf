//! The in-memory meeting table: for each room (`room:{world}:{room}`) and call (`call:{id}`),
//! its BBB meeting id, passwords, server, createTime and whether it is known to exist there.
//! The database holds the same (minus liveness) so a restart loses nothing; joins of a live
//! meeting are answered from here alone.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Instant;

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::bbb::{MeetingInfo, ServerEndpoint};
use crate::db::meetings::{MeetingRow, UNPLACED};

use super::fleet::Fleet;
use super::warm::WarmJoins;

/// Key of a room's meeting.
pub fn room_key(world: &str, room: &str) -> String {
    let mut key = String::with_capacity(world.len() + room.len() + 6);
    push_room_key(&mut key, world, room);
    key
}

/// Appends the key of a room's meeting to `out`.
pub fn push_room_key(out: &mut String, world: &str, room: &str) {
    out.push_str("room:");
    out.push_str(world);
    out.push(':');
    out.push_str(room);
}

/// Key of a call's meeting.
pub fn call_key(call: &str) -> String {
    format!("call:{call}")
}

/// A random string of ASCII letters and digits (meeting ids and passwords).
pub fn random_token(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// One meeting the coordinator knows.
#[derive(Debug, Clone, PartialEq)]
pub struct MeetingEntry {
    pub key: String,
    pub world_id: String,
    pub room_id: Option<String>,
    pub call_id: Option<String>,
    /// `None`: not placed (new, or its server went away).
    pub server: Option<i32>,
    pub meeting_id: String,
    pub attendee_pw: String,
    pub moderator_pw: String,
    pub create_time: Option<i64>,
    /// Known to exist on `server`: created by us, or listed by its last poll.
    pub live: bool,
    /// When liveness was last confirmed (create answered, or the send time of the poll that
    /// listed it). A poll sent before this instant cannot contradict it.
    pub confirmed_at: Option<Instant>,
}

impl MeetingEntry {
    /// A fresh, unplaced meeting with random ids.
    pub fn new(key: &str, world_id: &str, room_id: Option<&str>, call_id: Option<&str>) -> Self {
        MeetingEntry {
            key: key.to_string(),
            world_id: world_id.to_string(),
            room_id: room_id.map(str::to_string),
            call_id: call_id.map(str::to_string),
            server: None,
            meeting_id: random_token(32),
            attendee_pw: random_token(16),
            moderator_pw: random_token(16),
            create_time: None,
            live: false,
            confirmed_at: None,
        }
    }

    /// From a stored row; liveness is unknown until a poll or a create confirms it.
    pub fn from_row(row: MeetingRow) -> Self {
        MeetingEntry {
            server: row.server(),
            key: row.meeting_key,
            world_id: row.world_id,
            room_id: row.room_id,
            call_id: row.call_id,
            meeting_id: row.meeting_id,
            attendee_pw: row.attendee_pw,
            moderator_pw: row.moderator_pw,
            create_time: row.create_time,
            live: false,
            confirmed_at: None,
        }
    }

    /// The row to store (timestamps are set by the repository).
    pub fn to_row(&self) -> MeetingRow {
        MeetingRow {
            meeting_key: self.key.clone(),
            world_id: self.world_id.clone(),
            room_id: self.room_id.clone(),
            call_id: self.call_id.clone(),
            server_id: self.server.unwrap_or(UNPLACED),
            meeting_id: self.meeting_id.clone(),
            attendee_pw: self.attendee_pw.clone(),
            moderator_pw: self.moderator_pw.clone(),
            create_time: self.create_time,
            created_at: 0,
            updated_at: 0,
            seen_at: None,
        }
    }
}

/// Everything needed to sign a join URL for a meeting, without touching the actor again.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinTarget {
    pub server_id: i32,
    pub endpoint: ServerEndpoint,
    pub meeting_id: String,
    pub attendee_pw: String,
    pub moderator_pw: String,
    pub create_time: Option<i64>,
}

impl JoinTarget {
    /// The target of `entry` on `server_id`.
    pub fn new(entry: &MeetingEntry, server_id: i32, endpoint: ServerEndpoint) -> Self {
        JoinTarget {
            server_id,
            endpoint,
            meeting_id: entry.meeting_id.clone(),
            attendee_pw: entry.attendee_pw.clone(),
            moderator_pw: entry.moderator_pw.clone(),
            create_time: entry.create_time,
        }
    }
}

/// What a join URL of an entry depends on; a change withdraws the published target.
#[derive(PartialEq)]
struct JoinFields {
    server: Option<i32>,
    live: bool,
    meeting_id: String,
    attendee_pw: String,
    moderator_pw: String,
    create_time: Option<i64>,
}

impl JoinFields {
    fn of(e: &MeetingEntry) -> Self {
        JoinFields {
            server: e.server,
            live: e.live,
            meeting_id: e.meeting_id.clone(),
            attendee_pw: e.attendee_pw.clone(),
            moderator_pw: e.moderator_pw.clone(),
            create_time: e.create_time,
        }
    }
}

/// Mutable access to one entry that withdraws its published join target when the change
/// touched anything a join URL depends on, so no caller can forget to.
pub struct EntryMut<'a> {
    entry: &'a mut MeetingEntry,
    before: JoinFields,
    warm: &'a WarmJoins,
}

impl Deref for EntryMut<'_> {
    type Target = MeetingEntry;
    fn deref(&self) -> &MeetingEntry {
        self.entry
    }
}

impl DerefMut for EntryMut<'_> {
    fn deref_mut(&mut self) -> &mut MeetingEntry {
        self.entry
    }
}

impl Drop for EntryMut<'_> {
    fn drop(&mut self) {
        if JoinFields::of(self.entry) != self.before {
            self.warm.withdraw(&self.entry.key);
        }
    }
}

/// The table, by key and by BBB meeting id. Every running meeting it reports is published to
/// [`WarmJoins`] for sessions, and withdrawn there by every change that could make it stale.
#[derive(Debug, Default)]
pub struct MeetingTable {
    by_key: HashMap<String, MeetingEntry>,
    key_by_meeting_id: HashMap<String, String>,
    warm: Arc<WarmJoins>,
}

impl MeetingTable {
    /// An empty table publishing running meetings to `warm`.
    pub fn publishing_to(warm: Arc<WarmJoins>) -> Self {
        MeetingTable {
            warm,
            ..Default::default()
        }
    }

    /// Adds or replaces a meeting.
    pub fn insert(&mut self, entry: MeetingEntry) {
        self.warm.withdraw(&entry.key);
        if let Some(old) = self.by_key.get(&entry.key) {
            self.key_by_meeting_id.remove(&old.meeting_id);
        }
        self.key_by_meeting_id
            .insert(entry.meeting_id.clone(), entry.key.clone());
        self.by_key.insert(entry.key.clone(), entry);
    }

    /// A meeting by key.
    pub fn get(&self, key: &str) -> Option<&MeetingEntry> {
        self.by_key.get(key)
    }

    /// A meeting by key, to change it (see [`EntryMut`]).
    pub fn get_mut(&mut self, key: &str) -> Option<EntryMut<'_>> {
        let entry = self.by_key.get_mut(key)?;
        Some(EntryMut {
            before: JoinFields::of(entry),
            entry,
            warm: &self.warm,
        })
    }

    /// A meeting by its BBB meeting id (what polls report).
    pub fn by_meeting_id(&self, meeting_id: &str) -> Option<&MeetingEntry> {
        self.key_by_meeting_id
            .get(meeting_id)
            .and_then(|k| self.by_key.get(k))
    }

    /// How many meetings are known.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// No meeting is known.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// How many meetings are placed on `server`.
    pub fn count_on(&self, server: i32) -> usize {
        self.by_key
            .values()
            .filter(|e| e.server == Some(server))
            .count()
    }

    /// The join target when the meeting is known to exist on a server that serves it: the
    /// fast path, no create and no database. It is also published for sessions' warm joins.
    pub fn known_running(&self, key: &str, fleet: &Fleet) -> Option<JoinTarget> {
        let target = self.running_target(key, fleet)?;
        self.warm.publish(key, &target);
        Some(target)
    }

    /// [`known_running`](Self::known_running) without publishing: the rule alone.
    pub fn running_target(&self, key: &str, fleet: &Fleet) -> Option<JoinTarget> {
        let entry = self.by_key.get(key)?;
        let server = entry.server?;
        let live = fleet.get(server)?;
        (entry.live && live.serves_existing())
            .then(|| JoinTarget::new(entry, server, live.endpoint.clone()))
    }

    /// The keys of every meeting (tests check the published table against the rule).
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.by_key.keys()
    }

    /// Unplaces every meeting on `server` (offline, panic, removed); returns their meeting ids.
    pub fn detach_server(&mut self, server: i32) -> Vec<String> {
        self.warm.withdraw_server(server);
        self.by_key
            .values_mut()
            .filter(|e| e.server == Some(server))
            .map(|e| {
                e.server = None;
                e.live = false;
                e.confirmed_at = None;
                e.meeting_id.clone()
            })
            .collect()
    }

    /// Applies a successful poll of `server` sent at `started`: meetings it lists are live
    /// (with BBB's createTime), ours it does not list are gone unless created after the poll
    /// was sent. Returns the meeting ids it lists that belong to meetings placed elsewhere or
    /// nowhere (moved away): they should be ended there.
    pub fn apply_poll(
        &mut self,
        server: i32,
        started: Instant,
        listed: &[MeetingInfo],
    ) -> Vec<String> {
        let listed_ids: HashMap<&str, &MeetingInfo> =
            listed.iter().map(|m| (m.meeting_id.as_str(), m)).collect();
        for entry in self.by_key.values_mut() {
            if entry.server != Some(server) {
                continue;
            }
            match listed_ids.get(entry.meeting_id.as_str()) {
                Some(info) => {
                    entry.live = true;
                    if entry.confirmed_at.is_none_or(|c| c < started) {
                        entry.confirmed_at = Some(started);
                    }
                    if info.create_time > 0 && entry.create_time != Some(info.create_time) {
                        // Re-created by someone else: URLs with the old createTime are refused.
                        entry.create_time = Some(info.create_time);
                        self.warm.withdraw(&entry.key);
                    }
                }
                None => {
                    if entry.confirmed_at.is_none_or(|c| c < started) {
                        entry.live = false;
                        self.warm.withdraw(&entry.key);
                    }
                }
            }
        }
        listed
            .iter()
            .filter_map(|m| {
                let entry = self.by_meeting_id(&m.meeting_id)?;
                (entry.server != Some(server)).then(|| m.meeting_id.clone())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Fleet {
        let mut f = Fleet::default();
        f.apply_rows(vec![crate::db::test_support::server_row(1)]);
        f
    }

    fn info(id: &str, create_time: i64) -> MeetingInfo {
        MeetingInfo {
            meeting_id: id.into(),
            create_time,
            ..Default::default()
        }
    }

    #[test]
    fn ids_are_random_and_long() {
        let a = MeetingEntry::new("room:w:r", "w", Some("r"), None);
        let b = MeetingEntry::new("room:w:r", "w", Some("r"), None);
        assert!(a.meeting_id.len() >= 24 && a.meeting_id != b.meeting_id);
        assert_ne!(a.attendee_pw, a.moderator_pw);
        assert_eq!(MeetingEntry::from_row(a.to_row()).meeting_id, a.meeting_id);
    }

    #[test]
    fn polls_confirm_and_expire_liveness() {
        let f = fleet();
        let mut t = MeetingTable::default();
        let mut e = MeetingEntry::new("k", "w", None, Some("c"));
        e.server = Some(1);
        let mid = e.meeting_id.clone();
        t.insert(e);
        assert!(t.known_running("k", &f).is_none());
        let p1 = Instant::now();
        assert!(t.apply_poll(1, p1, &[info(&mid, 42)]).is_empty());
        let target = t.known_running("k", &f).unwrap();
        assert_eq!(target.create_time, Some(42));
        // Created after a poll was sent: that poll cannot say it is gone.
        let p2 = Instant::now();
        {
            let mut e = t.get_mut("k").unwrap();
            e.confirmed_at = Some(Instant::now());
        }
        t.apply_poll(1, p2, &[]);
        assert!(t.known_running("k", &f).is_some());
        t.apply_poll(1, Instant::now(), &[]);
        assert!(t.known_running("k", &f).is_none());
    }

    #[test]
    fn meetings_seen_where_they_no_longer_belong_are_reported() {
        let mut t = MeetingTable::default();
        let mut e = MeetingEntry::new("k", "w", None, Some("c"));
        e.server = Some(2);
        let mid = e.meeting_id.clone();
        t.insert(e);
        let stray = t.apply_poll(1, Instant::now(), &[info(&mid, 1), info("foreign", 1)]);
        assert_eq!(stray, vec![mid.clone()]);
        assert_eq!(t.detach_server(2), vec![mid]);
        assert_eq!(t.get("k").unwrap().server, None);
        assert_eq!(t.count_on(2), 0);
    }
}
