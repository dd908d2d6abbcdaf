//! The simulator's memory: meetings with BBB's lifecycle, recordings, the call log and the
//! current fault. Guarded by one std `Mutex` that is never held across an await.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How every API call misbehaves (`POST /sim/fault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    #[default]
    None,
    /// Answer HTTP 500.
    Http500,
    /// Answer 200 with a body that is not XML.
    Garbage,
    /// Answer FAILED `checksumError` whatever the checksum.
    ChecksumError,
    /// Never answer until the mode changes (the client's timeout must fire).
    Hang,
}

/// One API call as received, for `GET /sim/calls`.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub call: String,
    /// Query parameters without `checksum` (last value wins for repeated names).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// ms since the Unix epoch.
    pub at_ms: i64,
}

/// A joined user, listed under `<attendees>`.
#[derive(Debug, Clone)]
pub struct Attendee {
    pub user_id: String,
    pub full_name: String,
    pub moderator: bool,
}

/// A meeting on the simulated server.
#[derive(Debug, Clone)]
pub struct SimMeeting {
    pub meeting_id: String,
    pub internal_id: String,
    pub name: String,
    pub attendee_pw: String,
    pub moderator_pw: String,
    pub create_time: i64,
    pub created_at: Instant,
    pub voice_bridge: String,
    pub max_participants: u32,
    pub guest_policy: String,
    pub record: bool,
    pub metadata: Vec<(String, String)>,
    /// Nobody joined within this long → the meeting ends.
    pub expire_no_join: Duration,
    /// The last user left this long ago → the meeting ends.
    pub expire_last_left: Duration,
    pub has_user_joined: bool,
    pub last_left: Option<Instant>,
    pub participants: u32,
    pub moderators: u32,
    pub listeners: u32,
    pub voice: u32,
    pub video: u32,
    pub attendees: Vec<Attendee>,
}

impl SimMeeting {
    /// BBB's two expiry rules.
    pub fn expired(&self, now: Instant) -> bool {
        if !self.has_user_joined {
            return now.saturating_duration_since(self.created_at) >= self.expire_no_join;
        }
        match self.last_left {
            Some(left) if self.participants == 0 => {
                now.saturating_duration_since(left) >= self.expire_last_left
            }
            _ => false,
        }
    }

    /// BBB calls a meeting running once someone joined, until it ends.
    pub fn running(&self) -> bool {
        self.has_user_joined
    }

    /// The URL BBB calls when this meeting ends (`meta_endCallbackUrl`, any case), with
    /// `meetingID` and `recordingmarks` appended as BBB appends them.
    pub fn end_callback(&self) -> Option<String> {
        let (_, url) = self
            .metadata
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case("endCallbackUrl") && !v.trim().is_empty())?;
        let sep = if url.contains('?') { '&' } else { '?' };
        let id: String = form_urlencoded::byte_serialize(self.meeting_id.as_bytes()).collect();
        Some(format!("{url}{sep}meetingID={id}&recordingmarks=false"))
    }

    /// Sets counts as `POST /sim/participants` does; 0 participants starts the expiry timer.
    pub fn set_participants(&mut self, participants: u32, now: Instant) {
        if participants > 0 {
            self.has_user_joined = true;
            self.last_left = None;
        } else if self.participants > 0 || self.has_user_joined {
            self.has_user_joined = true;
            self.last_left = Some(now);
        }
        self.participants = participants;
    }
}

/// A recording known to the simulated server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimRecording {
    pub record_id: String,
    pub meeting_id: String,
    pub internal_meeting_id: String,
    pub name: String,
    pub state: String,
    pub start_time: i64,
    pub end_time: i64,
    pub participants: u32,
    pub formats: Vec<SimFormat>,
    pub metadata: Vec<(String, String)>,
}

/// A playback format of a [`SimRecording`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimFormat {
    #[serde(rename = "type")]
    pub format_type: String,
    pub url: String,
    #[serde(default)]
    pub length: Option<u32>,
}

/// A join session, for the `/client/join` page.
#[derive(Debug, Clone)]
pub struct Session {
    pub meeting_id: String,
    pub full_name: String,
    pub moderator: bool,
}

/// Everything the simulator remembers; a restart forgets it all, like a rebooted BBB.
#[derive(Debug, Default)]
pub struct SimState {
    pub meetings: HashMap<String, SimMeeting>,
    pub recordings: Vec<SimRecording>,
    pub calls: Vec<CallRecord>,
    pub sessions: HashMap<String, Session>,
    pub fault: FaultMode,
    pub fault_latency_ms: u64,
    /// End callbacks of meetings that ended, not called yet (the HTTP layer sends them).
    pub pending_callbacks: Vec<DueCallback>,
    /// End callbacks sent, with their outcome, oldest first (`GET /sim/callbacks`).
    pub callbacks_sent: Vec<CallbackRecord>,
}

