//! Live state of every registered BBB server: registry data (re-read from the database each
//! poll tick), health counters, the last poll's load and the reservations of meetings placed
//! since.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bbb::{MeetingInfo, ServerEndpoint};
use crate::db::servers::{ServerRow, ServerState};

use super::placement::{self, Candidate};
use super::warm::WarmJoins;

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
    /// Placement load (see [`placement::server_load`]), before weight and reservations.
    pub load: f64,
}

impl PollLoad {
    /// Sums a `getMeetings` reply (all meetings on the server count, ours or not).
    pub fn from_meetings(meetings: &[MeetingInfo], now_ms: i64) -> PollLoad {
        // Saturating: the counts come from BBB and must not overflow.
        let sum =
            |f: fn(&MeetingInfo) -> u32| meetings.iter().map(f).fold(0u32, u32::saturating_add);
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
            load: placement::server_load(meetings, now_ms),
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
    pub row: ServerRow,
    pub endpoint: ServerEndpoint,
    /// Answering polls (starts optimistic: a server is online until `unhealthy_after` polls
    /// fail, so a restart can serve joins before the first poll finishes).
    pub online: bool,
    /// The last poll or a create failed with a server fault: no new meetings while a healthy
    /// server is left. Cleared by a successful poll.
    pub suspect: bool,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub load: PollLoad,
    pub last_poll_at_ms: Option<i64>,
    /// Why the last poll failed (no secrets: BBB errors never carry the URL).
    pub last_error: Option<String>,
    /// Meetings placed here, with when, that no poll started after their placement has seen.
    pub reservations: Vec<(String, Instant)>,
    /// `bbbVersion` from the server's API index (asked when first seen and when it comes back).
    pub bbb_version: Option<String>,
    /// The index was asked (or is being asked) since the server was seen or came back.
    pub version_checked: bool,
}

impl ServerLive {
    fn new(row: ServerRow) -> Self {
        ServerLive {
            endpoint: row.endpoint(),
            row,
            online: true,
            suspect: false,
            consecutive_failures: 0,
            consecutive_successes: 0,
            load: PollLoad::default(),
            last_poll_at_ms: None,
            last_error: None,
            reservations: Vec::new(),
            bbb_version: None,
            version_checked: false,
        }
    }

    /// The registry id.
    pub fn id(&self) -> i32 {
        self.row.id
    }

    /// The operator-set state.
    pub fn state(&self) -> ServerState {
        self.row.state
    }

    /// Existing meetings may be joined here without a new create.
    pub fn serves_existing(&self) -> bool {
        self.online && self.row.state != ServerState::Disabled
    }

    /// The placement view, counting reservations younger than `max_reservation_age`.
    pub fn candidate(&self, now: Instant, max_reservation_age: Duration) -> Candidate {
        let reserved = self
            .reservations
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(*at) < max_reservation_age)
            .count();
        Candidate {
            id: self.row.id,
            url: self.row.url.clone(),
            state: self.row.state,
            online: self.online,
            suspect: self.suspect,
            world_id: self.row.world_id.clone(),
            weight: self.row.weight,
            load: self.load.load,
            reserved: u32::try_from(reserved).unwrap_or(u32::MAX),
        }
    }
}

/// Mutable access to one server that withdraws its meetings' published join targets when the
/// change touched whether or how they are joined (health, state, endpoint).
pub struct ServerMut<'a> {
    server: &'a mut ServerLive,
    before: (bool, ServerEndpoint),
    warm: &'a WarmJoins,
}

impl Deref for ServerMut<'_> {
    type Target = ServerLive;
    fn deref(&self) -> &ServerLive {
        self.server
    }
}

impl DerefMut for ServerMut<'_> {
    fn deref_mut(&mut self) -> &mut ServerLive {
        self.server
    }
}

impl Drop for ServerMut<'_> {
    fn drop(&mut self) {
        if (self.server.serves_existing(), &self.server.endpoint) != (self.before.0, &self.before.1)
        {
            self.warm.withdraw_server(self.server.id());
        }
    }
}

/// All servers by id. A server that stops serving its meetings, or whose endpoint changes,
/// has their published join targets withdrawn from [`WarmJoins`].
#[derive(Debug, Default)]
pub struct Fleet {
    servers: BTreeMap<i32, ServerLive>,
    warm: Arc<WarmJoins>,
}

