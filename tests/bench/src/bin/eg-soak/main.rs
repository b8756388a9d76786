//! `eg-soak`: a long run of one client device's QoS 1 messages through the runtime to the cloud
//! while the runtime is killed with SIGKILL and the upstream broker stopped, at random; at the end
//! it counts what the runtime acknowledged and never delivered (lost), what came twice and what
//! came out of order. Unlike the other benches its exit status is a verdict: non-zero on a loss.
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench
//! target/release/eg-soak --quick                      # 30 s, faults every few seconds
//! target/release/eg-soak --duration 3600 --rate 6000  # an hour
//! ```
//!
//! # What runs
//!
//! Everything on loopback, in a temporary directory:
//!
//! - **the cloud**: Debian's `mosquitto` with persistence, and a subscriber written here with a
//!   persistent session (clean session 0, QoS 1) on `soak/#` that records every sequence number
//!   it receives, in arrival order, and acknowledges it after recording (so a lost PUBACK means a
//!   duplicate, never a miss);
//! - **the runtime**: the release `evergreen` (`--evergreen`, else the one next to this binary)
//!   with the plain device listener on a port fixed for the run, a group whose subscription
//!   routes device `soak-device`'s `soak/dev` to `cloud`, and the bridge to that mosquitto with
//!   a `FileSystem` spool (a PUBACK to the device follows the spool's fsync);
//! - **the device**: an MQTT 3.1.1 client written here that generates sequence numbers at
//!   `--rate` (payload `<seq> xxx…`, `--payload` bytes), keeps at most `--window`
//!   unacknowledged, and behaves as a real client: when its connection ends it reconnects (100 ms
//!   doubling to 1 s) and first sends again, in order and flagged DUP, every message without a
//!   PUBACK. No PUBACK within 30 s also ends the connection (counted: that is a stall). Numbers
//!   not yet sent wait in its schedule, so after an outage it catches up as fast as the window
//!   allows.
//!
//! # Faults
//!
//! From a seeded generator (`--seed`), as Poisson processes (exponential intervals, capped at
//! ten times the mean): `kill -9` of the runtime every `--kill-mean` seconds on average, each
//! followed at once by a start on the same root; a stop of mosquitto (SIGTERM, so it saves its
//! persistence: the subscriber's queued messages survive) every `--broker-stop-mean` seconds,
//! down for `--broker-down-mean` on average. A mean of 0 turns that fault off.
//!
//! # The verdict
//!
//! Publishing stops after `--duration`; then faults stop, the broker is brought back, and the
//! drain waits for the device's last PUBACKs and for every acknowledged message to arrive (at
//! most `--drain` seconds, and no longer than 30 s without a PUBACK or an arrival). The table:
//! **sent** (distinct numbers written at least once), **acknowledged** (PUBACKed), **received**
//! (distinct, at the cloud), **lost** (acknowledged, never received), **duplicated** (arrivals
//! of a number already received), **reordered** (inversions among first arrivals: pairs
//! received in the opposite order to their numbers), kills, broker stops, the publishing
//! duration and the achieved rate (acknowledged / duration). Notes under it say whether the run
//! kept up (99 % of the rate acknowledged, the device less than a second behind its schedule
//! at the end, the cloud's lag delivered by the drain), how often the
//! device reconnected and resent, and what the runtime logged at WARN and ERROR.
//! SIGINT or SIGTERM ends the publishing phase early; the drain and the report follow.
//! Exit status 1 when anything was lost, anything is still unacknowledged after the drain, a
//! number arrived that was never sent, or the runtime could not be started again; 2 when the
//! soak could not be set up.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use evergreen_bench::mosquitto::Mosquitto;
use evergreen_bench::mqtt::{self, Frames, Incoming};
use evergreen_bench::soak::{first_lost, tally, Outcome, Rng, SeqSet};
use evergreen_bench::{bench_config, require_bin};
use evergreen_tests::{free_port, group, merge, sub, wait_for};
use serde_json::{json, Value};

const DEVICE: &str = "soak-device";
const TOPIC: &str = "soak/dev";
const CLOUD_CLIENT: &str = "soak-cloud";
const FILTER: &str = "soak/#";

/// No PUBACK for this long while messages wait for one: the device gives up on the connection,
/// as a client library's operation timeout would. The runtime acknowledges after its spool's
/// commit, which takes milliseconds whatever the upstream broker does, so this is a stall.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Reconnect delays of both clients: short, so the figures measure the runtime rather than a
/// client's patience (paho's default starts at 1 s).
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The clients' keep-alive, and how long they stay silent before a PINGREQ.
const KEEP_ALIVE_SECS: u16 = 30;
const PING_AFTER: Duration = Duration::from_secs(10);

/// A connection attempt, and a CONNACK, take at most this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A (re)started runtime must name its listener within this.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Starts of the runtime tried in a row before the soak gives up on it.
const START_ATTEMPTS: usize = 3;

/// The drain gives up when neither a PUBACK nor an arrival came for this long.
const DRAIN_STALL: Duration = Duration::from_secs(30);

/// Rotated files looked for beside the runtime log (`x.log.1`, …): the runtime keeps
/// `evergreen_runtime::logs::ROTATED_FILES` (3); a missing one is skipped.
const ROTATED_LOGS: u32 = 9;

