//! The awc-based [`BbbApi`] implementation. One shared `awc::Client` keeps connections to each
//! BBB server alive between polls; every request carries the configured timeouts and a body size
//! cap, so a slow or hostile server cannot stall or exhaust the gateway.

use std::time::Duration;

use awc::error::{ConnectError, PayloadError, SendRequestError};
use awc::http::StatusCode;
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use super::checksum::signed_query;
use super::types::{
    BbbApi, BbbError, CreateMeeting, CreateResponse, MeetingInfo, Recording, ServerEndpoint,
};
use super::xml;

/// Limits applied to every BBB request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BbbClientConfig {
    /// TCP + TLS connect limit (a dead host must fail fast).
    pub connect_timeout: Duration,
    /// Whole request limit: sending, waiting for headers and reading the body.
    pub request_timeout: Duration,
    /// Largest reply accepted; a bigger one is [`BbbError::BodyTooLarge`].
    pub max_body_bytes: usize,
}

impl Default for BbbClientConfig {
    /// Scalelite's poller limits (connect 5 s, response 10 s) and 8 MiB for large getMeetings.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 8 * 1024 * 1024,
        }
    }
}

/// BBB API client over one shared awc client. `!Send` (like awc): use it on one arbiter.
#[derive(Clone)]
pub struct AwcBbbClient {
    client: awc::Client,
    config: BbbClientConfig,
}

impl AwcBbbClient {
    /// Builds the shared client; must be called inside an actix/tokio runtime thread.
    pub fn new(config: BbbClientConfig) -> Self {
        let connector = awc::Connector::new().timeout(config.connect_timeout);
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(config.request_timeout)
            .disable_redirects()
            .finish();
        Self { client, config }
    }

    /// The limits this client applies.
    pub fn config(&self) -> BbbClientConfig {
        self.config
    }

    /// Sends one signed call and returns the body of a 200 reply.
    fn call(
        &self,
        server: &ServerEndpoint,
        call: &'static str,
        params: Vec<(String, String)>,
        post_body: Option<String>,
    ) -> LocalBoxFuture<'static, Result<Vec<u8>, BbbError>> {
        let query = signed_query(server, call, &params);
        let url = format!("{}/api/{call}?{query}", server.base_url);
        let client = self.client.clone();
        let config = self.config;
        let secret = server.secret.clone();
        async move {
            let fut = send(client, config, url, post_body);
            let result = match tokio::time::timeout(config.request_timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(BbbError::Timeout),
            };
            result.map_err(|e| scrub(e, &query, secret.expose()))
        }
        .boxed_local()
    }
}

/// Removes the query (with its checksum) and the secret from an error message, whatever the
/// underlying library chose to print.
fn scrub(err: BbbError, query: &str, secret: &str) -> BbbError {
    let clean = |s: String| {
        let mut s = s.replace(query, "…");
        if !secret.is_empty() {
            s = s.replace(secret, "***");
        }
        s
    };
    match err {
        BbbError::Connect(m) => BbbError::Connect(clean(m)),
        BbbError::InvalidXml(m) => BbbError::InvalidXml(clean(m)),
        BbbError::Failed {
            message_key,
            message,
        } => BbbError::Failed {
            message_key: clean(message_key),
            message: clean(message),
        },
        other => other,
    }
}

fn map_send_error(e: SendRequestError) -> BbbError {
    match e {
        SendRequestError::Timeout => BbbError::Timeout,
        SendRequestError::Connect(ConnectError::Timeout) => {
            BbbError::Connect("connect timed out".into())
        }
        SendRequestError::Connect(c) => BbbError::Connect(c.to_string()),
        SendRequestError::Url(_) => BbbError::Connect("invalid server URL".into()),
        SendRequestError::Send(io) => BbbError::Connect(format!("sending failed: {io}")),
        SendRequestError::Response(p) => BbbError::Connect(format!("bad HTTP response: {p}")),
        other => BbbError::Connect(format!("request failed: {other}")),
    }
}

