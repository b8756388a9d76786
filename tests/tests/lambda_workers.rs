//! End-to-end: concurrent workers of Greengrass V1 Python functions, as V1
//! ran them (docs/groups.md, "Lifecycle"): an on-demand function gets one
//! worker (process) per invocation in progress, up to its limit
//! (`evergreen.maxWorkersPerFunction`, `evergreen.components.<Id>.maxWorkers`)
//! and within `runtime.maxConcurrentLimit`, each with its own module-level
//! state; a pinned function keeps exactly one worker that handles its
//! invocations one after another; a Lambda-to-Lambda invoke is answered by a
//! free or new worker while the target's other worker is busy; extra workers
//! stop after `evergreen.onDemandIdleMs`; `evergreen status --json` lists
//! every worker's pid; extra workers take slots of `runtime.maxConcurrentLimit`
//! like any on-demand child; an operator's `evergreen stop` ends every worker.
//!
//! The functions are unmodified-style V1 code with the real `greengrasssdk`
//! 1.6.1 from PyPI vendored beside them (see `tests/tests/lambda_python.rs`
//! for where `.ci/run` installs it); without it the test skips loudly.

use std::path::Path;
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);
/// How long each handler sleeps: long enough that the second message
/// arrives (1 s later) while the first is still being handled.
const SLEEP_S: u64 = 5;

// AWS's greengrassHelloWorldCounter sample, as V1 users deployed it: a
// module-level counter, a publish, a long sleep. Only the payload carries
// more (the pid, the times) so the test can tell the workers apart.
const COUNTER: &str = r#"
import greengrasssdk
import json
import os
import platform
import time

client = greengrasssdk.client('iot-data')
my_platform = platform.platform()
my_counter = 0


def function_handler(event, context):
    global my_counter
    my_counter = my_counter + 1
    start = time.time()
    client.publish(
        topic='hello/world/counter',
        payload=json.dumps({'message': 'Hello world! Sent from Greengrass Core running on platform: {}.  Invocation Count: {}'.format(my_platform, my_counter),
                            'function': context.function_name, 'count': my_counter, 'pid': os.getpid(),
                            'event': event, 'phase': 'start', 'at': start}))
    time.sleep(%SLEEP%)
    client.publish(
        topic='hello/world/counter',
        payload=json.dumps({'function': context.function_name, 'count': my_counter, 'pid': os.getpid(),
                            'event': event, 'phase': 'end', 'at': time.time()}))
    return
"#;

// The target of a Lambda-to-Lambda invoke: a routed message keeps one worker
// busy; the invoke is answered at once.
const SLOW: &str = r#"
import greengrasssdk
import json
import os
import time

client = greengrasssdk.client('iot-data')
served = 0


def handler(event, context):
    global served
    served += 1
    if event.get('sleep'):
        client.publish(topic='slow/started', payload=json.dumps({'pid': os.getpid()}))
        time.sleep(event['sleep'])
        return
    return {'pid': os.getpid(), 'served': served}
"#;

// A pinned function whose own thread drives the others, the way V1 samples
// publish from module-level code; its handler hears when the slow function's
// worker is busy.
const DRIVER: &str = r#"
import greengrasssdk
import json
import threading
import time

iot = greengrasssdk.client('iot-data')
lam = greengrasssdk.client('lambda')
slow_busy = threading.Event()


def run():
    time.sleep(1)
    iot.publish(topic='slow/in', payload=json.dumps({'sleep': 8}))
    iot.publish(topic='counter/in', payload=json.dumps({'n': 1}))
    time.sleep(1)
    iot.publish(topic='counter/in', payload=json.dumps({'n': 2}))
    for n in range(3):
        iot.publish(topic='limited/in', payload=json.dumps({'n': n}))
        time.sleep(0.3)
    if not slow_busy.wait(20):
        iot.publish(topic='driver/invoke', payload=json.dumps({'error': 'the slow function never started'}))
        return
    t = time.time()
    r = lam.invoke(FunctionName='%SLOW%', InvocationType='RequestResponse', Payload=json.dumps({'quick': True}))
    body = r['Payload'].read()
    iot.publish(topic='driver/invoke', payload=json.dumps(
        {'took': time.time() - t, 'error': r['FunctionError'], 'payload': json.loads(body.decode())}))


