//! `bbb.recordings`: ask every server a room's meeting id was ever placed on, concurrently and
//! each with a timeout; merge what answered (de-duplicated by recordID, newest first, deleted
//! ones left out). Only when no server answered is it `bbb.failed`, so one unreachable server
//! does not hide the recordings of the others.

use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use chrono::{SecondsFormat, TimeZone};
use chrono_tz::Tz;
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::bbb::{BbbApi, BbbError, Recording, ServerEndpoint};
use crate::ids::ServerId;
use crate::protocol::{ErrorCode, ErrorReply};

use super::with_timeout;

/// ISO 8601 with milliseconds and the offset of `tz`, e.g. `2020-08-02T19:30:00.000+02:00`.
pub fn iso_time(ms: i64, tz: Tz) -> Option<String> {
    let t = tz.timestamp_millis_opt(ms).single()?;
    Some(t.to_rfc3339_opts(SecondsFormat::Millis, false))
}

fn format_url(r: &Recording, kind: &str) -> Value {
    r.formats
        .iter()
        .find(|f| f.format_type == kind && !f.url.is_empty())
        .map_or(Value::Null, |f| Value::from(f.url.as_str()))
}

/// One recording as the venueless frontend expects it.
pub fn to_json(r: &Recording, tz: Tz) -> Value {
    json!({
        "start": iso_time(r.start_time, tz),
        "end": iso_time(r.end_time, tz),
        "participants": r.participants,
        "state": r.state,
        "url": format_url(r, "presentation"),
        "url_video": format_url(r, "video"),
        "url_screenshare": format_url(r, "screenshare"),
        "url_notes": format_url(r, "notes"),
    })
}

/// Merges the answers of several servers: first copy of each recordID wins, deleted ones are
/// dropped, newest start first.
pub fn merge(lists: Vec<Vec<Recording>>, tz: Tz) -> Vec<Value> {
    let mut seen = HashSet::new();
    let mut all: Vec<Recording> = lists
        .into_iter()
        .flatten()
        .filter(|r| r.state != "deleted")
        .filter(|r| seen.insert(r.record_id.clone()))
        .collect();
    all.sort_by(|a, b| {
        b.start_time
            .cmp(&a.start_time)
            .then_with(|| a.record_id.cmp(&b.record_id))
    });
    all.iter().map(|r| to_json(r, tz)).collect()
}

/// What each server answered to `getRecordings` for one meeting id.
pub type Answers = Vec<(ServerId, Result<Vec<Recording>, BbbError>)>;

/// Asks `servers` for the recordings of `meeting_id`, concurrently, each within `timeout`.
pub async fn fetch(
    api: Rc<dyn BbbApi>,
    servers: Vec<(ServerId, ServerEndpoint)>,
    meeting_id: String,
    timeout: Duration,
) -> Answers {
    let ids = vec![meeting_id];
    let asks = servers.iter().map(|(id, ep)| {
        let fut = api.get_recordings(ep, &ids);
        async move { (*id, with_timeout(timeout, fut).await) }
    });
    join_all(asks).await
}

/// Merges what answered; `bbb.failed` only when servers were asked and none answered.
pub fn answer(answers: Answers, tz: Tz) -> Result<Value, ErrorReply> {
    if answers.is_empty() {
        return Ok(json!({ "results": [] }));
    }
    let mut ok = Vec::new();
    for (server, answer) in answers {
        match answer {
            Ok(list) => ok.push(list),
            Err(e) => log::warn!("getRecordings on server {server} failed: {e}"),
        }
    }
    if ok.is_empty() {
        return Err(ErrorReply::with_message(
            ErrorCode::BbbFailed,
            "the recording servers did not answer; please try again later",
        ));
    }
    Ok(json!({ "results": merge(ok, tz) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bbb::PlaybackFormat;

    fn rec(id: &str, start: i64, state: &str) -> Recording {
        Recording {
            record_id: id.into(),
            meeting_id: "m".into(),
            state: state.into(),
            start_time: start,
            end_time: start + 3_600_000,
            participants: "3".into(),
            formats: vec![PlaybackFormat {
                format_type: "presentation".into(),
                url: format!("https://bbb/playback/{id}"),
                length_minutes: Some(60),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn times_are_iso_in_the_world_timezone() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            iso_time(1596389400000, tz).unwrap(),
            "2020-08-02T19:30:00.000+02:00"
        );
        assert_eq!(
            iso_time(1596389400000, Tz::UTC).unwrap(),
            "2020-08-02T17:30:00.000+00:00"
        );
    }

    #[test]
    fn merge_dedupes_sorts_and_skips_deleted() {
        let tz = Tz::UTC;
        let a = vec![rec("r1", 1000, "published"), rec("r2", 3000, "deleted")];
        let b = vec![rec("r1", 1000, "published"), rec("r3", 2000, "unpublished")];
        let merged = merge(vec![a, b], tz);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0]["url"], "https://bbb/playback/r3");
        assert_eq!(merged[0]["state"], "unpublished");
        assert_eq!(merged[1]["participants"], "3");
        assert_eq!(merged[1]["url_video"], Value::Null);
        assert_eq!(merged[1]["end"], "1970-01-01T01:00:01.000+00:00");
    }
}
