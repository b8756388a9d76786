//! End-to-end: Greengrass V1's stream manager, for groups that configure
//! the `GGStreamManager` system function, used by unmodified V1-style
//! Python functions through the real `greengrasssdk` 1.6.1
//! `StreamManagerClient` (PyPI). Documented behaviour checked:
//! * `MessageStreamDefinition`'s `Persistence.File`: "the file system will
//!   be used to persist messages long-term and is resilient to restarts" —
//!   every sequence number acknowledged before a `kill -9` of the runtime
//!   is read back, with its payload, after it starts again, and numbering
//!   goes on from there;
//! * functions in a GreengrassContainer reach it as NoContainer ones do;
//! * only the group's functions may connect (their token), and
//!   `STREAM_MANAGER_SERVER_PORT` is honoured.
//!
//! Every operation and its errors are checked against the service alone in
//! `supervisor/streams/tests/sdk_client.rs`.

use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);
const COUNT: usize = 500;

// A producer as V1's stream manager samples wrote it: a pinned function whose
// module-level code creates a File stream and appends to it. On its first run
// it appends COUNT messages; after a restart of the runtime it reads the
// stream back and appends once more.
const PRODUCER: &str = r#"
import json
import os
import threading

import greengrasssdk
from greengrasssdk.stream_manager import (
    MessageStreamDefinition, Persistence, ReadMessagesOptions, ResourceNotFoundException,
    StrategyOnFull, StreamManagerClient,
)

iot = greengrasssdk.client('iot-data')
NAME = 'durable'


def report(what):
    iot.publish(topic='sm/producer', payload=json.dumps(what))


def run():
    try:
        client = StreamManagerClient()
        try:
            info = client.describe_message_stream(NAME)
            msgs = client.read_messages(NAME, ReadMessagesOptions(
                desired_start_sequence_number=0, min_message_count=1, max_message_count=100000))
            good = all(m.payload == ('m%d' % m.sequence_number).encode() for m in msgs)
            seq = client.append_message(NAME, b'after-restart')
            report({'phase': 'reread', 'count': len(msgs), 'first': msgs[0].sequence_number,
                    'last': msgs[-1].sequence_number, 'payloads_match': good, 'next': seq,
                    'newest': info.storage_status.newest_sequence_number})
        except ResourceNotFoundException:
            client.create_message_stream(MessageStreamDefinition(
                name=NAME, strategy_on_full=StrategyOnFull.RejectNewData,
                persistence=Persistence.File, stream_segment_size=4096))
            last = -1
            for i in range(%COUNT%):
                last = client.append_message(NAME, ('m%d' % i).encode())
            report({'phase': 'appended', 'last': last, 'port': os.environ.get('STREAM_MANAGER_SERVER_PORT')})
    except Exception as e:  # noqa: BLE001 - the test reads the reason
        report({'phase': 'error', 'error': type(e).__name__ + ': ' + str(e)})


threading.Thread(target=run).start()


def handler(event, context):
    return
"#;

// A contained function: its own namespaces, the same client.
const CONTAINED: &str = r#"
import json
import socket
import threading

import greengrasssdk
from greengrasssdk.stream_manager import (
    MessageStreamDefinition, Persistence, ReadMessagesOptions, StrategyOnFull, StreamManagerClient,
)

iot = greengrasssdk.client('iot-data')


def run():
    try:
        client = StreamManagerClient()
        client.create_message_stream(MessageStreamDefinition(
            name='boxed', strategy_on_full=StrategyOnFull.OverwriteOldestData, persistence=Persistence.Memory))
        seqs = [client.append_message('boxed', b'x%d' % i) for i in range(3)]
        msgs = client.read_messages('boxed', ReadMessagesOptions(min_message_count=3, max_message_count=3))
        iot.publish(topic='sm/boxed', payload=json.dumps({
            'phase': 'boxed', 'seqs': seqs, 'payloads': [m.payload.decode() for m in msgs],
            'hostname': socket.gethostname()}))
    except Exception as e:  # noqa: BLE001
        iot.publish(topic='sm/boxed', payload=json.dumps({'phase': 'error', 'error': type(e).__name__ + ': ' + str(e)}))


threading.Thread(target=run).start()


def handler(event, context):
    return
"#;

fn reported(out: &std::path::Path, topic: &str, phase: &str) -> Option<Value> {
    on_topic(out, topic)
        .into_iter()
        .find(|r| r["phase"] == phase || r["phase"] == "error")
}

