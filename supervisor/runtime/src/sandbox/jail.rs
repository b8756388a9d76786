//! The container jail: a fixed, commented sequence of steps run between fork and exec.
//!
//! [`JailPlan::build`] turns what a component needs (its program, resources,
//! identity, cgroup) into a list of [`Step`]s, with every path already a
//! `CString`. [`run`] executes them in the forked child, where nothing may
//! allocate or take a lock (the supervisor is multi-threaded), so building
//! and running are apart: the plan and its order are unit-tested without
//! root, and the runner only makes system calls. The order, as firecracker's
//! jailer and youki do it:
//!
//! 1. die with the supervisor (`PR_SET_PDEATHSIG`);
//! 2. join the component's cgroups (before anything else runs, so nothing
//!    escapes the limits);
//! 3. new mount, PID, IPC and UTS namespaces (the network stays the host's,
//!    as in Greengrass);
//! 4. fork: the forked child is PID 1 of the new PID namespace and goes on;
//!    the process the supervisor started stays outside as a small waiter that
//!    holds no file descriptor but the read end of a status pipe, and leaves
//!    with the component's exact status (as PID 1 reports it on that pipe),
//!    so the supervisor's view (exit status, process group) is unchanged;
//! 5. PID 1 also dies with its waiter, and when PID 1 dies the kernel kills
//!    everything else in the namespace: no process outlives the component,
//!    even after a `kill -9` of the supervisor;
//! 6. hostname; all mounts private, so nothing below propagates to the host;
//! 7. a fresh tmpfs root with read-only bind mounts of what programs need,
//!    a minimal `/dev`, `/proc` of the new PID namespace (read-only, with the
//!    kernel's settings read-only and its memory, keys and timers masked, as
//!    runc does: [`PROC_READ_ONLY`](plan::PROC_READ_ONLY),
//!    [`PROC_MASKED`](plan::PROC_MASKED)), a private `/tmp`, the granted
//!    resources and the component's own executable;
//! 8. `pivot_root` into it and detach the old root; the root is then
//!    remounted read-only;
//! 9. drop every capability from the bounding set, switch to the `RunAs`
//!    groups and user, clear the remaining capability sets (also for uid 0),
//!    set `no_new_privs`, and install the seccomp filter (`jail/seccomp.rs`:
//!    no new namespaces, mounts, keyrings, BPF, module loading, ptrace…);
//! 10. fork again: the forked child, PID 2, is the component (its own
//!     process group, the signal mask it was started with); std's `Command`
//!     execs the program in it. PID 1 stays as the namespace's *init* (see
//!     `jail/init.rs`): jailed like the component but holding none of its file
//!     descriptors, it forwards termination signals to the component, reaps
//!     orphans, and exits when the component does. Without it the component
//!     itself would be PID 1, which the kernel shields from every signal it
//!     has no handler for: a program that relies on SIGTERM's default action
//!     (a Python worker) would ignore it and end only in SIGKILL.
//!
//! This module is the runner ([`run`]) and the waiter it leaves behind; the plan is built in
//! `jail/plan.rs`, the system calls are wrapped in `jail/sys.rs`.

use std::io;

mod init;
mod plan;
pub(crate) mod seccomp;
mod sys;

use plan::MS_HARDEN;
pub(crate) use plan::{BindMount, JailError, JailPlan, JailSpec, Step, SystemPath, SYSTEM_PATHS};
pub use plan::{CapabilityMasks, CapabilityPlan};

/// The highest capability number to drop from the bounding set. Numbers
/// the kernel does not know are skipped (`EINVAL`).
const LAST_CAP: libc::c_int = 63;

/// Writes `"evergreen-jail: <step> failed: errno <n>\n"` to stderr without
/// allocating, so the component's log says which step failed.
fn report(step: &Step, errno: i32) {
    let mut buf = [0u8; 160];
    let mut len = 0;
    for part in [
        b"evergreen-jail: ".as_slice(),
        step.name().as_bytes(),
        b" failed: errno ".as_slice(),
    ] {
        let n = part.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&part[..n]);
        len += n;
    }
    let mut digits = [0u8; 12];
    let mut d = 0;
    let mut v = errno.unsigned_abs();
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 || d == digits.len() {
            break;
        }
    }
    while d > 0 && len < buf.len() - 1 {
        d -= 1;
        buf[len] = digits[d];
        len += 1;
    }
    buf[len] = b'\n';
    len += 1;
    // SAFETY: buf is a valid buffer of at least `len` bytes; fd 2 is the
    // child's stderr pipe. A failed write has nowhere else to go.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
    }
}

