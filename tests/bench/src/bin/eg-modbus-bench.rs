//! `eg-modbus-bench`: Modbus-RTU transactions per second through the whole
//! runtime, compared with what the serial line itself would allow.
//!
//! Run (release build; needs socat and pymodbus, as the tests do):
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench && target/release/eg-modbus-bench
//! ```
//!
//! `--quick` runs fewer transactions. It asserts nothing (benchmarks report,
//! tests assert).
//!
//! # What it does
//!
//! For 9600 and 115200 baud: a socat pty pair, the pymodbus slave
//! (`tests/peers/modbus_slave.py`) on one end, and `evergreen run` with a
//! group of `eg-fn feed` → ModbusRTUProtocolAdapter (`ModbusBaudRate` set)
//! → `eg-fn record`. The driver appends ReadHoldingRegisters requests (10
//! registers, device 1) to the feed file and counts answers in the record
//! file:
//!
//! - *window 1*: one request at a time (closed loop): the full round trip
//!   feed function → router → connector → serial → slave → connector →
//!   router → record function, including the two functions' 10 ms and 5 ms
//!   file polling, which is test scaffolding, not runtime cost.
//! - *window 50*: up to 50 requests outstanding (the connector's queue holds
//!   100), so the bus never waits for the next request: transactions per
//!   second of the connector + slave.
//!
//! # The wire-time limit
//!
//! A transaction is a request frame and a response frame, each followed by
//! the RTU inter-frame silence of 3.5 characters (fixed at 1.75 ms above
//! 19200 baud). Bytes: request 8 (id, fc, address 2, count 2, CRC 2),
//! response 5 + 2 × 10 = 25 (id, fc, byte count, 20 data, CRC 2). At
//! `b` bits per character (10 for 8N1: start + 8 data + stop; the Modbus
//! specification's 11 is for 8E1 or 8N2) and `baud` bits/s:
//!
//! ```text
//! t = (8 + 25) × b / baud + 2 × gap,  gap = 3.5 × b / baud  (≤ 19200 baud)  or 1.75 ms
//! limit = 1 / t  transactions per second
//! ```
//!
//! 9600 8N1: 34.4 ms + 7.3 ms = 41.7 ms → 24.0 tx/s. 115200 8N1: 2.86 ms +
//! 3.5 ms = 6.36 ms → 157 tx/s.
//!
//! **A pty does not throttle to the baud rate**: bytes cross it at memory
//! speed whatever the termios speed says, so measured rates can exceed the
//! wire limit. What the ratio shows is how far the runtime + connector + a
//! Python slave are from being the bottleneck on a real line; the
//! connector's own inter-frame rest (3.5 chars) is real and is included.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use evergreen_bench::{require_bin, start_runtime};
use evergreen_tests::{fn_arn, function, group, read, sub, wait_for, Runtime};
use serde_json::json;

const CONNECTOR: &str =
    "arn:aws:greengrass:us-east-1::/connectors/ModbusRTUProtocolAdapter/versions/3";
const REGISTERS: u64 = 10;

/// Modbus-RTU transactions per second through the whole runtime, against
/// what the serial line itself allows.
#[derive(Debug, Parser)]
#[command(
    name = "eg-modbus-bench",
    after_help = "Build: cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench\n\
                  Needs socat and pymodbus (as the tests do)."
)]
struct Cli {
    /// Run fewer transactions.
    #[arg(long)]
    quick: bool,
}

