//! End-to-end: Greengrass V1 Python functions, unmodified, with the real
//! `greengrasssdk` 1.6.1 from PyPI vendored into each function's directory
//! (as V1 users deploy it), under the real runtime and its Lambda IPC
//! endpoint.
//!
//! `.ci/run` installs the SDK with `pip install --target
//! /var/cache/evergreen-tests/greengrasssdk-1.6.1 greengrasssdk==1.6.1`;
//! `EVERGREEN_GREENGRASSSDK` points elsewhere. Without it (or without
//! `python3`) the tests say so loudly and skip. Results travel back the way
//! V1 functions report: publishes, routed to an `eg-fn record` function.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

fn start(group: &Value, port: u16) -> Runtime {
    Runtime::start_config(
        group,
        &json!({ "coreThing": { "ggDaemonPort": port }, "evergreen": { "onDemandIdleMs": 60000 } }),
        &[],
    )
}

// In the style of AWS's greengrassHelloWorld sample: a pinned function whose
// top-level code publishes on a timer, with an empty handler.
const TIMER: &str = r#"
import json
import platform
from threading import Timer

import greengrasssdk

client = greengrasssdk.client("iot-data")
my_platform = platform.platform()
sent = 0


def greengrass_hello_world_run():
    global sent
    sent += 1
    client.publish(topic="hello/world", queueFullPolicy="AllOrException",
                   payload=json.dumps({"n": sent, "platform": my_platform}))
    if sent < 5:
        Timer(0.3, greengrass_hello_world_run).start()


greengrass_hello_world_run()

# As AWS's Twilio notification sample: a text request for the Twilio connector.
client.publish(topic="twilio/txt", payload=json.dumps({
    "request": {"recipient": {"name": "Darla", "phone_number": "+19999999999",
                              "message": "Hello from the edge"}},
    "id": "request123"}))


def function_handler(event, context):
    return
"#;

// An on-demand function that reads the input topic from the client context
// and republishes what it saw; its counter proves the worker stays warm.
const ECHO: &str = r#"
import os
import greengrasssdk

iot = greengrasssdk.client("iot-data")
invocations = 0


def function_handler(event, context):
    global invocations
    invocations += 1
    iot.publish(topic="echo/out", payload=__import__("json").dumps({
        "subject": context.client_context.custom["subject"],
        "event": event,
        "count": invocations,
        "pid": os.getpid(),
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "arn": context.invoked_function_arn,
        "remaining": context.get_remaining_time_in_millis(),
    }))
"#;