impl Fleet {
    /// An empty fleet withdrawing from `warm` (shared with the meeting table).
    pub fn publishing_to(warm: Arc<WarmJoins>) -> Self {
        Fleet {
            warm,
            ..Default::default()
        }
    }

    /// Applies the registry as read from the database: adds new servers, updates changed ones
    /// (keeping their health), drops removed ones. Returns the ids removed.
    pub fn apply_rows(&mut self, rows: Vec<ServerRow>) -> Vec<i32> {
        let ids: Vec<i32> = rows.iter().map(|r| r.id).collect();
        let removed: Vec<i32> = self
            .servers
            .keys()
            .copied()
            .filter(|id| !ids.contains(id))
            .collect();
        for id in &removed {
            self.servers.remove(id);
            self.warm.withdraw_server(*id);
        }
        for row in rows {
            match self.servers.get_mut(&row.id) {
                Some(live) => {
                    if live.row != row {
                        live.endpoint = row.endpoint();
                        live.row = row;
                        self.warm.withdraw_server(live.row.id);
                    }
                }
                None => {
                    self.servers.insert(row.id, ServerLive::new(row));
                }
            }
        }
        removed
    }

    /// One server by id.
    pub fn get(&self, id: i32) -> Option<&ServerLive> {
        self.servers.get(&id)
    }

    /// One server by id, to change it (see [`ServerMut`]).
    pub fn get_mut(&mut self, id: i32) -> Option<ServerMut<'_>> {
        let server = self.servers.get_mut(&id)?;
        Some(ServerMut {
            before: (server.serves_existing(), server.endpoint.clone()),
            server,
            warm: &self.warm,
        })
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

    /// Placement views of every server.
    pub fn candidates(&self, max_reservation_age: Duration) -> Vec<Candidate> {
        let now = Instant::now();
        self.servers
            .values()
            .map(|s| s.candidate(now, max_reservation_age))
            .collect()
    }

    /// Notes a meeting placed on `id` that polls have not seen yet.
    pub fn reserve(&mut self, id: i32, meeting_id: &str) {
        if let Some(s) = self.servers.get_mut(&id) {
            s.reservations.retain(|(m, _)| m != meeting_id);
            s.reservations
                .push((meeting_id.to_string(), Instant::now()));
        }
    }

    /// Drops a reservation (its create failed).
    pub fn unreserve(&mut self, id: i32, meeting_id: &str) {
        if let Some(s) = self.servers.get_mut(&id) {
            s.reservations.retain(|(m, _)| m != meeting_id);
        }
    }

    /// A create on `id` failed with a server fault.
    pub fn mark_suspect(&mut self, id: i32) {
        if let Some(s) = self.servers.get_mut(&id) {
            s.suspect = true;
        }
    }

