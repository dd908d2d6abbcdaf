//! BBB API calls with BBB's semantics, as pure functions over [`SimState`] so they are easy to
//! test; the HTTP layer in `server.rs` checks checksums and faults first.

use std::time::{Duration, Instant};

use rand::Rng;
use sha1::{Digest, Sha1};

use super::state::{Attendee, Session, SimMeeting, SimState};
use super::xml_out::{failed, XmlOut};

/// Query parameters, decoded, in order.
pub(crate) type Params = Vec<(String, String)>;

/// What the HTTP layer should send.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    Xml(String),
    /// 302 to this location.
    Redirect(String),
}

/// Inputs that do not come from the query.
pub(crate) struct Ctx<'a> {
    pub now: Instant,
    pub now_ms: i64,
    /// BBB minutes are divided by this.
    pub time_scale: f64,
    /// `http://host:port`, for join redirects.
    pub origin: &'a str,
}

impl Ctx<'_> {
    fn minutes(&self, m: f64) -> Duration {
        Duration::try_from_secs_f64((m * 60.0 / self.time_scale).max(0.0)).unwrap_or(Duration::MAX)
    }
}

fn get<'a>(p: &'a Params, key: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn nonempty<'a>(p: &'a Params, key: &str) -> Option<&'a str> {
    get(p, key).map(str::trim).filter(|s| !s.is_empty())
}

fn random_token(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

const NOT_FOUND_MSG: &str =
    "We could not find a meeting with that meeting ID - perhaps the meeting is not yet running?";

/// BBB's meetingID rules; `Err` is a complete FAILED reply.
fn check_meeting_id(p: &Params) -> Result<&str, String> {
    let Some(id) = nonempty(p, "meetingID") else {
        return Err(failed(
            "missingParamMeetingID",
            "You must specify a meeting ID for the meeting.",
        ));
    };
    let len = id.chars().count();
    if !(2..=256).contains(&len) {
        return Err(failed(
            "sizeError",
            "Meeting ID must be between 2 and 256 characters",
        ));
    }
    if id.contains(',') {
        return Err(failed(
            "invalidMeetingIdentifier",
            "Meeting ID cannot contain ','",
        ));
    }
    Ok(id)
}

/// Dispatches one API call (checksum already verified). `None`: unknown call.
pub(crate) fn handle(state: &mut SimState, ctx: &Ctx, call: &str, p: &Params) -> Option<Reply> {
    state.purge_expired(ctx.now);
    let xml = match call {
        "create" => create(state, ctx, p),
        "join" => return Some(join(state, ctx, p)),
        "isMeetingRunning" => is_running(state, p),
        "getMeetingInfo" => meeting_info(state, p),
        "getMeetings" => meetings(state),
        "end" => end(state, p),
        "getRecordings" => recordings(state, p),
        _ => return None,
    };
    Some(Reply::Xml(xml))
}

fn create(state: &mut SimState, ctx: &Ctx, p: &Params) -> String {
    let id = match check_meeting_id(p) {
        Ok(id) => id.to_string(),
        Err(e) => return e,
    };
    let Some(name) = nonempty(p, "name") else {
        return failed(
            "missingParamName",
            "You must specify a name for the meeting.",
        );
    };
    if let Some(existing) = state.meetings.get(&id) {
        let pw_differs = |key: &str, have: &str| get(p, key).is_some_and(|v| v != have);
        if pw_differs("attendeePW", &existing.attendee_pw)
            || pw_differs("moderatorPW", &existing.moderator_pw)
        {
            return failed(
                "idNotUnique",
                "A meeting already exists with that meeting ID.  Please use a different meeting ID.",
            );
        }
        return create_reply(
            existing,
            "duplicateWarning",
            "This conference was already in existence and may currently be in progress.",
        );
    }
    let voice_bridge = match nonempty(p, "voiceBridge") {
        Some(vb) => {
            if state.meetings.values().any(|m| m.voice_bridge == vb) {
                return failed(
                    "nonUniqueVoiceBridge",
                    "The selected voice bridge is already in use.",
                );
            }
            vb.to_string()
        }
        None => loop {
            let vb = rand::thread_rng().gen_range(10000..100000).to_string();
            if !state.meetings.values().any(|m| m.voice_bridge == vb) {
                break vb;
            }
        },
    };
    let minutes = |key: &str, default: f64| {
        get(p, key)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .unwrap_or(default)
    };
    let meeting = SimMeeting {
        internal_id: format!(
            "{}-{}",
            hex::encode(Sha1::digest(id.as_bytes())),
            ctx.now_ms
        ),
        meeting_id: id.clone(),
        name: name.to_string(),
        attendee_pw: get(p, "attendeePW").map_or_else(|| random_token(8), str::to_string),
        moderator_pw: get(p, "moderatorPW").map_or_else(|| random_token(8), str::to_string),
        create_time: ctx.now_ms,
        created_at: ctx.now,
        voice_bridge,
        max_participants: get(p, "maxParticipants")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        guest_policy: get(p, "guestPolicy").unwrap_or("ALWAYS_ACCEPT").to_string(),
        record: get(p, "record") == Some("true"),
        metadata: p
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("meta_").map(|k| (k.to_string(), v.clone())))
            .collect(),
        expire_no_join: ctx.minutes(minutes("meetingExpireIfNoUserJoinedInMinutes", 5.0)),
        expire_last_left: ctx.minutes(minutes("meetingExpireWhenLastUserLeftInMinutes", 1.0)),
        has_user_joined: false,
        last_left: None,
        participants: 0,
        moderators: 0,
        listeners: 0,
        voice: 0,
        video: 0,
        attendees: Vec::new(),
    };
    let reply = create_reply(&meeting, "", "");
    state.meetings.insert(id, meeting);
    reply
}

