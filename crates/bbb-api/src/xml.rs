//! Typed parsing of BBB's XML replies. A small element tree is read with quick-xml's reader and
//! then mapped by hand: BBB versions add, drop and reorder elements, so the mapping must ignore
//! unknown elements, default missing optional ones, trim whitespace and accept CDATA.
//! Depth and size are bounded so hostile bodies cannot exhaust the stack.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::types::{BbbError, CreateResponse, MeetingInfo, PlaybackFormat, Recording};

/// Deeper documents are refused; BBB replies nest at most ~6 levels.
const MAX_DEPTH: usize = 32;

/// One XML element: its local name, concatenated text (trimmed) and child elements.
#[derive(Debug, Default, Clone)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// First child with this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this name, in order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Trimmed text of the first child with this name, if present.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    fn string(&self, name: &str) -> String {
        self.text_of(name).unwrap_or_default().to_string()
    }

    fn opt_string(&self, name: &str) -> Option<String> {
        self.text_of(name)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    fn bool(&self, name: &str) -> Result<bool, BbbError> {
        match self.text_of(name) {
            None | Some("") => Ok(false),
            Some(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            Some(s) => Err(invalid(format!("<{name}> is not a boolean: {}", clip(s)))),
        }
    }

    fn num<T: std::str::FromStr + Default>(&self, name: &str) -> Result<T, BbbError> {
        match self.text_of(name) {
            None | Some("") => Ok(T::default()),
            Some(s) => s
                .parse()
                .map_err(|_| invalid(format!("<{name}> is not a number: {}", clip(s)))),
        }
    }

    fn opt_num<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, BbbError> {
        match self.text_of(name) {
            None | Some("") => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| invalid(format!("<{name}> is not a number: {}", clip(s)))),
        }
    }
}

fn invalid(msg: impl Into<String>) -> BbbError {
    BbbError::InvalidXml(msg.into())
}

/// Bounds reply text quoted in error messages.
fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Parses a document into its root element. Anything that is not well-formed XML with exactly
/// one root element is [`BbbError::InvalidXml`].
pub fn parse_document(body: &[u8]) -> Result<Element, BbbError> {
    let text = std::str::from_utf8(body).map_err(|_| invalid("reply is not UTF-8"))?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| invalid(format!("malformed XML: {e}")))?;
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(invalid("content after the root element"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(invalid("XML nested too deeply"));
                }
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                stack.push(Element {
                    name,
                    ..Element::default()
                });
            }
            Event::Empty(start) => {
                let el = Element {
                    name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    ..Element::default()
                };
                attach(&mut stack, &mut root, el)?;
            }
            Event::End(_) => {
                let mut el = stack.pop().ok_or_else(|| invalid("unexpected end tag"))?;
                el.text = el.text.trim().to_string();
                attach(&mut stack, &mut root, el)?;
            }
            Event::Text(t) => {
                let s = t
                    .unescape()
                    .map_err(|e| invalid(format!("bad text: {e}")))?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(invalid("text outside the root element")),
                }
            }
            Event::CData(c) => {
                let s = std::str::from_utf8(&c).map_err(|_| invalid("CDATA is not UTF-8"))?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(s),
                    None => return Err(invalid("CDATA outside the root element")),
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(invalid("unexpected end of document"));
    }
    root.ok_or_else(|| invalid("empty document"))
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) -> Result<(), BbbError> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None if root.is_none() => *root = Some(el),
        None => return Err(invalid("more than one root element")),
    }
    Ok(())
}

/// Parses a `<response>` and checks `returncode`: FAILED becomes [`BbbError::Failed`], SUCCESS
/// returns the `<response>` element.
pub fn parse_response(body: &[u8]) -> Result<Element, BbbError> {
    let root = parse_document(body)?;
    if root.name != "response" {
        return Err(invalid(format!(
            "root element is <{}>, not <response>",
            clip(&root.name)
        )));
    }
    match root.text_of("returncode") {
        Some("SUCCESS") => Ok(root),
        Some("FAILED") => Err(BbbError::Failed {
            message_key: root.string("messageKey"),
            message: root.string("message"),
        }),
        Some(other) => Err(invalid(format!("unknown returncode {}", clip(other)))),
        None => Err(invalid("reply has no <returncode>")),
    }
}