fn check(step: &Step, result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        let err = io::Error::last_os_error();
        report(step, err.raw_os_error().unwrap_or(0));
        Err(err)
    } else {
        Ok(())
    }
}

/// Runs the plan in a forked child. Only async-signal-safe system calls:
/// no allocation, no locks, no panics (every input was prepared by
/// [`JailPlan::build`]). `supervisor` is the pid the first parent-death check
/// compares against.
///
/// Must be called only in a child between fork and exec (std's `pre_exec`):
/// it changes the calling process's namespaces, mounts and identity, and the
/// waiter it leaves behind never returns.
pub(crate) fn run(plan: &JailPlan, supervisor: libc::pid_t) -> io::Result<()> {
    let mut parent = supervisor;
    // The write end of the status pipe, in PID 1 (see `ForkInit`).
    let mut status_pipe: libc::c_int = -1;
    for step in &plan.steps {
        let result = match step {
            Step::DieWithParent => {
                let r = sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                // The parent may have gone between fork and prctl. (Inside
                // the new PID namespace the parent is outside it, so
                // getppid() is 0 both before and after: the waiter's own
                // parent-death signal covers that window.)
                if r == 0 && sys::getppid() != parent {
                    sys::exit_now(1);
                }
                r
            }
            Step::JoinCgroup(procs) => sys::write_zero_to(procs),
            Step::Unshare => sys::unshare(
                libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS,
            ),
            // PID 1 tells the waiter how the component ended over a pipe:
            // its own exit status can say "128 + signal" at best, since
            // the kernel does not let a namespace's init die of a signal it
            // sends itself.
            Step::ForkInit => match sys::pipe_cloexec() {
                None => -1,
                Some((read_end, write_end)) => match sys::fork() {
                    pid if pid < 0 => -1,
                    0 => {
                        sys::close(read_end);
                        status_pipe = write_end;
                        parent = sys::getppid();
                        0
                    }
                    pid => wait_and_mirror(pid, read_end),
                },
            },
            Step::SetHostname(name) => sys::sethostname(name),
            Step::MakeMountsPrivate => {
                sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
            }
            Step::MountTmpfs {
                target,
                options,
                flags,
            } => sys::mount(
                Some(c"tmpfs"),
                target,
                Some(c"tmpfs"),
                *flags,
                Some(options),
            ),
            Step::MakeDir(path) => match sys::mkdir(path) {
                r if r < 0 && sys::errno() == libc::EEXIST => 0,
                r => r,
            },
            Step::Touch(path) => sys::touch(path),
            Step::Symlink { target, link } => sys::symlink(target, link),
            Step::Bind {
                source,
                target,
                remount,
            } => match sys::mount(
                Some(source),
                target,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            ) {
                r if r < 0 => r,
                // Flags on a bind take effect only through a remount.
                _ => sys::mount(
                    None,
                    target,
                    None,
                    libc::MS_BIND | libc::MS_REMOUNT | *remount,
                    None,
                ),
            },
            Step::MountProc(target) => sys::mount(
                Some(c"proc"),
                target,
                Some(c"proc"),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                None,
            ),
            Step::ReadOnly(path) => {
                match sys::mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None) {
                    r if r < 0 && sys::errno() == libc::ENOENT => 0,
                    r if r < 0 => r,
                    _ => sys::mount(
                        None,
                        path,
                        None,
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | MS_HARDEN,
                        None,
                    ),
                }
            }
            Step::Mask(path) => match sys::is_dir(path) {
                None => 0,
                Some(true) => sys::mount(
                    Some(c"tmpfs"),
                    path,
                    Some(c"tmpfs"),
                    libc::MS_RDONLY | MS_HARDEN,
                    Some(c"size=0,mode=0555"),
                ),
                Some(false) => sys::mount(Some(c"/dev/null"), path, None, libc::MS_BIND, None),
            },
            Step::PivotRoot { new_root, put_old } => match sys::chdir(new_root) {
                r if r < 0 => r,
                _ => sys::pivot_root(new_root, put_old),
            },
            Step::DetachOldRoot(old) => {
                let mut r = sys::chdir(c"/");
                if r == 0 {
                    r = sys::umount_detach(old);
                }
                if r == 0 {
                    r = sys::rmdir(old);
                }
                r
            }
            Step::RemountRootReadOnly => sys::mount(
                None,
                c"/",
                None,
                libc::MS_REMOUNT | libc::MS_RDONLY | MS_HARDEN,
                None,
            ),
            Step::Chdir(path) => sys::chdir(path),
            Step::DropBoundingCapabilities { keep } => {
                // Raw prctl, not `caps::drop`: see `CapabilityPlan` (no allocation after fork).
                // Every number up to 63, also those `caps` does not name (a newer kernel's).
                for cap in 0..=LAST_CAP {
                    if keep & (1u64 << cap) == 0 {
                        // EINVAL: a number this kernel does not have; nothing to drop.
                        sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong);
                    }
                }
                // SAFETY: integer arguments only.
                unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                        0,
                        0,
                        0,
                    )
                }
            }
            Step::SetGroups(groups) => sys::setgroups(groups),
            Step::SetGid(gid) => sys::setresgid(*gid),
            Step::KeepCapabilities => sys::prctl(libc::PR_SET_KEEPCAPS, 1),
            Step::SetUid(uid) => sys::setresuid(*uid),
            Step::SetCapabilities {
                effective,
                permitted,
                inheritable,
            } => sys::set_capabilities(*effective, *permitted, *inheritable),
            Step::RaiseAmbient(mask) => {
                let mut r = 0;
                for cap in 0..=LAST_CAP {
                    if r == 0 && mask & (1u64 << cap) != 0 {
                        // SAFETY: integer arguments only.
                        r = unsafe {
                            libc::prctl(
                                libc::PR_CAP_AMBIENT,
                                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                                cap as libc::c_ulong,
                                0,
                                0,
                            )
                        };
                    }
                }
                r
            }
            Step::NoNewPrivileges => sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1),
            Step::Seccomp(filter) => filter.install(),
            Step::ForkComponent => init::fork_component(status_pipe),
        };
        check(step, result)?;
    }
    Ok(())
}

