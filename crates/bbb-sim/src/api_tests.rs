use super::*;
use bbb_api::xml;
use bbb_api::BbbError;

fn ctx(now: Instant) -> Ctx<'static> {
    Ctx {
        now,
        now_ms: 1_700_000_000_000,
        time_scale: 60.0,
        origin: "http://127.0.0.1:1",
    }
}

fn params(p: &[(&str, &str)]) -> Params {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn xml_of(r: Option<Reply>) -> String {
    match r {
        Some(Reply::Xml(x)) => x,
        other => panic!("expected XML, got {other:?}"),
    }
}

fn failed_key(r: Option<Reply>) -> String {
    match xml::parse_end(xml_of(r).as_bytes()) {
        Err(BbbError::Failed { message_key, .. }) => message_key,
        other => panic!("expected FAILED, got {other:?}"),
    }
}

#[test]
fn create_is_idempotent_and_validates_ids() {
    let mut s = SimState::default();
    let t = Instant::now();
    let p = params(&[
        ("name", "N"),
        ("meetingID", "m1"),
        ("attendeePW", "ap"),
        ("moderatorPW", "mp"),
    ]);
    let c1 = xml::parse_create(xml_of(handle(&mut s, &ctx(t), "create", &p)).as_bytes()).unwrap();
    assert!(!c1.duplicate);
    let c2 = xml::parse_create(xml_of(handle(&mut s, &ctx(t), "create", &p)).as_bytes()).unwrap();
    assert!(c2.duplicate);
    assert_eq!(c1.create_time, c2.create_time);
    assert_eq!(c2.attendee_pw.as_deref(), Some("ap"));
    let other_pw = params(&[("name", "N"), ("meetingID", "m1"), ("attendeePW", "x")]);
    assert_eq!(
        failed_key(handle(&mut s, &ctx(t), "create", &other_pw)),
        "idNotUnique"
    );
    for (id, key) in [
        ("", "missingParamMeetingID"),
        ("a", "sizeError"),
        ("a,b", "invalidMeetingIdentifier"),
    ] {
        let p = params(&[("name", "N"), ("meetingID", id)]);
        assert_eq!(
            failed_key(handle(&mut s, &ctx(t), "create", &p)),
            key,
            "{id:?}"
        );
    }
    let long = "x".repeat(257);
    let p = params(&[("name", "N"), ("meetingID", long.as_str())]);
    assert_eq!(
        failed_key(handle(&mut s, &ctx(t), "create", &p)),
        "sizeError"
    );
    assert!(handle(&mut s, &ctx(t), "nope", &p).is_none());
}

#[test]
fn join_checks_role_password_and_create_time() {
    let mut s = SimState::default();
    let t = Instant::now();
    let p = params(&[
        ("name", "N"),
        ("meetingID", "m1"),
        ("attendeePW", "ap"),
        ("moderatorPW", "mp"),
    ]);
    handle(&mut s, &ctx(t), "create", &p);
    let j = |extra: &[(&str, &str)]| {
        let mut p = params(&[
            ("fullName", "A"),
            ("meetingID", "m1"),
            ("redirect", "false"),
        ]);
        p.extend(params(extra));
        p
    };
    assert_eq!(
        failed_key(handle(&mut s, &ctx(t), "join", &j(&[]))),
        "invalidPassword"
    );
    assert_eq!(
        failed_key(handle(&mut s, &ctx(t), "join", &j(&[("password", "zz")]))),
        "invalidPassword"
    );
    assert_eq!(
        failed_key(handle(
            &mut s,
            &ctx(t),
            "join",
            &j(&[("role", "VIEWER"), ("createTime", "1")])
        )),
        "mismatchCreateTimeParam"
    );
    let ok = xml_of(handle(
        &mut s,
        &ctx(t),
        "join",
        &j(&[("role", "MODERATOR"), ("createTime", "1700000000000")]),
    ));
    assert!(ok.contains("successfullyJoined"), "{ok}");
    xml_of(handle(&mut s, &ctx(t), "join", &j(&[("password", "ap")])));
    let info = xml::parse_meeting_info(
        xml_of(handle(
            &mut s,
            &ctx(t),
            "getMeetingInfo",
            &params(&[("meetingID", "m1")]),
        ))
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        (info.participant_count, info.moderator_count, info.running),
        (2, 1, true)
    );
    let unknown = params(&[
        ("fullName", "A"),
        ("meetingID", "zz"),
        ("role", "VIEWER"),
        ("redirect", "false"),
    ]);
    assert_eq!(
        failed_key(handle(&mut s, &ctx(t), "join", &unknown)),
        "invalidMeetingIdentifier"
    );
    let redirect = params(&[("fullName", "A"), ("meetingID", "m1"), ("role", "VIEWER")]);
    match handle(&mut s, &ctx(t), "join", &redirect) {
        Some(Reply::Redirect(url)) => {
            assert!(url.starts_with("http://127.0.0.1:1/client/join?sessionToken="))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn meetings_expire_and_end() {
    let mut s = SimState::default();
    let t = Instant::now();
    let p = params(&[
        ("name", "N"),
        ("meetingID", "m1"),
        ("meetingExpireIfNoUserJoinedInMinutes", "1"),
    ]);
    handle(&mut s, &ctx(t), "create", &p);
    let ms =
        xml::parse_meetings(xml_of(handle(&mut s, &ctx(t), "getMeetings", &vec![])).as_bytes())
            .unwrap();
    assert_eq!(ms.len(), 1);
    assert!(!ms[0].running);
    let later = t + Duration::from_millis(1001);
    let ms =
        xml::parse_meetings(xml_of(handle(&mut s, &ctx(later), "getMeetings", &vec![])).as_bytes())
            .unwrap();
    assert!(ms.is_empty());
    handle(&mut s, &ctx(later), "create", &p);
    let end = params(&[("meetingID", "m1")]);
    assert!(xml_of(handle(&mut s, &ctx(later), "end", &end)).contains("sentEndMeetingRequest"));
    assert_eq!(
        failed_key(handle(&mut s, &ctx(later), "end", &end)),
        "notFound"
    );
    assert_eq!(
        failed_key(handle(&mut s, &ctx(later), "getMeetingInfo", &end)),
        "notFound"
    );
}
