//! Identifiers that are easy to mix up as plain strings and integers: which meeting a room or
//! call has ([`MeetingKey`]) and which BBB server ([`ServerId`]). Built only through their
//! constructors, so a key is always in its canonical form.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// Which room's or call's meeting: `room:{world}:{room}` or `call:{call id}`. The canonical
/// string is what the database stores and what the published join table is keyed by; it is
/// shared (`Arc`), so copies are cheap.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeetingKey(Arc<str>);

impl MeetingKey {
    /// The meeting of room `room` in world `world`.
    pub fn room(world: &str, room: &str) -> Self {
        let mut key = String::with_capacity(world.len() + room.len() + 6);
        Self::write_room(&mut key, world, room);
        MeetingKey(key.into())
    }

    /// The meeting of private call `call` (its canonical UUID).
    pub fn call(call: &str) -> Self {
        MeetingKey(format!("call:{call}").into())
    }

    /// Writes the canonical form of a room key into `out`, so the hot path can look a key up
    /// (by `&str`) without allocating one.
    pub fn write_room(out: &mut String, world: &str, room: &str) {
        out.push_str("room:");
        out.push_str(world);
        out.push(':');
        out.push_str(room);
    }

    /// A key read back from the database; `None` when it is not in a canonical form.
    pub fn parse(stored: &str) -> Option<Self> {
        let ok = match stored.split_once(':') {
            Some(("room", rest)) => rest
                .split_once(':')
                .is_some_and(|(w, r)| !w.is_empty() && !r.is_empty()),
            Some(("call", id)) => !id.is_empty(),
            _ => false,
        };
        ok.then(|| MeetingKey(stored.into()))
    }

    /// The canonical string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a private call's meeting.
    pub fn is_call(&self) -> bool {
        self.0.starts_with("call:")
    }
}

impl Borrow<str> for MeetingKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MeetingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MeetingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeetingKey({})", self.0)
    }
}

/// A registered BBB server (the database's id, from 1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ServerId(i32);

impl ServerId {
    /// Wraps a database id.
    pub const fn new(id: i32) -> Self {
        ServerId(id)
    }

    /// The database id.
    pub const fn get(self) -> i32 {
        self.0
    }
}

impl From<i32> for ServerId {
    fn from(id: i32) -> Self {
        ServerId(id)
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server {}", self.0)
    }
}

impl std::str::FromStr for ServerId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(ServerId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_canonical_and_round_trip() {
        let room = MeetingKey::room("w", "r1");
        assert_eq!(room.as_str(), "room:w:r1");
        assert_eq!(MeetingKey::parse("room:w:r1"), Some(room.clone()));
        let mut buf = String::new();
        MeetingKey::write_room(&mut buf, "w", "r1");
        assert_eq!(buf, room.as_str());
        let call = MeetingKey::call("0f0e");
        assert!(call.is_call() && !room.is_call());
        assert_eq!(MeetingKey::parse(call.as_str()), Some(call));
        for bad in ["", "room:", "room:w", "room::r", "call:", "x:y", "nocolon"] {
            assert_eq!(MeetingKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn server_ids_parse_and_print() {
        assert_eq!(" 7".parse::<ServerId>().ok(), Some(ServerId::new(7)));
        assert_eq!(ServerId::new(7).to_string(), "7");
        assert!("x".parse::<ServerId>().is_err());
    }
}
