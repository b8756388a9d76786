//! End-to-end: components that serve a function name (V1's ML connectors'
//! local services), called by V1-style Python functions through the ML SDK's
//! documented client and the core's `greengrass_ipc_python_sdk.ipc_facade`.
//! Documented behaviour checked (V1's ML SDK reference,
//! `invoke_inference_service`):
//! * the call reaches the service named `GG-ML-INF-<AlgoType>-<ServiceName>`
//!   with its `ContentType` and `Accept`, and the response's `Body` is a
//!   readable stream of what the service answered;
//! * a service's error raises `GreengrassInferenceException` with its message;
//!   a call the core cannot complete (no such service, no answer in time, the
//!   serving component gone) raises `GreengrassDependencyException`;
//! * a component may itself invoke a function of the group and gets its result.
//!
//! The serving component is `eg-fn serve` (the SDK's `Handle::serve`), so the
//! plumbing is checked here in NoContainer mode without any model; the ML
//! connectors' own tests run the same calls against real models.

use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);

const CALLER: &str = r#"
import json
import threading

import greengrasssdk
import greengrass_machine_learning_sdk as ml

iot = greengrasssdk.client('iot-data')


def outcome(body, **extra):
    try:
        r = ml.client('inference').invoke_inference_service(
            AlgoType='image-classification', ServiceName=extra.get('service', 'svc'),
            ContentType='image/jpeg', Accept='application/json', Body=body)
        return {'body': r['Body'].read().decode(), 'content_type': r['ContentType'],
                'caller': r.get('caller'), 'context': r.get('context')}
    except ml.GreengrassInferenceException as e:
        return {'inference_error': str(e)}
    except ml.GreengrassDependencyException as e:
        return {'dependency_error': str(e)}


def run():
    got = {
        'plain': outcome(b'pixels'),
        'fail': outcome(b'fail'),
        'missing': outcome(b'pixels', service='nobody'),
        'hang': outcome(b'hang'),
        'nested': outcome(b'invoke %ECHO%'),
    }
    iot.publish(topic='svc/result', payload=json.dumps(got))


threading.Thread(target=run).start()


def handler(event, context):
    return
"#;

// Invoked by the serving component: answers with what it was given.
const ECHO: &str = r#"
import json


def handler(event, context):
    return {'echo': event, 'custom': context.client_context.custom if context.client_context else None}
"#;

fn reported(out: &std::path::Path) -> Option<Value> {
    on_topic(out, "svc/result").into_iter().next()
}

/// V1's ML SDK calls reach the component that serves the name, with their
/// parameters; errors raise the SDK's two exceptions as documented.
#[test]
fn ml_sdk_calls_reach_the_serving_component_and_errors_raise_the_sdks_exceptions() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let work = dir.path().join("work");
    let echo_arn = fn_arn("echo");
    let caller = python_package(
        &work,
        "caller",
        &sdk,
        &[("caller.py", &CALLER.replace("%ECHO%", &echo_arn))],
    );
    let echo = python_package(&work, "echo", &sdk, &[("echo.py", ECHO)]);
    let out = work.join("got.jsonl");
    let g = group(
        vec![
            // Serves GG-ML-INF-image-classification-svc; a caller waits 3 s at most.
            function("server", "serve GG-ML-INF-image-classification-svc 3000"),
            python_function("caller", &caller, "caller.handler", true, 60),
            python_function("echo", &echo, "echo.handler", false, 10),
            function("rec", &format!("record {}", out.display())),
        ],
        vec![sub("r", &fn_arn("caller"), "svc/#", &fn_arn("rec"))],
    );
    let config = json!({ "coreThing": { "ggDaemonPort": free_port().expect("a free port") } });
    let rt = Runtime::start_config(&g, &config, &[]);
    let got = wait_for(LIMIT, || reported(&out)).unwrap_or_else(|| {
        panic!(
            "no report from the caller:\n{}\n{}",
            read(&rt.function_log("caller")),
            read(&rt.function_log("server"))
        )
    });

    // The call, as the service saw it.
    let plain = &got["plain"];
    assert_eq!(plain["content_type"], "application/json", "{got}");
    assert_eq!(plain["body"], "pixels", "{got}");
    assert_eq!(plain["caller"], fn_arn("caller"), "{got}");
    assert_eq!(
        plain["context"],
        json!({ "custom": { "Content-Type": "image/jpeg", "Accept": "application/json" } }),
        "{got}"
    );
    assert_eq!(
        got["fail"],
        json!({ "inference_error": "asked to fail" }),
        "a service error is GreengrassInferenceException with its message: {got}"
    );
    let missing = got["missing"]["dependency_error"]
        .as_str()
        .unwrap_or_else(|| panic!("no service is a dependency error: {got}"));
    assert!(missing.contains("404"), "{missing}");
    let hang = got["hang"]["dependency_error"]
        .as_str()
        .unwrap_or_else(|| panic!("no answer in time is a dependency error: {got}"));
    assert!(hang.contains("no result within"), "{hang}");
    // The component invoked the Python function `echo` itself.
    let nested: Value = serde_json::from_str(
        got["nested"]["body"]
            .as_str()
            .unwrap_or_else(|| panic!("{got}")),
    )
    .unwrap_or(Value::Null);
    assert_eq!(nested["function_error"], "", "{got}");
    let echoed: Value =
        serde_json::from_str(nested["payload"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
    assert_eq!(echoed["echo"], "hi", "{got}");
    assert_eq!(echoed["custom"], json!({ "from": "eg-fn" }), "{got}");
    assert!(
        read(&rt.function_log("server")).contains("serving invokes of"),
        "the component's log says what it serves"
    );
}
