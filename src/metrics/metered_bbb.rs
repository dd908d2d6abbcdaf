//! A [`BbbApi`] decorator that counts every call and its latency per server, so the
//! coordinator's BBB traffic shows up in `/metrics` without the coordinator knowing.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use super::Metrics;
use crate::bbb::{
    BbbApi, BbbError, CreateMeeting, CreateResponse, MeetingInfo, Recording, ServerEndpoint,
};

/// Wraps another client; see the module docs.
pub struct MeteredBbbApi {
    inner: Rc<dyn BbbApi>,
    metrics: Arc<Metrics>,
}

impl MeteredBbbApi {
    pub fn new(inner: Rc<dyn BbbApi>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn measure<T: 'static>(
        &self,
        server: &ServerEndpoint,
        call: &'static str,
        fut: LocalBoxFuture<'static, Result<T, BbbError>>,
    ) -> LocalBoxFuture<'static, Result<T, BbbError>> {
        let metrics = self.metrics.clone();
        let label = server_label(&server.base_url);
        let started = Instant::now();
        fut.map(move |result| {
            metrics.bbb_call(&label, call, outcome(&result), started.elapsed());
            result
        })
        .boxed_local()
    }
}

/// `host:port` of a server URL: bounded cardinality, no path or secret.
fn server_label(base_url: &str) -> String {
    url::Url::parse(base_url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0)))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn outcome<T>(r: &Result<T, BbbError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(BbbError::Failed { .. }) => "failed",
        Err(BbbError::Status(_)) => "http_error",
        Err(BbbError::Timeout) => "timeout",
        Err(BbbError::Connect(_)) => "connect_error",
        Err(BbbError::InvalidXml(_)) => "invalid_xml",
        Err(BbbError::BodyTooLarge) => "too_large",
    }
}

impl BbbApi for MeteredBbbApi {
    fn create(
        &self,
        server: &ServerEndpoint,
        meeting: &CreateMeeting,
    ) -> LocalBoxFuture<'static, Result<CreateResponse, BbbError>> {
        self.measure(server, "create", self.inner.create(server, meeting))
    }

    fn get_meetings(
        &self,
        server: &ServerEndpoint,
    ) -> LocalBoxFuture<'static, Result<Vec<MeetingInfo>, BbbError>> {
        self.measure(server, "getMeetings", self.inner.get_meetings(server))
    }

    fn get_meeting_info(
        &self,
        server: &ServerEndpoint,
        meeting_id: &str,
    ) -> LocalBoxFuture<'static, Result<Option<MeetingInfo>, BbbError>> {
        self.measure(
            server,
            "getMeetingInfo",
            self.inner.get_meeting_info(server, meeting_id),
        )
    }

    fn is_meeting_running(
        &self,
        server: &ServerEndpoint,
        meeting_id: &str,
    ) -> LocalBoxFuture<'static, Result<bool, BbbError>> {
        self.measure(
            server,
            "isMeetingRunning",
            self.inner.is_meeting_running(server, meeting_id),
        )
    }

    fn end(
        &self,
        server: &ServerEndpoint,
        meeting_id: &str,
    ) -> LocalBoxFuture<'static, Result<(), BbbError>> {
        self.measure(server, "end", self.inner.end(server, meeting_id))
    }

    fn get_recordings(
        &self,
        server: &ServerEndpoint,
        meeting_ids: &[String],
    ) -> LocalBoxFuture<'static, Result<Vec<Recording>, BbbError>> {
        self.measure(
            server,
            "getRecordings",
            self.inner.get_recordings(server, meeting_ids),
        )
    }

    fn bbb_version(
        &self,
        server: &ServerEndpoint,
    ) -> LocalBoxFuture<'static, Result<Option<String>, BbbError>> {
        self.measure(server, "index", self.inner.bbb_version(server))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_host_and_port_only() {
        assert_eq!(
            server_label("https://bbb1.example.org/bigbluebutton"),
            "bbb1.example.org:443"
        );
        assert_eq!(
            server_label("http://127.0.0.1:8090/bigbluebutton"),
            "127.0.0.1:8090"
        );
        assert_eq!(server_label("nonsense"), "unknown");
    }
}