fn create_reply(m: &SimMeeting, key: &str, message: &str) -> String {
    let mut x = XmlOut::response("SUCCESS");
    x.el("meetingID", &m.meeting_id)
        .el("internalMeetingID", &m.internal_id)
        .el("parentMeetingID", "bbb-none")
        .el("attendeePW", &m.attendee_pw)
        .el("moderatorPW", &m.moderator_pw)
        .el("createTime", m.create_time.to_string())
        .el("voiceBridge", &m.voice_bridge)
        .el("dialNumber", "613-555-1234")
        .el("createDate", create_date(m.create_time))
        .el("hasUserJoined", m.has_user_joined.to_string())
        .el("duration", "0")
        .el("hasBeenForciblyEnded", "false")
        .el("messageKey", key)
        .el("message", message);
    x.finish()
}

fn create_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%a %b %d %H:%M:%S UTC %Y").to_string())
        .unwrap_or_default()
}

fn join(state: &mut SimState, ctx: &Ctx, p: &Params) -> Reply {
    let redirect = get(p, "redirect").is_none_or(|v| !v.eq_ignore_ascii_case("false"));
    let fail = |key: &str, msg: &str| match get(p, "errorRedirectUrl") {
        Some(url) if redirect && !url.is_empty() => Reply::Redirect(url.to_string()),
        _ => Reply::Xml(failed(key, msg)),
    };
    let Some(full_name) = nonempty(p, "fullName") else {
        return fail(
            "missingParamFullName",
            "You must specify a name for the attendee who will be joining the meeting.",
        );
    };
    let id = match check_meeting_id(p) {
        Ok(id) => id,
        Err(e) => return Reply::Xml(e),
    };
    let Some(m) = state.meetings.get_mut(id) else {
        return fail(
            "invalidMeetingIdentifier",
            "The meeting ID that you supplied did not match any existing meetings",
        );
    };
    let bad_password = || {
        fail(
            "invalidPassword",
            "You either did not supply a password or the password supplied is neither the attendee or moderator password for this conference.",
        )
    };
    let by_password = match get(p, "password") {
        Some(pw) if pw == m.moderator_pw => Some(true),
        Some(pw) if pw == m.attendee_pw => Some(false),
        Some(_) => return bad_password(),
        None => None,
    };
    let by_role = match get(p, "role").map(str::to_ascii_uppercase).as_deref() {
        Some("MODERATOR") => Some(true),
        Some("VIEWER") => Some(false),
        _ => None,
    };
    let Some(moderator) = by_role.or(by_password) else {
        return bad_password();
    };
    if let Some(ct) = get(p, "createTime") {
        if ct.trim().parse::<i64>().ok() != Some(m.create_time) {
            return fail(
                "mismatchCreateTimeParam",
                "The createTime parameter submitted mismatches with the current meeting.",
            );
        }
    }
    if m.max_participants > 0 && m.participants >= m.max_participants {
        return fail(
            "maxParticipantsReached",
            "The number of participants allowed for this meeting has been reached.",
        );
    }
    let guest = get(p, "guest") == Some("true");
    let guest_status = match (guest, m.guest_policy.as_str()) {
        (true, "ALWAYS_DENY") => "DENY",
        (true, "ASK_MODERATOR") => "WAIT",
        _ => "ALLOW",
    };
    let user_id = get(p, "userID")
        .map(str::to_string)
        .unwrap_or_else(|| format!("w_{}", random_token(12).to_lowercase()));
    let token = random_token(16).to_lowercase();
    if guest_status != "DENY" {
        m.participants += 1;
        if moderator {
            m.moderators += 1;
        }
        m.has_user_joined = true;
        m.last_left = None;
        m.attendees.push(Attendee {
            user_id: user_id.clone(),
            full_name: full_name.to_string(),
            moderator,
        });
    }
    let internal_id = m.internal_id.clone();
    state.sessions.insert(
        token.clone(),
        Session {
            meeting_id: id.to_string(),
            full_name: full_name.to_string(),
            moderator,
        },
    );
    let url = format!("{}/client/join?sessionToken={token}", ctx.origin);
    if redirect {
        return Reply::Redirect(url);
    }
    let mut x = XmlOut::response("SUCCESS");
    x.el("messageKey", "successfullyJoined")
        .el("message", "You have joined successfully.")
        .el("meeting_id", internal_id)
        .el("user_id", &user_id)
        .el("auth_token", random_token(12).to_lowercase())
        .el("session_token", &token)
        .el("guestStatus", guest_status)
        .el("url", url);
    Reply::Xml(x.finish())
}

