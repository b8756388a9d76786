//! `eg-bench`: end-to-end benchmark of component → router → component through
//! the real `evergreen` binary, side by side with a baseline that has no
//! supervisor in the path. It owns its driver and its two child modes; it
//! asserts nothing (benchmarks report, tests assert).
//!
//! Run (release build, both binaries from the same profile):
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench && target/release/eg-bench
//! ```
//!
//! `target/release/eg-bench --quick` runs smaller counts (a smoke test).
//!
//! # What it does
//!
//! For 64 B and 4 KiB payloads the driver runs, each once as a **baseline**
//! and once **through evergreen**:
//!
//! - *flood*: the sender publishes as fast as it can (bounded in count and in
//!   time); the receiver reports how many arrived and at what rate. Drops are
//!   legitimate under overload: the router's per-target queue is bounded.
//! - *paced 1k*: 1,000 msg/s for 5 s, for one-way latency (p50/p99/p99.9/max).
//! - *half Nk*: paced at half the rate evergreen delivered in the flood
//!   (N thousand msg/s), for 3 s: a sustainable load, where nothing should
//!   be dropped.
//!
//! **Through evergreen**: a temporary group with two pinned `NoContainer`
//! functions that run this same executable as `eg-bench sender …` and
//! `eg-bench receiver …` (both on `evergreen_ipc::sdk`), a subscription
//! sender → receiver, and two idle built-in connectors (Heartbeat,
//! MessageLog) so a connector child's footprint is measured too; the driver
//! starts `evergreen run` on it, stops it with SIGTERM, and reads the
//! supervisor's and every child's RSS from `/proc/<pid>/status`.
//!
//! **Baseline**: the driver starts the same two child modes itself, the
//! sender's stdout piped straight into the receiver's stdin. The sender then
//! plays the supervisor's part on that pipe (`Hello`, `Configure`, then
//! `Deliver` frames through [`SupervisorLink`], flushed per burst as the
//! supervisor's writer does), so the receiver runs exactly the same SDK code
//! in both runs and the difference is the router + supervisor hop (one more
//! pipe, one more decode and encode, the actix thread).
//!
//! Every payload starts with a 32-byte header: the `CLOCK_MONOTONIC` send
//! time in ns (system-wide, so comparable across processes), the sequence
//! number, the kind (data or end marker) and, in an end marker, how many data
//! messages were sent. The receiver computes one-way latency into a
//! log-linear histogram (< 1 % error, fixed 60 KiB, so it does not inflate
//! its own RSS) and writes its results as JSON to a file; the driver waits
//! for that file with a deadline.
//!
//! Child modes never print to stdout (it is the protocol channel); they
//! report through files and stderr. Every loop is bounded in count and time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use evergreen_bench::{bench_config, require_bin};
use evergreen_ipc::codec::DEFAULT_MAX_FRAME;
use evergreen_ipc::link::SupervisorLink;
use evergreen_ipc::sdk::{Component, Event, Handle};
use evergreen_ipc::{ComponentConfig, ComponentKind, Delivery, LogLevel};
use evergreen_tests::{children_of, fn_arn, sub, wait_for, REGION};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

mod child;
mod histogram;

use child::child_main;

type BoxError = Box<dyn std::error::Error>;

/// Topic the sender publishes on; the subscription's subject is `bench/#`.
const TOPIC: &str = "bench/data";
const SENDER: &str = "bench-sender";
const RECEIVER: &str = "bench-receiver";
const HEARTBEAT_ARN: &str = "arn:aws:greengrass:us-east-1::/connectors/Heartbeat/versions/1";
const MESSAGE_LOG_ARN: &str = "arn:aws:greengrass:us-east-1::/connectors/MessageLog/versions/1";

/// Bytes of the payload header (see the module docs).
const HEADER: usize = 32;
const KIND_DATA: u64 = 0;
const KIND_END: u64 = 1;

/// How long a child waits for the driver's go signal.
const GO_LIMIT: Duration = Duration::from_secs(60);
/// A receiver that got messages and then nothing for this long reports.
const IDLE_LIMIT: Duration = Duration::from_secs(3);
/// End markers the sender repeats (every 20 ms) until the receiver reports:
/// in a flood the first ones may meet a full queue.
const END_MARKERS: u32 = 250;
/// The supervisor's delivery burst (component.rs `DELIVERY_BATCH`); the
/// baseline sender flushes as often.
const BASELINE_BATCH: u64 = 64;