/// An end callback due: the meeting that ended and the URL to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCallback {
    pub meeting_id: String,
    pub url: String,
}

/// An end callback that was sent, for `GET /sim/callbacks` (the URL, which carries the
/// gateway's token, is not kept).
#[derive(Debug, Clone, Serialize)]
pub struct CallbackRecord {
    #[serde(rename = "meetingID")]
    pub meeting_id: String,
    /// When the meeting ended (ms since the epoch).
    pub ended_at_ms: i64,
    /// When the gateway's answer arrived; `None` when it did not answer.
    pub answered_at_ms: Option<i64>,
    /// The HTTP status it answered, or the error.
    pub outcome: String,
}

impl SimState {
    /// Ends a meeting for any reason: it is gone, its join sessions too, and its end callback
    /// is due. Returns whether it existed.
    pub fn end_meeting(&mut self, meeting_id: &str) -> bool {
        let Some(m) = self.meetings.remove(meeting_id) else {
            return false;
        };
        self.sessions.retain(|_, s| s.meeting_id != meeting_id);
        if let Some(url) = m.end_callback() {
            self.pending_callbacks.push(DueCallback {
                meeting_id: m.meeting_id,
                url,
            });
        }
        true
    }

    /// Ends the meetings that BBB would have ended by now.
    pub fn purge_expired(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .meetings
            .values()
            .filter(|m| m.expired(now))
            .map(|m| m.meeting_id.clone())
            .collect();
        for id in expired {
            self.end_meeting(&id);
        }
    }

    /// `POST /sim/reset`: ends every meeting (their callbacks are due) and forgets
    /// recordings, sessions, the call log and any fault.
    pub fn reset(&mut self) {
        let ids: Vec<String> = self.meetings.keys().cloned().collect();
        for id in ids {
            self.end_meeting(&id);
        }
        let callbacks = std::mem::take(&mut self.pending_callbacks);
        *self = Self {
            pending_callbacks: callbacks,
            ..Self::default()
        };
    }

    /// The end callbacks due, to send now.
    pub fn take_callbacks(&mut self) -> Vec<DueCallback> {
        std::mem::take(&mut self.pending_callbacks)
    }
}

/// ms since the Unix epoch (BBB's time unit).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meeting(now: Instant) -> SimMeeting {
        SimMeeting {
            meeting_id: "m".into(),
            internal_id: "i".into(),
            name: "n".into(),
            attendee_pw: "ap".into(),
            moderator_pw: "mp".into(),
            create_time: 1,
            created_at: now,
            voice_bridge: "12345".into(),
            max_participants: 0,
            guest_policy: "ALWAYS_ACCEPT".into(),
            record: false,
            metadata: vec![],
            expire_no_join: Duration::from_secs(5),
            expire_last_left: Duration::from_secs(1),
            has_user_joined: false,
            last_left: None,
            participants: 0,
            moderators: 0,
            listeners: 0,
            voice: 0,
            video: 0,
            attendees: vec![],
        }
    }

    #[test]
    fn expires_when_nobody_joins() {
        let t0 = Instant::now();
        let m = meeting(t0);
        assert!(!m.expired(t0 + Duration::from_secs(4)));
        assert!(m.expired(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn ended_meetings_owe_their_end_callback_once() {
        let t0 = Instant::now();
        let mut m = meeting(t0);
        m.metadata.push((
            "endCallbackUrl".into(),
            "http://gw/bbb/callback/end/tok".into(),
        ));
        let mut st = SimState::default();
        st.meetings.insert("m".into(), m);
        let mut plain = meeting(t0);
        plain.meeting_id = "p".into();
        st.meetings.insert("p".into(), plain);
        assert!(st.end_meeting("m"));
        assert!(!st.end_meeting("m"));
        assert_eq!(
            st.take_callbacks(),
            vec![DueCallback {
                meeting_id: "m".into(),
                url: "http://gw/bbb/callback/end/tok?meetingID=m&recordingmarks=false".into()
            }]
        );
        assert!(st.take_callbacks().is_empty());
        st.purge_expired(t0 + Duration::from_secs(60));
        assert!(st.meetings.is_empty() && st.take_callbacks().is_empty());
    }

    #[test]
    fn expires_after_last_user_left() {
        let t0 = Instant::now();
        let mut m = meeting(t0);
        m.set_participants(3, t0);
        assert!(m.running());
        assert!(!m.expired(t0 + Duration::from_secs(100)));
        let t1 = t0 + Duration::from_secs(100);
        m.set_participants(0, t1);
        assert!(!m.expired(t1 + Duration::from_millis(500)));
        assert!(m.expired(t1 + Duration::from_secs(1)));
        m.set_participants(1, t1);
        assert!(!m.expired(t1 + Duration::from_secs(10)));
    }
}