/// The API index (`GET {base}/api/`): its `bbbVersion`, when present and not empty.
pub fn parse_version(body: &[u8]) -> Result<Option<String>, BbbError> {
    let r = parse_response(body)?;
    Ok(r.opt_string("bbbVersion").filter(|v| !v.trim().is_empty()))
}

fn message_key(root: &Element) -> &str {
    root.text_of("messageKey").unwrap_or_default()
}

/// `create` reply; `duplicate` is set for `duplicateWarning`.
pub fn parse_create(body: &[u8]) -> Result<CreateResponse, BbbError> {
    let r = parse_response(body)?;
    Ok(CreateResponse {
        meeting_id: r.string("meetingID"),
        internal_meeting_id: r.string("internalMeetingID"),
        attendee_pw: r.opt_string("attendeePW"),
        moderator_pw: r.opt_string("moderatorPW"),
        create_time: r.num("createTime")?,
        voice_bridge: r.opt_string("voiceBridge"),
        duplicate: message_key(&r) == "duplicateWarning",
    })
}

fn meeting_from(m: &Element) -> Result<MeetingInfo, BbbError> {
    Ok(MeetingInfo {
        meeting_id: m.string("meetingID"),
        internal_meeting_id: m.string("internalMeetingID"),
        meeting_name: m.string("meetingName"),
        create_time: m.num("createTime")?,
        running: m.bool("running")?,
        participant_count: m.num("participantCount")?,
        listener_count: m.num("listenerCount")?,
        voice_participant_count: m.num("voiceParticipantCount")?,
        video_count: m.num("videoCount")?,
        moderator_count: m.num("moderatorCount")?,
        is_breakout: m.bool("isBreakout")?,
    })
}

/// `getMeetings` reply; `noMeetings` (or no `<meetings>`) is an empty list.
pub fn parse_meetings(body: &[u8]) -> Result<Vec<MeetingInfo>, BbbError> {
    let r = parse_response(body)?;
    match r.child("meetings") {
        Some(ms) => ms.children_named("meeting").map(meeting_from).collect(),
        None => Ok(Vec::new()),
    }
}

/// `getMeetingInfo` reply (the meeting's fields sit directly in `<response>`). FAILED `notFound`
/// stays an error here; the client turns it into `Ok(None)`.
pub fn parse_meeting_info(body: &[u8]) -> Result<MeetingInfo, BbbError> {
    let r = parse_response(body)?;
    meeting_from(&r)
}

/// `isMeetingRunning` reply.
pub fn parse_running(body: &[u8]) -> Result<bool, BbbError> {
    let r = parse_response(body)?;
    if r.child("running").is_none() {
        return Err(invalid("reply has no <running>"));
    }
    r.bool("running")
}

/// `end` reply (`sentEndMeetingRequest`).
pub fn parse_end(body: &[u8]) -> Result<(), BbbError> {
    parse_response(body).map(|_| ())
}

fn recording_from(r: &Element) -> Result<Recording, BbbError> {
    let mut formats = Vec::new();
    if let Some(pb) = r.child("playback") {
        for f in pb.children_named("format") {
            formats.push(PlaybackFormat {
                format_type: f.string("type"),
                url: f.string("url"),
                length_minutes: f.opt_num("length")?,
            });
        }
    }
    Ok(Recording {
        record_id: r.string("recordID"),
        meeting_id: r.string("meetingID"),
        name: r.string("name"),
        published: r.bool("published")?,
        state: r.string("state"),
        start_time: r.num("startTime")?,
        end_time: r.num("endTime")?,
        participants: r.string("participants"),
        formats,
    })
}

/// `getRecordings` reply; `noRecordings` is an empty list. Every state is returned (deleted
/// too): filtering is the coordinator's decision.
pub fn parse_recordings(body: &[u8]) -> Result<Vec<Recording>, BbbError> {
    let r = parse_response(body)?;
    match r.child("recordings") {
        Some(rs) => rs.children_named("recording").map(recording_from).collect(),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
#[path = "xml_tests.rs"]
mod tests;
