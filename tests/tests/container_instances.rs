//! End-to-end: container instances under the real runtime. Each started
//! instance has a name of its own (a redeployed connector's old and new
//! instance do not kill each other), the namespace's init forwards SIGTERM
//! and reaps orphans, a SIGKILLed serial connector opens its port again,
//! and `evergreen status` shows the component's own process.
//!
//! Needs root and a host where `evergreen check` passes, and `socat` for the
//! serial tests (`.ci/run` installs it); otherwise each test says why on
//! stderr and returns without asserting.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use evergreen_tests::{require_containers, *};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);
const SERIAL: &str = "arn:aws:greengrass:us-east-1::/connectors/SerialStream/versions/3";

/// A socat pty pair: `port` is the connector's end, `peer` the test's.
/// Killed on drop.
struct PtyPair {
    child: Child,
    port: PathBuf,
    peer: PathBuf,
}

impl PtyPair {
    fn open(dir: &Path) -> Option<PtyPair> {
        let a = dir.join("pty-a");
        let b = dir.join("pty-b");
        let child = Command::new("socat")
            // Group read-write: the connector runs as `nobody` with the pty's group added.
            .arg(format!("pty,raw,echo=0,mode=0660,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,mode=0660,link={}", b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("SKIPPED: socat is not available ({e}): apt-get install socat"))
            .ok()?;
        let mut pair = PtyPair {
            child,
            port: PathBuf::new(),
            peer: PathBuf::new(),
        };
        let (port, peer) = wait_for(Duration::from_secs(10), || {
            Some((
                std::fs::canonicalize(&a).ok()?,
                std::fs::canonicalize(&b).ok()?,
            ))
        })?;
        pair.port = port;
        pair.peer = peer;
        Some(pair)
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's end of the pair, non-blocking so every wait has a deadline.
struct Peer(File);

impl Peer {
    fn open(path: &Path) -> Peer {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        Peer(file)
    }

    /// Bytes arriving until `n` have come or `limit` passes.
    fn receive(&mut self, n: usize, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while got.len() < n && Instant::now() < deadline {
            match self.0.read(&mut buf) {
                Ok(k) if k > 0 => got.extend_from_slice(&buf[..k]),
                Ok(_) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("read from the peer end: {e}"),
            }
        }
        got
    }
}

/// SerialStream (container mode, the pty granted as a device) fed by an
/// `eg-fn feed` function, its statuses recorded by an `eg-fn record` one.
fn serial_group(port: &Path, feed_file: &Path, record: &Path, baud: &str) -> Value {
    let mut g = group(
        vec![
            function("feed", &format!("feed {}", feed_file.display())),
            function("rec", &format!("record {}", record.display())),
        ],
        vec![
            sub("writes", &fn_arn("feed"), "serial/+/write/#", SERIAL),
            sub("status", SERIAL, "serial/+/status/#", &fn_arn("rec")),
        ],
    );
    g["ResourceDefinitionVersion"] = json!({ "Resources": [{
        "Id": "serial-port",
        "Name": "SerialPort",
        "ResourceDataContainer": { "LocalDeviceResourceData": {
            "SourcePath": port,
            "GroupOwnerSetting": { "AutoAddGroupOwner": true }
        }}
    }]});
    g["ConnectorDefinitionVersion"] = json!({ "Connectors": [{
        "Id": "serial",
        "ConnectorArn": SERIAL,
        "Parameters": {
            "BaudRate": baud,
            "Timeout": "1",
            "SerialPort": port,
            "SerialPort-ResourceId": "serial-port",
            "PollingRead": "false"
        }
    }]});
    g
}

/// Asks the connector to write `text` (request id `id`) and checks that it
/// says so and that the bytes reach the other end of the line.
fn write_through(
    rt: &Runtime,
    feed_file: &Path,
    record: &Path,
    peer: &mut Peer,
    port: &Path,
    id: &str,
    text: &str,
) {
    let topic = format!("serial/test-core/write{}", port.display());
    let line = json!({
        "topic": topic,
        "payload": json!({ "data": text, "type": "ascii", "id": id }).to_string()
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(feed_file)
        .expect("feed file");
    f.write_all(format!("{line}\n").as_bytes())
        .expect("feed line");
    let status = wait_for(LIMIT, || {
        records(record).into_iter().find_map(|r| {
            let payload: Value = serde_json::from_str(r["payload"].as_str()?).ok()?;
            (payload["id"] == id).then_some(payload)
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no status for {id}\nconnector log:\n{}\nruntime log:\n{}",
            read(&rt.log_path("user/us-east-1/aws/SerialStream.log")),
            read(&rt.log_path("system/runtime.log"))
        )
    });
    assert_eq!(
        status,
        json!({"response": {"status": "success"}, "id": id}),
        "connector log:\n{}",
        read(&rt.log_path("user/us-east-1/aws/SerialStream.log"))
    );
    assert_eq!(
        peer.receive(text.len(), LIMIT),
        text.as_bytes(),
        "{id}: the bytes reached the line"
    );
}

/// Runs an `evergreen` subcommand against the runtime in `dir`.
fn cli(dir: &Path, args: &[&str]) -> Output {
    evergreen_with(&dir.join("config.json"), args)
}

/// `(state, pid, rssKib)` of component `id` from `evergreen status --json`.
fn status_of(dir: &Path, id: &str) -> Option<(String, u32, Option<u64>)> {
    let out = cli(dir, &["status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).ok()?;
    let c = doc["components"]
        .as_array()?
        .iter()
        .find(|c| c["id"] == id)?
        .clone();
    Some((
        c["state"].as_str()?.to_string(),
        u32::try_from(c["pid"].as_u64()?).ok()?,
        c["rssKib"].as_u64(),
    ))
}

/// Waits until component `id` is Running; its status pid and rss.
fn running(dir: &Path, id: &str) -> (u32, Option<u64>) {
    wait_for(LIMIT, || {
        status_of(dir, id)
            .filter(|(state, _, _)| state == "Running")
            .map(|(_, pid, rss)| (pid, rss))
    })
    .unwrap_or_else(|| panic!("{id} is not Running: {:?}", status_of(dir, id)))
}

/// The innermost pid of a host process (`NSpid` in `/proc/<pid>/status`).
fn pid_inside(pid: u32) -> Option<u32> {
    read(Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

fn settings(dir: &Path) -> Value {
    json!({ "controlSocket": dir.join("control.sock") })
}

#[test]
fn redeploying_a_container_connector_with_new_parameters_replaces_it_without_a_sigkill() {
    require_containers!();
    let dir = tempfile::tempdir().expect("tmp");
    let Some(pair) = PtyPair::open(dir.path()) else {
        return;
    };
    let mut peer = Peer::open(&pair.peer);
    let feed_file = dir.path().join("feed.jsonl");
    let record = dir.path().join("record.jsonl");
    let rt = Runtime::start_with(
        &serial_group(&pair.port, &feed_file, &record, "115200"),
        &settings(dir.path()),
    );
    let rd = rt.dir.path();
    let (old_pid, _) = running(rd, "serial");
    write_through(
        &rt, &feed_file, &record, &mut peer, &pair.port, "before", "one",
    );

    // Same Id, another BaudRate: a new actor, while the old one stops.
    let v2 = rd.join("v2.json");
    std::fs::write(
        &v2,
        serial_group(&pair.port, &feed_file, &record, "9600").to_string(),
    )
    .expect("write v2");
    let deployed = cli(rd, &["deploy", &v2.display().to_string()]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&deployed.stdout),
        String::from_utf8_lossy(&deployed.stderr)
    );
    let connector_log = || read(&rt.log_path("user/us-east-1/aws/SerialStream.log"));
    let runtime_log = || read(&rt.log_path("system/runtime.log"));
    assert!(
        deployed.status.success() && said.contains("Success"),
        "{said}\nconnector log:\n{}\nruntime log:\n{}",
        connector_log(),
        runtime_log()
    );
    let (new_pid, _) = running(rd, "serial");
    assert_ne!(new_pid, old_pid, "a new instance runs");
    assert!(
        !alive(i32::try_from(old_pid).expect("pid")),
        "the old instance is gone"
    );
    assert!(
        connector_log().contains("open at 9600 baud"),
        "the new instance runs the new parameters:\n{}",
        connector_log()
    );
    write_through(
        &rt, &feed_file, &record, &mut peer, &pair.port, "after", "two",
    );

    // Each instance had a container of its own: two different names.
    let names: Vec<String> = connector_log()
        .lines()
        .filter_map(|l| l.split("; container ").nth(1))
        .map(|n| n.trim().to_string())
        .collect();
    assert_eq!(names.len(), 2, "two instances started: {names:?}");
    assert_ne!(names[0], names[1], "each instance has its own name");
    for (what, log) in [("connector", connector_log()), ("runtime", runtime_log())] {
        assert!(
            !log.contains("killed by signal 9"),
            "nothing was SIGKILLed ({what} log):\n{log}"
        );
    }
    let history = String::from_utf8_lossy(&cli(rd, &["deployments", "--json"]).stdout).into_owned();
    assert!(!history.contains("\"RolledBack\": true"), "{history}");
}

#[test]
fn status_shows_the_container_component_process_not_its_holder() {
    require_containers!();
    let dir = tempfile::tempdir().expect("tmp");
    let Some(pair) = PtyPair::open(dir.path()) else {
        return;
    };
    let feed_file = dir.path().join("feed.jsonl");
    let record = dir.path().join("record.jsonl");
    let rt = Runtime::start_with(
        &serial_group(&pair.port, &feed_file, &record, "115200"),
        &settings(dir.path()),
    );
    let (pid, rss) = running(rt.dir.path(), "serial");
    let command = cmdline(i32::try_from(pid).expect("pid"));
    assert!(
        command.contains("connector SerialStream"),
        "status pid {pid} is the connector, not a fork of the runtime: {command:?}"
    );
    assert_eq!(
        pid_inside(pid),
        Some(2),
        "the component under the namespace's init"
    );
    // The rss is the connector's own: compare with what /proc says now,
    // within a margin for the moment between the two readings.
    let now = vm_rss_kb(i32::try_from(pid).expect("pid")).expect("rss from /proc");
    let shown = rss.expect("status shows an rss");
    assert!(
        shown.abs_diff(now) <= now / 4 + 256,
        "status rss {shown} KiB vs the connector's {now} KiB"
    );
}

#[test]
fn a_sigkilled_serial_connector_is_restarted_and_opens_its_port_again() {
    require_containers!();
    let dir = tempfile::tempdir().expect("tmp");
    let Some(pair) = PtyPair::open(dir.path()) else {
        return;
    };
    let mut peer = Peer::open(&pair.peer);
    let feed_file = dir.path().join("feed.jsonl");
    let record = dir.path().join("record.jsonl");
    let rt = Runtime::start_with(
        &serial_group(&pair.port, &feed_file, &record, "115200"),
        &settings(dir.path()),
    );
    let rd = rt.dir.path();
    let (pid, _) = running(rd, "serial");
    assert!(cmdline(i32::try_from(pid).expect("pid")).contains("connector SerialStream"));
    write_through(
        &rt,
        &feed_file,
        &record,
        &mut peer,
        &pair.port,
        "first",
        "before the kill",
    );

    // kill -9 of the connector itself: no chance to release the port.
    let killed = Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(killed.success());
    let log = || read(&rt.log_path("user/us-east-1/aws/SerialStream.log"));
    wait_for(LIMIT, || log().contains("(generation 2)").then_some(()))
        .unwrap_or_else(|| panic!("restarted by its restart policy:\n{}", log()));
    let (again, _) = running(rd, "serial");
    assert_ne!(again, pid, "a new process");

    // The restarted connector has the line again: data flows.
    write_through(
        &rt,
        &feed_file,
        &record,
        &mut peer,
        &pair.port,
        "second",
        "after the kill",
    );
    assert!(
        !log().contains("resource busy"),
        "the port was never refused as busy:\n{}",
        log()
    );
}

/// A Python function (no SDK needed) that leaves an orphan behind at
/// import: `sh` starts `sleep 1` in the background and exits, so the
/// `sleep` is adopted by the namespace's PID 1. It handles no signal.
const ORPHANER: &str = r#"
import subprocess

subprocess.Popen(["/bin/sh", "-c", "sleep 1 & exit 0"]).wait()


def handler(event, context):
    return event
"#;

#[test]
fn a_container_python_worker_stops_on_sigterm_and_orphans_are_reaped() {
    require_containers!();
    let python = Command::new("python3").arg("--version").output();
    if !python.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: python3 is not installed");
        return;
    }
    let work = tempfile::tempdir().expect("tmp");
    let code = work.path().join("orphaner");
    std::fs::create_dir_all(&code).expect("code dir");
    std::fs::write(code.join("orphaner.py"), ORPHANER).expect("write function");
    let f = json!({
        "Id": "orphaner",
        "FunctionArn": fn_arn("orphaner"),
        "FunctionConfiguration": {
            "Executable": "orphaner.handler",
            "CodeUri": code,
            "Runtime": "python3.8",
            "Pinned": true,
            "Timeout": 3,
            "MemorySize": 32768,
            "EncodingType": "json",
            "Environment": { "Execution": { "IsolationMode": "GreengrassContainer" } }
        }
    });
    let port = free_port().expect("a free port");
    // Grace periods long enough that a stop ending in SIGKILL shows in time.
    let mut rt = Runtime::start_config(
        &group(vec![f], vec![]),
        &json!({
            "coreThing": { "ggDaemonPort": port },
            "evergreen": { "shutdownGraceMs": 3000, "termGraceMs": 3000 }
        }),
        &[],
    );
    let log = rt.function_log("orphaner");

    // runtime -> waiter -> init -> the Python worker (and the orphan).
    let init = wait_for(LIMIT, || {
        children_of(rt.pid())
            .into_iter()
            .flat_map(children_of)
            .find(|i| {
                children_of(*i)
                    .into_iter()
                    .any(|c| cmdline(c).contains("evergreen_lambda_runtime"))
            })
    })
    .unwrap_or_else(|| {
        panic!(
            "no container init with the worker under it:\n{}",
            read(&log)
        )
    });
    let orphan = wait_for(LIMIT, || {
        children_of(init)
            .into_iter()
            .find(|c| cmdline(*c) == "sleep 1")
    })
    .unwrap_or_else(|| panic!("the orphan was not adopted by init:\n{}", read(&log)));
    // `sleep 1` ends within a second; init reaps it within its 1 s tick at
    // worst. A zombie would stay in /proc as long as the namespace lives.
    let reaped = wait_for(Duration::from_secs(10), || {
        (!Path::new(&format!("/proc/{orphan}")).exists()).then_some(())
    });
    let state = read(Path::new(&format!("/proc/{orphan}/stat")));
    assert!(reaped.is_some(), "the orphan was not reaped: {state}");
    assert!(alive(init), "init stays while the worker runs");

    // Stop: the worker gets SIGTERM at once and, under init, dies of it.
    let began = Instant::now();
    let stopped = rt.stop_with(nix::sys::signal::Signal::SIGTERM, LIMIT);
    let took = began.elapsed();
    assert!(stopped.is_some_and(|s| s.success()), "the runtime stops");
    let text = read(&log);
    assert!(
        text.contains("killed by signal 15"),
        "the worker ended by SIGTERM:\n{text}"
    );
    assert!(
        !text.contains("sending SIGKILL") && !text.contains("killed by signal 9"),
        "no SIGKILL:\n{text}"
    );
    assert!(
        took < Duration::from_secs(3),
        "the stop did not wait for the grace period: {took:?}"
    );
}
