//! Which server gets a new meeting: pure functions over a snapshot of the fleet, so the policy
//! is tested without I/O.
//!
//! Two measures per server. *Load* (load units: a meeting, a participant, a voice user and a
//! video stream each cost something, see the constants) says how busy it is; *occupancy*
//! (participants) says how much of its *capacity* is taken. Both count what the last poll saw,
//! with every young meeting counted at least at its expected size (the room's
//! `expected_participants` when this instance placed it, else [`YOUNG_MEETING_PARTICIPANTS`]),
//! plus a reservation for every meeting placed since that poll, at its expected size.
//! Reservations spread a burst of creates over the fleet instead of piling them onto the server
//! that looked emptiest at the last poll (Scalelite's most reported problem), and keep a crowd
//! that is about to arrive from being placed next to another one.
//!
//! The choice, among servers that are enabled, online and shared or exclusive to the world:
//! 1. the room's `prefer_server`, when it is healthy and has room for the meeting;
//! 2. else the healthy server with room (no capacity, or occupancy + the meeting's expected
//!    size within capacity) with the lowest relative load, `(load + reservations) × weight /
//!    capacity`, ties broken at random; a server without capacity is ranked as if it had the
//!    mean capacity of the eligible servers that have one (with none, the score is
//!    `(load + reservations) × weight`, so a fleet without capacities behaves as before);
//! 3. else a suspect server with room, the same way;
//! 4. else (every eligible server is full) the [`Overflow`] policy: the server with the most
//!    headroom, or a refusal.

use std::fmt;

use rand::Rng;
use serde::Deserialize;

use crate::bbb::MeetingInfo;
use crate::db::servers::ServerState;
use crate::ids::ServerId;

/// Fixed cost of a meeting, whatever its size (b3lb charges 30 per meeting, venueless 10).
pub const MEETING_COST: f64 = 10.0;
/// Cost of one participant (HTML5 client, WebSocket, presence).
pub const PARTICIPANT_COST: f64 = 1.0;
/// Extra cost of a participant in the voice conference (mixing).
pub const VOICE_COST: f64 = 1.0;
/// Cost of one forwarded video stream; a meeting forwards participants × cameras streams, so
/// video grows with both (as in venueless' formula).
pub const VIDEO_STREAM_COST: f64 = 0.5;
/// Expected size of a meeting whose room does not say (`expected_participants`): a young
/// meeting counts at least this many participants while people are still arriving (Scalelite
/// counts 15).
pub const YOUNG_MEETING_PARTICIPANTS: u32 = 10;
/// How long a meeting counts as young.
pub const YOUNG_MEETING_MS: i64 = 15 * 60 * 1000;
/// Expected cost of a meeting placed since the last poll whose room gives no expected size: a
/// young, still empty meeting.
pub const RESERVATION_COST: f64 =
    MEETING_COST + YOUNG_MEETING_PARTICIPANTS as f64 * PARTICIPANT_COST;

/// Whether a polled meeting is young at `now_ms` (BBB's createTime, in ms).
pub fn is_young(m: &MeetingInfo, now_ms: i64) -> bool {
    m.create_time > 0 && now_ms.saturating_sub(m.create_time) < YOUNG_MEETING_MS
}

/// Participants a meeting counts for: its real count, but at least `floor` (its expected size
/// while it is young, 0 once it is not).
pub fn counted_participants(m: &MeetingInfo, floor: u32) -> u32 {
    m.participant_count.max(floor)
}

/// Load of one running meeting counted as `participants` participants.
pub fn meeting_load(m: &MeetingInfo, participants: u32) -> f64 {
    let streams = f64::from(m.participant_count) * f64::from(m.video_count);
    MEETING_COST
        + f64::from(participants) * PARTICIPANT_COST
        + f64::from(m.voice_participant_count) * VOICE_COST
        + streams * VIDEO_STREAM_COST
}

/// Load of one running meeting as the poller sees it without knowing its expected size: a
/// young one counts at least [`YOUNG_MEETING_PARTICIPANTS`].
pub fn meeting_cost(m: &MeetingInfo, now_ms: i64) -> f64 {
    let floor = if is_young(m, now_ms) {
        YOUNG_MEETING_PARTICIPANTS
    } else {
        0
    };
    meeting_load(m, counted_participants(m, floor))
}

