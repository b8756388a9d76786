//! End-to-end: a component reaches the local shadow service over the stdio IPC
//! (`Handle::shadow`), under the real runtime.
//!
//! An `eg-fn feed` function publishes shadow requests on `ask`; an `eg-fn shadow` function
//! receives them, makes each one through the SDK and writes the answer it got back. An
//! `eg-fn record` function hears what `GGShadowService` publishes for the thing, since an IPC
//! request's answers are published as for any other request. Covers update (twice: the version
//! goes up), get (state, delta, `clientToken`), bad JSON, delete, get after delete (404), the
//! shadow file under the runtime root, thing names the supervisor refuses (400 with no request
//! made) and ones the service refuses, and a runtime whose shadow service could not start (503).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);
const SHADOW: &str = "GGShadowService";
const THING: &str = "ipc-lamp";

fn ipc_group(feed: &Path, answers: &Path, published: &Path) -> Value {
    group(
        vec![
            function("feeder", &format!("feed {}", feed.display())),
            function("shadower", &format!("shadow {}", answers.display())),
            function("rec", &format!("record {}", published.display())),
        ],
        vec![
            sub("ask", &fn_arn("feeder"), "ask", &fn_arn("shadower")),
            sub(
                "published",
                SHADOW,
                &format!("$aws/things/{THING}/shadow/#"),
                &fn_arn("rec"),
            ),
        ],
    )
}

/// Has the `shadow` function ask for `op` on `thing` with `payload`.
fn ask(feed: &Path, thing: &str, op: &str, payload: Value) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(feed)
        .expect("open feed file");
    let request = json!({ "thing": thing, "op": op, "payload": payload });
    let line = json!({ "topic": "ask", "payload": request });
    f.write_all(format!("{line}\n").as_bytes())
        .expect("write feed line");
}

/// Waits until the `shadow` function has written `n` answers; returns the `n`th.
fn answer(rt: &Runtime, answers: &Path, n: usize) -> Value {
    let got = wait_for(LIMIT, || {
        let r = records(answers);
        (r.len() >= n).then(|| r[n - 1].clone())
    });
    got.unwrap_or_else(|| {
        panic!(
            "expected answer {n}, have {:?}\nshadower log:\n{}\nruntime log:\n{}",
            records(answers),
            read(&rt.function_log("shadower")),
            read(&rt.log_path("system/runtime.log"))
        )
    })
}

/// Asserts `a` is an accepted answer and returns its document.
fn accepted(a: &Value) -> &Value {
    assert_eq!(a["accepted"], json!(true), "{a}");
    &a["payload"]
}

