//! End-to-end: the Greengrass function lifecycle. On-demand (not `Pinned`)
//! functions start when a message arrives and stop when idle; `Timeout`
//! bounds the handling of each delivery.

use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// `function(..)` made on demand.
fn on_demand(name: &str, args: &str) -> Value {
    let mut f = function(name, args);
    f["FunctionConfiguration"]["Pinned"] = json!(false);
    f
}

#[test]
fn an_on_demand_function_starts_on_a_message_and_stops_when_idle() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("got.jsonl");
    let rt = Runtime::start_with(
        &group(
            vec![
                // Two messages 1.5 s apart; the listener idles out in between.
                function("sender", "publish work/item 2 1500"),
                on_demand("listener", &format!("record {}", out.display())),
                on_demand("unused", "record /dev/null"),
            ],
            vec![sub(
                "work",
                &fn_arn("sender"),
                "work/#",
                &fn_arn("listener"),
            )],
        ),
        &json!({ "onDemandIdleMs": 300 }),
    );
    let got = wait_for(LIMIT, || (records(&out).len() >= 2).then_some(()));
    let log = read(&rt.function_log("listener"));
    assert!(
        got.is_some(),
        "both messages handled: {:?}\n{log}",
        records(&out)
    );
    assert!(
        log.contains("on demand: starts when a message arrives"),
        "{log}"
    );
    assert!(
        count(&log, "message arrived: starting on demand") >= 2,
        "{log}"
    );
    assert!(
        log.contains("idle for 300 ms: stopping until the next message"),
        "{log}"
    );
    assert_eq!(count(&log, "started pid"), 2, "one start per burst: {log}");
    assert!(
        !log.contains("restarting in"),
        "an idle stop is not a failure: {log}"
    );
    let unused = read(&rt.function_log("unused"));
    assert!(
        !unused.contains("started pid"),
        "nothing for it, so never started: {unused}"
    );
}

#[test]
fn a_delivery_over_the_functions_timeout_kills_and_restarts_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("slow.jsonl");
    let mut slow = function("slowpoke", &format!("slow 5000 {}", out.display()));
    slow["FunctionConfiguration"]["Timeout"] = json!(1);
    let rt = Runtime::start(&group(
        vec![
            function("sender", "publish job/1 1 0"),
            slow,
            function("quick", "record /dev/null"),
        ],
        vec![
            sub("job", &fn_arn("sender"), "job/#", &fn_arn("slowpoke")),
            sub("job2", &fn_arn("sender"), "job/#", &fn_arn("quick")),
        ],
    ));
    let log = rt.function_log("slowpoke");
    let killed = wait_for(LIMIT, || read(&log).contains("restarting in").then_some(()));
    let text = read(&log);
    assert!(killed.is_some(), "{text}");
    assert!(
        text.contains("a delivery was not handled within its Timeout of 1 s; killing the child"),
        "{text}"
    );
    assert_eq!(records(&out).len(), 1, "it did receive the message");
    // A quick handler of the same message is never killed.
    let quick = read(&rt.function_log("quick"));
    assert!(!quick.contains("Timeout"), "{quick}");
}

#[test]
fn on_demand_children_respect_max_concurrent_limit() {
    let dir = tempfile::tempdir().expect("tmp");
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let rt = Runtime::start_config(
        &group(
            vec![
                function("sender", "publish work/item 1 0"),
                on_demand("first", &format!("record {}", a.display())),
                on_demand("second", &format!("record {}", b.display())),
            ],
            vec![
                sub("a", &fn_arn("sender"), "work/#", &fn_arn("first")),
                sub("b", &fn_arn("sender"), "work/#", &fn_arn("second")),
            ],
        ),
        &json!({ "runtime": { "maxConcurrentLimit": 1 }, "evergreen": { "onDemandIdleMs": 300 } }),
        &[],
    );
    let both = wait_for(LIMIT, || {
        (records(&a).len() == 1 && records(&b).len() == 1).then_some(())
    });
    assert!(both.is_some(), "both handled their message eventually");
    let logs = format!(
        "{}{}",
        read(&rt.function_log("first")),
        read(&rt.function_log("second"))
    );
    assert!(
        logs.contains("waiting for a free on-demand slot (1 may run at once)"),
        "one waited for the other: {logs}"
    );
}

/// Appends one `eg-fn feed` line: `payload` published on `topic`.
fn feed(file: &std::path::Path, topic: &str, payload: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .expect("feed file");
    let line = json!({ "topic": topic, "payload": payload });
    f.write_all(format!("{line}\n").as_bytes())
        .expect("feed line");
}

