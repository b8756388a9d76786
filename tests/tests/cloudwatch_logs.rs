//! End-to-end: a group's `AWSCloudWatch` loggers (`docs/operations.md`
//! "CloudWatch Logs"). A function's lines, the lines the SDK's log
//! appender posts to the Lambda endpoint (`POST /2016-11-01/cloudwatch/logs/`)
//! and the runtime's own lines reach a real `moto_server`'s CloudWatch Logs
//! under V1's log group and stream names, read back with boto3's
//! `get_log_events`; lines logged while moto is down wait in the spool and
//! arrive once it is back.
//!
//! Skips loudly without `moto_server` or `python3` with boto3.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(40);

// A pinned function that prints a numbered line five times a second.
const TICKER: &str = r#"
import threading
import time

def tick():
    n = 0
    while True:
        n += 1
        print("tick %d" % n, flush=True)
        time.sleep(0.2)

threading.Thread(target=tick, daemon=True).start()


def handler(event, context):
    return None
"#;

/// Every log group's streams and their messages, as boto3 reads them from moto.
const READ_BACK: &str = r#"
import json, boto3
logs = boto3.client("logs")
out = {}
for g in logs.describe_log_groups()["logGroups"]:
    name = g["logGroupName"]
    out[name] = {}
    for s in logs.describe_log_streams(logGroupName=name)["logStreams"]:
        events = logs.get_log_events(logGroupName=name, logStreamName=s["logStreamName"],
                                     startFromHead=True, limit=10000)["events"]
        out[name][s["logStreamName"]] = [e["message"] for e in events]
print(json.dumps(out))
"#;

/// What moto's CloudWatch Logs holds (`{group: {stream: [message]}}`), or
/// `None` while moto does not answer.
fn read_back(moto: &Moto) -> Option<Value> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(READ_BACK)
        .env("AWS_ENDPOINT_URL", moto.url())
        .env("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", MOTO_SECRET_KEY)
        .env("AWS_DEFAULT_REGION", REGION)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

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

/// The tick numbers in `messages` (`[…][INFO]-… tick N`).
fn ticks(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|m| m.as_str()?.rsplit_once("tick ")?.1.trim().parse().ok())
        .collect()
}

/// The tick numbers of the ticker's group, all its streams together.
fn cloud_ticks(doc: &Value, group: &str) -> Vec<u64> {
    let mut all = Vec::new();
    if let Some(streams) = doc[group].as_object() {
        for messages in streams.values() {
            all.extend(ticks(messages.as_array().map_or(&[][..], Vec::as_slice)));
        }
    }
    all
}

