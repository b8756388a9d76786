//! End-to-end: the built-in TwilioNotifications connector under the real
//! runtime, against the local HTTP recorder standing in for the Twilio API
//! (`evergreen.aws.endpoints.twilio`). The auth token is a secret resource
//! whose value the test puts into the store with `evergreen secrets put`
//! before the runtime starts, as an operator would.
//!
//! Checked on the wire as Twilio expects it: `POST
//! /2010-04-01/Accounts/<sid>/Messages.json` (or `Calls.json`), HTTP basic
//! auth `<sid>:<token>`, a form body `To`/`From`/`Body` (or `Url`). And the
//! failure paths: 5xx and 429 retried, the endpoint down then up, a Twilio
//! error reported, bad input, a secret the connector was not granted.

use std::time::Duration;

use evergreen_tests::http_recorder::{
    basic_auth, ConnectorRig, HttpRecorder, Recorded, Reply, SecretSpec,
};
use serde_json::{json, Value};

const ARN: &str = "arn:aws:greengrass:us-east-1::/connectors/TwilioNotifications/versions/5";
const STATUS: &str = "twilio/message/status";
const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token-3f9a";
const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-TwilioAuthToken-AbCdEf";
const LIMIT: Duration = Duration::from_secs(20);

/// Twilio's answer to a created message or call.
fn twilio(request: &Recorded) -> Reply {
    let to = request.form_field("To").unwrap_or_default();
    Reply::json(
        201,
        &json!({ "sid": "SM0000", "status": "queued", "to": to, "account_sid": SID }),
    )
}

fn rig(api: &HttpRecorder, secret_arn: &str, put: bool) -> Option<ConnectorRig> {
    let secret = SecretSpec {
        resource_id: "TwilioAuthToken".into(),
        arn: SECRET_ARN.into(),
        value: put.then(|| format!("{TOKEN}\n").into_bytes()),
    };
    let started = ConnectorRig::start(
        ARN,
        json!({
            "TWILIO_ACCOUNT_SID": SID,
            "TwilioAuthTokenSecretArn": secret_arn,
            "TwilioAuthTokenSecretArn-ResourceId": "TwilioAuthToken",
            "DefaultFromPhoneNumber": "+19999999999",
        }),
        &["twilio/txt", "twilio/call"],
        &[STATUS],
        &secret,
        json!({ "aws": { "endpoints": { "twilio": api.url() } } }),
    );
    match started {
        Ok(r) => Some(r),
        Err(why) => {
            eprintln!(
                "\n*** SKIPPED: cannot put the Twilio token into the secret store: {why} ***\n"
            );
            None
        }
    }
}

fn txt(id: &str, to: &str, message: &str, retries: u64) -> Value {
    json!({ "request": { "recipient": { "name": "Darla", "phone_number": to, "message": message },
        "retries": retries }, "id": id })
}

fn status_of(rig: &ConnectorRig, id: &str) -> Value {
    rig.wait_published(STATUS, LIMIT, |s| s["id"] == id)
        .unwrap_or_else(|| {
            panic!(
                "no status for {id}: {:?}\nconnector log:\n{}\nruntime log:\n{}",
                rig.published(STATUS),
                rig.log(),
                rig.runtime_log()
            )
        })
}