/// End-to-end benchmark: component -> router -> component through the real
/// `evergreen` binary, side by side with a baseline without the supervisor.
#[derive(Debug, Parser)]
#[command(
    name = "eg-bench",
    after_help = "`sender` and `receiver` are child modes this bench starts itself.\n\
                  Build: cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench"
)]
struct Cli {
    /// Run smaller counts (a smoke test).
    #[arg(long)]
    quick: bool,
    #[command(subcommand)]
    mode: Option<Mode>,
}

/// The child modes: the driver runs this same executable as both ends.
#[derive(Debug, Subcommand)]
enum Mode {
    /// `sender <sdk|raw> <size> <count> <rate> <max_ms> <dir>`.
    #[command(hide = true)]
    Sender {
        #[arg(num_args = 1.., allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// `receiver <size> <count> <rate> <max_ms> <dir>`.
    #[command(hide = true)]
    Receiver {
        #[arg(num_args = 1.., allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (role, words) = match cli.mode {
        Some(Mode::Sender { words }) => ("sender", words),
        Some(Mode::Receiver { words }) => ("receiver", words),
        None => {
            return match driver(cli.quick) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("eg-bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    };
    let words: Vec<&str> = std::iter::once(role)
        .chain(words.iter().map(String::as_str))
        .collect();
    child_main(&words)
}

// ---------------------------------------------------------------------------------------------
// Shared between driver and children
// ---------------------------------------------------------------------------------------------

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the host.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call,
    // and clock_gettime writes nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// How the sender sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern {
    /// As fast as backpressure allows.
    Flood,
    /// `rate` messages per second, on an absolute 1 ms schedule.
    Paced { rate: u64 },
}

/// One sender's job; also its command line (`ExecArgs` is split on whitespace).
#[derive(Debug, Clone)]
struct Job {
    pattern: Pattern,
    size: usize,
    count: u64,
    max: Duration,
}

impl Job {
    fn to_args(&self) -> String {
        let rate = match self.pattern {
            Pattern::Flood => 0,
            Pattern::Paced { rate } => rate,
        };
        format!(
            "{} {} {} {}",
            self.size,
            self.count,
            rate,
            self.max.as_millis()
        )
    }

    fn parse(words: &[&str]) -> Result<Job, BoxError> {
        let [size, count, rate, max_ms] = words else {
            return Err(format!("expected <size> <count> <rate> <max_ms>, got {words:?}").into());
        };
        let rate: u64 = rate.parse()?;
        Ok(Job {
            pattern: if rate == 0 {
                Pattern::Flood
            } else {
                Pattern::Paced { rate }
            },
            size: size.parse::<usize>()?.max(HEADER),
            count: count.parse()?,
            max: Duration::from_millis(max_ms.parse()?),
        })
    }
}

/// The files through which a scenario's processes and the driver meet.
#[derive(Debug, Clone)]
struct Files {
    dir: PathBuf,
}

impl Files {
    fn ready(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.ready"))
    }
    fn go(&self) -> PathBuf {
        self.dir.join("go")
    }
    /// Baseline only: the driver has what it needs; the sender may exit.
    fn stop(&self) -> PathBuf {
        self.dir.join("stop")
    }
    fn result(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.json"))
    }
}

/// Writes `value` as JSON to `path` atomically (write, then rename).
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), BoxError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// What the sender reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SenderReport {
    sent: u64,
    elapsed_s: f64,
    rate: f64,
    end_markers: u32,
}

/// What the receiver reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ReceiverReport {
    received: u64,
    bytes: u64,
    /// Receive times of the first and last data message (ns, CLOCK_MONOTONIC).
    first_ns: u64,
    last_ns: u64,
    /// Data messages per second between the first and the last arrival.
    rate: f64,
    /// The sender's count, from an end marker (absent when none arrived).
    sent: Option<u64>,
    out_of_order: u64,
    /// Runs of missing sequence numbers (drops), and the longest run.
    gaps: u64,
    max_gap: u64,
    ended_by: String,
    latency_ns: Percentiles,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Percentiles {
    n: u64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: u64,
}

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

/// `VmRSS`, `VmHWM` (peak) and `RssAnon` (private heap and stacks, the part
/// not shared with other processes running the same binary) in KiB.
fn rss_kib(pid: i32) -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?, field("RssAnon:")?))
}

