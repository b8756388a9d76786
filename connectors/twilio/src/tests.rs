//! Unit tests: the manifest, input checks and status shapes.

use super::*;
use evergreen_connector_kit::testing::ManifestChecks;
use evergreen_ipc::manifest::ResourceKind;
use evergreen_ipc::LogLevel;

fn config(params: &[(&str, &str)], endpoints: &[(&str, &str)]) -> ComponentConfig {
    evergreen_connector_kit::testing::config(&MANIFEST, 5, params)
        .endpoints(endpoints)
        .build()
}

#[test]
fn manifest_says_what_the_reference_says() {
    assert!(MANIFEST.admits(
        "TwilioAuthTokenSecretArn",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-TwilioAuthToken-AbCdEf"
    ));
    assert!(!MANIFEST.admits("TwilioAuthTokenSecretArn", "greengrass-TwilioAuthToken"));
    assert!(MANIFEST.admits("DefaultFromPhoneNumber", ""));
    assert!(MANIFEST.admits("DefaultFromPhoneNumber", "+19999999999"));
    assert!(!MANIFEST.admits("DefaultFromPhoneNumber", "19999999999"));
    assert!(MANIFEST.admits("IsolationMode", "NoContainer"));
    assert_eq!(
        MANIFEST.resource_kind("TwilioAuthTokenSecretArn-ResourceId"),
        Some(ResourceKind::Secret)
    );
    assert!(MANIFEST.isolation.container && MANIFEST.isolation.no_container);
    assert!(!MANIFEST.aws);
    MANIFEST.assert_filters_valid();
}

#[test]
fn the_endpoint_override_and_default_sender() {
    let (s, _) = Settings::from_config(&config(
        &[
            ("TWILIO_ACCOUNT_SID", "AC123"),
            ("DefaultFromPhoneNumber", "+15550001111"),
        ],
        &[("twilio", "http://127.0.0.1:9/")],
    ));
    assert_eq!(s.base, "http://127.0.0.1:9");
    assert_eq!(s.default_from.as_deref(), Some("+15550001111"));
    let (s, notes) = Settings::from_config(&config(&[("DefaultFromPhoneNumber", "")], &[]));
    assert_eq!(s.base, DEFAULT_BASE);
    assert_eq!(s.default_from, None, "empty means none");
    assert!(notes
        .iter()
        .any(|(l, m)| *l == LogLevel::Error && m.contains("TWILIO_ACCOUNT_SID")));
}

#[test]
fn a_text_and_a_call_parse() {
    let txt = br#"{"request": {"recipient": {"name": "Darla", "phone_number": "+12345000000",
        "message": "Hello from the edge"}, "from_number": "+19999999999", "retries": 3}, "id": "request123"}"#;
    let r = parse_request(TXT_TOPIC, txt, None).expect("valid");
    assert_eq!(
        r,
        Request {
            id: "request123".into(),
            kind: Kind::Text,
            name: "Darla".into(),
            to: "+12345000000".into(),
            from: "+19999999999".into(),
            content: "Hello from the edge".into(),
            retries: 3,
        }
    );
    let call = br#"{"request": {"recipient": {"name": "Darla", "phone_number": "+12345000000",
        "voice_message_location": "https://some-public-TwiML"}}, "id": "c1"}"#;
    let r = parse_request(CALL_TOPIC, call, Some("+15550001111")).expect("valid");
    assert_eq!(r.kind, Kind::Call);
    assert_eq!(r.from, "+15550001111", "the default sender");
    assert_eq!(r.content, "https://some-public-TwiML");
    assert_eq!(r.retries, 0);
}

