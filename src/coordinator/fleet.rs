//! Live state of every registered BBB server: registry data (re-read from the database each
//! poll tick), health, the last poll's load and the reservations of meetings placed here.
//!
//! A reservation is made when this instance places a meeting on a server (a new placement, a
//! move, or an ended meeting started again) and says how many participants the meeting is
//! expected to reach. Until a poll lists the meeting, it counts in full at that size
//! ([`Candidate::reserved_participants`]). After that the poll's figures count it, at its real
//! size but at least at the expected size while the reservation stands (while the meeting is
//! young, [`placement::YOUNG_MEETING_MS`] from its placement): as people arrive, what is held
//! for the meeting shrinks towards its real size. A poll that does not list the meeting drops
//! the reservation (the meeting is gone) once its create cannot be on its way any more (the
//! BBB call timeout after the placement): a poll answered while the create was in flight
//! proves nothing, and dropping it then would make the server look emptier than it is in the
//! middle of a burst.
//!
//! Two kinds of health. The poll decides whether a server is *online* (placement), after
//! `unhealthy_after` failed polls. Any failed contact at all (poll, create, getMeetingInfo,
//! getRecordings, end, …) makes it *suspect* at once: no join is answered from memory for its
//! meetings until a later contact succeeds. Fields are private; every change goes through a
//! method that notes the server for republishing its meetings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::bbb::{MeetingInfo, ServerEndpoint};
use crate::db::servers::{ServerRow, ServerState};
use crate::ids::ServerId;

use super::load_history::{LoadHistory, PollSample};
use super::placement::{self, Candidate};

/// Load figures of a server's last successful poll.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PollLoad {
    pub meetings: u32,
    pub participants: u32,
    pub listeners: u32,
    pub voice: u32,
    pub videos: u32,
    /// Participants of the largest meeting.
    pub largest_meeting: u32,
    /// Placement load, before weight and reservations: every meeting at its cost, a young one
    /// counted at least at its expected size.
    pub load: f64,
    /// Participants, a young meeting counted at least at its expected size (compared with the
    /// server's capacity).
    pub occupancy: u32,
}

impl PollLoad {
    /// These figures as a point of the load history.
    fn sample(&self) -> PollSample {
        PollSample::Good {
            load: self.load,
            participants: self.participants,
            occupancy: self.occupancy,
        }
    }

    /// Sums a `getMeetings` reply (all meetings on the server count, ours or not) sent at
    /// `now_ms`. `expected` gives the expected size of meetings with a standing reservation;
    /// other young meetings count at least [`placement::YOUNG_MEETING_PARTICIPANTS`].
    pub fn from_meetings(
        meetings: &[MeetingInfo],
        now_ms: i64,
        expected: impl Fn(&str) -> Option<u32>,
    ) -> PollLoad {
        // Saturating: the counts come from BBB and must not overflow.
        let sum =
            |f: fn(&MeetingInfo) -> u32| meetings.iter().map(f).fold(0u32, u32::saturating_add);
        let mut load = 0.0;
        let mut occupancy = 0u32;
        for m in meetings {
            let floor = match expected(&m.meeting_id) {
                Some(e) => e,
                None if placement::is_young(m, now_ms) => placement::YOUNG_MEETING_PARTICIPANTS,
                None => 0,
            };
            let counted = placement::counted_participants(m, floor);
            occupancy = occupancy.saturating_add(counted);
            load += placement::meeting_load(m, counted);
        }
        PollLoad {
            meetings: u32::try_from(meetings.len()).unwrap_or(u32::MAX),
            participants: sum(|m| m.participant_count),
            listeners: sum(|m| m.listener_count),
            voice: sum(|m| m.voice_participant_count),
            videos: sum(|m| m.video_count),
            largest_meeting: meetings
                .iter()
                .map(|m| m.participant_count)
                .max()
                .unwrap_or(0),
            load,
            occupancy,
        }
    }
}

/// One meeting's figures from the last successful poll of its server (for the dashboard).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolledMeeting {
    pub participants: u32,
    pub moderators: u32,
    pub voice: u32,
    pub videos: u32,
}

impl From<&MeetingInfo> for PolledMeeting {
    fn from(m: &MeetingInfo) -> Self {
        PolledMeeting {
            participants: m.participant_count,
            moderators: m.moderator_count,
            voice: m.voice_participant_count,
            videos: m.video_count,
        }
    }
}

