//! `eg-stream-bench`: the stream manager's append and read rates, through
//! the Rust `StreamClient` against the service in process on loopback (the
//! same `Service` and `Store` the runtime runs), and for comparison the
//! unmodified `greengrasssdk` 1.6.1 Python client. It asserts nothing
//! (benchmarks report, tests assert).
//!
//! ```text
//! cargo build --release -p evergreen-bench --bin eg-stream-bench && target/release/eg-stream-bench
//! ```
//!
//! `--quick` runs each case for 0.5 s instead of 3 s.
//!
//! Cases, for 64 B and 4 KiB payloads, each on a fresh stream of a store in
//! a temporary directory (`TMPDIR`: tmpfs or disk decides the File figures):
//!
//! - **append**: one `append_message` at a time (latency = one round trip),
//!   for `File` (flushOnWrite false, then true) and `Memory`;
//! - **append x64**: `append_messages` of 64 pipelined appends (latency is
//!   per batch of 64);
//! - **read**: `read_messages` of up to 1000 messages from the oldest on,
//!   over what the append case wrote;
//! - **python sdk**: the SDK's `append_message` in a loop (File, no flush),
//!   if `python3` and the SDK (`EVERGREEN_GREENGRASSSDK`, default
//!   `/var/cache/evergreen-tests/greengrasssdk-1.6.1`) are there.
//!
//! The process's VmRSS is printed before and after (from /proc/self/status).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use evergreen_streams::client::StreamClient;
use evergreen_streams::model::{
    MessageStreamDefinition, Persistence, ReadMessagesOptions, StrategyOnFull,
};
use evergreen_streams::server::{Authorizer, ServerLimits, Service};
use evergreen_streams::store::{Store, StoreLimits};

struct Anyone;

impl Authorizer for Anyone {
    fn authorize(&self, _: Option<&str>) -> Result<String, String> {
        Ok("arn:bench".into())
    }
}

/// The stream manager's append and read rates over loopback.
#[derive(Debug, Parser)]
#[command(name = "eg-stream-bench")]
struct Cli {
    /// Run each case for 0.5 s instead of 3 s.
    #[arg(long)]
    quick: bool,
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn row(label: &str, count: u64, bytes: u64, secs: f64, lat: &mut [Duration]) {
    lat.sort();
    println!(
        "{label:<34} {:>10.0} msg/s {:>8.1} MB/s {:>9.1} µs p50 {:>9.1} µs p99",
        count as f64 / secs,
        bytes as f64 / secs / 1e6,
        percentile(lat, 0.5).as_secs_f64() * 1e6,
        percentile(lat, 0.99).as_secs_f64() * 1e6,
    );
}

fn definition(name: &str, persistence: Persistence, flush: bool) -> MessageStreamDefinition {
    MessageStreamDefinition {
        name: name.into(),
        // Memory streams must fit the store's 64 MiB memory budget.
        max_size: Some(match persistence {
            Persistence::File => 1 << 30,
            Persistence::Memory => 32 << 20,
        }),
        stream_segment_size: None,
        time_to_live_millis: None,
        strategy_on_full: StrategyOnFull::OverwriteOldestData,
        persistence: Some(persistence),
        flush_on_write: Some(flush),
        export_definition: None,
    }
}

async fn append_case(
    c: &StreamClient,
    name: &str,
    size: usize,
    pipelined: bool,
    limit: Duration,
) -> Result<(), String> {
    let payload = vec![0x5a_u8; size];
    let batch: Vec<Vec<u8>> = (0..64).map(|_| payload.clone()).collect();
    let mut lat = Vec::new();
    let mut count = 0u64;
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        let t = Instant::now();
        if pipelined {
            for r in c.append_messages(name, &batch).await {
                r.map_err(|e| e.to_string())?;
            }
            count += batch.len() as u64;
        } else {
            c.append_message(name, &payload)
                .await
                .map_err(|e| e.to_string())?;
            count += 1;
        }
        lat.push(t.elapsed());
    }
    let secs = t0.elapsed().as_secs_f64();
    let label = format!("{name}{}", if pipelined { " x64" } else { "" });
    row(&label, count, count * size as u64, secs, &mut lat);
    Ok(())
}

async fn read_case(c: &StreamClient, name: &str, limit: Duration) -> Result<(), String> {
    let info = c
        .describe_message_stream(name)
        .await
        .map_err(|e| e.to_string())?;
    let mut next = info.storage_status.oldest_sequence_number;
    let newest = info.storage_status.newest_sequence_number;
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut lat = Vec::new();
    let t0 = Instant::now();
    while next <= newest && t0.elapsed() < limit {
        let t = Instant::now();
        let got = c
            .read_messages(
                name,
                Some(ReadMessagesOptions {
                    desired_start_sequence_number: Some(next),
                    min_message_count: Some(1),
                    max_message_count: Some(1000),
                    read_timeout_millis: None,
                }),
            )
            .await
            .map_err(|e| e.to_string())?;
        lat.push(t.elapsed());
        let Some(last) = got.last() else { break };
        next = last.sequence_number + 1;
        count += got.len() as u64;
        bytes += got.iter().map(|m| m.payload.len() as u64).sum::<u64>();
    }
    row(
        &format!("{name} read (x1000)"),
        count,
        bytes,
        t0.elapsed().as_secs_f64(),
        &mut lat,
    );
    Ok(())
}

