//! `eg-deploy-bench`: cold start and deployment timings of the real
//! `evergreen` binary, with pinned `NoContainer` functions running
//! `eg-fn record /dev/null`. It asserts nothing (benchmarks report, tests
//! assert); a run that fails is reported and makes the exit status 1.
//!
//! Run (release build, all binaries from the same profile):
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench && target/release/eg-deploy-bench
//! ```
//!
//! `target/release/eg-deploy-bench --reps 3` repeats each measurement 3
//! times instead of 5 (1 to 50).
//!
//! # What it measures
//!
//! Every repetition starts a fresh `evergreen run` on a new temporary root,
//! with the tests' configuration on free ports (`bench_config`: no fixed
//! Lambda endpoint port), `controlSocket` in the temporary directory and
//! `logToStderr: false`, and the loggers at `INFO`; it stops the runtime
//! with SIGTERM and waits for it (bounded) before the next one. Times are min / median / max over the repetitions, in ms.
//!
//! 1. **Cold start**, N = 10 (the design target: all Ready in under 300 ms)
//!    and N = 20 functions, three ways:
//!    - *spawn → status all Running*: from spawning `evergreen run --group`
//!      to the return of the first `evergreen status --json` (polled every
//!      5 ms, bounded by 30 s) that shows all N `Running`. It includes the
//!      start-up of one `evergreen status` process (the CLI overhead) and up
//!      to one poll interval.
//!    - *spawn → last ready (log clock)*: from the wall-clock time of the
//!      spawn to the timestamp of the last `ready after` line in
//!      `system/runtime.log` (millisecond resolution, no CLI in it).
//!    - *first started → last ready (in log)*: from the first `started pid`
//!      line to the last `ready after` line, both from the log.
//! 2. **Full deployment**: the runtime runs an unrelated 1-function group;
//!    `evergreen deploy FILE` of a 20-function group (the CLI stores the
//!    version, the runtime stops the one and starts the 20, the CLI waits for
//!    `Success`), wall clock from spawning the command to its exit; also the
//!    in-log span of that deployment's `started pid` … `ready after` lines,
//!    and the runtime's own `deployment …: deploying` → `… succeeded` span
//!    (the version loaded and checked, the diff applied, the wait for Ready:
//!    the runtime checks readiness by polling, so this includes up to one
//!    of its poll intervals).
//! 3. **One-component change**: with those 20 running, `evergreen deploy`
//!    of a version where only one function's `Environment.Variables`
//!    differ; wall clock and in-log span as above, and whether the other 19
//!    kept their PIDs (printed, not asserted).
//! 4. **Memory** with 20 components: `VmRSS` of the runtime's pid and the
//!    mean `VmRSS` of its 20 children, at the end of the cold start with
//!    N = 20 and after the two deployments.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use evergreen_bench::{bench_config, require_bin};
use evergreen_tests::{fn_arn, group, vm_rss_kb, wait_for};
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error>;

/// Default repetitions of each measurement.
const DEFAULT_REPS: usize = 5;
/// Interval between two `evergreen status --json` polls.
const POLL: Duration = Duration::from_millis(5);
/// Bound of every wait for components to be Running.
const LIMIT: Duration = Duration::from_secs(30);
/// Bound of the wait for a runtime to exit after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(15);
/// The function whose variable the one-component change modifies.
const CHANGED: usize = 7;

/// Cold start and deployment timings of the real `evergreen` binary.
#[derive(Debug, Parser)]
#[command(
    name = "eg-deploy-bench",
    after_help = "Build: cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench"
)]
struct Cli {
    /// Repetitions of each measurement (1 to 50; 1 is the quickest run).
    #[arg(long, default_value_t = DEFAULT_REPS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=50))]
    reps: usize,
}

