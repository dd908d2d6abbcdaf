//! Where a join goes: everything needed to sign a join URL for one meeting, without asking
//! the coordinator again.

use crate::bbb::ServerEndpoint;
use crate::ids::ServerId;

/// A meeting's BBB instance as the coordinator last confirmed it.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinTarget {
    pub server: ServerId,
    pub endpoint: ServerEndpoint,
    pub meeting_id: String,
    pub attendee_pw: String,
    pub moderator_pw: String,
    /// BBB's createTime of the instance; a join URL with another one is refused.
    pub create_time: Option<i64>,
}
