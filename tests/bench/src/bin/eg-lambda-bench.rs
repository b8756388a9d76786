//! `eg-lambda-bench`: Greengrass V1 Python and Node.js functions under
//! Evergreen: the invoke round trip and the worker cold start.
//!
//! It asserts nothing (benchmarks report, tests assert). Python needs `python3`
//! and greengrasssdk 1.6.1 installed where the tests find it
//! (`/var/cache/evergreen-tests/greengrasssdk-1.6.1`, or
//! `EVERGREEN_GREENGRASSSDK`); Node.js needs `node` and aws-greengrass-core-sdk
//! 1.7.0 (`/var/cache/evergreen-tests/aws-greengrass-core-sdk-1.7.0`, or
//! `EVERGREEN_NODE_SDK`); `.ci/run` installs both. `--lang python|node|both`
//! (default both) picks the cases; each runs in its own runtime, with the same
//! three functions written against its SDK.
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench && target/release/eg-lambda-bench
//! ```
//!
//! `--reps N` (default 500) round trips after 50 of warm-up, `--cold K`
//! (default 10) cold starts. One runtime runs:
//! * `driver`, a pinned Python function whose top-level thread publishes
//!   `bench/ping` and waits until its handler receives the matching
//!   `bench/pong`; the round trip (publish → router → `echo`'s handler →
//!   its publish → router → `driver`'s handler) is timed in Python with
//!   `time.perf_counter`;
//! * `echo`, a pinned Python function that republishes each event;
//! * `cold0..coldK`, on-demand Python functions the driver invokes once each,
//!   one after the other, with a Lambda RequestResponse invoke: the time the
//!   invoke takes is a cold invoke as a caller sees it, and the supervisor's
//!   `ready after X ms` line is the worker cold start (spawn of `python3`,
//!   imports of the runtime and the handler module with greengrasssdk, up to
//!   its `PUT …/initialized`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use clap::Parser;
use evergreen_bench::{bench_config, require_bin};
use evergreen_tests::{
    fn_arn, greengrasssdk, group, node_sdk, sub, vendor_greengrasssdk, vendor_node_sdk, wait_for,
};
use serde_json::{json, Value};

const DRIVER: &str = r#"
import json
import threading
import time

import greengrasssdk

REPS = int("%REPS%")
WARMUP = 50
COLD = int("%COLD%")
iot = greengrasssdk.client("iot-data")
lam = greengrasssdk.client("lambda")
arrived = threading.Event()
expected = [None]


def run():
    time.sleep(0.5)
    rtts = []
    for i in range(WARMUP + REPS):
        expected[0] = i
        arrived.clear()
        t0 = time.perf_counter()
        iot.publish(topic="bench/ping", payload=json.dumps({"i": i}))
        if not arrived.wait(5):
            iot.publish(topic="bench/stats", payload=json.dumps({"error": "no pong for %d" % i}))
            return
        if i >= WARMUP:
            rtts.append((time.perf_counter() - t0) * 1000.0)
    cold = []
    for k in range(COLD):
        t0 = time.perf_counter()
        r = lam.invoke(FunctionName="%COLD_ARN%".replace("NAME", "cold%d" % k), Payload=b"{}")
        r["Payload"].read()
        cold.append((time.perf_counter() - t0) * 1000.0)
    iot.publish(topic="bench/stats", payload=json.dumps({"rtt_ms": rtts, "cold_invoke_ms": cold}))


threading.Thread(target=run, daemon=True).start()


def handler(event, context):
    if event.get("i") == expected[0]:
        arrived.set()
"#;

const ECHO: &str = r#"
import json
import greengrasssdk

iot = greengrasssdk.client("iot-data")


def handler(event, context):
    iot.publish(topic="bench/pong", payload=json.dumps(event))
"#;

const COLD: &str = r#"
import greengrasssdk

client = greengrasssdk.client("iot-data")


def handler(event, context):
    return {"ok": True}
"#;

// The same three functions for Node.js, with aws-greengrass-core-sdk: the
// driver times in Node.js with `process.hrtime`.
const NODE_DRIVER: &str = r#"
const ggSdk = require('aws-greengrass-core-sdk');

const iot = new ggSdk.IotData();
const lambda = new ggSdk.Lambda();
const REPS = Number('%REPS%');
const WARMUP = 50;
const COLD = Number('%COLD%');
let waiting = null;

const publish = (topic, body) => new Promise((resolve, reject) => iot.publish(
    { topic, payload: JSON.stringify(body) }, (err) => (err ? reject(err) : resolve())));
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

