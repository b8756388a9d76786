//! Which binary runs `evergreen run`, and how the runtime restarts onto another one: the
//! process side of the release slots (`evergreen_fleet::slots` has the rule and the files).
//!
//! [`launch`] runs first in every `evergreen run` started from the stable binary: it reads the
//! boot record and, when a release slot is to run, hands over to it, by `exec` in place (same
//! PID, so systemd's `Type=notify` main process stays the same) or, for a release on trial with
//! no service manager to start it again, by running it as a **watched child**: a crash, a
//! `kill -9` or a failed health gate of the child sends the watcher back to the boot record,
//! which starts the trial again or rolls back. Without the watcher a runtime started by hand
//! whose new release exits at once would simply be gone.
//!
//! [`restart`] is how a running runtime gets back to the launcher once its components have
//! stopped: exit status [`crate::EXIT_RESTART`] for a service manager (systemd's unit lists it
//! in `RestartForceExitStatus=`) or the watcher, else `exec` of the stable binary.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use evergreen_config::{CoreConfig, RestartBy};
use evergreen_fleet::slots::{self, Launch, Slots};
use evergreen_ops::lock::RootLock;
use evergreen_ops::release::version;
use nix::sys::signal::{SigSet, Signal};

/// Set in a watched child's environment (the watcher's PID): it restarts by exiting.
const WATCHED: &str = "EVERGREEN_WATCHED";

/// How this runtime restarts onto another release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Exit with [`crate::EXIT_RESTART`]: systemd, another service manager, or the watcher
    /// starts the stable binary again.
    ServiceManager,
    /// `exec` the stable binary in place.
    Exec,
}

/// The mode `evergreen.fleet.restartBy` and the environment give.
pub fn mode(cfg: &CoreConfig) -> Mode {
    if std::env::var_os(WATCHED).is_some() {
        return Mode::ServiceManager;
    }
    let by = cfg
        .evergreen
        .fleet
        .as_ref()
        .map_or(RestartBy::Auto, |f| f.restart_by);
    match by {
        RestartBy::ServiceManager => Mode::ServiceManager,
        RestartBy::Exec => Mode::Exec,
        // systemd sets INVOCATION_ID for every unit it starts.
        RestartBy::Auto if std::env::var_os("INVOCATION_ID").is_some() => Mode::ServiceManager,
        RestartBy::Auto => Mode::Exec,
    }
}

fn max_starts(cfg: &CoreConfig) -> u32 {
    cfg.evergreen
        .fleet
        .as_ref()
        .map_or(3, |f| f.update_max_starts)
}

/// Runs before anything else of `evergreen run`: returns when this binary is to run the
/// runtime itself; otherwise hands over to a release slot and does not return (an `exec` that
/// fails is reported and this binary runs after all).
pub fn launch(cfg: &CoreConfig) {
    let slots = Slots::new(cfg.write_dir());
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    if slots.holds(&exe) {
        // A slot's binary, started by the launcher: it runs.
        return;
    }
    let Some(next) = choose(cfg, &slots, &exe) else {
        return;
    };
    match next {
        Launch::Stable => {}
        Launch::Slot {
            path, trial: true, ..
        } if mode(cfg) == Mode::Exec => watch(cfg, &slots, &exe, path),
        Launch::Slot { path, version, .. } => {
            let e = exec(&path);
            eprintln!(
                "evergreen: cannot start release {version} ({}): {e}; this binary runs instead",
                path.display()
            );
        }
    }
}

/// Reads the boot record under the root lock and decides; `None` when there is no record (no
/// update was ever taken) or the root is locked (the run reports that itself).
fn choose(cfg: &CoreConfig, slots: &Slots, exe: &Path) -> Option<Launch> {
    // Held from the read to the write: the start count must not be lost to another start.
    let _lock = RootLock::acquire(cfg.write_dir()).ok()?;
    let mut boot = match slots.load() {
        Ok(Some(boot)) => boot,
        Ok(None) => return None,
        Err(e) => {
            eprintln!("evergreen: cannot read the release boot record ({e}); this binary runs");
            return None;
        }
    };
    boot.stable_path = Some(exe.to_path_buf());
    let mut notes = Vec::new();
    let next = slots::decide(
        &mut boot,
        version(),
        max_starts(cfg),
        |s| slots.verify(s),
        &mut notes,
    );
    for note in &notes {
        eprintln!("evergreen: {note}");
    }
    if let Err(e) = slots.save(&boot) {
        // Without the start count a crash loop would never end: only a release that already
        // proved healthy is started.
        eprintln!("evergreen: cannot write the release boot record ({e})");
        if matches!(next, Launch::Slot { trial: true, .. }) {
            eprintln!("evergreen: the release on trial is not started; this binary runs");
            return Some(Launch::Stable);
        }
    }
    Some(next)
}