/// A meeting placed on a server (by this instance, or by another one that shared it), with the
/// size it is expected to reach and what is known of its create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub meeting_id: String,
    /// Participants it is expected to hold: the room's `expected_participants`, else
    /// [`placement::YOUNG_MEETING_PARTICIPANTS`].
    pub expected_participants: u32,
    /// When it was placed (ms since the Unix epoch).
    pub placed_at_ms: i64,
    /// A poll listed the meeting: it is in the polled load (at least at its expected size
    /// while young), no longer on its way.
    pub counted: bool,
    /// When its create was known answered (ms), if it is.
    pub answered_at_ms: Option<i64>,
}

impl Reservation {
    /// The meeting is still young at `now_ms`: it counts at least at its expected size.
    pub fn standing_at(&self, now_ms: i64) -> bool {
        now_ms.saturating_sub(self.placed_at_ms) < placement::YOUNG_MEETING_MS
    }

    /// Whether a poll sent at `sent_ms` that does not list the meeting may still have missed
    /// its create (then it stays on its way rather than gone): the create was not known
    /// answered before the poll was sent, and (when its answer is unknown) the poll was sent
    /// within `in_flight_ms`, the time a create may take, of the placement.
    fn may_be_in_flight(&self, sent_ms: i64, in_flight_ms: i64) -> bool {
        !self.counted
            && match self.answered_at_ms {
                Some(answered) => answered >= sent_ms,
                None => self.placed_at_ms.saturating_add(in_flight_ms) >= sent_ms,
            }
    }
}

/// A health change caused by a poll result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    CameOnline,
    WentOffline,
}

/// One server as the coordinator sees it.
#[derive(Debug, Clone)]
pub struct ServerLive {
    row: ServerRow,
    endpoint: ServerEndpoint,
    /// Answering polls (starts optimistic: a server is online until `unhealthy_after` polls
    /// fail, so a restart can place meetings before the first poll finishes).
    online: bool,
    /// Consecutive failed contacts of any kind; > 0 makes the server suspect.
    contact_failures: u32,
    poll_failures: u32,
    poll_successes: u32,
    load: PollLoad,
    last_poll_at_ms: Option<i64>,
    /// When the last successful poll was sent (ms).
    last_good_poll_at_ms: Option<i64>,
    /// Figures of each meeting the last successful poll listed, by BBB meeting id (empty on
    /// an instance that follows the leader's polls: it only knows the totals).
    polled_meetings: HashMap<String, PolledMeeting>,
    /// Load over the last hour.
    history: LoadHistory,
    /// Why the last contact failed (no secrets: BBB errors never carry the URL).
    last_error: Option<String>,
    /// Meetings this instance placed here that are still young (see the module docs).
    reservations: Vec<Reservation>,
    /// `bbbVersion` from the server's API index (asked when first seen and when it comes back).
    bbb_version: Option<String>,
    /// The index was asked (or is being asked) since the server was seen or came back.
    version_checked: bool,
    /// What this instance knows about the server is too old to act on (see
    /// [`super::election`]).
    stale: bool,
    /// Bumped whenever meetings confirmed here before may no longer be joined as they were:
    /// the endpoint changed (URL, secret, checksum), the server went offline, was disabled or
    /// panicked. Results of work started before a bump are discarded.
    generation: u64,
}

impl ServerLive {
    fn new(row: ServerRow) -> Self {
        ServerLive {
            endpoint: row.endpoint(),
            row,
            online: true,
            contact_failures: 0,
            poll_failures: 0,
            poll_successes: 0,
            load: PollLoad::default(),
            last_poll_at_ms: None,
            last_good_poll_at_ms: None,
            polled_meetings: HashMap::new(),
            history: LoadHistory::default(),
            last_error: None,
            reservations: Vec::new(),
            bbb_version: None,
            version_checked: false,
            stale: false,
            generation: 0,
        }
    }

    /// The registry id.
    pub fn id(&self) -> ServerId {
        self.row.id
    }

    /// The registry row.
    pub fn row(&self) -> &ServerRow {
        &self.row
    }

    /// Where and how to call it.
    pub fn endpoint(&self) -> &ServerEndpoint {
        &self.endpoint
    }

