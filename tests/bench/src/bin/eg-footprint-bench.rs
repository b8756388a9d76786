//! `eg-footprint-bench`: the memory the embedded default group costs, every process counted.
//!
//! It starts `evergreen run` with no `--group` (the embedded default group: DeviceDefender in a
//! container when run as root, Heartbeat, MessageLog) on a temporary root, waits until the
//! group has run a while, and reads `VmRSS` and `Pss` from `/proc/PID/smaps_rollup` of the
//! runtime and every descendant (connectors, a container's waiter). PSS shares each page among
//! the processes mapping it, so the PSS total is what the group costs the machine; the RSS
//! total counts shared pages once per process. With `--compare OTHER_BINARY` it measures
//! another build (say the previous version) the same way, one after the other, side by side.
//! It reports and asserts nothing.
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench
//! target/release/eg-footprint-bench [--settle-secs 20] [--compare /path/to/old/evergreen]
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;

/// Memory of the embedded default group: VmRSS and PSS of every process.
#[derive(Debug, Parser)]
struct Args {
    /// Seconds the group runs before it is measured (connectors start, the first reports go out).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    settle_secs: u64,
    /// Another `evergreen` binary to measure the same way, after this build's.
    #[arg(long)]
    compare: Option<PathBuf>,
}

/// One process's figures.
#[derive(Debug)]
struct Proc {
    pid: i32,
    command: String,
    rss_kb: u64,
    pss_kb: u64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let ours = match evergreen_bench::require_bin("evergreen") {
        Ok(bin) => bin,
        Err(e) => {
            eprintln!("eg-footprint-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut binaries = vec![ours];
    binaries.extend(args.compare.clone());
    if !nix::unistd::geteuid().is_root() {
        println!("note: not root, so the default group runs without DeviceDefender (no container)");
    }
    for bin in &binaries {
        match measure(bin, Duration::from_secs(args.settle_secs)) {
            Ok(procs) => report(bin, &procs),
            Err(e) => {
                eprintln!("eg-footprint-bench: {}: {e}", bin.display());
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}

/// Runs `bin`'s default group for `settle`, measures every process, stops it.
fn measure(bin: &Path, settle: Duration) -> Result<Vec<Proc>, String> {
    let root = tempfile::tempdir().map_err(|e| format!("temporary root: {e}"))?;
    let config = root.path().join("config.json");
    let text = serde_json::to_string(&evergreen_bench::bench_config(root.path())?)
        .map_err(|e| e.to_string())?;
    std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    let mut child = Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--root")
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    std::thread::sleep(settle);
    let result = snapshot(&child);
    stop(&mut child);
    result
}

/// The runtime and all its descendants, as they are now.
fn snapshot(child: &Child) -> Result<Vec<Proc>, String> {
    let runtime = i32::try_from(child.id()).map_err(|e| e.to_string())?;
    let mut pids = vec![runtime];
    let mut next = 0;
    // Breadth first over /proc: children, their children (a container's waiter, then PID 1).
    while next < pids.len() && pids.len() < 256 {
        pids.extend(evergreen_tests::children_of(pids[next]));
        next += 1;
    }
    let procs: Vec<Proc> = pids.into_iter().filter_map(read).collect();
    if procs.is_empty() {
        return Err("the runtime exited before it was measured".into());
    }
    Ok(procs)
}

/// `Rss` and `Pss` of `pid` from smaps_rollup, or `None` if it is gone.
fn read(pid: i32) -> Option<Proc> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    Some(Proc {
        pid,
        command,
        rss_kb: field("Rss:")?,
        pss_kb: field("Pss:")?,
    })
}

/// SIGTERM, then SIGKILL if it is still there after 10 s.
fn stop(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    for _ in 0..100 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn report(bin: &Path, procs: &[Proc]) {
    println!("{}:", bin.display());
    println!("  {:>7} {:>9} {:>9}  command", "pid", "VmRSS kB", "PSS kB");
    for p in procs {
        let mut command = p.command.clone();
        command.truncate(70);
        println!("  {:>7} {:>9} {:>9}  {command}", p.pid, p.rss_kb, p.pss_kb);
    }
    let rss: u64 = procs.iter().map(|p| p.rss_kb).sum();
    let pss: u64 = procs.iter().map(|p| p.pss_kb).sum();
    println!(
        "  total: {} processes, VmRSS {rss} kB, PSS {pss} kB ({:.1} MB)",
        procs.len(),
        pss as f64 / 1024.0
    );
}
