//! End-to-end: Greengrass V1 Node.js functions (`Runtime` `nodejs12.x`,
//! `nodejs8.10`), unmodified, with the real `aws-greengrass-core-sdk` 1.7.0
//! from npm in each function's `node_modules` (as V1 users deployed it),
//! under the real runtime, its Node.js runtime loop and its Lambda IPC
//! endpoint (docs/groups.md, "Node.js functions"): publish, shadow update
//! and get, secret get, Lambda-to-Lambda invoke (callback, promise and
//! `context.succeed` handlers, a handled error), `context` fields, a pinned
//! function's module-level code and on-demand functions started by a
//! subscription.
//!
//! `.ci/run` installs the SDK with `npm install --prefix
//! /var/cache/evergreen-tests/aws-greengrass-core-sdk-1.7.0
//! aws-greengrass-core-sdk@1.7.0`; `EVERGREEN_NODE_SDK` points elsewhere (a
//! directory holding `node_modules`). Without it (or without `node`) the
//! tests say so loudly and skip.

use std::path::{Path, PathBuf};
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(40);
/// A function directory: `index.js` plus the SDK's `node_modules`, copied as
/// V1 users zip them.
fn package(root: &Path, name: &str, sdk: &Path, code: &str) -> PathBuf {
    let dir = root.join("functions").join(name);
    vendor_node_sdk(sdk, &dir).expect("copy node_modules");
    std::fs::write(dir.join("index.js"), code).expect("write index.js");
    dir
}

fn node_function(name: &str, code: &Path, runtime: &str, pinned: bool) -> Value {
    json!({
        "Id": name,
        "FunctionArn": fn_arn(name),
        "FunctionConfiguration": {
            "Executable": "index.handler",
            "CodeUri": code,
            "Runtime": runtime,
            "Pinned": pinned,
            "Timeout": 10,
            "EncodingType": "json",
            "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
        }
    })
}

// A callback-style handler, as the V1 developer guide wrote them; it keeps a
// module-level count and answers with the context it was given.
const TARGET: &str = r#"
let served = 0;

exports.handler = function handler(event, context, callback) {
    served += 1;
    if (event && event.fail) {
        callback(new Error('asked to fail'));
        return;
    }
    callback(null, {
        got: event,
        served,
        functionName: context.functionName,
        functionVersion: context.functionVersion,
        invokedFunctionArn: context.invokedFunctionArn,
        awsRequestId: context.awsRequestId,
        custom: context.clientContext.custom,
        remaining: context.getRemainingTimeInMillis(),
    });
};
"#;

// An async (promise) handler.
const DOUBLER: &str = r#"
exports.handler = async (event) => {
    await new Promise((resolve) => setTimeout(resolve, 10));
    return { doubled: event.n * 2 };
};
"#;

// An old-style two-parameter handler started by a subscription: it
// republishes what it got and where it came from, with context.succeed
// inside the publish callback.
const ECHO: &str = r#"
const ggSdk = require('aws-greengrass-core-sdk');

const iotClient = new ggSdk.IotData();

exports.handler = function handler(event, context) {
    iotClient.publish({
        topic: 'echo/out',
        payload: JSON.stringify({ event, subject: context.clientContext.custom.subject, pid: process.pid }),
    }, (err) => {
        if (err) console.log(err);
        context.succeed();
    });
};
"#;

// A pinned function whose module-level code drives every SDK call once, in
// the style of AWS's Node.js samples, and publishes each outcome.
const CALLER: &str = r#"
const ggSdk = require('aws-greengrass-core-sdk');

const iotClient = new ggSdk.IotData();
const lambda = new ggSdk.Lambda();
const secrets = new ggSdk.SecretsManager();

const call = (fn, params) => new Promise((resolve) => fn(params, (err, data) => resolve({ err, data })));
const report = (step, body) => new Promise((resolve) => iotClient.publish(
    { topic: 'results', payload: JSON.stringify(Object.assign({ step }, body)), queueFullPolicy: 'AllOrError' },
    (err) => { if (err) console.log(`cannot report ${step}: ${err}`); resolve(); }));
const text = (p) => (p === undefined || p === null ? p : p.toString());

