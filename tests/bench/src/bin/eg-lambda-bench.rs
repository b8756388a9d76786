//! `eg-lambda-bench`: Greengrass V1 Python functions under Evergreen: the
//! invoke round trip and the worker cold start.
//!
//! It asserts nothing (benchmarks report, tests assert). It needs `python3`
//! and greengrasssdk 1.6.1 installed where the tests find it
//! (`/var/cache/evergreen-tests/greengrasssdk-1.6.1`, or
//! `EVERGREEN_GREENGRASSSDK`; `.ci/run` installs it).
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench && target/release/eg-lambda-bench
//! ```
//!
//! `--reps N` (default 500) round trips after 50 of warm-up, `--cold K`
//! (default 10) cold starts. `--runtime c` runs the same functions written in C against
//! Evergreen's C SDK library instead (`evergreen_bench::lambda_c`; needs `cc`). One runtime
//! runs:
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
use evergreen_tests::{fn_arn, greengrasssdk, group, sub, vendor_greengrasssdk, wait_for};
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

fn package(dir: &Path, sdk: &Path, file: &str, text: &str) -> Result<PathBuf, String> {
    vendor_greengrasssdk(sdk, dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(file), text).map_err(|e| e.to_string())?;
    Ok(dir.to_path_buf())
}

fn py(name: &str, code: &Path, handler: &str, pinned: bool) -> Value {
    json!({
        "Id": name,
        "FunctionArn": fn_arn(name),
        "FunctionConfiguration": {
            "Executable": handler,
            "CodeUri": code,
            "Pinned": pinned,
            "Timeout": 10,
            "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
        }
    })
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

/// Greengrass V1 Python functions under Evergreen: the invoke round trip
/// and the worker cold start.
#[derive(Debug, Parser)]
#[command(
    name = "eg-lambda-bench",
    after_help = "Build: cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench\n\
                  Needs python3 and greengrasssdk 1.6.1 (see EVERGREEN_GREENGRASSSDK), or for --runtime c a C compiler (cc)."
)]
struct Cli {
    /// Timed round trips, after 50 of warm-up.
    #[arg(long, default_value_t = 500)]
    reps: usize,
    /// Cold starts (on-demand functions invoked once each; at least 1).
    #[arg(long, default_value_t = 10, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    cold: usize,
    /// The functions' language: Python with greengrasssdk, or C with Evergreen's C SDK.
    #[arg(long, value_enum, default_value_t = Lang::Python)]
    runtime: Lang,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Lang {
    Python,
    C,
}

/// The Python case's functions (`driver`, `echo`, `cold0..`) packaged in `d`.
fn python_functions(d: &Path, reps: usize, cold: usize) -> Result<Vec<Value>, String> {
    let sdk = greengrasssdk()?;
    let cold_arn = fn_arn("NAME");
    let driver = package(
        &d.join("driver"),
        &sdk,
        "driver.py",
        &DRIVER
            .replace("%REPS%", &reps.to_string())
            .replace("%COLD%", &cold.to_string())
            .replace("%COLD_ARN%", &cold_arn),
    )?;
    let echo = package(&d.join("echo"), &sdk, "echo.py", ECHO)?;
    let mut functions = vec![
        py("driver", &driver, "driver.handler", true),
        py("echo", &echo, "echo.handler", true),
    ];
    for k in 0..cold {
        let name = format!("cold{k}");
        let code = package(&d.join(&name), &sdk, "cold.py", COLD)?;
        functions.push(py(&name, &code, "cold.handler", false));
    }
    Ok(functions)
}

fn run(
    Cli {
        reps,
        cold,
        runtime,
    }: Cli,
) -> Result<(), String> {
    let evergreen = require_bin("evergreen")?;
    let eg_fn = require_bin("eg-fn")?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path();
    let mut functions = match runtime {
        Lang::Python => python_functions(d, reps, cold)?,
        Lang::C => evergreen_bench::lambda_c::functions(d, reps, cold)?,
    };
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
    let mut command = Command::new(&evergreen);
    if runtime == Lang::C {
        // The library this build made (in deps/), for the runtime to copy and hand out.
        command.env(
            "EVERGREEN_C_SDK_LIBRARY",
            evergreen_bench::lambda_c::library()?,
        );
    }
    let mut child = command
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
    let what = match runtime {
        Lang::Python => "greengrasssdk 1.6.1 (Python) functions",
        Lang::C => "C functions on Evergreen's libaws-greengrass-core-sdk-c.so",
    };
    println!(
        "eg-lambda-bench: {what}, NoContainer, {} round trips after 50 warm-up, {} cold starts",
        reps, cold
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
