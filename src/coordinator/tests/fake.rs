//! A scripted BBB fleet: per server meetings, recordings, faults and latency; every call is
//! counted.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use crate::bbb::{
    BbbApi, BbbError, CreateMeeting, CreateResponse, MeetingInfo, Recording, ServerEndpoint,
};

#[derive(Debug, Default)]
pub struct FakeServer {
    pub meetings: BTreeMap<String, MeetingInfo>,
    pub recordings: Vec<Recording>,
    /// Every call fails this way (server down, timeout, …).
    pub fault: Option<BbbError>,
    /// `create` alone fails this way (e.g. a FAILED answer to a bad request).
    pub create_error: Option<BbbError>,
    pub latency: Duration,
    /// While set, `create` calls wait until the gate opens (`true`).
    pub create_gate: Option<tokio::sync::watch::Receiver<bool>>,
    /// The `meta_endCallbackUrl` of each running meeting's instance, as BBB keeps it.
    pub callbacks: HashMap<String, String>,
}

#[derive(Debug, Default)]
pub struct FakeState {
    pub servers: HashMap<String, FakeServer>,
    /// (server base URL, call name, meeting id or "")
    pub calls: Vec<(String, String, String)>,
    pub last_create: Option<CreateMeeting>,
    next_create_time: i64,
}

#[derive(Clone, Default)]
pub struct FakeBbb(pub Rc<RefCell<FakeState>>);

pub fn down() -> BbbError {
    BbbError::Connect("connection refused".into())
}

impl FakeBbb {
    pub fn add_server(&self, url: &str) {
        self.0
            .borrow_mut()
            .servers
            .insert(url.to_string(), FakeServer::default());
    }

    pub fn with<R>(&self, url: &str, f: impl FnOnce(&mut FakeServer) -> R) -> R {
        let mut s = self.0.borrow_mut();
        f(s.servers.get_mut(url).expect("fake server"))
    }

    pub fn set_fault(&self, url: &str, fault: Option<BbbError>) {
        self.with(url, |s| s.fault = fault);
    }

    /// How many calls named `call` went to `url` (any server when `None`).
    pub fn count(&self, url: Option<&str>, call: &str) -> usize {
        self.0
            .borrow()
            .calls
            .iter()
            .filter(|(u, c, _)| c == call && url.is_none_or(|x| x == u))
            .count()
    }

    /// The servers `create` was sent to, in order.
    pub fn creates(&self) -> Vec<String> {
        self.0
            .borrow()
            .calls
            .iter()
            .filter(|(_, c, _)| c == "create")
            .map(|(u, _, _)| u.clone())
            .collect()
    }

    pub fn runs(&self, url: &str, meeting_id: &str) -> bool {
        self.with(url, |s| s.meetings.contains_key(meeting_id))
    }

    pub fn set_participants(&self, url: &str, meeting_id: &str, participants: u32, videos: u32) {
        self.with(url, |s| {
            if let Some(m) = s.meetings.get_mut(meeting_id) {
                m.participant_count = participants;
                m.video_count = videos;
                m.create_time = 1; // old: no young-meeting floor
            }
        });
    }

    /// Holds every `create` sent to `url` from now on until the returned gate is opened
    /// (`send(true)`) or dropped.
    pub fn hold_creates(&self, url: &str) -> tokio::sync::watch::Sender<bool> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        self.with(url, |s| s.create_gate = Some(rx));
        tx
    }

    /// BBB ends a meeting and calls its end-callback URL, as BBB does: returns the token of
    /// that URL (`None` when it had none or does not run there).
    pub fn end_with_callback(&self, url: &str, meeting_id: &str) -> Option<String> {
        self.with(url, |s| {
            s.meetings.remove(meeting_id)?;
            let callback = s.callbacks.remove(meeting_id)?;
            callback
                .rsplit_once("/bbb/callback/end/")
                .map(|(_, token)| token.to_string())
        })
    }

    fn begin(
        &self,
        url: &str,
        call: &str,
        meeting_id: &str,
    ) -> (Duration, Option<tokio::sync::watch::Receiver<bool>>) {
        let mut s = self.0.borrow_mut();
        s.calls
            .push((url.to_string(), call.to_string(), meeting_id.to_string()));
        match s.servers.get(url) {
            Some(srv) => (
                srv.latency,
                srv.create_gate.clone().filter(|_| call == "create"),
            ),
            None => (Duration::ZERO, None),
        }
    }

    fn call<T: 'static>(
        &self,
        url: &str,
        call: &str,
        meeting_id: &str,
        body: impl FnOnce(&mut FakeState, &str) -> Result<T, BbbError> + 'static,
    ) -> LocalBoxFuture<'static, Result<T, BbbError>> {
        let (latency, gate) = self.begin(url, call, meeting_id);
        let state = self.0.clone();
        let url = url.to_string();
        async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let result = {
                let mut s = state.borrow_mut();
                // Faults are read at answer time, so a test can take a server down mid-call.
                match s.servers.get(&url).and_then(|srv| srv.fault.clone()) {
                    Some(fault) => Err(fault),
                    None => body(&mut s, &url),
                }
            };
            if let Some(mut gate) = gate {
                // BBB did the work; its answer is held until the gate opens (or is dropped).
                let _ = gate.wait_for(|open| *open).await;
            }
            result
        }
        .boxed_local()
    }
}

