//! Self-update of the runtime over the fleet channel (issue 21), with a real mosquitto and real
//! runtimes: `evergreen fleet update` rolls a release out in stages; each gateway downloads the
//! binary for its target, checks the signed digest and the binary's own `--version`, restarts
//! onto it, and reports `Success` once the new runtime passed its health gate, or
//! `RolledBack` with the reason when the previous release had to come back.
//!
//! A "new build" is the binary under test stamped with another version
//! (`evergreen_ops::release::stamp`); a build that exits at start is a script that answers
//! `--version` and exits 1 otherwise. Gateways run in both restart modes users have: `exec`
//! (started by hand: the runtime executes itself again and watches a release on trial) and
//! `serviceManager` (it exits with status 80 and a stand-in for systemd, [`Managed`], starts it
//! again, as `Restart=on-failure` + `RestartForceExitStatus=80` do).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evergreen_fleet::document::target;
use evergreen_fleet::slots::file_sha256;
use evergreen_tests::broker::Mosquitto;
use evergreen_tests::fleet::{crashing_release, gateway_config, stamped_release, Operator};
use evergreen_tests::*;
use serde_json::{json, Value};

/// Bounds every wait (CI runs the tests in parallel on 2 cores).
const LIMIT: Duration = Duration::from_secs(120);

/// The version of the binary under test.
fn base_version() -> String {
    let out = Command::new(evergreen_bin())
        .arg("--version")
        .output()
        .expect("evergreen --version");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("evergreen ")
        .to_string()
}

/// A broker (and its state directory), an operator, and the version of the binary under test;
/// `None` (said loudly) without mosquitto.
fn fleet() -> Option<(tempfile::TempDir, Mosquitto, Operator, String)> {
    let bin = mosquitto_or_skip()?;
    let state = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&bin, state.path(), free_port().expect("port"));
    Some((state, broker, Operator::new(), base_version()))
}

/// Waits until process `pid()` runs `binary`.
fn wait_exe(pid: impl Fn() -> i32, binary: &Path) -> Option<PathBuf> {
    wait_for(LIMIT, || {
        let exe = std::fs::read_link(format!("/proc/{}/exe", pid())).ok()?;
        (exe == binary).then_some(exe)
    })
}

/// A gateway's configuration with the update settings of these tests.
fn config(broker: &Mosquitto, thing: &str, key: &str, restart_by: &str, max_starts: u32) -> Value {
    let mut c = gateway_config(broker, thing, key);
    merge(
        &mut c,
        &json!({"evergreen": {"fleet": {
            // The binary under test is a debug build, over 512 MiB of it debug info (the
            // default limit); a release binary is about 16 MB.
            "maxBundleBytes": 4u64 << 30,
            "restartBy": restart_by,
            "updateHealthWindowSecs": 60,
            "updateMaxStarts": max_starts
        }}}),
    );
    c
}

/// The group every gateway runs: one pinned function.
fn sleeper() -> Value {
    group(vec![function("sleeper", "sleeper")], vec![])
}

/// A gateway started by hand (`restartBy: exec`).
fn by_hand(broker: &Mosquitto, thing: &str, key: &str, max_starts: u32) -> Runtime {
    Runtime::start_config(
        &sleeper(),
        &config(broker, thing, key, "exec", max_starts),
        &[],
    )
}