/// The waiter: holds nothing open but the status pipe's read end (so the
/// supervisor's pipes and std's exec-error pipe see only the container),
/// ignores the termination signals the supervisor sends to the process
/// group (PID 1 gets them too and forwards them to the component), and
/// leaves exactly as the component did: with the status PID 1 reports on
/// `status_pipe`, or with PID 1's own when it reported none (it was
/// killed, or a jail step failed). Never returns.
///
/// Called in the forked child; async-signal-safe calls only.
fn wait_and_mirror(child: libc::pid_t, status_pipe: libc::c_int) -> ! {
    sys::close_all_but(status_pipe);
    sys::release_heap();
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
    ] {
        // SAFETY: setting a disposition to SIG_IGN has no preconditions.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(child, &mut status, 0) };
        // SAFETY: errno location is thread-local and always valid.
        if r == child || (r < 0 && unsafe { *libc::__errno_location() } != libc::EINTR) {
            break;
        }
    }
    // PID 1 has exited, so every process of the namespace is gone (the
    // kernel reaps them before PID 1's own exit completes) and nothing
    // holds the write end: this read cannot block.
    let mut reported: libc::c_int = 0;
    let size = std::mem::size_of::<libc::c_int>();
    // SAFETY: reads at most `size` bytes into a local int.
    let n = unsafe { libc::read(status_pipe, (&raw mut reported).cast(), size) };
    if usize::try_from(n) == Ok(size) {
        status = reported;
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: restore the default action and die of the same signal, so
        // the supervisor sees "killed by signal N" as it would without us.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    };
    // SAFETY: ends this process without running the parent's exit handlers.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests;
