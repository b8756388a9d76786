//! End-to-end: the log pipeline under a stalled disk (issue 28). A component's log file is a
//! FIFO that the test holds open and does not read, so the runtime's log writer blocks in
//! write(2) once the pipe is full, exactly as on a disk that stopped answering. The documented
//! promises, checked against the real binary:
//!
//! * a slow disk never blocks the actors' thread or the router: messages routed through
//!   functions (whose frames the actors' thread reads) all arrive while the writer is stalled;
//! * a line the writer could not take is dropped and counted, never lost silently: the
//!   component's `logDropped` in `evergreen status` plus the lines that reach the file once
//!   the disk answers again is exactly what the component wrote;
//! * the runtime log tells of the drops once the writer has caught up.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);
/// Lines the chatty component writes: far more than the writer's queue (8192) holds.
const CHATTY_LINES: u64 = 60_000;
/// Messages routed pub → echo → rec while the writer is stalled.
const ROUTED: usize = 500;

fn status(sock: &Path) -> Option<Value> {
    let out = Command::new(evergreen_bin())
        .args(["status", "--json", "--socket"])
        .arg(sock)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Reads everything the pipe gives until it has been quiet for `quiet`, or until `limit`.
fn read_until_quiet(fifo: &mut File, quiet: Duration, limit: Duration) -> String {
    let started = Instant::now();
    let mut last = Instant::now();
    let mut text = Vec::new();
    let mut buf = [0u8; 65536];
    while started.elapsed() < limit && last.elapsed() < quiet {
        match fifo.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(10)),
            Ok(n) => {
                text.extend_from_slice(&buf[..n]);
                last = Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("reading the FIFO: {e}"),
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[test]
fn a_stalled_log_disk_holds_up_no_routing_and_every_dropped_line_is_counted() {
    let dir = tempfile::tempdir().expect("tmp");
    let record = dir.path().join("routed.jsonl");
    let sock = dir.path().join("ctl/control.sock");
    // The chatty function's log, made a FIFO before the runtime opens it.
    let fifo = dir
        .path()
        .join(format!("root/var/log/user/{REGION}/{ACCOUNT}/chatty.log"));
    std::fs::create_dir_all(fifo.parent().expect("parent")).expect("log dirs");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o640)).expect("mkfifo");
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO's read end");

    let g = group(
        vec![
            function("chatty", &format!("chatty {CHATTY_LINES} 300")),
            // Starts after chatty has filled the writer's queue: every message is routed while
            // the writer is stalled.
            function("pub", &format!("publish bench/in {ROUTED} 2")),
            function("echo", "echo out"),
            function("rec", &format!("record {}", record.display())),
        ],
        vec![
            sub("in", &fn_arn("pub"), "bench/in", &fn_arn("echo")),
            sub("out", &fn_arn("echo"), "out/bench/in", &fn_arn("rec")),
        ],
    );
    let mut rt = Runtime::start_config_in(
        dir,
        &g,
        &json!({ "evergreen": { "controlSocket": sock } }),
        &[],
    );

    // 1. Routing goes on while the writer is stalled: every message arrives.
    let routed = wait_for(LIMIT, || {
        let n = records(&record).len();
        (n >= ROUTED).then_some(n)
    });
    let runtime_log = rt.log_path("system/runtime.log");
    assert_eq!(
        routed,
        Some(ROUTED),
        "routing stalled behind the log writer ({} of {ROUTED} arrived)\nruntime log:\n{}",
        records(&record).len(),
        std::fs::read_to_string(&runtime_log).unwrap_or_default()
    );

    // 2. The writer's queue overflowed and said so: counted for chatty and in total.
    let chatty_arn = fn_arn("chatty");
    let dropped = wait_for(LIMIT, || {
        let doc = status(&sock)?;
        let chatty = doc["components"]
            .as_array()?
            .iter()
            .find(|c| c["arn"] == chatty_arn)?
            .clone();
        let dropped = chatty["logDropped"].as_u64()?;
        (dropped > 0 && doc["logLinesDropped"].as_u64()? >= dropped).then_some(dropped)
    })
    .expect("no dropped lines counted for chatty in `evergreen status`");

    // 3. The disk answers again: everything admitted reaches the file. chatty wrote all its
    //    lines long ago (the count no longer moves), so written + dropped is all it wrote.
    let text = read_until_quiet(&mut reader, Duration::from_secs(2), LIMIT);
    let dropped_after = status(&sock)
        .and_then(|doc| {
            doc["components"]
                .as_array()?
                .iter()
                .find(|c| c["arn"] == chatty_arn)?["logDropped"]
                .as_u64()
        })
        .expect("status after the drain");
    assert_eq!(dropped, dropped_after, "drops went on after chatty stopped");
    let written = text
        .lines()
        .filter(|l| l.contains(") chatty line "))
        .count() as u64;
    assert_eq!(
        written + dropped,
        CHATTY_LINES,
        "{written} lines written and {dropped} counted as dropped of {CHATTY_LINES}"
    );

    // 4. The runtime log tells of the drops once the writer has room again (with the next
    //    line it logs: the stop's).
    let stopped = rt.stop_with(nix::sys::signal::Signal::SIGTERM, LIMIT);
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    let _ = read_until_quiet(&mut reader, Duration::from_millis(200), LIMIT);
    let log = std::fs::read_to_string(&runtime_log).expect("runtime log");
    let reported: u64 = log
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("evergreen_runtime::logs: ")?;
            rest.split_once(" log lines were not written")?
                .0
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        reported >= dropped,
        "the runtime log reported {reported} dropped lines, status counted {dropped}:\n{log}"
    );
}

/// Runs a small group with `evergreen.logLevel` = `config_level` and `args`, stops it, and
/// returns the levels of the runtime log's lines.
fn runtime_levels(config_level: &str, args: &[&str]) -> Vec<String> {
    let g = group(vec![function("idle", "sleeper")], vec![]);
    let mut rt = Runtime::start_args_in(
        tempfile::tempdir().expect("tmp"),
        &g,
        &json!({ "evergreen": { "logLevel": config_level } }),
        &[],
        args,
    );
    let log = rt.log_path("system/runtime.log");
    // Started: the actor's note about the function is the sign, at INFO or not.
    let idle = rt.function_log("idle");
    let started = wait_for(LIMIT, || {
        std::fs::read_to_string(&idle)
            .ok()?
            .contains("started pid")
            .then_some(())
    });
    assert!(started.is_some(), "the function never started");
    let stopped = rt.stop_with(nix::sys::signal::Signal::SIGTERM, LIMIT);
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    std::fs::read_to_string(log)
        .expect("runtime log")
        .lines()
        .filter_map(|l| Some(l.split_once("][")?.1.split_once(']')?.0.to_string()))
        .collect()
}

/// Issue 23: the runtime's own verbosity comes from `evergreen.logLevel`, and
/// `run --log-level` overrides it (over the group's GreengrassSystem Logger definition).
#[test]
fn the_runtime_log_level_comes_from_the_configuration_and_the_command_line_overrides_it() {
    let quiet = runtime_levels("WARN", &[]);
    assert!(
        quiet
            .iter()
            .all(|l| l == "WARN" || l == "ERROR" || l == "FATAL"),
        "logLevel WARN: {quiet:?}"
    );
    let loud = runtime_levels("WARN", &["--log-level", "debug"]);
    assert!(
        loud.iter().any(|l| l == "INFO"),
        "--log-level debug over logLevel WARN: {loud:?}"
    );
}
