//! `eg-aws-bench`: sustained messages per second through the whole runtime
//! into the AWS connectors' peers, and the connector processes' memory. It
//! asserts nothing (benchmarks report, tests assert).
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench && target/release/eg-aws-bench [N]
//! ```
//!
//! Cases, each with `N` (default 5000) messages fed by an `eg-fn feed`
//! function, one status each recorded by an `eg-fn record` function; the
//! rate is first message fed to last status recorded:
//!
//! - **IoTAnalytics**: one channel, batches of 100 (`PublishInterval` 0),
//!   into the tests' IoT Analytics stand-in (Rust; it verifies every
//!   signature, so the rate includes signing and verifying).
//! - **SNS**: one `Publish` per message (one in flight, as the connector
//!   sends them in order) into `moto_server`, whose Python dominates.
//!
//! Messages are fed in chunks while fewer than 1000 are unanswered, so the
//! router's per-target queue (1024) never overflows.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use evergreen_bench::{require_bin, start_runtime};
use evergreen_tests::iotanalytics_server::IotAnalyticsServer;
use evergreen_tests::*;
use serde_json::{json, Value};

const CHUNK: usize = 200;
const WINDOW: usize = 1000;

/// Messages per second through the runtime into the IoT Analytics and SNS
/// connectors' peers, and the connector processes' memory.
#[derive(Debug, Parser)]
#[command(
    name = "eg-aws-bench",
    after_help = "Build: cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench\n\
                  The SNS case needs moto_server (pip install 'moto[server]==5.2.1')."
)]
struct Cli {
    /// Messages per case.
    #[arg(default_value_t = 5000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    n: usize,
}