impl BbbApi for FakeBbb {
    fn create(
        &self,
        server: &ServerEndpoint,
        meeting: &CreateMeeting,
    ) -> LocalBoxFuture<'static, Result<CreateResponse, BbbError>> {
        let m = meeting.clone();
        self.call(
            &server.base_url,
            "create",
            &meeting.meeting_id,
            move |s, url| {
                s.last_create = Some(m.clone());
                s.next_create_time += 1;
                let fresh_time = 1_600_000_000_000 + s.next_create_time;
                let srv = s.servers.get_mut(url).ok_or_else(down)?;
                if let Some(e) = srv.create_error.clone() {
                    return Err(e);
                }
                let duplicate = srv.meetings.contains_key(&m.meeting_id);
                if !duplicate {
                    // BBB keeps the metadata of the create that started the meeting.
                    srv.callbacks.remove(&m.meeting_id);
                    if let Some((_, url)) = m.extra.iter().find(|(k, _)| k == "meta_endCallbackUrl")
                    {
                        srv.callbacks.insert(m.meeting_id.clone(), url.clone());
                    }
                }
                let info =
                    srv.meetings
                        .entry(m.meeting_id.clone())
                        .or_insert_with(|| MeetingInfo {
                            meeting_id: m.meeting_id.clone(),
                            internal_meeting_id: format!("internal-{}", m.meeting_id),
                            meeting_name: m.name.clone(),
                            create_time: fresh_time,
                            ..Default::default()
                        });
                Ok(CreateResponse {
                    meeting_id: m.meeting_id.clone(),
                    internal_meeting_id: info.internal_meeting_id.clone(),
                    attendee_pw: Some(m.attendee_pw.clone()),
                    moderator_pw: Some(m.moderator_pw.clone()),
                    create_time: info.create_time,
                    voice_bridge: None,
                    duplicate,
                })
            },
        )
    }

    fn get_meetings(
        &self,
        server: &ServerEndpoint,
    ) -> LocalBoxFuture<'static, Result<Vec<MeetingInfo>, BbbError>> {
        self.call(&server.base_url, "getMeetings", "", |s, url| {
            let srv = s.servers.get(url).ok_or_else(down)?;
            Ok(srv.meetings.values().cloned().collect())
        })
    }

    fn get_meeting_info(
        &self,
        server: &ServerEndpoint,
        meeting_id: &str,
    ) -> LocalBoxFuture<'static, Result<Option<MeetingInfo>, BbbError>> {
        let id = meeting_id.to_string();
        self.call(
            &server.base_url,
            "getMeetingInfo",
            meeting_id,
            move |s, url| {
                let srv = s.servers.get(url).ok_or_else(down)?;
                Ok(srv.meetings.get(&id).cloned())
            },
        )
    }

    fn is_meeting_running(
        &self,
        server: &ServerEndpoint,
        meeting_id: &str,
    ) -> LocalBoxFuture<'static, Result<bool, BbbError>> {
        let id = meeting_id.to_string();
        self.call(
            &server.base_url,
            "isMeetingRunning",
            meeting_id,
            move |s, url| {
                let srv = s.servers.get(url).ok_or_else(down)?;
                Ok(srv.meetings.contains_key(&id))
            },
        )
    }

    fn end(
        &self,
        server: &ServerEndpoint,
        meeting_id: &str,
    ) -> LocalBoxFuture<'static, Result<(), BbbError>> {
        let id = meeting_id.to_string();
        self.call(&server.base_url, "end", meeting_id, move |s, url| {
            let srv = s.servers.get_mut(url).ok_or_else(down)?;
            srv.meetings.remove(&id);
            Ok(())
        })
    }

    fn get_recordings(
        &self,
        server: &ServerEndpoint,
        meeting_ids: &[String],
    ) -> LocalBoxFuture<'static, Result<Vec<Recording>, BbbError>> {
        let ids = meeting_ids.to_vec();
        self.call(&server.base_url, "getRecordings", "", move |s, url| {
            let srv = s.servers.get(url).ok_or_else(down)?;
            Ok(srv
                .recordings
                .iter()
                .filter(|r| ids.contains(&r.meeting_id))
                .cloned()
                .collect())
        })
    }
}
