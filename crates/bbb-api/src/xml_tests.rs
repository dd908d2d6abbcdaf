use super::*;

const CREATE_DUP: &str = r#"<response>
  <returncode>SUCCESS</returncode>
  <meetingID>room-5f2c</meetingID>
  <internalMeetingID>0cfdd4c1b1b5c9e6b0a7c2fe4c1c1f1c5d9b2a0e-1606934400000</internalMeetingID>
  <parentMeetingID>bbb-none</parentMeetingID>
  <attendeePW>ap</attendeePW>
  <moderatorPW>mp</moderatorPW>
  <createTime>1606934400000</createTime>
  <voiceBridge>70757</voiceBridge>
  <dialNumber>613-555-1234</dialNumber>
  <createDate>Wed Dec 02 18:40:00 UTC 2020</createDate>
  <hasUserJoined>false</hasUserJoined>
  <duration>0</duration>
  <hasBeenForciblyEnded>false</hasBeenForciblyEnded>
  <messageKey>duplicateWarning</messageKey>
  <message>This conference was already in existence and may currently be in progress.</message>
</response>"#;

const CHECKSUM_FAIL: &str = r#"<response><returncode>FAILED</returncode><messageKey>checksumError</messageKey><message>Checksums do not match</message></response>"#;

const RECORDINGS: &str = r#"<response>
  <returncode>SUCCESS</returncode>
  <recordings>
    <recording>
      <recordID>ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124</recordID>
      <meetingID>room-5f2c</meetingID>
      <internalMeetingID>ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124</internalMeetingID>
      <name>Keynote</name>
      <isBreakout>false</isBreakout>
      <published>true</published>
      <state>published</state>
      <startTime>1596389400000</startTime>
      <endTime>1596393000000</endTime>
      <participants>3</participants>
      <metadata><eventyay-room>room_1</eventyay-room></metadata>
      <playback>
        <format>
          <type>presentation</type>
          <url>https://bbb1.example.org/playback/presentation/2.3/ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124</url>
          <processingTime>7177</processingTime>
          <length>60</length>
        </format>
        <format>
          <type>video</type>
          <url>https://bbb1.example.org/recording/ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124/video.mp4</url>
          <length>60</length>
        </format>
      </playback>
    </recording>
  </recordings>
</response>"#;

const MEETINGS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<response>
  <returncode>SUCCESS</returncode>
  <meetings>
    <meeting>
      <meetingName><![CDATA[Keynote & friends]]></meetingName>
      <meetingID>room-5f2c</meetingID>
      <internalMeetingID>abc-1</internalMeetingID>
      <createTime>1606934400000</createTime>
      <running>true</running>
      <participantCount>
        12
      </participantCount>
      <listenerCount>3</listenerCount>
      <voiceParticipantCount>9</voiceParticipantCount>
      <videoCount>4</videoCount>
      <moderatorCount>2</moderatorCount>
      <maxUsers>0</maxUsers>
      <isBreakout>false</isBreakout>
      <attendees><attendee><userID>u1</userID></attendee></attendees>
      <metadata><eventyay-world>w</eventyay-world></metadata>
      <someFutureField a="b"/>
    </meeting>
    <meeting>
      <meetingID>other</meetingID>
    </meeting>
  </meetings>
</response>"#;

#[test]
fn create_duplicate_sample() {
    let c = parse_create(CREATE_DUP.as_bytes()).unwrap();
    assert_eq!(
        c,
        CreateResponse {
            meeting_id: "room-5f2c".into(),
            internal_meeting_id: "0cfdd4c1b1b5c9e6b0a7c2fe4c1c1f1c5d9b2a0e-1606934400000".into(),
            attendee_pw: Some("ap".into()),
            moderator_pw: Some("mp".into()),
            create_time: 1606934400000,
            voice_bridge: Some("70757".into()),
            duplicate: true,
        }
    );
    let fresh = CREATE_DUP
        .replace("<messageKey>duplicateWarning</messageKey>", "")
        .replace("<attendeePW>ap</attendeePW>", "");
    let c = parse_create(fresh.as_bytes()).unwrap();
    assert!(!c.duplicate);
    assert_eq!(c.attendee_pw, None);
}

