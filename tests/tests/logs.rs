//! End-to-end: `evergreen logs`, the real binary against a real runtime. It
//! finds a log through the control socket's status (by name, Id or ARN, or
//! the runtime's own), prints its last lines, and with `-f` follows it as
//! the runtime writes.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use evergreen_tests::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);
const RUNTIME_ARN: &str = "arn:aws:lambda:::function:GGRuntime";

/// A runtime whose control socket is in a temporary directory of its own.
struct Controlled {
    rt: Runtime,
    _sock_dir: tempfile::TempDir,
    sock: PathBuf,
}

fn start(group: &Value, evergreen: &Value) -> Controlled {
    let sock_dir = tempfile::tempdir().expect("tmp");
    let sock = sock_dir.path().join("ctl/control.sock");
    let mut settings = json!({ "controlSocket": sock });
    merge(&mut settings, evergreen);
    let rt = Runtime::start_with(group, &settings);
    Controlled {
        rt,
        _sock_dir: sock_dir,
        sock,
    }
}

fn logs(sock: &Path, args: &[&str]) -> Output {
    Command::new(evergreen_bin())
        .arg("logs")
        .args(args)
        .arg("--socket")
        .arg(sock)
        .stdin(Stdio::null())
        .output()
        .expect("run evergreen logs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `evergreen logs <args>` once it succeeds with output containing `needle`
/// (the runtime is starting, the component not yet ready).
fn logs_with(sock: &Path, args: &[&str], needle: &str) -> String {
    let mut last = None;
    let found = wait_for(LIMIT, || {
        let out = logs(sock, args);
        let text = stdout(&out);
        let done = out.status.success() && text.contains(needle);
        last = Some(out);
        done.then_some(text)
    });
    found.unwrap_or_else(|| panic!("`evergreen logs {args:?}` shows {needle:?}; last: {last:?}"))
}

/// `quiet` (Id `quiet-id`): says Ready, then writes nothing more.
fn quiet_group() -> Value {
    let mut quiet = function("quiet", "record /dev/null");
    quiet["Id"] = json!("quiet-id");
    group(vec![quiet], vec![])
}

#[test]
fn logs_prints_a_components_last_lines_found_by_name_id_or_arn() {
    let c = start(&quiet_group(), &json!({}));
    let arn = fn_arn("quiet");
    let all = logs_with(&c.sock, &["quiet"], "ready after");
    let lines: Vec<&str> = all.lines().collect();
    assert!(lines.len() >= 2, "{all}");
    for line in &lines {
        assert!(
            line.starts_with('[') && line.contains(&format!("]-({arn}) ")),
            "every line is ARN-tagged: {line:?}"
        );
    }
    // Exactly the file's content (it is far shorter than 100 lines).
    assert_eq!(all, read(&c.rt.function_log("quiet")));

    // The same log by Id and by ARN.
    for by in ["quiet-id", arn.as_str()] {
        let out = logs(&c.sock, &[by]);
        assert!(out.status.success(), "{by}: {out:?}");
        assert_eq!(stdout(&out), all, "by {by}");
    }

    // -n: the last lines only.
    let out = logs(&c.sock, &["quiet", "-n", "2"]);
    assert!(out.status.success(), "{out:?}");
    let two = stdout(&out);
    assert_eq!(two.lines().collect::<Vec<_>>(), lines[lines.len() - 2..]);
    let out = logs(&c.sock, &["quiet", "--lines", "0"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
}

#[test]
fn logs_runtime_prints_the_runtimes_own_log() {
    let c = start(&quiet_group(), &json!({}));
    let text = logs_with(&c.sock, &["runtime"], "control socket listening");
    assert!(
        text.lines()
            .all(|l| l.contains(&format!("]-({RUNTIME_ARN}) "))),
        "{text}"
    );
    let out = logs(&c.sock, &["system", "-n", "1"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).lines().count(), 1, "{out:?}");
}

#[test]
fn unknown_components_and_a_missing_runtime_are_errors() {
    let c = start(&quiet_group(), &json!({}));
    logs_with(&c.sock, &["quiet"], "ready after");

    let out = logs(&c.sock, &["Quiet"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no component \"Quiet\""), "{err}");
    for listed in ["runtime", "quiet", &fn_arn("quiet"), RUNTIME_ARN] {
        assert!(err.contains(listed), "{listed} listed in {err}");
    }

    let dir = tempfile::tempdir().expect("tmp");
    let none = dir.path().join("none.sock");
    let out = logs(&none, &["quiet"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "no Evergreen runtime is listening on {}",
            none.display()
        )),
        "{err}"
    );
}

/// `evergreen logs <args> -f` with its stdout read line by line on a thread.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    /// With `close_after`, the reader stops reading (and closes the pipe)
    /// after the first line containing it.
    fn start(sock: &Path, args: &[&str], close_after: Option<&str>) -> Follower {
        let mut command = Command::new(evergreen_bin());
        command
            .arg("logs")
            .args(args)
            .arg("-f")
            .arg("--socket")
            .arg(sock)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        // A follower ends on Ctrl-C by SIGINT's default action. A test run started in the
        // background of a shell without job control (`.ci/run &`) inherits SIGINT ignored,
        // and so would the follower: it gets the default back, as a terminal's would have.
        // SAFETY: between fork and exec only `sigaction`, which is async-signal-safe, runs in
        // the child; nothing is allocated or locked.
        unsafe {
            command.pre_exec(|| {
                nix::sys::signal::signal(Signal::SIGINT, nix::sys::signal::SigHandler::SigDfl)
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().expect("start evergreen logs -f");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        let close_after = close_after.map(str::to_string);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let last = close_after.as_ref().is_some_and(|n| line.contains(n));
                if tx.send(line).is_err() || last {
                    return;
                }
            }
        });
        Follower { child, lines }
    }

    /// Reads lines until one contains `needle`; the lines read, or a panic
    /// with them after `LIMIT`.
    fn until(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + LIMIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(needle);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("no line with {needle:?} ({e}); got {seen:#?}"),
            }
        }
    }

    /// Waits (bounded) for it to exit.
    fn wait(&mut self) -> Option<ExitStatus> {
        wait_for(LIMIT, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn logs_follow_prints_new_lines_until_interrupted() {
    // A function that exits after Ready, over and over: each round writes
    // new lines (started, ready, exited, restarting) into its log.
    let c = start(
        &group(vec![function("flapper", "exit 300 3")], vec![]),
        &json!({ "restart": { "crashLoopLimit": 0 } }),
    );
    logs_with(&c.sock, &["flapper"], "ready after");

    // -n 0: nothing old, so every line read was written while following.
    let mut f = Follower::start(&c.sock, &["flapper", "-n", "0"], None);
    let first = f.until("ready after");
    let second = f.until("ready after");
    for line in first.iter().chain(&second) {
        assert!(
            line.contains(&format!("]-({}) ", fn_arn("flapper"))),
            "{line:?}"
        );
    }
    assert!(
        second.iter().any(|l| l.contains("exited with status 3")),
        "the exit between the two starts: {second:#?}"
    );
    // Every line is in the file, in the order the file has them (the file
    // may have rotated meanwhile only if it outgrew 1 MiB; it does not).
    let file = read(&c.rt.function_log("flapper"));
    let followed = [first, second].concat().join("\n");
    assert!(file.contains(&followed), "{followed}\nnot in\n{file}");

    let _ = kill(
        Pid::from_raw(i32::try_from(f.child.id()).expect("pid")),
        Signal::SIGINT,
    );
    let status = f.wait().expect("the follower ends on SIGINT");
    assert!(!status.success(), "{status:?}");
}

#[test]
fn a_follower_keeps_following_after_the_runtime_stops_and_ends_with_its_reader() {
    let mut c = start(&quiet_group(), &json!({}));
    logs_with(&c.sock, &["quiet"], "ready after");

    // The reader closes the pipe after the first line. `quiet` writes
    // nothing more, so no write can fail: the follower must notice the
    // closed pipe by itself.
    let mut q = Follower::start(&c.sock, &["quiet", "-n", "1"], Some("]-("));
    q.until("]-(");
    let status = q
        .wait()
        .expect("the follower ends when its reader goes away");
    assert!(status.success(), "{status:?}");

    let mut f = Follower::start(&c.sock, &["runtime", "-n", "1"], Some("SIGTERM received"));
    assert_eq!(f.lines.recv_timeout(LIMIT).map(|l| l.is_empty()), Ok(false));

    // The runtime's last lines reach the follower after its socket is gone.
    let stopped = c.rt.stop_with(Signal::SIGTERM, LIMIT);
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    assert!(!c.sock.exists(), "the runtime is gone");
    f.until("SIGTERM received");

    // The reader closed the pipe after that line.
    let status = f
        .wait()
        .expect("the follower ends when its reader goes away");
    assert!(status.success(), "{status:?}");
}

/// Issue 23: with the runtime stopped, `evergreen logs` finds the files through the
/// configuration and the group the runtime last ran, and says so on stderr.
#[test]
fn logs_reads_the_files_of_the_last_group_when_no_runtime_runs() {
    let mut c = start(&quiet_group(), &json!({}));
    let live = logs_with(&c.sock, &["quiet"], "ready after");
    let config = c.rt.dir.path().join("config.json");
    let stopped = c.rt.stop_with(Signal::SIGTERM, LIMIT);
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    let out = Command::new(evergreen_bin())
        .args(["logs", "quiet", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("run evergreen logs");
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with(&live),
        "the same lines, and the stop's after them:\n{text}"
    );
    assert_eq!(text, read(&c.rt.function_log("quiet")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no Evergreen runtime is listening")
            && err.contains("reading the log files of group version"),
        "{err}"
    );
    // The runtime's own log too.
    let out = Command::new(evergreen_bin())
        .args(["logs", "runtime", "-n", "10", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("run evergreen logs");
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("all components stopped"), "{out:?}");
}

/// Issue 23: `--level`, `--since`, `--until` and `--json` filter and reshape the lines (read
/// with the runtime stopped, so the file does not grow between two readings).
#[test]
fn logs_filters_by_level_and_time_and_prints_json() {
    let mut c = start(&quiet_group(), &json!({}));
    logs_with(&c.sock, &["runtime"], "control socket listening");
    let stopped = c.rt.stop_with(Signal::SIGTERM, LIMIT);
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    let config = c.rt.dir.path().join("config.json");
    let offline = |args: &[&str]| {
        Command::new(evergreen_bin())
            .arg("logs")
            .args(args)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .expect("run evergreen logs")
    };
    let all = stdout(&offline(&["runtime", "-n", "1000"]));
    assert!(all.lines().count() > 3, "{all}");
    let out = offline(&["runtime", "-n", "1000", "--level", "INFO"]);
    assert!(out.status.success(), "{out:?}");
    let info: String = all
        .lines()
        .filter(|l| !l.contains("][DEBUG]-("))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(stdout(&out), info, "INFO and above");
    let out = offline(&["runtime", "--level", "fatal"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    // A window in the future holds nothing; one from an hour ago holds everything.
    let out = offline(&["runtime", "--since", "2999-01-01"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    assert_eq!(
        stdout(&offline(&["runtime", "-n", "1000", "--since", "1h"])),
        all
    );
    let out = offline(&["runtime", "--until", "2000-01-01"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    // -n counts the lines that pass.
    let two = stdout(&offline(&["runtime", "-n", "2", "--level", "info"]));
    assert_eq!(two.lines().count(), 2, "{two}");
    assert!(info.ends_with(&two), "the last two: {two}");
    // --json: one object per line, with the line's fields.
    let json = stdout(&offline(&["runtime", "-n", "1000", "--json"]));
    let objects: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(objects.len(), all.lines().count());
    for (object, line) in objects.iter().zip(all.lines()) {
        assert_eq!(object["arn"], RUNTIME_ARN);
        let ts = object["timestamp"].as_str().expect("timestamp");
        let level = object["level"].as_str().expect("level");
        let message = object["message"].as_str().expect("message");
        assert_eq!(line, format!("[{ts}][{level}]-({RUNTIME_ARN}) {message}"));
    }
    // A bad filter is a usage error.
    let out = offline(&["runtime", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a time"),
        "{out:?}"
    );
}
