//! A meeting's lifecycle as this gateway instance knows it, as one explicit state machine.
//!
//! ```text
//!            claim + create                 create / poll lists it
//! Unplaced ─────────────────▶ Placed ─────────────────────────────▶ Running
//!    ▲                          │  ▲                                 │   │
//!    │ detach (panic, offline,  │  │ adopt another instance's        │   │ end callback,
//!    │ removal, move)           │  │ placement                       │   │ poll misses it
//!    └──────────────────────────┴──┴─────────────────────────────────┘   ▼
//!                                          create ◀──────────────── Ended
//! ```
//!
//! `Running` carries the facts a join URL rests on (server, createTime) and when they were
//! confirmed; a join may be answered from memory only while that confirmation is younger than
//! `bbb.confirm_ttl_ms`. A create in flight is tracked beside the state (single flight), not as a
//! state of its own, because a running meeting stays answerable while it is re-confirmed.
//!
//! Every transition that changes which BBB instance the meeting is (its server, its
//! createTime) or ends it bumps the meeting's generation; the result of asynchronous work
//! (a create, a placement claim, a probe) applies only if the generation it started from is
//! still current.

use std::time::Instant;

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::db::meetings::MeetingRow;
use crate::ids::{MeetingKey, ServerId};

/// Where a meeting stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeetingState {
    /// On no server: new, or its server was panicked, removed or went offline.
    Unplaced,
    /// Placed on `server` (the database says so) but not confirmed running there: loaded at
    /// start, adopted from another instance, or left so by a create that failed.
    Placed { server: ServerId },
    /// Confirmed running on `server` as the instance with `create_time`, by a request sent at
    /// `confirmed_at` (a create that answered SUCCESS, or a poll or getMeetingInfo listing it).
    Running {
        server: ServerId,
        create_time: i64,
        confirmed_at: Instant,
    },
    /// BBB reported that it ended (end callback, or a poll that no longer lists it). It stays
    /// placed on `server`: the next join creates it again there.
    Ended { server: ServerId },
}

impl MeetingState {
    /// The server the meeting is placed on.
    pub fn server(&self) -> Option<ServerId> {
        match *self {
            MeetingState::Unplaced => None,
            MeetingState::Placed { server }
            | MeetingState::Running { server, .. }
            | MeetingState::Ended { server } => Some(server),
        }
    }

    /// The confirmation of a running meeting.
    pub fn running(&self) -> Option<(ServerId, i64, Instant)> {
        match *self {
            MeetingState::Running {
                server,
                create_time,
                confirmed_at,
            } => Some((server, create_time, confirmed_at)),
            _ => None,
        }
    }
}

