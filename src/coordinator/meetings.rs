//! The in-memory meeting table: every room's and call's meeting this instance knows, by key,
//! by BBB meeting id and by server. The database holds the same (minus liveness) so a restart
//! loses nothing.
//!
//! Entries change only through [`MeetingTable::update`] and the other methods here, which keep
//! the indexes right and note which keys changed, so the coordinator republishes exactly those
//! for the sessions (see [`crate::join::published`]).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crate::bbb::MeetingInfo;
use crate::ids::{MeetingKey, ServerId};

use super::lifecycle::{MeetingEntry, MeetingState};

/// What a poll found out about the meetings of its server.
#[derive(Debug, Default)]
pub struct PollOutcome {
    /// Meeting ids it lists of meetings placed elsewhere or nowhere: to be ended there.
    pub strays: Vec<String>,
    /// Meetings it no longer lists: they ended there.
    pub gone: Vec<MeetingKey>,
}

/// The table, by key, by BBB meeting id and by server.
#[derive(Debug, Default)]
pub struct MeetingTable {
    by_key: HashMap<MeetingKey, MeetingEntry>,
    key_by_meeting_id: HashMap<String, MeetingKey>,
    by_server: HashMap<ServerId, HashSet<MeetingKey>>,
    /// Keys changed since the last [`take_dirty`](Self::take_dirty).
    dirty: HashSet<MeetingKey>,
}

impl MeetingTable {
    fn index(&mut self, key: &MeetingKey, before: Option<ServerId>, after: Option<ServerId>) {
        if before == after {
            return;
        }
        if let Some(b) = before {
            if let Some(set) = self.by_server.get_mut(&b) {
                set.remove(key);
                if set.is_empty() {
                    self.by_server.remove(&b);
                }
            }
        }
        if let Some(a) = after {
            self.by_server.entry(a).or_default().insert(key.clone());
        }
    }

    /// Adds or replaces a meeting.
    pub fn insert(&mut self, entry: MeetingEntry) {
        let key = entry.key.clone();
        let before = self.by_key.get(&key).map(|old| {
            self.key_by_meeting_id.remove(&old.meeting_id);
            old.server()
        });
        self.index(&key, before.flatten(), entry.server());
        self.key_by_meeting_id
            .insert(entry.meeting_id.clone(), key.clone());
        self.by_key.insert(key.clone(), entry);
        self.dirty.insert(key);
    }

    /// Forgets a meeting (deleted from the database); `true` when it was known.
    pub fn remove(&mut self, key: &MeetingKey) -> bool {
        let Some(entry) = self.by_key.remove(key) else {
            return false;
        };
        self.key_by_meeting_id.remove(&entry.meeting_id);
        self.index(key, entry.server(), None);
        self.dirty.insert(key.clone());
        true
    }

    /// A meeting by key.
    pub fn get(&self, key: &MeetingKey) -> Option<&MeetingEntry> {
        self.by_key.get(key)
    }

    /// Changes one meeting through its lifecycle transitions; the indexes follow and the key
    /// is noted for republishing. `None` for an unknown key.
    pub fn update<R>(
        &mut self,
        key: &MeetingKey,
        f: impl FnOnce(&mut MeetingEntry) -> R,
    ) -> Option<R> {
        let entry = self.by_key.get_mut(key)?;
        let before = entry.server();
        let result = f(entry);
        let after = entry.server();
        self.index(key, before, after);
        self.dirty.insert(key.clone());
        Some(result)
    }

    /// A meeting by its BBB meeting id (what polls and callbacks report).
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

    /// The keys of the meetings placed on `server`.
    pub fn keys_on(&self, server: ServerId) -> impl Iterator<Item = &MeetingKey> {
        self.by_server.get(&server).into_iter().flatten()
    }

    /// How many meetings are placed on `server`.
    pub fn count_on(&self, server: ServerId) -> usize {
        self.by_server.get(&server).map_or(0, HashSet::len)
    }

    /// Every meeting.
    pub fn iter(&self) -> impl Iterator<Item = &MeetingEntry> {
        self.by_key.values()
    }

    /// Keys changed since the last call.
    pub fn take_dirty(&mut self) -> HashSet<MeetingKey> {
        std::mem::take(&mut self.dirty)
    }

    /// Unplaces every meeting on `server` (offline, panic, removed); returns their meeting ids.
    pub fn detach_server(&mut self, server: ServerId) -> Vec<String> {
        let keys: Vec<MeetingKey> = self.keys_on(server).cloned().collect();
        keys.iter()
            .filter_map(|k| {
                self.update(k, |e| {
                    e.detach();
                    e.meeting_id.clone()
                })
            })
            .collect()
    }