#[test]
fn pinned_timer_and_on_demand_echo_with_a_warm_worker() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let timer = python_package(
        work.path(),
        "timer",
        &sdk,
        &[("greengrassHelloWorld.py", TIMER)],
    );
    let echo = python_package(work.path(), "echo", &sdk, &[("echo.py", ECHO)]);
    let out = work.path().join("got.jsonl");
    let rt = start(
        &group(
            vec![
                python_function(
                    "timer",
                    &timer,
                    "greengrassHelloWorld.function_handler",
                    true,
                    3,
                ),
                python_function("echo", &echo, "echo.function_handler", false, 3),
                function("rec", &format!("record {}", out.display())),
            ],
            vec![
                sub(
                    "hello-to-echo",
                    &fn_arn("timer"),
                    "hello/world",
                    &fn_arn("echo"),
                ),
                sub(
                    "hello-to-rec",
                    &fn_arn("timer"),
                    "hello/world",
                    &fn_arn("rec"),
                ),
                sub("echo-to-rec", &fn_arn("echo"), "echo/out", &fn_arn("rec")),
                sub("twilio", &fn_arn("timer"), "twilio/txt", &fn_arn("rec")),
            ],
        ),
        free_port().expect("a free port"),
    );
    let echoed = wait_for(LIMIT, || {
        let got = on_topic(&out, "echo/out");
        (got.len() >= 5).then_some(got)
    });
    let log = read(&rt.function_log("echo"));
    let timer_log = read(&rt.function_log("timer"));
    let echoed = echoed.unwrap_or_else(|| {
        panic!(
            "five echoes: {:?}\necho log:\n{log}\ntimer log:\n{timer_log}",
            records(&out)
        )
    });
    let hello = on_topic(&out, "hello/world");
    assert_eq!(hello.len(), 5, "the timer published five times: {hello:?}");
    assert!(hello[0]["platform"].as_str().is_some_and(|p| !p.is_empty()));
    assert_eq!(
        on_topic(&out, "twilio/txt"),
        vec![json!({
            "request": {"recipient": {"name": "Darla", "phone_number": "+19999999999",
                                      "message": "Hello from the edge"}},
            "id": "request123"
        })]
    );
    for (i, e) in echoed.iter().enumerate() {
        assert_eq!(e["subject"], "hello/world", "{e}");
        assert_eq!(
            e["event"]["n"],
            json!(i + 1),
            "events in order, JSON-decoded: {e}"
        );
        assert_eq!(
            e["count"],
            json!(i + 1),
            "one worker counted every invocation: {e}"
        );
        assert_eq!(e["pid"], echoed[0]["pid"], "the same warm worker: {e}");
        assert_eq!(e["function_name"], "echo");
        assert_eq!(e["function_version"], "1");
        assert_eq!(e["arn"], fn_arn("echo").as_str());
        let remaining = e["remaining"].as_i64().expect("remaining ms");
        assert!(remaining > 0 && remaining <= 3000, "{e}");
        assert_eq!(e["request_id"].as_str().map(str::len), Some(36), "{e}");
    }
    assert_ne!(echoed[0]["request_id"], echoed[1]["request_id"]);
    assert!(log.contains("message arrived: starting on demand"), "{log}");
    assert_eq!(
        log.matches("started pid").count(),
        1,
        "one cold start only: {log}"
    );
}

// Lambda-to-Lambda in the style of the V1 developer guide, plus the error
// paths: a handled exception, then a timeout, then service again.
const FLAKY: &str = r#"
import time

served = 0


def handler(event, context):
    global served
    served += 1
    if event.get("fail"):
        raise ValueError("asked to fail")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"ok": event.get("n"), "served": served, "custom": context.client_context.custom}
"#;

// EncodingType binary: the event is bytes, the result goes back as bytes.
const BINARY: &str = r#"
def handler(event, context):
    assert isinstance(event, bytes), type(event)
    return bytes(reversed(event)) + type(event).__name__.encode()
"#;

const CALLER: &str = r#"
import base64
import json
import threading

import greengrasssdk

lam = greengrasssdk.client("lambda")
iot = greengrasssdk.client("iot-data")
TARGET = "%TARGET%"
BINARY = "%BINARY%"


def call(payload, **extra):
    r = lam.invoke(FunctionName=TARGET, InvocationType="RequestResponse", Payload=json.dumps(payload), **extra)
    body = r["Payload"]
    body = body.read() if hasattr(body, "read") else body
    return {"error": r["FunctionError"], "payload": body.decode("utf-8")}


def run():
    steps = [
        ("ok1", {"n": 1}),
        ("handled", {"fail": True}),
        ("ok2", {"n": 2}),
        ("timeout", {"sleep": 30}),
        ("ok3", {"n": 3}),
    ]
    context = base64.b64encode(json.dumps({"custom": {"from": "caller"}}).encode())
    for name, payload in steps:
        try:
            result = call(payload, ClientContext=context) if name == "ok1" else call(payload)
        except Exception as e:
            result = {"exception": repr(e)}
        result["step"] = name
        iot.publish(topic="results", payload=json.dumps(result))
    r = lam.invoke(FunctionName=BINARY, Payload=b"\x00\x01\xfe\xff")
    iot.publish(topic="results", payload=json.dumps(
        {"step": "binary", "error": r["FunctionError"], "hex": r["Payload"].read().hex()}))
    ev = lam.invoke(FunctionName=TARGET, InvocationType="Event", Payload=json.dumps({"n": 4}))
    iot.publish(topic="results", payload=json.dumps({"step": "event", "payload": ev["Payload"].decode()}))
    try:
        greengrasssdk.client("iot-data").get_thing_shadow(thingName="core")
        shadow = "no error"
    except Exception as e:
        shadow = "%s: %s" % (type(e).__name__, e)
    try:
        greengrasssdk.client("secretsmanager").get_secret_value(SecretId="greengrass-x")
        secret = "no error"
    except Exception as e:
        secret = "%s: %s" % (type(e).__name__, e)
    iot.publish(topic="results", payload=json.dumps({"step": "services", "shadow": shadow, "secret": secret}))