#[test]
fn texts_and_calls_reach_twilio_with_basic_auth_and_retries() {
    let mut api = HttpRecorder::start(twilio);
    let Some(rig) = rig(&api, SECRET_ARN, true) else {
        return;
    };

    // A text, from the default sender.
    rig.send(
        "twilio/txt",
        txt("t1", "+12345000000", "Hello from the edge", 0),
    );
    let status = status_of(&rig, "t1");
    assert_eq!(
        status,
        json!({"response": {"status": "success", "payload": {"from_number": "+19999999999",
            "messages": {"message_status": "queued", "to_number": "+12345000000", "name": "Darla"}}},
            "id": "t1"})
    );
    let sent = api.delivered();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let r = &sent[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/2010-04-01/Accounts/{SID}/Messages.json"));
    assert_eq!(
        r.header("authorization"),
        Some(basic_auth(SID, TOKEN).as_str())
    );
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")),
        "{r:?}"
    );
    assert_eq!(r.form_field("To").as_deref(), Some("+12345000000"));
    assert_eq!(r.form_field("From").as_deref(), Some("+19999999999"));
    assert_eq!(r.form_field("Body").as_deref(), Some("Hello from the edge"));

    // A call, with its own sender.
    rig.send(
        "twilio/call",
        json!({ "request": { "recipient": { "name": "Darla", "phone_number": "+12345000001",
            "voice_message_location": "https://example.com/twiml.xml" },
            "from_number": "+18888888888" }, "id": "c1" }),
    );
    assert_eq!(status_of(&rig, "c1")["response"]["status"], "success");
    let call = api.delivered().pop().expect("the call");
    assert_eq!(call.path, format!("/2010-04-01/Accounts/{SID}/Calls.json"));
    assert_eq!(
        call.form_field("Url").as_deref(),
        Some("https://example.com/twiml.xml")
    );
    assert_eq!(call.form_field("From").as_deref(), Some("+18888888888"));
    assert_eq!(
        call.header("authorization"),
        Some(basic_auth(SID, TOKEN).as_str())
    );

    // 503, 503, 429, then success: retried with backoff.
    let before = api.requests().len();
    api.fail_next(2, 503);
    api.fail_next(1, 429);
    rig.send(
        "twilio/txt",
        txt("t2", "+12345000002", "third time lucky", 3),
    );
    assert_eq!(status_of(&rig, "t2")["response"]["status"], "success");
    let attempts: Vec<u16> = api.requests()[before..].iter().map(|r| r.status).collect();
    assert_eq!(attempts, vec![503, 503, 429, 201]);

    // Retries exhausted: Twilio's error is reported.
    api.fail_next(1, 500);
    rig.send("twilio/txt", txt("t3", "+12345000003", "no retries", 0));
    let failed = status_of(&rig, "t3");
    assert_eq!(failed["response"]["status"], "fail", "{failed}");
    assert_eq!(
        failed["response"]["error"], "TwilioRestException",
        "{failed}"
    );
    assert_eq!(failed["response"]["payload"], Value::Null, "{failed}");

    // The endpoint down, then up: the request goes through after.
    api.stop();
    rig.send(
        "twilio/txt",
        txt("t4", "+12345000004", "after the outage", 5),
    );
    let retried = evergreen_tests::wait_for(LIMIT, || {
        rig.log()
            .lines()
            .any(|l| l.contains("request t4") && l.contains("retrying"))
            .then_some(())
    });
    assert!(retried.is_some(), "a retry logged:\n{}", rig.log());
    assert!(rig.published(STATUS).iter().all(|s| s["id"] != "t4"));
    api.restart();
    assert_eq!(status_of(&rig, "t4")["response"]["status"], "success");
    let last = api.delivered().pop().expect("delivered after the outage");
    assert_eq!(last.form_field("Body").as_deref(), Some("after the outage"));

    // Bad input: the documented failure naming the field; nothing sent.
    let sent_before = api.requests().len();
    rig.send("twilio/txt", txt("b1", "12345", "no plus", 0));
    let bad = status_of(&rig, "b1");
    assert_eq!(bad["response"]["error"], "InvalidParameter", "{bad}");
    assert!(
        bad["response"]["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("request.recipient.phone_number")),
        "{bad}"
    );
    rig.send(
        "twilio/call",
        json!({ "request": { "recipient": { "name": "Darla", "phone_number": "+12345000000" } }, "id": "b2" }),
    );
    let bad = status_of(&rig, "b2");
    assert!(
        bad["response"]["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("voice_message_location")),
        "{bad}"
    );
    rig.send("twilio/txt", json!("not json at all"));
    let bad = rig
        .wait_published(STATUS, LIMIT, |s| s["id"].is_null())
        .expect("a status for a payload that is not JSON");
    assert_eq!(bad["response"]["error"], "InvalidParameter", "{bad}");
    assert_eq!(api.requests().len(), sent_before, "bad input is never sent");

    eprintln!(
        "{} connector VmRSS after the test's traffic: {} KiB",
        rig.name,
        rig.connector_rss_kb()
            .map_or("?".to_string(), |k| k.to_string())
    );
    // The token is in no log.
    assert!(!rig.log().contains(TOKEN), "the token leaked into the log");
    assert!(
        !rig.runtime_log().contains(TOKEN),
        "the token leaked into the runtime log"
    );
}

/// A connector whose `TwilioAuthTokenSecretArn` names a secret the group
/// did not grant it (its `-ResourceId` resource holds another ARN) is
/// refused before anything runs, naming the parameter: the supervisor never
/// hands a component a secret it was not granted.
#[test]
fn a_secret_the_connector_was_not_granted_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let other = "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-Other-XyZ123";
    let g = ConnectorRig::group(
        ARN,
        json!({
            "TWILIO_ACCOUNT_SID": SID,
            "TwilioAuthTokenSecretArn": other,
            "TwilioAuthTokenSecretArn-ResourceId": "TwilioAuthToken",
        }),
        &["twilio/txt"],
        &[STATUS],
        &SecretSpec {
            resource_id: "TwilioAuthToken".into(),
            arn: SECRET_ARN.into(),
            value: None,
        },
        &dir.path().join("feed"),
        &dir.path().join("record"),
    );
    let (ok, text) = validate(dir.path(), &g);
    assert!(!ok, "refused: {text}");
    assert!(
        text.contains("TwilioAuthTokenSecretArn") && text.contains(other),
        "the refusal names the parameter and the secret: {text}"
    );
}

/// `evergreen validate` on `g` with the test configuration: success and output.
fn validate(dir: &std::path::Path, g: &Value) -> (bool, String) {
    let file = dir.join("group.json");
    std::fs::write(&file, g.to_string()).expect("write group");
    let config = dir.join("config.json");
    std::fs::write(&config, evergreen_tests::test_config(dir).to_string()).expect("config");
    let out = std::process::Command::new(evergreen_tests::evergreen_bin())
        .arg("validate")
        .arg(&file)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run evergreen validate");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A token secret whose name lacks the `greengrass-` prefix is refused by
/// default (Greengrass's default service role could read only those).
#[test]
fn a_secret_without_the_greengrass_prefix_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let unprefixed = "arn:aws:secretsmanager:us-east-1:123456789012:secret:TwilioAuthToken-AbCdEf";
    let g = ConnectorRig::group(
        ARN,
        json!({
            "TWILIO_ACCOUNT_SID": SID,
            "TwilioAuthTokenSecretArn": unprefixed,
            "TwilioAuthTokenSecretArn-ResourceId": "TwilioAuthToken",
        }),
        &["twilio/txt"],
        &[STATUS],
        &SecretSpec {
            resource_id: "TwilioAuthToken".into(),
            arn: unprefixed.into(),
            value: None,
        },
        &dir.path().join("feed"),
        &dir.path().join("record"),
    );
    let (ok, text) = validate(dir.path(), &g);
    assert!(!ok, "refused: {text}");
    assert!(text.contains("greengrass-"), "the refusal says why: {text}");
}

#[test]
fn a_full_queue_refuses_with_queue_full_exception() {
    let mut api = HttpRecorder::start(twilio);
    let Some(rig) = rig(&api, SECRET_ARN, true) else {
        return;
    };
    // With the endpoint down, the sender holds `h0` through its retries, so
    // nothing leaves the queue while the burst arrives.
    api.stop();
    rig.send("twilio/txt", txt("h0", "+12345000000", "held", 5));
    let retrying = evergreen_tests::wait_for(LIMIT, || {
        rig.log()
            .lines()
            .any(|l| l.contains("request h0") && l.contains("retrying"))
            .then_some(())
    });
    assert!(retrying.is_some(), "h0 retried:\n{}", rig.log());
    // The connector's documented queue (`QUEUE` in connectors/twilio).
    let queue = 1000;
    for i in 0..queue + 3 {
        rig.send(
            "twilio/txt",
            txt(&format!("q{i}"), "+12345000000", "burst", 0),
        );
    }
    let refused = |s: &Value| s["response"]["error"] == "QueueFullException";
    let all = evergreen_tests::wait_for(LIMIT, || {
        let r: Vec<Value> = rig.published(STATUS).into_iter().filter(refused).collect();
        (r.len() >= 3).then_some(r)
    })
    .unwrap_or_else(|| panic!("no QueueFullException:\n{}", rig.log()));
    let ids: Vec<&str> = all.iter().filter_map(|s| s["id"].as_str()).collect();
    let expected: Vec<String> = (queue..queue + 3).map(|i| format!("q{i}")).collect();
    assert_eq!(
        ids, expected,
        "the requests past the queue are the ones refused"
    );
    assert_eq!(all[0]["response"]["status"], "fail");
    // The accepted ones are not lost: once Twilio is back, the first of
    // them goes through.
    api.restart();
    assert_eq!(status_of(&rig, "h0")["response"]["status"], "success");
}