const PYTHON: &str = r#"
import json, os, sys, time
from greengrasssdk.stream_manager import (
    MessageStreamDefinition, Persistence, StrategyOnFull, StreamManagerClient)
size, limit, name = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
c = StreamManagerClient()
c.create_message_stream(MessageStreamDefinition(name=name, max_size=1 << 30,
    strategy_on_full=StrategyOnFull.OverwriteOldestData, persistence=Persistence.File))
data = b'Z' * size
lat = []
t0 = time.perf_counter()
while time.perf_counter() - t0 < limit:
    t = time.perf_counter()
    c.append_message(name, data)
    lat.append(time.perf_counter() - t)
secs = time.perf_counter() - t0
lat.sort()
print(json.dumps({'count': len(lat), 'secs': secs, 'p50': lat[len(lat) // 2],
                  'p99': lat[min(len(lat) - 1, int(len(lat) * 0.99))]}))
c.close()
"#;

fn python_case(port: u16, size: usize, limit: Duration) {
    let sdk = std::env::var_os("EVERGREEN_GREENGRASSSDK")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/evergreen-tests/greengrasssdk-1.6.1"));
    if !sdk
        .join("greengrasssdk/stream_manager/__init__.py")
        .is_file()
    {
        println!("python sdk: SKIP (no greengrasssdk in {})", sdk.display());
        return;
    }
    let name = format!("py-{size}B file");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            PYTHON,
            &size.to_string(),
            &limit.as_secs_f64().to_string(),
            &name,
        ])
        .env("PYTHONPATH", &sdk)
        .env("STREAM_MANAGER_SERVER_PORT", port.to_string())
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "bench")
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            println!("python sdk: SKIP (python3: {e})");
            return;
        }
    };
    let v: Option<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok());
    let Some(v) = v else {
        println!(
            "python sdk: no result: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    };
    let count = v["count"].as_u64().unwrap_or(0);
    let secs = v["secs"].as_f64().unwrap_or(1.0);
    // The script measured its own percentiles.
    let p50 = v["p50"].as_f64().unwrap_or(0.0) * 1e6;
    let p99 = v["p99"].as_f64().unwrap_or(0.0) * 1e6;
    println!(
        "{:<34} {:>10.0} msg/s {:>8.1} MB/s {:>9.1} µs p50 {:>9.1} µs p99",
        format!("{name} (python sdk)"),
        count as f64 / secs,
        (count * size as u64) as f64 / secs / 1e6,
        p50,
        p99
    );
}

fn main() -> ExitCode {
    let quick = Cli::parse().quick;
    let limit = Duration::from_millis(if quick { 500 } else { 3000 });
    let rss_before = rss_kb();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let root = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let store = match Store::open(root.path(), StoreLimits::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot open the store: {e}");
            return ExitCode::FAILURE;
        }
    };
    let service = Service::new(store, Arc::new(Anyone), ServerLimits::default());
    let port = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
        let port = listener.local_addr().ok()?.port();
        tokio::spawn(service.serve(listener));
        Some(port)
    });
    let Some(port) = port else {
        eprintln!("cannot bind a loopback port");
        return ExitCode::FAILURE;
    };
    println!(
        "stream manager over loopback, Rust StreamClient, {:.1} s per case, store in {} ({})",
        limit.as_secs_f64(),
        root.path().display(),
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        }
    );
    let result = rt.block_on(async {
        let c = StreamClient::connect(port, None)
            .await
            .map_err(|e| e.to_string())?;
        for size in [64usize, 4096] {
            for (persistence, flush, label) in [
                (Persistence::File, false, "file"),
                (Persistence::File, true, "file flush"),
                (Persistence::Memory, false, "memory"),
            ] {
                for pipelined in [false, true] {
                    let name = format!(
                        "{size}B {label}{}",
                        if pipelined { " pipelined" } else { "" }
                    );
                    c.create_message_stream(&definition(&name, persistence, flush))
                        .await
                        .map_err(|e| e.to_string())?;
                    append_case(&c, &name, size, pipelined, limit).await?;
                    if !pipelined {
                        read_case(&c, &name, limit).await?;
                    }
                    c.delete_message_stream(&name)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok::<_, String>(())
    });
    if let Err(e) = result {
        eprintln!("eg-stream-bench: {e}");
        return ExitCode::FAILURE;
    }
    for size in [64usize, 4096] {
        python_case(port, size, limit);
    }
    println!("VmRSS: {} kB before, {} kB after", rss_before, rss_kb());
    ExitCode::SUCCESS
}