threading.Thread(target=run).start()


def handler(event, context):
    return None
"#;

#[test]
fn lambda_to_lambda_invokes_handled_errors_and_timeouts() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let flaky = python_package(work.path(), "flaky", &sdk, &[("flaky.py", FLAKY)]);
    let binary = python_package(work.path(), "binary", &sdk, &[("binary.py", BINARY)]);
    let caller = python_package(
        work.path(),
        "caller",
        &sdk,
        &[(
            "caller.py",
            &CALLER
                .replace("%TARGET%", &fn_arn("flaky"))
                .replace("%BINARY%", &fn_arn("binary")),
        )],
    );
    let mut binary = python_function("binary", &binary, "binary.handler", false, 3);
    binary["FunctionConfiguration"]["EncodingType"] = json!("binary");
    let out = work.path().join("got.jsonl");
    let rt = start(
        &group(
            vec![
                python_function("flaky", &flaky, "flaky.handler", false, 1),
                python_function("caller", &caller, "caller.handler", true, 60),
                binary,
                function("rec", &format!("record {}", out.display())),
            ],
            vec![sub("results", &fn_arn("caller"), "results", &fn_arn("rec"))],
        ),
        free_port().expect("a free port"),
    );
    let got = wait_for(LIMIT, || {
        let got = on_topic(&out, "results");
        (got.len() >= 8).then_some(got)
    });
    let flaky_log = read(&rt.function_log("flaky"));
    let caller_log = read(&rt.function_log("caller"));
    let got = got.unwrap_or_else(|| {
        panic!(
            "eight results: {:?}\nflaky log:\n{flaky_log}\ncaller log:\n{caller_log}",
            records(&out)
        )
    });
    let step = |name: &str| {
        got.iter()
            .find(|r| r["step"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no step {name}: {got:?}"))
    };
    let payload = |r: &Value| -> Value {
        serde_json::from_str(r["payload"].as_str().expect("payload")).expect("JSON payload")
    };
    let ok1 = step("ok1");
    assert_eq!(ok1["error"], "", "{ok1}");
    assert_eq!(
        payload(&ok1),
        json!({"ok": 1, "served": 1, "custom": {"from": "caller"}}),
        "the caller's ClientContext reaches the handler"
    );
    let handled = step("handled");
    assert_eq!(handled["error"], "Handled", "{handled}");
    assert!(
        payload(&handled)["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("ValueError: asked to fail")),
        "{handled}"
    );
    let ok2 = step("ok2");
    assert_eq!(
        payload(&ok2),
        json!({"ok": 2, "served": 3, "custom": {}}),
        "the same worker kept serving after the exception: {ok2}"
    );
    let timeout = step("timeout");
    assert_eq!(timeout["error"], "Unhandled", "{timeout}");
    assert!(
        payload(&timeout)["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("Timeout")),
        "{timeout}"
    );
    let ok3 = step("ok3");
    assert_eq!(ok3["error"], "", "{ok3}");
    assert_eq!(
        payload(&ok3),
        json!({"ok": 3, "served": 1, "custom": {}}),
        "a new worker after the timeout: {ok3}"
    );
    assert_eq!(step("event")["payload"], "");
    let binary = step("binary");
    assert_eq!(binary["error"], "", "{binary}");
    assert_eq!(
        binary["hex"],
        format!(
            "fffe0100{}",
            "bytes"
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
        "raw bytes in and out: {binary}"
    );
    let services = step("services");
    assert!(
        services["shadow"].as_str().is_some_and(
            // The local shadow service answers: no shadow of the core yet.
            |s| s.starts_with("ShadowError") && s.contains("No shadow exists with name: 'core'")
        ),
        "{services}"
    );
    assert!(
        services["secret"]
            .as_str()
            // The group has no secret resources: not found, as Secrets Manager answers.
            .is_some_and(|s| s.starts_with("SecretsManagerError")
                && s.contains("error code 404")
                && s.contains("ResourceNotFoundException")),
        "{services}"
    );
    assert!(
        flaky_log.contains("Handled error: ValueError: asked to fail"),
        "{flaky_log}"
    );
    assert!(
        flaky_log.contains("not handled within its Timeout of 1 s"),
        "{flaky_log}"
    );
}

/// One raw HTTP exchange; returns the status and the whole response.
fn http(port: u16, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request).expect("write");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn publish_request(token: Option<&str>, source: &str) -> Vec<u8> {
    let context = json!({"custom": {"source": source, "subject": "sneaky/topic"}});
    let context = base64(context.to_string().as_bytes());
    let auth = token.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
    format!(
        "POST /2016-11-01/functions/arn:aws:lambda:::function:GGRouter HTTP/1.1\r\nHost: localhost\r\n\
         {auth}X-Amz-Invocation-Type: Event\r\nX-Amz-Client-Context: {context}\r\nContent-Length: 2\r\n\r\nhi"
    )
    .into_bytes()
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The token the runtime gave a running child, read from its environment.
fn token_of(rt: &Runtime, needle: &str) -> Option<String> {
    children_of(rt.pid())
        .into_iter()
        .filter(|pid| cmdline(*pid).contains("evergreen_lambda_runtime"))
        .find_map(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let vars: Vec<String> = env
                .split(|b| *b == 0)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            vars.iter()
                .any(|v| v == &format!("MY_FUNCTION_ARN={needle}"))
                .then(|| {
                    vars.iter()
                        .find_map(|v| v.strip_prefix("AWS_CONTAINER_AUTHORIZATION_TOKEN="))
                        .map(str::to_string)
                })
                .flatten()
        })
}

const PUBLISHER: &str = r#"
import greengrasssdk

greengrasssdk.client("iot-data").publish(topic="sneaky/topic", payload=b"real")


def handler(event, context):
    return None
"#;

#[test]
fn wrong_tokens_and_malformed_requests_are_refused_and_route_nothing() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let publisher = python_package(work.path(), "pub", &sdk, &[("pub.py", PUBLISHER)]);
    let other = python_package(
        work.path(),
        "other",
        &sdk,
        &[("pub.py", "def handler(e, c):\n    return e\n")],
    );
    let out = work.path().join("got.jsonl");
    let port = free_port().expect("a free port");
    let rt = start(
        &group(
            vec![
                python_function("pub", &publisher, "pub.handler", true, 3),
                python_function("other", &other, "pub.handler", true, 3),
                // A handler module that does not exist: the worker reports
                // its failed initialisation and exits.
                python_function("broken", &other, "missing_module.handler", true, 3),
                function("rec", &format!("record {}", out.display())),
            ],
            vec![sub("sneaky", &fn_arn("pub"), "sneaky/#", &fn_arn("rec"))],
        ),
        port,
    );
    // The positive control: the function's own publish is routed.
    let real = wait_for(LIMIT, || (!records(&out).is_empty()).then_some(()));
    assert!(real.is_some(), "{}", read(&rt.function_log("pub")));
    let (status, text) = http(port, &publish_request(None, &fn_arn("pub")));
    assert_eq!(status, 403, "{text}");
    let (status, text) = http(port, &publish_request(Some("not-a-token"), &fn_arn("pub")));
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("unknown Authorization token"), "{text}");

    // A real token, but another function's work is not its to take.
    let token = wait_for(LIMIT, || token_of(&rt, &fn_arn("other"))).expect("token of other");
    let (status, text) = http(
        port,
        format!(
            "GET /2016-11-01/functions/{}/work HTTP/1.1\r\nAuthorization: {token}\r\n\r\n",
            fn_arn("pub")
        )
        .as_bytes(),
    );
    assert_eq!(status, 403, "{text}");
    let (status, text) = http(
        port,
        format!(
            "POST /2016-11-01/functions/{}/work HTTP/1.1\r\nAuthorization: {token}\r\nX-Amz-InvocationId: made-up\r\nContent-Length: 0\r\n\r\n",
            fn_arn("other")
        )
        .as_bytes(),
    );
    assert_eq!(status, 409, "only the invocation it was handed: {text}");
    // The local log endpoint of the V1 log appender writes to the caller's log.
    let log_body = json!({
        "logGroupName": "/Lambda/other",
        "logStreamName": "fromPythonAppender",
        "logEvents": [{ "timestamp": 1, "message": "appender says hi" }]
    })
    .to_string();
    let (status, text) = http(
        port,
        format!(
            "POST /2016-11-01/cloudwatch/logs/ HTTP/1.1\r\nAuthorization: {token}\r\nContent-Length: {}\r\n\r\n{log_body}",
            log_body.len()
        )
        .as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let logged = wait_for(LIMIT, || {
        read(&rt.function_log("other"))
            .contains("appender says hi")
            .then_some(())
    });
    assert!(logged.is_some(), "{}", read(&rt.function_log("other")));
    let (status, text) = http(
        port,
        format!("POST /2016-11-01/cloudwatch/logs/ HTTP/1.1\r\nAuthorization: {token}\r\nContent-Length: 2\r\n\r\n{{}}").as_bytes(),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("logEvents"), "{text}");
    // Malformed and oversize requests: 4xx, and the endpoint goes on.
    let (status, _) = http(port, b"\x01\x02garbage\r\n\r\n");
    assert_eq!(status, 400);
    let (status, _) = http(
        port,
        format!("POST /2016-11-01/functions/x HTTP/1.1\r\nAuthorization: {token}\r\nContent-Length: 99999999\r\n\r\n").as_bytes(),
    );
    assert_eq!(status, 413);
    let (status, text) = http(
        port,
        format!(
            "POST /2016-11-01/functions/arn:aws:lambda:::function:GGRouter HTTP/1.1\r\nAuthorization: {token}\r\nX-Amz-Invocation-Type: Event\r\nX-Amz-Client-Context: %%%\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not base64"), "{text}");
    let (status, text) = http(
        port,
        format!(
            "POST /2016-11-01/functions/arn:aws:lambda:us-east-1:123456789012:function:nope:1 HTTP/1.1\r\nAuthorization: {token}\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(status, 404, "{text}");
    // Nothing but the real publish reached the recorder.
    let settled = wait_for(Duration::from_millis(500), || {
        (records(&out).len() > 1).then_some(())
    });
    assert!(
        settled.is_none(),
        "a refused request was routed: {:?}",
        records(&out)
    );
    let got = records(&out);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["payload"], "real");
    assert_eq!(got[0]["source"], fn_arn("pub").as_str());
    let broken = wait_for(LIMIT, || {
        let log = read(&rt.function_log("broken"));
        (log.contains("initialisation failed: ModuleNotFoundError")
            && log.contains("No module named 'missing_module'")
            && log.contains("exited with status 1"))
        .then_some(())
    });
    assert!(broken.is_some(), "{}", read(&rt.function_log("broken")));
}

const ZIPPED: &str = r#"
import json
import os
import greengrasssdk

greengrasssdk.client("iot-data").publish(
    topic="zip/hello", payload=json.dumps({"from": __file__, "cwd": os.getcwd()}))


def handler(event, context):
    return None
"#;

#[test]
fn a_function_packaged_as_a_zip_runs_from_it() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let dir = python_package(work.path(), "zipped", &sdk, &[("main.py", ZIPPED)]);
    // Packaged by Evergreen's own helper.
    let packaged = std::process::Command::new(evergreen_bin())
        .args(["function", "package"])
        .arg(&dir)
        .output()
        .expect("evergreen function package");
    assert!(packaged.status.success(), "{packaged:?}");
    let zip = PathBuf::from(String::from_utf8_lossy(&packaged.stdout).trim());
    assert_eq!(zip, work.path().join("functions/zipped.zip"));
    std::fs::remove_dir_all(&dir).expect("only the zip is left");
    let out = work.path().join("got.jsonl");
    let rt = start(
        &group(
            vec![
                python_function("zipped", &zip, "main.handler", true, 3),
                function("rec", &format!("record {}", out.display())),
            ],
            vec![sub("z", &fn_arn("zipped"), "zip/#", &fn_arn("rec"))],
        ),
        free_port().expect("a free port"),
    );
    let got = wait_for(LIMIT, || on_topic(&out, "zip/hello").into_iter().next());
    let got = got.unwrap_or_else(|| panic!("{}", read(&rt.function_log("zipped"))));
    // The version carries its code: the zip runs from the artefact store, not from where
    // the group file named it.
    let artefacts = rt.dir.path().join("root/deployments/artefacts");
    let name = zip.file_name().and_then(|n| n.to_str()).expect("zip name");
    assert!(
        got["from"].as_str().is_some_and(|f| {
            f.starts_with(&artefacts.display().to_string()) && f.contains(&format!("/{name}/"))
        }),
        "imported from inside the stored zip: {got}"
    );
}

const CONTAINED: &str = r#"
import json
import os
import socket
import greengrasssdk

greengrasssdk.client("iot-data").publish(topic="box/view", payload=json.dumps({
    "cwd": os.getcwd(),
    "hostname": socket.gethostname(),
    "sees_tmp_root": os.path.exists(os.environ.get("EG_TEST_SECRET_PATH", "/nonexistent")),
}))


def handler(event, context):
    return {"echo": event}
"#;

#[test]
fn a_python_function_runs_in_a_container() {
    evergreen_tests::require_containers!();
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let code = python_package(work.path(), "boxed", &sdk, &[("boxed.py", CONTAINED)]);
    // A file next to the function's directory: on the host, not in the box.
    let secret = work.path().join("host-only");
    std::fs::write(&secret, "x").expect("write");
    let out = work.path().join("got.jsonl");
    let mut boxed = python_function("boxed", &code, "boxed.handler", true, 3);
    boxed["FunctionConfiguration"]["Environment"] = json!({
        "Execution": { "IsolationMode": "GreengrassContainer" },
        "Variables": { "EG_TEST_SECRET_PATH": secret }
    });
    // Greengrass's default MemorySize (16 MB) is enough for the runtime and the SDK.
    boxed["FunctionConfiguration"]["MemorySize"] = json!(16384);
    let rt = start(
        &group(
            vec![boxed, function("rec", &format!("record {}", out.display()))],
            vec![sub("box", &fn_arn("boxed"), "box/#", &fn_arn("rec"))],
        ),
        free_port().expect("a free port"),
    );
    let got = wait_for(LIMIT, || on_topic(&out, "box/view").into_iter().next());
    let got = got.unwrap_or_else(|| panic!("{}", read(&rt.function_log("boxed"))));
    // Its working directory is its own (stored) code directory.
    let artefacts = rt.dir.path().join("root/deployments/artefacts");
    assert!(
        got["cwd"].as_str().is_some_and(|cwd| {
            cwd.starts_with(&artefacts.display().to_string()) && cwd.ends_with("/boxed")
        }),
        "{got} (code from {})",
        code.display()
    );
    assert_eq!(got["hostname"], "boxed", "its own UTS namespace: {got}");
    assert_eq!(
        got["sees_tmp_root"], false,
        "only its code is bound, not its neighbours: {got}"
    );
}

// A pinned function that says hello once it runs.
const HELLO: &str = r#"
import greengrasssdk

greengrasssdk.client("iot-data").publish(topic="hello/relative", payload="from a relative group")


def handler(event, context):
    return None
"#;

/// Issue 17: the temp-monitor walk-through failed when `--group` was a
/// relative path (`evergreen run --group examples/temp-monitor/group.json`):
/// the group's directory stayed relative, so the function's relative
/// `CodeUri` became a relative entry of its Python path, which the worker
/// (started in another directory) could not import from. The group's
/// directory is made absolute when the file is read.
#[test]
fn a_group_given_by_a_relative_path_runs_its_python_function_from_a_relative_code_uri() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    // As the walk-through lays it out: the group file next to `function/`.
    let walk = dir.path().join("walk");
    let code = walk.join("function");
    vendor_greengrasssdk(&sdk, &code).expect("vendor greengrasssdk");
    std::fs::write(code.join("hello.py"), HELLO).expect("function");
    let out = dir.path().join("got.jsonl");
    let mut hello = python_function("hello", Path::new("function"), "hello.handler", true, 3);
    hello["FunctionConfiguration"]["CodeUri"] = json!("function");
    let g = group(
        vec![hello, function("rec", &format!("record {}", out.display()))],
        vec![sub("hi", &fn_arn("hello"), "hello/#", &fn_arn("rec"))],
    );
    std::fs::write(walk.join("group.json"), g.to_string()).expect("group");
    let mut config = test_config(&dir.path().join("root"));
    merge(
        &mut config,
        &json!({ "coreThing": { "ggDaemonPort": free_port().expect("a free port") } }),
    );
    std::fs::write(dir.path().join("config.json"), config.to_string()).expect("config");
    // Relative paths, resolved against the directory the command runs in.
    let child = std::process::Command::new(evergreen_bin())
        .current_dir(dir.path())
        .args([
            "run",
            "--config",
            "config.json",
            "--group",
            "walk/group.json",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start evergreen");
    let rt = Runtime {
        dir: tempfile::tempdir().expect("tmp"),
        child,
    };
    let got = wait_for(LIMIT, || {
        records(&out)
            .into_iter()
            .find(|r| r["topic"] == "hello/relative")
    });
    let log = read(
        &dir.path()
            .join("root/var/log/user")
            .join(REGION)
            .join(ACCOUNT)
            .join("hello.log"),
    );
    assert!(got.is_some(), "the function ran from walk/function: {log}");
    assert_eq!(got.expect("record")["payload"], "from a relative group");
    assert!(!log.contains("ModuleNotFoundError"), "{log}");
    drop(rt);
}

const LEVELS: &str = r#"
import json
import logging
import greengrasssdk

logging.getLogger("app").warning("careful %d", 1)
logging.getLogger("app").debug("below the runtime logger's INFO: not printed")
try:
    1 / 0
except ZeroDivisionError:
    logging.exception("divided")
print("plain print")
greengrasssdk.client("iot-data").publish(topic="lvl/done", payload=json.dumps({}))


def handler(event, context):
    return None
"#;

/// Issue 23: a V1 Python function's `logging` lines land in its log at their own level
/// (WARNING as WARN, `logging.exception` and its traceback as ERROR), a `print` at INFO.
#[test]
fn a_python_functions_logging_levels_reach_its_log() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let code = python_package(work.path(), "levels", &sdk, &[("levels.py", LEVELS)]);
    let out = work.path().join("got.jsonl");
    let rt = start(
        &group(
            vec![
                python_function("levels", &code, "levels.handler", true, 3),
                function("rec", &format!("record {}", out.display())),
            ],
            vec![sub("l", &fn_arn("levels"), "lvl/#", &fn_arn("rec"))],
        ),
        free_port().expect("a free port"),
    );
    let log_path = rt.function_log("levels");
    let arn = fn_arn("levels");
    let wanted = [
        ("WARN", "app: careful 1"),
        ("ERROR", "root: divided"),
        ("ERROR", "Traceback (most recent call last):"),
        ("ERROR", "ZeroDivisionError: division by zero"),
        ("INFO", "plain print"),
    ];
    let found = wait_for(LIMIT, || {
        let log = read(&log_path);
        wanted
            .iter()
            .all(|(level, message)| {
                log.lines()
                    .any(|l| l.ends_with(&format!("[{level}]-({arn}) {message}")))
            })
            .then_some(log)
    });
    assert!(
        found.is_some(),
        "expected {wanted:?} in the function's log:\n{}",
        read(&log_path)
    );
    let log = read(&log_path);
    assert!(!log.contains("not printed"), "{log}");
    assert!(
        !log.contains("[WARNING]"),
        "the prefix is the line's level now: {log}"
    );
}