/// Fault intervals are capped at this many times their mean, so every wait is bounded.
const INTERVAL_CAP: f64 = 10.0;

/// A long soak of device QoS 1 messages to the cloud under kill -9 and broker stops.
#[derive(Debug, Parser)]
#[command(
    name = "eg-soak",
    after_help = "Build: cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench\n\
                  Needs Debian mosquitto (the cloud). Exit status: 0 nothing lost, 1 a loss or a \
                  stall (see the notes under the table), 2 the soak could not be set up."
)]
struct Cli {
    /// Seconds of publishing (faults happen during it); the drain comes after.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    duration: Option<u64>,
    /// Messages per second the device generates.
    #[arg(long, default_value_t = 1000.0, value_parser = parse_rate)]
    rate: f64,
    /// Seed of the fault schedule (the same seed, the same intervals).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Mean seconds between kill -9s of the runtime (0: none) [default: 60, --quick 8].
    #[arg(long, value_parser = parse_mean)]
    kill_mean: Option<f64>,
    /// Mean seconds between stops of the upstream broker (0: none) [default: 90, --quick 12].
    #[arg(long, value_parser = parse_mean)]
    broker_stop_mean: Option<f64>,
    /// Mean seconds the broker stays down.
    #[arg(long, default_value_t = 5.0, value_parser = parse_mean)]
    broker_down_mean: f64,
    /// Unacknowledged QoS 1 messages the device keeps in flight (mosquitto's clients and
    /// paho's Python client default to 20).
    #[arg(long, default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    window: usize,
    /// Payload bytes (at least the sequence number and a space).
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65536))]
    payload: usize,
    /// Most seconds the drain waits for the last PUBACKs and arrivals (it also ends when
    /// nothing moved for 30 s).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    drain: u64,
    /// Seconds between progress lines [default: 60, --quick 5].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    progress: Option<u64>,
    /// 30 s of publishing with faults every few seconds (flags given explicitly still win).
    #[arg(long)]
    quick: bool,
    /// The `evergreen` binary to run [default: the one next to this program].
    #[arg(long)]
    evergreen: Option<PathBuf>,
    /// Keep the temporary directory (runtime root, logs, mosquitto's files) and print its path.
    #[arg(long)]
    keep: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1e6 => Ok(r),
        _ => Err(format!(
            "{s:?}: messages per second, above 0 and at most 1000000"
        )),
    }
}

fn parse_mean(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(m) if (0.0..=86_400.0).contains(&m) => Ok(m),
        _ => Err(format!("{s:?}: seconds, 0 to 86400")),
    }
}

/// The run's settings once `--quick` and the defaults are applied.
#[derive(Debug, Clone)]
struct Settings {
    duration: Duration,
    rate: f64,
    seed: u64,
    /// `None`: that fault is off.
    kill_mean: Option<f64>,
    broker_stop_mean: Option<f64>,
    broker_down_mean: f64,
    window: usize,
    payload: usize,
    drain: Duration,
    progress: Duration,
}

impl Settings {
    fn from(cli: &Cli) -> Settings {
        let pick = |given: Option<f64>, normal: f64, quick: f64| {
            let mean = given.unwrap_or(if cli.quick { quick } else { normal });
            (mean > 0.0).then_some(mean)
        };
        Settings {
            duration: Duration::from_secs(cli.duration.unwrap_or(if cli.quick { 30 } else { 600 })),
            rate: cli.rate,
            seed: cli.seed,
            kill_mean: pick(cli.kill_mean, 60.0, 8.0),
            broker_stop_mean: pick(cli.broker_stop_mean, 90.0, 12.0),
            broker_down_mean: cli.broker_down_mean,
            window: cli.window,
            payload: cli.payload,
            drain: Duration::from_secs(cli.drain),
            progress: Duration::from_secs(cli.progress.unwrap_or(if cli.quick { 5 } else { 60 })),
        }
    }
}

/// Set by SIGINT or SIGTERM: the publishing phase ends early and the soak drains, stops what
/// it started and reports, rather than dying and leaving a runtime and a broker behind.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    for sig in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe, and no
        // other code in this program installs handlers for these signals.
        let _ = unsafe {
            nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::Handler(on_signal))
        };
    }
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("eg-soak: {e}");
            ExitCode::from(2)
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a few field writes: a panic elsewhere leaves them
    // consistent, and the soak must still report.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// The runtime
// ---------------------------------------------------------------------------------------------

/// `evergreen run` on one root, started again after each kill with the same configuration.
struct Core {
    bin: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
}

impl Core {
    fn listeners_file(&self) -> PathBuf {
        self.dir.join("root/run/mqtt-listeners.json")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("root/var/log/system/runtime.log")
    }