/// Asserts `a` is a rejection with `code` and returns its message.
fn rejected(a: &Value, code: u64) -> String {
    assert_eq!(a["accepted"], json!(false), "{a}");
    assert_eq!(a["payload"]["code"], json!(code), "{a}");
    a["payload"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {a}"))
        .to_string()
}

#[test]
fn a_component_updates_gets_and_deletes_a_shadow_over_the_ipc() {
    let dir = tempfile::tempdir().expect("tmp");
    let feed = dir.path().join("feed");
    let answers = dir.path().join("answers.jsonl");
    let published = dir.path().join("published.jsonl");
    let g = ipc_group(&feed, &answers, &published);
    assert_valid_group(dir.path(), &g);
    let rt = Runtime::start(&g);
    let root = rt.dir.path().join("root");
    let mut n = 0;
    let mut next = |rt: &Runtime| {
        n += 1;
        answer(rt, &answers, n)
    };

    // Update: version 1, the client token echoed, the state as sent.
    ask(
        &feed,
        THING,
        "update",
        json!({"state": {"desired": {"color": "red"}, "reported": {"color": "green"}}, "clientToken": "u1"}),
    );
    let a = next(&rt);
    assert_eq!((&a["thing"], &a["op"]), (&json!(THING), &json!("update")));
    let doc = accepted(&a);
    assert_eq!(doc["version"], json!(1), "{doc}");
    assert_eq!(doc["clientToken"], json!("u1"));
    assert_eq!(doc["state"]["desired"], json!({"color": "red"}));
    assert_eq!(doc["state"]["reported"], json!({"color": "green"}));
    assert!(doc["timestamp"].as_u64().is_some(), "{doc}");

    // The service published that update's answers for the group, with a delta
    // (desired differs from reported), as for a routed or a Lambda request.
    let delta = wait_for(LIMIT, || {
        records(&published)
            .into_iter()
            .find(|r| r["topic"] == format!("$aws/things/{THING}/shadow/update/delta"))
    })
    .unwrap_or_else(|| panic!("no delta published: {:?}", records(&published)));
    assert_eq!(delta["source"], json!(SHADOW));
    let delta: Value =
        serde_json::from_str(delta["payload"].as_str().unwrap_or_default()).expect("delta JSON");
    assert_eq!(delta["state"], json!({"color": "red"}));
    assert_eq!(delta["version"], json!(1));
    assert!(
        records(&published)
            .iter()
            .any(|r| r["topic"] == format!("$aws/things/{THING}/shadow/update/accepted")),
        "{:?}",
        records(&published)
    );

    // A second update merges and bumps the version.
    ask(
        &feed,
        THING,
        "update",
        json!({"state": {"reported": {"on": true}}, "clientToken": "u2"}),
    );
    let doc = accepted(&next(&rt)).clone();
    assert_eq!(doc["version"], json!(2), "{doc}");
    assert_eq!(doc["clientToken"], json!("u2"));
    assert_eq!(doc["state"], json!({"reported": {"on": true}}));

    // Get: the whole document, the delta, the token.
    ask(&feed, THING, "get", json!({"clientToken": "g1"}));
    let a = next(&rt);
    let doc = accepted(&a);
    assert_eq!(doc["version"], json!(2), "{doc}");
    assert_eq!(doc["clientToken"], json!("g1"));
    assert_eq!(doc["state"]["desired"], json!({"color": "red"}));
    assert_eq!(
        doc["state"]["reported"],
        json!({"color": "green", "on": true})
    );
    assert_eq!(doc["state"]["delta"], json!({"color": "red"}));

    // The shadow is stored under the runtime root.
    let file = root.join("shadow").join(format!("{THING}.json"));
    let stored: Value =
        serde_json::from_str(&read(&file)).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(stored.to_string().contains("\"color\":\"red\""), "{stored}");

    // Bad JSON: the service's 400, nothing changed.
    ask(&feed, THING, "update", json!("{\"state\": {oops"));
    let a = next(&rt);
    let why = rejected(&a, 400);
    assert!(why.contains("Invalid JSON"), "{why}");

    // Delete, then get: 404.
    ask(&feed, THING, "delete", json!({"clientToken": "d1"}));
    let a = next(&rt);
    let doc = accepted(&a);
    assert_eq!(doc["version"], json!(2), "{doc}");
    assert_eq!(doc["clientToken"], json!("d1"));
    ask(&feed, THING, "get", Value::Null);
    let a = next(&rt);
    assert_eq!(
        rejected(&a, 404),
        format!("No shadow exists with name: '{THING}'")
    );

    // Names that cannot form a shadow topic: 400 from the supervisor, naming the fault.
    let long = "t".repeat(129);
    for (thing, fault) in [
        ("", "empty"),
        ("lamp/shadow/name/x", "'/'"),
        ("lamp+", "'+'"),
        ("#", "'#'"),
        (long.as_str(), "129 bytes"),
    ] {
        ask(&feed, thing, "get", json!({"clientToken": "bad-name"}));
        let a = next(&rt);
        let why = rejected(&a, 400);
        assert!(
            why.starts_with("Invalid thing name") && why.contains(fault),
            "{thing:?}: {why}"
        );
        assert_eq!(a["payload"]["clientToken"], json!("bad-name"), "{a}");
    }
    // A name that forms a topic but that AWS IoT refuses: the service's own 400.
    ask(&feed, "my lamp", "get", Value::Null);
    let a = next(&rt);
    let why = rejected(&a, 400);
    assert!(why.starts_with("Invalid thing name"), "{why}");

    // The refusals are in the component's log.
    let log = read(&rt.function_log("shadower"));
    assert!(
        log.contains("refused: 400 Invalid thing name"),
        "shadower log:\n{log}"
    );
}

#[test]
fn without_a_shadow_service_a_request_gets_503() {
    let dir = tempfile::tempdir().expect("tmp");
    let rt_dir = tempfile::tempdir().expect("tmp");
    // A file where the shadow directory goes: the service cannot start, the runtime runs on.
    let root = rt_dir.path().join("root");
    std::fs::create_dir_all(&root).expect("root");
    std::fs::write(root.join("shadow"), b"not a directory").expect("block the shadow dir");
    let feed = dir.path().join("feed");
    let answers = dir.path().join("answers.jsonl");
    let published = dir.path().join("published.jsonl");
    let rt = Runtime::start_config_in(
        rt_dir,
        &ipc_group(&feed, &answers, &published),
        &json!({}),
        &[],
    );
    ask(
        &feed,
        THING,
        "update",
        json!({"state": {"reported": {"on": true}}}),
    );
    let a = answer(&rt, &answers, 1);
    let why = rejected(&a, 503);
    assert!(
        why.contains("the local shadow service is not running"),
        "{why}"
    );
    assert!(
        read(&rt.log_path("system/runtime.log")).contains("cannot start the local shadow service"),
        "the runtime log says why"
    );
}
