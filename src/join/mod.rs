//! The join decision, shared by the WebSocket session (warm joins) and the coordinator (every
//! other join): the permission checks of PROTOCOL.md, the `create` and `join` parameters, the
//! target a join URL is signed for, and the published table of meetings sessions may answer
//! from. Depends on worlds, users and the BBB API only, never on the coordinator or the
//! session, so both use it without importing each other.

pub mod checks;
pub mod params;
pub mod published;
pub mod target;

pub use checks::{CallInfo, RoomJoin};
pub use published::{warm_join, JoinTable, Published, WarmJoin};
pub use target::JoinTarget;
