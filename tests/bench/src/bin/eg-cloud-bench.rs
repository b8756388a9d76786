//! `eg-cloud-bench`: sustained records/s of the KinesisFirehose and
//! CloudWatchMetrics connectors through the whole runtime into a real
//! `moto_server`, with batching on, and the RSS of each connector process
//! at rest and under that load. It asserts nothing (benchmarks report,
//! tests assert).
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench
//! target/release/eg-cloud-bench [--count N] [--rate R]
//! ```
//!
//! One runtime runs both connectors (`NoContainer`, `PublishInterval` 1,
//! queues of 100000) plus, for each, a load function and a counting
//! function, all this same executable in child modes:
//!
//! - `load <topic-kind> <count> <rate> <go-file>`: waits for `go-file`, then
//!   publishes `count` messages (`firehose`: JSON records on
//!   `kinesisfirehose/message`; `cloudwatch`: metrics on
//!   `cloudwatch/metric/put`, spread over 4 namespaces) at `rate` per
//!   second, in 10 ms steps.
//! - `count <out-file>`: counts what arrives on the status topic (Firehose:
//!   per-record entries; CloudWatch: calls) and rewrites `out-file` with
//!   the counts and the wall-clock time of the last status.
//!
//! For each connector the driver reads its RSS at rest, starts the load,
//! samples the RSS every 50 ms, waits until the statuses stop (Firehose:
//! every record has one; CloudWatch: none new for 3 s), and reports
//! records/s = records / (last status - first publish). CloudWatch's count
//! is checked in moto (`GetMetricStatistics` SampleCount), Firehose's in the
//! statuses. moto is the bottleneck that is measured with the runtime:
//! these are figures for this setup, not for AWS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use evergreen_aws::AwsClient;
use evergreen_bench::{require_bin, start_runtime};
use evergreen_ipc::sdk::{Component, Event};
use evergreen_ipc::AwsCredentials;
use evergreen_tests::*;
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error>;

const FIREHOSE: &str = "arn:aws:greengrass:us-east-1::/connectors/KinesisFirehose/versions/5";
const CLOUDWATCH: &str = "arn:aws:greengrass:us-east-1::/connectors/CloudWatchMetrics/versions/5";
const BUCKET: &str = "bench-bucket";
/// Longest wait for anything (a child's go file, the statuses).
const PATIENCE: Duration = Duration::from_secs(300);
/// 2023-11-14T22:13:20Z, the timestamp of every bench metric.
const TS: u64 = 1_700_000_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Records per second of the KinesisFirehose and CloudWatchMetrics
/// connectors into moto, and each connector's RSS at rest and under load.
#[derive(Debug, Parser)]
#[command(
    name = "eg-cloud-bench",
    after_help = "`load` and `count` are child modes the runtime runs as functions.\n\
                  Build: cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench\n\
                  Needs moto_server (pip install 'moto[server]==5.2.1')."
)]
struct Cli {
    /// Records (Firehose) and metrics (CloudWatch) to send.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Messages per second each load function publishes.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    rate: u64,
    #[command(subcommand)]
    mode: Option<Mode>,
}