async function run() {
    await new Promise((r) => setTimeout(r, 500));
    const rtts = [];
    for (let i = 0; i < WARMUP + REPS; i += 1) {
        const arrived = new Promise((resolve) => { waiting = { i, resolve }; });
        const t0 = process.hrtime.bigint();
        await publish('bench/ping', { i });
        const ok = await Promise.race([arrived.then(() => true),
            new Promise((r) => setTimeout(() => r(false), 5000))]);
        if (!ok) {
            await publish('bench/stats', { error: `no pong for ${i}` });
            return;
        }
        if (i >= WARMUP) rtts.push(ms(t0));
    }
    const cold = [];
    for (let k = 0; k < COLD; k += 1) {
        const t0 = process.hrtime.bigint();
        await new Promise((resolve, reject) => lambda.invoke(
            { FunctionName: '%COLD_ARN%'.replace('NAME', `cold${k}`), Payload: '{}' },
            (err, data) => (err ? reject(err) : resolve(data))));
        cold.push(ms(t0));
    }
    await publish('bench/stats', { rtt_ms: rtts, cold_invoke_ms: cold });
}

run().catch((e) => publish('bench/stats', { error: String(e) }));

exports.handler = function handler(event) {
    if (waiting && event && event.i === waiting.i) {
        const w = waiting;
        waiting = null;
        w.resolve();
    }
};
"#;

const NODE_ECHO: &str = r#"
const ggSdk = require('aws-greengrass-core-sdk');

const iot = new ggSdk.IotData();

exports.handler = function handler(event, context, callback) {
    iot.publish({ topic: 'bench/pong', payload: JSON.stringify(event) }, () => callback(null));
};
"#;

const NODE_COLD: &str = r#"
const ggSdk = require('aws-greengrass-core-sdk');

const iot = new ggSdk.IotData();

exports.handler = async () => ({ ok: true });
"#;

/// Which SDK and runtime a case uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Lang {
    Python,
    Node,
    /// Python and Node.js.
    Both,
    /// C functions on Evergreen's C SDK (needs `cc`).
    C,
}

/// One language's functions: file name, handler module and source per role.
struct Case {
    label: &'static str,
    runtime: &'static str,
    sdk: PathBuf,
    python: bool,
}

impl Case {
    fn package(&self, dir: &Path, role: &str, text: &str) -> Result<(PathBuf, String), String> {
        if self.python {
            vendor_greengrasssdk(&self.sdk, dir).map_err(|e| e.to_string())?;
            std::fs::write(dir.join(format!("{role}.py")), text).map_err(|e| e.to_string())?;
            Ok((dir.to_path_buf(), format!("{role}.handler")))
        } else {
            vendor_node_sdk(&self.sdk, dir).map_err(|e| e.to_string())?;
            std::fs::write(dir.join("index.js"), text).map_err(|e| e.to_string())?;
            Ok((dir.to_path_buf(), "index.handler".to_string()))
        }
    }

    fn function(&self, name: &str, code: &Path, handler: &str, pinned: bool) -> Value {
        json!({
            "Id": name,
            "FunctionArn": fn_arn(name),
            "FunctionConfiguration": {
                "Executable": handler,
                "CodeUri": code,
                "Runtime": self.runtime,
                "Pinned": pinned,
                "Timeout": 10,
                "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
            }
        })
    }
}

fn stats(label: &str, values: &mut [f64]) {
    if values.is_empty() {
        println!("{label}: no samples");
        return;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    println!(
        "{label}: n={} min {:.2} ms, median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms",
        values.len(),
        values[0],
        at(0.5),
        at(0.9),
        at(0.99),
        values[values.len() - 1],
        mean
    );
}

/// Greengrass V1 Python and Node.js functions under Evergreen: the invoke
/// round trip and the worker cold start.
#[derive(Debug, Parser)]
#[command(
    name = "eg-lambda-bench",
    after_help = "Build: cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench\n\
                  Needs python3 and greengrasssdk 1.6.1 (see EVERGREEN_GREENGRASSSDK) and node with\n\
                  aws-greengrass-core-sdk 1.7.0 (see EVERGREEN_NODE_SDK), or for --lang c a C compiler (cc)."
)]
struct Cli {
    /// Which functions: Python (greengrasssdk), Node.js (aws-greengrass-core-sdk), both, or C
    /// (Evergreen's C SDK).
    #[arg(long, value_enum, default_value_t = Lang::Both)]
    lang: Lang,
    /// Timed round trips, after 50 of warm-up.
    #[arg(long, default_value_t = 500)]
    reps: usize,
    /// Cold starts (on-demand functions invoked once each; at least 1).
    #[arg(long, default_value_t = 10, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    cold: usize,
}

fn run(Cli { lang, reps, cold }: Cli) -> Result<(), String> {
    if matches!(lang, Lang::Python | Lang::Both) {
        let case = Case {
            label: "greengrasssdk 1.6.1 (Python)",
            runtime: "python3.8",
            sdk: greengrasssdk()?,
            python: true,
        };
        run_case(&case, reps, cold)?;
    }
    if matches!(lang, Lang::Node | Lang::Both) {
        let case = Case {
            label: "aws-greengrass-core-sdk 1.7.0 (Node.js)",
            runtime: "nodejs12.x",
            sdk: node_sdk()?,
            python: false,
        };
        run_case(&case, reps, cold)?;
    }
    if lang == Lang::C {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let functions = evergreen_bench::lambda_c::functions(dir.path(), reps, cold)?;
        run_group("Evergreen's C SDK (C)", dir.path(), functions, reps, cold)?;
    }
    Ok(())
}