async fn send(
    client: awc::Client,
    config: BbbClientConfig,
    url: String,
    post_body: Option<String>,
) -> Result<Vec<u8>, BbbError> {
    let sent = match post_body {
        None => {
            client
                .get(&url)
                .timeout(config.request_timeout)
                .send()
                .await
        }
        Some(body) => {
            client
                .post(&url)
                .timeout(config.request_timeout)
                .insert_header(("Content-Type", "application/xml"))
                .send_body(body)
                .await
        }
    };
    let mut resp = sent.map_err(map_send_error)?;
    if resp.status() != StatusCode::OK {
        return Err(BbbError::Status(resp.status().as_u16()));
    }
    let body = resp
        .body()
        .limit(config.max_body_bytes)
        .await
        .map_err(|e| match e {
            PayloadError::Overflow => BbbError::BodyTooLarge,
            other => BbbError::Connect(format!("reading the reply failed: {other}")),
        })?;
    Ok(body.to_vec())
}

/// The `create` POST body that preloads one presentation.
pub fn presentation_body(url: &str) -> String {
    format!(
        "<modules><module name=\"presentation\"><document url=\"{}\"/></module></modules>",
        quick_xml::escape::escape(url)
    )
}

/// The `create` parameters in the order they are signed and sent.
pub fn create_params(meeting: &CreateMeeting) -> Vec<(String, String)> {
    let mut params = vec![
        ("name".to_string(), meeting.name.clone()),
        ("meetingID".to_string(), meeting.meeting_id.clone()),
    ];
    if !meeting.attendee_pw.is_empty() {
        params.push(("attendeePW".into(), meeting.attendee_pw.clone()));
    }
    if !meeting.moderator_pw.is_empty() {
        params.push(("moderatorPW".into(), meeting.moderator_pw.clone()));
    }
    params.extend(meeting.extra.iter().cloned());
    params
}

fn meeting_param(meeting_id: &str) -> Vec<(String, String)> {
    vec![("meetingID".to_string(), meeting_id.to_string())]
}

impl BbbApi for AwcBbbClient {
    fn create(
        &self,
        server: &ServerEndpoint,
        meeting: &CreateMeeting,
    ) -> LocalBoxFuture<'static, Result<CreateResponse, BbbError>> {
        let body = meeting.presentation_url.as_deref().map(presentation_body);
        let fut = self.call(server, "create", create_params(meeting), body);
        async move { xml::parse_create(&fut.await?) }.boxed_local()
    }

    fn get_meetings(
        &self,
        server: &ServerEndpoint,
    ) -> LocalBoxFuture<'static, Result<Vec<MeetingInfo>, BbbError>> {
        let fut = self.call(server, "getMeetings", Vec::new(), None);
        async move { xml::parse_meetings(&fut.await?) }.boxed_local()
    }

    fn get_meeting_info(
        &self,
        server: &ServerEndpoint,
        meeting_id: &str,
    ) -> LocalBoxFuture<'static, Result<Option<MeetingInfo>, BbbError>> {
        let fut = self.call(server, "getMeetingInfo", meeting_param(meeting_id), None);
        async move {
            match xml::parse_meeting_info(&fut.await?) {
                Ok(m) => Ok(Some(m)),
                Err(BbbError::Failed { message_key, .. }) if message_key == "notFound" => Ok(None),
                Err(e) => Err(e),
            }
        }
        .boxed_local()
    }

    fn is_meeting_running(
        &self,
        server: &ServerEndpoint,
        meeting_id: &str,
    ) -> LocalBoxFuture<'static, Result<bool, BbbError>> {
        let fut = self.call(server, "isMeetingRunning", meeting_param(meeting_id), None);
        async move { xml::parse_running(&fut.await?) }.boxed_local()
    }

    fn end(
        &self,
        server: &ServerEndpoint,
        meeting_id: &str,
    ) -> LocalBoxFuture<'static, Result<(), BbbError>> {
        let fut = self.call(server, "end", meeting_param(meeting_id), None);
        async move {
            match xml::parse_end(&fut.await?) {
                Err(BbbError::Failed { message_key, .. }) if message_key == "notFound" => Ok(()),
                other => other,
            }
        }
        .boxed_local()
    }

    fn get_recordings(
        &self,
        server: &ServerEndpoint,
        meeting_ids: &[String],
    ) -> LocalBoxFuture<'static, Result<Vec<Recording>, BbbError>> {
        let params = vec![
            ("meetingID".to_string(), meeting_ids.join(",")),
            ("state".to_string(), "any".to_string()),
        ];
        let fut = self.call(server, "getRecordings", params, None);
        async move { xml::parse_recordings(&fut.await?) }.boxed_local()
    }

    fn bbb_version(
        &self,
        server: &ServerEndpoint,
    ) -> LocalBoxFuture<'static, Result<Option<String>, BbbError>> {
        // The index is the one call BBB answers without a checksum.
        let url = format!("{}/api/", server.base_url);
        let client = self.client.clone();
        let config = self.config;
        async move {
            let body =
                tokio::time::timeout(config.request_timeout, send(client, config, url, None))
                    .await
                    .unwrap_or(Err(BbbError::Timeout))?;
            xml::parse_version(&body)
        }
        .boxed_local()
    }
}

