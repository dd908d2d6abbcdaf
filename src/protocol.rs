//! The venueless/eventyay WebSocket frame format: parsing client frames into typed requests and
//! building `success` / `error` replies with the id-echo rules of PROTOCOL.md.

use serde_json::{json, Map, Value};

/// Largest accepted text frame; bigger frames close the connection with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Error codes sent to clients. The strings are the protocol; never rename them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidMessage,
    Unauthenticated,
    UnknownCommand,
    /// Over a rate or in-flight limit: the request was not processed.
    RateLimited,
    Denied,
    WorldUnknown,
    AuthMissingIdOrToken,
    AuthInvalidToken,
    AuthExpiredToken,
    AuthDenied,
    AuthMissingToken,
    BbbUnsupportedCommand,
    BbbMissingProfile,
    BbbFailed,
    RoomUnknown,
    UserInvalidProfile,
    ServerError,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidMessage => "protocol.invalid_message",
            ErrorCode::Unauthenticated => "protocol.unauthenticated",
            ErrorCode::UnknownCommand => "protocol.unknown_command",
            ErrorCode::RateLimited => "protocol.rate_limited",
            ErrorCode::Denied => "protocol.denied",
            ErrorCode::WorldUnknown => "world.unknown_world",
            ErrorCode::AuthMissingIdOrToken => "auth.missing_id_or_token",
            ErrorCode::AuthInvalidToken => "auth.invalid_token",
            ErrorCode::AuthExpiredToken => "auth.expired_token",
            ErrorCode::AuthDenied => "auth.denied",
            ErrorCode::AuthMissingToken => "auth.missing_token",
            ErrorCode::BbbUnsupportedCommand => "bbb.unsupported_command",
            ErrorCode::BbbMissingProfile => "bbb.join.missing_profile",
            ErrorCode::BbbFailed => "bbb.failed",
            ErrorCode::RoomUnknown => "room.unknown",
            ErrorCode::UserInvalidProfile => "user.invalid_profile",
            ErrorCode::ServerError => "server.error",
        }
    }
}

/// An error answer: a code plus an optional human-readable message (never secrets or SQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: Option<String>,
}

impl ErrorReply {
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            message: None,
        }
    }
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: Some(message.into()),
        }
    }
    fn payload(&self) -> Value {
        let mut m = Map::new();
        m.insert("code".into(), Value::from(self.code.as_str()));
        if let Some(msg) = &self.message {
            m.insert("message".into(), Value::from(msg.as_str()));
        }
        Value::Object(m)
    }
}

impl From<ErrorCode> for ErrorReply {
    fn from(code: ErrorCode) -> Self {
        ErrorReply::new(code)
    }
}

/// A parsed client frame: `[action, id, payload]` or `[action, payload]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub action: String,
    /// `Some` when the frame had three elements; echoed in the reply.
    pub id: Option<Value>,
    pub payload: Value,
}

impl Request {
    /// The namespace before the first dot (`bbb` of `bbb.room_url`), or the whole action.
    pub fn namespace(&self) -> &str {
        self.action.split('.').next().unwrap_or("")
    }

    /// A string field of the payload.
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.payload.get(name).and_then(Value::as_str)
    }
}

/// A frame that is not a well-formed request: the `message` of the `protocol.invalid_message`
/// reply, and the id to echo in it.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidFrame {
    /// The frame's second element when the frame is an array and that element is a number or
    /// a string: clients match replies by id, so even a malformed request gets its id back.
    pub id: Option<Value>,
    pub message: &'static str,
}

impl InvalidFrame {
    /// The `protocol.invalid_message` error frame for it.
    pub fn error_frame(&self) -> String {
        error_frame(
            self.id.as_ref(),
            &ErrorReply::with_message(ErrorCode::InvalidMessage, self.message),
        )
    }
}

/// Parses one text frame. A `null` payload becomes `{}` (clients send `[action, id, null]` for
/// requests without data); `ping` keeps whatever it carries.
pub fn parse_frame(text: &str) -> Result<Request, InvalidFrame> {
    let invalid = |id: Option<Value>, message| InvalidFrame { id, message };
    let value: Value =
        serde_json::from_str(text).map_err(|_| invalid(None, "frame is not valid JSON"))?;
    let Value::Array(mut items) = value else {
        return Err(invalid(None, "frame is not a JSON array"));
    };
    let echo = items
        .get(1)
        .filter(|v| v.is_number() || v.is_string())
        .cloned();
    let (action, id, payload) = match items.len() {
        2 => {
            let payload = items.pop().unwrap_or(Value::Null);
            let action = items.pop().unwrap_or(Value::Null);
            (action, None, payload)
        }
        3 => {
            let payload = items.pop().unwrap_or(Value::Null);
            let id = items.pop().unwrap_or(Value::Null);
            let action = items.pop().unwrap_or(Value::Null);
            (action, Some(id), payload)
        }
        _ => return Err(invalid(echo, "frame must have two or three elements")),
    };
    let Value::String(action) = action else {
        return Err(invalid(echo, "action must be a string"));
    };
    if let Some(id) = &id {
        if !(id.is_number() || id.is_string()) {
            return Err(invalid(None, "request id must be a number or a string"));
        }
    }
    // `ping` carries any value; every other action carries an object (or null for none).
    let payload = match payload {
        Value::Null if action != "ping" => Value::Object(Map::new()),
        p if action == "ping" || p.is_object() => p,
        _ => return Err(invalid(echo, "payload must be a JSON object")),
    };
    Ok(Request {
        action,
        id,
        payload,
    })
}

