//! End-to-end: the local shadow service (`GGShadowService`) under the real runtime.
//!
//! An `eg-fn feed` function publishes shadow requests, routed to `GGShadowService` by a
//! subscription; the service's answers are routed to an `eg-fn record` function. Covers update
//! (accepted + documents + delta), get, a version conflict (409), bad JSON (400), the shadow
//! surviving a runtime restart on the same root, delete, and get after delete (404).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use evergreen_tests::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);
const SHADOW: &str = "GGShadowService";
const T: &str = "$aws/things/lamp/shadow";

fn shadow_group(feed: &Path, record: &Path) -> Value {
    group(
        vec![
            function("feeder", &format!("feed {}", feed.display())),
            function("rec", &format!("record {}", record.display())),
        ],
        vec![
            sub(
                "requests",
                &fn_arn("feeder"),
                "$aws/things/+/shadow/+",
                SHADOW,
            ),
            sub(
                "answers",
                SHADOW,
                "$aws/things/lamp/shadow/#",
                &fn_arn("rec"),
            ),
        ],
    )
}

fn send(feed: &Path, topic: &str, payload: Value) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(feed)
        .expect("open feed file");
    let line = json!({ "topic": topic, "payload": payload });
    f.write_all(format!("{line}\n").as_bytes())
        .expect("write feed line");
}

/// Waits until `record` holds at least `n` records; answers them with their payloads parsed.
fn wait_records(rt: &Runtime, record: &Path, n: usize) -> Vec<(String, Value)> {
    let got = wait_for(LIMIT, || {
        let r = records(record);
        (r.len() >= n).then_some(r)
    });
    let Some(got) = got else {
        panic!(
            "expected {n} answers, got {:?}\nruntime log:\n{}",
            records(record),
            read(&rt.log_path("system/runtime.log"))
        );
    };
    got.iter()
        .map(|r| {
            let topic = r["topic"].as_str().unwrap_or_default().to_string();
            assert_eq!(r["source"], json!(SHADOW), "{r}");
            let text = r["payload"].as_str().unwrap_or_default();
            let payload = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            (topic, payload)
        })
        .collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn recent(ts: &Value) {
    let ts = ts.as_u64().unwrap_or_else(|| panic!("timestamp {ts}"));
    assert!(
        ts + 60 >= now() && ts <= now() + 1,
        "timestamp {ts} is not now"
    );
}

fn find<'a>(answers: &'a [(String, Value)], topic: &str) -> &'a Value {
    answers
        .iter()
        .find(|(t, _)| t == topic)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no answer on {topic}: {answers:?}"))
}