/// `Persistence.File` is "resilient to restarts": all `COUNT` acknowledged
/// appends survive a `kill -9` of the runtime, payloads intact, and the
/// next append continues the numbering.
#[test]
fn file_streams_keep_every_acknowledged_message_across_kill_9() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let work = tempfile::tempdir().expect("tmp");
    let code = python_package(
        work.path(),
        "producer",
        &sdk,
        &[(
            "producer.py",
            &PRODUCER.replace("%COUNT%", &COUNT.to_string()),
        )],
    );
    let out = work.path().join("got.jsonl");
    let sm_port = free_port().expect("a free port");
    let g = group(
        vec![
            stream_manager_function(sm_port),
            python_function("producer", &code, "producer.handler", true, 30),
            function("rec", &format!("record {}", out.display())),
        ],
        vec![sub("r", &fn_arn("producer"), "sm/#", &fn_arn("rec"))],
    );
    let config = json!({ "coreThing": { "ggDaemonPort": free_port().expect("a free port") } });
    let mut rt = Runtime::start_config_in(dir, &g, &config, &[]);
    let first =
        wait_for(LIMIT, || reported(&out, "sm/producer", "appended")).unwrap_or_else(|| {
            panic!(
                "no report from the producer:\n{}",
                read(&rt.function_log("producer"))
            )
        });
    assert_eq!(first["phase"], "appended", "{first}");
    assert_eq!(first["last"], COUNT as i64 - 1, "{first}");
    assert_eq!(
        first["port"],
        sm_port.to_string(),
        "the SDK is told the port: {first}"
    );

    // kill -9: no shutdown, no final sync.
    let status = rt.stop_with(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(10));
    assert!(status.is_some(), "the runtime did not die of SIGKILL");
    let dir = std::mem::replace(&mut rt.dir, tempfile::tempdir().expect("tmp"));
    drop(rt);
    let _ = std::fs::remove_file(&out);

    let rt = Runtime::start_config_in(dir, &g, &config, &[]);
    let again = wait_for(LIMIT, || reported(&out, "sm/producer", "reread")).unwrap_or_else(|| {
        panic!(
            "no report after the restart:\n{}",
            read(&rt.function_log("producer"))
        )
    });
    assert_eq!(again["phase"], "reread", "{again}");
    assert_eq!(
        again["count"], COUNT,
        "every acknowledged message is back: {again}"
    );
    assert_eq!(again["first"], 0, "{again}");
    assert_eq!(again["last"], COUNT as i64 - 1, "{again}");
    assert_eq!(again["newest"], COUNT as i64 - 1, "{again}");
    assert_eq!(again["payloads_match"], true, "{again}");
    assert_eq!(again["next"], COUNT as i64, "numbering goes on: {again}");
}

/// A GreengrassContainer function uses the stream manager from its own
/// namespaces, as V1's functions did.
#[test]
fn a_contained_function_uses_the_stream_manager() {
    evergreen_tests::require_containers!();
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let work = dir.path().join("work");
    let code = python_package(&work, "boxed", &sdk, &[("boxed.py", CONTAINED)]);
    let out = work.join("got.jsonl");
    let mut boxed = python_function("boxed", &code, "boxed.handler", true, 30);
    boxed["FunctionConfiguration"]["Environment"]["Execution"]["IsolationMode"] =
        json!("GreengrassContainer");
    boxed["FunctionConfiguration"]["MemorySize"] = json!(262144);
    let g = group(
        vec![
            stream_manager_function(free_port().expect("a free port")),
            boxed,
            function("rec", &format!("record {}", out.display())),
        ],
        vec![sub("r", &fn_arn("boxed"), "sm/#", &fn_arn("rec"))],
    );
    let rt = Runtime::start_config_in(
        dir,
        &g,
        &json!({ "coreThing": { "ggDaemonPort": free_port().expect("a free port") } }),
        &[],
    );
    let got = wait_for(LIMIT, || reported(&out, "sm/boxed", "boxed"))
        .unwrap_or_else(|| panic!("no report:\n{}", read(&rt.function_log("boxed"))));
    assert_eq!(got["phase"], "boxed", "{got}");
    assert_eq!(got["seqs"], json!([0, 1, 2]), "{got}");
    assert_eq!(got["payloads"], json!(["x0", "x1", "x2"]), "{got}");
    assert_eq!(
        got["hostname"], "boxed",
        "it ran in its own UTS namespace: {got}"
    );
}