/// User + system CPU time of a process, in seconds.
fn cpu_s(pid: i32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) as f64 / ticks)
}

/// What a process under the supervisor is, from its command line.
fn role_of(pid: i32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    match args.get(1).map(String::as_str) {
        Some("connector") => format!("connector {}", args.get(2).map_or("?", String::as_str)),
        Some(mode @ ("sender" | "receiver")) => format!("function {mode}"),
        _ => format!("pid {pid}"),
    }
}

/// `(role, VmRSS, RssAnon)` of each child of `ppid`.
fn children_rss(ppid: i32) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = children_of(ppid)
        .into_iter()
        .filter_map(|pid| {
            let (rss, _, anon) = rss_kib(pid)?;
            Some((role_of(pid), rss, anon))
        })
        .collect();
    out.sort();
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Baseline,
    Evergreen,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::Baseline => "baseline",
            Route::Evergreen => "evergreen",
        }
    }
}

/// One measured run.
#[derive(Debug, Clone)]
struct Run {
    scenario: String,
    path: Route,
    sender: SenderReport,
    receiver: ReceiverReport,
    /// Supervisor CPU seconds during the run (evergreen only).
    supervisor_cpu_s: Option<f64>,
    rss: Option<RssReport>,
}

#[derive(Debug, Clone, Default)]
struct RssReport {
    supervisor_idle: (u64, u64, u64),
    supervisor_after: (u64, u64, u64),
    children_idle: Vec<(String, u64, u64)>,
    children_after: Vec<(String, u64, u64)>,
}

/// Kills and reaps a child the driver started, if it is still there.
#[derive(Debug)]
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Reaped {
    fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).unwrap_or(i32::MAX)
    }

    /// Waits up to `limit` for the child to exit.
    fn exited_within(&mut self, limit: Duration) -> bool {
        wait_for(limit, || self.0.try_wait().ok().flatten().map(|_| ())).is_some()
    }
}

fn wait_ready(files: &Files, limit: Duration) -> Result<(), BoxError> {
    wait_for(limit, || {
        (files.ready("sender").exists() && files.ready("receiver").exists()).then_some(())
    })
    .ok_or_else(|| "the sender and receiver did not both become ready".into())
}

fn wait_results(files: &Files, job: &Job) -> Result<(SenderReport, ReceiverReport), BoxError> {
    let limit = job.max + Duration::from_secs(25);
    let receiver = wait_for(limit, || {
        read_json::<ReceiverReport>(&files.result("receiver"))
    })
    .ok_or("the receiver did not report in time")?;
    let sender = wait_for(Duration::from_secs(10), || {
        read_json::<SenderReport>(&files.result("sender"))
    })
    .ok_or("the sender did not report in time")?;
    Ok((sender, receiver))
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File, BoxError> {
    Ok(std::fs::File::create(dir.join(name))?)
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn baseline_rss(sender: &Reaped, receiver: &Reaped) -> Vec<(String, u64, u64)> {
    [
        ("function sender", sender.pid()),
        ("function receiver", receiver.pid()),
    ]
    .into_iter()
    .map(|(role, pid)| {
        let (rss, _, anon) = rss_kib(pid).unwrap_or_default();
        (role.to_string(), rss, anon)
    })
    .collect()
}

fn run_baseline(work: &Path, scenario: &str, job: &Job) -> Result<Run, BoxError> {
    let files = Files {
        dir: work.join(format!("{scenario}-baseline")),
    };
    std::fs::create_dir_all(&files.dir)?;
    let me = std::env::current_exe()?;
    let dir = files.dir.display().to_string();
    let mut sender = Reaped(
        Command::new(&me)
            .arg("sender")
            .arg("raw")
            .args(job.to_args().split_whitespace())
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&files.dir, "sender.stderr")?)
            .spawn()?,
    );
    let pipe = sender
        .0
        .stdout
        .take()
        .ok_or("the sender has no stdout pipe")?;
    let mut receiver = Reaped(
        Command::new(&me)
            .arg("receiver")
            .args(job.to_args().split_whitespace())
            .arg(&dir)
            .stdin(Stdio::from(pipe))
            .stdout(Stdio::null())
            .stderr(log_file(&files.dir, "receiver.stderr")?)
            .spawn()?,
    );
    wait_ready(&files, Duration::from_secs(10))?;
    let idle = baseline_rss(&sender, &receiver);
    std::fs::write(files.go(), b"")?;
    let (s, r) = wait_results(&files, job).map_err(|e| {
        format!(
            "{e}\nsender stderr:\n{}\nreceiver stderr:\n{}",
            tail(&files.dir.join("sender.stderr"), 20),
            tail(&files.dir.join("receiver.stderr"), 20)
        )
    })?;
    let after = baseline_rss(&sender, &receiver);
    std::fs::write(files.stop(), b"")?;
    sender.exited_within(Duration::from_secs(5));
    receiver.exited_within(Duration::from_secs(5));
    Ok(Run {
        scenario: scenario.into(),
        path: Route::Baseline,
        sender: s,
        receiver: r,
        supervisor_cpu_s: None,
        rss: Some(RssReport {
            children_idle: idle,
            children_after: after,
            ..RssReport::default()
        }),
    })
}