    /// The operator-set state.
    pub fn state(&self) -> ServerState {
        self.row.state
    }

    pub fn online(&self) -> bool {
        self.online
    }

    /// A contact failed since the last one that succeeded.
    pub fn suspect(&self) -> bool {
        self.contact_failures > 0
    }

    /// Consecutive failed contacts.
    pub fn contact_failures(&self) -> u32 {
        self.contact_failures
    }

    pub fn poll_failures(&self) -> u32 {
        self.poll_failures
    }

    pub fn load(&self) -> &PollLoad {
        &self.load
    }

    pub fn last_poll_at_ms(&self) -> Option<i64> {
        self.last_poll_at_ms
    }

    /// When the last successful poll was sent (ms).
    pub fn last_good_poll_at_ms(&self) -> Option<i64> {
        self.last_good_poll_at_ms
    }

    /// A meeting's figures from the last successful poll (`None`: not listed, or unknown
    /// here).
    pub fn polled_meeting(&self, meeting_id: &str) -> Option<PolledMeeting> {
        self.polled_meetings.get(meeting_id).copied()
    }

    /// Load over the last hour.
    pub fn history(&self) -> &LoadHistory {
        &self.history
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    pub fn bbb_version(&self) -> Option<&str> {
        self.bbb_version.as_deref()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Existing meetings may be joined here (online and not disabled), health permitting.
    pub fn serves_existing(&self) -> bool {
        self.online && self.row.state != ServerState::Disabled
    }

    /// Joins of meetings confirmed here may be answered from memory.
    pub fn trusted(&self) -> bool {
        self.serves_existing() && !self.suspect() && !self.stale
    }

    /// What this instance knows about the server is too old to act on.
    pub fn stale(&self) -> bool {
        self.stale
    }

    /// The reservations standing here.
    pub fn reservations(&self) -> &[Reservation] {
        &self.reservations
    }

    /// The placement view at `now_ms`. Reservations no poll has answered for count in full,
    /// unless older than `max_reservation_age` (polls failing).
    pub fn candidate(&self, now_ms: i64, max_reservation_age: Duration) -> Candidate {
        let max_age = i64::try_from(max_reservation_age.as_millis()).unwrap_or(i64::MAX);
        let (reserved, reserved_participants) = self
            .reservations
            .iter()
            .filter(|r| !r.counted && now_ms.saturating_sub(r.placed_at_ms) < max_age)
            .fold((0u32, 0u32), |(n, p), r| {
                (
                    n.saturating_add(1),
                    p.saturating_add(r.expected_participants),
                )
            });
        Candidate {
            id: self.row.id,
            url: self.row.url.clone(),
            state: self.row.state,
            online: self.online,
            suspect: self.suspect(),
            world_id: self.row.world_id.clone(),
            weight: self.row.weight,
            load: self.load.load,
            occupancy: self.load.occupancy,
            reserved,
            reserved_participants,
            capacity: self.row.capacity,
        }
    }
}

/// All servers by id. Every change that touches whether or how their meetings are joined notes
/// the server, so the coordinator republishes its meetings.
#[derive(Debug, Default)]
pub struct Fleet {
    servers: BTreeMap<ServerId, ServerLive>,
    dirty: HashSet<ServerId>,
    /// How long after its placement a meeting's create may still be on its way (ms): a poll
    /// that does not list a meeting placed that recently may have been answered before the
    /// create arrived.
    in_flight_ms: i64,
}

impl Fleet {
    /// Sets how long a create may take (the BBB call timeout): see `in_flight_ms`.
    pub fn set_create_window(&mut self, window: Duration) {
        self.in_flight_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    }

    /// Changes one server; notes it for republishing when its trust or endpoint changed, and
    /// bumps its generation when meetings confirmed there may no longer be joined as they were.
    fn change<R>(&mut self, id: ServerId, f: impl FnOnce(&mut ServerLive) -> R) -> Option<R> {
        let s = self.servers.get_mut(&id)?;
        let before = (s.trusted(), s.serves_existing(), s.endpoint.clone());
        let result = f(s);
        if (s.trusted(), &s.endpoint) != (before.0, &before.2) {
            self.dirty.insert(id);
        }
        if (before.1 && !s.serves_existing()) || s.endpoint != before.2 {
            s.generation += 1;
        }
        Some(result)
    }

    /// Applies the registry as read from the database: adds new servers, updates changed ones
    /// (keeping their health), drops removed ones. Returns the ids removed.
    pub fn apply_rows(&mut self, rows: Vec<ServerRow>) -> Vec<ServerId> {
        let ids: HashSet<ServerId> = rows.iter().map(|r| r.id).collect();
        let removed: Vec<ServerId> = self
            .servers
            .keys()
            .copied()
            .filter(|id| !ids.contains(id))
            .collect();
        for id in &removed {
            self.servers.remove(id);
            self.dirty.insert(*id);
        }
        for row in rows {
            let id = row.id;
            let known = self.change(id, |live| {
                if live.row != row {
                    live.endpoint = row.endpoint();
                    live.row = row.clone();
                }
            });
            if known.is_none() {
                self.servers.insert(id, ServerLive::new(row));
                self.dirty.insert(id);
            }
        }
        removed
    }

    /// One server by id.
    pub fn get(&self, id: ServerId) -> Option<&ServerLive> {
        self.servers.get(&id)
    }

    /// Every server, by id.
    pub fn iter(&self) -> impl Iterator<Item = &ServerLive> {
        self.servers.values()
    }

    /// How many servers are registered.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// No server is registered.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Servers changed since the last call.
    pub fn take_dirty(&mut self) -> HashSet<ServerId> {
        std::mem::take(&mut self.dirty)
    }

    /// Placement views of every server at `now_ms`.
    pub fn candidates(&self, now_ms: i64, max_reservation_age: Duration) -> Vec<Candidate> {
        self.servers
            .values()
            .map(|s| s.candidate(now_ms, max_reservation_age))
            .collect()
    }

    /// Sets the operator state (the database was changed already).
    pub fn set_state(&mut self, id: ServerId, state: ServerState) {
        self.change(id, |s| s.row.state = state);
    }

    /// Sets the capacity (the database was changed already).
    pub fn set_capacity(&mut self, id: ServerId, capacity: Option<u32>) {
        if let Some(s) = self.servers.get_mut(&id) {
            s.row.capacity = capacity;
        }
    }

    /// Notes a meeting placed on `id` at `now_ms`, expected to hold `expected_participants`.
    pub fn reserve(
        &mut self,
        id: ServerId,
        meeting_id: &str,
        expected_participants: u32,
        now_ms: i64,
    ) {
        if let Some(s) = self.servers.get_mut(&id) {
            s.reservations.retain(|r| r.meeting_id != meeting_id);
            s.reservations.push(Reservation {
                meeting_id: meeting_id.to_string(),
                expected_participants,
                placed_at_ms: now_ms,
                counted: false,
                answered_at_ms: None,
            });
        }
    }

    /// The create of a meeting reserved on `id` was answered by `now_ms`: from then on a poll
    /// that does not list it means it is gone.
    pub fn create_answered(&mut self, id: ServerId, meeting_id: &str, now_ms: i64) {
        if let Some(s) = self.servers.get_mut(&id) {
            for r in s
                .reservations
                .iter_mut()
                .filter(|r| r.meeting_id == meeting_id)
            {
                r.answered_at_ms.get_or_insert(now_ms);
            }
        }
    }

    /// Drops a reservation (its create failed).
    pub fn unreserve(&mut self, id: ServerId, meeting_id: &str) {
        if let Some(s) = self.servers.get_mut(&id) {
            s.reservations.retain(|r| r.meeting_id != meeting_id);
        }
    }

    /// Sets whether what is known about `id` is too old; `true` when that changed.
    pub fn set_stale(&mut self, id: ServerId, stale: bool) -> bool {
        self.change(id, |s| std::mem::replace(&mut s.stale, stale) != stale)
            .unwrap_or(false)
    }

    /// A contact with `id` succeeded: it is no longer suspect.
    pub fn contact_succeeded(&mut self, id: ServerId) {
        self.change(id, |s| s.contact_failures = 0);
    }

    /// A contact with `id` failed with a server fault: suspect at once.
    pub fn contact_failed(&mut self, id: ServerId, error: String) {
        self.change(id, |s| {
            s.contact_failures = s.contact_failures.saturating_add(1);
            s.last_error = Some(error);
        });
    }

    /// Panicked: meetings confirmed here before are void.
    pub fn panicked(&mut self, id: ServerId) {
        self.change(id, |s| {
            s.generation += 1;
            s.reservations.clear();
        });
        self.dirty.insert(id);
    }

    /// The API index was asked for the version (or the ask failed and may be repeated).
    pub fn set_version(&mut self, id: ServerId, version: Option<Option<String>>) {
        if let Some(s) = self.servers.get_mut(&id) {
            match version {
                Some(v) => s.bbb_version = v,
                None => s.version_checked = false,
            }
        }
    }

    /// Marks the version as asked; `true` when it had not been yet (the caller asks now).
    pub fn start_version_check(&mut self, id: ServerId) -> bool {
        self.servers
            .get_mut(&id)
            .is_some_and(|s| !std::mem::replace(&mut s.version_checked, true))
    }

    /// Records a successful poll sent at `sent_ms` that listed `meetings`: load, health, and
    /// the reservations it covers.
    pub fn poll_succeeded(
        &mut self,
        id: ServerId,
        sent_ms: i64,
        meetings: &[MeetingInfo],
        healthy_after: u32,
    ) -> Transition {
        let in_flight_ms = self.in_flight_ms;
        self.change(id, |s| {
            s.poll_failures = 0;
            s.poll_successes = s.poll_successes.saturating_add(1);
            s.contact_failures = 0;
            s.last_poll_at_ms = Some(sent_ms);
            s.last_error = None;
            // Listed meetings are in the poll's figures (at least at their expected size while
            // young); unlisted ones are gone, unless their create may still be on its way.
            let listed: HashSet<&str> = meetings.iter().map(|m| m.meeting_id.as_str()).collect();
            s.reservations.retain_mut(|r| {
                r.counted |= listed.contains(r.meeting_id.as_str());
                r.standing_at(sent_ms)
                    && (listed.contains(r.meeting_id.as_str())
                        || r.may_be_in_flight(sent_ms, in_flight_ms))
            });
            let expected: HashMap<&str, u32> = s
                .reservations
                .iter()
                .filter(|r| r.counted)
                .map(|r| (r.meeting_id.as_str(), r.expected_participants))
                .collect();
            s.load = PollLoad::from_meetings(meetings, sent_ms, |m| expected.get(m).copied());
            s.last_good_poll_at_ms = Some(sent_ms);
            s.polled_meetings = meetings
                .iter()
                .map(|m| (m.meeting_id.clone(), PolledMeeting::from(m)))
                .collect();
            s.history.record(sent_ms, s.load.sample());
            if !s.online && s.poll_successes >= healthy_after.max(1) {
                s.online = true;
                s.version_checked = false;
                return Transition::CameOnline;
            }
            Transition::None
        })
        .unwrap_or(Transition::None)
    }

    /// Records a failed poll: suspect at once, offline after `unhealthy_after` in a row.
    pub fn poll_failed(
        &mut self,
        id: ServerId,
        error: String,
        now_ms: i64,
        unhealthy_after: u32,
    ) -> Transition {
        self.change(id, |s| {
            s.poll_successes = 0;
            s.poll_failures = s.poll_failures.saturating_add(1);
            s.contact_failures = s.contact_failures.saturating_add(1);
            s.last_poll_at_ms = Some(now_ms);
            s.last_error = Some(error);
            s.history.record(now_ms, PollSample::Failed);
            s.reservations.retain(|r| r.standing_at(now_ms));
            if s.online && s.poll_failures >= unhealthy_after.max(1) {
                s.online = false;
                s.reservations.clear();
                return Transition::WentOffline;
            }
            Transition::None
        })
        .unwrap_or(Transition::None)
    }

    /// A follower's view: takes health and load from the leader's stored poll of `row`'s
    /// server, and drops reservations that poll covered (placed before it was sent, allowing
    /// `poll_timeout` for how long it may have taken). Returns the transition, for the log.
    pub fn follow_status(
        &mut self,
        row: &crate::db::server_status::ServerStatusRow,
        now_ms: i64,
        poll_timeout: Duration,
    ) -> Transition {
        let count = |v: i32| u32::try_from(v).unwrap_or(0);
        self.change(row.server(), |s| {
            let was_online = s.online;
            s.online = row.online;
            s.poll_failures = count(row.consecutive_failures);
            s.poll_successes = u32::from(row.consecutive_failures == 0);
            if !row.online || row.consecutive_failures > 0 {
                // The leader's failed poll is a failed contact for every instance.
                s.contact_failures = s.contact_failures.max(1);
            }
            s.load = PollLoad {
                meetings: count(row.meetings),
                participants: count(row.participants),
                listeners: count(row.listeners),
                voice: count(row.voice),
                videos: count(row.videos),
                largest_meeting: count(row.largest_meeting),
                load: row.load,
                occupancy: count(row.occupancy),
            };
            s.last_poll_at_ms = (row.polled_at > 0).then_some(row.polled_at);
            s.polled_meetings.clear();
            if row.polled_at > 0 {
                if row.consecutive_failures == 0 {
                    s.last_good_poll_at_ms = Some(row.polled_at);
                    s.history.record(row.polled_at, s.load.sample());
                } else {
                    s.history.record(row.polled_at, PollSample::Failed);
                }
            }
            if row.last_error.is_some() {
                s.last_error = row.last_error.clone();
            }
            s.bbb_version = row.bbb_version.clone();
            // The leader's figures count every meeting whose create was answered before its
            // poll was sent (at its expected size: reservations are shared), so those
            // reservations are dropped here; so is any placed more than a call timeout before
            // the poll (its create was answered by then, or failed).
            let timeout_ms = i64::try_from(poll_timeout.as_millis()).unwrap_or(i64::MAX);
            let covered_before = row.polled_at.saturating_sub(timeout_ms);
            s.reservations.retain(|r| {
                r.placed_at_ms > covered_before
                    && r.answered_at_ms.is_none_or(|a| a >= row.polled_at)
                    && r.standing_at(now_ms)
            });
            // The leader's figures are not this instance's to attribute: whatever is kept
            // counts as on its way.
            for r in &mut s.reservations {
                r.counted = false;
            }
            match (was_online, row.online) {
                (false, true) => Transition::CameOnline,
                (true, false) => {
                    s.reservations.clear();
                    Transition::WentOffline
                }
                _ => Transition::None,
            }
        })
        .unwrap_or(Transition::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i32) -> ServerRow {
        crate::db::test_support::server_row(id)
    }

    fn s(n: i32) -> ServerId {
        ServerId::new(n)
    }

    #[test]
    fn thresholds_take_servers_offline_and_back() {
        let mut f = Fleet::default();
        f.apply_rows(vec![row(1)]);
        let t = 0;
        assert_eq!(f.poll_failed(s(1), "x".into(), 0, 3), Transition::None);
        assert_eq!(f.poll_failed(s(1), "x".into(), 0, 3), Transition::None);
        assert_eq!(
            f.poll_failed(s(1), "x".into(), 0, 3),
            Transition::WentOffline
        );
        assert!(!f.get(s(1)).unwrap().online());
        assert_eq!(f.poll_succeeded(s(1), t, &[], 2), Transition::None);
        assert_eq!(f.poll_failed(s(1), "x".into(), 0, 3), Transition::None);
        assert_eq!(f.poll_succeeded(s(1), t, &[], 2), Transition::None);
        assert_eq!(f.poll_succeeded(s(1), t, &[], 2), Transition::CameOnline);
    }

    #[test]
    fn rows_add_update_and_remove_keeping_health() {
        let mut f = Fleet::default();
        f.apply_rows(vec![row(1), row(2)]);
        f.poll_failed(s(1), "x".into(), 0, 1);
        let mut changed = row(1);
        changed.state = ServerState::Cordoned;
        changed.weight = 2.0;
        assert_eq!(f.apply_rows(vec![changed, row(3)]), vec![s(2)]);
        let one = f.get(s(1)).unwrap();
        assert_eq!(
            (one.state(), one.row().weight, one.online()),
            (ServerState::Cordoned, 2.0, false)
        );
        assert!(f.get(s(2)).is_none() && f.get(s(3)).is_some());
    }

    /// A meeting with `participants` participants, created long ago by BBB's clock (so only a
    /// reservation makes it count as young).
    fn meeting(id: &str, participants: u32) -> MeetingInfo {
        MeetingInfo {
            meeting_id: id.into(),
            participant_count: participants,
            create_time: 1,
            ..Default::default()
        }
    }

    const AGE: Duration = Duration::from_secs(60);

    /// The meetings reserved on `id`, in order.
    fn reserved_on(f: &Fleet, id: ServerId) -> Vec<&str> {
        f.get(id)
            .unwrap()
            .reservations()
            .iter()
            .map(|r| r.meeting_id.as_str())
            .collect()
    }

    #[test]
    fn reservations_clear_when_a_later_poll_answers() {
        let mut f = Fleet::default();
        f.apply_rows(vec![row(1)]);
        f.reserve(s(1), "m1", 10, 1_000);
        assert_eq!(f.candidates(1_000, AGE)[0].reserved, 1);
        // A poll sent before the placement does not cover it.
        f.poll_succeeded(s(1), 999, &[], 1);
        assert_eq!(f.candidates(1_000, AGE)[0].reserved, 1);
        // One sent after it that does not list the meeting: it is gone.
        f.poll_succeeded(s(1), 1_001, &[], 1);
        assert_eq!(f.candidates(1_001, AGE)[0].reserved, 0);
        assert!(f.get(s(1)).unwrap().reservations().is_empty());
        // Reservations no poll answered for stop counting after the maximum age.
        f.reserve(s(1), "m2", 10, 2_000);
        assert_eq!(f.candidates(2_000, Duration::ZERO)[0].reserved, 0);
        assert_eq!(f.candidates(2_000, AGE)[0].reserved_participants, 10);
    }

    #[test]
    fn a_poll_answered_while_a_create_may_be_on_its_way_keeps_its_reservation() {
        let mut f = Fleet::default();
        f.set_create_window(Duration::from_secs(5));
        f.apply_rows(vec![row(1)]);
        f.reserve(s(1), "in-flight", 10, 1_000);
        f.reserve(s(1), "listed", 10, 1_000);
        f.reserve(s(1), "answered", 10, 1_000);
        f.create_answered(s(1), "answered", 1_000);
        // Sent just after the placements: one create had not arrived yet; the one whose create
        // was answered before the poll was sent and is not listed has ended.
        f.poll_succeeded(s(1), 1_001, &[meeting("listed", 0)], 1);
        let c = f.candidates(1_001, AGE).remove(0);
        assert_eq!(c.reserved, 1, "the one on its way still counts in full");
        let kept = reserved_on(&f, s(1));
        assert_eq!(kept, ["in-flight", "listed"]);
        // Once the create cannot be on its way any more, a poll not listing it means gone; a
        // meeting listed before and missing now is gone at once.
        f.poll_succeeded(s(1), 5_999, &[], 1);
        let left = reserved_on(&f, s(1));
        assert_eq!(left, ["in-flight"]);
        f.poll_succeeded(s(1), 6_001, &[], 1);
        assert!(f.get(s(1)).unwrap().reservations().is_empty());
    }

    #[test]
    fn a_follower_drops_the_reservations_the_leaders_poll_already_counts() {
        let mut f = Fleet::default();
        f.apply_rows(vec![row(1)]);
        for (id, at) in [("answered-before", 9_000), ("answered-after", 9_000)] {
            f.reserve(s(1), id, 10, at);
        }
        f.reserve(s(1), "unknown-recent", 10, 9_500);
        f.reserve(s(1), "unknown-old", 10, 5_000);
        f.create_answered(s(1), "answered-before", 9_100);
        f.create_answered(s(1), "answered-after", 10_001);
        let status = crate::db::server_status::ServerStatusRow {
            server_id: 1,
            online: true,
            meetings: 1,
            participants: 0,
            voice: 0,
            videos: 0,
            load: 20.0,
            consecutive_failures: 0,
            polled_at: 10_000,
            bbb_version: None,
            last_error: None,
            listeners: 0,
            largest_meeting: 0,
            occupancy: 10,
        };
        f.follow_status(&status, 10_100, Duration::from_secs(2));
        // Counted by the leader: answered before its poll was sent, or placed more than a
        // call timeout before it. The others are still on their way.
        let left = reserved_on(&f, s(1));
        assert_eq!(left, ["answered-after", "unknown-recent"]);
        assert_eq!(f.candidates(10_100, AGE)[0].reserved, 2);
    }

    #[test]
    fn a_young_meeting_counts_at_its_expected_size_until_people_arrive() {
        let mut f = Fleet::default();
        f.apply_rows(vec![row(1)]);
        let t0 = 1_000_000;
        f.reserve(s(1), "keynote", 800, t0);
        let c = f.candidates(t0, AGE).remove(0);
        assert_eq!(
            (c.reserved, c.reserved_participants, c.occupied()),
            (1, 800, 800)
        );
        // The poll sees it with 50 people: it still holds 800 places, now in the poll's figures.
        f.poll_succeeded(
            s(1),
            t0 + 10,
            &[meeting("keynote", 50), meeting("other", 5)],
            1,
        );
        let c = f.candidates(t0 + 20, AGE).remove(0);
        assert_eq!((c.reserved, c.reserved_participants), (0, 0));
        assert_eq!((c.occupancy, c.occupied()), (805, 805));
        assert_eq!(f.get(s(1)).unwrap().load().participants, 55);
        assert_eq!(c.load, 10.0 + 800.0 + 10.0 + 5.0);
        // The reservation decays towards the real size as people arrive ...
        f.poll_succeeded(
            s(1),
            t0 + 30,
            &[meeting("keynote", 600), meeting("other", 5)],
            1,
        );
        assert_eq!(f.candidates(t0 + 40, AGE)[0].occupancy, 805);
        // ... and is outgrown by it.
        f.poll_succeeded(
            s(1),
            t0 + 50,
            &[meeting("keynote", 950), meeting("other", 5)],
            1,
        );
        assert_eq!(f.candidates(t0 + 60, AGE)[0].occupancy, 955);
        // Once the meeting is no longer young, only its real size counts.
        let old = t0 + placement::YOUNG_MEETING_MS;
        f.poll_succeeded(
            s(1),
            old,
            &[meeting("keynote", 120), meeting("other", 5)],
            1,
        );
        assert_eq!(f.candidates(old, AGE)[0].occupancy, 125);
        assert!(f.get(s(1)).unwrap().reservations().is_empty());
    }

    #[test]
    fn meetings_without_reservation_count_the_young_default() {
        let mut f = Fleet::default();
        f.apply_rows(vec![row(1)]);
        let now = 10 * placement::YOUNG_MEETING_MS;
        let young = MeetingInfo {
            meeting_id: "young".into(),
            participant_count: 3,
            create_time: now - 1_000,
            ..Default::default()
        };
        f.poll_succeeded(s(1), now, &[young, meeting("old", 3)], 1);
        let c = f.candidates(now, AGE).remove(0);
        assert_eq!(c.occupancy, placement::YOUNG_MEETING_PARTICIPANTS + 3);
        // An expected size of 0 is taken at its word: no young-meeting default.
        f.reserve(s(1), "tiny", 0, now);
        f.poll_succeeded(s(1), now + 1, &[meeting("tiny", 2)], 1);
        assert_eq!(f.candidates(now + 1, AGE)[0].occupancy, 2);
    }

    #[test]
    fn polls_feed_the_load_history_and_the_meeting_figures() {
        let mut f = Fleet::default();
        f.apply_rows(vec![row(1)]);
        let t0 = 1_000 * super::super::load_history::BUCKET_MS;
        f.poll_succeeded(s(1), t0, &[meeting("a", 7), meeting("b", 2)], 1);
        let one = f.get(s(1)).unwrap();
        assert_eq!(one.polled_meeting("a").map(|m| m.participants), Some(7));
        assert_eq!(one.last_good_poll_at_ms(), Some(t0));
        f.poll_failed(s(1), "down".into(), t0 + 60_000, 3);
        let one = f.get(s(1)).unwrap();
        assert_eq!(
            one.last_good_poll_at_ms(),
            Some(t0),
            "only good polls count"
        );
        assert_eq!(one.last_poll_at_ms(), Some(t0 + 60_000));
        let points = one.history().points(t0 + 60_000);
        assert_eq!(points.len(), 2);
        assert_eq!((points[0].participants, points[0].failed), (9, false));
        assert!(points[0].load > 0.0);
        assert!(points[1].failed);
    }

    #[test]
    fn capacity_follows_the_registry_and_admin_changes() {
        let mut f = Fleet::default();
        let mut r = row(1);
        r.capacity = Some(500);
        f.apply_rows(vec![r]);
        assert_eq!(f.candidates(0, AGE)[0].capacity, Some(500));
        f.set_capacity(s(1), None);
        assert_eq!(f.candidates(0, AGE)[0].capacity, None);
    }
}