fn main() -> ExitCode {
    let reps = Cli::parse().reps;
    match driver(reps) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eg-deploy-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Binaries, groups, the runtime under test
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Bins {
    evergreen: PathBuf,
    eg_fn: PathBuf,
}

/// Name of the `i`th benchmark function.
fn fn_name(i: usize) -> String {
    format!("f{i:02}")
}

/// A pinned NoContainer function running `eg-fn record /dev/null` with
/// variable `V`.
fn bench_function(eg_fn: &Path, name: &str, v: &str) -> Value {
    json!({
        "Id": name,
        "FunctionArn": fn_arn(name),
        "FunctionConfiguration": {
            "Executable": eg_fn,
            "ExecArgs": "record /dev/null",
            "Pinned": true,
            "Timeout": 3,
            "Environment": {
                "Variables": { "V": v },
                "Execution": { "IsolationMode": "NoContainer" }
            }
        }
    })
}

/// A group of `names`, every one with `V = 1` except `changed` (if any),
/// which gets `V = 2`; loggers at INFO.
fn bench_group(eg_fn: &Path, names: &[String], changed: Option<&str>) -> Value {
    let functions = names
        .iter()
        .map(|n| {
            let v = if changed == Some(n.as_str()) {
                "2"
            } else {
                "1"
            };
            bench_function(eg_fn, n, v)
        })
        .collect();
    let mut g = group(functions, vec![]);
    if let Some(loggers) = g["LoggerDefinitionVersion"]["Loggers"].as_array_mut() {
        for logger in loggers {
            logger["Level"] = json!("INFO");
        }
    }
    g
}

/// One component of `evergreen status --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Comp {
    name: String,
    state: String,
    pid: u64,
}

/// A running `evergreen run`, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
struct Rt {
    child: Child,
    dir: PathBuf,
    config: PathBuf,
    evergreen: PathBuf,
    spawned: Instant,
    spawned_wall_ms: i64,
}