#[test]
fn bad_input_names_the_field() {
    let cases: &[(&str, &[u8], &str)] = &[
        (TXT_TOPIC, b"not json", "not JSON"),
        (TXT_TOPIC, b"[1]", "not a JSON object"),
        (TXT_TOPIC, br#"{"request":{}}"#, "id is required"),
        (TXT_TOPIC, br#"{"id":7,"request":{}}"#, "id must be a string"),
        (TXT_TOPIC, br#"{"id":"a"}"#, "request is required"),
        (TXT_TOPIC, br#"{"id":"a","request":{}}"#, "request.recipient is required"),
        (
            TXT_TOPIC,
            br#"{"id":"a","request":{"recipient":{"phone_number":"+1555","message":"m"},"from_number":"+1"}}"#,
            "request.recipient.name",
        ),
        (
            TXT_TOPIC,
            br#"{"id":"a","request":{"recipient":{"name":"n","phone_number":"555","message":"m"},"from_number":"+1"}}"#,
            "request.recipient.phone_number",
        ),
        (
            TXT_TOPIC,
            br#"{"id":"a","request":{"recipient":{"name":"n","phone_number":"+1555"},"from_number":"+1"}}"#,
            "request.recipient.message is required",
        ),
        (
            TXT_TOPIC,
            br#"{"id":"a","request":{"recipient":{"name":"n","phone_number":"+1555","message":"m","voice_message_location":"u"},"from_number":"+1"}}"#,
            "both message and voice_message_location",
        ),
        (
            CALL_TOPIC,
            br#"{"id":"a","request":{"recipient":{"name":"","phone_number":"+1555","voice_message_location":"u"},"from_number":"+1"}}"#,
            "request.recipient.name cannot be empty",
        ),
        (
            CALL_TOPIC,
            br#"{"id":"a","request":{"recipient":{"name":"n","phone_number":"+1555","message":"m"},"from_number":"+1"}}"#,
            "voice_message_location is required",
        ),
        (
            TXT_TOPIC,
            br#"{"id":"a","request":{"recipient":{"name":"n","phone_number":"+1555","message":"m"}}}"#,
            "request.from_number is required",
        ),
        (
            TXT_TOPIC,
            br#"{"id":"a","request":{"recipient":{"name":"n","phone_number":"+1555","message":"m"},"from_number":"+1","retries":-1}}"#,
            "request.retries",
        ),
        (
            TXT_TOPIC,
            br#"{"id":"a","request":{"recipient":{"name":"n","phone_number":"+1555","message":"m"},"from_number":"+1","retries":"3"}}"#,
            "request.retries must be an integer",
        ),
    ];
    for (topic, payload, expected) in cases {
        let err = parse_request(topic, payload, None).expect_err(expected);
        assert!(
            err.message.contains(expected),
            "{}: {} (expected {expected})",
            String::from_utf8_lossy(payload),
            err.message
        );
    }
    let err = parse_request(TXT_TOPIC, br#"{"id":"x","request":[]}"#, None).expect_err("array");
    assert_eq!(
        err.id.as_deref(),
        Some("x"),
        "the id is kept for the status"
    );
}

#[test]
fn phone_numbers_are_e164() {
    for ok in ["+12345000000", "+1", "+447700900123"] {
        assert!(is_phone_number(ok), "{ok}");
    }
    for bad in [
        "",
        "+",
        "12345",
        "+0123",
        "+1234567890123456",
        "+1 555",
        "+1-555",
    ] {
        assert!(!is_phone_number(bad), "{bad}");
    }
}

#[test]
fn statuses_have_the_reference_shape() {
    let r = parse_request(
        TXT_TOPIC,
        br#"{"request":{"recipient":{"name":"Darla","phone_number":"+12345000000","message":"hi"},"from_number":"+19999999999"},"id":"request123"}"#,
        None,
    )
    .expect("valid");
    assert_eq!(
        success_status(&r, "queued"),
        json!({"response": {"status": "success", "payload": {"from_number": "+19999999999",
            "messages": {"message_status": "queued", "to_number": "+12345000000", "name": "Darla"}}},
            "id": "request123"})
    );
    assert_eq!(
        fail_status(
            Some("request123"),
            "InvalidParameter",
            "Recipient name cannot be None"
        ),
        json!({"response": {"status": "fail", "error_message": "Recipient name cannot be None",
            "error": "InvalidParameter", "payload": null}, "id": "request123"})
    );
}

#[test]
fn transient_errors() {
    assert!(SendError::Transport("refused".into()).is_transient());
    for s in [500, 503, 429] {
        assert!(SendError::Service {
            status: s,
            message: String::new()
        }
        .is_transient());
    }
    for s in [400, 401, 404] {
        assert!(!SendError::Service {
            status: s,
            message: String::new()
        }
        .is_transient());
    }
}