async function run() {
    const update = await call(iotClient.updateThingShadow.bind(iotClient),
        { thingName: 'node-thing', payload: JSON.stringify({ state: { reported: { color: 'green' } } }) });
    await report('shadow-update', { err: update.err && String(update.err), payload: JSON.parse(text(update.data.Payload)) });
    const get = await call(iotClient.getThingShadow.bind(iotClient), { thingName: 'node-thing' });
    await report('shadow-get', { err: get.err && String(get.err), payload: JSON.parse(text(get.data.Payload)) });
    const secret = await call(secrets.getSecretValue.bind(secrets), { SecretId: 'greengrass-node' });
    await report('secret', { err: secret.err && String(secret.err), payload: secret.data && JSON.parse(text(secret.data)) });
    const missing = await call(secrets.getSecretValue.bind(secrets), { SecretId: 'greengrass-missing' });
    await report('secret-missing', { err: missing.err && String(missing.err) });
    const clientContext = Buffer.from(JSON.stringify({ custom: { from: 'caller' } })).toString('base64');
    const ok = await call(lambda.invoke.bind(lambda),
        { FunctionName: '%TARGET%', Payload: JSON.stringify({ n: 1 }), ClientContext: clientContext });
    await report('invoke', { err: ok.err && String(ok.err), error: ok.data.FunctionError, payload: JSON.parse(text(ok.data.Payload)) });
    const failed = await call(lambda.invoke.bind(lambda), { FunctionName: '%TARGET%', Payload: JSON.stringify({ fail: true }) });
    await report('invoke-fail', { error: failed.data.FunctionError, payload: JSON.parse(text(failed.data.Payload)) });
    const doubled = await call(lambda.invoke.bind(lambda), { FunctionName: '%DOUBLER%', Payload: JSON.stringify({ n: 21 }) });
    await report('invoke-async', { error: doubled.data.FunctionError, payload: JSON.parse(text(doubled.data.Payload)) });
    iotClient.publish({ topic: 'echo/in', payload: JSON.stringify({ hello: 'node' }) }, () => {});
}

setTimeout(() => run().catch((e) => report('crash', { err: String(e && e.stack) })), 300);

exports.handler = function handler(event, context) {
    console.log(event);
};
"#;

