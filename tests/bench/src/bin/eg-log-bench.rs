//! `eg-log-bench`: routed traffic while a component logs at full speed and the log disk is slow
//! (issue 28), for this build and, with `--compare`, another one in the same run.
//!
//! Each case starts `evergreen run` on a temporary root whose `var/log` is either a plain
//! directory or a `slowfs` mount (`tests/src/slowfs.py`: FUSE passthrough whose `write()` sleeps
//! the given milliseconds, one write at a time, like a slow SD card). The group has four
//! devices on the plain MQTT listener, the `MessageLog` connector and an `eg-fn echo` function:
//!
//! ```text
//! flood        --bench/flood-->  MessageLog                 (one log line per message)
//! pub-device   --bench/d2d---->  meter-sub                  ("device": router, MQTT threads)
//! pub-function --bench/fn----->  echo --echo/bench/fn--> meter-sub
//!                                                           ("function": the actors' thread)
//! ```
//!
//! Once both measured routes carry a message, `flood` publishes QoS 0 as fast as the connection
//! takes it, so MessageLog logs at full speed; after `--warmup-ms`, each route's publisher sends
//! `--count` QoS 1 messages (at most `--window` unacknowledged), one route after the other, and
//! `meter-sub` stamps their arrival. Every wait is bounded: a route that stalls ends at `--route-timeout-secs` and shows
//! what arrived. Then the flood stops, MessageLog's flood lines are counted in its files (read
//! from the backing directory, not through the slow mount), `evergreen status --json` is asked
//! (within 10 s: the control socket is served on the actors' thread too) and the runtime is
//! stopped (SIGTERM, SIGKILL after 30 s) and the mount removed. It reports and asserts nothing.
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench
//! target/release/eg-log-bench [--disks plain,2,20] [--compare /path/to/base/evergreen]
//! ```

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use evergreen_bench::mqtt::Incoming;
use evergreen_bench::mqtt::Version;
use evergreen_bench::mqtt_bench::client::Conn;
use evergreen_bench::mqtt_bench::table::{thousands, Table};
use evergreen_bench::mqtt_bench::tally::{percentiles, Stamp};
use serde_json::{json, Value};

const ABOUT: &str = "Routed MQTT traffic while MessageLog logs a flood to a fast or slow disk.";

const REGION: &str = "us-east-1";
const MESSAGE_LOG: &str = "arn:aws:greengrass:us-east-1::/connectors/MessageLog/versions/1";
/// Relative to the log root.
const MESSAGE_LOG_FILE: &str = "user/us-east-1/aws/MessageLog.log";
/// What MessageLog writes for each flood message (`topic=<topic> source=…`).
const FLOOD_MARK: &str = "topic=bench/flood ";
/// The measured routes' topics out of their publisher and into meter-sub: device, function.
const ROUTES: [(&str, &str); 2] = [("bench/d2d", "bench/d2d"), ("bench/fn", "echo/bench/fn")];
/// Publisher index in the stamp of the priming messages, which the measures ignore.
const PRIMER: u32 = 99;
/// Starting the runtime, mounting slowfs, priming a route, answering status: far above what
/// they take on a working machine, so they only end a wait on something stuck.
const START_LIMIT: Duration = Duration::from_secs(30);
const STATUS_LIMIT: Duration = Duration::from_secs(10);
const STOP_LIMIT: Duration = Duration::from_secs(30);
/// Flood packets written per write(2): enough to keep the server's reader busy.
const FLOOD_BATCH: usize = 64;

/// A log disk: the root's own directory, or slowfs with this write delay in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Disk {
    Plain,
    Slow(f64),
}

impl Disk {
    fn parse(s: &str) -> Result<Disk, String> {
        if s == "plain" {
            return Ok(Disk::Plain);
        }
        match s.trim_end_matches("ms").parse::<f64>() {
            Ok(ms) if (0.0..=10_000.0).contains(&ms) => Ok(Disk::Slow(ms)),
            _ => Err(format!(
                "{s}: `plain` or slowfs's write delay in ms (0 to 10000)"
            )),
        }
    }

    fn label(self) -> String {
        match self {
            Disk::Plain => "plain dir".into(),
            Disk::Slow(ms) => format!("slowfs {ms} ms"),
        }
    }
}

