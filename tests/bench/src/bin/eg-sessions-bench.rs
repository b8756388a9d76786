//! `eg-sessions-bench`: what durable persistent MQTT sessions cost and how fast they come back.
//!
//! Run (release build; needs Debian `mosquitto-clients`, as `.ci/run` installs):
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench && target/release/eg-sessions-bench
//! ```
//!
//! It asserts nothing (benchmarks report, tests assert); it says so when a count is short.
//!
//! # What it measures
//!
//! A device with a persistent session (`mosquitto_sub -c`) subscribes and leaves; another device
//! publishes `OFFLINE_QUEUE` (1000) numbered QoS 1 messages of 64 bytes on one connection
//! (`mosquitto_pub -l`, its default window of 20 unacknowledged): the **queueing rate** is
//! messages / time until the publisher has every PUBACK (the router hands each message to the
//! session store's writer thread; the PUBACK does not wait for the commit). Then, per round, the
//! runtime is stopped (`kill -9`, or SIGTERM) and started again on the same root: **restore** is
//! the time from the restart until the log names the restored session with all its messages
//! (process start, store load, deployment); **drain** is the rate at which the returning
//! device (`mosquitto_sub -c`) receives them. Client process start-up is inside each figure.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use evergreen_bench::{require_bin, with_free_ports};
use evergreen_tests::{group, sub, wait_for, Runtime};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const N: usize = 1000;
const LIMIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "bench/data";

fn thing_arn(name: &str) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:thing/{name}")
}

fn the_group() -> Value {
    let mut g = group(
        vec![],
        vec![sub(
            "s1",
            &thing_arn("pub-1"),
            "bench/#",
            &thing_arn("sub-1"),
        )],
    );
    let device = |name: &str| {
        json!({
            "Id": name,
            "ThingArn": thing_arn(name),
            "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/abc123",
        })
    };
    g["DeviceDefinitionVersion"] = json!({ "Devices": [device("pub-1"), device("sub-1")] });
    g
}

fn plain_port(rt: &Runtime) -> Option<u16> {
    let file = rt.dir.path().join("root/run/mqtt-listeners.json");
    wait_for(LIMIT, || {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
        doc["plain"]
            .as_str()?
            .rsplit(':')
            .next()?
            .parse::<u16>()
            .ok()
    })
}