#[test]
fn checksum_failure_sample() {
    for parse in [
        |b: &[u8]| parse_create(b).map(|_| ()),
        |b: &[u8]| parse_meetings(b).map(|_| ()),
        |b: &[u8]| parse_meeting_info(b).map(|_| ()),
        |b: &[u8]| parse_running(b).map(|_| ()),
        parse_end,
        |b: &[u8]| parse_recordings(b).map(|_| ()),
    ] {
        assert_eq!(
            parse(CHECKSUM_FAIL.as_bytes()),
            Err(BbbError::Failed {
                message_key: "checksumError".into(),
                message: "Checksums do not match".into()
            })
        );
    }
}

#[test]
fn recordings_sample() {
    let rs = parse_recordings(RECORDINGS.as_bytes()).unwrap();
    assert_eq!(rs.len(), 1);
    let r = &rs[0];
    assert_eq!(
        r.record_id,
        "ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124"
    );
    assert_eq!(r.meeting_id, "room-5f2c");
    assert_eq!(r.name, "Keynote");
    assert!(r.published);
    assert_eq!(r.state, "published");
    assert_eq!(r.start_time, 1596389400000);
    assert_eq!(r.end_time, 1596393000000);
    assert_eq!(r.participants, "3");
    assert_eq!(r.formats.len(), 2);
    assert_eq!(r.formats[0].format_type, "presentation");
    assert_eq!(r.formats[0].length_minutes, Some(60));
    assert!(r.formats[1].url.ends_with("/video.mp4"));
}

#[test]
fn empty_lists() {
    let no_rec = r#"<response><returncode>SUCCESS</returncode><recordings/><messageKey>noRecordings</messageKey><message>There are no recordings for the meeting(s).</message></response>"#;
    assert_eq!(parse_recordings(no_rec.as_bytes()).unwrap(), vec![]);
    let no_meet = r#"<response><returncode>SUCCESS</returncode><meetings/><messageKey>noMeetings</messageKey><message>no meetings were found on this server</message></response>"#;
    assert_eq!(parse_meetings(no_meet.as_bytes()).unwrap(), vec![]);
    let no_meet2 =
        "<response><returncode>SUCCESS</returncode><messageKey>noMeetings</messageKey></response>";
    assert_eq!(parse_meetings(no_meet2.as_bytes()).unwrap(), vec![]);
}

#[test]
fn deleted_recordings_are_still_parsed() {
    let body = RECORDINGS
        .replace(
            "<published>true</published>",
            "<published>false</published>",
        )
        .replace("<state>published</state>", "<state>deleted</state>");
    let rs = parse_recordings(body.as_bytes()).unwrap();
    assert_eq!(rs[0].state, "deleted");
    assert!(!rs[0].published);
}

#[test]
fn meetings_with_cdata_whitespace_and_unknown_elements() {
    let ms = parse_meetings(MEETINGS.as_bytes()).unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(
        ms[0],
        MeetingInfo {
            meeting_id: "room-5f2c".into(),
            internal_meeting_id: "abc-1".into(),
            meeting_name: "Keynote & friends".into(),
            create_time: 1606934400000,
            running: true,
            participant_count: 12,
            listener_count: 3,
            voice_participant_count: 9,
            video_count: 4,
            moderator_count: 2,
            is_breakout: false,
        }
    );
    assert_eq!(ms[1].meeting_id, "other");
    assert_eq!(ms[1].participant_count, 0);
}

#[test]
fn meeting_info_running_end() {
    let info = r#"<response><returncode>SUCCESS</returncode><meetingName>A &amp; B</meetingName><meetingID>m1</meetingID><createTime>5</createTime><running>false</running><participantCount>0</participantCount></response>"#;
    let m = parse_meeting_info(info.as_bytes()).unwrap();
    assert_eq!(m.meeting_name, "A & B");
    assert_eq!(m.create_time, 5);
    let nf = r#"<response><returncode>FAILED</returncode><messageKey>notFound</messageKey><message>We could not find a meeting with that meeting ID</message></response>"#;
    assert!(matches!(
        parse_meeting_info(nf.as_bytes()),
        Err(BbbError::Failed { message_key, .. }) if message_key == "notFound"
    ));
    let run =
        "<response>\n <returncode>SUCCESS</returncode>\n <running> true </running>\n</response>";
    assert!(parse_running(run.as_bytes()).unwrap());
    let no_run = "<response><returncode>SUCCESS</returncode></response>";
    assert!(matches!(
        parse_running(no_run.as_bytes()),
        Err(BbbError::InvalidXml(_))
    ));
    let end = r#"<response><returncode>SUCCESS</returncode><messageKey>sentEndMeetingRequest</messageKey><message>A request to end the meeting was sent.</message></response>"#;
    assert_eq!(parse_end(end.as_bytes()), Ok(()));
}

