//! What the dashboard shows beyond the fleet status: the meetings running where, with their
//! last polled figures, and each server's load over the last hour. Neither carries a secret
//! (no password, no shared secret, no signed URL).

use actix::prelude::*;
use serde::Serialize;

use crate::ids::ServerId;

use super::lifecycle::MeetingState;
use super::load_history::LoadPoint;
use super::BbbCoordinator;

/// One meeting placed on a server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeetingStatus {
    pub world: String,
    /// The room whose meeting this is (`None`: a private call).
    pub room: Option<String>,
    /// The private call whose meeting this is.
    pub call: Option<String>,
    pub server: ServerId,
    /// `running` (confirmed by BBB) or `placed` (stored there, not confirmed yet).
    pub state: &'static str,
    /// BBB's meetingID (not a secret: it is in every join URL).
    pub meeting_id: String,
    /// BBB's createTime of the running instance (ms since the Unix epoch).
    pub create_time_ms: Option<i64>,
    /// From the server's last successful poll; `None` when that poll did not list it or this
    /// instance does not poll (it follows the leader's totals).
    pub participants: Option<u32>,
    pub moderators: Option<u32>,
    pub voice: Option<u32>,
    pub videos: Option<u32>,
}

/// Asks for the meetings placed on a server, by server, the biggest first.
#[derive(Debug, Clone, Copy)]
pub struct ListMeetings;

impl Message for ListMeetings {
    type Result = Vec<MeetingStatus>;
}

/// One server's load history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerHistory {
    pub id: ServerId,
    /// Oldest first, one point per [`super::load_history::BUCKET_MS`] with a poll in it.
    pub points: Vec<LoadPoint>,
}

/// Asks for every server's load over the last hour.
#[derive(Debug, Clone, Copy)]
pub struct GetLoadHistory;

impl Message for GetLoadHistory {
    type Result = Vec<ServerHistory>;
}

impl BbbCoordinator {
    /// The meetings placed on a server (running or stored there), with their polled figures.
    pub fn meeting_overview(&self) -> Vec<MeetingStatus> {
        let mut out: Vec<MeetingStatus> = self
            .meetings
            .iter()
            .filter_map(|e| {
                let (server, state, create_time) = match e.state() {
                    MeetingState::Running {
                        server,
                        create_time,
                        ..
                    } => (server, "running", (create_time > 0).then_some(create_time)),
                    MeetingState::Placed { server } => (server, "placed", None),
                    MeetingState::Ended { .. } | MeetingState::Unplaced => return None,
                };
                let polled = self
                    .fleet
                    .get(server)
                    .and_then(|s| s.polled_meeting(&e.meeting_id));
                Some(MeetingStatus {
                    world: e.world_id.clone(),
                    room: e.room_id.clone(),
                    call: e.call_id.clone(),
                    server,
                    state,
                    meeting_id: e.meeting_id.clone(),
                    create_time_ms: create_time,
                    participants: polled.map(|p| p.participants),
                    moderators: polled.map(|p| p.moderators),
                    voice: polled.map(|p| p.voice),
                    videos: polled.map(|p| p.videos),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            (
                a.server,
                std::cmp::Reverse(a.participants),
                &a.world,
                &a.room,
            )
                .cmp(&(
                    b.server,
                    std::cmp::Reverse(b.participants),
                    &b.world,
                    &b.room,
                ))
        });
        out
    }
}

impl Handler<ListMeetings> for BbbCoordinator {
    type Result = MessageResult<ListMeetings>;

    fn handle(&mut self, _msg: ListMeetings, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.meeting_overview())
    }
}

impl Handler<GetLoadHistory> for BbbCoordinator {
    type Result = MessageResult<GetLoadHistory>;

    fn handle(&mut self, _msg: GetLoadHistory, _ctx: &mut Self::Context) -> Self::Result {
        let now = crate::db::now_ms();
        MessageResult(
            self.fleet
                .iter()
                .map(|s| ServerHistory {
                    id: s.id(),
                    points: s.history().points(now),
                })
                .collect(),
        )
    }
}
