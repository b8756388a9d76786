//! `NoContainer`: plain exec as the configured uid/gid, as Greengrass does it.
//!
//! No namespaces, no cgroup, no resource mounts: the component sees the host
//! file system with its identity's permissions. What this module must get
//! right is the process hygiene: a clean environment, piped stdio, its own
//! process group, and death with the supervisor.

use std::process::Stdio;

use nix::unistd::{getuid, Pid};
use tokio::process::Command;

use super::{Sandbox, SandboxError, SpawnSpec, Spawned};

/// The plain-exec sandbox.
#[derive(Debug, Default)]
pub(crate) struct PlainExec {
    _private: (),
}

impl PlainExec {
    pub(crate) fn new() -> Self {
        PlainExec { _private: () }
    }
}

impl Sandbox for PlainExec {
    fn spawn(&self, spec: &SpawnSpec) -> Result<Spawned, SandboxError> {
        let own_uid = getuid().as_raw();
        let wants_switch = spec.run_as.uid.is_some_and(|u| u != own_uid)
            || spec
                .run_as
                .gid
                .is_some_and(|g| g != nix::unistd::getgid().as_raw());
        if wants_switch && own_uid != 0 {
            return Err(SandboxError::Identity {
                arn: spec.arn.clone(),
                uid: spec.run_as.uid,
                gid: spec.run_as.gid,
                own_uid,
            });
        }
        let mut cmd = Command::new(&spec.program);
        if let Some(arg0) = &spec.arg0 {
            cmd.arg0(arg0);
        }
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: the terminal's Ctrl-C reaches only the
            // supervisor, which then stops children in order, and a stop can
            // signal the child's own children too.
            .process_group(0)
            // Dropping the handle without waiting must not leave a process.
            .kill_on_drop(true);
        if let Some(dir) = &spec.working_dir {
            cmd.current_dir(dir);
        }
        if wants_switch {
            // std's Command clears supplementary groups when switching from root.
            if let Some(gid) = spec.run_as.gid {
                cmd.gid(gid);
            }
            if let Some(uid) = spec.run_as.uid {
                cmd.uid(uid);
            }
        }
        let parent = Pid::this().as_raw();
        // Runs in the forked child before exec, where only async-signal-safe
        // calls are allowed: prctl, getppid and _exit are; nothing allocates
        // or takes a lock.
        let die_with_supervisor = move || {
            // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number has no
            // memory-safety preconditions.
            if unsafe {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                )
            } != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The supervisor may have died between fork and prctl; then the
            // signal will never come, so leave now.
            // SAFETY: getppid takes no arguments and cannot fail.
            if unsafe { libc::getppid() } != parent {
                // SAFETY: _exit ends the forked child without running the
                // parent's atexit handlers or flushing its copied buffers.
                unsafe { libc::_exit(1) };
            }
            Ok(())
        };
        // SAFETY: the closure only makes async-signal-safe calls (see above).
        unsafe {
            cmd.pre_exec(die_with_supervisor);
        }
        cmd.spawn()
            .map(|child| Spawned {
                child,
                container: None,
            })
            .map_err(|source| SandboxError::Spawn {
                arn: spec.arn.clone(),
                program: spec.program.display().to_string(),
                source,
            })
    }
}