/// Issue 17: an on-demand function that handled two or more messages was
/// started again right after its idle stop ("messages arrived while
/// stopping" with none arriving). It must stay stopped until a new message
/// comes, and then start for it.
#[test]
fn an_on_demand_function_that_handled_several_messages_stays_stopped_after_its_idle_stop() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("feed.jsonl");
    let out = dir.path().join("got.jsonl");
    let rt = Runtime::start_with(
        &group(
            vec![
                function("feeder", &format!("feed {}", input.display())),
                on_demand("listener", &format!("record {}", out.display())),
            ],
            vec![sub(
                "work",
                &fn_arn("feeder"),
                "work/#",
                &fn_arn("listener"),
            )],
        ),
        &json!({ "onDemandIdleMs": 300 }),
    );
    let log = rt.function_log("listener");
    // The feeder is pinned: once it is running, what it reads is published.
    let feeding = wait_for(LIMIT, || {
        read(&rt.function_log("feeder"))
            .contains("feeding from")
            .then_some(())
    });
    assert!(feeding.is_some(), "{}", read(&rt.function_log("feeder")));
    for n in 0..3 {
        feed(&input, "work/item", &format!("m{n}"));
    }
    let handled = wait_for(LIMIT, || (records(&out).len() == 3).then_some(()));
    assert!(handled.is_some(), "{:?}\n{}", records(&out), read(&log));
    let idle = wait_for(LIMIT, || {
        read(&log)
            .contains("idle for 300 ms: stopping until the next message")
            .then_some(())
    });
    assert!(idle.is_some(), "{}", read(&log));
    // The wrong restart came within milliseconds of the idle stop; give it
    // far longer than that (several idle periods) to show up.
    let stopped = wait_for(LIMIT, || {
        read(&log)
            .lines()
            .any(|l| l.contains("child exited") || l.contains("child killed"))
            .then_some(())
    });
    assert!(stopped.is_some(), "{}", read(&log));
    let restarted = wait_for(Duration::from_millis(1500), || {
        let text = read(&log);
        (count(&text, "started pid") > 1).then_some(text)
    });
    let text = read(&log);
    assert!(
        restarted.is_none(),
        "started again with nothing to do: {text}"
    );
    assert!(!text.contains("messages arrived while stopping"), "{text}");
    assert_eq!(count(&text, "started pid"), 1, "{text}");

    // A new message starts it again, and it is handled.
    feed(&input, "work/item", "later");
    let later = wait_for(LIMIT, || (records(&out).len() == 4).then_some(()));
    let text = read(&log);
    assert!(later.is_some(), "{:?}\n{text}", records(&out));
    assert_eq!(count(&text, "started pid"), 2, "{text}");
    assert_eq!(
        count(&text, "message arrived: starting on demand"),
        2,
        "{text}"
    );
}