fn main() -> ExitCode {
    let quick = Cli::parse().quick;
    for bin in ["evergreen", "eg-fn"] {
        if let Err(e) = require_bin(bin) {
            eprintln!("eg-modbus-bench: {e}");
            return ExitCode::FAILURE;
        }
    }
    if !peers() {
        eprintln!("eg-modbus-bench: needs socat and pymodbus (apt-get install socat; pip install pymodbus==3.16.1 pyserial)");
        return ExitCode::FAILURE;
    }
    let (closed, windowed) = if quick { (20, 100) } else { (100, 1000) };
    println!("Modbus-RTU through evergreen: ReadHoldingRegisters of {REGISTERS} registers, device 1, pymodbus slave on a socat pty");
    println!(
        "{:>7} {:>6} {:>9} {:>12} {:>12} {:>12} {:>9}",
        "baud", "window", "requests", "tx/s", "wire tx/s", "ms/tx", "ratio"
    );
    for baud in [9600u32, 115_200] {
        let limit = wire_limit(baud, 10);
        let mut bench = match Bench::start(baud) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("eg-modbus-bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        for (window, n) in [(1usize, closed), (50, windowed)] {
            match bench.run(window, n) {
                Some(elapsed) => {
                    let rate = n as f64 / elapsed.as_secs_f64();
                    println!(
                        "{baud:>7} {window:>6} {n:>9} {rate:>12.1} {limit:>12.1} {:>12.2} {:>9.2}",
                        elapsed.as_secs_f64() * 1000.0 / n as f64,
                        rate / limit
                    );
                }
                None => {
                    eprintln!(
                        "eg-modbus-bench: {baud} baud window {window}: answers stopped coming\nconnector log:\n{}",
                        read(&bench.rt.log_path("user/us-east-1/aws/ModbusRTUProtocolAdapter.log"))
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    println!(
        "wire tx/s: 1 / ((8 + 25 bytes) x 10 bits / baud + 2 x 3.5-char gap (1.75 ms above 19200)), 8N1; \
         11-bit chars (8E1/8N2) give {:.1} and {:.1}",
        wire_limit(9600, 11),
        wire_limit(115_200, 11)
    );
    println!("a pty does not throttle to the baud rate: ratios above 1 mean the line, not Evergreen, would be the limit");
    ExitCode::SUCCESS
}

/// Transactions per second the line allows (see the module docs).
fn wire_limit(baud: u32, bits_per_char: u32) -> f64 {
    let bits = f64::from(bits_per_char);
    let baud = f64::from(baud);
    let request = 8.0;
    let response = 5.0 + 2.0 * REGISTERS as f64;
    let gap = if baud > 19200.0 {
        0.00175
    } else {
        3.5 * bits / baud
    };
    1.0 / ((request + response) * bits / baud + 2.0 * gap)
}

fn peers() -> bool {
    let ok = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    ok(Command::new("socat").arg("-V"))
        && ok(Command::new("python3").args(["-c", "import pymodbus.simulator, serial"]))
}

struct Bench {
    rt: Runtime,
    feed: PathBuf,
    record: PathBuf,
    sent: usize,
    socat: Child,
    slave: Child,
    dev_link: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.slave.kill();
        let _ = self.slave.wait();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.socat.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = wait_for(Duration::from_secs(3), || {
            self.socat.try_wait().ok().flatten()
        });
        let _ = self.socat.kill();
        let _ = self.socat.wait();
        if let Some(link) = &self.dev_link {
            let _ = std::fs::remove_file(link);
        }
    }
}

impl Bench {
    fn start(baud: u32) -> Result<Bench, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let slave_end = dir.path().join("slave");
        let dev_link = PathBuf::from(format!("/dev/eg-modbus-bench-{}", std::process::id()));
        let writable = nix::unistd::access("/dev", nix::unistd::AccessFlags::W_OK).is_ok();
        let link = if writable {
            dev_link.clone()
        } else {
            dir.path().join("connector")
        };
        let socat = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", slave_end.display()))
            // Group read-write: the connector runs as `nobody` with the pty's group added.
            .arg(format!("pty,raw,echo=0,mode=0660,link={}", link.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("socat: {e}"))?;
        let up = wait_for(Duration::from_secs(5), || {
            (slave_end.exists() && link.exists()).then_some(())
        });
        if up.is_none() {
            return Err("socat made no ptys".into());
        }
        // Under /dev either way: the link, or the pty it points at.
        let port = if writable {
            link
        } else {
            std::fs::canonicalize(&link).map_err(|e| e.to_string())?
        };
        // The tests' slave (tests/peers/), one directory above this crate.
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../peers/modbus_slave.py");
        let slave_log = dir.path().join("slave.log");
        let out = std::fs::File::create(&slave_log).map_err(|e| e.to_string())?;
        let slave = Command::new("python3")
            .arg(script)
            .arg("--port")
            .arg(&slave_end)
            .args(["--baud", &baud.to_string()])
            .args(["--parent-pid", &std::process::id().to_string()])
            .args(["--max-seconds", "900"])
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("python3: {e}"))?;
        let serving = wait_for(Duration::from_secs(15), || {
            read(&slave_log).contains("serving device").then_some(())
        });

        let feed = dir.path().join("feed.jsonl");
        let record = dir.path().join("record.jsonl");
        let mut g = group(
            vec![
                function("feeder", &format!("feed {}", feed.display())),
                function("rec", &format!("record {}", record.display())),
            ],
            vec![
                sub(
                    "requests",
                    &fn_arn("feeder"),
                    "modbus/adapter/request",
                    CONNECTOR,
                ),
                sub(
                    "responses",
                    CONNECTOR,
                    "modbus/adapter/response",
                    &fn_arn("rec"),
                ),
            ],
        );
        // Only the connector's warnings: a debug line per transaction would
        // be measured too.
        g["LoggerDefinitionVersion"]["Loggers"][1]["Level"] = json!("WARN");
        g["ResourceDefinitionVersion"] = json!({ "Resources": [{
            "Id": "port", "Name": "Port",
            "ResourceDataContainer": { "LocalDeviceResourceData": {
                "SourcePath": port, "GroupOwnerSetting": { "AutoAddGroupOwner": true } }}
        }]});
        g["ConnectorDefinitionVersion"] = json!({ "Connectors": [{
            "Id": "modbus", "ConnectorArn": CONNECTOR,
            "Parameters": {
                "ModbusSerialPort-ResourceId": "port",
                "ModbusSerialPort": port,
                "ModbusBaudRate": baud.to_string(),
                "ModbusTimeoutMs": "2000"
            }
        }]});
        let mut bench = Bench {
            rt: start_runtime(&g, &json!({}))?,
            feed,
            record,
            sent: 0,
            socat,
            slave,
            dev_link: writable.then_some(dev_link),
            _dir: dir,
        };
        if serving.is_none() {
            return Err(format!("slave did not start:\n{}", read(&slave_log)));
        }
        // Until the connector answers (requests sent before it is up may be lost).
        let warm = wait_for(Duration::from_secs(20), || {
            let before = bench.answered();
            bench.send(1);
            wait_for(Duration::from_millis(500), || {
                (bench.answered() > before).then_some(())
            })
        });
        if warm.is_none() {
            return Err("the connector never answered".into());
        }
        // Let stragglers from the warm-up land.
        std::thread::sleep(Duration::from_millis(600));
        Ok(bench)
    }

    fn send(&mut self, n: usize) {
        let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.feed)
        else {
            return;
        };
        let mut text = String::new();
        for _ in 0..n {
            self.sent += 1;
            let line = json!({"topic": "modbus/adapter/request", "payload": {
                "request": {"operation": "ReadHoldingRegistersRequest", "device": 1,
                            "address": 0, "count": REGISTERS},
                "id": format!("b{}", self.sent)}});
            text.push_str(&format!("{line}\n"));
        }
        let _ = f.write_all(text.as_bytes());
    }

    /// Responses recorded so far (lines in the record file).
    fn answered(&self) -> usize {
        std::fs::read(&self.record)
            .map(|b| b.iter().filter(|c| **c == b'\n').count())
            .unwrap_or(0)
    }

    /// Sends `n` requests keeping `window` outstanding; the time until the
    /// last answer, or `None` if answers stop for 10 s.
    fn run(&mut self, window: usize, n: usize) -> Option<Duration> {
        let base = self.answered();
        let started = Instant::now();
        let mut issued = 0;
        let mut last_progress = Instant::now();
        let mut seen = base;
        loop {
            let done = self.answered() - base;
            if done >= n {
                return Some(started.elapsed());
            }
            if base + done > seen {
                seen = base + done;
                last_progress = Instant::now();
            } else if last_progress.elapsed() > Duration::from_secs(10) {
                return None;
            }
            let outstanding = issued - done.min(issued);
            if issued < n && outstanding < window {
                let k = (window - outstanding).min(n - issued);
                self.send(k);
                issued += k;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