#[test]
fn node_functions_publish_use_shadows_secrets_and_invoke_with_the_npm_sdk() {
    let Some(sdk) = node_sdk_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("root");
    put_secret(&root, "greengrass-node", b"s3cret-value").expect("put secret");
    let work = dir.path().join("work");
    let target = package(&work, "target", &sdk, TARGET);
    let doubler = package(&work, "doubler", &sdk, DOUBLER);
    let echo = package(&work, "echo", &sdk, ECHO);
    let caller = package(
        &work,
        "caller",
        &sdk,
        &CALLER
            .replace("%TARGET%", &fn_arn("target"))
            .replace("%DOUBLER%", &fn_arn("doubler")),
    );
    let out = work.join("got.jsonl");
    let mut caller_fn = node_function("caller", &caller, "nodejs12.x", true);
    caller_fn["FunctionConfiguration"]["Environment"]["ResourceAccessPolicies"] =
        json!([{ "ResourceId": "NodeSecret", "Permission": "ro" }]);
    let mut g = group(
        vec![
            caller_fn,
            node_function("target", &target, "nodejs12.x", false),
            node_function("doubler", &doubler, "nodejs8.10", false),
            node_function("echo", &echo, "nodejs12.x", false),
            function("rec", &format!("record {}", out.display())),
        ],
        vec![
            sub("results", &fn_arn("caller"), "results", &fn_arn("rec")),
            sub("echo-in", &fn_arn("caller"), "echo/in", &fn_arn("echo")),
            sub("echo-out", &fn_arn("echo"), "echo/out", &fn_arn("rec")),
        ],
    );
    g["ResourceDefinitionVersion"] = json!({ "Resources": [{
        "Id": "NodeSecret",
        "Name": "NodeSecret",
        "ResourceDataContainer": { "SecretsManagerSecretResourceData": {
            "ARN": format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:greengrass-node-AbCdEf")
        } }
    }] });
    let rt = Runtime::start_config_in(
        dir,
        &g,
        &json!({ "coreThing": { "ggDaemonPort": free_port().expect("a free port") } }),
        &[],
    );
    let logs = || {
        ["caller", "target", "doubler", "echo"]
            .iter()
            .map(|n| format!("--- {n}:\n{}", read(&rt.function_log(n))))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let got = wait_for(LIMIT, || {
        let results = on_topic(&out, "results");
        let done = results.iter().any(|r| r["step"] == "invoke-async")
            && !on_topic(&out, "echo/out").is_empty();
        (done || results.iter().any(|r| r["step"] == "crash")).then_some(results)
    });
    let got = got.unwrap_or_else(|| panic!("every step: {:?}\n{}", records(&out), logs()));
    let step = |name: &str| {
        got.iter()
            .find(|r| r["step"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no step {name}: {got:?}\n{}", logs()))
    };

    // Shadows: the local shadow service answers the SDK's update and get.
    let update = step("shadow-update");
    assert!(update["err"].is_null(), "{update}");
    assert_eq!(
        update["payload"]["state"]["reported"]["color"], "green",
        "{update}"
    );
    let get = step("shadow-get");
    assert_eq!(
        get["payload"]["state"]["reported"]["color"], "green",
        "{get}"
    );
    assert!(get["payload"]["version"].as_u64().is_some(), "{get}");

    // Secrets: the granted one in the GetSecretValue shape; another is refused.
    let secret = step("secret");
    assert!(secret["err"].is_null(), "{secret}");
    assert_eq!(
        secret["payload"]["SecretString"], "s3cret-value",
        "{secret}"
    );
    assert_eq!(secret["payload"]["Name"], "greengrass-node", "{secret}");
    let missing = step("secret-missing");
    assert!(
        missing["err"]
            .as_str()
            .is_some_and(|e| e.contains("404") || e.contains("403") || e.contains("not granted")),
        "{missing}"
    );

    // Lambda-to-Lambda: a callback handler with V1's context fields.
    let invoke = step("invoke");
    assert_eq!(invoke["error"], "", "{invoke}");
    let p = &invoke["payload"];
    assert_eq!(p["got"], json!({"n": 1}), "{invoke}");
    assert_eq!(p["served"], 1, "{invoke}");
    assert_eq!(p["functionName"], "target");
    assert_eq!(p["functionVersion"], "1");
    assert_eq!(p["invokedFunctionArn"], fn_arn("target").as_str());
    assert_eq!(p["awsRequestId"].as_str().map(str::len), Some(36), "{p}");
    assert_eq!(p["custom"], json!({"from": "caller"}), "{p}");
    let remaining = p["remaining"].as_i64().unwrap_or(0);
    assert!(remaining > 0 && remaining <= 10_000, "{p}");

    // An error passed to the callback is a Handled error, as V1 reported it.
    let failed = step("invoke-fail");
    assert_eq!(failed["error"], "Handled", "{failed}");
    assert_eq!(
        failed["payload"]["errorMessage"], "asked to fail",
        "{failed}"
    );
    assert_eq!(failed["payload"]["errorType"], "Error", "{failed}");

    // An async handler's promise is its result.
    let doubled = step("invoke-async");
    assert_eq!(doubled["error"], "", "{doubled}");
    assert_eq!(doubled["payload"], json!({"doubled": 42}), "{doubled}");

    // A subscription starts an on-demand function; its two-parameter handler
    // ends with context.succeed.
    let echoed = on_topic(&out, "echo/out");
    assert_eq!(echoed[0]["event"], json!({"hello": "node"}), "{echoed:?}");
    assert_eq!(echoed[0]["subject"], "echo/in", "{echoed:?}");

    let caller_log = read(&rt.function_log("caller"));
    assert!(
        caller_log.contains("Publishing message on topic \"results\""),
        "the SDK's own lines reach the log: {caller_log}"
    );
    assert!(
        read(&rt.function_log("echo")).contains("message arrived: starting on demand"),
        "{}",
        logs()
    );
}

// A pinned function whose top-level code publishes where it runs, as the
// container test of the Python functions does.
const CONTAINED: &str = r#"
const ggSdk = require('aws-greengrass-core-sdk');
const os = require('os');

const iot = new ggSdk.IotData();
iot.publish(
    { topic: 'box/view', payload: JSON.stringify({ hostname: os.hostname(), cwd: process.cwd() }) },
    () => {},
);

exports.handler = function handler(event, context, callback) {
    callback(null);
};
"#;

/// Greengrass V1 ran Node.js functions in its container too: the npm SDK reaches the Lambda
/// endpoint from the function's own namespaces, with the system's node and Evergreen's core
/// modules bound read-only.
#[test]
fn a_node_function_runs_in_a_container() {
    evergreen_tests::require_containers!();
    let Some(sdk) = node_sdk_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let work = dir.path().join("work");
    let code = package(&work, "boxed", &sdk, CONTAINED);
    let out = work.join("got.jsonl");
    let mut boxed = node_function("boxed", &code, "nodejs12.x", true);
    boxed["FunctionConfiguration"]["Environment"]["Execution"]["IsolationMode"] =
        json!("GreengrassContainer");
    boxed["FunctionConfiguration"]["MemorySize"] = json!(262144);
    let g = group(
        vec![boxed, function("rec", &format!("record {}", out.display()))],
        vec![sub("box", &fn_arn("boxed"), "box/#", &fn_arn("rec"))],
    );
    let rt = Runtime::start_config_in(
        dir,
        &g,
        &json!({ "coreThing": { "ggDaemonPort": free_port().expect("a free port") } }),
        &[],
    );
    let got = wait_for(LIMIT, || on_topic(&out, "box/view").into_iter().next());
    let got = got.unwrap_or_else(|| panic!("{}", read(&rt.function_log("boxed"))));
    assert_eq!(got["hostname"], "boxed", "its own UTS namespace: {got}");
    assert!(
        got["cwd"]
            .as_str()
            .is_some_and(|cwd| cwd.ends_with("/boxed")),
        "its working directory is its code directory: {got}"
    );
}