fn bench_function(name: &str, exe: &Path, args: &str) -> Value {
    json!({
        "Id": name,
        "FunctionArn": fn_arn(name),
        "FunctionConfiguration": {
            "Executable": exe,
            "ExecArgs": args,
            "Pinned": true,
            "Timeout": 3,
            "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
        }
    })
}

fn bench_group(exe: &Path, job: &Job, dir: &Path) -> Value {
    let args = job.to_args();
    let dir = dir.display();
    json!({
        "FunctionDefinitionVersion": { "Functions": [
            bench_function(SENDER, exe, &format!("sender sdk {args} {dir}")),
            bench_function(RECEIVER, exe, &format!("receiver {args} {dir}")),
        ]},
        "SubscriptionDefinitionVersion": { "Subscriptions": [
            sub("bench", &fn_arn(SENDER), "bench/#", &fn_arn(RECEIVER)),
        ]},
        "ConnectorDefinitionVersion": { "Connectors": [
            { "Id": "hb", "ConnectorArn": HEARTBEAT_ARN, "Parameters": { "IntervalSeconds": "3600" } },
            { "Id": "ml", "ConnectorArn": MESSAGE_LOG_ARN, "Parameters": {} }
        ]},
        "LoggerDefinitionVersion": { "Loggers": [
            { "Id": "sys", "Component": "GreengrassSystem", "Level": "INFO", "Type": "FileSystem", "Space": 4096 },
            { "Id": "user", "Component": "Lambda", "Level": "INFO", "Type": "FileSystem", "Space": 4096 }
        ]}
    })
}