#[test]
fn malformed_bodies_are_invalid_xml() {
    let deep = "<a>".repeat(1000);
    for body in [
        "",
        "   ",
        "not xml at all",
        "<html><body>502 Bad Gateway</body></html>",
        "<response><returncode>SUCCESS</returncode>",
        "<response><returncode>SUCCESS</returncode></respons>",
        "<response><returncode>MAYBE</returncode></response>",
        "<response></response>",
        "<response><returncode>SUCCESS</returncode></response><response/>",
        "<response><returncode>SUCCESS</returncode><createTime>soon</createTime></response>",
        "<response><returncode>SUCCESS</returncode><x>&bogus;</x></response>",
        deep.as_str(),
    ] {
        let create = parse_create(body.as_bytes());
        assert!(
            matches!(create, Err(BbbError::InvalidXml(_))),
            "create {body:?}: {create:?}"
        );
        let r = parse_running(body.as_bytes());
        assert!(
            matches!(r, Err(BbbError::InvalidXml(_))),
            "running {body:?}: {r:?}"
        );
    }
    assert!(matches!(
        parse_running(
            b"<response><returncode>SUCCESS</returncode><running>yes</running></response>"
        ),
        Err(BbbError::InvalidXml(_))
    ));
    let meetings = parse_meetings(
        b"<response><returncode>SUCCESS</returncode><meetings><meeting><participantCount>-1</participantCount></meeting></meetings></response>",
    );
    assert!(matches!(meetings, Err(BbbError::InvalidXml(_))));
    assert!(matches!(
        parse_create(&[0xff, 0xfe, 0x00]),
        Err(BbbError::InvalidXml(_))
    ));
}

proptest::proptest! {
    #[test]
    fn parsers_never_panic_on_bytes(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = parse_create(&body);
        let _ = parse_meetings(&body);
        let _ = parse_meeting_info(&body);
        let _ = parse_running(&body);
        let _ = parse_end(&body);
        let _ = parse_recordings(&body);
    }

    #[test]
    fn parsers_never_panic_on_xmlish(body in r"(<[a-zA-Z/!?\[]{0,3}|>|[a-zA-Z]{1,12}|&[a-z#0-9]{0,5};?| |CDATA\[|\]\]|returncode|SUCCESS|FAILED|meeting|recording|response){0,60}") {
        let b = body.as_bytes();
        let _ = parse_create(b);
        let _ = parse_meetings(b);
        let _ = parse_meeting_info(b);
        let _ = parse_running(b);
        let _ = parse_end(b);
        let _ = parse_recordings(b);
    }

    #[test]
    fn mutated_samples_never_panic(cut in 0usize..2000, insert in ".{0,8}") {
        for sample in [CREATE_DUP, RECORDINGS, MEETINGS, CHECKSUM_FAIL] {
            let mut s: String = sample.chars().take(cut).collect();
            s.push_str(&insert);
            s.extend(sample.chars().skip(cut));
            let _ = parse_create(s.as_bytes());
            let _ = parse_meetings(s.as_bytes());
            let _ = parse_recordings(s.as_bytes());
        }
    }
}

#[test]
fn api_index_version() {
    let body = b"<response><returncode>SUCCESS</returncode><version>2.0</version>\
        <apiVersion>2.0</apiVersion><bbbVersion>2.7.3</bbbVersion></response>";
    assert_eq!(parse_version(body).unwrap().as_deref(), Some("2.7.3"));
    let none = b"<response><returncode>SUCCESS</returncode><version>2.0</version></response>";
    assert_eq!(parse_version(none).unwrap(), None);
    assert!(parse_version(b"<html>nope</html>").is_err());
}