/// Issue 17: a handler `Timeout` is not a crash. Greengrass V1 kept invoking
/// a function whose handler timed out; five timeouts in five minutes must not
/// mark it Failed (the crash-loop limit is 5 by default) with its messages
/// queued behind a ten-minute cool-down. A real Python function (the V1
/// greengrasssdk) times out seven times in a row and then handles a fast
/// message.
#[test]
fn handler_timeouts_are_not_crashes_the_function_keeps_being_invoked() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let code = dir.path().join("functions/sleepy");
    vendor_greengrasssdk(&sdk, &code).expect("vendor greengrasssdk");
    std::fs::write(
        code.join("sleepy.py"),
        r#"
import json
import time

import greengrasssdk

iot = greengrasssdk.client("iot-data")


def handler(event, context):
    # Slow requests outlast the 1 s Timeout; fast ones answer at once.
    time.sleep(event.get("sleep", 0))
    iot.publish(topic="done/" + str(event["n"]), payload=json.dumps(event))
"#,
    )
    .expect("function");
    let input = dir.path().join("feed.jsonl");
    let out = dir.path().join("done.jsonl");
    let sleepy = json!({
        "Id": "sleepy",
        "FunctionArn": fn_arn("sleepy"),
        "FunctionConfiguration": {
            "Executable": "sleepy.handler",
            "CodeUri": code,
            "Runtime": "python3.8",
            "Pinned": true,
            "Timeout": 1,
            "EncodingType": "json",
            "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
        }
    });
    let port = free_port().expect("a free port");
    let rt = Runtime::start_config(
        &group(
            vec![
                function("feeder", &format!("feed {}", input.display())),
                sleepy,
                function("sink", &format!("record {}", out.display())),
            ],
            vec![
                sub("in", &fn_arn("feeder"), "job/#", &fn_arn("sleepy")),
                sub("out", &fn_arn("sleepy"), "done/#", &fn_arn("sink")),
            ],
        ),
        // The default crash loop (5 within 5 min, then Failed for 10 min),
        // spelled out so the test does not depend on the defaults.
        &json!({
            "coreThing": { "ggDaemonPort": port },
            "evergreen": { "restart": { "crashLoopLimit": 5, "crashLoopWindowMs": 300000, "failedCooldownMs": 600000 } }
        }),
        &[],
    );
    let log = rt.function_log("sleepy");
    let ready = wait_for(LIMIT, || {
        let feeder = read(&rt.function_log("feeder")).contains("feeding from");
        (feeder && read(&log).contains("ready after")).then_some(())
    });
    assert!(ready.is_some(), "{}", read(&log));
    const SLOW: usize = 7;
    let mut timeouts = 0;
    for n in 0..SLOW {
        // One at a time: each must reach a fresh worker and time out.
        feed(
            &input,
            "job/slow",
            &json!({ "n": n, "sleep": 30 }).to_string(),
        );
        let timed_out = wait_for(LIMIT, || {
            let c = count(&read(&log), "not handled within its Timeout of 1 s");
            (c > timeouts).then_some(c)
        });
        timeouts = timed_out.unwrap_or_else(|| panic!("timeout {n} not seen: {}", read(&log)));
    }
    assert!(timeouts >= SLOW, "{}", read(&log));
    feed(&input, "job/fast", &json!({ "n": 99 }).to_string());
    let fast = wait_for(LIMIT, || {
        records(&out).into_iter().find(|r| r["topic"] == "done/99")
    });
    let text = read(&log);
    assert!(
        fast.is_some(),
        "the fast message after {SLOW} timeouts: {text}"
    );
    assert!(!text.contains("crash loop"), "{text}");
    assert!(!text.contains("marked Failed"), "{text}");
    assert!(
        records(&out).iter().all(|r| r["topic"] == "done/99"),
        "no slow request finished: {:?}",
        records(&out)
    );
}

/// Issue 17: a normal stop — an idle stop, a removal by a deployment, the
/// runtime's shutdown — was logged at ERROR. Every one of them is normal
/// operation and logged at INFO, in the component's log and the runtime's.
#[test]
fn a_normal_stop_is_logged_at_info_not_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("feed.jsonl");
    let out = dir.path().join("got.jsonl");
    let mut rt = Runtime::start_with(
        &group(
            vec![
                function("feeder", &format!("feed {}", input.display())),
                on_demand("idler", &format!("record {}", out.display())),
            ],
            vec![sub("work", &fn_arn("feeder"), "work/#", &fn_arn("idler"))],
        ),
        &json!({ "onDemandIdleMs": 300 }),
    );
    let feeding = wait_for(LIMIT, || {
        read(&rt.function_log("feeder"))
            .contains("feeding from")
            .then_some(())
    });
    assert!(feeding.is_some(), "{}", read(&rt.function_log("feeder")));
    feed(&input, "work/item", "one");
    // Idle stop.
    let idle_log = rt.function_log("idler");
    let idled = wait_for(LIMIT, || {
        let text = read(&idle_log);
        (text.contains("idle for 300 ms") && text.contains("child exited")).then_some(())
    });
    assert!(idled.is_some(), "{}", read(&idle_log));
    // Removal by a deployment (the empty group).
    let reset = std::process::Command::new(evergreen_bin())
        .arg("reset")
        // No terminal to confirm on: a script says --yes.
        .arg("--yes")
        .arg("--config")
        .arg(rt.path("config.json"))
        .output()
        .expect("evergreen reset");
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let feeder_log = rt.function_log("feeder");
    let removed = wait_for(LIMIT, || {
        read(&feeder_log).contains("child exited").then_some(())
    });
    assert!(removed.is_some(), "{}", read(&feeder_log));
    // And the runtime's own stop.
    let status = rt.stop_with(nix::sys::signal::Signal::SIGTERM, LIMIT);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let system = read(&rt.log_path("system/runtime.log"));
    assert!(system.contains("all components stopped"), "{system}");
    for (name, text) in [
        ("idler", read(&idle_log)),
        ("feeder", read(&feeder_log)),
        ("runtime", system),
    ] {
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("][ERROR]-(")).collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}\n{text}");
        let stops: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("child exited") || l.contains("child killed"))
            .collect();
        assert!(!stops.is_empty(), "{name}: {text}");
        assert!(
            stops.iter().all(|l| l.contains("][INFO]-(")),
            "{name}: {stops:#?}"
        );
    }
}
