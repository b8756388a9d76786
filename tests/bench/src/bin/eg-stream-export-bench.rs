//! `eg-stream-export-bench`: the stream manager through the whole runtime:
//! how fast an unmodified V1 Python function appends with the PyPI
//! `greengrasssdk` 1.6.1 `StreamManagerClient`, how fast the stream's
//! Kinesis export empties it into moto, and the runtime's memory. It
//! asserts nothing (benchmarks report, tests assert).
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench && target/release/eg-stream-export-bench [N]
//! ```
//!
//! One case per persistence (`Memory`, `File`, `File` with `flushOnWrite`):
//! a pinned function creates a stream with one Kinesis export
//! (`batchSize` 500, no interval) and appends `N` (default 5000) messages
//! of 64 bytes one after another, timing the appends itself; the export
//! rate is from the first append to the moment moto holds all `N`
//! records. moto's Python dominates the export figure: it is a floor for
//! what the runtime sends, not a measure of Kinesis. Needs `moto_server`
//! and boto3 (`pip install 'moto[server]==5.2.1' boto3`) and the SDK
//! (`pip install --target /var/cache/evergreen-tests/greengrasssdk-1.6.1 greengrasssdk==1.6.1`).

use std::time::{Duration, Instant};

use clap::Parser;
use evergreen_bench::{require_bin, start_runtime};
use evergreen_tests::*;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(name = "eg-stream-export-bench")]
struct Cli {
    /// Messages per case.
    #[arg(default_value_t = 5000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    n: usize,
}

const APPENDER: &str = r#"
import json, threading, time
import greengrasssdk
from greengrasssdk.stream_manager import (
    ExportDefinition, KinesisConfig, MessageStreamDefinition, Persistence, StrategyOnFull, StreamManagerClient,
)
iot = greengrasssdk.client('iot-data')

def run():
    try:
        c = StreamManagerClient()
        c.create_message_stream(MessageStreamDefinition(
            name='bench', strategy_on_full=StrategyOnFull.RejectNewData, persistence=Persistence.%PERSISTENCE%,
            flush_on_write=%FLUSH%, max_size=1 << 30,
            export_definition=ExportDefinition(kinesis=[KinesisConfig(
                identifier='k', kinesis_stream_name='%KSTREAM%', batch_size=500)])))
        payload = b'x' * 64
        lat = []
        t0 = time.time()
        for _ in range(%N%):
            a = time.perf_counter()
            c.append_message('bench', payload)
            lat.append(time.perf_counter() - a)
        t1 = time.time()
        lat.sort()
        iot.publish(topic='bench/done', payload=json.dumps({
            'start': t0, 'end': t1, 'p50': lat[len(lat) // 2], 'p99': lat[int(len(lat) * 0.99)]}))
    except Exception as e:
        iot.publish(topic='bench/done', payload=json.dumps({'error': repr(e)}))

threading.Thread(target=run).start()

def handler(event, context):
    return
"#;

const KINESIS: &str = r#"
import json, sys
import boto3
k = boto3.client('kinesis', endpoint_url=sys.argv[1], region_name='us-east-1',
                 aws_access_key_id='testing', aws_secret_access_key='testing')
if sys.argv[2] == 'create':
    k.create_stream(StreamName=sys.argv[3], ShardCount=1)
    print(0)
else:
    shard = k.describe_stream(StreamName=sys.argv[3])['StreamDescription']['Shards'][0]['ShardId']
    it = k.get_shard_iterator(StreamName=sys.argv[3], ShardId=shard, ShardIteratorType='TRIM_HORIZON')['ShardIterator']
    n = 0
    for _ in range(1000):
        r = k.get_records(ShardIterator=it, Limit=10000)
        n += len(r['Records'])
        it = r['NextShardIterator']
        if not r['Records']:
            break
    print(n)
"#;

fn kinesis(moto: &Moto, what: &str, stream: &str) -> Option<usize> {
    let out = std::process::Command::new("python3")
        .args(["-c", KINESIS, &moto.url(), what, stream])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn main() -> std::process::ExitCode {
    let n = Cli::parse().n;
    for bin in ["evergreen", "eg-fn"] {
        if let Err(e) = require_bin(bin) {
            eprintln!("eg-stream-export-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let Some(sdk) = greengrasssdk_or_skip() else {
        return std::process::ExitCode::FAILURE;
    };
    let Some(moto) = Moto::start() else {
        return std::process::ExitCode::FAILURE;
    };
    println!(
        "| case | appends/s (SDK, 64 B) | append p50 / p99 | exported to moto Kinesis, msg/s | runtime VmRSS after |"
    );
    println!("|---|---|---|---|---|");
    for (i, (persistence, flush)) in [("Memory", false), ("File", false), ("File", true)]
        .into_iter()
        .enumerate()
    {
        let name = format!(
            "{persistence}{}",
            if flush { " + flushOnWrite" } else { "" }
        );
        match case(&sdk, &moto, n, persistence, flush, &format!("bench{i}")) {
            Ok(row) => println!("| {name} | {row} |"),
            Err(e) => println!("| {name} | failed: {e} | | | |"),
        }
    }
    std::process::ExitCode::SUCCESS
}

fn case(
    sdk: &std::path::Path,
    moto: &Moto,
    n: usize,
    persistence: &str,
    flush: bool,
    kstream: &str,
) -> Result<String, String> {
    kinesis(moto, "create", kstream).ok_or("cannot create the Kinesis stream in moto")?;
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let code = APPENDER
        .replace("%PERSISTENCE%", persistence)
        .replace("%FLUSH%", if flush { "True" } else { "False" })
        .replace("%KSTREAM%", kstream)
        .replace("%N%", &n.to_string());
    let dir = python_package(work.path(), "appender", sdk, &[("appender.py", &code)]);
    let out = work.path().join("got.jsonl");
    let g = group(
        vec![
            stream_manager_function(free_port().ok_or("no free port")?),
            python_function("appender", &dir, "appender.handler", true, 600),
            function("rec", &format!("record {}", out.display())),
        ],
        vec![sub("r", &fn_arn("appender"), "bench/done", &fn_arn("rec"))],
    );
    let rt = start_runtime(&g, &moto.core_config())?;
    let done: Value = wait_for(Duration::from_secs(600), || {
        on_topic(&out, "bench/done").into_iter().next()
    })
    .ok_or("the function never reported")?;
    if let Some(e) = done.get("error") {
        return Err(format!("the function failed: {e}"));
    }
    let start = done["start"].as_f64().unwrap_or(0.0);
    let end = done["end"].as_f64().unwrap_or(0.0);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut exported_at = None;
    while Instant::now() < deadline {
        if kinesis(moto, "count", kstream).is_some_and(|c| c >= n) {
            exported_at = Some(now_s());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = vm_rss_kb(rt.pid()).unwrap_or(0);
    let export = match exported_at {
        Some(t) => format!("{:.0}", n as f64 / (t - start).max(1e-6)),
        None => "not all within 600 s".into(),
    };
    Ok(format!(
        "{:.0} | {:.2} / {:.2} ms | {export} | {} KiB",
        n as f64 / (end - start).max(1e-6),
        done["p50"].as_f64().unwrap_or(0.0) * 1000.0,
        done["p99"].as_f64().unwrap_or(0.0) * 1000.0,
        after
    ))
}