/// `["success", id, payload]` or `["success", payload]`.
pub fn success_frame(id: Option<&Value>, payload: Value) -> String {
    frame("success", id, payload)
}

/// `["success", id, {"url": url}]`, the reply to every join, written straight from the URL
/// (no JSON value tree on the hot path). Same bytes as [`success_frame`].
pub fn url_success_frame(id: Option<&Value>, url: &str) -> String {
    #[derive(serde::Serialize)]
    struct UrlPayload<'a> {
        url: &'a str,
    }
    let payload = UrlPayload { url };
    // Sized once for the whole frame: a join URL is several hundred bytes.
    let mut out = Vec::with_capacity(url.len() + 48);
    let written = match id {
        Some(id) => serde_json::to_writer(&mut out, &("success", id, payload)),
        None => serde_json::to_writer(&mut out, &("success", payload)),
    };
    // Serialising a string and a parsed JSON value cannot fail, and the output is UTF-8; keep
    // the general path anyway.
    written
        .ok()
        .and_then(|()| String::from_utf8(out).ok())
        .unwrap_or_else(|| success_frame(id, json!({ "url": url })))
}

/// `["error", id, {"code", "message"?}]` or `["error", {...}]`.
pub fn error_frame(id: Option<&Value>, err: &ErrorReply) -> String {
    frame("error", id, err.payload())
}

fn frame(kind: &str, id: Option<&Value>, payload: Value) -> String {
    match id {
        Some(id) => json!([kind, id, payload]).to_string(),
        None => json!([kind, payload]).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_three_and_two_element_frames() {
        let r = parse_frame(r#"["bbb.room_url", 1234, {"room": "r"}]"#).unwrap();
        assert_eq!(r.action, "bbb.room_url");
        assert_eq!(r.id, Some(json!(1234)));
        assert_eq!(r.str_field("room"), Some("r"));
        assert_eq!(r.namespace(), "bbb");
        let r = parse_frame(r#"["authenticate", {"token": "x"}]"#).unwrap();
        assert_eq!(r.id, None);
        let r = parse_frame(r#"["ping", "abc"]"#).unwrap();
        assert_eq!(r.payload, json!("abc"));
    }

    #[test]
    fn url_frames_match_the_general_builder() {
        let url = "https://b/bigbluebutton/api/join?fullName=A+%22q%22&checksum=ab\u{1F600}";
        for id in [
            None,
            Some(json!(7)),
            Some(json!("x\"y")),
            Some(json!({"a": [1]})),
        ] {
            assert_eq!(
                url_success_frame(id.as_ref(), url),
                success_frame(id.as_ref(), json!({ "url": url }))
            );
        }
    }

    #[test]
    fn rejects_malformed_frames() {
        for bad in [
            "",
            "not json",
            "{}",
            "[]",
            "[\"a\"]",
            "[1, {}]",
            "[\"a\", 1, 2, 3]",
            "[\"a\", 1, []]",
            "[\"a\", {}, {}]",
            "[\"a\", \"x\"]",
            "[null, 1, {}]",
        ] {
            assert!(parse_frame(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn null_payloads_are_empty_objects() {
        let r = parse_frame(r#"["room.enter", 3, null]"#).unwrap();
        assert_eq!((r.id, r.payload), (Some(json!(3)), json!({})));
        let r = parse_frame(r#"["bbb.room_url", null]"#).unwrap();
        assert_eq!((r.id, r.payload), (None, json!({})));
        let r = parse_frame(r#"["ping", null]"#).unwrap();
        assert_eq!(r.payload, Value::Null);
    }

    #[test]
    fn invalid_frames_echo_a_number_or_string_second_element() {
        for (frame, id) in [
            (r#"["a", 1, []]"#, Some(json!(1))),
            (r#"["a", "x7", 5]"#, Some(json!("x7"))),
            (r#"[null, 2.5, {}]"#, Some(json!(2.5))),
            (r#"["a", 4, {}, 1]"#, Some(json!(4))),
            (r#"["a", "x"]"#, Some(json!("x"))),
            (r#"["a", {}, {}]"#, None),
            (r#"["a", null, {}]"#, None),
            (r#"[1]"#, None),
            (r#"{"a": 1}"#, None),
            ("not json", None),
        ] {
            let e = parse_frame(frame).unwrap_err();
            assert_eq!(e.id, id, "{frame}");
            let reply: Value = serde_json::from_str(&e.error_frame()).unwrap();
            match &id {
                Some(id) => assert_eq!(&reply[1], id, "{frame}"),
                None => assert_eq!(reply.as_array().map(Vec::len), Some(2), "{frame}"),
            }
            assert_eq!(
                reply[reply.as_array().unwrap().len() - 1]["code"],
                "protocol.invalid_message"
            );
        }
    }

    #[test]
    fn replies_echo_the_id_only_when_given() {
        let id = json!(7);
        assert_eq!(success_frame(Some(&id), json!({})), r#"["success",7,{}]"#);
        assert_eq!(
            success_frame(None, json!({"a": 1})),
            r#"["success",{"a":1}]"#
        );
        assert_eq!(
            error_frame(Some(&json!("x")), &ErrorCode::RoomUnknown.into()),
            r#"["error","x",{"code":"room.unknown"}]"#
        );
        assert_eq!(
            error_frame(
                None,
                &ErrorReply::with_message(ErrorCode::InvalidMessage, "m")
            ),
            r#"["error",{"code":"protocol.invalid_message","message":"m"}]"#
        );
    }
}