fn run_case(case: &Case, reps: usize, cold: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path();
    let functions = case_functions(case, d, reps, cold)?;
    run_group(case.label, d, functions, reps, cold)
}

/// The `driver`, `echo` and `cold0..` functions of a Python or Node.js case, packaged in `d`.
fn case_functions(case: &Case, d: &Path, reps: usize, cold: usize) -> Result<Vec<Value>, String> {
    let cold_arn = fn_arn("NAME");
    let (driver_text, echo_text, cold_text) = if case.python {
        (DRIVER, ECHO, COLD)
    } else {
        (NODE_DRIVER, NODE_ECHO, NODE_COLD)
    };
    let (driver, driver_handler) = case.package(
        &d.join("driver"),
        "driver",
        &driver_text
            .replace("%REPS%", &reps.to_string())
            .replace("%COLD%", &cold.to_string())
            .replace("%COLD_ARN%", &cold_arn),
    )?;
    let (echo, echo_handler) = case.package(&d.join("echo"), "echo", echo_text)?;
    let mut functions = vec![
        case.function("driver", &driver, &driver_handler, true),
        case.function("echo", &echo, &echo_handler, true),
    ];
    for k in 0..cold {
        let name = format!("cold{k}");
        let (code, handler) = case.package(&d.join(&name), "cold", cold_text)?;
        functions.push(case.function(&name, &code, &handler, false));
    }
    Ok(functions)
}

/// Runs `functions` (a driver, an echo and the cold ones) with the recorder in one runtime and
/// prints the driver's figures and the supervisor's cold starts.
fn run_group(
    label: &str,
    d: &Path,
    mut functions: Vec<Value>,
    reps: usize,
    cold: usize,
) -> Result<(), String> {
    let evergreen = require_bin("evergreen")?;
    let eg_fn = require_bin("eg-fn")?;
    let out = d.join("stats.jsonl");
    functions.push(json!({
            "Id": "rec",
            "FunctionArn": fn_arn("rec"),
            "FunctionConfiguration": {
                "Executable": eg_fn,
                "ExecArgs": format!("record {}", out.display()),
                "Pinned": true,
                "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
            }
    }));
    let mut g = group(
        functions,
        vec![
            sub("ping", &fn_arn("driver"), "bench/ping", &fn_arn("echo")),
            sub("pong", &fn_arn("echo"), "bench/pong", &fn_arn("driver")),
            sub("stats", &fn_arn("driver"), "bench/stats", &fn_arn("rec")),
        ],
    );
    g["LoggerDefinitionVersion"]["Loggers"][0]["Level"] = json!("INFO");
    g["LoggerDefinitionVersion"]["Loggers"][1]["Level"] = json!("INFO");
    // The Python functions reach the runtime on ggDaemonPort: a free one.
    let mut cfg = bench_config(&d.join("root"))?;
    cfg["evergreen"]["controlSocket"] = json!(d.join("control.sock"));
    let group_path = d.join("group.json");
    let config_path = d.join("config.json");
    std::fs::write(&group_path, g.to_string()).map_err(|e| e.to_string())?;
    std::fs::write(&config_path, cfg.to_string()).map_err(|e| e.to_string())?;
    let mut child = Command::new(&evergreen)
        .args(["run", "--config"])
        .arg(&config_path)
        .arg("--group")
        .arg(&group_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start evergreen: {e}"))?;
    let limit = Duration::from_secs(60 + reps as u64 / 20 + cold as u64 * 5);
    let got = wait_for(limit, || {
        std::fs::read_to_string(&out)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string))
    });
    let _ = child.kill();
    let _ = child.wait();
    let line = got.ok_or("no figures from the driver in time")?;
    let record: Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
    let doc: Value = serde_json::from_str(record["payload"].as_str().unwrap_or("{}"))
        .map_err(|e| e.to_string())?;
    if let Some(e) = doc.get("error") {
        return Err(format!("driver: {e}"));
    }
    let list = |key: &str| -> Vec<f64> {
        doc[key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    // The supervisor's figure for each cold worker: spawn to its first request.
    let mut ready = Vec::new();
    for k in 0..cold {
        let log = d.join(format!(
            "root/var/log/user/{}/{}/cold{k}.log",
            evergreen_tests::REGION,
            evergreen_tests::ACCOUNT
        ));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(ms) = text.lines().find_map(|l| {
            l.split("ready after ")
                .nth(1)
                .and_then(|r| r.trim_end_matches(" ms").trim().parse::<f64>().ok())
        }) {
            ready.push(ms);
        }
    }
    println!(
        "eg-lambda-bench: {} functions, NoContainer, {} round trips after 50 warm-up, {} cold starts",
        label, reps, cold
    );
    stats(
        "round trip (publish -> echo handler -> publish back -> driver handler)",
        &mut list("rtt_ms"),
    );
    stats("worker cold start (spawn to first IPC request)", &mut ready);
    stats(
        "cold RequestResponse invoke, as the caller sees it",
        &mut list("cold_invoke_ms"),
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eg-lambda-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
