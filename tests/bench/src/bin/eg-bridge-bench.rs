//! `eg-bridge-bench`: function -> cloud messages per second through the cloud spool and bridge,
//! with Debian's `mosquitto` on loopback as the cloud and `mosquitto_sub` (QoS 1) counting what
//! arrives. It asserts nothing (benchmarks report, tests assert).
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench && target/release/eg-bridge-bench [N]
//! ```
//!
//! Cases, each with `N` (default 20000) messages of `{"seq":…}` (about 12 B) published by an
//! `eg-fn publish` function routed to `cloud`:
//!
//! - **live, Memory / FileSystem**: the broker is up; the rate is what arrives at the cloud
//!   side, first to last message (so it includes the function's publishing, the router, the
//!   spool commit and the bridge's QoS 1 exchange, up to 16 in flight).
//! - **drain, Memory / FileSystem**: the broker is down while the messages are spooled, then
//!   started; the rate is how fast the spool drains upstream (PUBACK round trips, spool removals).

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use evergreen_bench::mosquitto::Mosquitto;
use evergreen_bench::{require_bin, start_runtime};
use evergreen_tests::{fn_arn, free_port, function, group, sub, wait_for};
use serde_json::json;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn subscriber(port: u16, out: &Path) -> Option<Proc> {
    let file = std::fs::File::create(out).ok()?;
    let child = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "up/#", "-q", "1", "-c", "-i", "bench-cloud"])
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Proc(child))
}

fn lines(out: &Path) -> usize {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(out) {
        let _ = f.read_to_string(&mut text);
    }
    text.lines().filter(|l| l.starts_with("{\"seq\"")).count()
}

fn probe(port: u16, out: &Path) -> bool {
    wait_for(Duration::from_secs(10), || {
        let _ = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", "up/probe", "-m", "probe", "-q", "1"])
            .status();
        std::fs::read_to_string(out)
            .unwrap_or_default()
            .contains("probe")
            .then_some(())
    })
    .is_some()
}

/// Waits for `n` messages; returns the seconds from the first to the last arrival.
fn measure(out: &Path, n: usize, limit: Duration) -> Option<f64> {
    let deadline = Instant::now() + limit;
    let mut first = None;
    loop {
        let got = lines(out);
        if got > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if got >= n {
            return first.map(|f| f.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            eprintln!("  only {got} of {n} arrived in {} s", limit.as_secs());
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn case(mosquitto: &Path, storage: &str, live: bool, n: usize) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    // mosquitto takes no port 0: one free a moment ago, the same for the
    // broker's restart in the drain case (the spool's target must not move).
    let Some(port) = free_port() else {
        eprintln!("cannot find a free loopback port for mosquitto: skipped");
        return;
    };
    let out = dir.path().join("cloud.txt");
    // Register the persistent cloud-side session, so nothing is lost to start-up order.
    let mut b = match Mosquitto::start(mosquitto, dir.path(), port) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}: skipped");
            return;
        }
    };
    let s = subscriber(port, &out);
    if s.is_none() || !probe(port, &out) {
        eprintln!("mosquitto_sub unavailable: skipped");
        return;
    }
    drop(s);
    if !live {
        // A clean stop: the subscriber's persistent session is saved for the restart.
        b.stop();
    }
    let _ = std::fs::write(&out, "");
    let s = if live { subscriber(port, &out) } else { None };
    let g = group(
        vec![function("pub", &format!("publish up/data {n} 0"))],
        vec![sub("to-cloud", &fn_arn("pub"), "up/#", "cloud")],
    );
    let config = json!({
        "coreThing": { "iotHost": "127.0.0.1", "iotMqttPort": port },
        "mqttMaxConnectionRetryInterval": 1,
        "evergreen": {
            "cloudTls": false,
            "queueCapacity": 65536,
            "spooler": { "storageType": storage, "maxSizeBytes": 64 * 1024 * 1024 }
        }
    });
    let rt = match start_runtime(&g, &config) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eg-bridge-bench: {e}");
            return;
        }
    };
    let label = format!("{} {storage}", if live { "live " } else { "drain" });
    let secs = if live {
        measure(&out, n, Duration::from_secs(300))
    } else {
        let log = rt.log_path("system/runtime.log");
        let spooled = format!("({n} messages spooled)");
        let ready = wait_for(Duration::from_secs(120), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(&spooled)
                .then_some(())
        });
        if ready.is_none() {
            eprintln!("{label}: the messages were not all spooled");
            return;
        }
        if let Err(e) = b.restart() {
            eprintln!("{label}: {e}");
            return;
        }
        let _s = subscriber(port, &out);
        measure(&out, n, Duration::from_secs(300))
    };
    match secs {
        Some(secs) if secs > 0.0 => println!(
            "{label:<18} {n:>7} messages in {secs:>7.3} s = {:>9.0} msg/s",
            n as f64 / secs
        ),
        _ => println!("{label:<18} no result"),
    }
    drop(s);
    drop(rt);
    drop(b);
}

/// Function -> cloud messages per second through the cloud spool and bridge.
#[derive(Debug, Parser)]
#[command(
    name = "eg-bridge-bench",
    after_help = "Build: cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench\n\
                  Needs Debian mosquitto and mosquitto-clients (the cloud side)."
)]
struct Cli {
    /// Messages per case.
    #[arg(default_value_t = 20_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    n: usize,
}

fn main() -> std::process::ExitCode {
    let n = Cli::parse().n;
    let Some(mosquitto) = evergreen_tests::mosquitto_or_skip() else {
        return std::process::ExitCode::FAILURE;
    };
    for bin in ["evergreen", "eg-fn"] {
        if let Err(e) = require_bin(bin) {
            eprintln!("eg-bridge-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    println!(
        "function -> cloud through the spool and bridge (QoS 1, up to 16 in flight), loopback mosquitto"
    );
    for storage in ["Memory", "FileSystem"] {
        case(&mosquitto, storage, true, n);
        case(&mosquitto, storage, false, n);
    }
    std::process::ExitCode::SUCCESS
}