/// Total load of a server from its `getMeetings` reply (no expected sizes known).
pub fn server_load(meetings: &[MeetingInfo], now_ms: i64) -> f64 {
    meetings
        .iter()
        .map(|m| meeting_cost(m, now_ms))
        .fold(0.0, |a, b| a + b)
}

/// What to do when no eligible server has room for a new meeting (`bbb.placement_overflow`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Overflow {
    /// Place it on the server with the most headroom left (logged, counted).
    #[default]
    LeastFull,
    /// Refuse the join with `bbb.failed`: the video servers are full.
    Refuse,
}

impl TryFrom<String> for Overflow {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.trim() {
            "least_full" => Ok(Overflow::LeastFull),
            "refuse" => Ok(Overflow::Refuse),
            other => Err(format!(
                "unknown placement overflow policy {other:?} (expected least_full or refuse)"
            )),
        }
    }
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Overflow::LeastFull => "least_full",
            Overflow::Refuse => "refuse",
        })
    }
}

/// What placement needs to know about one server.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: ServerId,
    /// Normalised base URL (matched against a room's `prefer_server`).
    pub url: String,
    pub state: ServerState,
    pub online: bool,
    /// A recent poll or create failed: used only when no healthy server is left.
    pub suspect: bool,
    /// `Some(world)`: exclusive to that world; `None`: shared.
    pub world_id: Option<String>,
    /// Load multiplier (> 0).
    pub weight: f64,
    /// Load from the last successful poll, young meetings at their expected size.
    pub load: f64,
    /// Participants from the last successful poll, young meetings at their expected size.
    pub occupancy: u32,
    /// Meetings placed here since the last poll that saw them.
    pub reserved: u32,
    /// Participants those meetings are expected to hold.
    pub reserved_participants: u32,
    /// Participants the server can carry; `None`: unlimited.
    pub capacity: Option<u32>,
}

impl Candidate {
    /// Counts one more meeting placed here, expected to hold `participants`.
    pub fn reserve(&mut self, participants: u32) {
        self.reserved = self.reserved.saturating_add(1);
        self.reserved_participants = self.reserved_participants.saturating_add(participants);
    }

    fn weight(&self) -> f64 {
        if self.weight.is_finite() && self.weight > 0.0 {
            self.weight
        } else {
            1.0
        }
    }

    /// Load including the meetings placed since the last poll.
    pub fn pending_load(&self) -> f64 {
        self.load
            + f64::from(self.reserved) * MEETING_COST
            + f64::from(self.reserved_participants) * PARTICIPANT_COST
    }

    /// The placement score without capacities: (load + reservations) × weight; lower is better.
    pub fn score(&self) -> f64 {
        self.pending_load() * self.weight()
    }

    /// Participants here and on their way: occupancy plus reservations.
    pub fn occupied(&self) -> u64 {
        u64::from(self.occupancy) + u64::from(self.reserved_participants)
    }

    /// Participants still fitting within the capacity (negative when over it); `None`:
    /// unlimited.
    pub fn headroom(&self) -> Option<i64> {
        self.capacity
            .map(|c| i64::from(c) - i64::try_from(self.occupied()).unwrap_or(i64::MAX))
    }

    /// A meeting expected to hold `participants` fits within the capacity.
    pub fn has_room_for(&self, participants: u32) -> bool {
        self.headroom().is_none_or(|h| h >= i64::from(participants))
    }

    /// Score relative to the capacity: a server without one counts as having `reference`.
    fn relative_score(&self, reference: f64) -> f64 {
        let capacity = self.capacity.map_or(reference, f64::from);
        self.score() / capacity.max(1.0)
    }

    /// May host a new meeting of `world`: enabled, online, and shared or exclusive to `world`.
    pub fn eligible_for(&self, world: &str) -> bool {
        self.state == ServerState::Enabled
            && self.online
            && self.world_id.as_deref().is_none_or(|w| w == world)
    }