    /// Applies a successful poll of `server` sent at `sent_at`: meetings it lists run there
    /// (with BBB's createTime); ours it does not list have ended there. Meetings whose state
    /// changed after the poll was sent, or that `busy` says are being created right now, are
    /// left alone: the poll says nothing about what happened since it was sent. Costs
    /// O(meetings listed + meetings on `server`).
    pub fn apply_poll(
        &mut self,
        server: ServerId,
        sent_at: Instant,
        listed: &[MeetingInfo],
        busy: impl Fn(&MeetingKey) -> bool,
    ) -> PollOutcome {
        let mut gone = Vec::new();
        let listed_ids: HashMap<&str, &MeetingInfo> =
            listed.iter().map(|m| (m.meeting_id.as_str(), m)).collect();
        let ours: Vec<MeetingKey> = self.keys_on(server).cloned().collect();
        for key in &ours {
            let Some(entry) = self.by_key.get(key) else {
                continue;
            };
            if entry.changed_at() > sent_at || busy(key) {
                continue;
            }
            let running = listed_ids.get(entry.meeting_id.as_str()).copied();
            // BBB always reports a createTime; without one the listing cannot confirm an
            // instance a join URL could name.
            match running {
                Some(info) if info.create_time > 0 => {
                    self.update(key, |e| e.confirm(server, info.create_time, sent_at));
                }
                Some(_) => {}
                None => {
                    let was_gone = matches!(entry.state(), MeetingState::Ended { .. });
                    self.update(key, |e| e.ended(None));
                    if !was_gone {
                        gone.push(key.clone());
                    }
                }
            }
        }
        let strays = listed
            .iter()
            .filter_map(|m| {
                let entry = self.by_meeting_id(&m.meeting_id)?;
                (entry.server() != Some(server)).then(|| m.meeting_id.clone())
            })
            .collect();
        PollOutcome { strays, gone }
    }

    /// The state of `key` (tests).
    pub fn state_of(&self, key: &MeetingKey) -> Option<MeetingState> {
        self.by_key.get(key).map(MeetingEntry::state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, create_time: i64) -> MeetingInfo {
        MeetingInfo {
            meeting_id: id.into(),
            create_time,
            ..Default::default()
        }
    }

    fn s(n: i32) -> ServerId {
        ServerId::new(n)
    }

    fn placed(t: &mut MeetingTable, key: &str, server: i32) -> (MeetingKey, String) {
        let key = MeetingKey::call(key);
        let mut e = MeetingEntry::new(key.clone(), "w", None, Some("c"));
        e.place(s(server));
        let mid = e.meeting_id.clone();
        t.insert(e);
        (key, mid)
    }

    #[test]
    fn polls_confirm_and_end_meetings() {
        let mut t = MeetingTable::default();
        let (k, mid) = placed(&mut t, "k", 1);
        let p1 = Instant::now();
        assert!(t
            .apply_poll(s(1), p1, &[info(&mid, 42)], |_| false)
            .strays
            .is_empty());
        assert_eq!(
            t.state_of(&k).and_then(|s| s.running()),
            Some((s(1), 42, p1))
        );
        // A poll sent before the last change says nothing about it.
        let old = Instant::now();
        t.update(&k, |e| e.confirm(s(1), 43, Instant::now()));
        t.apply_poll(s(1), old, &[], |_| false);
        assert!(t.state_of(&k).and_then(|s| s.running()).is_some());
        let outcome = t.apply_poll(s(1), Instant::now(), &[], |_| false);
        assert_eq!(t.state_of(&k), Some(MeetingState::Ended { server: s(1) }));
        assert_eq!(outcome.gone, vec![k.clone()]);
        let again = t.apply_poll(s(1), Instant::now(), &[], |_| false);
        assert!(again.gone.is_empty(), "reported once");
    }

    #[test]
    fn removed_meetings_leave_every_index() {
        let mut t = MeetingTable::default();
        let (k, mid) = placed(&mut t, "k", 1);
        t.take_dirty();
        assert!(t.remove(&k));
        assert!(!t.remove(&k));
        assert!(t.get(&k).is_none() && t.by_meeting_id(&mid).is_none());
        assert_eq!(t.count_on(s(1)), 0);
        assert!(
            t.take_dirty().contains(&k),
            "withdrawn from the published table"
        );
    }

    #[test]
    fn the_server_index_follows_every_change() {
        let mut t = MeetingTable::default();
        let (a, _) = placed(&mut t, "a", 1);
        let (b, mid_b) = placed(&mut t, "b", 1);
        placed(&mut t, "c", 2);
        assert_eq!((t.count_on(s(1)), t.count_on(s(2))), (2, 1));
        t.update(&a, |e| e.adopt(Some(s(2))));
        assert_eq!((t.count_on(s(1)), t.count_on(s(2))), (1, 2));
        assert_eq!(t.detach_server(s(1)), vec![mid_b]);
        assert_eq!(
            (t.count_on(s(1)), t.state_of(&b)),
            (0, Some(MeetingState::Unplaced))
        );
        let dirty = t.take_dirty();
        assert!(dirty.contains(&a) && dirty.contains(&b));
        assert!(t.take_dirty().is_empty());
    }

    #[test]
    fn meetings_seen_where_they_no_longer_belong_are_reported() {
        let mut t = MeetingTable::default();
        let (_, mid) = placed(&mut t, "k", 2);
        let outcome = t.apply_poll(
            s(1),
            Instant::now(),
            &[info(&mid, 1), info("foreign", 1)],
            |_| false,
        );
        assert_eq!(outcome.strays, vec![mid]);
    }
}
