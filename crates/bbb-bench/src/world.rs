//! The benchmark's worlds and tokens: a conference with many BBB rooms, trait grants on the
//! world and on every room and some explicit grants, so permission checks do realistic work.

use serde_json::{json, Value};

use bbb_gateway::world::JwtSecret;

/// The benchmark world's id.
pub const WORLD: &str = "bench";
/// The world of the `spread` scenario, served by its own equal servers.
pub const SPREAD_WORLD: &str = "bench-spread";
/// JWT secret of both benchmark worlds (loopback only; never a real secret).
pub const SECRET: &str = "bench-world-jwt-secret-0123456789abcdef";
/// The world of the `churn` scenario, served by its own (time-scaled) servers.
pub const CHURN_WORLD: &str = "bench-churn";
/// The world of the `multi` scenario (several instances on one database).
pub const MULTI_WORLD: &str = "bench-multi";
/// Rooms of each `fleet-scale` world (a platform hosting many events: one world each).
pub const FLEET_ROOMS_PER_WORLD: usize = 100;
/// The room every session of `cold-storm` (and of the `multi` storm) asks for at once.
pub const STORM_ROOM: &str = "storm";
/// The world of the `keynote` scenario, served by servers with a capacity.
pub const KEYNOTE_WORLD: &str = "bench-keynote";
/// The keynote room of that world.
pub const KEYNOTE_ROOM: &str = "keynote";

/// Id of warm room `i`.
pub fn warm_room(i: usize) -> String {
    format!("room_{i}")
}

/// Id of spread room `i`.
pub fn spread_room(i: usize) -> String {
    format!("spread_{i}")
}

/// Id of room `i` of the `multi` burst.
pub fn burst_room(i: usize) -> String {
    format!("burst_{i}")
}

/// Id of `fleet-scale` world `w`.
pub fn fleet_world_id(w: usize) -> String {
    format!("bench-fleet-{w}")
}

/// World and room id of the `fleet-scale` room with global number `i`
/// ([`FLEET_ROOMS_PER_WORLD`] rooms a world).
pub fn fleet_room(i: usize) -> (String, String) {
    (
        fleet_world_id(i / FLEET_ROOMS_PER_WORLD),
        format!("fleet_{}", i % FLEET_ROOMS_PER_WORLD),
    )
}

/// Id of churn room `i`.
pub fn churn_room(i: usize) -> String {
    format!("churn_{i}")
}

/// Id of breakout room `i` of the keynote world.
pub fn breakout_room(i: usize) -> String {
    format!("breakout_{i}")
}

fn room(id: &str, name: &str) -> Value {
    json!({
        "id": id, "name": name,
        "trait_grants": {"viewer": [], "participant": [["attendee", "speaker"]]},
        "modules": [
            {"type": "call.bigbluebutton", "config": {"record": false, "auto_microphone": true}},
            {"type": "chat.native", "config": {}}
        ]
    })
}

fn world(id: &str, rooms: Vec<Value>, grants: Vec<Value>) -> Value {
    json!({
        "id": id, "title": "Benchmark Conference", "timezone": "Europe/Berlin",
        "jwt_secrets": [{"issuer": "any", "audience": "venueless", "secret": SECRET}],
        "trait_grants": {"viewer": [], "participant": ["attendee"], "moderator": ["orga"]},
        "bbb_defaults": {"record": false},
        "rooms": rooms,
        "grants": grants
    })
}

/// The main world: `rooms` warm rooms, the storm room, and 50 users with explicit moderator
/// grants spread over the rooms.
pub fn bench_world(rooms: usize) -> Value {
    let mut list: Vec<Value> = (0..rooms)
        .map(|i| room(&warm_room(i), &format!("Session room {i}")))
        .collect();
    list.push(room(STORM_ROOM, "Keynote"));
    let grants = (0..50)
        .map(|i| json!({"uid": format!("orga{i}"), "role": "moderator", "room": warm_room(i % rooms.max(1))}))
        .collect();
    world(WORLD, list, grants)
}

/// The spread world: `rooms` rooms, none running yet.
pub fn spread_world(rooms: usize) -> Value {
    let list = (0..rooms)
        .map(|i| room(&spread_room(i), &format!("Workshop {i}")))
        .collect();
    world(SPREAD_WORLD, list, Vec::new())
}

/// The churn world: `rooms` rooms whose meetings BBB keeps ending.
pub fn churn_world(rooms: usize) -> Value {
    let list = (0..rooms)
        .map(|i| room(&churn_room(i), &format!("Breakout {i}")))
        .collect();
    world(CHURN_WORLD, list, Vec::new())
}

/// The keynote world: a keynote room expecting `keynote` participants and `breakouts` breakout
/// rooms taking the world's default (`bbb_defaults`) of `breakout` participants each.
pub fn keynote_world(keynote: u32, breakouts: usize, breakout: u32) -> Value {
    let mut keynote_room = room(KEYNOTE_ROOM, "Keynote");
    keynote_room["modules"][0]["config"]["expected_participants"] = keynote.into();
    let list = std::iter::once(keynote_room)
        .chain((0..breakouts).map(|i| room(&breakout_room(i), &format!("Breakout {i}"))))
        .collect();
    let mut w = world(KEYNOTE_WORLD, list, Vec::new());
    w["bbb_defaults"]["expected_participants"] = breakout.into();
    w
}

/// The `multi` world: `rooms` burst rooms and the storm room, none running yet.
pub fn multi_world(rooms: usize) -> Value {
    let list = (0..rooms)
        .map(|i| room(&burst_room(i), &format!("Workshop {i}")))
        .chain(std::iter::once(room(STORM_ROOM, "Keynote")))
        .collect();
    world(MULTI_WORLD, list, Vec::new())
}

/// `fleet-scale` world `w`: [`FLEET_ROOMS_PER_WORLD`] rooms, one meeting each once the
/// scenario started them.
pub fn fleet_world(w: usize) -> Value {
    let list = (0..FLEET_ROOMS_PER_WORLD)
        .map(|i| room(&format!("fleet_{i}"), &format!("Session {i}")))
        .collect();
    world(&fleet_world_id(w), list, Vec::new())
}

/// The secret tokens are signed with.
pub fn jwt_secret(secret: &str) -> JwtSecret {
    JwtSecret {
        issuer: "any".into(),
        audience: "venueless".into(),
        secret: secret.into(),
    }
}

/// A token for benchmark user `i`: an attendee with a display name (so joins need nothing
/// more), valid for a day.
pub fn token(
    secret: &JwtSecret,
    prefix: &str,
    i: usize,
) -> Result<String, bbb_gateway::auth::AuthError> {
    bbb_gateway::auth::mint_token(
        secret,
        &format!("{prefix}{i}"),
        &["attendee".to_string()],
        Some(&format!("Bench User {i}")),
        86_400,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_are_valid_world_files() {
        for w in [
            bench_world(10),
            spread_world(5),
            churn_world(5),
            keynote_world(800, 3, 20),
            multi_world(4),
            fleet_world(4),
        ] {
            bbb_gateway::world::parse_world_file(&w.to_string()).expect("a valid world file");
        }
        assert!(token(&jwt_secret(SECRET), "u", 1).is_ok());
    }
}