fn main() -> std::process::ExitCode {
    let n = Cli::parse().n;
    for bin in ["evergreen", "eg-fn"] {
        if let Err(e) = require_bin(bin) {
            eprintln!("eg-aws-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    iot_analytics(n);
    sns(n);
    std::process::ExitCode::SUCCESS
}

/// [`start_runtime`], or `None` after saying why not.
fn start(g: &Value, patch: &Value) -> Option<Runtime> {
    start_runtime(g, patch)
        .map_err(|e| eprintln!("eg-aws-bench: {e}"))
        .ok()
}

fn append(file: &Path, lines: &[Value]) {
    let mut text = String::new();
    for l in lines {
        text.push_str(&l.to_string());
        text.push('\n');
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
    {
        let _ = f.write_all(text.as_bytes());
    }
}

fn count_lines(file: &Path) -> usize {
    std::fs::read(file)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

fn connector_rss(rt: &Runtime, name: &str) -> String {
    let needle = format!("connector {name}");
    children_of(rt.pid())
        .into_iter()
        .find(|pid| cmdline(*pid).contains(&needle))
        .and_then(vm_rss_kb)
        .map_or("?".into(), |k| format!("{k} KiB"))
}

/// Feeds `n` messages made by `message(i)` on `topic`, keeping at most
/// `WINDOW` unanswered; the elapsed time until `n` statuses, if they came.
fn drive(
    feed: &Path,
    record: &Path,
    n: usize,
    topic: &str,
    message: impl Fn(usize) -> Value,
) -> Option<Duration> {
    let start = Instant::now();
    let mut fed = 0;
    let deadline = start + Duration::from_secs(600);
    while Instant::now() < deadline {
        let answered = count_lines(record);
        if answered >= n {
            return Some(start.elapsed());
        }
        if fed < n && fed - answered.min(fed) < WINDOW {
            let chunk: Vec<Value> = (fed..(fed + CHUNK).min(n))
                .map(|i| json!({"topic": topic, "payload": message(i)}))
                .collect();
            fed += chunk.len();
            append(feed, &chunk);
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    None
}

fn bench_group(
    connector_arn: &str,
    input: &str,
    status: &str,
    feed: &Path,
    record: &Path,
    params: Value,
) -> Value {
    let mut g = group(
        vec![
            function("feeder", &format!("feed {}", feed.display())),
            function("rec", &format!("record {}", record.display())),
        ],
        vec![
            sub("in", &fn_arn("feeder"), input, connector_arn),
            sub("out", connector_arn, status, &fn_arn("rec")),
        ],
    );
    g["ConnectorDefinitionVersion"] = json!({ "Connectors": [{
        "Id": "c", "ConnectorArn": connector_arn, "Parameters": params
    }]});
    g
}

fn report(name: &str, n: usize, elapsed: Option<Duration>, rest: &str, load: &str) {
    match elapsed {
        Some(d) => println!(
            "{name}: {n} messages in {:.2} s = {:.0} msg/s; connector VmRSS at rest {rest}, after load {load}",
            d.as_secs_f64(),
            n as f64 / d.as_secs_f64()
        ),
        None => println!("{name}: not all {n} statuses arrived within 600 s"),
    }
}

fn iot_analytics(n: usize) {
    let Ok(server) = IotAnalyticsServer::start_on(0, REGION, MOTO_SECRET_KEY, &["bench"]) else {
        println!("IoTAnalytics: cannot start the stand-in");
        return;
    };
    let arn = "arn:aws:greengrass:us-east-1::/connectors/IoTAnalytics/versions/4";
    let Ok(dir) = tempfile::tempdir() else { return };
    let (feed, record) = (dir.path().join("feed"), dir.path().join("rec"));
    let g = bench_group(
        arn,
        "iotanalytics/channels/+/messages/put",
        "iotanalytics/messages/put/status",
        &feed,
        &record,
        json!({"MemorySize": "65535", "IsolationMode": "NoContainer", "PublishInterval": "0",
               "IotAnalyticsBatchSizePerChannel": "100", "IotAnalyticsQueueSizePerChannel": "10000"}),
    );
    let Some(rt) = start(&g, &aws_core_config(&server.url())) else {
        return;
    };
    let _ = wait_for(Duration::from_secs(10), || {
        (connector_rss(&rt, "IoTAnalytics") != "?").then_some(())
    });
    let rest = connector_rss(&rt, "IoTAnalytics");
    let elapsed = drive(
        &feed,
        &record,
        n,
        "iotanalytics/channels/bench/messages/put",
        |i| json!({"request": {"message": format!("{{\"seq\":{i},\"temp\":21.5}}")}, "id": format!("m{i}")}),
    );
    let load = connector_rss(&rt, "IoTAnalytics");
    report("IoTAnalytics", n, elapsed, &rest, &load);
    println!(
        "  stand-in: {} messages in {} batches, {} refused",
        server.received().len(),
        server.batches().len(),
        server.problems().len()
    );
}

fn sns(n: usize) {
    let Some(moto) = Moto::start() else {
        println!("SNS: moto_server is not installed; skipped");
        return;
    };
    let aws = evergreen_aws::AwsClient::with_credentials(
        REGION,
        [("sns".to_string(), moto.url())].into_iter().collect(),
        evergreen_ipc::AwsCredentials {
            access_key_id: MOTO_ACCESS_KEY.into(),
            secret_access_key: MOTO_SECRET_KEY.into(),
            session_token: None,
            expiration_ms: None,
        },
    );
    let Ok(tokio) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let created = tokio.block_on(aws.query(
        "sns",
        "2010-03-31",
        "CreateTopic",
        &[("Name".to_string(), "bench".to_string())],
    ));
    let Some(topic) = created
        .ok()
        .and_then(|x| evergreen_aws::xml_value(&x, "TopicArn"))
    else {
        println!("SNS: cannot create the topic in moto");
        return;
    };
    let arn = "arn:aws:greengrass:us-east-1::/connectors/SNS/versions/4";
    let Ok(dir) = tempfile::tempdir() else { return };
    let (feed, record) = (dir.path().join("feed"), dir.path().join("rec"));
    let g = bench_group(
        arn,
        "sns/message",
        "sns/message/status",
        &feed,
        &record,
        json!({"DefaultSNSArn": topic, "IsolationMode": "NoContainer", "MessageQueueSize": "5000"}),
    );
    let Some(rt) = start(&g, &moto.core_config()) else {
        return;
    };
    let _ = wait_for(Duration::from_secs(10), || {
        (connector_rss(&rt, "SNS") != "?").then_some(())
    });
    let rest = connector_rss(&rt, "SNS");
    let elapsed = drive(
        &feed,
        &record,
        n,
        "sns/message",
        |i| json!({"request": {"message": format!("reading {i}")}, "id": format!("m{i}")}),
    );
    let load = connector_rss(&rt, "SNS");
    report("SNS", n, elapsed, &rest, &load);
}