/// The highest tick in the function's local log file.
fn local_tick(path: &Path) -> u64 {
    read(path)
        .lines()
        .filter_map(|l| l.rsplit_once("tick ")?.1.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

/// The worker's token, from its environment.
fn token_of(rt: &Runtime, arn: &str) -> Option<String> {
    let mut level = vec![rt.pid()];
    for _ in 0..3 {
        level = level.into_iter().flat_map(children_of).collect();
        for pid in &level {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let vars: Vec<String> = env
                .split(|b| *b == 0)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            if vars.iter().any(|v| v == &format!("MY_FUNCTION_ARN={arn}")) {
                return vars
                    .iter()
                    .find_map(|v| v.strip_prefix("AWS_CONTAINER_AUTHORIZATION_TOKEN="))
                    .map(str::to_string);
            }
        }
    }
    None
}

/// Documented: "with an `AWSCloudWatch` logger, a function's lines, the SDK
/// log appender's lines and the runtime's lines go to CloudWatch Logs under
/// V1's names, batched; lines logged while CloudWatch cannot be reached wait
/// in the spool and are sent when it is back, none lost".
#[test]
fn lines_reach_cloudwatch_logs_under_v1_names_and_survive_an_outage() {
    if !boto3_or_skip() {
        return;
    }
    let Some(mut moto) = Moto::start() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let code = work.path().join("ticker");
    std::fs::create_dir_all(&code).expect("mkdir");
    std::fs::write(code.join("ticker.py"), TICKER).expect("write");
    let port = free_port().expect("port");
    let mut g = group(
        vec![json!({
            "Id": "ticker",
            "FunctionArn": fn_arn("ticker"),
            "FunctionConfiguration": {
                "Executable": "ticker.handler",
                "CodeUri": code,
                "Runtime": "python3.8",
                "Pinned": true,
                "Timeout": 30,
                "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
            }
        })],
        vec![],
    );
    g["LoggerDefinitionVersion"]["Loggers"] = json!([
        { "Id": "fs-sys", "Component": "GreengrassSystem", "Level": "INFO", "Type": "FileSystem", "Space": 4096 },
        { "Id": "fs-fn", "Component": "Lambda", "Level": "INFO", "Type": "FileSystem", "Space": 4096 },
        { "Id": "cw-sys", "Component": "GreengrassSystem", "Level": "INFO", "Type": "AWSCloudWatch" },
        { "Id": "cw-fn", "Component": "Lambda", "Level": "INFO", "Type": "AWSCloudWatch" }
    ]);
    let mut config = moto.core_config();
    merge(
        &mut config,
        &json!({ "coreThing": { "ggDaemonPort": port } }),
    );
    let rt = Runtime::start_config(&g, &config, &[]);
    let group_name = format!("/aws/greengrass/Lambda/{REGION}/{ACCOUNT}/ticker");
    let doc = wait_for(LIMIT, || {
        read_back(&moto).filter(|d| cloud_ticks(d, &group_name).len() >= 5)
    })
    .unwrap_or_else(|| {
        panic!(
            "no ticks in CloudWatch: {:?}\n{}",
            read_back(&moto),
            read(&rt.log_path("system/runtime.log"))
        )
    });
    // V1's stream name: the UTC date, the account and the core thing.
    let streams: Vec<&String> = doc[&group_name]
        .as_object()
        .expect("streams")
        .keys()
        .collect();
    let today = Command::new("date")
        .args(["-u", "+%Y/%m/%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .expect("date");
    assert!(
        streams
            .iter()
            .all(|s| s.ends_with(&format!("/{ACCOUNT}/test-core"))
                && s.len() == 10 + 1 + ACCOUNT.len() + 10),
        "{streams:?}"
    );
    assert!(
        streams.iter().any(|s| s.starts_with(&today)),
        "{streams:?} {today}"
    );
    // Lines keep the local format: `[timestamp][LEVEL]-message`.
    let first = doc[&group_name][streams[0]][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        first.starts_with("[20") && first.contains("][INFO]-"),
        "{first}"
    );
    // In time order and each once.
    let got = cloud_ticks(&doc, &group_name);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    // The runtime's own lines, in the GreengrassSystem group.
    assert!(
        doc["/aws/greengrass/GreengrassSystem/runtime"]
            .as_object()
            .is_some_and(|s| s
                .values()
                .any(|m| m.as_array().is_some_and(|m| !m.is_empty()))),
        "{}",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    );

    // The SDK's local log appender (what greengrasssdk's CloudWatch log
    // handler posts) reaches the function's group too.
    let token = token_of(&rt, &fn_arn("ticker")).expect("token");
    let body =
        json!({"logEvents": [{"message": "from the log appender", "timestamp": 0}]}).to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(
        format!(
            "POST /2016-11-01/cloudwatch/logs/ HTTP/1.1\r\nAuthorization: {token}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .expect("write");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    wait_for(LIMIT, || {
        read_back(&moto).filter(|d| d.to_string().contains("from the log appender"))
    })
    .expect("the appender's line in CloudWatch");

    // An outage: moto stops (and forgets everything); the lines logged
    // meanwhile wait in the spool and arrive after it is back.
    moto.stop();
    let local = rt.function_log("ticker");
    let stopped_at = local_tick(&local);
    std::thread::sleep(Duration::from_secs(4));
    let before_restart = local_tick(&local);
    assert!(before_restart > stopped_at + 5, "the ticker kept ticking");
    assert!(moto.restart(), "moto restarts on its port");
    let doc = wait_for(LIMIT, || {
        read_back(&moto).filter(|d| {
            cloud_ticks(d, &group_name)
                .iter()
                .any(|t| *t > before_restart)
        })
    })
    .unwrap_or_else(|| panic!("nothing after the outage: {:?}", read_back(&moto)));
    let got = cloud_ticks(&doc, &group_name);
    for tick in stopped_at + 1..=before_restart {
        assert!(
            got.contains(&tick),
            "tick {tick} of the outage was lost: {got:?}"
        );
    }
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "in order, each once: {got:?}"
    );
}
