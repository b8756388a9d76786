//! `eg-modbus-tcp-bench`: Modbus TCP reads per second against a loopback
//! slave, through the ModbusTCPConnector's polling path. It asserts nothing
//! (benchmarks report, tests assert).
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench && target/release/eg-modbus-tcp-bench
//! ```
//!
//! `--quick` runs each case for 1 s instead of 5 s.
//!
//! Cases, all against the in-process tokio-modbus slave on `127.0.0.1:0`:
//!
//! - **poller, merged**: the connector's `Poller` (the code the connector
//!   runs) polls one property group of 20 float tags on adjacent registers
//!   back to back: one 40-register request per poll.
//! - **poller, unmerged**: the same 20 tags one register apart, so the
//!   planner cannot merge them: 20 requests per poll. The gap between the
//!   two shows what merging saves.
//! - **through evergreen**: the built-in connector under `evergreen run`,
//!   the merged group at `scanMode.rate` 1 ms, every reading published on
//!   MQTT to an `eg-fn record` function; counts the readings that arrive
//!   (each reading is one MQTT message).

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use evergreen_bench::{require_bin, start_runtime};
use evergreen_connector_modbus_tcp::config::Capability;
use evergreen_connector_modbus_tcp::slave::{Data, Slave};
use evergreen_connector_modbus_tcp::source::{Poller, Stats};
use evergreen_tests::{fn_arn, function, group, records, sub, wait_for};
use serde_json::{json, Value};

const TAGS: u16 = 20;

fn capability(port: u16, spacing: u16, rate_ms: u64) -> Value {
    let tags: Vec<Value> = (0..TAGS)
        .map(|i| {
            json!({"tag": format!("t{i}"), "address": format!("4{:04}", 1 + i * spacing),
                   "srcDataType": "float", "transformation": "byteWordSwap", "dstDataType": "double"})
        })
        .collect();
    json!({"sources": [{"type": "ModBusTCPSource", "name": "bench",
        "destination": {"type": "StreamManager", "streamName": "bench"},
        "endpoint": {"ipAddress": "127.0.0.1", "port": port},
        "propertyGroups": [{"name": "g", "tagPathDefinitions": tags,
            "scanMode": {"type": "POLL", "rate": rate_ms}}]}]})
}

async fn poller_case(label: &str, port: u16, spacing: u16, slave: &Slave, limit: Duration) {
    let cap = match Capability::parse(&capability(port, spacing, 1).to_string()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench configuration refused: {e:?}");
            return;
        }
    };
    let stats = Arc::new(Stats::default());
    let log = Arc::new(|level, message| eprintln!("{level}: {message}"));
    let mut poller = Poller::new(Arc::new(cap.sources[0].clone()), log, stats.clone());
    let before = slave.counters.requests.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let mut polls = 0u64;
    while t0.elapsed() < limit {
        let _ = poller.poll(0).await;
        polls += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    let requests = slave.counters.requests.load(Ordering::Relaxed) - before;
    let readings = stats.readings.load(Ordering::Relaxed);
    let bad = stats.bad.load(Ordering::Relaxed);
    println!(
        "{label:<22} {:>5} req/poll  {:>9.0} polls/s  {:>9.0} Modbus requests/s  {:>9.0} readings/s  ({bad} BAD)",
        poller.reads_per_poll(0),
        polls as f64 / secs,
        requests as f64 / secs,
        readings as f64 / secs,
    );
}

fn runtime_case(port: u16, limit: Duration) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no temporary directory: {e}");
            return;
        }
    };
    let record = dir.path().join("readings.jsonl");
    let connector = "arn:aws:greengrass:us-east-1::/connectors/ModbusTCPConnector/versions/3";
    let mut g = group(
        vec![function("rec", &format!("record {}", record.display()))],
        vec![sub(
            "readings",
            connector,
            "modbus/tcp/stream/+",
            &fn_arn("rec"),
        )],
    );
    g["ConnectorDefinitionVersion"] = json!({"Connectors": [{
        "Id": "modbus-tcp", "ConnectorArn": connector,
        "Parameters": {"CapabilityConfiguration": capability(port, 2, 1).to_string()}
    }]});
    let rt = match start_runtime(&g, &json!({})) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("through evergreen: {e}");
            return;
        }
    };
    if wait_for(Duration::from_secs(20), || {
        (!records(&record).is_empty()).then_some(())
    })
    .is_none()
    {
        eprintln!("through evergreen: no readings arrived within 20 s");
        return;
    }
    let count = || records(&record).len();
    let (c0, t0) = (count(), Instant::now());
    std::thread::sleep(limit);
    let (c1, secs) = (count(), t0.elapsed().as_secs_f64());
    println!(
        "{:<22} {:>5} req/poll  {:>9.0} polls/s  {:>9} {:>26.0} readings/s published",
        "through evergreen",
        1,
        (c1 - c0) as f64 / secs / f64::from(TAGS),
        "",
        (c1 - c0) as f64 / secs,
    );
    drop(rt);
}

/// Modbus TCP reads per second against a loopback slave, through the
/// ModbusTCPConnector's polling path.
#[derive(Debug, Parser)]
#[command(
    name = "eg-modbus-tcp-bench",
    after_help = "Build: cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench"
)]
struct Cli {
    /// Run each case for 1 s instead of 5 s.
    #[arg(long)]
    quick: bool,
}

fn main() -> ExitCode {
    let quick = Cli::parse().quick;
    for bin in ["evergreen", "eg-fn"] {
        if let Err(e) = require_bin(bin) {
            eprintln!("eg-modbus-tcp-bench: {e}");
            return ExitCode::FAILURE;
        }
    }
    let limit = Duration::from_secs(if quick { 1 } else { 5 });
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
    let slave = Slave::new(&Data::default());
    let port = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
        let port = listener.local_addr().ok()?.port();
        let s = slave.clone();
        tokio::spawn(async move { s.serve(listener).await });
        Some(port)
    });
    let Some(port) = port else {
        eprintln!("cannot bind a loopback port");
        return ExitCode::FAILURE;
    };
    println!(
        "Modbus TCP reads against a loopback tokio-modbus slave, {TAGS} float tags, {} s per case",
        limit.as_secs()
    );
    rt.block_on(poller_case("poller, merged", port, 2, &slave, limit));
    rt.block_on(poller_case("poller, unmerged", port, 3, &slave, limit));
    runtime_case(port, limit);
    ExitCode::SUCCESS
}