    /// Starts the runtime and waits until it names its plain listener; how long that took.
    fn start(&mut self) -> Result<Duration, String> {
        // A killed runtime leaves its file behind: only a new one says this start is up.
        let _ = std::fs::remove_file(self.listeners_file());
        let started = Instant::now();
        let mut child = Command::new(&self.bin)
            .arg("run")
            .arg("--config")
            .arg(self.dir.join("config.json"))
            .arg("--group")
            .arg(self.dir.join("group.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A panic or a fatal start error belongs in the soak's log.
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        let file = self.listeners_file();
        let up = wait_for(START_LIMIT, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(format!("the runtime exited at start: {status}")));
            }
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
            doc["plain"].as_str().map(|_| Ok(()))
        });
        match up {
            Some(Ok(())) => {
                self.child = Some(child);
                Ok(started.elapsed())
            }
            Some(Err(e)) => Err(e),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "the runtime did not open its device listener within {START_LIMIT:?}"
                ))
            }
        }
    }

    /// `start`, tried [`START_ATTEMPTS`] times.
    fn start_retrying(&mut self) -> Result<Duration, String> {
        let mut last = String::new();
        for attempt in 1..=START_ATTEMPTS {
            match self.start() {
                Ok(d) => return Ok(d),
                Err(e) => {
                    println!("  runtime start {attempt} of {START_ATTEMPTS} failed: {e}");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Sends `sig` and waits (10 s) for the exit; SIGKILL after that.
    fn signal(&mut self, sig: nix::sys::signal::Signal) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).ok()?);
        let _ = nix::sys::signal::kill(pid, sig);
        let status = wait_for(Duration::from_secs(10), || child.try_wait().ok().flatten());
        if status.is_none() {
            let _ = child.kill();
            return child.wait().ok();
        }
        status
    }

    /// `evergreen status --json` (10 s at most): what the runtime says of its cloud link.
    fn status(&self) -> Option<Value> {
        let mut child = Command::new(&self.bin)
            .arg("status")
            .arg("--json")
            .arg("--config")
            .arg(self.dir.join("config.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        if wait_for(Duration::from_secs(10), || child.try_wait().ok().flatten()).is_none() {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        let mut text = String::new();
        child.stdout.take()?.read_to_string(&mut text).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The runtime's exit status if it ended by itself.
    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }
}

fn thing_arn(name: &str) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:thing/{name}")
}

/// Writes the group and the configuration into `dir` (root `dir/root`).
fn write_runtime_files(dir: &Path, upstream: u16, device_port: u16) -> Result<(), String> {
    let mut g = group(
        vec![],
        vec![sub("soak-up", &thing_arn(DEVICE), TOPIC, "cloud")],
    );
    // INFO, not the tests' DEBUG, and room for an hour of kills and reconnects: the log is
    // where a defect the soak finds is explained.
    g["LoggerDefinitionVersion"] = json!({ "Loggers": [
        { "Id": "sys", "Component": "GreengrassSystem", "Level": "INFO", "Type": "FileSystem", "Space": 65536 },
        { "Id": "user", "Component": "Lambda", "Level": "INFO", "Type": "FileSystem", "Space": 4096 }
    ]});
    g["DeviceDefinitionVersion"] = json!({ "Devices": [{
        "Id": DEVICE,
        "ThingArn": thing_arn(DEVICE),
        "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/abc123",
    }]});
    let mut config = bench_config(&dir.join("root"))?;
    merge(
        &mut config,
        &json!({
            "coreThing": { "iotHost": "127.0.0.1", "iotMqttPort": upstream },
            // The bridge's reconnect backoff (from 1 s, doubling) capped at 1 s, so a broker
            // outage costs its own length, not a minute of backoff.
            "mqttMaxConnectionRetryInterval": 1,
            "evergreen": {
                "cloudTls": false,
                // 256 MB: the spool never overflows during a broker outage at the soak's rates,
                // which would be a counted loss by design, not a defect.
                "spooler": { "storageType": "FileSystem", "maxSizeBytes": 256u64 * 1024 * 1024 },
                // One port for the whole run, as a real device's broker address: a restarted
                // runtime must bind it again.
                "listeners": { "mqttPlain": { "enabled": true, "port": device_port } }
            }
        }),
    );
    let write = |name: &str, v: &Value| {
        std::fs::write(dir.join(name), v.to_string())
            .map_err(|e| format!("cannot write {name}: {e}"))
    };
    write("group.json", &g)?;
    write("config.json", &config)
}

// ---------------------------------------------------------------------------------------------
// The device
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct DeviceState {
    /// Generating new sequence numbers (false once the publishing phase is over).
    publishing: bool,
    /// Quit now (the drain's bound passed).
    stop: bool,
    /// The first sequence number never sent.
    next: u64,
    /// Sent and not acknowledged, in sending order: `(seq, packet id)`.
    pending: VecDeque<(u64, u16)>,
    ids: HashMap<u16, u64>,
    last_id: u16,
    acked: SeqSet,
    /// The current connection's number; a PUBACK read on an older one is not counted.
    conn: u64,
    conn_open: bool,
    /// When the oldest wait for a PUBACK began (the last PUBACK, or the send into an empty
    /// window).
    waiting_since: Instant,
    longest_wait: Duration,
    resent: u64,
    connects: u64,
    ack_timeouts: u64,
    unknown_acks: u64,
}

struct Device {
    state: Mutex<DeviceState>,
    wake: Condvar,
    addr: SocketAddr,
    rate: f64,
    window: usize,
    payload: usize,
    started: Instant,
}

impl Device {
    /// Sequence numbers due by `now` at the configured rate.
    fn due(&self, now: Instant) -> u64 {
        (now.duration_since(self.started).as_secs_f64() * self.rate) as u64
    }

    fn payload(&self, seq: u64) -> Vec<u8> {
        let mut p = format!("{seq} ").into_bytes();
        if p.len() < self.payload {
            p.resize(self.payload, b'x');
        }
        p
    }

    /// Reconnects until the drain is over or `deadline`.
    fn run(&self, deadline: Instant) {
        let mut backoff = MIN_BACKOFF;
        while Instant::now() < deadline {
            {
                let s = lock(&self.state);
                if s.stop || (!s.publishing && s.pending.is_empty()) {
                    return;
                }
            }
            if let Ok(connected) = connect(self.addr, DEVICE, true) {
                let began = Instant::now();
                self.session(connected, deadline);
                if began.elapsed() > MAX_BACKOFF {
                    backoff = MIN_BACKOFF;
                }
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn next_id(s: &mut DeviceState) -> u16 {
        // The window is far below 65535, so a free id is a few steps away at most.
        loop {
            s.last_id = s.last_id.wrapping_add(1).max(1);
            if !s.ids.contains_key(&s.last_id) {
                return s.last_id;
            }
        }
    }

    /// One connection: resend what has no PUBACK, then publish on schedule until the
    /// connection ends, a PUBACK is overdue, or nothing is left to do.
    fn session(&self, connected: Connected, deadline: Instant) {
        let Connected { mut stream, frames } = connected;
        let Ok(read_half) = stream.try_clone() else {
            return;
        };
        // A write blocked this long means the runtime stopped reading: treated as a stall.
        let _ = stream.set_write_timeout(Some(ACK_TIMEOUT));
        let mut out = Vec::new();
        let conn = {
            let mut s = lock(&self.state);
            s.conn += 1;
            s.conn_open = true;
            s.connects += 1;
            // As a client does after a reconnect: everything unacknowledged, in order, as DUP.
            for &(seq, id) in &s.pending {
                mqtt::publish(TOPIC, &self.payload(seq), Some((id, true)), &mut out);
            }
            s.resent += s.pending.len() as u64;
            s.waiting_since = Instant::now();
            s.conn
        };
        // The reader is joined before this returns, so every PUBACK of this connection is
        // counted before the next connection decides what to send again.
        let why = std::thread::scope(|scope| {
            let reader = scope.spawn(|| self.read_acks(read_half, frames, conn));
            let why = self.publish_loop(&mut stream, &out, conn, deadline);
            lock(&self.state).conn_open = false;
            if why.is_none() {
                let _ = stream.write_all(&mqtt::DISCONNECT);
            }
            let _ = stream.shutdown(Shutdown::Both);
            let _ = reader.join();
            why
        });
        if let Some(why) = why {
            println!(
                "  [{:>7.1} s] device: connection ended: {why}",
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    /// Writes `resend`, then new messages as they fall due. `None` when there is nothing left
    /// to send, else why the connection is given up.
    fn publish_loop(
        &self,
        stream: &mut TcpStream,
        resend: &[u8],
        conn: u64,
        deadline: Instant,
    ) -> Option<String> {
        if !resend.is_empty() {
            if let Err(e) = stream.write_all(resend) {
                return Some(format!("resend: {e}"));
            }
        }
        let mut out = Vec::new();
        let mut last_write = Instant::now();
        let mut s = lock(&self.state);
        loop {
            let now = Instant::now();
            if s.conn != conn || !s.conn_open {
                return Some("closed by the runtime".into());
            }
            if s.stop || now >= deadline {
                return Some("the drain's bound passed".into());
            }
            if !s.publishing && s.pending.is_empty() {
                return None;
            }
            if !s.pending.is_empty() && now.duration_since(s.waiting_since) > ACK_TIMEOUT {
                s.ack_timeouts += 1;
                return Some(format!("no PUBACK within {ACK_TIMEOUT:?}: a stall"));
            }
            let due = if s.publishing { self.due(now) } else { s.next };
            out.clear();
            while s.pending.len() < self.window && s.next < due {
                let id = Device::next_id(&mut s);
                let seq = s.next;
                if s.pending.is_empty() {
                    s.waiting_since = now;
                }
                s.pending.push_back((seq, id));
                s.ids.insert(id, seq);
                s.next += 1;
                mqtt::publish(TOPIC, &self.payload(seq), Some((id, false)), &mut out);
            }
            if out.is_empty() {
                if last_write.elapsed() > PING_AFTER {
                    out.extend_from_slice(&mqtt::PINGREQ);
                } else {
                    // Until the next number falls due, a PUBACK frees the window, or 100 ms.
                    let next_due = Duration::from_secs_f64((s.next + 1) as f64 / self.rate);
                    let wait = next_due
                        .saturating_sub(now.duration_since(self.started))
                        .clamp(Duration::from_millis(1), Duration::from_millis(100));
                    s = self
                        .wake
                        .wait_timeout(s, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    continue;
                }
            }
            drop(s);
            if let Err(e) = stream.write_all(&out) {
                let mut s = lock(&self.state);
                if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut {
                    s.ack_timeouts += 1;
                    return Some(format!("a write blocked for {ACK_TIMEOUT:?}: a stall"));
                }
                return Some(format!("write: {e}"));
            }
            last_write = Instant::now();
            s = lock(&self.state);
        }
    }

    /// Reads PUBACKs of connection `conn` until it ends; `frames` holds what came with the
    /// CONNACK.
    fn read_acks(&self, mut stream: TcpStream, mut frames: Frames, conn: u64) {
        let mut buf = vec![0u8; 64 * 1024];
        // Nothing new yet: what came with the CONNACK first.
        let mut n = 0;
        'read: loop {
            frames.push(&buf[..n]);
            let mut s = lock(&self.state);
            loop {
                let packet = match frames.next_packet() {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => {
                        println!("  device: the runtime's stream is not MQTT: {e}");
                        break 'read;
                    }
                };
                let packet_id = match mqtt::decode(packet.0, &packet.1) {
                    Ok(Incoming::PubAck { packet_id }) => packet_id,
                    Ok(Incoming::PingResp) => continue,
                    // Anything else means the stream is out of step: reading on would hide it.
                    other => {
                        println!("  device: unexpected from the runtime: {other:?}");
                        break 'read;
                    }
                };
                if s.conn != conn {
                    continue;
                }
                let Some(seq) = s.ids.remove(&packet_id) else {
                    s.unknown_acks += 1;
                    continue;
                };
                // PUBACKs come in order, so this is the front almost always.
                if let Some(at) = s.pending.iter().position(|&(q, _)| q == seq) {
                    s.pending.remove(at);
                }
                s.acked.insert(seq);
                let now = Instant::now();
                let waited = now.duration_since(s.waiting_since);
                s.longest_wait = s.longest_wait.max(waited);
                s.waiting_since = now;
            }
            drop(s);
            self.wake.notify_all();
            n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
        }
        let mut s = lock(&self.state);
        if s.conn == conn {
            s.conn_open = false;
        }
        drop(s);
        self.wake.notify_all();
    }
}

/// An accepted MQTT connection: the stream, and the frame reader holding whatever arrived
/// behind the CONNACK (a broker resuming a persistent session sends its queued PUBLISHes right
/// after it, often in the same read).
struct Connected {
    stream: TcpStream,
    frames: Frames,
}

/// Connects as `client_id` and waits for an accepting CONNACK.
fn connect(addr: SocketAddr, client_id: &str, clean: bool) -> Result<Connected, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&mqtt::connect(client_id, clean, KEEP_ALIVE_SECS))
        .map_err(|e| e.to_string())?;
    let mut frames = Frames::default();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while Instant::now() < deadline {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before CONNACK".into());
        }
        frames.push(&buf[..n]);
        if let Some((first, body)) = frames.next_packet().map_err(|e| e.to_string())? {
            return match mqtt::decode(first, &body) {
                Ok(Incoming::ConnAck { code: 0, .. }) => {
                    stream.set_read_timeout(None).map_err(|e| e.to_string())?;
                    Ok(Connected { stream, frames })
                }
                other => Err(format!("CONNACK refused: {other:?}")),
            };
        }
    }
    Err("no CONNACK".into())
}

// ---------------------------------------------------------------------------------------------
// The cloud side
// ---------------------------------------------------------------------------------------------

/// The subscriber on the upstream broker: every sequence number in arrival order.
#[derive(Default)]
struct CloudSide {
    arrivals: Mutex<Vec<u64>>,
    /// Distinct arrivals, kept alongside for the drain's polling.
    seen: Mutex<SeqSet>,
    unparsable: AtomicU64,
    connects: AtomicU64,
    subscribed: AtomicBool,
    stop: AtomicBool,
}

impl CloudSide {
    fn run(&self, addr: SocketAddr, started: Instant, deadline: Instant) {
        let mut backoff = MIN_BACKOFF;
        while !self.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let began = Instant::now();
            let connects = self.connects.load(Ordering::Relaxed);
            if let Err(e) = self.session(addr, deadline) {
                // Refused connections while the broker is down are expected; an established
                // one that ends says why.
                if self.connects.load(Ordering::Relaxed) > connects {
                    println!(
                        "  [{:>7.1} s] cloud side: connection ended: {e}",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            if began.elapsed() > MAX_BACKOFF {
                backoff = MIN_BACKOFF;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn session(&self, addr: SocketAddr, deadline: Instant) -> Result<(), String> {
        let Connected {
            mut stream,
            mut frames,
        } = connect(addr, CLOUD_CLIENT, false)?;
        self.connects.fetch_add(1, Ordering::Relaxed);
        // Short reads, so the stop flag is noticed; the frame reader keeps partial packets.
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(&mqtt::subscribe(1, FILTER, 1))
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut acks = Vec::new();
        let mut last_write = Instant::now();
        // Nothing new yet: what came with the CONNACK first.
        let mut n = 0;
        while Instant::now() < deadline {
            frames.push(&buf[..n]);
            acks.clear();
            {
                let mut arrivals = lock(&self.arrivals);
                let mut seen = lock(&self.seen);
                while let Some((first, body)) = frames.next_packet().map_err(|e| e.to_string())? {
                    match mqtt::decode(first, &body).map_err(|e| e.to_string())? {
                        Incoming::SubAck { codes, .. } => {
                            if codes.first().is_some_and(|&c| c <= 1) {
                                self.subscribed.store(true, Ordering::Relaxed);
                            } else {
                                return Err(format!("SUBSCRIBE refused: {codes:?}"));
                            }
                        }
                        Incoming::PingResp => {}
                        Incoming::Publish {
                            payload, packet_id, ..
                        } => {
                            // Recorded before the PUBACK: if the PUBACK is lost, mosquitto
                            // sends it again and it counts as a duplicate, never as missing.
                            match parse_seq(&payload) {
                                Some(seq) => {
                                    arrivals.push(seq);
                                    seen.insert(seq);
                                }
                                None => {
                                    self.unparsable.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            if let Some(id) = packet_id {
                                acks.extend_from_slice(&mqtt::puback(id));
                            }
                        }
                        // The stream is out of step, or mosquitto does what the soak does not
                        // expect: reconnecting is safe, reading on could hide arrivals.
                        other => return Err(format!("unexpected from mosquitto: {other:?}")),
                    }
                }
            }
            if !acks.is_empty() {
                stream.write_all(&acks).map_err(|e| e.to_string())?;
                last_write = Instant::now();
            }
            if self.stop.load(Ordering::Relaxed) {
                let _ = stream.write_all(&mqtt::DISCONNECT);
                return Ok(());
            }
            n = match stream.read(&mut buf) {
                Ok(0) => return Err("closed".into()),
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if last_write.elapsed() > PING_AFTER {
                        stream
                            .write_all(&mqtt::PINGREQ)
                            .map_err(|e| e.to_string())?;
                        last_write = Instant::now();
                    }
                    0
                }
                Err(e) => return Err(e.to_string()),
            };
        }
        Ok(())
    }
}

fn parse_seq(payload: &[u8]) -> Option<u64> {
    let end = payload
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(payload.len());
    std::str::from_utf8(payload.get(..end)?).ok()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Runtime log lines at WARN and ERROR in `log` and its rotated files, grouped with their
/// numbers blanked: what the runtime complained about during the soak, most frequent first.
fn log_summary(log: &Path) -> Vec<(usize, String)> {
    let mut text = String::new();
    for n in (1..=ROTATED_LOGS).rev() {
        let mut rotated = log.as_os_str().to_owned();
        rotated.push(format!(".{n}"));
        text.push_str(&std::fs::read_to_string(PathBuf::from(rotated)).unwrap_or_default());
    }
    text.push_str(&std::fs::read_to_string(log).unwrap_or_default());
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        let Some(level_at) = line.find("][WARN]").or_else(|| line.find("][ERROR]")) else {
            continue;
        };
        let rest = &line[level_at + 1..];
        let blanked: String = rest
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .take(150)
            .collect();
        *kinds.entry(blanked).or_default() += 1;
    }
    let mut out: Vec<(usize, String)> = kinds.into_iter().map(|(k, n)| (n, k)).collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    out
}

fn run(cli: &Cli) -> Result<bool, String> {
    let set = Settings::from(cli);
    let evergreen = match &cli.evergreen {
        Some(p) if p.exists() => p.clone(),
        Some(p) => return Err(format!("{} does not exist", p.display())),
        None => require_bin("evergreen")?,
    };
    let mosquitto = evergreen_tests::mosquitto_or_skip()
        .ok_or("needs Debian mosquitto as the upstream broker")?;
    let work = tempfile::Builder::new()
        .prefix("eg-soak-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let dir = work.path().to_path_buf();
    let broker_dir = dir.join("mosquitto");
    std::fs::create_dir_all(&broker_dir)
        .map_err(|e| format!("cannot create {}: {e}", broker_dir.display()))?;
    let (Some(upstream), Some(device_port)) = (free_port(), free_port()) else {
        return Err("cannot find free loopback ports".into());
    };
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    write_runtime_files(&dir, upstream, device_port)?;

    let fault = |m: Option<f64>| m.map_or("off".to_string(), |m| format!("every ~{m} s"));
    println!(
        "eg-soak: {} s at {} msg/s, seed {}, kill -9 {}, broker stop {} (down ~{} s), window {}, payload {} B; {}",
        set.duration.as_secs(),
        set.rate,
        set.seed,
        fault(set.kill_mean),
        fault(set.broker_stop_mean),
        set.broker_down_mean,
        set.window,
        set.payload,
        evergreen.display()
    );
    let mut broker = Mosquitto::start(&mosquitto, &broker_dir, upstream)?;

    // The clock of the whole run: the device's schedule, the faults and every line printed
    // count from here (the runtime's first start, a fraction of a second, is inside it).
    let started = Instant::now();
    // Every thread is bounded by this, whatever happens to the run.
    let hard_deadline = Instant::now() + set.duration + set.drain + Duration::from_secs(120);

    // The cloud side's persistent session exists before anything is published.
    let cloud = Arc::new(CloudSide::default());
    let cloud_thread = {
        let cloud = cloud.clone();
        std::thread::spawn(move || cloud.run(loopback(upstream), started, hard_deadline))
    };
    if wait_for(Duration::from_secs(10), || {
        cloud.subscribed.load(Ordering::Relaxed).then_some(())
    })
    .is_none()
    {
        return Err("the cloud side could not subscribe to mosquitto".into());
    }

    let mut core = Core {
        bin: evergreen,
        dir: dir.clone(),
        child: None,
    };
    let first_start = core.start_retrying()?;
    println!("runtime up in {} ms", first_start.as_millis());

    let device = Arc::new(Device {
        state: Mutex::new(DeviceState {
            publishing: true,
            stop: false,
            next: 0,
            pending: VecDeque::new(),
            ids: HashMap::new(),
            last_id: 0,
            acked: SeqSet::default(),
            conn: 0,
            conn_open: false,
            waiting_since: started,
            longest_wait: Duration::ZERO,
            resent: 0,
            connects: 0,
            ack_timeouts: 0,
            unknown_acks: 0,
        }),
        wake: Condvar::new(),
        addr: loopback(device_port),
        rate: set.rate,
        window: set.window,
        payload: set.payload,
        started,
    });
    let device_thread = {
        let device = device.clone();
        std::thread::spawn(move || device.run(hard_deadline))
    };

    // The faults.
    let mut rng = Rng::new(set.seed);
    let end = started + set.duration;
    let mut next_kill = set
        .kill_mean
        .map(|m| started + secs(rng.exponential(m, INTERVAL_CAP)));
    let mut next_stop = set
        .broker_stop_mean
        .map(|m| started + secs(rng.exponential(m, INTERVAL_CAP)));
    let mut broker_back_at: Option<Instant> = None;
    let mut next_progress = started + set.progress;
    let (mut kills, mut stops, mut unclean_stops, mut crashes) = (0u64, 0u64, 0u64, 0u64);
    let mut restart_ms: Vec<u128> = Vec::new();
    let mut most_behind = 0u64;
    let mut failure: Option<String> = None;
    let at = |t: Instant| t.duration_since(started).as_secs_f64();
    let progress = |label: &str, t: Instant| {
        let s = lock(&device.state);
        let (sent, acked, pending, backlog) = (
            s.next,
            s.acked.len(),
            s.pending.len(),
            // Once publishing is over nothing more falls due (the notes give the last figure).
            if s.publishing {
                device.due(t).saturating_sub(s.next)
            } else {
                0
            },
        );
        drop(s);
        let (arrivals, received) = (lock(&cloud.arrivals).len(), lock(&cloud.seen).len());
        println!(
            "[{:>7.1} s] {label}sent {sent} acked {acked} received {received} ({arrivals} arrivals) pending {pending}; device behind its schedule {backlog}, cloud behind the acks ~{}",
            at(t),
            acked.saturating_sub(received)
        );
    };
    while Instant::now() < end && failure.is_none() {
        let now = Instant::now();
        if INTERRUPTED.load(Ordering::Relaxed) {
            println!("[{:>7.1} s] interrupted: publishing ends now", at(now));
            break;
        }
        if let Some(status) = core.exited() {
            crashes += 1;
            println!(
                "[{:>7.1} s] the runtime exited by itself: {status}; starting it again",
                at(now)
            );
            if let Err(e) = core.start_retrying() {
                failure = Some(format!("the runtime did not start again: {e}"));
            }
            continue;
        }
        if next_kill.is_some_and(|t| now >= t) {
            core.signal(nix::sys::signal::Signal::SIGKILL);
            kills += 1;
            match core.start_retrying() {
                Ok(d) => {
                    restart_ms.push(d.as_millis());
                    println!(
                        "[{:>7.1} s] kill -9 #{kills}; runtime up again in {} ms",
                        at(now),
                        d.as_millis()
                    );
                }
                Err(e) => {
                    failure = Some(format!(
                        "the runtime did not start after kill -9 #{kills}: {e}"
                    ))
                }
            }
            next_kill = set
                .kill_mean
                .map(|m| Instant::now() + secs(rng.exponential(m, INTERVAL_CAP)));
        }
        if broker.is_running() && next_stop.is_some_and(|t| now >= t) {
            if !broker.stop() {
                unclean_stops += 1;
            }
            stops += 1;
            let down = rng.exponential(set.broker_down_mean, INTERVAL_CAP);
            println!(
                "[{:>7.1} s] broker stop #{stops}, down for {down:.1} s",
                at(now)
            );
            broker_back_at = Some(Instant::now() + secs(down));
        }
        if broker_back_at.is_some_and(|t| now >= t) {
            if let Err(e) = broker.restart() {
                failure = Some(format!("mosquitto did not start again: {e}"));
            }
            broker_back_at = None;
            next_stop = set
                .broker_stop_mean
                .map(|m| Instant::now() + secs(rng.exponential(m, INTERVAL_CAP)));
        }
        if now >= next_progress {
            progress("", now);
            next_progress += set.progress;
        }
        most_behind = most_behind.max(device.due(now).saturating_sub(lock(&device.state).next));
        std::thread::sleep(Duration::from_millis(20));
    }

    // The drain: no new numbers, no more faults, the broker back.
    let publishing_end = Instant::now().min(end);
    let published = publishing_end.duration_since(started);
    let (behind, cloud_behind) = {
        let mut s = lock(&device.state);
        s.publishing = false;
        (
            device.due(publishing_end).saturating_sub(s.next),
            s.acked.count_not_in(&lock(&cloud.seen)),
        )
    };
    device.wake.notify_all();
    if !broker.is_running() {
        if let Err(e) = broker.restart() {
            failure.get_or_insert(format!("mosquitto did not start for the drain: {e}"));
        }
    }
    progress("publishing over: ", Instant::now());
    let drain_start = Instant::now();
    // Until the device has every PUBACK and the cloud every acknowledged message; given up
    // after --drain, or sooner when nothing moved for DRAIN_STALL (a stall: the verdict says
    // how many are missing, and the runtime's status below whether they wait in its spool).
    let mut last_move = (Instant::now(), 0u64, 0usize);
    let drain_done = wait_for(set.drain, || {
        let (pending, acked, missing) = {
            let s = lock(&device.state);
            // Device, then cloud: the cloud thread never takes the device's lock.
            let missing = s.acked.count_not_in(&lock(&cloud.seen));
            (s.pending.len(), s.acked.len(), missing)
        };
        let arrivals = lock(&cloud.arrivals).len();
        if pending == 0 && missing == 0 {
            return Some(true);
        }
        if (acked, arrivals) != (last_move.1, last_move.2) {
            last_move = (Instant::now(), acked, arrivals);
        }
        (last_move.0.elapsed() > DRAIN_STALL).then_some(false)
    });
    if drain_done == Some(true) {
        // A moment for copies still on their way (a resend in flight): duplicates, not loss.
        std::thread::sleep(Duration::from_secs(1));
    } else {
        println!(
            "[{:>7.1} s] the drain ended without delivering everything: {}",
            at(Instant::now()),
            if drain_done.is_some() {
                format!("nothing moved for {DRAIN_STALL:?}")
            } else {
                format!("--drain {} s passed", set.drain.as_secs())
            }
        );
    }
    let drained = drain_start.elapsed();
    let link = core
        .status()
        .map_or(Value::Null, |doc| doc["cloudLink"].clone());
    lock(&device.state).stop = true;
    device.wake.notify_all();
    cloud.stop.store(true, Ordering::Relaxed);
    let _ = device_thread.join();
    let _ = cloud_thread.join();
    progress("drained: ", Instant::now());
    let runtime_log = core.log();
    drop(core);
    drop(broker);

    // The verdict.
    let s = lock(&device.state);
    let arrivals = lock(&cloud.arrivals);
    let out: Outcome = tally(s.next, &s.acked, &arrivals);
    let unacked = s.pending.len();
    let duration = published.as_secs_f64().max(1e-9);
    let achieved = out.acknowledged as f64 / duration;
    println!();
    println!("| rate msg/s | sent | acknowledged | received | lost | duplicated | reordered | kills | broker stops | duration s | achieved msg/s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | **{}** | {} | {} | {} | {} | {:.0} | {:.0} |",
        set.rate,
        out.sent,
        out.acknowledged,
        out.received,
        out.lost,
        out.duplicated,
        out.reordered,
        kills,
        stops,
        duration,
        achieved
    );
    println!();
    // Keeping up: at least 99 % of the rate acknowledged over the run (a restart costs a
    // fraction of a second, which the device then catches up), less than a second of messages
    // behind its schedule when publishing ended (a kill just before the end costs a fraction
    // of that), and what the cloud had not yet received then delivered by the drain. The
    // cloud's lag at that moment depends on when the last broker outage ended, so it is
    // shown, not judged.
    let kept_up =
        achieved >= 0.99 * set.rate && (behind as f64) < set.rate && drain_done == Some(true);
    println!(
        "- kept up: {} ({:.1} % of the rate acknowledged; when publishing ended the device was {behind} messages behind its schedule ({:.2} s of its rate; {most_behind} at most during the run) and the cloud {cloud_behind} behind the acknowledgements ({:.2} s), delivered by the drain in {:.1} s)",
        if kept_up { "yes" } else { "no" },
        100.0 * achieved / set.rate,
        behind as f64 / set.rate,
        cloud_behind as f64 / set.rate,
        drained.as_secs_f64()
    );
    println!(
        "- device: {} connections, {} messages sent again after a reconnect, {} unacknowledged after the drain, {} stalls (no PUBACK or a blocked write for {} s), longest wait for a PUBACK {:.2} s, {} PUBACKs for unknown ids",
        s.connects,
        s.resent,
        unacked,
        s.ack_timeouts,
        ACK_TIMEOUT.as_secs(),
        s.longest_wait.as_secs_f64(),
        s.unknown_acks
    );
    println!(
        "- cloud side: {} arrivals, {} late first arrivals, {} numbers never sent, {} unparsable, {} connections",
        arrivals.len(),
        out.late,
        out.unexpected,
        cloud.unparsable.load(Ordering::Relaxed),
        cloud.connects.load(Ordering::Relaxed)
    );
    restart_ms.sort_unstable();
    println!(
        "- runtime: {kills} kill -9s, up again after median {} ms (max {} ms); {crashes} exits by itself; broker: {stops} stops ({unclean_stops} needed SIGKILL)",
        restart_ms.get(restart_ms.len() / 2).copied().unwrap_or(0),
        restart_ms.last().copied().unwrap_or(0)
    );
    println!("- the runtime's cloud link after the drain (evergreen status): {link}");
    if out.lost > 0 {
        println!(
            "- LOST (acknowledged, never received), first: {:?}",
            first_lost(out.sent, &s.acked, &arrivals, 20)
        );
        if let Some(spooled) = link["spooled"].as_u64().filter(|&n| n > 0) {
            println!(
                "  ({spooled} messages were still in the runtime's spool when the soak stopped: undelivered in time rather than dropped)"
            );
        }
    }
    let summary = log_summary(&runtime_log);
    if !summary.is_empty() {
        println!("- runtime log and its rotated files, WARN/ERROR lines by kind (digits as #):");
        for (n, kind) in summary.iter().take(12) {
            println!("  {n:>7} {kind}");
        }
    }
    if let Some(f) = &failure {
        println!("- FAILED: {f}");
    }
    if cli.keep {
        let kept = work.keep();
        println!("- kept: {}", kept.display());
    }
    let ok = out.lost == 0 && unacked == 0 && out.unexpected == 0 && failure.is_none();
    println!("verdict: {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}
