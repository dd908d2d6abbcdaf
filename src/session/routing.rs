//! Where a parsed request goes, decided without any I/O so every frame rule of PROTOCOL.md is
//! unit-testable.

use super::rooms::Presence;
use crate::protocol::{ErrorCode, Request};

/// What the session does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Pong,
    Authenticate,
    UserUpdate,
    /// `room.enter` / `room.leave`: checks only, see [`rooms`](super::rooms).
    RoomPresence(Presence),
    RoomUrl,
    CallUrl,
    Recordings,
    Reject(ErrorCode),
}

/// Routes `req` for a session that is (or is not yet) authenticated.
pub fn route(req: &Request, authenticated: bool) -> Route {
    match req.action.as_str() {
        "ping" => return Route::Pong,
        "authenticate" => return Route::Authenticate,
        _ => {}
    }
    if !authenticated {
        return Route::Reject(ErrorCode::Unauthenticated);
    }
    match (req.namespace(), req.action.as_str()) {
        (_, "user.update") => Route::UserUpdate,
        (_, "room.enter") => Route::RoomPresence(Presence::Enter),
        (_, "room.leave") => Route::RoomPresence(Presence::Leave),
        (_, "bbb.room_url") => Route::RoomUrl,
        (_, "bbb.call_url") => Route::CallUrl,
        (_, "bbb.recordings") => Route::Recordings,
        ("bbb", _) => Route::Reject(ErrorCode::BbbUnsupportedCommand),
        _ => Route::Reject(ErrorCode::UnknownCommand),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_frame;

    fn r(frame: &str, auth: bool) -> Route {
        route(&parse_frame(frame).unwrap(), auth)
    }

    #[test]
    fn ping_and_authenticate_work_before_auth() {
        assert_eq!(r(r#"["ping", 1]"#, false), Route::Pong);
        assert_eq!(r(r#"["authenticate", {}]"#, false), Route::Authenticate);
        assert_eq!(r(r#"["authenticate", {}]"#, true), Route::Authenticate);
    }

    #[test]
    fn everything_else_needs_auth() {
        for f in [
            r#"["bbb.room_url", 1, {"room": "r"}]"#,
            r#"["user.update", 1, {}]"#,
            r#"["room.enter", 1, {"room": "r"}]"#,
            r#"["foo.bar", 1, {}]"#,
        ] {
            assert_eq!(
                r(f, false),
                Route::Reject(ErrorCode::Unauthenticated),
                "{f}"
            );
        }
    }

    #[test]
    fn commands_after_auth() {
        assert_eq!(r(r#"["bbb.room_url", 1, {}]"#, true), Route::RoomUrl);
        assert_eq!(r(r#"["bbb.call_url", 1, {}]"#, true), Route::CallUrl);
        assert_eq!(r(r#"["bbb.recordings", 1, {}]"#, true), Route::Recordings);
        assert_eq!(r(r#"["user.update", 1, {}]"#, true), Route::UserUpdate);
        assert_eq!(
            r(r#"["room.enter", 1, {}]"#, true),
            Route::RoomPresence(Presence::Enter)
        );
        assert_eq!(
            r(r#"["room.leave", 1, null]"#, true),
            Route::RoomPresence(Presence::Leave)
        );
        assert_eq!(
            r(r#"["room.react", 1, {}]"#, true),
            Route::Reject(ErrorCode::UnknownCommand)
        );
        assert_eq!(
            r(r#"["bbb.bla", 1, {}]"#, true),
            Route::Reject(ErrorCode::BbbUnsupportedCommand)
        );
        assert_eq!(
            r(r#"["foo.bar", 1, {}]"#, true),
            Route::Reject(ErrorCode::UnknownCommand)
        );
        assert_eq!(
            r(r#"["nodot", 1, {}]"#, true),
            Route::Reject(ErrorCode::UnknownCommand)
        );
    }
}
