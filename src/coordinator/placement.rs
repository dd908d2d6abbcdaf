//! Which server gets a new meeting: pure functions over a snapshot of the fleet, so the policy
//! is tested without I/O.
//!
//! Score = (live load from the last poll + reservations × [`RESERVATION_COST`]) × weight; the
//! lowest score wins, ties broken at random. Reservations count meetings placed since the last
//! poll of that server and disappear once a poll has seen them, so a burst of creates spreads
//! over the fleet instead of piling onto the server that looked emptiest at the last poll
//! (Scalelite's most reported problem).

use rand::Rng;

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
/// A meeting younger than [`YOUNG_MEETING_MS`] counts at least this many participants: people
/// are still arriving (Scalelite counts 15).
pub const YOUNG_MEETING_PARTICIPANTS: u32 = 10;
/// How long a meeting counts as young.
pub const YOUNG_MEETING_MS: i64 = 15 * 60 * 1000;
/// Expected cost of a meeting placed since the last poll: a young, still empty meeting.
pub const RESERVATION_COST: f64 =
    MEETING_COST + YOUNG_MEETING_PARTICIPANTS as f64 * PARTICIPANT_COST;

/// Load of one running meeting as the poller sees it; `now_ms` decides whether it is young.
pub fn meeting_cost(m: &MeetingInfo, now_ms: i64) -> f64 {
    let young = m.create_time > 0 && now_ms.saturating_sub(m.create_time) < YOUNG_MEETING_MS;
    let participants = if young {
        m.participant_count.max(YOUNG_MEETING_PARTICIPANTS)
    } else {
        m.participant_count
    };
    let streams = f64::from(m.participant_count) * f64::from(m.video_count);
    MEETING_COST
        + f64::from(participants) * PARTICIPANT_COST
        + f64::from(m.voice_participant_count) * VOICE_COST
        + streams * VIDEO_STREAM_COST
}

/// Total load of a server from its `getMeetings` reply.
pub fn server_load(meetings: &[MeetingInfo], now_ms: i64) -> f64 {
    meetings
        .iter()
        .map(|m| meeting_cost(m, now_ms))
        .fold(0.0, |a, b| a + b)
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
    /// Live load from the last successful poll.
    pub load: f64,
    /// Meetings placed here since the last poll that saw them.
    pub reserved: u32,
}