fn is_running(state: &SimState, p: &Params) -> String {
    let id = match check_meeting_id(p) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let running = state.meetings.get(id).is_some_and(SimMeeting::running);
    let mut x = XmlOut::response("SUCCESS");
    x.el("running", running.to_string());
    x.finish()
}

fn meeting_fields(x: &mut XmlOut, m: &SimMeeting) {
    x.el("meetingName", &m.name)
        .el("meetingID", &m.meeting_id)
        .el("internalMeetingID", &m.internal_id)
        .el("createTime", m.create_time.to_string())
        .el("createDate", create_date(m.create_time))
        .el("voiceBridge", &m.voice_bridge)
        .el("dialNumber", "613-555-1234")
        .el("attendeePW", &m.attendee_pw)
        .el("moderatorPW", &m.moderator_pw)
        .el("running", m.running().to_string())
        .el("duration", "0")
        .el("hasUserJoined", m.has_user_joined.to_string())
        .el("recording", (m.record && m.running()).to_string())
        .el("hasBeenForciblyEnded", "false")
        .el("startTime", m.create_time.to_string())
        .el("endTime", "0")
        .el("participantCount", m.participants.to_string())
        .el("listenerCount", m.listeners.to_string())
        .el("voiceParticipantCount", m.voice.to_string())
        .el("videoCount", m.video.to_string())
        .el("maxUsers", m.max_participants.to_string())
        .el("moderatorCount", m.moderators.to_string());
    x.open("attendees");
    for a in &m.attendees {
        let role = if a.moderator { "MODERATOR" } else { "VIEWER" };
        x.open("attendee")
            .el("userID", &a.user_id)
            .el("fullName", &a.full_name)
            .el("role", role)
            .el("isPresenter", "false")
            .el("isListeningOnly", "false")
            .el("hasJoinedVoice", "false")
            .el("hasVideo", "false")
            .el("clientType", "HTML5")
            .close("attendee");
    }
    x.close("attendees");
    metadata(x, &m.metadata);
    x.el("isBreakout", "false");
}