#[test]
fn shadow_update_get_conflict_bad_json_restart_delete() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("root");
    let (feed, record) = (dir.path().join("feed1"), dir.path().join("rec1.jsonl"));
    let g = shadow_group(&feed, &record);
    assert_valid_group(dir.path(), &g);
    let patch = json!({ "root": root });
    let mut rt = Runtime::start_with(&g, &patch);

    // Update: accepted, documents and delta, all echoing the client token.
    send(
        &feed,
        &format!("{T}/update"),
        json!({"state": {"desired": {"color": "red"}, "reported": {"color": "green"}}, "clientToken": "t1"}),
    );
    let answers = wait_records(&rt, &record, 3);
    let accepted = find(&answers, &format!("{T}/update/accepted"));
    assert_eq!(accepted["version"], json!(1));
    assert_eq!(accepted["clientToken"], json!("t1"));
    assert_eq!(accepted["state"]["desired"], json!({"color": "red"}));
    recent(&accepted["timestamp"]);
    recent(&accepted["metadata"]["desired"]["color"]["timestamp"]);
    let documents = find(&answers, &format!("{T}/update/documents"));
    assert_eq!(documents["previous"], Value::Null);
    assert_eq!(documents["current"]["version"], json!(1));
    assert_eq!(
        documents["current"]["state"],
        json!({"desired": {"color": "red"}, "reported": {"color": "green"}})
    );
    let delta = find(&answers, &format!("{T}/update/delta"));
    assert_eq!(delta["state"], json!({"color": "red"}));
    assert_eq!(delta["version"], json!(1));

    // Get: the whole state, with the delta.
    send(&feed, &format!("{T}/get"), json!({"clientToken": "g1"}));
    let answers = wait_records(&rt, &record, 4);
    let got = find(&answers, &format!("{T}/get/accepted"));
    assert_eq!(got["state"]["desired"], json!({"color": "red"}));
    assert_eq!(got["state"]["reported"], json!({"color": "green"}));
    assert_eq!(got["state"]["delta"], json!({"color": "red"}));
    assert_eq!(got["version"], json!(1));
    assert_eq!(got["clientToken"], json!("g1"));

    // A stale version: 409, nothing changed.
    send(
        &feed,
        &format!("{T}/update"),
        json!({"state": {"reported": {"color": "red"}}, "version": 7, "clientToken": "stale"}),
    );
    let answers = wait_records(&rt, &record, 5);
    let rejected = find(&answers, &format!("{T}/update/rejected"));
    assert_eq!(rejected["code"], json!(409), "{rejected}");
    assert_eq!(rejected["message"], json!("Version conflict"));
    assert_eq!(rejected["clientToken"], json!("stale"));

    // Bad JSON: 400, and the service goes on.
    send(&feed, &format!("{T}/update"), json!("{\"state\": {oops"));
    let answers = wait_records(&rt, &record, 6);
    let (topic, bad) = &answers[5];
    assert_eq!(topic, &format!("{T}/update/rejected"));
    assert_eq!(bad["code"], json!(400), "{bad}");
    assert!(
        bad["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Invalid JSON"),
        "{bad}"
    );

    // A right version is accepted and bumps it; reported now matches: no delta.
    send(
        &feed,
        &format!("{T}/update"),
        json!({"state": {"reported": {"color": "red"}}, "version": 1}),
    );
    let answers = wait_records(&rt, &record, 8);
    assert_eq!(answers[6].0, format!("{T}/update/accepted"));
    assert_eq!(answers[6].1["version"], json!(2));
    assert_eq!(answers[7].0, format!("{T}/update/documents"));
    assert_eq!(answers[7].1["previous"]["version"], json!(1));

    // Restart on the same root: the shadow is still there.
    let status = rt.stop_with(Signal::SIGTERM, LIMIT);
    assert!(status.is_some(), "the runtime did not stop");
    drop(rt);
    let (feed, record) = (dir.path().join("feed2"), dir.path().join("rec2.jsonl"));
    let rt = Runtime::start_with(&shadow_group(&feed, &record), &patch);
    send(&feed, &format!("{T}/get"), json!({}));
    let answers = wait_records(&rt, &record, 1);
    let got = find(&answers, &format!("{T}/get/accepted"));
    assert_eq!(got["version"], json!(2), "{got}");
    assert_eq!(
        got["state"],
        json!({"desired": {"color": "red"}, "reported": {"color": "red"}})
    );

    // Delete, then get: 404.
    send(&feed, &format!("{T}/delete"), json!({"clientToken": "d"}));
    let answers = wait_records(&rt, &record, 2);
    let deleted = find(&answers, &format!("{T}/delete/accepted"));
    assert_eq!(deleted["version"], json!(2));
    assert_eq!(deleted["clientToken"], json!("d"));
    send(&feed, &format!("{T}/get"), json!(""));
    let answers = wait_records(&rt, &record, 3);
    let gone = find(&answers, &format!("{T}/get/rejected"));
    assert_eq!(gone["code"], json!(404), "{gone}");
    assert_eq!(gone["message"], json!("No shadow exists with name: 'lamp'"));

    // Missing state and a bad thing name: 400 each, through the runtime.
    send(&feed, &format!("{T}/update"), json!({"clientToken": "x"}));
    let answers = wait_records(&rt, &record, 4);
    assert_eq!(answers[3].0, format!("{T}/update/rejected"));
    assert_eq!(
        answers[3].1["message"],
        json!("Missing required node: state")
    );
    assert_eq!(answers[3].1["clientToken"], json!("x"));
}

