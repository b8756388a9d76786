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