/// A stand-in for systemd: starts `evergreen run --config C --group G` again after it exits
/// with a failure or status 80 (half a second later, as RestartSec would), and stops it with
/// SIGTERM when dropped. The group file is on the command line of every start, as an
/// `ExecStart=` line would have it.
struct Managed {
    dir: tempfile::TempDir,
    pid: Arc<AtomicI32>,
    starts: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Managed {
    fn start(group: &Value, patch: &Value) -> Managed {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cfg = test_config(&dir.path().join("root"));
        merge(&mut cfg, patch);
        let config = dir.path().join("config.json");
        let group_file = dir.path().join("group.json");
        std::fs::write(&config, cfg.to_string()).expect("config");
        std::fs::write(&group_file, group.to_string()).expect("group");
        let pid = Arc::new(AtomicI32::new(0));
        let starts = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, n, s) = (pid.clone(), starts.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: at most 30 starts.
            for _ in 0..30 {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let mut child = Command::new(evergreen_bin())
                    .args(["run", "--config"])
                    .arg(&config)
                    .arg("--group")
                    .arg(&group_file)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("start evergreen");
                p.store(child.id() as i32, Ordering::SeqCst);
                n.fetch_add(1, Ordering::SeqCst);
                let status = wait_or_stop(&mut child, &s);
                if s.load(Ordering::SeqCst) || status.is_some_and(|st| st.success()) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Managed {
            dir,
            pid,
            starts,
            stop,
            thread: Some(thread),
        }
    }

    fn pid(&self) -> i32 {
        self.pid.load(Ordering::SeqCst)
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

/// Waits for `child`; on `stop`, SIGTERM and wait (SIGKILL after 10 s).
fn wait_or_stop(child: &mut Child, stop: &AtomicBool) -> Option<std::process::ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut stopping: Option<Instant> = None;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if stop.load(Ordering::SeqCst) {
            match stopping {
                None => {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                    stopping = Some(Instant::now());
                }
                Some(t) if t.elapsed() > Duration::from_secs(10) => {
                    let _ = child.kill();
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn retained(broker: &Mosquitto, thing: &str, what: &str) -> Option<Value> {
    let topic = format!("evergreen/fleet/things/{thing}/{what}");
    serde_json::from_slice(&broker.retained(&topic)?).ok()
}

/// Waits for `thing`'s status for `sequence` to reach `state`; returns it.
fn wait_status(broker: &Mosquitto, thing: &str, sequence: u64, state: &str) -> Value {
    let mut last = Value::Null;
    wait_for(LIMIT, || {
        let v = retained(broker, thing, "status")?;
        last = v.clone();
        (v["sequence"] == json!(sequence) && v["state"] == state).then_some(v)
    })
    .unwrap_or_else(|| panic!("{thing} did not report {state} for {sequence}; last status {last}"))
}

/// Waits for a health message of `thing` saying it runs `version`, published after `after`
/// (RFC 3339, compared as text).
fn wait_runtime_version(broker: &Mosquitto, thing: &str, version: &str, after: &str) -> Value {
    let mut last = Value::Null;
    wait_for(LIMIT, || {
        let v = retained(broker, thing, "health")?;
        last = v.clone();
        (v["runtimeVersion"] == version && v["updatedAt"].as_str() > Some(after)).then_some(v)
    })
    .unwrap_or_else(|| panic!("{thing} does not say it runs {version}; last health {last}"))
}

fn now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `evergreen fleet update` of `binary` (version `version`, served from `url_base`).
fn update(
    op: &Operator,
    broker: &Mosquitto,
    version: &str,
    binary: &Path,
    url_base: &Path,
    who: &[&str],
) -> std::process::Output {
    update_with(&op.key, broker.port, version, binary, url_base, who)
}

fn update_with(
    key: &Path,
    port: u16,
    version: &str,
    binary: &Path,
    url_base: &Path,
    who: &[&str],
) -> std::process::Output {
    let binary_arg = format!("{}={}", target(), binary.display());
    let url = format!("file://{}", url_base.display());
    let port = format!("mqtt://127.0.0.1:{port}");
    let key = key.display().to_string();
    let mut args = vec![
        "fleet",
        "update",
        "--version",
        version,
        "--binary",
        &binary_arg,
        "--url-base",
        &url,
        "--key",
        &key,
        "--fleet",
        "factory",
        "--broker",
        &port,
        "--discover-secs",
        "1",
        "--stage-timeout-secs",
        "150",
    ];
    args.extend_from_slice(who);
    Command::new(evergreen_bin())
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("evergreen fleet update")
}

/// The slot binary the boot record of `root` names as active, and its recorded digest.
fn active_slot(root: &Path) -> Option<(PathBuf, String)> {
    let boot: Value =
        serde_json::from_slice(&std::fs::read(root.join("release/boot.json")).ok()?).ok()?;
    let version = boot["active"]["version"].as_str()?;
    Some((
        root.join("release/slots").join(version).join("evergreen"),
        boot["active"]["sha256"].as_str()?.to_string(),
    ))
}

#[test]
fn self_update_to_a_new_build_reaches_every_gateway_in_both_restart_modes() {
    let Some((_state, broker, op, old)) = fleet() else {
        return;
    };
    let mut by_hand_1 = by_hand(&broker, "gw-1", &op.public, 3);
    let _by_hand_2 = by_hand(&broker, "gw-2", &op.public, 3);
    let managed = Managed::start(
        &sleeper(),
        &config(&broker, "gw-3", &op.public, "serviceManager", 3),
    );
    for thing in ["gw-1", "gw-2", "gw-3"] {
        wait_runtime_version(&broker, thing, &old, "");
    }
    let releases = tempfile::tempdir().expect("tmp");
    let new = format!("{old}-update.1");
    let binary = stamped_release(releases.path(), &new);
    let started = Instant::now();
    let out = update(
        &op,
        &broker,
        &new,
        &binary,
        binary.parent().expect("dir"),
        &[
            "--things",
            "gw-1,gw-2,gw-3",
            "--canary",
            "1",
            "--batch",
            "2",
        ],
    );
    let took = started.elapsed();
    assert!(out.status.success(), "{}", output_text(&out));
    eprintln!("update of 3 gateways to {new}: {:.1} s", took.as_secs_f64());
    for thing in ["gw-1", "gw-2", "gw-3"] {
        let status = wait_status(&broker, thing, 1, "Success");
        assert_eq!(status["runtimeVersion"], json!(new), "{thing}: {status}");
        wait_runtime_version(&broker, thing, &new, "");
    }
    // The managed gateway was started again by its "service manager" (exit 80), once.
    assert_eq!(managed.starts.load(Ordering::SeqCst), 2);
    let (slot, digest) = active_slot(&managed.root()).expect("an active slot");
    assert_eq!(file_sha256(&slot).expect("read the slot"), digest);
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/exe", managed.pid())).ok(),
        Some(slot),
        "the managed runtime runs the active slot's binary"
    );

    // Stopped and started again by hand: the launcher starts the active release.
    let stopped = by_hand_1
        .stop_with(nix::sys::signal::Signal::SIGTERM, LIMIT)
        .expect("stops");
    assert!(stopped.success(), "{stopped:?}");
    let dir = std::mem::replace(&mut by_hand_1.dir, tempfile::tempdir().expect("tmp"));
    let before = now();
    std::thread::sleep(Duration::from_secs(1));
    let again = Runtime::start_config_in(
        dir,
        &sleeper(),
        &config(&broker, "gw-1", &op.public, "exec", 3),
        &[],
    );
    wait_runtime_version(&broker, "gw-1", &new, &before);
    let (slot, _) = active_slot(&again.dir.path().join("root")).expect("an active slot");
    assert_eq!(
        wait_exe(|| again.pid(), &slot),
        Some(slot),
        "exec in place: the same PID runs the active slot's binary"
    );
}

#[test]
fn self_update_that_exits_at_start_rolls_every_canary_back_and_halts() {
    let Some((_state, broker, op, old)) = fleet() else {
        return;
    };
    let _gw1 = by_hand(&broker, "gw-1", &op.public, 2);
    let managed = Managed::start(
        &sleeper(),
        &config(&broker, "gw-2", &op.public, "serviceManager", 2),
    );
    let _gw3 = by_hand(&broker, "gw-3", &op.public, 2);
    for thing in ["gw-1", "gw-2", "gw-3"] {
        wait_runtime_version(&broker, thing, &old, "");
    }
    let releases = tempfile::tempdir().expect("tmp");
    let bad = format!("{old}-dies.1");
    let binary = crashing_release(releases.path(), &bad);
    let started = Instant::now();
    let out = update(
        &op,
        &broker,
        &bad,
        &binary,
        binary.parent().expect("dir"),
        &["--things", "gw-1,gw-2,gw-3", "--canary", "2", "--json"],
    );
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(2),
        "halted after the canaries: {}",
        output_text(&out)
    );
    eprintln!(
        "rollout of a release that exits at start, halted after 2 canaries rolled back: {:.1} s",
        took.as_secs_f64()
    );
    for thing in ["gw-1", "gw-2"] {
        let status = wait_status(&broker, thing, 1, "RolledBack");
        assert_eq!(status["code"], "CrashLoop", "{thing}: {status}");
        assert_eq!(status["runtimeVersion"], json!(old), "{thing}: {status}");
        wait_runtime_version(&broker, thing, &old, "");
    }
    assert!(
        retained(&broker, "gw-3", "status").is_none(),
        "the halted rollout never reached gw-3"
    );
    // The managed gateway: the first start after the switch and one more, then the rollback.
    assert!(
        managed.starts.load(Ordering::SeqCst) >= 3,
        "{}",
        managed.starts.load(Ordering::SeqCst)
    );
    // The record keeps no active release: the stable binary runs.
    assert_eq!(active_slot(&managed.root()), None);
    let stable = evergreen_bin().canonicalize().expect("path");
    assert_eq!(wait_exe(|| managed.pid(), &stable), Some(stable.clone()));
}

#[test]
fn self_update_kill_9_during_the_switch_comes_back_on_a_verified_binary() {
    let Some((_state, broker, op, old)) = fleet() else {
        return;
    };
    let managed = Managed::start(
        &sleeper(),
        &config(&broker, "gw-1", &op.public, "serviceManager", 3),
    );
    wait_runtime_version(&broker, "gw-1", &old, "");
    let releases = tempfile::tempdir().expect("tmp");
    let new = format!("{old}-update.2");
    let binary = stamped_release(releases.path(), &new);
    let first = managed.pid();
    let update_thread = {
        let (key, port, new, binary) = (op.key.clone(), broker.port, new.clone(), binary.clone());
        std::thread::spawn(move || {
            let dir = binary.parent().expect("dir");
            update_with(&key, port, &new, &binary, dir, &["--things", "gw-1"])
        })
    };
    // The first kill: the new runtime has just been started (a new PID), before it could pass
    // its health gate.
    let second = wait_for(LIMIT, || {
        let p = managed.pid();
        (p != first && alive(p)).then_some(p)
    })
    .expect("the runtime restarts onto the new release");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second),
        nix::sys::signal::Signal::SIGKILL,
    );
    let out = update_thread.join().expect("update thread");
    assert!(out.status.success(), "{}", output_text(&out));
    let status = wait_status(&broker, "gw-1", 1, "Success");
    assert_eq!(status["runtimeVersion"], json!(new));
    let (slot, digest) = active_slot(&managed.root()).expect("an active slot");
    assert_eq!(
        file_sha256(&slot).expect("read the slot"),
        digest,
        "the active slot verifies"
    );

    // The active slot's binary changed on disk (a bad sector, a hand edit), then kill -9:
    // the launcher does not start it, the stable binary runs.
    // (Unlinked first: the running binary cannot be written, ETXTBSY.)
    std::fs::remove_file(&slot).expect("unlink the slot's binary");
    std::fs::write(&slot, b"#!/bin/sh\nexit 0\n").expect("corrupt the slot");
    let third = managed.pid();
    let before = now();
    std::thread::sleep(Duration::from_secs(1));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(third),
        nix::sys::signal::Signal::SIGKILL,
    );
    wait_runtime_version(&broker, "gw-1", &old, &before);
    let stable = evergreen_bin().canonicalize().expect("path");
    assert_eq!(
        wait_exe(|| managed.pid(), &stable),
        Some(stable.clone()),
        "the stable binary runs"
    );
}

#[test]
fn self_update_refuses_tampered_unsigned_and_mislabelled_releases() {
    let Some((_state, broker, op, old)) = fleet() else {
        return;
    };
    let rt = by_hand(&broker, "gw-1", &op.public, 3);
    wait_runtime_version(&broker, "gw-1", &old, "");
    let releases = tempfile::tempdir().expect("tmp");
    let new = format!("{old}-update.3");
    let binary = stamped_release(releases.path(), &new);

    // Tampered: the operator signs one file, the server holds another of the same name.
    let served = tempfile::tempdir().expect("tmp");
    let mut bytes = std::fs::read(&binary).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(served.path().join("evergreen"), &bytes).expect("tampered copy");
    let out = update(
        &op,
        &broker,
        &new,
        &binary,
        served.path(),
        &["--things", "gw-1"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let status = wait_status(&broker, "gw-1", 1, "Failure");
    assert_eq!(status["code"], "DigestMismatch", "{status}");
    assert!(
        !rt.dir.path().join("root/release/slots").join(&new).exists(),
        "nothing was installed"
    );

    // Unsigned: a release document without signature is refused on the refused topic.
    let unsigned = json!({"fleet": "factory", "sequence": 9,
        "targets": {"things": ["gw-1"]},
        "release": {"version": new, "binaries": {target(): {"sha256": "00".repeat(32), "size": 1, "url": "file:///dev/null"}}}});
    broker.publish(
        "evergreen/fleet/things/gw-1/deployment",
        unsigned.to_string().as_bytes(),
        true,
    );
    wait_for(LIMIT, || {
        let v = retained(&broker, "gw-1", "refused")?;
        (v["code"] == "Unsigned").then_some(v)
    })
    .expect("the unsigned release is refused");

    // Mislabelled: the binary says another version than the release. The operator's command
    // checks a binary it can run and publishes nothing.
    let out = update(
        &op,
        &broker,
        &format!("{old}-update.4"),
        &binary,
        binary.parent().expect("dir"),
        &["--things", "gw-1"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("--version says"),
        "{}",
        output_text(&out)
    );
    // Still the old runtime, healthy.
    std::thread::sleep(Duration::from_secs(2));
    wait_runtime_version(&broker, "gw-1", &old, "");
    assert!(alive(rt.pid()));
}
