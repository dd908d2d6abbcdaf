//! Permissions with venueless semantics: the permission names, roles and their permission sets,
//! trait grants and moderation caps. Applying them to a world's snapshot is
//! [`crate::world::world_permissions`] / [`crate::world::room_permissions`].
//!
//! A user holds a role in a room when the world's trait grants, the room's trait grants (a room
//! without its own defaults to `{"viewer": []}`) or an explicit grant (world-wide or for that
//! room) give it; roles map to permission sets. Banned users have nothing; silenced users keep
//! at most `world:view` and `room:view`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::moderation::Moderation;

/// The permissions the gateway knows: the subset of venueless permissions that matter for
/// video calls. The strings are the protocol (sent in `authenticated`); never rename them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    WorldView,
    RoomView,
    RoomBbbJoin,
    RoomBbbModerate,
    RoomBbbRecordings,
}

impl Permission {
    /// Every permission, in the stable order used when listing a set.
    pub const ALL: [Permission; 5] = [
        Permission::WorldView,
        Permission::RoomView,
        Permission::RoomBbbJoin,
        Permission::RoomBbbModerate,
        Permission::RoomBbbRecordings,
    ];

    /// The venueless name of the permission.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::WorldView => "world:view",
            Permission::RoomView => "room:view",
            Permission::RoomBbbJoin => "room:bbb.join",
            Permission::RoomBbbModerate => "room:bbb.moderate",
            Permission::RoomBbbRecordings => "room:bbb.recordings",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A permission name that the gateway does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission {0:?}")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermission(s.to_owned()))
    }
}

/// A set of permissions as a bitset: cheap to copy and to combine on the hot path.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PermissionSet(u8);

impl PermissionSet {
    /// The empty set.
    pub const EMPTY: PermissionSet = PermissionSet(0);

    /// The set of the given permissions.
    pub fn of(perms: &[Permission]) -> PermissionSet {
        perms.iter().copied().collect()
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn insert(&mut self, p: Permission) {
        self.0 |= p.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Both sets together.
    pub fn union(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 | other.0)
    }

    /// What both sets share.
    pub fn intersection(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 & other.0)
    }

    /// The permissions in the set, in [`Permission::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }

    /// The names of the permissions in the set, in a stable order (as sent to clients).
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        self.iter().map(Permission::as_str)
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = PermissionSet::EMPTY;
        for p in iter {
            set.insert(p);
        }
        set
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// One requirement of a trait grant: a single trait, or a list meaning "any of these traits".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Requirement {
    Trait(String),
    AnyOf(Vec<String>),
}

impl Requirement {
    /// Whether the traits satisfy the requirement. An empty any-of list matches nothing, as in
    /// venueless.
    pub fn matches(&self, traits: &[String]) -> bool {
        match self {
            Requirement::Trait(t) => traits.iter().any(|have| have == t),
            Requirement::AnyOf(any) => any.iter().any(|t| traits.iter().any(|have| have == t)),
        }
    }
}

/// Role → requirements. A role is given when every requirement matches; an empty list gives
/// the role to every person user.
pub type TraitGrants = BTreeMap<String, Vec<Requirement>>;

/// The roles given by `grants` to a user with `traits`.
pub(crate) fn granted_roles<'g>(
    grants: &'g TraitGrants,
    traits: &'g [String],
) -> impl Iterator<Item = &'g str> + 'g {
    grants
        .iter()
        .filter(move |(_, reqs)| reqs.iter().all(|r| r.matches(traits)))
        .map(|(role, _)| role.as_str())
}

/// The role a room without its own trait grants gives everybody (`{"viewer": []}`).
pub const DEFAULT_ROOM_ROLE: &str = "viewer";

/// The trait grants a room without its own uses: everybody may view it.
pub fn default_room_trait_grants() -> TraitGrants {
    BTreeMap::from([(DEFAULT_ROOM_ROLE.to_owned(), Vec::new())])
}

/// Role name → permissions. Starts from the venueless default roles; a world may override any
/// role or add its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDefs(BTreeMap<String, PermissionSet>);

impl Default for RoleDefs {
    /// viewer {world:view, room:view}; participant = viewer + room:bbb.join; speaker =
    /// participant + room:bbb.moderate; moderator = speaker + room:bbb.recordings; admin =
    /// moderator.
    fn default() -> Self {
        use Permission::*;
        let viewer = PermissionSet::of(&[WorldView, RoomView]);
        let participant = viewer.union(PermissionSet::of(&[RoomBbbJoin]));
        let speaker = participant.union(PermissionSet::of(&[RoomBbbModerate]));
        let moderator = speaker.union(PermissionSet::of(&[RoomBbbRecordings]));
        RoleDefs(BTreeMap::from([
            ("viewer".to_owned(), viewer),
            ("participant".to_owned(), participant),
            ("speaker".to_owned(), speaker),
            ("moderator".to_owned(), moderator),
            ("admin".to_owned(), moderator),
        ]))
    }
}

impl RoleDefs {
    /// The default roles with the world file's `roles` applied on top: a listed role replaces
    /// the default of the same name, new names are added. Fails on an unknown permission name
    /// (returned with the role it appeared in).
    pub fn with_overrides(
        overrides: Option<&BTreeMap<String, Vec<String>>>,
    ) -> Result<RoleDefs, (String, UnknownPermission)> {
        let mut defs = RoleDefs::default();
        for (role, names) in overrides.into_iter().flatten() {
            let set = names
                .iter()
                .map(|n| n.parse::<Permission>())
                .collect::<Result<PermissionSet, _>>()
                .map_err(|e| (role.clone(), e))?;
            defs.0.insert(role.clone(), set);
        }
        Ok(defs)
    }

    /// The permissions of a role; `None` for an unknown role.
    pub fn get(&self, role: &str) -> Option<PermissionSet> {
        self.0.get(role).copied()
    }

    pub fn contains_role(&self, role: &str) -> bool {
        self.0.contains_key(role)
    }

    /// Role names in sorted order.
    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The union of the permissions of the given roles; unknown role names give nothing.
    pub(crate) fn permissions_of<'r>(
        &self,
        roles: impl IntoIterator<Item = &'r str>,
    ) -> PermissionSet {
        roles
            .into_iter()
            .filter_map(|r| self.get(r))
            .fold(PermissionSet::EMPTY, PermissionSet::union)
    }
}

impl Moderation {
    /// Caps a permission set by the moderation state.
    pub(crate) fn cap(self, set: PermissionSet) -> PermissionSet {
        match self {
            Moderation::None => set,
            Moderation::Silenced => set.intersection(PermissionSet::of(&[
                Permission::WorldView,
                Permission::RoomView,
            ])),
            Moderation::Banned => PermissionSet::EMPTY,
        }
    }
}

/// Who asks: what permission resolution needs to know about a user.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The token's `uid` (explicit grants are keyed by it); `None` for client_id users.
    pub uid: Option<&'a str>,
    pub traits: &'a [String],
    pub moderation: Moderation,
}

#[cfg(test)]
#[path = "permissions_tests.rs"]
mod tests;