fn run_evergreen(
    work: &Path,
    evergreen: &Path,
    scenario: &str,
    job: &Job,
) -> Result<Run, BoxError> {
    let files = Files {
        dir: work.join(format!("{scenario}-evergreen")),
    };
    std::fs::create_dir_all(&files.dir)?;
    let root = files.dir.join("root");
    let group_path = files.dir.join("group.json");
    let config_path = files.dir.join("config.json");
    let me = std::env::current_exe()?;
    std::fs::write(&group_path, bench_group(&me, job, &files.dir).to_string())?;
    let mut config = bench_config(&root)?;
    config["evergreen"]["logToStderr"] = json!(false);
    std::fs::write(&config_path, config.to_string())?;
    let mut runtime = Reaped(
        Command::new(evergreen)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--group")
            .arg(&group_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&files.dir, "evergreen.stderr")?)
            .spawn()?,
    );
    let pid = runtime.pid();
    let runtime_log = root.join("var/log/system/runtime.log");
    let explain = |e: BoxError| -> BoxError {
        format!(
            "{e}\nevergreen stderr:\n{}\nruntime log:\n{}",
            tail(&files.dir.join("evergreen.stderr"), 20),
            tail(&runtime_log, 30)
        )
        .into()
    };
    wait_ready(&files, Duration::from_secs(20)).map_err(explain)?;
    // Both functions are ready; wait (bounded) for the connectors too, so
    // the idle figures cover every child.
    wait_for(Duration::from_secs(5), || {
        (children_of(pid).len() >= 4).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut rss = RssReport {
        supervisor_idle: rss_kib(pid).unwrap_or_default(),
        children_idle: children_rss(pid),
        ..RssReport::default()
    };
    let cpu_before = cpu_s(pid);
    std::fs::write(files.go(), b"")?;
    let (s, r) = wait_results(&files, job).map_err(explain)?;
    let cpu = cpu_s(pid)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    rss.supervisor_after = rss_kib(pid).unwrap_or_default();
    rss.children_after = children_rss(pid);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    if !runtime.exited_within(Duration::from_secs(10)) {
        eprintln!("eg-bench: evergreen did not stop within 10 s of SIGTERM; killing it");
    }
    Ok(Run {
        scenario: scenario.into(),
        path: Route::Evergreen,
        sender: s,
        receiver: r,
        supervisor_cpu_s: cpu,
        rss: Some(rss),
    })
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

fn print_runs(runs: &[Run]) {
    println!(
        "{:<16} {:<9} {:>8} {:>9} {:>8} {:>11} {:>11} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "scenario",
        "path",
        "sent",
        "delivered",
        "dropped",
        "send msg/s",
        "recv msg/s",
        "MiB/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "sup µs/msg"
    );
    for run in runs {
        let r = &run.receiver;
        let sent = r.sent.unwrap_or(run.sender.sent);
        let dropped = sent.saturating_sub(r.received);
        let mib = if r.received > 0 {
            r.rate * (r.bytes as f64 / r.received as f64) / (1 << 20) as f64
        } else {
            0.0
        };
        let sup = match run.supervisor_cpu_s {
            Some(cpu) if r.received > 0 => format!("{:.2}", cpu * 1e6 / sent.max(1) as f64),
            _ => "-".into(),
        };
        println!(
            "{:<16} {:<9} {:>8} {:>9} {:>8} {:>11.0} {:>11.0} {:>8.1} {:>9} {:>9} {:>9} {:>9} {:>9}",
            run.scenario,
            run.path.label(),
            sent,
            r.received,
            dropped,
            run.sender.rate,
            r.rate,
            mib,
            us(r.latency_ns.p50),
            us(r.latency_ns.p99),
            us(r.latency_ns.p999),
            us(r.latency_ns.max),
            sup
        );
        if dropped > 0 {
            println!(
                "{:<16}   drops: {} runs of consecutive messages, the longest {} messages",
                "", r.gaps, r.max_gap
            );
        }
        if r.out_of_order > 0 || r.sent.is_none() {
            println!(
                "{:<16}   note: {} out of order; ended by {}{}",
                "",
                r.out_of_order,
                r.ended_by,
                if r.sent.is_none() {
                    " (no end marker: sent count from the sender)"
                } else {
                    ""
                }
            );
        }
    }
}

fn print_rss(runs: &[Run]) {
    println!();
    println!(
        "RSS in KiB (VmRSS; peak = VmHWM; anon = RssAnon, the part not shared with other \
         processes of the same binary), idle = all Ready before the run, after = end of the run"
    );
    println!(
        "{:<16} {:<9} {:>9} {:>9} {:>9} {:>9} {:>9}   children: idle→after (anon after)",
        "scenario", "path", "sup idle", "sup after", "sup peak", "sup anon", "sup cpu s"
    );
    for run in runs {
        let Some(rss) = &run.rss else { continue };
        let children: Vec<String> = rss
            .children_after
            .iter()
            .map(|(role, after, anon)| {
                let idle = rss.children_idle.iter().find(|(r, _, _)| r == role);
                match idle {
                    Some((_, idle, _)) => format!("{role} {idle}→{after} ({anon})"),
                    None => format!("{role} {after} ({anon})"),
                }
            })
            .collect();
        let dash = || "-".to_string();
        let (idle, after, peak, anon, cpu) = match run.path {
            Route::Evergreen => (
                rss.supervisor_idle.0.to_string(),
                rss.supervisor_after.0.to_string(),
                rss.supervisor_after.1.to_string(),
                rss.supervisor_after.2.to_string(),
                run.supervisor_cpu_s
                    .map_or_else(dash, |c| format!("{c:.2}")),
            ),
            Route::Baseline => (dash(), dash(), dash(), dash(), dash()),
        };
        println!(
            "{:<16} {:<9} {:>9} {:>9} {:>9} {:>9} {:>9}   {}",
            run.scenario,
            run.path.label(),
            idle,
            after,
            peak,
            anon,
            cpu,
            children.join(", ")
        );
    }
}

fn driver(quick: bool) -> Result<(), BoxError> {
    let evergreen = require_bin("evergreen")?;
    let work = tempfile::Builder::new().prefix("eg-bench-").tempdir()?;
    let scale = if quick { 10 } else { 1 };
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "eg-bench: evergreen = {}, {cores} cores, work dir {}",
        evergreen.display(),
        work.path().display()
    );
    println!(
        "router queue per target: 1024 (default queueCapacity); latency = one-way, CLOCK_MONOTONIC"
    );
    println!();

    let mut runs = Vec::new();
    let mut failures = Vec::new();
    let mut record = |result: Result<Run, BoxError>, what: &str| match result {
        Ok(run) => {
            eprintln!(
                "eg-bench: {what}: {} of {} delivered",
                run.receiver.received,
                run.receiver.sent.unwrap_or(run.sender.sent)
            );
            Some(run)
        }
        Err(e) => {
            eprintln!("eg-bench: {what} FAILED: {e}");
            failures.push(what.to_string());
            None
        }
    };
    for (size, label, flood_count) in [(64usize, "64B", 200_000u64), (4096, "4KiB", 50_000)] {
        let flood = Job {
            pattern: Pattern::Flood,
            size,
            count: flood_count / scale,
            max: Duration::from_secs(10),
        };
        let paced = Job {
            pattern: Pattern::Paced { rate: 1000 },
            size,
            count: 5000 / scale,
            max: Duration::from_secs(5) / scale as u32,
        };
        let mut evergreen_flood_rate = None;
        for (name, job) in [
            (format!("{label} flood"), &flood),
            (format!("{label} paced 1k"), &paced),
        ] {
            let scenario = name.replace(' ', "-");
            if let Some(run) = record(
                run_baseline(work.path(), &scenario, job),
                &format!("{name} baseline"),
            ) {
                runs.push(Run {
                    scenario: name.clone(),
                    ..run
                });
            }
            if let Some(run) = record(
                run_evergreen(work.path(), &evergreen, &scenario, job),
                &format!("{name} evergreen"),
            ) {
                if job.pattern == Pattern::Flood {
                    evergreen_flood_rate = Some(run.receiver.rate);
                }
                runs.push(Run {
                    scenario: name.clone(),
                    ..run
                });
            }
        }
        // A sustainable load: half of what evergreen delivered in the flood.
        let rate = ((evergreen_flood_rate.unwrap_or(2000.0) / 2.0 / 1000.0).floor() as u64 * 1000)
            .max(1000);
        let secs = if quick { 1 } else { 3 };
        let half = Job {
            pattern: Pattern::Paced { rate },
            size,
            count: rate * secs,
            max: Duration::from_secs(secs),
        };
        let name = format!("{label} half {}k", rate / 1000);
        let scenario = name.replace(' ', "-");
        if let Some(run) = record(
            run_baseline(work.path(), &scenario, &half),
            &format!("{name} baseline"),
        ) {
            runs.push(Run {
                scenario: name.clone(),
                ..run
            });
        }
        if let Some(run) = record(
            run_evergreen(work.path(), &evergreen, &scenario, &half),
            &format!("{name} evergreen"),
        ) {
            runs.push(Run {
                scenario: name.clone(),
                ..run
            });
        }
    }

    println!();
    print_runs(&runs);
    print_rss(&runs);
    if !failures.is_empty() {
        return Err(format!("{} run(s) failed: {}", failures.len(), failures.join(", ")).into());
    }
    Ok(())
}