fn args(port: u16, id: &str) -> Vec<String> {
    ["-h", "127.0.0.1", "-p", &port.to_string(), "-i", id]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

fn subscribe_and_leave(port: u16) -> bool {
    Command::new("mosquitto_sub")
        .args(args(port, "sub-1"))
        .args(["-c", "-t", "bench/#", "-q", "1", "-E", "-W", "10"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Publishes `N` numbered 64-byte QoS 1 messages; the time until every PUBACK.
fn publish(port: u16) -> Option<Duration> {
    let start = Instant::now();
    let mut child = Command::new("mosquitto_pub")
        .args(args(port, "pub-1"))
        .args(["-t", TOPIC, "-q", "1", "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    {
        let mut stdin = child.stdin.take()?;
        for i in 0..N {
            writeln!(stdin, "{i:064}").ok()?;
        }
    }
    let status = wait_for(LIMIT, || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    status.filter(|s| s.success()).map(|_| start.elapsed())
}

/// The returning device reads until it has `N` messages (or 30 s); how many and how long.
fn drain(port: u16) -> (usize, Duration) {
    let start = Instant::now();
    let out = Command::new("mosquitto_sub")
        .args(args(port, "sub-1"))
        .args([
            "-c",
            "-t",
            "bench/#",
            "-q",
            "1",
            "-C",
            &N.to_string(),
            "-W",
            "30",
        ])
        .output();
    let got = out.map_or(0, |o| String::from_utf8_lossy(&o.stdout).lines().count());
    (got, start.elapsed())
}

fn system_log(rt: &Runtime) -> String {
    std::fs::read_to_string(rt.log_path("system/runtime.log")).unwrap_or_default()
}

/// Starts the runtime again on the same root and configuration (the same
/// Lambda endpoint port, the plain listener on a new free port).
fn restart(rt: &mut Runtime, evergreen: &Path, group_file: &Path) -> Option<u16> {
    let _ = std::fs::remove_file(rt.dir.path().join("root/run/mqtt-listeners.json"));
    rt.child = Command::new(evergreen)
        .arg("run")
        .arg("--config")
        .arg(rt.path("config.json"))
        .arg("--group")
        .arg(group_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    plain_port(rt)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// What durable persistent MQTT sessions cost and how fast they come back.
#[derive(Debug, Parser)]
#[command(
    name = "eg-sessions-bench",
    after_help = "Build: cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench\n\
                  Needs Debian mosquitto-clients (mosquitto_pub, mosquitto_sub)."
)]
struct Cli {}

fn main() {
    Cli::parse();
    if Command::new("mosquitto_sub")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("eg-sessions-bench needs mosquitto_pub/mosquitto_sub (Debian mosquitto-clients)");
        std::process::exit(2);
    }
    let evergreen = match require_bin("evergreen") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("eg-sessions-bench: {e}");
            std::process::exit(1);
        }
    };
    let patch = match with_free_ports(
        &json!({ "evergreen": { "listeners": { "mqttPlain": { "enabled": true, "port": 0 } } } }),
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("eg-sessions-bench: {e}");
            std::process::exit(1);
        }
    };
    let mut rt = Runtime::start_config(&the_group(), &patch, &[]);
    let Some(mut port) = plain_port(&rt) else {
        eprintln!("the runtime did not start its plain listener");
        // exit() runs no destructors: stop the runtime first.
        drop(rt);
        std::process::exit(1);
    };
    let group_file = rt.path("group.json");
    println!("| round | stop | queue {N} msg/s | restore ms | drained | drain msg/s |");
    println!("|---|---|---|---|---|---|");
    for (round, stop) in [
        Signal::SIGKILL,
        Signal::SIGTERM,
        Signal::SIGKILL,
        Signal::SIGTERM,
    ]
    .into_iter()
    .enumerate()
    {
        if !subscribe_and_leave(port) {
            eprintln!("round {round}: the subscriber could not subscribe");
            break;
        }
        let Some(queued) = publish(port) else {
            eprintln!("round {round}: the publisher failed");
            break;
        };
        // Let the writer commit the last batch before the stop (milliseconds).
        std::thread::sleep(Duration::from_millis(500));
        let before = system_log(&rt).len();
        let _ = rt.stop_with(stop, LIMIT);
        let restarted = Instant::now();
        let Some(p) = restart(&mut rt, &evergreen, &group_file) else {
            eprintln!("round {round}: the runtime did not come back");
            break;
        };
        port = p;
        let line = format!(
            "restored the persistent session of {}: 1 filters, {N} queued messages",
            thing_arn("sub-1")
        );
        let restored = wait_for(LIMIT, || {
            system_log(&rt)
                .get(before..)?
                .contains(&line)
                .then(|| restarted.elapsed())
        });
        let restore_ms = restored.map_or_else(
            || "not restored in full".to_owned(),
            |d| format!("{:.0}", d.as_secs_f64() * 1000.0),
        );
        let (got, took) = drain(port);
        println!(
            "| {} | {} | {:.0} | {restore_ms} | {got}/{N} | {:.0} |",
            round + 1,
            if stop == Signal::SIGKILL {
                "kill -9"
            } else {
                "SIGTERM"
            },
            rate(N, queued),
            rate(got, took)
        );
    }
    let store = rt.dir.path().join("root/mqtt/sessions.redb");
    if let Ok(meta) = std::fs::metadata(&store) {
        println!("\nsession store {} bytes after the run", meta.len());
    }
}
