//! The container's init: PID 1 of a component's PID namespace, which forks the component, passes the
//! termination signals on to it, reaps orphans, and leaves when the component does.
//!
//! The kernel delivers to a namespace's PID 1 only the signals it has a
//! handler for (SIGKILL excepted, from outside). A component that is PID 1
//! and relies on SIGTERM's default action (a Python worker) therefore
//! ignores SIGTERM, and every stop ends in SIGKILL after the grace periods.
//! So PID 1 is this small loop instead, as tini does it, but inside the
//! jail's forked child (no extra program to ship or bind):
//!
//! - every signal but the synchronous fault signals is blocked *before* the
//!   fork, so one that arrives before the loop runs stays pending instead of
//!   being dropped (blocked signals are queued even for an init);
//! - the component gets its own process group and the signal mask it was
//!   started with back, then std's `Command` execs it;
//! - init closes every descriptor but the status pipe to the waiter: the
//!   component's stdio pipes and std's exec-error pipe must see only the
//!   component, or the supervisor would never see their end;
//! - SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 go on to the
//!   component's process group (as the supervisor signals a NoContainer
//!   component's group); SIGCHLD and a one-second tick reap every exited
//!   child, orphans included, so none stays a zombie;
//! - when the component has exited, init writes its raw wait status to the
//!   waiter and exits with its code, or 128 + the signal that killed it.
//! - init and the waiter give back their copy-on-write copy of the
//!   supervisor's heap once their loops start (`sys::release_heap`): they never
//!   read it, and without that each would end up holding all of it.
//!
//! Everything here runs in a forked child of the multi-threaded supervisor
//! and must be async-signal-safe: system calls on stack data only, no
//! allocation, no lock, no panic.

use super::sys;

/// Signals init passes on to the component's process group.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Signals never blocked: the kernel raises them for a fault of init itself,
/// and a blocked fault signal is undefined behaviour (it kills anyway).
const SYNCHRONOUS: [libc::c_int; 7] = [
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// The kernel's signal set size (`_NSIG / 8`) on every Linux target this
/// runtime builds for (x86_64, aarch64; also 32-bit ARM): libc's `sigset_t` is
/// larger, and `rt_sigtimedwait` wants the kernel's.
const KERNEL_SIGSET_SIZE: usize = 64 / 8;

/// How long init waits for a signal before it reaps anyway: SIGCHLDs of
/// several children coalesce, and a missed one must not leave a zombie for
/// longer than this.
const REAP_TICK: libc::timespec = libc::timespec {
    tv_sec: 1,
    tv_nsec: 0,
};

/// The `ForkComponent` step. Returns 0 in the component (which goes on to
/// exec) or -1 with `errno` set; in the parent, becomes init and never
/// returns. `status_pipe` is the write end of the pipe to the waiter.
pub(super) fn fork_component(status_pipe: libc::c_int) -> libc::c_int {
    let mut blocked = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let mut before = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset, sigdelset and sigprocmask are async-signal-safe
    // (POSIX) and get pointers to local sets; `blocked` is initialised by
    // sigfillset before any other use, `before` by sigprocmask when it
    // succeeds, and neither is read otherwise.
    let (blocked, before) = unsafe {
        libc::sigfillset(blocked.as_mut_ptr());
        for sig in SYNCHRONOUS {
            libc::sigdelset(blocked.as_mut_ptr(), sig);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, blocked.as_ptr(), before.as_mut_ptr()) < 0 {
            return -1;
        }
        (blocked.assume_init(), before.assume_init())
    };
    match sys::fork() {
        pid if pid < 0 => {
            // SAFETY: restores the mask saved above; async-signal-safe.
            unsafe { libc::sigprocmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) };
            -1
        }
        0 => {
            // The component: nothing of init's, and the mask it was
            // started with (exec keeps the mask).
            sys::close(status_pipe);
            // SAFETY: setpgid and sigprocmask are async-signal-safe and
            // take integers and a pointer to a local set.
            unsafe {
                if libc::setpgid(0, 0) < 0 {
                    return -1;
                }
                libc::sigprocmask(libc::SIG_SETMASK, &before, std::ptr::null_mut())
            }
        }
        component => {
            // Also from this side, so a signal forwarded before the
            // component has run finds its group (setpgid is async-signal-safe).
            // SAFETY: integer arguments only; EACCES after the exec is harmless.
            unsafe { libc::setpgid(component, component) };
            serve(component, status_pipe, &blocked)
        }
    }
}

/// Init's loop: forward, reap, and leave with the component. Never returns.
fn serve(component: libc::pid_t, status_pipe: libc::c_int, waited: &libc::sigset_t) -> ! {
    sys::close_all_but(status_pipe);
    sys::release_heap();
    // The identity switch cleared the parent-death signal armed before it;
    // arm it again, so init (and with it the namespace) goes with the
    // waiter even if the waiter is killed alone.
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    loop {
        // SAFETY: a raw system call (no libc state) with a pointer to the
        // caller's set, no siginfo, and a pointer to a constant timespec.
        let sig = unsafe {
            libc::syscall(
                libc::SYS_rt_sigtimedwait,
                waited as *const libc::sigset_t,
                std::ptr::null_mut::<libc::siginfo_t>(),
                &REAP_TICK as *const libc::timespec,
                KERNEL_SIGSET_SIZE,
            )
        };
        if let Ok(sig) = libc::c_int::try_from(sig) {
            if FORWARDED.contains(&sig) {
                forward(component, sig);
            }
        }
        // Whatever woke us (SIGCHLD, another signal, the tick): reap every
        // child that has exited, orphans included. Bounded by the number of
        // exited children.
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: waitpid is async-signal-safe; status is a local.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == component {
                finish(status_pipe, status);
            }
        }
    }
}

/// Sends `sig` to the component's process group, or to the component alone
/// if the group is gone (its leader has exited and left children behind
/// that init has not reaped yet).
fn forward(component: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill is async-signal-safe and takes integers only.
    unsafe {
        if libc::kill(-component, sig) < 0 {
            libc::kill(component, sig);
        }
    }
}

/// Reports the component's wait status to the waiter and exits with its
/// code (128 + signal for a signal, as shells report it).
fn finish(status_pipe: libc::c_int, status: libc::c_int) -> ! {
    // SAFETY: writes the bytes of a local int to the pipe (async-signal-safe);
    // a failed write leaves the waiter with init's own status.
    unsafe {
        libc::write(
            status_pipe,
            (&raw const status).cast(),
            std::mem::size_of::<libc::c_int>(),
        )
    };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    };
    sys::exit_now(code)
}