/// A random string of ASCII letters and digits (meeting ids and passwords).
pub fn random_token(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// One meeting the coordinator knows. The state is private: it changes only through the
/// transitions below, which keep the generation and `changed_at` right.
#[derive(Debug, Clone, PartialEq)]
pub struct MeetingEntry {
    pub key: MeetingKey,
    pub world_id: String,
    pub room_id: Option<String>,
    pub call_id: Option<String>,
    pub meeting_id: String,
    pub attendee_pw: String,
    pub moderator_pw: String,
    state: MeetingState,
    /// BBB's createTime of the last instance seen (kept after it ended, for the database).
    create_time: Option<i64>,
    /// Issue time of the end-callback token of the create that started the current instance;
    /// `None`: unknown (any valid callback for this meeting ends it).
    instance_issued_at: Option<i64>,
    generation: u64,
    /// When the state last changed (a bulk read older than this says nothing about it).
    changed_at: Instant,
}

impl MeetingEntry {
    /// A fresh, unplaced meeting with random ids.
    pub fn new(
        key: MeetingKey,
        world_id: &str,
        room_id: Option<&str>,
        call_id: Option<&str>,
    ) -> Self {
        MeetingEntry {
            key,
            world_id: world_id.to_string(),
            room_id: room_id.map(str::to_string),
            call_id: call_id.map(str::to_string),
            meeting_id: random_token(32),
            attendee_pw: random_token(16),
            moderator_pw: random_token(16),
            state: MeetingState::Unplaced,
            create_time: None,
            instance_issued_at: None,
            generation: 0,
            changed_at: Instant::now(),
        }
    }

    /// From a stored row. What the database says about the instance is a claim, not a
    /// confirmation: the meeting is at most `Placed` (or `Ended`) until BBB confirms it.
    pub fn from_row(row: MeetingRow) -> Self {
        let state = match (row.server, row.ended_at) {
            (None, _) => MeetingState::Unplaced,
            (Some(server), Some(_)) => MeetingState::Ended { server },
            (Some(server), None) => MeetingState::Placed { server },
        };
        MeetingEntry {
            key: row.meeting_key,
            world_id: row.world_id,
            room_id: row.room_id,
            call_id: row.call_id,
            meeting_id: row.meeting_id,
            attendee_pw: row.attendee_pw,
            moderator_pw: row.moderator_pw,
            state,
            create_time: row.create_time,
            instance_issued_at: row.callback_issued_at,
            generation: 0,
            changed_at: Instant::now(),
        }
    }

    /// The row to store (timestamps are set by the repository).
    pub fn to_row(&self) -> MeetingRow {
        MeetingRow {
            meeting_key: self.key.clone(),
            world_id: self.world_id.clone(),
            room_id: self.room_id.clone(),
            call_id: self.call_id.clone(),
            server: self.state.server(),
            meeting_id: self.meeting_id.clone(),
            attendee_pw: self.attendee_pw.clone(),
            moderator_pw: self.moderator_pw.clone(),
            create_time: self.create_time,
            created_at: 0,
            updated_at: 0,
            callback_issued_at: self.instance_issued_at,
            ended_at: None,
            creating_by: None,
            creating_until: None,
            confirmed_at: None,
        }
    }

    pub fn state(&self) -> MeetingState {
        self.state
    }

    pub fn server(&self) -> Option<ServerId> {
        self.state.server()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn changed_at(&self) -> Instant {
        self.changed_at
    }

    pub fn create_time(&self) -> Option<i64> {
        self.create_time
    }

    pub fn instance_issued_at(&self) -> Option<i64> {
        self.instance_issued_at
    }

    /// Moves to `next`, bumping the generation when the meeting's instance changes (another
    /// server or createTime) or it ends or loses its server. A newer confirmation of the same
    /// instance keeps the generation: work started before it is still valid.
    fn set(&mut self, next: MeetingState) {
        if next == self.state {
            return;
        }
        let same_instance = match (self.state, next) {
            (
                MeetingState::Running {
                    server: a,
                    create_time: ca,
                    ..
                },
                MeetingState::Running {
                    server: b,
                    create_time: cb,
                    ..
                },
            ) => a == b && ca == cb,
            (MeetingState::Placed { server: a }, MeetingState::Running { server: b, .. }) => a == b,
            _ => false,
        };
        if !same_instance {
            self.generation += 1;
        }
        self.state = next;
        self.changed_at = Instant::now();
    }

    /// BBB confirmed the instance with `create_time` running on `server` by a request sent at
    /// `sent_at`. An older confirmation of the same instance never replaces a newer one.
    pub fn confirm(&mut self, server: ServerId, create_time: i64, sent_at: Instant) {
        let confirmed_at = match self.state {
            MeetingState::Running {
                server: s,
                create_time: c,
                confirmed_at,
            } if s == server && c == create_time => confirmed_at.max(sent_at),
            _ => sent_at,
        };
        if self.create_time != Some(create_time) {
            // Another instance than the one whose callbacks were expected.
            self.instance_issued_at = None;
        }
        self.create_time = Some(create_time);
        self.set(MeetingState::Running {
            server,
            create_time,
            confirmed_at,
        });
    }

    /// A create whose end-callback token was issued at `issued_at` started the current instance
    /// (BBB answered without `duplicateWarning`): its callbacks are the ones that count.
    pub fn started_instance(&mut self, issued_at: i64) {
        self.instance_issued_at = Some(issued_at);
    }

    /// BBB no longer has the meeting on its server (a poll missed it, or an end callback
    /// arrived). `issued_at` is the callback token's time, when a callback said so.
    pub fn ended(&mut self, issued_at: Option<i64>) {
        if let Some(server) = self.state.server() {
            if issued_at.is_some() {
                self.instance_issued_at = issued_at;
            }
            self.set(MeetingState::Ended { server });
        }
    }

    /// Whether an end callback issued at `issued_at` is about an instance older than the one
    /// this entry knows (then it changes nothing).
    pub fn callback_is_stale(&self, issued_at: i64) -> bool {
        self.instance_issued_at
            .is_some_and(|known| issued_at < known)
    }

    /// The meeting is (or stays) on `server`, not confirmed running there.
    pub fn place(&mut self, server: ServerId) {
        if self.state.server() != Some(server) {
            self.set(MeetingState::Placed { server });
        }
    }

    /// The meeting loses its server (panic, offline, removal).
    pub fn detach(&mut self) {
        self.set(MeetingState::Unplaced);
    }

    /// Makes the confirmation of a running meeting `by` older (tests travel in time).
    #[cfg(test)]
    pub fn age(&mut self, by: std::time::Duration) {
        if let MeetingState::Running { confirmed_at, .. } = &mut self.state {
            if let Some(earlier) = confirmed_at.checked_sub(by) {
                *confirmed_at = earlier;
            }
        }
        if let Some(earlier) = self.changed_at.checked_sub(by) {
            self.changed_at = earlier;
        }
    }

    /// Follows a placement stored by another instance: the same server keeps the state, any
    /// other makes the meeting `Placed` there (or `Unplaced`), unconfirmed.
    pub fn adopt(&mut self, server: Option<ServerId>) {
        if self.state.server() == server {
            return;
        }
        match server {
            Some(s) => self.set(MeetingState::Placed { server: s }),
            None => self.detach(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn entry() -> MeetingEntry {
        MeetingEntry::new(MeetingKey::room("w", "r"), "w", Some("r"), None)
    }

    fn s(n: i32) -> ServerId {
        ServerId::new(n)
    }

    #[test]
    fn ids_are_random_and_long() {
        let a = entry();
        let b = entry();
        assert!(a.meeting_id.len() >= 24 && a.meeting_id != b.meeting_id);
        assert_ne!(a.attendee_pw, a.moderator_pw);
        assert_eq!(MeetingEntry::from_row(a.to_row()).meeting_id, a.meeting_id);
    }

    #[test]
    fn rows_load_unconfirmed() {
        let mut row = entry().to_row();
        assert_eq!(
            MeetingEntry::from_row(row.clone()).state(),
            MeetingState::Unplaced
        );
        row.server = Some(s(3));
        assert_eq!(
            MeetingEntry::from_row(row.clone()).state(),
            MeetingState::Placed { server: s(3) }
        );
        row.ended_at = Some(1);
        assert_eq!(
            MeetingEntry::from_row(row).state(),
            MeetingState::Ended { server: s(3) }
        );
    }

    #[test]
    fn confirmations_of_the_same_instance_keep_the_generation() {
        let mut e = entry();
        let t0 = Instant::now();
        e.place(s(1));
        let g = e.generation();
        e.confirm(s(1), 42, t0);
        assert_eq!(
            e.generation(),
            g,
            "placed → running there is the same instance"
        );
        let later = t0 + Duration::from_secs(1);
        e.confirm(s(1), 42, later);
        e.confirm(s(1), 42, t0);
        assert_eq!(
            e.state().running(),
            Some((s(1), 42, later)),
            "newest confirmation wins"
        );
        assert_eq!(e.generation(), g);
        e.confirm(s(1), 43, later);
        assert_eq!(e.generation(), g + 1, "a new createTime is a new instance");
        e.confirm(s(2), 43, later);
        assert_eq!(e.generation(), g + 2, "another server");
    }

    #[test]
    fn ending_detaching_and_adopting_bump_the_generation() {
        let mut e = entry();
        let t0 = Instant::now();
        e.place(s(1));
        e.confirm(s(1), 42, t0);
        let g = e.generation();
        e.ended(None);
        assert_eq!(e.state(), MeetingState::Ended { server: s(1) });
        assert_eq!(e.generation(), g + 1);
        e.adopt(Some(s(1)));
        assert_eq!(e.generation(), g + 1, "same server: nothing to adopt");
        e.adopt(Some(s(2)));
        assert_eq!(e.state(), MeetingState::Placed { server: s(2) });
        e.detach();
        assert_eq!((e.state(), e.generation()), (MeetingState::Unplaced, g + 3));
        e.ended(Some(5));
        assert_eq!(
            e.state(),
            MeetingState::Unplaced,
            "nothing to end without a server"
        );
    }

    #[test]
    fn callbacks_of_older_instances_are_stale() {
        let mut e = entry();
        assert!(
            !e.callback_is_stale(1),
            "unknown instance: any callback counts"
        );
        e.place(s(1));
        e.confirm(s(1), 42, Instant::now());
        e.started_instance(200);
        assert!(e.callback_is_stale(100));
        assert!(!e.callback_is_stale(200));
        e.ended(Some(200));
        // Re-created elsewhere by someone else: its callbacks are unknown again.
        e.confirm(s(1), 77, Instant::now());
        assert_eq!(e.instance_issued_at(), None);
    }
}