    fn matches(&self, prefer: &str) -> bool {
        let prefer = prefer.trim();
        prefer == self.id.to_string() || same_url(prefer, &self.url)
    }
}

/// URL equality that ignores a trailing slash or `/api` and the case of scheme and host.
fn same_url(a: &str, b: &str) -> bool {
    fn norm(u: &str) -> String {
        let u = u.trim().trim_end_matches('/');
        let u = u.strip_suffix("/api").unwrap_or(u);
        match u.find("://") {
            Some(i) => {
                let rest = &u[i + 3..];
                let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                format!(
                    "{}://{}{}",
                    u[..i].to_ascii_lowercase(),
                    host.to_ascii_lowercase(),
                    path
                )
            }
            None => u.to_string(),
        }
    }
    norm(a) == norm(b)
}

/// A new meeting to place.
#[derive(Debug, Clone, Copy)]
pub struct Demand<'a> {
    pub world: &'a str,
    /// Server id or URL the room prefers (`prefer_server`).
    pub prefer: Option<&'a str>,
    /// Servers already tried for this meeting.
    pub exclude: &'a [ServerId],
    /// Participants it is expected to hold.
    pub participants: u32,
    pub overflow: Overflow,
}

/// Where a new meeting goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub server: ServerId,
    /// No eligible server had room: the overflow policy chose the one with the most headroom.
    pub over_capacity: bool,
}

/// Why no server could be chosen; the message is safe to show to users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoEligibleServer {
    pub message: String,
    /// Servers were there but all full, and the overflow policy refuses.
    pub full: bool,
}

/// What a user is told when every video server is full and the policy refuses.
pub const SERVERS_FULL: &str = "the video servers are full, please try again later";

/// Picks the server for a new meeting (see the module documentation for the rules).
pub fn choose<R: Rng + ?Sized>(
    candidates: &[Candidate],
    demand: &Demand<'_>,
    rng: &mut R,
) -> Result<Placement, NoEligibleServer> {
    let for_world: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.eligible_for(demand.world))
        .collect();
    let eligible: Vec<&Candidate> = for_world
        .iter()
        .copied()
        .filter(|c| !demand.exclude.contains(&c.id))
        .collect();
    let fits = |c: &&Candidate| c.has_room_for(demand.participants);
    if let Some(p) = demand.prefer.filter(|p| !p.trim().is_empty()) {
        if let Some(c) = eligible
            .iter()
            .find(|c| c.matches(p) && !c.suspect && fits(c))
        {
            return Ok(Placement {
                server: c.id,
                over_capacity: false,
            });
        }
    }
    let (healthy, suspect): (Vec<&Candidate>, Vec<&Candidate>) =
        eligible.iter().copied().partition(|c| !c.suspect);
    let reference = mean_capacity(&for_world);
    for tier in [&healthy, &suspect] {
        let roomy: Vec<&Candidate> = tier.iter().copied().filter(fits).collect();
        if let Some(id) = lowest(&roomy, |c| c.relative_score(reference), rng) {
            return Ok(Placement {
                server: id,
                over_capacity: false,
            });
        }
    }
    let pool = if healthy.is_empty() { suspect } else { healthy };
    if pool.is_empty() {
        return Err(NoEligibleServer {
            message: explain(candidates, demand.world, demand.exclude),
            full: false,
        });
    }
    match demand.overflow {
        Overflow::Refuse => Err(NoEligibleServer {
            message: SERVERS_FULL.into(),
            full: true,
        }),
        Overflow::LeastFull => {
            // Only servers with a capacity can be full, so every one here has a headroom.
            let least_full = lowest(&pool, |c| -(c.headroom().unwrap_or(i64::MAX) as f64), rng);
            least_full
                .map(|server| Placement {
                    server,
                    over_capacity: true,
                })
                .ok_or_else(|| NoEligibleServer {
                    message: SERVERS_FULL.into(),
                    full: true,
                })
        }
    }
}

/// Mean capacity of the servers that have one; 1 when none has (scores stay absolute).
fn mean_capacity(servers: &[&Candidate]) -> f64 {
    let caps: Vec<f64> = servers
        .iter()
        .filter_map(|c| c.capacity)
        .map(f64::from)
        .collect();
    if caps.is_empty() {
        1.0
    } else {
        caps.iter().sum::<f64>() / caps.len() as f64
    }
}