impl Rt {
    /// Writes `group` and a configuration into `dir` and starts the runtime.
    fn start(bins: &Bins, dir: &Path, group: &Value) -> Result<Rt, BoxError> {
        std::fs::create_dir_all(dir)?;
        let root = dir.join("root");
        let group_path = dir.join("group.json");
        let config = dir.join("config.json");
        let mut cfg = bench_config(&root)?;
        cfg["evergreen"]["controlSocket"] = json!(dir.join("control.sock"));
        cfg["evergreen"]["logToStderr"] = json!(false);
        std::fs::write(&group_path, group.to_string())?;
        std::fs::write(&config, cfg.to_string())?;
        let stderr = std::fs::File::create(dir.join("evergreen.stderr"))?;
        let spawned_wall_ms = wall_ms();
        let spawned = Instant::now();
        let child = Command::new(&bins.evergreen)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--group")
            .arg(&group_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        Ok(Rt {
            child,
            dir: dir.to_path_buf(),
            config,
            evergreen: bins.evergreen.clone(),
            spawned,
            spawned_wall_ms,
        })
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }

    fn runtime_log(&self) -> PathBuf {
        self.dir.join("root/var/log/system/runtime.log")
    }

    /// Runs `evergreen ARGS --config <config>`.
    fn cli(&self, args: &[&str]) -> Result<Output, BoxError> {
        Ok(Command::new(&self.evergreen)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()?)
    }

    /// The components of `evergreen status --json`, or `None` if no runtime
    /// answered.
    fn status(&self) -> Option<Vec<Comp>> {
        let out = self.cli(&["status", "--json"]).ok()?;
        let doc: Value = serde_json::from_slice(&out.stdout).ok()?;
        doc["components"]
            .as_array()?
            .iter()
            .map(|c| {
                Some(Comp {
                    name: c["name"].as_str()?.to_string(),
                    state: c["state"].as_str()?.to_string(),
                    pid: c["pid"].as_u64().unwrap_or(0),
                })
            })
            .collect()
    }

    /// Polls status every [`POLL`] until exactly `names` are all Running;
    /// returns the instant that status call returned, and the components.
    fn wait_running(&mut self, names: &[String]) -> Result<(Instant, Vec<Comp>), BoxError> {
        let deadline = Instant::now() + LIMIT;
        // Bounded in count too: a status call takes at least a few ms.
        let max_polls = LIMIT.as_millis() / POLL.as_millis() + 1;
        let mut last = None;
        for _ in 0..max_polls {
            if let Ok(Some(exit)) = self.child.try_wait() {
                return Err(format!("evergreen exited ({exit}){}", self.explain()).into());
            }
            if let Some(comps) = self.status() {
                let at = Instant::now();
                let all = comps.len() == names.len()
                    && names
                        .iter()
                        .all(|n| comps.iter().any(|c| &c.name == n && c.state == "Running"));
                if all {
                    return Ok((at, comps));
                }
                last = Some(comps);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        Err(format!(
            "{} components not all Running within {} s; last status: {last:?}{}",
            names.len(),
            LIMIT.as_secs(),
            self.explain()
        )
        .into())
    }

    /// The end of the runtime's stderr and log, for an error message.
    fn explain(&self) -> String {
        format!(
            "\nevergreen stderr:\n{}\nruntime log:\n{}",
            tail(&self.dir.join("evergreen.stderr"), 10),
            tail(&self.runtime_log(), 20)
        )
    }

    /// SIGTERM, then a bounded wait; SIGKILL if it did not exit. Whether
    /// it exited 0 after the SIGTERM.
    fn stop(mut self) -> bool {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        let child = &mut self.child;
        let status = wait_for(STOP_LIMIT, || child.try_wait().ok().flatten());
        match status {
            Some(s) if s.success() => true,
            Some(s) => {
                eprintln!("eg-deploy-bench: evergreen exited {s} after SIGTERM");
                false
            }
            None => {
                eprintln!(
                    "eg-deploy-bench: evergreen did not exit within {} s of SIGTERM; killing it",
                    STOP_LIMIT.as_secs()
                );
                false
            }
        }
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// The runtime log's clock
// ---------------------------------------------------------------------------------------------

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Epoch ms of a line's `[YYYY-MM-DDTHH:MM:SS.mmmZ]` prefix.
fn line_ms(line: &str) -> Option<i64> {
    let stamp = line.strip_prefix('[')?.get(..25)?;
    if !stamp.ends_with("Z]") {
        return None;
    }
    let num = |a: usize, b: usize| -> Option<i64> { stamp.get(a..b)?.parse().ok() };
    let days = days_from_civil(num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let secs = days * 86_400 + num(11, 13)? * 3600 + num(14, 16)? * 60 + num(17, 19)?;
    Some(secs * 1000 + num(20, 23)?)
}

/// What the runtime log says about starts and readiness from byte `from` on.
#[derive(Debug, Default)]
struct LogSpan {
    started: usize,
    ready: usize,
    first_started_ms: Option<i64>,
    last_ready_ms: Option<i64>,
    /// `deployment <id>: deploying …` (the version is loaded and valid).
    deploying_ms: Option<i64>,
    /// `deployment <id> of group version … succeeded`.
    succeeded_ms: Option<i64>,
}

impl LogSpan {
    fn read(path: &Path, from: usize) -> LogSpan {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // A log that rotated since (shorter than the offset) is read whole.
        let text = text.get(from..).unwrap_or(&text);
        let mut span = LogSpan::default();
        for line in text.lines() {
            if line.contains("started pid ") {
                span.started += 1;
                if span.first_started_ms.is_none() {
                    span.first_started_ms = line_ms(line);
                }
            } else if line.contains("ready after ") {
                span.ready += 1;
                span.last_ready_ms = line_ms(line).or(span.last_ready_ms);
            } else if !line.contains(":function:GGRuntime) ") {
                // Only the runtime's own lines name deployments.
            } else if line.contains(" deployment ") && line.contains(": deploying ") {
                span.deploying_ms = line_ms(line);
            } else if line.contains(" deployment ") && line.ends_with(" succeeded") {
                span.succeeded_ms = line_ms(line);
            }
        }
        span
    }

    /// Reads until `ready` lines are there (bounded: the status already
    /// said Running, so they are written or about to be).
    fn wait(path: &Path, from: usize, ready: usize) -> LogSpan {
        wait_for(Duration::from_secs(2), || {
            let span = LogSpan::read(path, from);
            (span.ready >= ready).then_some(span)
        })
        .unwrap_or_else(|| LogSpan::read(path, from))
    }

    fn first_to_last_ms(&self) -> Option<f64> {
        Some((self.last_ready_ms? - self.first_started_ms?) as f64)
    }

    fn deployment_ms(&self) -> Option<f64> {
        Some((self.succeeded_ms? - self.deploying_ms?) as f64)
    }
}

fn file_len(path: &Path) -> usize {
    std::fs::metadata(path).map_or(0, |m| usize::try_from(m.len()).unwrap_or(0))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct ColdStart {
    status_ms: f64,
    log_clock_ms: Option<f64>,
    in_log_ms: Option<f64>,
    supervisor_kib: Option<u64>,
    child_kib: Option<f64>,
}

/// Mean VmRSS of the components' pids, in KiB.
fn mean_child_kib(comps: &[Comp]) -> Option<f64> {
    let rss: Vec<u64> = comps
        .iter()
        .filter_map(|c| vm_rss_kb(i32::try_from(c.pid).ok()?))
        .collect();
    (!rss.is_empty()).then(|| rss.iter().sum::<u64>() as f64 / rss.len() as f64)
}

fn cold_start(bins: &Bins, dir: &Path, n: usize) -> Result<ColdStart, BoxError> {
    let names: Vec<String> = (0..n).map(fn_name).collect();
    let mut rt = Rt::start(bins, dir, &bench_group(&bins.eg_fn, &names, None))?;
    let (at, comps) = rt.wait_running(&names)?;
    let status_ms = ms(at - rt.spawned);
    let span = LogSpan::wait(&rt.runtime_log(), 0, n);
    if span.started != n || span.ready != n {
        eprintln!(
            "eg-deploy-bench: cold start N={n}: {} started / {} ready lines in the log",
            span.started, span.ready
        );
    }
    let result = ColdStart {
        status_ms,
        log_clock_ms: span
            .last_ready_ms
            .map(|last| (last - rt.spawned_wall_ms) as f64),
        in_log_ms: span.first_to_last_ms(),
        supervisor_kib: vm_rss_kb(rt.pid()),
        child_kib: mean_child_kib(&comps),
    };
    if !rt.stop() {
        return Err("the runtime did not stop cleanly".into());
    }
    Ok(result)
}

#[derive(Debug, Default)]
struct Deploys {
    full_ms: f64,
    full_in_log_ms: Option<f64>,
    full_deployment_ms: Option<f64>,
    change_ms: f64,
    change_in_log_ms: Option<f64>,
    change_deployment_ms: Option<f64>,
    kept: usize,
    changed_restarted: bool,
    supervisor_kib: Option<u64>,
    child_kib: Option<f64>,
}

/// Runs `evergreen deploy FILE`; its wall-clock time.
fn deploy(rt: &Rt, file: &Path) -> Result<f64, BoxError> {
    let path = file.display().to_string();
    let t0 = Instant::now();
    let out = rt.cli(&["deploy", &path])?;
    let took = ms(t0.elapsed());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !text.contains("Success") {
        return Err(format!("deploy {path} failed ({}): {text}", out.status).into());
    }
    Ok(took)
}

fn deploys(bins: &Bins, dir: &Path) -> Result<Deploys, BoxError> {
    let other = vec!["unrelated".to_string()];
    let names: Vec<String> = (0..20).map(fn_name).collect();
    let changed = fn_name(CHANGED);
    let mut rt = Rt::start(bins, dir, &bench_group(&bins.eg_fn, &other, None))?;
    rt.wait_running(&other)?;
    let log = rt.runtime_log();

    // 2. 1 unrelated component → 20 new ones.
    let full = dir.join("group-20.json");
    std::fs::write(&full, bench_group(&bins.eg_fn, &names, None).to_string())?;
    let offset = file_len(&log);
    let full_ms = deploy(&rt, &full)?;
    let (_, before) = rt.wait_running(&names)?;
    let full_span = LogSpan::wait(&log, offset, names.len());

    // 3. Only one function's Environment.Variables differ.
    let one = dir.join("group-20-changed.json");
    std::fs::write(
        &one,
        bench_group(&bins.eg_fn, &names, Some(&changed)).to_string(),
    )?;
    let offset = file_len(&log);
    let change_ms = deploy(&rt, &one)?;
    let (_, after) = rt.wait_running(&names)?;
    let change_span = LogSpan::wait(&log, offset, 1);
    let pid_of = |comps: &[Comp], name: &str| comps.iter().find(|c| c.name == name).map(|c| c.pid);
    let kept = names
        .iter()
        .filter(|n| {
            **n != changed && pid_of(&before, n).is_some_and(|p| Some(p) == pid_of(&after, n))
        })
        .count();
    let changed_restarted = pid_of(&before, &changed) != pid_of(&after, &changed);

    // 4. Memory with the 20 running.
    let result = Deploys {
        full_ms,
        full_in_log_ms: full_span.first_to_last_ms(),
        full_deployment_ms: full_span.deployment_ms(),
        change_ms,
        change_in_log_ms: change_span.first_to_last_ms(),
        change_deployment_ms: change_span.deployment_ms(),
        kept,
        changed_restarted,
        supervisor_kib: vm_rss_kb(rt.pid()),
        child_kib: mean_child_kib(&after),
    };
    if !rt.stop() {
        return Err("the runtime did not stop cleanly".into());
    }
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

/// `n`, min, median, max of the samples (`None` if there are none).
fn stats(samples: impl IntoIterator<Item = f64>) -> Option<(usize, f64, f64, f64)> {
    let mut v: Vec<f64> = samples.into_iter().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((n, v[0], median, v[n - 1]))
}

fn row(label: &str, unit: &str, samples: impl IntoIterator<Item = f64>) {
    match stats(samples) {
        Some((n, min, median, max)) => {
            println!("{label:<58} {unit:>4} {n:>3} {min:>9.1} {median:>9.1} {max:>9.1}")
        }
        None => println!(
            "{label:<58} {unit:>4} {:>3} {:>9} {:>9} {:>9}",
            0, "-", "-", "-"
        ),
    }
}

fn driver(reps: usize) -> Result<(), BoxError> {
    let bins = Bins {
        evergreen: require_bin("evergreen")?,
        eg_fn: require_bin("eg-fn")?,
    };
    let work = tempfile::Builder::new()
        .prefix("eg-deploy-bench-")
        .tempdir()?;
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "eg-deploy-bench: evergreen = {}, {cores} cores, {reps} repetitions, work dir {}",
        bins.evergreen.display(),
        work.path().display()
    );
    let mut failures = Vec::new();

    let mut cold = Vec::new();
    for n in [10usize, 20] {
        let mut runs = Vec::new();
        for rep in 0..reps {
            let dir = work.path().join(format!("cold-{n}-{rep}"));
            match cold_start(&bins, &dir, n) {
                Ok(run) => {
                    eprintln!(
                        "eg-deploy-bench: cold start N={n} #{rep}: {:.1} ms to all Running",
                        run.status_ms
                    );
                    runs.push(run);
                }
                Err(e) => {
                    eprintln!("eg-deploy-bench: cold start N={n} #{rep} FAILED: {e}");
                    failures.push(format!("cold start N={n} #{rep}"));
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        cold.push((n, runs));
    }

    let mut deps = Vec::new();
    for rep in 0..reps {
        let dir = work.path().join(format!("deploy-{rep}"));
        match deploys(&bins, &dir) {
            Ok(run) => {
                eprintln!(
                    "eg-deploy-bench: deploys #{rep}: full {:.1} ms, one change {:.1} ms",
                    run.full_ms, run.change_ms
                );
                deps.push(run);
            }
            Err(e) => {
                eprintln!("eg-deploy-bench: deploys #{rep} FAILED: {e}");
                failures.push(format!("deploys #{rep}"));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    println!();
    println!(
        "{:<58} {:>4} {:>3} {:>9} {:>9} {:>9}",
        "measurement", "unit", "n", "min", "median", "max"
    );
    for (n, runs) in &cold {
        row(
            &format!("cold start N={n}: spawn → status shows all Running *"),
            "ms",
            runs.iter().map(|r| r.status_ms),
        );
        row(
            &format!("cold start N={n}: spawn → last \"ready after\" (log clock)"),
            "ms",
            runs.iter().filter_map(|r| r.log_clock_ms),
        );
        row(
            &format!("cold start N={n}: first \"started pid\" → last \"ready after\""),
            "ms",
            runs.iter().filter_map(|r| r.in_log_ms),
        );
    }
    row(
        "deploy 1 → 20 components: `evergreen deploy FILE` wall",
        "ms",
        deps.iter().map(|d| d.full_ms),
    );
    row(
        "deploy 1 → 20 components: first started → last ready (log)",
        "ms",
        deps.iter().filter_map(|d| d.full_in_log_ms),
    );
    row(
        "deploy 1 → 20 components: \"deploying\" → \"succeeded\" (log)",
        "ms",
        deps.iter().filter_map(|d| d.full_deployment_ms),
    );
    row(
        "deploy 20, one Variables change: `evergreen deploy` wall",
        "ms",
        deps.iter().map(|d| d.change_ms),
    );
    row(
        "deploy 20, one Variables change: started → ready (log)",
        "ms",
        deps.iter().filter_map(|d| d.change_in_log_ms),
    );
    row(
        "deploy 20, one Variables change: \"deploying\" → \"succeeded\"",
        "ms",
        deps.iter().filter_map(|d| d.change_deployment_ms),
    );
    if let Some((_, runs)) = cold.iter().find(|(n, _)| *n == 20) {
        row(
            "RSS supervisor, 20 components (cold start N=20)",
            "KiB",
            runs.iter()
                .filter_map(|r| r.supervisor_kib)
                .map(|k| k as f64),
        );
        row(
            "RSS mean child, 20 components (cold start N=20)",
            "KiB",
            runs.iter().filter_map(|r| r.child_kib),
        );
    }
    row(
        "RSS supervisor, 20 components (after the two deploys)",
        "KiB",
        deps.iter()
            .filter_map(|d| d.supervisor_kib)
            .map(|k| k as f64),
    );
    row(
        "RSS mean child, 20 components (after the two deploys)",
        "KiB",
        deps.iter().filter_map(|d| d.child_kib),
    );
    println!();
    println!(
        "* includes starting one `evergreen status --json` process (CLI overhead) and up to one \
         {} ms poll interval",
        POLL.as_millis()
    );
    for (rep, d) in deps.iter().enumerate() {
        println!(
            "one-component change #{rep}: {}/19 unchanged functions kept their pid; {} {}",
            d.kept,
            fn_name(CHANGED),
            if d.changed_restarted {
                "restarted (new pid)"
            } else {
                "kept its pid (NOT restarted)"
            }
        );
    }
    if !failures.is_empty() {
        return Err(format!("{} run(s) failed: {}", failures.len(), failures.join(", ")).into());
    }
    Ok(())
}