/// Only the group's functions may use it: a client with no token or a
/// made-up one is refused at connect (`ConnectFailedException`).
#[test]
fn a_client_without_a_functions_token_is_refused() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let sm_port = free_port().expect("a free port");
    let g = group(
        vec![
            stream_manager_function(sm_port),
            function("idle", "record /dev/null"),
        ],
        vec![],
    );
    let rt = Runtime::start_config(
        &g,
        &json!({ "coreThing": { "ggDaemonPort": free_port().expect("a free port") } }),
        &[],
    );
    let script = work.path().join("probe.py");
    std::fs::write(
        &script,
        r#"
import os, sys
from greengrasssdk.stream_manager import StreamManagerClient, StreamManagerException
try:
    StreamManagerClient(connect_timeout=2, request_timeout=5)
    print('connected')
except StreamManagerException as e:
    print(type(e).__name__)
except Exception as e:
    print('other', type(e).__name__, e)
"#,
    )
    .expect("write probe");
    // The listener comes up with the deployment.
    let up = wait_for(LIMIT, || {
        std::net::TcpStream::connect(("127.0.0.1", sm_port)).ok()
    });
    assert!(
        up.is_some(),
        "the stream manager listens on STREAM_MANAGER_SERVER_PORT {sm_port}"
    );
    for token in [None, Some("made-up")] {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(&script)
            .env("PYTHONPATH", &sdk)
            .env("STREAM_MANAGER_SERVER_PORT", sm_port.to_string())
            .env_remove("AWS_CONTAINER_AUTHORIZATION_TOKEN");
        if let Some(t) = token {
            cmd.env("AWS_CONTAINER_AUTHORIZATION_TOKEN", t);
        }
        let got = cmd.output().expect("python3");
        assert_eq!(
            String::from_utf8_lossy(&got.stdout).trim(),
            "ConnectFailedException",
            "token {token:?}: {}",
            String::from_utf8_lossy(&got.stderr)
        );
    }
    drop(rt);
}

/// The same through `evergreen deploy` to a running service: the first
/// deployment with `GGStreamManager` starts it, one without it stops it
/// (its port closes), and one with it again finds every message of the
/// `File` stream where it was.
#[test]
fn deployments_start_stop_and_restart_the_stream_manager_keeping_file_streams() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let out = work.path().join("got.jsonl");
    let sm_port = free_port().expect("a free port");
    let rt = Runtime::start_config(
        &json!({}),
        &json!({
            "coreThing": { "ggDaemonPort": free_port().expect("a free port") },
            "evergreen": { "controlSocket": work.path().join("control.sock") }
        }),
        &[],
    );
    let rd = rt.dir.path().to_path_buf();
    let code = python_package(
        &rd,
        "producer",
        &sdk,
        &[("producer.py", &PRODUCER.replace("%COUNT%", "50"))],
    );
    let with = |sm: bool| {
        let mut functions = vec![
            python_function("producer", &code, "producer.handler", true, 30),
            function("rec", &format!("record {}", out.display())),
        ];
        if sm {
            functions.push(stream_manager_function(sm_port));
        }
        group(
            functions,
            vec![sub("r", &fn_arn("producer"), "sm/#", &fn_arn("rec"))],
        )
    };
    let deploy = |g: &Value, n: usize| {
        let file = rd.join(format!("group-{n}.json"));
        std::fs::write(&file, g.to_string()).expect("write group");
        let got = evergreen_with(
            &rd.join("config.json"),
            &["deploy", &file.display().to_string()],
        );
        let t = output_text(&got);
        assert!(
            got.status.success() && t.contains("Success"),
            "deployment {n}: {t}"
        );
    };
    let listening = || std::net::TcpStream::connect(("127.0.0.1", sm_port)).is_ok();

    // Deploy once the runtime's control socket answers (right after the start it may not yet).
    wait_for(LIMIT, || {
        evergreen_with(&rd.join("config.json"), &["status"])
            .status
            .success()
            .then_some(())
    })
    .expect("the runtime's control socket answers");
    deploy(&with(true), 1);
    let first = wait_for(LIMIT, || reported(&out, "sm/producer", "appended"))
        .unwrap_or_else(|| panic!("no report:\n{}", read(&rt.function_log("producer"))));
    assert_eq!(first["last"], 49, "{first}");

    // Without GGStreamManager the service stops; the function, restarted by
    // the deployment only if it changed, is left as it is.
    deploy(&with(false), 2);
    assert!(
        wait_for(LIMIT, || (!listening()).then_some(())).is_some(),
        "port {sm_port} still open after a deployment without GGStreamManager"
    );

    // Back: a changed producer (a new environment variable) starts again and
    // finds its stream. (The recorder, unchanged, keeps its file open: its
    // reports are read after the first ones, not in a new file.)
    let mut g = with(true);
    g["FunctionDefinitionVersion"]["Functions"][0]["FunctionConfiguration"]["Environment"]
        ["Variables"] = json!({ "ROUND": "3" });
    deploy(&g, 3);
    let again = wait_for(LIMIT, || reported(&out, "sm/producer", "reread")).unwrap_or_else(|| {
        panic!(
            "no report after redeploying:\n{}\n--- runtime:\n{}",
            read(&rt.function_log("producer")),
            read(&rt.log_path("system/runtime.log"))
        )
    });
    assert_eq!(again["count"], 50, "{again}");
    assert_eq!(again["payloads_match"], true, "{again}");
    assert_eq!(again["next"], 50, "{again}");
}