#[derive(Debug, Parser)]
#[command(name = "eg-log-bench", about = ABOUT, after_help = format!("Build: {}", evergreen_bench::BUILD))]
struct Cli {
    /// The `evergreen` binary under test [default: the one next to this bench].
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Another `evergreen` binary (say the build before a change), run case by case after this
    /// build's, alternating.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Log disks, in order: `plain` (a directory of the temporary root) or slowfs's write delay
    /// in ms (`0` is slowfs without delay: the cost of FUSE alone).
    #[arg(long, value_delimiter = ',', default_value = "plain,2,20", value_parser = Disk::parse)]
    disks: Vec<Disk>,
    /// Measured QoS 1 messages per route.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    count: u32,
    /// Unacknowledged QoS 1 messages the measuring publisher allows itself.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1000))]
    window: u16,
    /// Milliseconds of flood before the first measured message.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    warmup_ms: u64,
    /// Longest a measured route may take; what has not arrived by then is counted as lost.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    route_timeout_secs: u64,
    /// Times every case is run (the binaries alternate within each round).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// The Lambda logger's `Space` in KB (MessageLog's log): large by default so the flood
    /// lines are not rotated away before they are counted.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(16..))]
    space_kb: u64,
    /// Payload bytes of every message (at least 16, the stamp).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(16..=65536))]
    payload: u32,
    /// slowfs.py [default: tests/src/slowfs.py of the source tree this bench was built from].
    #[arg(long)]
    slowfs: Option<PathBuf>,
    /// The Python that runs slowfs.py (it needs fusepy).
    #[arg(long, default_value = "python3")]
    python: PathBuf,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eg-log-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What every case needs besides its binary and disk.
#[derive(Debug)]
struct Settings {
    count: u32,
    window: u16,
    warmup: Duration,
    route_timeout: Duration,
    space_kb: u64,
    payload: usize,
    slowfs: PathBuf,
    python: PathBuf,
    eg_fn: PathBuf,
}

fn run(cli: Cli) -> Result<(), String> {
    let ours = match &cli.binary {
        Some(bin) if bin.is_file() => bin.clone(),
        Some(bin) => return Err(format!("--binary {}: no such file", bin.display())),
        None => evergreen_bench::require_bin("evergreen")?,
    };
    let eg_fn = evergreen_bench::require_bin("eg-fn")?;
    let mut binaries = vec![("this", ours)];
    if let Some(base) = &cli.compare {
        if !base.is_file() {
            return Err(format!("--compare {}: no such file", base.display()));
        }
        binaries.push(("compare", base.clone()));
    }
    let slowfs = cli
        .slowfs
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/slowfs.py"));
    if cli.disks.iter().any(|d| matches!(d, Disk::Slow(_))) {
        check_slowfs(&cli.python, &slowfs)?;
    }
    let settings = Settings {
        count: cli.count,
        window: cli.window,
        warmup: Duration::from_millis(cli.warmup_ms),
        route_timeout: Duration::from_secs(cli.route_timeout_secs),
        space_kb: cli.space_kb,
        payload: cli.payload as usize,
        slowfs,
        python: cli.python.clone(),
        eg_fn,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    for (label, bin) in &binaries {
        println!("{label}: {} ({})", bin.display(), version(bin));
    }
    println!(
        "{} QoS 1 messages per route, window {}, {} B payloads, {} ms of flood first, routes end after {} s",
        cli.count, cli.window, cli.payload, cli.warmup_ms, cli.route_timeout_secs
    );
    let mut table = Table::new(
        "Routed traffic while MessageLog logs a QoS 0 flood",
        "disk / binary",
        &[
            "device msg/s",
            "p50 ms",
            "p99 ms",
            "arrived",
            "function msg/s",
            "p50 ms",
            "p99 ms",
            "arrived",
            "flood sent/s",
            "ML lines",
            "ML lines/s",
            "ML drops",
            "stop s",
        ],
    );
    let mut notes = Vec::new();
    for round in 1..=cli.rounds {
        for disk in &cli.disks {
            for (label, bin) in &binaries {
                let name = format!("{} / {label}", disk.label());
                eprintln!("eg-log-bench: round {round}: {name} ...");
                match case(&rt, bin, *disk, &settings) {
                    Ok(r) => {
                        for n in &r.notes {
                            notes.push(format!("{name} (round {round}): {n}"));
                        }
                        table.row(&name, r.cells(settings.count));
                    }
                    Err(e) => {
                        notes.push(format!("{name} (round {round}): failed: {e}"));
                        table.row(&name, vec!["failed".into()]);
                    }
                }
            }
        }
    }
    print!("{}", table.render());
    println!(
        "\ndevice: pub-device -> meter-sub; function: pub-function -> echo function -> meter-sub. \
         msg/s: distinct arrivals / (last arrival - first send); p50/p99: send to arrival; \
         arrived: distinct arrivals of {} (a route still short at its timeout stops there). \
         ML lines: flood lines in MessageLog's files when the flood stopped; ML drops: MessageLog's \
         router drops (inbox full) from `evergreen status` (`-`: see the notes). \
         stop s: SIGTERM to exit.",
        settings.count
    );
    if !notes.is_empty() {
        println!();
        for n in notes {
            println!("- {n}");
        }
    }
    Ok(())
}

/// `bin --version`'s first line, or why not.
fn version(bin: &Path) -> String {
    match Command::new(bin).arg("--version").output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        Err(e) => format!("cannot run: {e}"),
    }
}

/// slowfs.py exists, its Python has fusepy, and /dev/fuse is there.
fn check_slowfs(python: &Path, slowfs: &Path) -> Result<(), String> {
    if !slowfs.is_file() {
        return Err(format!(
            "{}: no such file (pass --slowfs PATH)",
            slowfs.display()
        ));
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing: the slow disk needs FUSE".into());
    }
    let ok = Command::new(python)
        .args(["-c", "import fuse"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(format!(
            "{} cannot import fuse: `pip install fusepy` and `apt-get install libfuse2 fuse3`",
            python.display()
        ));
    }
    Ok(())
}

/// One measured route.
#[derive(Debug, Default)]
struct Route {
    /// Distinct arrivals.
    arrived: u64,
    /// Arrival minus send time of each, in µs.
    latencies_us: Vec<u64>,
    /// First send to last arrival.
    span: Duration,
    /// PUBACKs the publisher got.
    acked: u64,
    timed_out: bool,
}

impl Route {
    fn cells(&mut self, count: u32) -> Vec<String> {
        let rate = if self.span.is_zero() {
            0
        } else {
            (self.arrived as f64 / self.span.as_secs_f64()) as u64
        };
        let ms = |us: u64| format!("{:.1}", us as f64 / 1000.0);
        let (p50, p99) = match percentiles(&mut self.latencies_us) {
            Some([p50, _, p99]) => (ms(p50), ms(p99)),
            None => ("-".into(), "-".into()),
        };
        let arrived = if self.arrived == u64::from(count) {
            thousands(self.arrived)
        } else {
            format!("{} of {}", thousands(self.arrived), thousands(count.into()))
        };
        vec![thousands(rate), p50, p99, arrived]
    }
}

/// What one case measured.
#[derive(Debug, Default)]
struct CaseResult {
    device: Route,
    function: Route,
    flood_sent: u64,
    flood_span: Duration,
    lines: u64,
    /// MessageLog's drops from status, if it answered.
    drops: Option<u64>,
    stop: Option<Duration>,
    notes: Vec<String>,
}

impl CaseResult {
    fn cells(mut self, count: u32) -> Vec<String> {
        let per_sec = |n: u64| {
            if self.flood_span.is_zero() {
                "-".to_string()
            } else {
                thousands((n as f64 / self.flood_span.as_secs_f64()) as u64)
            }
        };
        let mut cells = self.device.cells(count);
        cells.extend(self.function.cells(count));
        cells.push(per_sec(self.flood_sent));
        cells.push(thousands(self.lines));
        cells.push(per_sec(self.lines));
        cells.push(self.drops.map_or("-".into(), thousands));
        cells.push(self.stop.map_or(format!(">{}", STOP_LIMIT.as_secs()), |d| {
            format!("{:.2}", d.as_secs_f64())
        }));
        cells
    }
}

/// A slowfs mount, unmounted when dropped (`fusermount -u`, lazily if busy).
struct Mount {
    point: PathBuf,
    child: Child,
}

impl Mount {
    fn start(
        s: &Settings,
        backing: &Path,
        point: &Path,
        delay_ms: f64,
        log: &Path,
    ) -> Result<Mount, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&s.python)
            .arg(&s.slowfs)
            .arg(backing)
            .arg(point)
            .arg("--write-delay-ms")
            .arg(delay_ms.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", s.slowfs.display()))?;
        let mut mount = Mount {
            point: point.to_path_buf(),
            child,
        };
        let deadline = Instant::now() + START_LIMIT;
        while !is_mounted(point) {
            if let Ok(Some(status)) = mount.child.try_wait() {
                return Err(format!(
                    "slowfs exited ({status}) before mounting: {}",
                    std::fs::read_to_string(log).unwrap_or_default().trim()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("slowfs did not mount within {START_LIMIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(mount)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let unmount = |lazy: bool| {
            let mut cmd = Command::new("fusermount");
            cmd.arg(if lazy { "-uz" } else { "-u" }).arg(&self.point);
            cmd.stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !unmount(false) {
            unmount(true);
        }
        // slowfs exits once unmounted; a stuck one is killed after 5 s.
        for _ in 0..250 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `point` is a mount point now (from /proc/self/mountinfo).
fn is_mounted(point: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let point = point.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| p == point)
}

/// A running `evergreen run`, stopped when dropped if the case has not stopped it.
struct Running {
    child: Child,
}

impl Running {
    /// SIGTERM, then SIGKILL after [`STOP_LIMIT`]; how long it took to exit after SIGTERM
    /// (`None`: killed). A runtime that had already exited is a note.
    fn stop(&mut self, notes: &mut Vec<String>) -> Option<Duration> {
        if let Ok(Some(status)) = self.child.try_wait() {
            notes.push(format!(
                "the runtime had exited ({status}) before it was stopped"
            ));
            return Some(Duration::ZERO);
        }
        let started = Instant::now();
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        while started.elapsed() < STOP_LIMIT {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        notes.push(format!(
            "the runtime was killed: not stopped {STOP_LIMIT:?} after SIGTERM"
        ));
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop(&mut Vec::new());
    }
}

fn thing_arn(name: &str) -> String {
    format!("arn:aws:iot:{REGION}:123456789012:thing/{name}")
}

/// The case's group: see the module comment.
fn group(s: &Settings) -> Value {
    let echo = evergreen_tests::fn_arn("echo");
    let mut echo_fn = evergreen_tests::function("echo", "echo echo");
    echo_fn["FunctionConfiguration"]["Executable"] = json!(s.eg_fn);
    let sub = evergreen_tests::sub;
    let mut g = evergreen_tests::group(
        vec![echo_fn],
        vec![
            sub("flood", &thing_arn("flood"), "bench/flood", MESSAGE_LOG),
            sub(
                "device",
                &thing_arn("pub-device"),
                "bench/d2d",
                &thing_arn("meter-sub"),
            ),
            sub("fn-in", &thing_arn("pub-function"), "bench/fn", &echo),
            sub("fn-out", &echo, "echo/bench/fn", &thing_arn("meter-sub")),
        ],
    );
    g["ConnectorDefinitionVersion"] = json!({ "Connectors": [
        { "Id": "ml", "ConnectorArn": MESSAGE_LOG, "Parameters": {} }
    ]});
    let devices: Vec<Value> = ["flood", "pub-device", "pub-function", "meter-sub"]
        .iter()
        .map(|d| json!({ "Id": d, "ThingArn": thing_arn(d), "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/abc123" }))
        .collect();
    g["DeviceDefinitionVersion"] = json!({ "Devices": devices });
    // INFO, as in production; the runtime's log on the same disk, as it would be.
    g["LoggerDefinitionVersion"] = json!({ "Loggers": [
        { "Id": "sys", "Component": "GreengrassSystem", "Level": "INFO", "Type": "FileSystem", "Space": 16384 },
        { "Id": "user", "Component": "Lambda", "Level": "INFO", "Type": "FileSystem", "Space": s.space_kb }
    ]});
    g
}

/// One case: `bin` with its log root on `disk`.
fn case(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    disk: Disk,
    s: &Settings,
) -> Result<CaseResult, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let root = dir.path().join("root");
    let log_root = root.join("var/log");
    std::fs::create_dir_all(&log_root).map_err(|e| format!("{}: {e}", log_root.display()))?;
    // The files as the disk holds them: counted there, not through the slow mount.
    let (files, mount) = match disk {
        Disk::Plain => (log_root.clone(), None),
        Disk::Slow(ms) => {
            let backing = dir.path().join("backing");
            std::fs::create_dir(&backing).map_err(|e| format!("{}: {e}", backing.display()))?;
            let mount = Mount::start(s, &backing, &log_root, ms, &dir.path().join("slowfs.log"))?;
            (backing, Some(mount))
        }
    };
    let config = dir.path().join("config.json");
    let mut cfg = evergreen_bench::bench_config(&root)?;
    evergreen_tests::merge(
        &mut cfg,
        &json!({ "evergreen": { "listeners": { "mqttPlain": { "enabled": true, "port": 0 } } } }),
    );
    let group_file = dir.path().join("group.json");
    std::fs::write(&config, cfg.to_string()).map_err(|e| format!("{}: {e}", config.display()))?;
    std::fs::write(&group_file, group(s).to_string())
        .map_err(|e| format!("{}: {e}", group_file.display()))?;
    let stderr_file = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_file).map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--group")
        .arg(&group_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let mut running = Running { child };
    let result = listener(&mut running, &root, &stderr_file)
        .and_then(|addr| rt.block_on(measure(addr, s, &files)));
    let mut result = match result {
        Ok(r) => r,
        Err(e) => {
            drop(running);
            drop(mount);
            return Err(e);
        }
    };
    result.drops = match status_drops(bin, &config, &mut result.notes) {
        Ok(n) => Some(n),
        Err(why) => {
            result.notes.push(why);
            None
        }
    };
    result.stop = running.stop(&mut result.notes);
    // Lines written after the flood stopped are not counted; the runtime is gone before the
    // mount is.
    drop(running);
    drop(mount);
    Ok(result)
}

/// The plain MQTT listener's address, once the runtime has written it.
fn listener(running: &mut Running, root: &Path, stderr: &Path) -> Result<SocketAddr, String> {
    let file = root.join("run/mqtt-listeners.json");
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(format!(
                "`evergreen run` exited at start ({status}): {}",
                std::fs::read_to_string(stderr).unwrap_or_default().trim()
            ));
        }
        let addr = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|doc| doc["plain"].as_str()?.parse::<SocketAddr>().ok());
        if let Some(addr) = addr {
            return Ok(addr);
        }
        if Instant::now() > deadline {
            return Err(format!("no plain MQTT listener within {START_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// MessageLog's router drops from `evergreen status --json` (its received count and the echo
/// function's drops go to `notes`), or why there are none: no answer within [`STATUS_LIMIT`]
/// (the control socket is served on the actors' thread), or an answer without them.
fn status_drops(bin: &Path, config: &Path, notes: &mut Vec<String>) -> Result<u64, String> {
    let mut child = Command::new(bin)
        .args(["status", "--json", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run `evergreen status`: {e}"))?;
    let started = Instant::now();
    while !matches!(child.try_wait(), Ok(Some(_))) {
        if started.elapsed() > STATUS_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "`evergreen status` got no answer within {STATUS_LIMIT:?} after the flood"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    let unexpected = || format!("`evergreen status --json` named no drops for MessageLog: {out}");
    let doc: Value = serde_json::from_str(&out).map_err(|_| unexpected())?;
    let components = doc["components"].as_array().ok_or_else(unexpected)?;
    // A measured message the echo function's inbox refused is lost, not late.
    let echo = evergreen_tests::fn_arn("echo");
    if let Some(n) = components
        .iter()
        .find(|c| c["arn"] == echo.as_str())
        .and_then(|c| c["drops"].as_u64())
        .filter(|n| *n > 0)
    {
        notes.push(format!("the echo function's inbox dropped {n} messages"));
    }
    let component = components
        .iter()
        .find(|c| c["arn"] == MESSAGE_LOG)
        .ok_or_else(unexpected)?;
    if let Some(n) = component["messagesIn"].as_u64() {
        notes.push(format!(
            "MessageLog received {} flood messages",
            thousands(n)
        ));
    }
    component["drops"].as_u64().ok_or_else(unexpected)
}

/// Nanoseconds since `epoch`, the one clock of every stamp.
fn since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The clients' part of a case: prime, flood, measure both routes, stop the flood, count.
async fn measure(addr: SocketAddr, s: &Settings, files: &Path) -> Result<CaseResult, String> {
    let connect = |id: &'static str| async move {
        Conn::connect(addr, id, Version::V3, 600)
            .await
            .map_err(|e| format!("{id}: {e}"))
    };
    // One publisher per route, so a stalled route's late PUBACKs are not the next one's.
    let mut publishers = [connect("pub-device").await?, connect("pub-function").await?];
    let mut subscriber = connect("meter-sub").await?;
    for filter in ["bench/d2d", "echo/bench/fn"] {
        subscriber
            .subscribe(filter, 1)
            .await
            .map_err(|e| e.to_string())?;
    }
    let flood = connect("flood").await?;
    let epoch = Instant::now();
    // Both routes carry a message before anything is measured (the function is ready).
    for (publisher, (out, back)) in publishers.iter_mut().zip(ROUTES) {
        prime(publisher, &mut subscriber, out, back, epoch, s.payload).await?;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = tokio::spawn(flood_until(flood, stop.clone(), s.payload));
    let flood_start = Instant::now();
    tokio::time::sleep(s.warmup).await;
    let mut result = CaseResult::default();
    let [device, function] = &mut publishers;
    let (out, back) = ROUTES[0];
    result.device = measure_route(device, &mut subscriber, out, back, 0, epoch, s).await;
    let (out, back) = ROUTES[1];
    result.function = measure_route(function, &mut subscriber, out, back, 1, epoch, s).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flood_span = flood_start.elapsed();
    match flooding.await {
        Ok(Ok(sent)) => result.flood_sent = sent,
        Ok(Err(e)) => result.notes.push(format!("flood: {e}")),
        Err(e) => result.notes.push(format!("flood task: {e}")),
    }
    result.flood_span = flood_span;
    result.lines = count_lines(&files.join(MESSAGE_LOG_FILE));
    for (name, route) in [("device", &result.device), ("function", &result.function)] {
        if route.timed_out {
            result.notes.push(format!(
                "{name} route timed out after {:?}: {} arrived, {} acknowledged of {}",
                s.route_timeout, route.arrived, route.acked, s.count
            ));
        }
    }
    Ok(result)
}

/// Publishes on `out` until one message comes back on `back`, once every 500 ms, within
/// [`START_LIMIT`].
async fn prime(
    publisher: &mut Conn,
    subscriber: &mut Conn,
    out: &str,
    back: &str,
    epoch: Instant,
    size: usize,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    let mut seq = 0;
    let mut packets = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let stamp = Stamp {
            publisher: PRIMER,
            seq,
            sent_ns: since(epoch),
        };
        let mut bytes = Vec::new();
        Version::V3.publish(out, &stamp.payload(size), Some((1, false)), &mut bytes);
        publisher.write(&bytes).await.map_err(|e| e.to_string())?;
        seq += 1;
        let wait = tokio::time::Instant::now() + Duration::from_millis(500);
        loop {
            packets.clear();
            match tokio::time::timeout_at(wait, subscriber.read_some(&mut packets)).await {
                Err(_) => break,
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => return Err("meter-sub: connection closed".into()),
                Ok(Err(e)) => return Err(format!("meter-sub: {e}")),
            }
            let mut arrived = false;
            for p in &packets {
                if let Incoming::Publish {
                    topic, packet_id, ..
                } = p
                {
                    if let Some(id) = packet_id {
                        subscriber
                            .write(&evergreen_bench::mqtt::puback(*id))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    arrived |= topic == back;
                }
            }
            if arrived {
                // The publisher's PUBACKs are left unread; measure_route skips them.
                return Ok(());
            }
        }
    }
    Err(format!(
        "nothing came back on {back} within {START_LIMIT:?}"
    ))
}

/// Publishes QoS 0 on bench/flood as fast as the connection takes it until `stop`; returns how
/// many were written.
async fn flood_until(
    mut conn: Conn,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    size: usize,
) -> Result<u64, String> {
    let payload = vec![b'f'; size];
    let mut batch = Vec::new();
    for _ in 0..FLOOD_BATCH {
        Version::V3.publish("bench/flood", &payload, None, &mut batch);
    }
    let mut sent = 0;
    // A write that the server does not take within a second is retried after checking `stop`:
    // a stalled server must not keep the bench here.
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_secs(1), conn.write(&batch)).await {
            Ok(Ok(())) => sent += FLOOD_BATCH as u64,
            Ok(Err(e)) => return Err(e.to_string()),
            // The batch may be partly written: the stream is out of step, so stop here.
            Err(_) => return Ok(sent),
        }
    }
    let _ = conn.disconnect().await;
    Ok(sent)
}

/// `s.count` QoS 1 messages on `out`, at most `s.window` unacknowledged, and their arrivals on
/// `back`; both sides stop at `s.route_timeout` with what they have.
async fn measure_route(
    publisher: &mut Conn,
    subscriber: &mut Conn,
    out: &str,
    back: &str,
    index: u32,
    epoch: Instant,
    s: &Settings,
) -> Route {
    let deadline = tokio::time::Instant::now() + s.route_timeout;
    let first_send = since(epoch);
    let send = async {
        let mut acked = 0u64;
        let mut next = 0u32;
        let mut inflight = 0u16;
        let mut packets = Vec::new();
        while acked < u64::from(s.count) {
            let mut bytes = Vec::new();
            while inflight < s.window && next < s.count {
                let stamp = Stamp {
                    publisher: index,
                    seq: next,
                    sent_ns: since(epoch),
                };
                // Packet ids 2..=65535 (1 is the primer's), reused once acknowledged.
                let id = 2 + (next % 65_000) as u16;
                Version::V3.publish(
                    out,
                    &stamp.payload(s.payload),
                    Some((id, false)),
                    &mut bytes,
                );
                next += 1;
                inflight += 1;
            }
            if !bytes.is_empty() {
                match tokio::time::timeout_at(deadline, publisher.write(&bytes)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => return (acked, true),
                }
            }
            packets.clear();
            match tokio::time::timeout_at(deadline, publisher.read_some(&mut packets)).await {
                Ok(Ok(true)) => {}
                Ok(_) => break,
                Err(_) => return (acked, true),
            }
            for p in &packets {
                // Packet id 1 is the primers'.
                if matches!(p, Incoming::PubAck { packet_id } if *packet_id != 1) {
                    acked += 1;
                    inflight = inflight.saturating_sub(1);
                }
            }
        }
        (acked, false)
    };
    let receive = async {
        let mut seen = vec![false; s.count as usize];
        let mut route = Route::default();
        let mut last = first_send;
        let mut packets = Vec::new();
        while route.arrived < u64::from(s.count) {
            packets.clear();
            match tokio::time::timeout_at(deadline, subscriber.read_some(&mut packets)).await {
                Ok(Ok(true)) => {}
                Ok(_) => break,
                Err(_) => {
                    route.timed_out = true;
                    break;
                }
            }
            let now = since(epoch);
            for p in &packets {
                let Incoming::Publish {
                    topic,
                    packet_id,
                    payload,
                    ..
                } = p
                else {
                    continue;
                };
                if let Some(id) = packet_id {
                    let _ = subscriber.write(&evergreen_bench::mqtt::puback(*id)).await;
                }
                let Some(stamp) = Stamp::read(payload) else {
                    continue;
                };
                if topic != back || stamp.publisher != index {
                    continue;
                }
                if let Some(slot) = seen.get_mut(stamp.seq as usize) {
                    if !*slot {
                        *slot = true;
                        route.arrived += 1;
                        route
                            .latencies_us
                            .push(now.saturating_sub(stamp.sent_ns) / 1000);
                        last = now;
                    }
                }
            }
        }
        route.span = Duration::from_nanos(last.saturating_sub(first_send));
        route
    };
    // Each side stops at the deadline with what it has counted.
    let ((acked, send_timed_out), mut route) = tokio::join!(send, receive);
    route.acked = acked;
    route.timed_out |= send_timed_out;
    route
}

/// Flood lines in MessageLog's current and rotated files (0 where a file is missing).
fn count_lines(current: &Path) -> u64 {
    let mut files = vec![current.to_path_buf()];
    for n in 1..=3 {
        files.push(PathBuf::from(format!("{}.{n}", current.display())));
    }
    files
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).matches(FLOOD_MARK).count() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_parse() {
        assert_eq!(Disk::parse("plain"), Ok(Disk::Plain));
        assert_eq!(Disk::parse("2"), Ok(Disk::Slow(2.0)));
        assert_eq!(Disk::parse("0.5ms"), Ok(Disk::Slow(0.5)));
        assert!(Disk::parse("-1").is_err());
        assert!(Disk::parse("tmpfs").is_err());
    }

    #[test]
    fn flood_lines_are_counted_over_rotated_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = dir.path().join("MessageLog.log");
        let line = format!("[t][INFO]-(arn) {FLOOD_MARK}source=x payload=y\n");
        std::fs::write(&log, format!("{line}{line}[t][INFO]-(arn) started\n")).expect("write");
        std::fs::write(dir.path().join("MessageLog.log.2"), &line).expect("write");
        assert_eq!(count_lines(&log), 3);
        assert_eq!(count_lines(&dir.path().join("missing.log")), 0);
    }
}