impl Candidate {
    /// The placement score; lower is better.
    pub fn score(&self) -> f64 {
        let weight = if self.weight.is_finite() && self.weight > 0.0 {
            self.weight
        } else {
            1.0
        };
        (self.load + f64::from(self.reserved) * RESERVATION_COST) * weight
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

/// Why no server could be chosen; the message is safe to show to users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoEligibleServer(pub String);

/// Picks the server for a new meeting of `world`. Servers in `exclude` (already tried) are
/// skipped; `prefer` (a server id or URL from the room config) wins when it is eligible and
/// healthy; otherwise the lowest score wins among healthy servers, then among suspect ones.
pub fn choose<R: Rng + ?Sized>(
    candidates: &[Candidate],
    world: &str,
    prefer: Option<&str>,
    exclude: &[ServerId],
    rng: &mut R,
) -> Result<ServerId, NoEligibleServer> {
    let eligible: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.eligible_for(world) && !exclude.contains(&c.id))
        .collect();
    if let Some(p) = prefer.filter(|p| !p.trim().is_empty()) {
        if let Some(c) = eligible.iter().find(|c| c.matches(p) && !c.suspect) {
            return Ok(c.id);
        }
    }
    let healthy: Vec<&Candidate> = eligible.iter().copied().filter(|c| !c.suspect).collect();
    let pool = if healthy.is_empty() {
        eligible
    } else {
        healthy
    };
    if pool.is_empty() {
        return Err(NoEligibleServer(explain(candidates, world, exclude)));
    }
    let best = pool.iter().map(|c| c.score()).fold(f64::INFINITY, f64::min);
    let tolerance = 1e-9 * best.abs().max(1.0);
    let ties: Vec<ServerId> = pool
        .iter()
        .filter(|c| c.score() <= best + tolerance)
        .map(|c| c.id)
        .collect();
    // `ties` is empty only if every score is NaN, which finite loads and weights rule out.
    match ties.len() {
        0 => Ok(pool[0].id),
        n => Ok(ties[rng.gen_range(0..n)]),
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
            reserved: 0,
        }
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
            choose(&[a, b], "w", None, &[], &mut rng()),
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
        assert_eq!(
            choose(&all, "w", None, &[], &mut rng()),
            Ok(ServerId::new(3))
        );
        assert_eq!(
            choose(&all, "x", None, &[], &mut rng()),
            Ok(ServerId::new(2))
        );
        // Only the other world's server: nothing for w.
        let err = choose(&[other], "w", None, &[], &mut rng()).unwrap_err();
        assert!(err.0.contains("configured"), "{err:?}");
        assert_eq!(
            choose(&[own], "w", None, &[], &mut rng()),
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
            choose(&all, "w", Some("1"), &[], &mut rng()),
            Ok(ServerId::new(1))
        );
        assert_eq!(
            choose(
                &all,
                "w",
                Some("HTTPS://BBB1.example.org/bigbluebutton/"),
                &[],
                &mut rng()
            ),
            Ok(ServerId::new(1))
        );
        assert_eq!(
            choose(&all, "w", Some("77"), &[], &mut rng()),
            Ok(ServerId::new(2))
        );
        let mut cordoned = a.clone();
        cordoned.state = ServerState::Cordoned;
        assert_eq!(
            choose(&[cordoned, b.clone()], "w", Some("1"), &[], &mut rng()),
            Ok(ServerId::new(2))
        );
        let mut offline = a;
        offline.online = false;
        assert_eq!(
            choose(&[offline, b], "w", Some("1"), &[], &mut rng()),
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
        let err = choose(&[a.clone(), b.clone()], "w", None, &[], &mut rng()).unwrap_err();
        assert!(err.0.contains("cordoned or disabled"), "{err:?}");
        let err = choose(&[a, b, c.clone()], "w", None, &[], &mut rng()).unwrap_err();
        assert!(err.0.contains("online"), "{err:?}");
        let d = cand(4);
        assert_eq!(
            choose(&[c, d], "w", None, &[], &mut rng()),
            Ok(ServerId::new(4))
        );
    }

    #[test]
    fn no_server_at_all_is_a_clear_error() {
        let err = choose(&[], "w", None, &[], &mut rng()).unwrap_err();
        assert_eq!(err.0, "no BBB server is configured for this world");
    }

    #[test]
    fn excluded_and_suspect_servers_are_last_resort() {
        let a = cand(1);
        let mut b = cand(2);
        b.load = 500.0;
        assert_eq!(
            choose(
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
            choose(&[sa.clone(), b.clone()], "w", None, &[], &mut rng()),
            Ok(ServerId::new(2))
        );
        // Only suspect servers left: still try one rather than fail.
        assert_eq!(
            choose(&[sa], "w", None, &[], &mut rng()),
            Ok(ServerId::new(1))
        );
        let err = choose(&[a], "w", None, &[ServerId::new(1)], &mut rng()).unwrap_err();
        assert!(err.0.contains("answered"), "{err:?}");
    }

    #[test]
    fn weight_multiplies_load() {
        let mut a = cand(1);
        a.load = 100.0;
        a.weight = 3.0; // looks like 300
        let mut b = cand(2);
        b.load = 200.0;
        assert_eq!(
            choose(&[a.clone(), b.clone()], "w", None, &[], &mut rng()),
            Ok(ServerId::new(2))
        );
        a.weight = 1.5; // looks like 150
        assert_eq!(
            choose(&[a, b], "w", None, &[], &mut rng()),
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
            let id = choose(&fleet, "w", None, &[], &mut r).unwrap();
            fleet.iter_mut().find(|c| c.id == id).unwrap().reserved += 1;
        }
        assert_eq!((fleet[0].reserved, fleet[1].reserved), (60, 30));
    }

    #[test]
    fn ties_are_broken_at_random() {
        let fleet = [cand(1), cand(2), cand(3)];
        let mut r = rng();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..60 {
            seen.insert(choose(&fleet, "w", None, &[], &mut r).unwrap());
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn a_burst_of_100_over_4_equal_servers_is_within_10_percent_of_even() {
        for seed in 0..20u64 {
            let mut fleet: Vec<Candidate> = (1..=4).map(cand).collect();
            let mut r = StdRng::seed_from_u64(seed);
            for _ in 0..100 {
                let id = choose(&fleet, "w", None, &[], &mut r).unwrap();
                fleet.iter_mut().find(|c| c.id == id).unwrap().reserved += 1;
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
            let id = choose(&fleet, "w", None, &[], &mut r).unwrap();
            fleet.iter_mut().find(|c| c.id == id).unwrap().reserved += 1;
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
}