    /// Records a successful poll sent at `started`: load, health, and reservations it covers.
    pub fn poll_succeeded(
        &mut self,
        id: i32,
        started: Instant,
        load: PollLoad,
        now_ms: i64,
        healthy_after: u32,
    ) -> Transition {
        let Some(s) = self.servers.get_mut(&id) else {
            return Transition::None;
        };
        s.consecutive_failures = 0;
        s.consecutive_successes = s.consecutive_successes.saturating_add(1);
        s.suspect = false;
        s.load = load;
        s.last_poll_at_ms = Some(now_ms);
        s.last_error = None;
        // The poll reflects every meeting created before it was sent: seen ones are in `load`,
        // unseen ones are gone.
        s.reservations.retain(|(_, at)| *at > started);
        if !s.online && s.consecutive_successes >= healthy_after.max(1) {
            s.online = true;
            s.version_checked = false;
            return Transition::CameOnline;
        }
        Transition::None
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
        let Some(s) = self.servers.get_mut(&row.server_id) else {
            return Transition::None;
        };
        let count = |v: i32| u32::try_from(v).unwrap_or(0);
        let was_online = s.online;
        s.online = row.online;
        s.consecutive_failures = count(row.consecutive_failures);
        s.consecutive_successes = u32::from(row.consecutive_failures == 0);
        s.suspect = !row.online || row.consecutive_failures > 0;
        s.load = PollLoad {
            meetings: count(row.meetings),
            participants: count(row.participants),
            listeners: count(row.listeners),
            voice: count(row.voice),
            videos: count(row.videos),
            largest_meeting: count(row.largest_meeting),
            load: row.load,
        };
        s.last_poll_at_ms = (row.polled_at > 0).then_some(row.polled_at);
        s.last_error = row.last_error.clone();
        s.bbb_version = row.bbb_version.clone();
        let timeout_ms = i64::try_from(poll_timeout.as_millis()).unwrap_or(i64::MAX);
        let covered_before = row.polled_at.saturating_sub(timeout_ms);
        s.reservations.retain(|(_, at)| {
            let age = i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX);
            now_ms.saturating_sub(age) > covered_before
        });
        match (was_online, row.online) {
            (false, true) => Transition::CameOnline,
            (true, false) => {
                s.reservations.clear();
                self.warm.withdraw_server(row.server_id);
                Transition::WentOffline
            }
            _ => Transition::None,
        }
    }

    /// Records a failed poll.
    pub fn poll_failed(
        &mut self,
        id: i32,
        error: String,
        now_ms: i64,
        unhealthy_after: u32,
    ) -> Transition {
        let Some(s) = self.servers.get_mut(&id) else {
            return Transition::None;
        };
        s.consecutive_successes = 0;
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        s.suspect = true;
        s.last_poll_at_ms = Some(now_ms);
        s.last_error = Some(error);
        if s.online && s.consecutive_failures >= unhealthy_after.max(1) {
            s.online = false;
            s.reservations.clear();
            self.warm.withdraw_server(id);
            return Transition::WentOffline;
        }
        Transition::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i32) -> ServerRow {
        crate::db::test_support::server_row(id)
    }

    #[test]
    fn thresholds_take_servers_offline_and_back() {
        let mut f = Fleet::default();
        f.apply_rows(vec![row(1)]);
        let t = Instant::now();
        assert_eq!(f.poll_failed(1, "x".into(), 0, 3), Transition::None);
        assert_eq!(f.poll_failed(1, "x".into(), 0, 3), Transition::None);
        assert_eq!(f.poll_failed(1, "x".into(), 0, 3), Transition::WentOffline);
        assert!(!f.get(1).unwrap().online);
        assert_eq!(
            f.poll_succeeded(1, t, PollLoad::default(), 0, 2),
            Transition::None
        );
        assert_eq!(f.poll_failed(1, "x".into(), 0, 3), Transition::None);
        assert_eq!(
            f.poll_succeeded(1, t, PollLoad::default(), 0, 2),
            Transition::None
        );
        assert_eq!(
            f.poll_succeeded(1, t, PollLoad::default(), 0, 2),
            Transition::CameOnline
        );
    }

    #[test]
    fn rows_add_update_and_remove_keeping_health() {
        let mut f = Fleet::default();
        f.apply_rows(vec![row(1), row(2)]);
        f.poll_failed(1, "x".into(), 0, 1);
        let mut changed = row(1);
        changed.state = ServerState::Cordoned;
        changed.weight = 2.0;
        assert_eq!(f.apply_rows(vec![changed, row(3)]), vec![2]);
        let s = f.get(1).unwrap();
        assert_eq!(
            (s.state(), s.row.weight, s.online),
            (ServerState::Cordoned, 2.0, false)
        );
        assert!(f.get(2).is_none() && f.get(3).is_some());
    }

    #[test]
    fn reservations_clear_when_a_later_poll_answers() {
        let mut f = Fleet::default();
        f.apply_rows(vec![row(1)]);
        let before = Instant::now();
        f.reserve(1, "m1");
        let age = Duration::from_secs(60);
        assert_eq!(f.candidates(age)[0].reserved, 1);
        // A poll sent before the placement does not cover it.
        f.poll_succeeded(1, before, PollLoad::default(), 0, 1);
        assert_eq!(f.candidates(age)[0].reserved, 1);
        f.poll_succeeded(1, Instant::now(), PollLoad::default(), 0, 1);
        assert_eq!(f.candidates(age)[0].reserved, 0);
        // Old reservations stop counting even without polls.
        f.reserve(1, "m2");
        assert_eq!(f.candidates(Duration::ZERO)[0].reserved, 0);
    }
}