fn metadata(x: &mut XmlOut, meta: &[(String, String)]) {
    if meta.is_empty() {
        x.empty("metadata");
        return;
    }
    x.open("metadata");
    for (k, v) in meta {
        // Only names that are valid XML element names; BBB lowercases meta keys.
        let key: String = k
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect::<String>()
            .to_lowercase();
        if key.is_empty() || !key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            continue;
        }
        x.el(&key, v);
    }
    x.close("metadata");
}

fn meeting_info(state: &SimState, p: &Params) -> String {
    let id = match check_meeting_id(p) {
        Ok(id) => id,
        Err(e) => return e,
    };
    match state.meetings.get(id) {
        Some(m) => {
            let mut x = XmlOut::response("SUCCESS");
            meeting_fields(&mut x, m);
            x.finish()
        }
        None => failed("notFound", NOT_FOUND_MSG),
    }
}

fn meetings(state: &SimState) -> String {
    let mut x = XmlOut::response("SUCCESS");
    if state.meetings.is_empty() {
        x.empty("meetings")
            .el("messageKey", "noMeetings")
            .el("message", "no meetings were found on this server");
        return x.finish();
    }
    let mut list: Vec<&SimMeeting> = state.meetings.values().collect();
    list.sort_by(|a, b| (a.create_time, &a.meeting_id).cmp(&(b.create_time, &b.meeting_id)));
    x.open("meetings");
    for m in list {
        x.open("meeting");
        meeting_fields(&mut x, m);
        x.close("meeting");
    }
    x.close("meetings");
    x.finish()
}

fn end(state: &mut SimState, p: &Params) -> String {
    let id = match check_meeting_id(p) {
        Ok(id) => id,
        Err(e) => return e,
    };
    if !state.end_meeting(id) {
        return failed("notFound", NOT_FOUND_MSG);
    }
    let mut x = XmlOut::response("SUCCESS");
    x.el("messageKey", "sentEndMeetingRequest").el(
        "message",
        "A request to end the meeting was sent.  Please wait a few seconds, and then use the getMeetingInfo or isMeetingRunning API calls to verify that it was ended.",
    );
    x.finish()
}

fn list_param(p: &Params, key: &str) -> Vec<String> {
    get(p, key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn recordings(state: &SimState, p: &Params) -> String {
    let ids = list_param(p, "meetingID");
    let rec_ids = list_param(p, "recordID");
    let mut states = list_param(p, "state");
    if states.is_empty() {
        states = vec!["published".into(), "unpublished".into()];
    }
    let any = states.iter().any(|s| s == "any");
    let found: Vec<_> = state
        .recordings
        .iter()
        .filter(|r| ids.is_empty() || ids.contains(&r.meeting_id))
        .filter(|r| rec_ids.is_empty() || rec_ids.contains(&r.record_id))
        .filter(|r| any || states.contains(&r.state))
        .collect();
    let mut x = XmlOut::response("SUCCESS");
    if found.is_empty() {
        x.empty("recordings")
            .el("messageKey", "noRecordings")
            .el("message", "There are no recordings for the meeting(s).");
        return x.finish();
    }
    x.open("recordings");
    for r in found {
        x.open("recording")
            .el("recordID", &r.record_id)
            .el("meetingID", &r.meeting_id)
            .el("internalMeetingID", &r.internal_meeting_id)
            .el("name", &r.name)
            .el("isBreakout", "false")
            .el("published", (r.state == "published").to_string())
            .el("state", &r.state)
            .el("startTime", r.start_time.to_string())
            .el("endTime", r.end_time.to_string())
            .el("participants", r.participants.to_string());
        metadata(&mut x, &r.metadata);
        x.open("playback");
        for f in &r.formats {
            x.open("format")
                .el("type", &f.format_type)
                .el("url", &f.url);
            x.el("processingTime", "0");
            let minutes = f.length.unwrap_or_else(|| {
                u32::try_from(r.end_time.saturating_sub(r.start_time).max(0) / 60_000)
                    .unwrap_or(u32::MAX)
            });
            x.el("length", minutes.to_string());
            x.close("format");
        }
        x.close("playback").close("recording");
    }
    x.close("recordings");
    x.finish()
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