threading.Thread(target=run).start()


def handler(event, context):
    slow_busy.set()
"#;

/// The `phase` records of `function`, in arrival order.
fn phases(out: &Path, function: &str, phase: &str) -> Vec<Value> {
    on_topic(out, "hello/world/counter")
        .into_iter()
        .filter(|r| r["function"] == function && r["phase"] == phase)
        .collect()
}

fn status_component(rt: &Runtime, name: &str) -> Option<Value> {
    let out = evergreen_with(&rt.dir.path().join("config.json"), &["status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).ok()?;
    doc["components"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
}

#[test]
fn on_demand_functions_run_a_worker_per_concurrent_invocation_and_pinned_ones_one() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let counter_code = COUNTER.replace("%SLEEP%", &SLEEP_S.to_string());
    let handler = "greengrassHelloWorldCounter.function_handler";
    let file = "greengrassHelloWorldCounter.py";
    let on_demand = python_package(work.path(), "ondemand", &sdk, &[(file, &counter_code)]);
    let pinned = python_package(work.path(), "pinned", &sdk, &[(file, &counter_code)]);
    let limited = python_package(work.path(), "limited", &sdk, &[(file, &counter_code)]);
    let slow = python_package(work.path(), "slow", &sdk, &[("slow.py", SLOW)]);
    let driver = python_package(
        work.path(),
        "driver",
        &sdk,
        &[("driver.py", &DRIVER.replace("%SLOW%", &fn_arn("slow")))],
    );
    let out = work.path().join("got.jsonl");
    let driver_arn = fn_arn("driver");
    let rec = fn_arn("rec");
    let rt = Runtime::start_config(
        &group(
            vec![
                python_function("ondemand", &on_demand, handler, false, 20),
                python_function("pinned", &pinned, handler, true, 20),
                python_function("limited", &limited, handler, false, 20),
                python_function("slow", &slow, "slow.handler", false, 20),
                python_function("driver", &driver, "driver.handler", true, 30),
                function("rec", &format!("record {}", out.display())),
            ],
            vec![
                sub("c1", &driver_arn, "counter/in", &fn_arn("ondemand")),
                sub("c2", &driver_arn, "counter/in", &fn_arn("pinned")),
                sub("l", &driver_arn, "limited/in", &fn_arn("limited")),
                sub("s", &driver_arn, "slow/in", &fn_arn("slow")),
                sub("busy", &fn_arn("slow"), "slow/started", &driver_arn),
                sub("r1", &fn_arn("ondemand"), "hello/world/counter", &rec),
                sub("r2", &fn_arn("pinned"), "hello/world/counter", &rec),
                sub("r3", &fn_arn("limited"), "hello/world/counter", &rec),
                sub("r4", &driver_arn, "driver/invoke", &rec),
            ],
        ),
        &json!({
            "coreThing": { "ggDaemonPort": free_port().expect("a free port") },
            "evergreen": {
                "onDemandIdleMs": 3000,
                "components": { "limited": { "maxWorkers": 2 } }
            }
        }),
        &[],
    );
    let logs = || {
        ["ondemand", "pinned", "limited", "slow", "driver"]
            .iter()
            .map(|n| format!("--- {n}:\n{}", read(&rt.function_log(n))))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // While both invocations of the on-demand function are in progress,
    // `evergreen status` shows its two workers.
    let busy = wait_for(LIMIT, || {
        (phases(&out, "ondemand", "start").len() >= 2).then_some(())
    });
    assert!(
        busy.is_some(),
        "two starts of the on-demand function: {:?}\n{}",
        records(&out),
        logs()
    );
    let shown = status_component(&rt, "ondemand");
    let workers = shown
        .as_ref()
        .and_then(|c| c["workers"].as_array().cloned())
        .unwrap_or_default();
    assert_eq!(
        workers.len(),
        2,
        "status lists both workers while both are busy: {shown:?}"
    );

    let all_done = wait_for(LIMIT, || {
        let done = phases(&out, "ondemand", "end").len() >= 2
            && phases(&out, "pinned", "end").len() >= 2
            && phases(&out, "limited", "end").len() >= 3
            && !on_topic(&out, "driver/invoke").is_empty();
        done.then_some(())
    });
    assert!(
        all_done.is_some(),
        "every invocation ended: {:?}\n{}",
        records(&out),
        logs()
    );

    // HelloWorldCounter on demand: two workers (two pids), each counting 1.
    let starts = phases(&out, "ondemand", "start");
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_ne!(
        starts[0]["pid"], starts[1]["pid"],
        "two workers: {starts:?}"
    );
    assert!(
        starts.iter().all(|s| s["count"] == 1),
        "each worker has its own module-level counter: {starts:?}"
    );
    let overlap =
        starts[1]["at"].as_f64().unwrap_or(f64::MAX) - starts[0]["at"].as_f64().unwrap_or(0.0);
    assert!(
        overlap < SLEEP_S as f64,
        "the second invocation began while the first slept: {starts:?}"
    );

    // The same load on a pinned function: one worker, counts 1 then 2, one
    // after the other.
    let pinned_starts = phases(&out, "pinned", "start");
    let pinned_ends = phases(&out, "pinned", "end");
    assert_eq!(pinned_starts.len(), 2, "{pinned_starts:?}");
    assert_eq!(
        pinned_starts[0]["pid"], pinned_starts[1]["pid"],
        "one worker: {pinned_starts:?}"
    );
    assert_eq!(
        pinned_starts
            .iter()
            .map(|s| s["count"].clone())
            .collect::<Vec<_>>(),
        vec![json!(1), json!(2)],
        "one counter, kept: {pinned_starts:?}"
    );
    assert!(
        pinned_starts[1]["at"].as_f64() >= pinned_ends[0]["at"].as_f64(),
        "serially: {pinned_starts:?} {pinned_ends:?}"
    );

    // The limit: three messages with maxWorkers 2 → two workers; the third
    // waits for one of them, and nothing is lost.
    let limited_starts = phases(&out, "limited", "start");
    let limited_ends = phases(&out, "limited", "end");
    assert_eq!(limited_starts.len(), 3, "nothing lost: {limited_starts:?}");
    let mut pids: Vec<u64> = limited_starts
        .iter()
        .filter_map(|s| s["pid"].as_u64())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 2, "at most two workers: {limited_starts:?}");
    let mut events: Vec<u64> = limited_starts
        .iter()
        .filter_map(|s| s["event"]["n"].as_u64())
        .collect();
    events.sort_unstable();
    assert_eq!(events, vec![0, 1, 2], "{limited_starts:?}");
    let first_end = limited_ends
        .iter()
        .filter_map(|e| e["at"].as_f64())
        .fold(f64::MAX, f64::min);
    assert!(
        limited_starts[2]["at"].as_f64().unwrap_or(0.0) >= first_end - 0.05,
        "the third waited for a free worker: {limited_starts:?} {limited_ends:?}"
    );
    assert_eq!(
        limited_starts[2]["count"], 2,
        "a busy worker's second invocation: {limited_starts:?}"
    );

    // Lambda-to-Lambda: answered by another worker while the slow function's
    // first worker still sleeps (8 s).
    let invoke = on_topic(&out, "driver/invoke");
    let invoke = &invoke[0];
    assert_eq!(invoke["error"], "", "{invoke}\n{}", logs());
    let took = invoke["took"].as_f64().unwrap_or(f64::MAX);
    assert!(
        took < 4.0,
        "the invoke did not wait behind the busy worker ({took} s): {invoke}"
    );
    assert_eq!(
        invoke["payload"]["served"], 1,
        "a fresh worker answered: {invoke}"
    );
    let slow_log = read(&rt.function_log("slow"));
    assert!(
        slow_log.contains("every worker is busy: started worker pid"),
        "{slow_log}"
    );

    // Idle workers stop after onDemandIdleMs (3 s), extras included.
    let idle = wait_for(LIMIT, || {
        let c = status_component(&rt, "ondemand")?;
        (c["workers"].as_array().is_some_and(Vec::is_empty) && c["pid"].is_null()).then_some(c)
    });
    let ondemand_log = read(&rt.function_log("ondemand"));
    assert!(
        idle.is_some(),
        "both workers stopped when idle:\n{ondemand_log}"
    );
    assert!(
        ondemand_log.contains("a worker was idle for 3000 ms: stopping it"),
        "{ondemand_log}"
    );
    let pinned_log = read(&rt.function_log("pinned"));
    assert_eq!(
        pinned_log.matches("started pid").count(),
        1,
        "a pinned function keeps one worker: {pinned_log}"
    );
    assert!(!pinned_log.contains("started worker pid"), "{pinned_log}");
}

// Publishes three messages 0.2 s apart to the counter function.
const BURST: &str = r#"
import greengrasssdk
import json
import threading
import time

iot = greengrasssdk.client('iot-data')


def run():
    time.sleep(1)
    for n in range(3):
        iot.publish(topic='counter/in', payload=json.dumps({'n': n}))
        time.sleep(0.2)


threading.Thread(target=run).start()


def handler(event, context):
    return
"#;

#[test]
fn extra_workers_share_max_concurrent_limit_and_an_operator_stop_ends_every_worker() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let handler = "greengrassHelloWorldCounter.function_handler";
    let file = "greengrassHelloWorldCounter.py";
    let busy = python_package(
        work.path(),
        "busy",
        &sdk,
        &[(file, &COUNTER.replace("%SLEEP%", "3"))],
    );
    let burst = python_package(work.path(), "burst", &sdk, &[("burst.py", BURST)]);
    let out = work.path().join("got.jsonl");
    let rt = Runtime::start_config(
        &group(
            vec![
                python_function("busy", &busy, handler, false, 20),
                python_function("burst", &burst, "burst.handler", true, 20),
                function("rec", &format!("record {}", out.display())),
            ],
            vec![
                sub("in", &fn_arn("burst"), "counter/in", &fn_arn("busy")),
                sub(
                    "out",
                    &fn_arn("busy"),
                    "hello/world/counter",
                    &fn_arn("rec"),
                ),
            ],
        ),
        // Two on-demand workers in all, whatever the function's own limit (25).
        &json!({
            "coreThing": { "ggDaemonPort": free_port().expect("a free port") },
            "runtime": { "maxConcurrentLimit": 2 },
            "evergreen": { "onDemandIdleMs": 60000 }
        }),
        &[],
    );
    let done = wait_for(LIMIT, || {
        (phases(&out, "busy", "end").len() >= 3).then_some(())
    });
    let log = read(&rt.function_log("busy"));
    assert!(
        done.is_some(),
        "three invocations: {:?}\n{log}",
        records(&out)
    );
    let starts = phases(&out, "busy", "start");
    let mut pids: Vec<u64> = starts.iter().filter_map(|s| s["pid"].as_u64()).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(
        pids.len(),
        2,
        "runtime.maxConcurrentLimit 2 bounds the workers: {starts:?}"
    );
    assert!(
        log.contains("waiting for a free on-demand slot (2 may run at once)"),
        "{log}"
    );

    // Both workers sit idle (onDemandIdleMs is a minute): an operator's stop
    // ends both, and answers once they are gone.
    let workers = status_component(&rt, "busy")
        .and_then(|c| c["workers"].as_array().cloned())
        .unwrap_or_default();
    assert_eq!(workers.len(), 2, "two idle workers: {workers:?}");
    let config = rt.dir.path().join("config.json");
    let stop = evergreen_with(&config, &["stop", "busy"]);
    assert!(stop.status.success(), "{}", output_text(&stop));
    for pid in workers.iter().filter_map(Value::as_i64) {
        let pid = i32::try_from(pid).expect("pid");
        assert!(!alive(pid), "worker {pid} is gone when stop answers");
    }
    let stopped = status_component(&rt, "busy").expect("status");
    assert_eq!(stopped["stoppedByOperator"], true, "{stopped}");
    assert_eq!(stopped["workers"], json!([]), "{stopped}");
}
