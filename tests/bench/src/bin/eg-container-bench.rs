//! `eg-container-bench`: container start overhead, spawn to `Ready`, container vs plain exec.
//!
//! It asserts nothing (benchmarks report, tests assert). Needs root and a
//! host where `evergreen check` passes; otherwise it says why and exits 1.
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench && sudo target/release/eg-container-bench
//! ```
//!
//! `--reps R` (default 30) and `--n N` (default 1), each 1 to 100: each repetition starts a
//! fresh `evergreen run` on a new temporary root with N pinned functions
//! running `eg-fn record /dev/null`, all `NoContainer` or all
//! `GreengrassContainer` (RunAs 65534, MemorySize 16 MB), waits until all N
//! are Ready, and stops it. Modes alternate, so drift on the machine hits
//! both alike.
//!
//! What is measured is the supervisor's own figure for each start, the
//! `ready after X ms` line each component logs: from just before the
//! sandbox's spawn to the child's `Ready` frame. With the default N = 1 the
//! starts do not compete for the CPU; a larger N shows them under load. For a container that
//! includes creating the cgroup, the fork, namespaces, mounts, pivot_root
//! and the drop of privileges; for both, exec, the dynamic loader and the
//! IPC handshake. The report gives min / median / p90 / max over all
//! R × N starts of each mode, and the median difference.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use clap::Parser;
use evergreen_bench::{bench_config, require_bin};
use evergreen_tests::{fn_arn, group, wait_for};
use serde_json::{json, Value};

fn functions(eg_fn: &Path, n: usize, container: bool) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let name = format!("f{i}");
            let mut execution = json!({ "IsolationMode": "NoContainer" });
            if container {
                execution = json!({
                    "IsolationMode": "GreengrassContainer",
                    "RunAs": { "Uid": 65534, "Gid": 65534 }
                });
            }
            json!({
                "Id": name,
                "FunctionArn": fn_arn(&name),
                "FunctionConfiguration": {
                    "Executable": eg_fn,
                    "ExecArgs": "record /dev/null",
                    "Pinned": true,
                    "Timeout": 3,
                    "MemorySize": 16384,
                    "Environment": { "Execution": execution }
                }
            })
        })
        .collect()
}

/// The `ready after X ms` figures of one run.
fn one_run(bins: &Bins, n: usize, container: bool) -> Result<Vec<f64>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = dir.path().join("root");
    let mut cfg = bench_config(&root)?;
    cfg["evergreen"]["controlSocket"] = json!(dir.path().join("control.sock"));
    let mut g = group(functions(&bins.eg_fn, n, container), vec![]);
    g["LoggerDefinitionVersion"]["Loggers"][0]["Level"] = json!("INFO");
    g["LoggerDefinitionVersion"]["Loggers"][1]["Level"] = json!("INFO");
    let group_path = dir.path().join("group.json");
    let config_path = dir.path().join("config.json");
    std::fs::write(&group_path, g.to_string()).map_err(|e| e.to_string())?;
    std::fs::write(&config_path, cfg.to_string()).map_err(|e| e.to_string())?;
    let mut child = Command::new(&bins.evergreen)
        .args(["run", "--config"])
        .arg(&config_path)
        .arg("--group")
        .arg(&group_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let log = root.join("var/log/system/runtime.log");
    let figures = wait_for(Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).ok()?;
        let figures: Vec<f64> = text
            .lines()
            .filter_map(|l| l.split("ready after ").nth(1))
            .filter_map(|rest| rest.trim_end_matches(" ms").trim().parse().ok())
            .collect();
        (figures.len() >= n).then_some(figures)
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0)),
        nix::sys::signal::Signal::SIGTERM,
    );
    let stopped = wait_for(Duration::from_secs(20), || child.try_wait().ok().flatten());
    if stopped.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    figures.ok_or_else(|| {
        format!(
            "not all {n} components were Ready within 30 s (see {})",
            log.display()
        )
    })
}

fn stats(label: &str, v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label:<22} starts={:<4} min={:>7.2} median={:>7.2} p90={:>7.2} max={:>7.2} ms",
        v.len(),
        at(0.0),
        at(0.5),
        at(0.9),
        at(1.0)
    );
    at(0.5)
}

/// Container start overhead: spawn to `Ready`, container vs plain exec.
#[derive(Debug, Parser)]
#[command(
    name = "eg-container-bench",
    after_help = "Build: cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench\n\
                  Needs root and a host where `evergreen check` passes."
)]
struct Cli {
    /// Repetitions of each mode (1 to 100).
    #[arg(long, default_value_t = 30, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100))]
    reps: usize,
    /// Functions per runtime (1 to 100).
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100))]
    n: usize,
}

/// The programs a run starts.
#[derive(Debug)]
struct Bins {
    evergreen: PathBuf,
    eg_fn: PathBuf,
}

fn main() -> ExitCode {
    let Cli { reps, n } = Cli::parse();
    let bins = match require_bin("evergreen").and_then(|evergreen| {
        Ok(Bins {
            evergreen,
            eg_fn: require_bin("eg-fn")?,
        })
    }) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("eg-container-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let check = Command::new(&bins.evergreen)
        .args(["check", "--container"])
        .output();
    if !check.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("eg-container-bench: container mode cannot run here (run as root; see `evergreen check --container`)");
        return ExitCode::FAILURE;
    }
    println!(
        "container start overhead: {reps} runs x {n} functions per mode, `ready after` per start"
    );
    let (mut plain, mut container) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        for (is_container, into) in [(false, &mut plain), (true, &mut container)] {
            match one_run(&bins, n, is_container) {
                Ok(f) => into.extend(f),
                Err(e) => {
                    eprintln!("eg-container-bench: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let p = stats("NoContainer", &mut plain);
    let c = stats("GreengrassContainer", &mut container);
    println!(
        "median overhead of a container start: {:.2} ms ({:.1}x plain exec)",
        c - p,
        c / p
    );
    ExitCode::SUCCESS
}
