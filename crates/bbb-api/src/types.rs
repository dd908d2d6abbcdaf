//! Types shared by the BBB client, the coordinator and bbb-sim.

use std::fmt;
use std::str::FromStr;

use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};

/// Hash used for the BBB checksum; chosen per server because BBB servers can be configured to
/// accept only some of them (`supportedChecksumAlgorithms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    Sha1,
    #[default]
    Sha256,
    Sha384,
    Sha512,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 4] = [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChecksumAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sha1" => Ok(Self::Sha1),
            "sha256" => Ok(Self::Sha256),
            "sha384" => Ok(Self::Sha384),
            "sha512" => Ok(Self::Sha512),
            other => Err(format!(
                "unknown checksum algorithm {other:?} (expected sha1, sha256, sha384 or sha512)"
            )),
        }
    }
}

/// A shared secret. Its `Debug`/`Display` never print the value, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The raw value, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything needed to sign and send a call to one BBB server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEndpoint {
    /// Normalised base, e.g. `https://bbb1.example.org/bigbluebutton` (no trailing slash, no `/api`).
    pub base_url: String,
    pub secret: Secret,
    pub algorithm: ChecksumAlgorithm,
}

/// Parameters of a `create` call. The coordinator fills `extra` with the PROTOCOL.md create
/// parameters (record, meta_*, lock settings, …) in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateMeeting {
    pub meeting_id: String,
    pub name: String,
    pub attendee_pw: String,
    pub moderator_pw: String,
    pub extra: Vec<(String, String)>,
    /// When set, `create` is a POST with a `<modules>` body preloading this presentation.
    pub presentation_url: Option<String>,
}

/// Reply to `create`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateResponse {
    pub meeting_id: String,
    pub internal_meeting_id: String,
    pub attendee_pw: Option<String>,
    pub moderator_pw: Option<String>,
    /// ms since epoch; ties join URLs to this instance of the meeting.
    pub create_time: i64,
    pub voice_bridge: Option<String>,
    /// `messageKey` was `duplicateWarning`: the meeting already existed.
    pub duplicate: bool,
}

/// One meeting of a `getMeetings` / `getMeetingInfo` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeetingInfo {
    pub meeting_id: String,
    pub internal_meeting_id: String,
    pub meeting_name: String,
    pub create_time: i64,
    pub running: bool,
    pub participant_count: u32,
    pub listener_count: u32,
    pub voice_participant_count: u32,
    pub video_count: u32,
    pub moderator_count: u32,
    pub is_breakout: bool,
}

/// One playback format of a recording.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaybackFormat {
    /// `presentation`, `video`, `screenshare`, `podcast`, `notes`, `capture`, …
    pub format_type: String,
    pub url: String,
    pub length_minutes: Option<u32>,
}

/// One recording of a `getRecordings` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recording {
    pub record_id: String,
    pub meeting_id: String,
    pub name: String,
    pub published: bool,
    pub state: String,
    /// ms since epoch
    pub start_time: i64,
    /// ms since epoch
    pub end_time: i64,
    /// As BBB sends it (a string).
    pub participants: String,
    pub formats: Vec<PlaybackFormat>,
}

/// BBB role for a join URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Moderator,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Moderator => "MODERATOR",
            Role::Viewer => "VIEWER",
        }
    }
}

/// Parameters of a signed `join` URL (the browser calls it, the gateway only signs it).
/// Borrowed: built on the hot path of every join from the meeting, the user and the world,
/// none of which needs copying just to be encoded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinParams<'a> {
    pub meeting_id: &'a str,
    pub full_name: &'a str,
    pub user_id: &'a str,
    pub role: Role,
    /// moderatorPW / attendeePW for BBB 2.x servers.
    pub password: Option<&'a str>,
    pub create_time: Option<i64>,
    pub avatar_url: Option<&'a str>,
    pub guest: bool,
    /// `userdata-*` client settings and other extras, in order.
    pub extra: Vec<(&'a str, &'a str)>,
}

/// Why a BBB call failed. Everything but a FAILED reply to a bad request means the server is
/// unhealthy for that call (see [`BbbError::is_server_fault`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BbbError {
    #[error("BBB answered FAILED ({message_key}): {message}")]
    Failed {
        message_key: String,
        message: String,
    },
    #[error("BBB answered HTTP {0}")]
    Status(u16),
    #[error("BBB request timed out")]
    Timeout,
    #[error("cannot connect to BBB: {0}")]
    Connect(String),
    #[error("BBB sent an invalid reply: {0}")]
    InvalidXml(String),
    #[error("BBB reply body too large")]
    BodyTooLarge,
}

impl BbbError {
    /// True when the server itself is at fault (down, slow, broken, wrong secret), so the
    /// request may succeed on another server. A FAILED answer to a bad request is not.
    pub fn is_server_fault(&self) -> bool {
        match self {
            BbbError::Failed { message_key, .. } => message_key == "checksumError",
            _ => true,
        }
    }
}

/// The BBB calls the gateway makes. Futures are local because awc's client is `!Send`; the
/// coordinator runs them on its own arbiter.
pub trait BbbApi {
    fn create(
        &self,
        server: &ServerEndpoint,
        meeting: &CreateMeeting,
    ) -> LocalBoxFuture<'static, Result<CreateResponse, BbbError>>;

    /// `getMeetings`; an empty list for `noMeetings`.
    fn get_meetings(
        &self,
        server: &ServerEndpoint,
    ) -> LocalBoxFuture<'static, Result<Vec<MeetingInfo>, BbbError>>;

    /// `getMeetingInfo`; `Ok(None)` for FAILED `notFound`.
    fn get_meeting_info(
        &self,
        server: &ServerEndpoint,
        meeting_id: &str,
    ) -> LocalBoxFuture<'static, Result<Option<MeetingInfo>, BbbError>>;

    fn is_meeting_running(
        &self,
        server: &ServerEndpoint,
        meeting_id: &str,
    ) -> LocalBoxFuture<'static, Result<bool, BbbError>>;

    /// `end`; `Ok(())` also when the meeting was not found (it is over either way).
    fn end(
        &self,
        server: &ServerEndpoint,
        meeting_id: &str,
    ) -> LocalBoxFuture<'static, Result<(), BbbError>>;

    /// `getRecordings` with `state=any` for several meetings; empty for `noRecordings`.
    fn get_recordings(
        &self,
        server: &ServerEndpoint,
        meeting_ids: &[String],
    ) -> LocalBoxFuture<'static, Result<Vec<Recording>, BbbError>>;

    /// `bbbVersion` from the unsigned API index (`GET {base}/api/`), for the status page;
    /// `Ok(None)` when the server does not say. The default (scripted fakes) knows none.
    fn bbb_version(
        &self,
        _server: &ServerEndpoint,
    ) -> LocalBoxFuture<'static, Result<Option<String>, BbbError>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}