#[cfg(test)]
mod tests {
    use super::super::checksum::build_query;
    use super::*;

    #[test]
    fn presentation_body_is_escaped() {
        assert_eq!(
            presentation_body("https://x/a.pdf?a=1&b=\"2\""),
            "<modules><module name=\"presentation\"><document url=\"https://x/a.pdf?a=1&amp;b=&quot;2&quot;\"/></module></modules>"
        );
    }

    #[test]
    fn create_params_order() {
        let m = CreateMeeting {
            meeting_id: "m".into(),
            name: "N".into(),
            attendee_pw: "ap".into(),
            moderator_pw: "mp".into(),
            extra: vec![("record".into(), "true".into())],
            presentation_url: None,
        };
        assert_eq!(
            build_query(&create_params(&m)),
            "name=N&meetingID=m&attendeePW=ap&moderatorPW=mp&record=true"
        );
    }

    #[test]
    fn scrub_removes_query_and_secret() {
        let e = scrub(
            BbbError::Connect("GET /api/x?meetingID=a&checksum=abc failed with s3cret".into()),
            "meetingID=a&checksum=abc",
            "s3cret",
        );
        let msg = e.to_string();
        assert!(
            !msg.contains("checksum=abc") && !msg.contains("s3cret"),
            "{msg}"
        );
    }

    /// The connector has TLS roots and a crypto provider: without one, building it panics.
    #[actix_rt::test]
    async fn client_builds_with_tls() {
        let config = BbbClientConfig::default();
        assert_eq!(AwcBbbClient::new(config).config(), config);
    }

    /// An `https://` server is spoken to over TLS: the first bytes on the wire are a TLS
    /// handshake record, not an "SSL is not supported" error before connecting.
    #[actix_rt::test]
    async fn https_servers_get_a_tls_handshake() {
        use tokio::io::AsyncReadExt;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let first_bytes = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut head = [0u8; 3];
            socket.read_exact(&mut head).await.expect("read");
            head
        });
        let client = AwcBbbClient::new(BbbClientConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 1024,
        });
        let server = ServerEndpoint {
            base_url: format!("https://127.0.0.1:{port}/bigbluebutton"),
            secret: crate::Secret::new("s"),
            algorithm: crate::ChecksumAlgorithm::Sha256,
        };
        let result = client.get_meetings(&server).await;
        let head = tokio::time::timeout(Duration::from_secs(10), first_bytes)
            .await
            .expect("the client connected")
            .expect("the listener task");
        // 0x16: handshake record; 0x03 0x01..0x03: TLS record version.
        assert_eq!(head[0], 0x16, "not a TLS record: {head:?}");
        assert_eq!(head[1], 0x03, "not a TLS record: {head:?}");
        // The listener is no TLS server, so the handshake itself fails.
        assert!(matches!(result, Err(BbbError::Connect(_))), "{result:?}");
    }
}