/// The server with the lowest `key`, ties broken at random; `None` for an empty list.
fn lowest<R: Rng + ?Sized>(
    pool: &[&Candidate],
    key: impl Fn(&Candidate) -> f64,
    rng: &mut R,
) -> Option<ServerId> {
    let keys: Vec<f64> = pool.iter().map(|c| key(c)).collect();
    let best = keys.iter().copied().fold(f64::INFINITY, f64::min);
    let tolerance = 1e-9 * best.abs().max(1.0);
    let ties: Vec<ServerId> = pool
        .iter()
        .zip(&keys)
        .filter(|(_, k)| **k <= best + tolerance)
        .map(|(c, _)| c.id)
        .collect();
    // `ties` is empty only if every key is NaN, which finite loads and weights rule out.
    match ties.len() {
        0 => pool.first().map(|c| c.id),
        n => Some(ties[rng.gen_range(0..n)]),
    }
}

fn explain(candidates: &[Candidate], world: &str, exclude: &[ServerId]) -> String {
    let for_world: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.world_id.as_deref().is_none_or(|w| w == world))
        .collect();
    if for_world.is_empty() {
        return "no BBB server is configured for this world".into();
    }
    if !exclude.is_empty() {
        return "no BBB server answered; please try again shortly".into();
    }
    if !for_world.iter().any(|c| c.state == ServerState::Enabled) {
        return "every BBB server of this world is cordoned or disabled".into();
    }
    "no BBB server of this world is online; please try again shortly".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn cand(id: i32) -> Candidate {
        Candidate {
            id: ServerId::new(id),
            url: format!("https://bbb{id}.example.org/bigbluebutton"),
            state: ServerState::Enabled,
            online: true,
            suspect: false,
            world_id: None,
            weight: 1.0,
            load: 0.0,
            occupancy: 0,
            reserved: 0,
            reserved_participants: 0,
            capacity: None,
        }
    }

    /// The server `choose` picks for a meeting of the default expected size.
    fn pick(
        c: &[Candidate],
        world: &str,
        prefer: Option<&str>,
        exclude: &[ServerId],
        r: &mut StdRng,
    ) -> Result<ServerId, NoEligibleServer> {
        let demand = Demand {
            world,
            prefer,
            exclude,
            participants: YOUNG_MEETING_PARTICIPANTS,
            overflow: Overflow::LeastFull,
        };
        choose(c, &demand, r).map(|p| p.server)
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn lowest_score_wins() {
        let mut a = cand(1);
        a.load = 100.0;
        let mut b = cand(2);
        b.load = 50.0;
        assert_eq!(
            pick(&[a, b], "w", None, &[], &mut rng()),
            Ok(ServerId::new(2))
        );
    }

    #[test]
    fn exclusive_servers_serve_only_their_world() {
        let mut own = cand(1);
        own.world_id = Some("w".into());
        own.load = 1000.0;
        let mut other = cand(2);
        other.world_id = Some("x".into());
        let shared = {
            let mut s = cand(3);
            s.load = 500.0;
            s
        };
        let all = [own.clone(), other.clone(), shared];
        assert_eq!(pick(&all, "w", None, &[], &mut rng()), Ok(ServerId::new(3)));
        assert_eq!(pick(&all, "x", None, &[], &mut rng()), Ok(ServerId::new(2)));
        // Only the other world's server: nothing for w.
        let err = pick(&[other], "w", None, &[], &mut rng()).unwrap_err();
        assert!(err.message.contains("configured"), "{err:?}");
        assert_eq!(
            pick(&[own], "w", None, &[], &mut rng()),
            Ok(ServerId::new(1))
        );
    }

    #[test]
    fn prefer_server_by_id_or_url_wins_when_eligible() {
        let mut a = cand(1);
        a.load = 900.0;
        let b = cand(2);
        let all = [a.clone(), b.clone()];
        assert_eq!(
            pick(&all, "w", Some("1"), &[], &mut rng()),
            Ok(ServerId::new(1))
        );
        assert_eq!(
            pick(
                &all,
                "w",
                Some("HTTPS://BBB1.example.org/bigbluebutton/"),
                &[],
                &mut rng()
            ),
            Ok(ServerId::new(1))
        );
        assert_eq!(
            pick(&all, "w", Some("77"), &[], &mut rng()),
            Ok(ServerId::new(2))
        );
        let mut cordoned = a.clone();
        cordoned.state = ServerState::Cordoned;
        assert_eq!(
            pick(&[cordoned, b.clone()], "w", Some("1"), &[], &mut rng()),
            Ok(ServerId::new(2))
        );
        let mut offline = a;
        offline.online = false;
        assert_eq!(
            pick(&[offline, b], "w", Some("1"), &[], &mut rng()),
            Ok(ServerId::new(2))
        );
    }

    #[test]
    fn cordoned_disabled_and_offline_get_nothing() {
        let mut a = cand(1);
        a.state = ServerState::Cordoned;
        let mut b = cand(2);
        b.state = ServerState::Disabled;
        let mut c = cand(3);
        c.online = false;
        let err = pick(&[a.clone(), b.clone()], "w", None, &[], &mut rng()).unwrap_err();
        assert!(err.message.contains("cordoned or disabled"), "{err:?}");
        let err = pick(&[a, b, c.clone()], "w", None, &[], &mut rng()).unwrap_err();
        assert!(err.message.contains("online"), "{err:?}");
        let d = cand(4);
        assert_eq!(
            pick(&[c, d], "w", None, &[], &mut rng()),
            Ok(ServerId::new(4))
        );
    }

    #[test]
    fn no_server_at_all_is_a_clear_error() {
        let err = pick(&[], "w", None, &[], &mut rng()).unwrap_err();
        assert_eq!(err.message, "no BBB server is configured for this world");
    }

    #[test]
    fn excluded_and_suspect_servers_are_last_resort() {
        let a = cand(1);
        let mut b = cand(2);
        b.load = 500.0;
        assert_eq!(
            pick(
                &[a.clone(), b.clone()],
                "w",
                None,
                &[ServerId::new(1)],
                &mut rng()
            ),
            Ok(ServerId::new(2))
        );
        let mut sa = a.clone();
        sa.suspect = true;
        assert_eq!(
            pick(&[sa.clone(), b.clone()], "w", None, &[], &mut rng()),
            Ok(ServerId::new(2))
        );
        // Only suspect servers left: still try one rather than fail.
        assert_eq!(
            pick(&[sa], "w", None, &[], &mut rng()),
            Ok(ServerId::new(1))
        );
        let err = pick(&[a], "w", None, &[ServerId::new(1)], &mut rng()).unwrap_err();
        assert!(err.message.contains("answered"), "{err:?}");
    }

    #[test]
    fn weight_multiplies_load() {
        let mut a = cand(1);
        a.load = 100.0;
        a.weight = 3.0; // looks like 300
        let mut b = cand(2);
        b.load = 200.0;
        assert_eq!(
            pick(&[a.clone(), b.clone()], "w", None, &[], &mut rng()),
            Ok(ServerId::new(2))
        );
        a.weight = 1.5; // looks like 150
        assert_eq!(
            pick(&[a, b], "w", None, &[], &mut rng()),
            Ok(ServerId::new(1))
        );
    }

    #[test]
    fn weights_shape_a_burst() {
        // Server 2 has weight 2 (counts double): it should get about a third of the meetings.
        let mut fleet = vec![cand(1), cand(2)];
        fleet[1].weight = 2.0;
        let mut r = rng();
        for _ in 0..90 {
            let id = pick(&fleet, "w", None, &[], &mut r).unwrap();
            fleet
                .iter_mut()
                .find(|c| c.id == id)
                .unwrap()
                .reserve(YOUNG_MEETING_PARTICIPANTS);
        }
        assert_eq!((fleet[0].reserved, fleet[1].reserved), (60, 30));
    }

    #[test]
    fn ties_are_broken_at_random() {
        let fleet = [cand(1), cand(2), cand(3)];
        let mut r = rng();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..60 {
            seen.insert(pick(&fleet, "w", None, &[], &mut r).unwrap());
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn a_burst_of_100_over_4_equal_servers_is_within_10_percent_of_even() {
        for seed in 0..20u64 {
            let mut fleet: Vec<Candidate> = (1..=4).map(cand).collect();
            let mut r = StdRng::seed_from_u64(seed);
            for _ in 0..100 {
                let id = pick(&fleet, "w", None, &[], &mut r).unwrap();
                fleet
                    .iter_mut()
                    .find(|c| c.id == id)
                    .unwrap()
                    .reserve(YOUNG_MEETING_PARTICIPANTS);
            }
            for c in &fleet {
                // 25 ± 10 %
                assert!(
                    (23..=27).contains(&c.reserved),
                    "seed {seed}: server {} got {} of 100",
                    c.id,
                    c.reserved
                );
            }
        }
    }

    #[test]
    fn a_burst_of_100_spreads_evenly_over_4_servers_of_unequal_load() {
        // Unequal live load to start with; reservations must still spread the burst.
        let mut fleet: Vec<Candidate> = (1..=4).map(cand).collect();
        fleet[0].load = 20.0;
        fleet[3].load = 40.0;
        let mut r = rng();
        for _ in 0..100 {
            let id = pick(&fleet, "w", None, &[], &mut r).unwrap();
            fleet
                .iter_mut()
                .find(|c| c.id == id)
                .unwrap()
                .reserve(YOUNG_MEETING_PARTICIPANTS);
        }
        for c in &fleet {
            assert!(
                (22..=28).contains(&c.reserved),
                "server {} got {} of 100",
                c.id,
                c.reserved
            );
        }
    }

    #[test]
    fn costs_grow_with_video_and_young_meetings_count_more() {
        let now = 100 * YOUNG_MEETING_MS;
        let old = MeetingInfo {
            participant_count: 20,
            voice_participant_count: 10,
            video_count: 4,
            create_time: now - 2 * YOUNG_MEETING_MS,
            ..Default::default()
        };
        assert_eq!(meeting_cost(&old, now), 10.0 + 20.0 + 10.0 + 40.0);
        let young_empty = MeetingInfo {
            create_time: now - 1000,
            ..Default::default()
        };
        assert_eq!(meeting_cost(&young_empty, now), RESERVATION_COST);
        assert_eq!(server_load(&[old.clone(), young_empty], now), 80.0 + 20.0);
    }

    /// `n` enabled servers, each able to carry `capacity` participants.
    fn fleet_of(n: i32, capacity: u32) -> Vec<Candidate> {
        (1..=n)
            .map(|id| Candidate {
                capacity: Some(capacity),
                ..cand(id)
            })
            .collect()
    }

    /// Places a meeting expected to hold `participants` and reserves it where it went.
    fn place(
        fleet: &mut [Candidate],
        participants: u32,
        overflow: Overflow,
        r: &mut StdRng,
    ) -> Result<Placement, NoEligibleServer> {
        let demand = Demand {
            world: "w",
            prefer: None,
            exclude: &[],
            participants,
            overflow,
        };
        let placed = choose(fleet, &demand, r)?;
        if let Some(c) = fleet.iter_mut().find(|c| c.id == placed.server) {
            c.reserve(participants);
        }
        Ok(placed)
    }

    fn busy(c: &mut Candidate, participants: u32) {
        c.occupancy = participants;
        c.load = f64::from(participants);
    }

    #[test]
    fn the_keynote_lands_on_the_emptiest_server() {
        let mut fleet = fleet_of(4, 500);
        busy(&mut fleet[0], 120);
        busy(&mut fleet[1], 40);
        busy(&mut fleet[3], 300);
        // 400 fit on servers 2 and 3 only; 3 is the emptier.
        let p = place(&mut fleet.clone(), 400, Overflow::LeastFull, &mut rng()).unwrap();
        assert_eq!(
            p,
            Placement {
                server: ServerId::new(3),
                over_capacity: false
            }
        );
        // 800 fit nowhere: the server with the most room left takes it, flagged.
        let p = place(&mut fleet, 800, Overflow::LeastFull, &mut rng()).unwrap();
        assert_eq!(
            p,
            Placement {
                server: ServerId::new(3),
                over_capacity: true
            }
        );
        // A bigger server that can hold it gets it although it is busier in absolute terms.
        let mut big = Candidate {
            capacity: Some(2000),
            ..cand(5)
        };
        busy(&mut big, 600);
        fleet.push(big);
        let p = place(&mut fleet, 800, Overflow::LeastFull, &mut rng()).unwrap();
        assert_eq!(
            p,
            Placement {
                server: ServerId::new(5),
                over_capacity: false
            }
        );
    }

    #[test]
    fn breakouts_avoid_the_keynote_server_while_its_reservation_stands() {
        for seed in 0..10 {
            let mut r = StdRng::seed_from_u64(seed);
            let mut fleet = fleet_of(4, 500);
            let keynote = place(&mut fleet, 800, Overflow::LeastFull, &mut r)
                .unwrap()
                .server;
            // 75 breakouts of 20 fill the three other servers exactly.
            for i in 0..75 {
                let p = place(&mut fleet, 20, Overflow::LeastFull, &mut r).unwrap();
                assert_ne!(p.server, keynote, "seed {seed}: breakout {i}");
                assert!(!p.over_capacity, "seed {seed}: breakout {i}");
            }
            for c in fleet.iter().filter(|c| c.id != keynote) {
                assert_eq!(c.occupied(), 500, "seed {seed}: server {}", c.id);
            }
            // The rest overflow onto the least full, which is never the keynote's (-300).
            for _ in 0..25 {
                let p = place(&mut fleet, 20, Overflow::LeastFull, &mut r).unwrap();
                assert!(p.over_capacity && p.server != keynote, "seed {seed}");
            }
            // Once a poll counts the keynote (young: still at 800) nothing changes ...
            let k = fleet.iter_mut().find(|c| c.id == keynote).unwrap();
            (k.reserved, k.reserved_participants) = (0, 0);
            busy(k, 800);
            let p = place(&mut fleet, 20, Overflow::LeastFull, &mut r).unwrap();
            assert_ne!(p.server, keynote, "seed {seed}");
            // ... until it is no longer young and counts its real size: then it is the emptiest.
            let k = fleet.iter_mut().find(|c| c.id == keynote).unwrap();
            busy(k, 150);
            let p = place(&mut fleet, 20, Overflow::LeastFull, &mut r).unwrap();
            assert_eq!(
                p,
                Placement {
                    server: keynote,
                    over_capacity: false
                },
                "seed {seed}"
            );
        }
    }

    #[test]
    fn no_server_exceeds_its_capacity_while_another_has_room() {
        for seed in 0..20u64 {
            let mut r = StdRng::seed_from_u64(seed);
            let mut fleet: Vec<Candidate> = [300, 500, 800, 200]
                .iter()
                .zip(1..)
                .map(|(cap, id)| Candidate {
                    capacity: Some(*cap),
                    weight: [1.0, 1.5, 1.0, 2.0][(id - 1) as usize],
                    ..cand(id)
                })
                .collect();
            busy(&mut fleet[2], 100);
            for step in 0..200 {
                let size = r.gen_range(0..120);
                let room_somewhere = fleet.iter().any(|c| c.has_room_for(size));
                let p = place(&mut fleet, size, Overflow::LeastFull, &mut r).unwrap();
                assert_eq!(p.over_capacity, !room_somewhere, "seed {seed} step {step}");
                if room_somewhere {
                    let c = fleet.iter().find(|c| c.id == p.server).unwrap();
                    assert!(
                        c.headroom().unwrap() >= 0,
                        "seed {seed} step {step}: server {} went over",
                        c.id
                    );
                }
            }
        }
    }

    #[test]
    fn overflow_policies_when_every_server_is_full() {
        let mut fleet = fleet_of(3, 100);
        busy(&mut fleet[0], 95);
        busy(&mut fleet[1], 80);
        busy(&mut fleet[2], 99);
        let p = place(&mut fleet.clone(), 30, Overflow::LeastFull, &mut rng()).unwrap();
        assert_eq!(
            p,
            Placement {
                server: ServerId::new(2),
                over_capacity: true
            }
        );
        let e = place(&mut fleet.clone(), 30, Overflow::Refuse, &mut rng()).unwrap_err();
        assert!(e.full);
        assert_eq!(e.message, SERVERS_FULL);
        assert!(e.message.contains("full"));
        // A meeting that fits is placed whatever the policy.
        let p = place(&mut fleet.clone(), 20, Overflow::Refuse, &mut rng()).unwrap();
        assert_eq!(
            p,
            Placement {
                server: ServerId::new(2),
                over_capacity: false
            }
        );
        // A server without capacity always has room, so nothing is refused.
        fleet.push(cand(4));
        let p = place(&mut fleet, 30, Overflow::Refuse, &mut rng()).unwrap();
        assert_eq!(
            p,
            Placement {
                server: ServerId::new(4),
                over_capacity: false
            }
        );
        // Cordoned, disabled and offline servers stay out, full or not.
        let mut closed = fleet_of(2, 100);
        closed[0].state = ServerState::Cordoned;
        closed[1].online = false;
        let e = place(&mut closed, 10, Overflow::Refuse, &mut rng()).unwrap_err();
        assert!(!e.full && e.message.contains("online"), "{e:?}");
    }

    #[test]
    fn healthy_full_servers_overflow_only_after_suspect_ones_with_room() {
        let mut fleet = fleet_of(2, 100);
        busy(&mut fleet[0], 100);
        fleet[1].suspect = true;
        let p = place(&mut fleet.clone(), 10, Overflow::LeastFull, &mut rng()).unwrap();
        assert_eq!(
            p,
            Placement {
                server: ServerId::new(2),
                over_capacity: false
            }
        );
        // Both full: the overflow goes to a healthy server.
        busy(&mut fleet[1], 60);
        busy(&mut fleet[0], 95);
        let p = place(&mut fleet, 50, Overflow::LeastFull, &mut rng()).unwrap();
        assert_eq!(
            p,
            Placement {
                server: ServerId::new(1),
                over_capacity: true
            }
        );
    }

    #[test]
    fn prefer_server_wins_only_when_it_has_room() {
        let mut fleet = fleet_of(2, 100);
        busy(&mut fleet[0], 50);
        let demand = |participants| Demand {
            world: "w",
            prefer: Some("1"),
            exclude: &[],
            participants,
            overflow: Overflow::LeastFull,
        };
        let p = choose(&fleet, &demand(50), &mut rng()).unwrap();
        assert_eq!(p.server, ServerId::new(1));
        let p = choose(&fleet, &demand(51), &mut rng()).unwrap();
        assert_eq!(
            p,
            Placement {
                server: ServerId::new(2),
                over_capacity: false
            }
        );
    }

    #[test]
    fn servers_with_and_without_capacity_share_a_fleet() {
        // Server 1 carries 500 and is half full; server 2 has no capacity and is ranked as if it
        // had the mean capacity of the others (500).
        let mut a = Candidate {
            capacity: Some(500),
            ..cand(1)
        };
        busy(&mut a, 250);
        let mut b = cand(2);
        b.load = 100.0;
        assert_eq!(
            pick(&[a.clone(), b.clone()], "w", None, &[], &mut rng()),
            Ok(b.id)
        );
        b.load = 400.0;
        assert_eq!(
            pick(&[a.clone(), b.clone()], "w", None, &[], &mut rng()),
            Ok(a.id)
        );
        // Full server 1: the unlimited one takes the meeting however busy it is.
        busy(&mut a, 495);
        b.load = 5000.0;
        assert_eq!(pick(&[a, b.clone()], "w", None, &[], &mut rng()), Ok(b.id));
        // Relative load decides between capacities: 300/1000 is emptier than 100/200.
        let mut big = Candidate {
            capacity: Some(1000),
            ..cand(3)
        };
        busy(&mut big, 300);
        let mut small = Candidate {
            capacity: Some(200),
            ..cand(4)
        };
        busy(&mut small, 100);
        assert_eq!(
            pick(&[big.clone(), small], "w", None, &[], &mut rng()),
            Ok(big.id)
        );
    }
}
