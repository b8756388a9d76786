//! End-to-end: the token exchange for functions (Greengrass V1's `GGTES`,
//! `docs/migrating.md` "AWS credentials for functions"). An unmodified
//! Python function using boto3 finds the core's credentials through
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` and its worker token, with no key in
//! its code or environment, and its S3 and SNS calls reach a real
//! `moto_server` on loopback (its endpoint given to boto3 by the standard
//! `AWS_ENDPOINT_URL` variable of the function's environment). What arrived
//! is read back from moto by the test's own boto3 client.
//!
//! Skips loudly without `moto_server`, `python3` with boto3, or the
//! vendored `greengrasssdk` (see `lambda_python.rs`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(40);

// In the style of AWS's TES sample: plain boto3 clients, no keys, no
// endpoint in the code. Its results are published for the test to read.
const S3_AND_SNS: &str = r#"
import json
import os
import traceback

import boto3
import greengrasssdk

iot = greengrasssdk.client("iot-data")


def run():
    s3 = boto3.client("s3")
    s3.put_object(Bucket="eg-tes", Key="from-function.txt", Body=b"written with the group role")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="eg-tes").get("Contents", [])]
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="eg-tes")["TopicArn"]
    sns.publish(TopicArn=topic, Message="published by a function")
    creds = boto3.session.Session().get_credentials()
    return {
        "listed": listed,
        "method": creds.method,
        "key_vars": sorted(k for k in os.environ
                           if k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")),
    }


try:
    result = run()
except Exception as e:
    result = {"error": "%s: %s" % (type(e).__name__, e), "trace": traceback.format_exc(),
              "uri": os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
              "token": "AWS_CONTAINER_AUTHORIZATION_TOKEN" in os.environ}
    try:
        import botocore.credentials as bc
        result["direct"] = str(bc.ContainerProvider().load())
    except Exception as e2:
        result["direct"] = "%s: %s" % (type(e2).__name__, e2)
iot.publish(topic="tes/result", payload=json.dumps(result))


def handler(event, context):
    return None
"#;

/// Runs `script` with the test's own boto3, pointed at moto with moto's
/// static keys (the test's client, not the function's); returns its stdout
/// parsed as JSON.
fn moto_py(moto: &Moto, script: &str) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("AWS_ENDPOINT_URL", moto.url())
        .env("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", MOTO_SECRET_KEY)
        .env("AWS_DEFAULT_REGION", REGION)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the check prints JSON")
}

/// The bucket the function writes to, and an SQS queue subscribed to the
/// topic it publishes on, made before the function runs.
const SETUP: &str = r#"
import json, boto3
boto3.client("s3").create_bucket(Bucket="eg-tes")
sns, sqs = boto3.client("sns"), boto3.client("sqs")
topic = sns.create_topic(Name="eg-tes")["TopicArn"]
url = sqs.create_queue(QueueName="eg-tes")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
print(json.dumps({"queue": url}))
"#;

/// What moto holds after the function ran: the object's body and the
/// messages the topic delivered to the queue.
const CHECK: &str = r#"
import json, boto3
body = boto3.client("s3").get_object(Bucket="eg-tes", Key="from-function.txt")["Body"].read().decode()
sqs = boto3.client("sqs")
url = sqs.get_queue_url(QueueName="eg-tes")["QueueUrl"]
got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
print(json.dumps({"body": body, "messages": [json.loads(m["Body"])["Message"] for m in got]}))
"#;

/// Whether the `python3` on `PATH` has boto3 (moto's dependency); says
/// loudly why not.
fn boto3_or_skip() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import boto3"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "\n*** SKIPPED: python3 has no boto3 (installed with moto[server] by .ci/run) ***\n"
        );
    }
    ok
}

/// A pinned Python function with `variables` in its environment.
fn py_function(name: &str, code: &Path, handler: &str, isolation: &str, variables: Value) -> Value {
    json!({
        "Id": name,
        "FunctionArn": fn_arn(name),
        "FunctionConfiguration": {
            "Executable": handler,
            "CodeUri": code,
            "Runtime": "python3.8",
            "Pinned": true,
            "Timeout": 30,
            "MemorySize": 262144,
            "EncodingType": "json",
            "Environment": { "Execution": { "IsolationMode": isolation }, "Variables": variables }
        }
    })
}

/// One raw HTTP exchange with the endpoint; the status and the body.
fn http(port: u16, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// A credentials request as botocore sends it, with `token` if any.
fn credentials_request(port: u16, token: Option<&str>) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
    http(
        port,
        &format!(
            "GET /2016-11-01/credentialprovider/ HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n{auth}\r\n"
        ),
    )
}

/// The runtime's descendants a few levels down (a container's worker is
/// its init's child).
fn descendants(pid: i32) -> Vec<i32> {
    let mut all = Vec::new();
    let mut level = vec![pid];
    for _ in 0..4 {
        level = level.into_iter().flat_map(children_of).collect();
        all.extend(&level);
    }
    all
}

/// The pid and environment of the running worker of function `arn`.
fn worker_of(rt: &Runtime, arn: &str) -> Option<(i32, Vec<String>)> {
    descendants(rt.pid())
        .into_iter()
        .filter(|pid| cmdline(*pid).contains("evergreen_lambda_runtime"))
        .find_map(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let vars: Vec<String> = env
                .split(|b| *b == 0)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            vars.iter()
                .any(|v| v == &format!("MY_FUNCTION_ARN={arn}"))
                .then_some((pid, vars))
        })
}

fn var<'a>(vars: &'a [String], name: &str) -> Option<&'a str> {
    vars.iter()
        .find_map(|v| v.strip_prefix(name)?.strip_prefix('='))
}

/// Copies the installed packages boto3 needs into a function's directory,
/// as V1 users packaged boto3 with their function (a container sees only
/// its own code and the system's Python, which has no boto3).
fn vendor_boto3(code_dir: &Path) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, boto3; print(os.path.dirname(os.path.dirname(boto3.__file__)))",
        ])
        .output()
        .expect("python3");
    let site = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    for name in [
        "boto3",
        "botocore",
        "s3transfer",
        "jmespath",
        "dateutil",
        "urllib3",
        "six.py",
    ] {
        let status = Command::new("cp")
            .arg("-r")
            .arg(site.join(name))
            .arg(code_dir)
            .status()
            .expect("cp");
        assert!(status.success(), "copy {name} from {}", site.display());
    }
}

/// The S3 and SNS calls of `S3_AND_SNS` in a function of `isolation`, against
/// moto: the credentials are the core's (`evergreen.aws`), the function's
/// environment holds none, and what it wrote is really in moto.
fn boto3_function_reaches_moto(isolation: &str) -> Option<(Runtime, u16)> {
    let sdk = greengrasssdk_or_skip()?;
    if !boto3_or_skip() {
        return None;
    }
    let moto = Moto::start()?;
    moto_py(&moto, SETUP);
    let work = tempfile::tempdir().expect("tmp");
    let code = python_package(work.path(), "tes", &sdk, &[("tes.py", S3_AND_SNS)]);
    if isolation == "GreengrassContainer" {
        vendor_boto3(&code);
    }
    let out = work.path().join("got.jsonl");
    let port = free_port().expect("a free port");
    let g = group(
        vec![
            py_function(
                "tes",
                &code,
                "tes.handler",
                isolation,
                json!({ "AWS_ENDPOINT_URL": moto.url() }),
            ),
            function("rec", &format!("record {}", out.display())),
        ],
        vec![sub("tes", &fn_arn("tes"), "tes/#", &fn_arn("rec"))],
    );
    let mut config = moto.core_config();
    merge(
        &mut config,
        &json!({ "coreThing": { "ggDaemonPort": port } }),
    );
    let rt = Runtime::start_config(&g, &config, &[]);
    let got =
        wait_for(LIMIT, || on_topic(&out, "tes/result").into_iter().next()).unwrap_or_else(|| {
            panic!(
                "no result; function log:\n{}",
                read(&rt.function_log("tes"))
            )
        });
    assert!(got.get("error").is_none(), "{}", serde_json::to_string_pretty(&json!({"error": got["error"], "uri": got["uri"], "token": got["token"], "direct": got["direct"]})).unwrap_or_default());
    assert_eq!(
        got["method"], "container-role",
        "boto3 took its credentials from AWS_CONTAINER_CREDENTIALS_FULL_URI: {got}"
    );
    assert_eq!(
        got["key_vars"],
        json!([]),
        "no key in the function's environment: {got}"
    );
    assert_eq!(got["listed"], json!(["from-function.txt"]), "{got}");
    let held = moto_py(&moto, CHECK);
    assert_eq!(held["body"], "written with the group role", "{held}");
    assert_eq!(
        held["messages"],
        json!(["published by a function"]),
        "{held}"
    );
    // The function's own environment names the endpoint and its token.
    let (_, vars) = worker_of(&rt, &fn_arn("tes")).expect("the worker runs");
    assert_eq!(
        var(&vars, "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        Some(format!("http://localhost:{port}/2016-11-01/credentialprovider/").as_str())
    );
    assert!(var(&vars, "AWS_ACCESS_KEY_ID").is_none());
    drop(moto);
    Some((rt, port))
}

/// Documented: "a function using boto3 gets the core's credentials through
/// the token exchange, with no keys in its code or environment"; "a missing
/// or unknown token is refused with 403, and a stopped worker's token dies
/// with it".
#[test]
fn an_unmodified_boto3_function_writes_s3_and_publishes_to_sns_with_the_cores_credentials() {
    let Some((rt, port)) = boto3_function_reaches_moto("NoContainer") else {
        return;
    };
    // No token, or a made-up one: 403, and no credentials in the answer.
    for token in [None, Some("not-a-token")] {
        let (status, body) = credentials_request(port, token);
        assert_eq!(status, 403, "{token:?}: {body}");
        assert!(!body.contains(MOTO_SECRET_KEY), "{body}");
    }
    // The worker's own token: the container-credentials document.
    let (pid, vars) = worker_of(&rt, &fn_arn("tes")).expect("the worker runs");
    let token = var(&vars, "AWS_CONTAINER_AUTHORIZATION_TOKEN")
        .expect("token")
        .to_string();
    let (status, body) = credentials_request(port, Some(&token));
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(doc["AccessKeyId"], MOTO_ACCESS_KEY);
    assert_eq!(doc["SecretAccessKey"], MOTO_SECRET_KEY);
    assert!(
        doc["Expiration"].as_str().is_some_and(|e| e.ends_with('Z')),
        "{doc}"
    );
    // A killed worker's token is refused; its successor has a new one.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the worker");
    let next = wait_for(LIMIT, || {
        worker_of(&rt, &fn_arn("tes")).filter(|(p, _)| *p != pid)
    })
    .expect("the pinned function restarts");
    let (status, body) = credentials_request(port, Some(&token));
    assert_eq!(status, 403, "the killed worker's token: {body}");
    let new_token = var(&next.1, "AWS_CONTAINER_AUTHORIZATION_TOKEN").expect("new token");
    assert_ne!(new_token, token);
    let (status, body) = credentials_request(port, Some(new_token));
    assert_eq!(status, 200, "{body}");
    // Credentials never reach a log.
    for log in [rt.log_path("system/runtime.log"), rt.function_log("tes")] {
        assert!(
            !read(&log).contains(&format!("\"{MOTO_SECRET_KEY}\"")),
            "{}",
            log.display()
        );
    }
}

/// Documented: "the same in a Greengrass container" (boto3 packaged with the
/// function, as V1 users did).
#[test]
fn the_token_exchange_serves_a_function_in_a_container_too() {
    require_containers!();
    let _ = boto3_function_reaches_moto("GreengrassContainer");
}

const WITHOUT: &str = r#"
import json
import boto3
import greengrasssdk

try:
    boto3.client("s3").list_buckets()
    result = {"error": None}
except Exception as e:
    result = {"error": "%s: %s" % (type(e).__name__, e)}
greengrasssdk.client("iot-data").publish(topic="tes/result", payload=json.dumps(result))


def handler(event, context):
    return None
"#;

/// Documented: "without credentials in the core's chain, boto3 raises an
/// error that names the reason, and the runtime log says why once".
#[test]
fn without_credentials_boto3_reports_why_and_the_runtime_logs_it_once() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    if !boto3_or_skip() {
        return;
    }
    let work = tempfile::tempdir().expect("tmp");
    let code = python_package(work.path(), "tes", &sdk, &[("tes.py", WITHOUT)]);
    let out = work.path().join("got.jsonl");
    let home = tempfile::tempdir().expect("home");
    // Nowhere the chain could find keys: no configuration, an empty home,
    // empty key variables (the chain ignores empty values).
    let empty = std::ffi::OsStr::new("");
    let env = [
        ("HOME", home.path().as_os_str()),
        ("AWS_ACCESS_KEY_ID", empty),
        ("AWS_SECRET_ACCESS_KEY", empty),
        ("AWS_SHARED_CREDENTIALS_FILE", empty),
        ("AWS_PROFILE", empty),
    ];
    let port = free_port().expect("a free port");
    // Nothing listens on the endpoint URL: a call that got this far would fail too.
    let nowhere = format!("http://127.0.0.1:{}", free_port().expect("port"));
    let g = group(
        vec![
            py_function(
                "tes",
                &code,
                "tes.handler",
                "NoContainer",
                json!({ "AWS_ENDPOINT_URL": nowhere }),
            ),
            function("rec", &format!("record {}", out.display())),
        ],
        vec![sub("tes", &fn_arn("tes"), "tes/#", &fn_arn("rec"))],
    );
    let rt = Runtime::start_config(&g, &json!({ "coreThing": { "ggDaemonPort": port } }), &env);
    let got =
        wait_for(LIMIT, || on_topic(&out, "tes/result").into_iter().next()).unwrap_or_else(|| {
            panic!(
                "no result; function log:\n{}",
                read(&rt.function_log("tes"))
            )
        });
    let error = got["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("CredentialRetrievalError"), "{got}");
    assert!(
        error.contains("503") && error.contains("no AWS credentials"),
        "{got}"
    );
    let log = read(&rt.log_path("system/runtime.log"));
    assert_eq!(
        log.matches("asked for AWS credentials and the core has none")
            .count(),
        1,
        "botocore asked three times; the reason is logged once:\n{log}"
    );
}