#[test]
fn shadow_answers_follow_a_new_deployment() {
    let dir = tempfile::tempdir().expect("tmp");
    let (feed, record) = (dir.path().join("feed"), dir.path().join("rec.jsonl"));
    let g = shadow_group(&feed, &record);
    let rt = Runtime::start_with(&g, &json!({ "root": dir.path().join("root") }));
    // Nobody subscribes to fan's answers yet: the update is stored, its answers go nowhere.
    send(
        &feed,
        "$aws/things/fan/shadow/update",
        json!({"state": {"reported": {"speed": 3}}}),
    );
    send(&feed, &format!("{T}/get"), json!({}));
    let answers = wait_records(&rt, &record, 1);
    assert_eq!(answers[0].0, format!("{T}/get/rejected"), "{answers:?}");
    assert_eq!(records(&record).len(), 1, "fan's answers were not routed");

    // A deployment adds a subscription for fan's answers; feeder and rec keep running.
    let mut next = g.clone();
    next["SubscriptionDefinitionVersion"]["Subscriptions"]
        .as_array_mut()
        .expect("subscriptions")
        .push(sub(
            "fan",
            SHADOW,
            "$aws/things/fan/shadow/#",
            &fn_arn("rec"),
        ));
    let file = dir.path().join("next.json");
    std::fs::write(&file, next.to_string()).expect("write group");
    let out = std::process::Command::new(evergreen_bin())
        .args(["deploy", &file.display().to_string(), "--config"])
        .arg(rt.dir.path().join("config.json"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run evergreen deploy");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    send(
        &feed,
        "$aws/things/fan/shadow/get",
        json!({"clientToken": "f"}),
    );
    let answers = wait_records(&rt, &record, 2);
    let got = find(&answers, "$aws/things/fan/shadow/get/accepted");
    assert_eq!(got["state"]["reported"], json!({"speed": 3}));
    assert_eq!(got["version"], json!(1));
    assert_eq!(got["clientToken"], json!("f"));
}

const SHADOW_LAMBDA: &str = r#"
import json
import threading

import greengrasssdk

iot = greengrasssdk.client("iot-data")


def attempt(step, call):
    try:
        r = call()
        out = {"step": step, "ok": json.loads(r["payload"])}
    except Exception as e:
        out = {"step": step, "error": "%s: %s" % (type(e).__name__, e)}
    iot.publish(topic="results", payload=json.dumps(out))


def run():
    attempt("update", lambda: iot.update_thing_shadow(
        thingName="lamp", payload=json.dumps({"state": {"desired": {"on": True}}, "clientToken": "py"})))
    attempt("get", lambda: iot.get_thing_shadow(thingName="lamp"))
    attempt("bad", lambda: iot.update_thing_shadow(thingName="lamp", payload="{oops"))
    attempt("delete", lambda: iot.delete_thing_shadow(thingName="lamp"))
    attempt("gone", lambda: iot.get_thing_shadow(thingName="lamp"))


threading.Thread(target=run).start()


def handler(event, context):
    return None
"#;

#[test]
fn python_functions_reach_the_shadow_service_through_the_sdk() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let code = dir.path().join("functions").join("shadowy");
    vendor_greengrasssdk(&sdk, &code).expect("vendor greengrasssdk");
    std::fs::write(code.join("shadowy.py"), SHADOW_LAMBDA).expect("write function");
    let record = dir.path().join("rec.jsonl");
    let py = json!({
        "Id": "shadowy",
        "FunctionArn": fn_arn("shadowy"),
        "FunctionConfiguration": {
            "Executable": "shadowy.handler",
            "CodeUri": code,
            "Runtime": "python3.8",
            "Pinned": true,
            "Timeout": 10,
            "EncodingType": "json",
            "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
        }
    });
    let g = group(
        vec![py, function("rec", &format!("record {}", record.display()))],
        vec![
            sub("results", &fn_arn("shadowy"), "results", &fn_arn("rec")),
            sub(
                "delta",
                SHADOW,
                "$aws/things/lamp/shadow/update/delta",
                &fn_arn("rec"),
            ),
        ],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let rt = Runtime::start_config(&g, &json!({ "coreThing": { "ggDaemonPort": port } }), &[]);
    let step = |name: &str| -> Value {
        let found = wait_for(LIMIT, || {
            records(&record).into_iter().find_map(|r| {
                let v: Value = serde_json::from_str(r["payload"].as_str()?).ok()?;
                (r["topic"] == "results" && v["step"] == name).then_some(v)
            })
        });
        found.unwrap_or_else(|| {
            panic!(
                "no {name} step: {:?}\nfunction log:\n{}\nruntime log:\n{}",
                records(&record),
                read(&rt.function_log("shadowy")),
                read(&rt.log_path("system/runtime.log"))
            )
        })
    };
    let update = step("update");
    assert_eq!(update["ok"]["version"], json!(1), "{update}");
    assert_eq!(update["ok"]["clientToken"], json!("py"), "{update}");
    let get = step("get");
    assert_eq!(get["ok"]["state"]["desired"], json!({"on": true}), "{get}");
    assert_eq!(get["ok"]["state"]["delta"], json!({"on": true}), "{get}");
    let bad = step("bad");
    let bad = bad["error"].as_str().unwrap_or_default().to_string();
    assert!(
        bad.starts_with("ShadowError") && bad.contains("Invalid JSON"),
        "{bad}"
    );
    assert_eq!(step("delete")["ok"]["version"], json!(1));
    let gone = step("gone");
    let gone = gone["error"].as_str().unwrap_or_default().to_string();
    assert!(
        gone.starts_with("ShadowError") && gone.contains("No shadow exists with name: 'lamp'"),
        "{gone}"
    );
    // The function's update reached the group's subscribers as a delta too.
    let delta = records(&record)
        .into_iter()
        .find(|r| r["topic"] == "$aws/things/lamp/shadow/update/delta")
        .expect("a delta for the function's update");
    assert_eq!(delta["source"], json!(SHADOW));
}
