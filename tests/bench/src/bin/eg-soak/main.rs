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

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use evergreen_bench::mosquitto::Mosquitto;
use evergreen_bench::require_bin;
use evergreen_bench::soak::{first_lost, tally, Outcome, Rng};
use evergreen_tests::{free_port, wait_for};
use serde_json::Value;

mod cloud;
mod connect;
mod device;
mod runtime;

use cloud::CloudSide;
use device::Device;
use runtime::{log_summary, write_runtime_files, Core};

pub(crate) const DEVICE: &str = "soak-device";
pub(crate) const TOPIC: &str = "soak/dev";

/// No PUBACK for this long while messages wait for one: the device gives up on the connection,
/// as a client library's operation timeout would. The runtime acknowledges after its spool's
/// commit, which takes milliseconds whatever the upstream broker does, so this is a stall.
pub(crate) const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Reconnect delays of both clients: short, so the figures measure the runtime rather than a
/// client's patience (paho's default starts at 1 s).
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The clients' keep-alive, and how long they stay silent before a PINGREQ.
pub(crate) const KEEP_ALIVE_SECS: u16 = 30;
pub(crate) const PING_AFTER: Duration = Duration::from_secs(10);

/// A connection attempt, and a CONNACK, take at most this.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The drain gives up when neither a PUBACK nor an arrival came for this long.
const DRAIN_STALL: Duration = Duration::from_secs(30);

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

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a few field writes: a panic elsewhere leaves them
    // consistent, and the soak must still report.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
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

    let mut core = Core::new(evergreen, dir.clone());
    let first_start = core.start_retrying()?;
    println!("runtime up in {} ms", first_start.as_millis());

    let device = Arc::new(Device::new(
        loopback(device_port),
        set.rate,
        set.window,
        set.payload,
        started,
    ));
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