/// The child modes, run by the runtime as functions of the bench's group.
#[derive(Debug, Subcommand)]
enum Mode {
    /// Publishes `count` messages at `rate`/s once `go` exists.
    #[command(hide = true)]
    Load {
        kind: String,
        count: u64,
        rate: u64,
        go: String,
    },
    /// Counts the statuses into `out`.
    #[command(hide = true)]
    Count { out: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eg-cloud-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.mode {
        Some(Mode::Load {
            kind,
            count,
            rate,
            go,
        }) => rt.block_on(load(&kind, count, rate, &go)),
        Some(Mode::Count { out }) => rt.block_on(count(&out)),
        None => require_bin("evergreen")
            .map_err(BoxError::from)
            .and_then(|_| rt.block_on(drive(cli.count, cli.rate))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eg-cloud-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Child mode: publish `count` messages at `rate`/s once `go` exists.
async fn load(kind: &str, count: u64, rate: u64, go: &str) -> Result<(), BoxError> {
    let mut component = Component::connect().await?;
    let handle = component.handle();
    component.ready().await?;
    let publisher = handle.clone();
    let kind = kind.to_string();
    let go = PathBuf::from(go);
    let task = tokio::spawn(async move {
        let deadline = Instant::now() + PATIENCE;
        while !go.exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let per_step = (rate / 100).max(1);
        let mut step = tokio::time::interval(Duration::from_millis(10));
        let mut sent = 0u64;
        while sent < count {
            step.tick().await;
            for _ in 0..per_step.min(count - sent) {
                let (topic, payload) = if kind == "firehose" {
                    (
                        "kinesisfirehose/message",
                        json!({"request": {"data": format!("record-{sent:08}\n")}, "id": sent.to_string()}),
                    )
                } else {
                    (
                        "cloudwatch/metric/put",
                        json!({"request": {"namespace": format!("Bench/{}", sent % 4), "metricData": {
                            "metricName": "load", "timestamp": TS, "value": sent as f64, "unit": "Count"}}}),
                    )
                };
                if let Err(e) = publisher.publish(topic, payload.to_string()).await {
                    eprintln!("eg-cloud-bench load: {e}");
                    return;
                }
                sent += 1;
            }
        }
    });
    while let Some(event) = component.next_event().await {
        if matches!(event, Event::Shutdown { .. }) {
            break;
        }
    }
    task.abort();
    Ok(())
}

/// Child mode: count statuses into `out`.
async fn count(out: &str) -> Result<(), BoxError> {
    let mut component = Component::connect().await?;
    component.ready().await?;
    let (mut ok, mut fail, mut messages, mut last_ms) = (0u64, 0u64, 0u64, 0u64);
    let mut last_write = Instant::now();
    let write = |ok: u64, fail: u64, messages: u64, last_ms: u64| {
        let tmp = format!("{out}.tmp");
        let text =
            json!({"ok": ok, "fail": fail, "messages": messages, "last_ms": last_ms}).to_string();
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, out);
        }
    };
    loop {
        let event = tokio::time::timeout(Duration::from_millis(200), component.next_event()).await;
        match event {
            Ok(None) | Ok(Some(Event::Shutdown { .. })) => break,
            Ok(Some(Event::Message(m))) => {
                messages += 1;
                last_ms = now_ms();
                let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                let statuses: Vec<Value> = match &v["response"] {
                    Value::Array(a) => a.clone(),
                    other => vec![other.clone()],
                };
                for s in statuses {
                    if s["status"] == "success" {
                        ok += 1;
                    } else {
                        fail += 1;
                    }
                }
            }
            // Only a component that serves a function name gets invokes.
            Ok(Some(Event::Invoke(_))) => {}
            Ok(Some(Event::Refused { .. })) | Err(_) => {}
        }
        if last_write.elapsed() >= Duration::from_millis(100) {
            write(ok, fail, messages, last_ms);
            last_write = Instant::now();
        }
    }
    write(ok, fail, messages, last_ms);
    Ok(())
}

fn bench_function(name: &str, args: &str) -> Result<Value, BoxError> {
    Ok(json!({
        "Id": name,
        "FunctionArn": fn_arn(name),
        "FunctionConfiguration": {
            "Executable": std::env::current_exe()?,
            "ExecArgs": args,
            "Pinned": true,
            "Timeout": 3,
            "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
        }
    }))
}

fn aws(url: &str) -> AwsClient {
    AwsClient::with_credentials(
        REGION,
        BTreeMap::from([
            ("firehose".to_string(), url.to_string()),
            ("monitoring".to_string(), url.to_string()),
        ]),
        AwsCredentials {
            access_key_id: MOTO_ACCESS_KEY.into(),
            secret_access_key: MOTO_SECRET_KEY.into(),
            session_token: None,
            expiration_ms: None,
        },
    )
}

fn counts(path: &Path) -> (u64, u64, u64, u64) {
    let v: Value = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    (n("ok"), n("fail"), n("messages"), n("last_ms"))
}

fn connector_pid(runtime: i32, name: &str) -> Option<i32> {
    let needle = format!("connector {name}");
    children_of(runtime)
        .into_iter()
        .find(|pid| cmdline(*pid).contains(&needle))
}

struct Phase {
    records_per_s: f64,
    delivered: u64,
    failed: u64,
    calls: u64,
    rss_rest_kb: u64,
    rss_peak_kb: u64,
}

async fn phase(
    rt_pid: i32,
    connector: &str,
    dir: &Path,
    kind: &str,
    count: u64,
    moto: &Moto,
) -> Result<Phase, BoxError> {
    let pid = connector_pid(rt_pid, connector).ok_or(format!("{connector} process not found"))?;
    let rss_rest_kb = vm_rss_kb(pid).unwrap_or(0);
    let out = dir.join(format!("{kind}-count.json"));
    let start_ms = now_ms();
    std::fs::write(dir.join(format!("{kind}-go")), b"go")?;
    let mut rss_peak_kb = rss_rest_kb;
    let deadline = Instant::now() + PATIENCE;
    let mut last_change = Instant::now();
    let mut last_seen = (0, 0, 0, 0);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        rss_peak_kb = rss_peak_kb.max(vm_rss_kb(pid).unwrap_or(0));
        let c = counts(&out);
        if c != last_seen {
            last_seen = c;
            last_change = Instant::now();
        }
        let done = if kind == "firehose" {
            c.0 + c.1 >= count
        } else {
            c.2 > 0 && last_change.elapsed() > Duration::from_secs(3)
        };
        if done || Instant::now() > deadline {
            break;
        }
    }
    let (ok, fail, calls, last_ms) = last_seen;
    let elapsed_s = (last_ms.saturating_sub(start_ms)).max(1) as f64 / 1000.0;
    let delivered = if kind == "firehose" {
        ok
    } else {
        // CloudWatch statuses are per call: ask moto how many arrived.
        let mut total = 0.0;
        for ns in 0..4 {
            let xml = aws(&moto.url())
                .query(
                    "monitoring",
                    "2010-08-01",
                    "GetMetricStatistics",
                    &[
                        ("Namespace".into(), format!("Bench/{ns}")),
                        ("MetricName".into(), "load".into()),
                        ("StartTime".into(), "2023-11-14T00:00:00Z".into()),
                        ("EndTime".into(), "2023-11-15T00:00:00Z".into()),
                        ("Period".into(), "86400".into()),
                        ("Statistics.member.1".into(), "SampleCount".into()),
                    ],
                )
                .await?;
            total += evergreen_aws::xml_value(&xml, "SampleCount")
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
        total as u64
    };
    Ok(Phase {
        records_per_s: delivered as f64 / elapsed_s,
        delivered,
        failed: fail,
        calls,
        rss_rest_kb,
        rss_peak_kb,
    })
}

async fn drive(count: u64, rate: u64) -> Result<(), BoxError> {
    let moto = Moto::start().ok_or("moto_server is needed (pip install 'moto[server]==5.2.1')")?;
    http_request("PUT", moto.port(), &format!("/{BUCKET}"), "", b"")?;
    aws(&moto.url())
        .json(
            "firehose",
            "Firehose_20150804.CreateDeliveryStream",
            &json!({
                "DeliveryStreamName": "bench",
                "DeliveryStreamType": "DirectPut",
                "ExtendedS3DestinationConfiguration": {
                    "RoleARN": format!("arn:aws:iam::{ACCOUNT}:role/firehose"),
                    "BucketARN": format!("arn:aws:s3:::{BUCKET}"),
                    "Prefix": "bench/"
                }
            }),
        )
        .await?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let mut g = group(
        vec![
            bench_function(
                "fh-load",
                &format!(
                    "load firehose {count} {rate} {}",
                    d.join("firehose-go").display()
                ),
            )?,
            bench_function(
                "fh-count",
                &format!("count {}", d.join("firehose-count.json").display()),
            )?,
            bench_function(
                "cw-load",
                &format!(
                    "load cloudwatch {count} {rate} {}",
                    d.join("cloudwatch-go").display()
                ),
            )?,
            bench_function(
                "cw-count",
                &format!("count {}", d.join("cloudwatch-count.json").display()),
            )?,
        ],
        vec![
            sub(
                "fh-in",
                &fn_arn("fh-load"),
                "kinesisfirehose/message",
                FIREHOSE,
            ),
            sub(
                "fh-out",
                FIREHOSE,
                "kinesisfirehose/message/status",
                &fn_arn("fh-count"),
            ),
            sub(
                "cw-in",
                &fn_arn("cw-load"),
                "cloudwatch/metric/put",
                CLOUDWATCH,
            ),
            sub(
                "cw-out",
                CLOUDWATCH,
                "cloudwatch/metric/put/status",
                &fn_arn("cw-count"),
            ),
        ],
    );
    g["ConnectorDefinitionVersion"] = json!({ "Connectors": [
        { "Id": "firehose", "ConnectorArn": FIREHOSE, "Parameters": {
            "DefaultDeliveryStreamArn": format!("arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/bench"),
            "DeliveryStreamQueueSize": "100000", "MemorySize": "65535", "PublishInterval": "1",
            "IsolationMode": "NoContainer" } },
        { "Id": "cloudwatch", "ConnectorArn": CLOUDWATCH, "Parameters": {
            "PublishInterval": "1", "MemorySize": "65535", "MaxMetricsToRetain": "100000",
            "IsolationMode": "NoContainer" } }
    ]});
    // Quieter logs: per-call lines would measure the logger.
    g["LoggerDefinitionVersion"] = json!({ "Loggers": [
        { "Id": "sys", "Component": "GreengrassSystem", "Level": "INFO", "Type": "FileSystem", "Space": 4096 },
        { "Id": "user", "Component": "Lambda", "Level": "INFO", "Type": "FileSystem", "Space": 4096 }
    ]});
    let rt = start_runtime(&g, &moto.core_config())?;
    let up = wait_for(Duration::from_secs(30), || {
        (connector_pid(rt.pid(), "KinesisFirehose").is_some()
            && connector_pid(rt.pid(), "CloudWatchMetrics").is_some())
        .then_some(())
    });
    up.ok_or("the connectors did not start")?;
    // At rest: started, nothing sent yet.
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("eg-cloud-bench: {count} records per connector offered at {rate}/s, PublishInterval 1, into moto");
    for (connector, kind) in [
        ("KinesisFirehose", "firehose"),
        ("CloudWatchMetrics", "cloudwatch"),
    ] {
        let p = phase(rt.pid(), connector, d, kind, count, &moto).await?;
        println!(
            "{connector:18} {:8.0} records/s  delivered {}/{count}  failed {}  status msgs {}  RSS rest {} KiB  peak {} KiB",
            p.records_per_s, p.delivered, p.failed, p.calls, p.rss_rest_kb, p.rss_peak_kb
        );
    }
    if let Some(pid) = Some(rt.pid()) {
        println!(
            "runtime (supervisor) RSS after: {} KiB",
            vm_rss_kb(pid).unwrap_or(0)
        );
    }
    drop(rt);
    Ok(())
}