/// This process's arguments, for the binary that takes over.
fn args() -> Vec<OsString> {
    std::env::args_os().skip(1).collect()
}

/// Replaces this process with `binary` and the same arguments; returns only on failure. The
/// same command line: the runtime that comes back runs what any restart would (the last good
/// deployment, or the `--group` file when one is given).
fn exec(binary: &Path) -> std::io::Error {
    std::process::Command::new(binary).args(args()).exec()
}

/// Runs the release on trial at `first` as a child, forwarding SIGINT, SIGTERM and SIGHUP to
/// it, and after each exit asks the boot record again: the trial again (counted), or the
/// release that is to run now (exec), or this binary (returns). A child that stopped on a
/// signal, or that crashed after it became healthy, ends the watcher with its status, as if
/// it had been started directly.
fn watch(cfg: &CoreConfig, slots: &Slots, exe: &Path, first: PathBuf) {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    // Blocked here, taken with sigwait below; each child starts with an empty mask
    // (`run_child`), and every way out of here unblocks them first.
    if let Err(e) = set.thread_block() {
        eprintln!("evergreen: cannot watch the new release ({e}); starting it directly");
        let e = exec(&first);
        eprintln!("evergreen: cannot start {}: {e}", first.display());
        return;
    }
    let unblock = || {
        let _ = set.thread_unblock();
    };
    let mut path = first;
    loop {
        let status = run_child(&path, &set);
        let stopped = status.as_ref().is_ok_and(|s| s.success());
        let restart = status
            .as_ref()
            .is_ok_and(|s| s.code() == Some(i32::from(crate::EXIT_RESTART)));
        match &status {
            Ok(s) if !s.success() && !restart => {
                eprintln!("evergreen: the release on trial exited ({s})")
            }
            Err(e) => eprintln!("evergreen: cannot start {}: {e}", path.display()),
            _ => {}
        }
        let on_trial = matches!(slots.load(), Ok(Some(b)) if b.trial.is_some());
        if stopped || (!restart && !on_trial && status.is_ok()) {
            // Stopped by a signal we forwarded, or a healthy release that crashed: what a
            // runtime started directly would have done.
            std::process::exit(status.map_or(1, |s| exit_code(&s)));
        }
        match choose(cfg, slots, exe) {
            Some(Launch::Slot {
                path: next,
                trial: true,
                ..
            }) => {
                path = next;
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            Some(Launch::Slot { path: next, .. }) => {
                unblock();
                let e = exec(&next);
                eprintln!(
                    "evergreen: cannot start {}: {e}; this binary runs",
                    next.display()
                );
                return;
            }
            Some(Launch::Stable) | None => {
                unblock();
                return;
            }
        }
    }
}

/// Starts `binary` as a watched child and waits for it, forwarding signals.
fn run_child(binary: &Path, set: &SigSet) -> std::io::Result<std::process::ExitStatus> {
    let mut command = std::process::Command::new(binary);
    command
        .args(args())
        .env(WATCHED, std::process::id().to_string());
    // SAFETY: the closure runs in the child between fork and exec and only makes two
    // async-signal-safe system calls (sigprocmask, prctl); nothing is allocated or locked.
    unsafe {
        command.pre_exec(|| {
            // The watcher's blocked signals would be the child's too (the mask survives
            // fork and exec): the runtime must get SIGTERM.
            SigSet::empty()
                .thread_set_mask()
                .map_err(std::io::Error::from)?;
            // If the watcher dies (kill -9), the child is told to stop rather than run on
            // with nobody to restart or roll it back.
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn()?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(signal) => {
                let _ = nix::sys::signal::kill(pid, signal);
            }
        }
    }
}

/// The exit code a shell would give for `status`.
fn exit_code(status: &std::process::ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// How `evergreen run` ends once it stopped to restart onto another release: the exit
/// status for the service manager or watcher, or `exec` of the stable binary.
pub fn restart(cfg: &CoreConfig) -> ExitCode {
    if mode(cfg) == Mode::ServiceManager {
        return ExitCode::from(crate::EXIT_RESTART);
    }
    let slots = Slots::new(cfg.write_dir());
    let stable = slots
        .load()
        .ok()
        .flatten()
        .and_then(|b| b.stable_path)
        .or_else(|| std::env::current_exe().ok());
    match stable {
        Some(stable) => {
            tracing::info!("restarting: executing {}", stable.display());
            let e = exec(&stable);
            eprintln!("evergreen: cannot execute {}: {e}", stable.display());
        }
        None => eprintln!("evergreen: no binary to restart into"),
    }
    ExitCode::from(crate::EXIT_RESTART)
}
