//! The restart policy, pure: how long to wait before the next child and
//! when to give up (`Stop`, or `Fail` on a crash loop), from the settings,
//! the exit and the failure counts the actor keeps. No clock, no randomness
//! of its own: the caller passes both in, so every decision is testable.
//!
//! # What counts as a crash
//!
//! A child that exits with a non-zero status, is killed by a signal it did
//! not get from the runtime's stop, breaks the protocol, is not Ready in
//! time or cannot be started *crashed*: each crash grows the backoff, and
//! `crash_loop_limit` crashes within `crash_loop_window` mark the component
//! `Failed` for `failed_cooldown`. A function whose handler exceeds its
//! `Timeout` is killed and started again too, but that is not a crash: the
//! process was healthy, the handler slow. Timeouts never grow the backoff
//! and never mark a function `Failed` — Greengrass V1 kept invoking such a
//! function, and so does Evergreen. A timeout counts against the crash loop
//! only through what follows it: if the restarted process itself dies
//! repeatedly, those deaths are crashes.

use std::fmt;
use std::process::ExitStatus;
use std::time::Duration;

/// Whether a child that exited is started again (`evergreen.restart.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// After any exit, clean or not.
    #[default]
    Always,
    /// After a failure (a non-zero status, a signal, a broken protocol, no readiness).
    OnFailure,
    /// Never: the component stays stopped.
    Never,
}

/// When a child is restarted, and after how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartSettings {
    pub policy: RestartPolicy,
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    /// Fraction (0..1) of the delay added or removed at random, so children
    /// that failed together do not all restart in the same instant.
    pub jitter: f64,
    /// A child that ran this long counts as healthy: its next failure starts
    /// the backoff from `initial` again.
    pub reset_after: Duration,
    /// Crashes (every failure but a handler timeout) within
    /// `crash_loop_window` that mark the component `Failed` (0 = never).
    pub crash_loop_limit: u32,
    pub crash_loop_window: Duration,
    /// How long a `Failed` component waits before it is tried again.
    pub failed_cooldown: Duration,
}

/// What follows the end of a child.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AfterExit {
    /// Start it again after this delay.
    Restart(Duration),
    /// Leave it stopped, for the given reason (its restart policy).
    Stop(&'static str),
    /// Crash loop: mark it `Failed` and wait for the cool-down.
    Fail,
}

impl RestartSettings {
    /// The delay before restart number `failures + 1`; `unit` is a random
    /// number in [0, 1).
    pub(crate) fn delay(&self, failures: u32, unit: f64) -> Duration {
        let base = self.initial.as_secs_f64() * self.multiplier.powi(failures.min(64) as i32);
        let capped = base.min(self.max.as_secs_f64());
        let factor = 1.0 + self.jitter * (2.0 * unit - 1.0);
        Duration::from_secs_f64((capped * factor).clamp(0.0, self.max.as_secs_f64()))
    }

    /// Decides what follows an exit for `reason`. `consecutive` counts the
    /// crashes since the child last ran healthily (it sets the backoff);
    /// `in_window` counts the crashes within the crash-loop window, this one
    /// included. The caller counts only exits for which
    /// [`ExitReason::is_crash`] holds: a handler timeout restarts the
    /// function after the initial delay and never marks it `Failed`.
    pub(crate) fn decide(
        &self,
        reason: &ExitReason,
        consecutive: u32,
        in_window: usize,
        unit: f64,
    ) -> AfterExit {
        let failed = reason.is_failure();
        match self.policy {
            RestartPolicy::Never => return AfterExit::Stop("its restart policy is never"),
            RestartPolicy::OnFailure if !failed => {
                return AfterExit::Stop(
                    "it exited with status 0 and its restart policy is on-failure",
                )
            }
            RestartPolicy::Always | RestartPolicy::OnFailure => {}
        }
        let crashed = reason.is_crash();
        if crashed && self.crash_loop_limit > 0 && in_window >= self.crash_loop_limit as usize {
            return AfterExit::Fail;
        }
        AfterExit::Restart(self.delay(if crashed { consecutive } else { 0 }, unit))
    }
}

/// Why the last child of a component ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    Exited(i32),
    Signalled(i32),
    ProtocolViolation(String),
    ReadinessTimeout(Duration),
    /// A function took longer than its `Timeout` over one delivery.
    HandlerTimeout(Duration),
    SpawnFailed(String),
    /// The kernel's OOM killer ended it at its cgroup's memory limit (KB).
    MemoryLimit(u64),
}

impl ExitReason {
    /// Anything but a clean exit with status 0 is a failure (for the
    /// `on-failure` policy).
    pub(crate) fn is_failure(&self) -> bool {
        !matches!(self, ExitReason::Exited(0))
    }

    /// Whether the exit counts toward the crash loop and grows the backoff:
    /// every failure but a handler timeout. A function that exceeds its
    /// `Timeout` is killed by the runtime although its process was healthy;
    /// Greengrass V1 went on invoking such a function, so a slow handler
    /// never parks its messages behind a `Failed` cool-down. Only a process
    /// that itself dies (or breaks the protocol, or never becomes Ready)
    /// repeatedly is a crash loop.
    pub(crate) fn is_crash(&self) -> bool {
        self.is_failure() && !matches!(self, ExitReason::HandlerTimeout(_))
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Exited(code) => write!(f, "exited with status {code}"),
            ExitReason::Signalled(sig) => write!(f, "killed by signal {sig}"),
            ExitReason::ProtocolViolation(why) => write!(f, "protocol violation: {why}"),
            ExitReason::ReadinessTimeout(t) => write!(f, "not Ready within {} ms", t.as_millis()),
            ExitReason::HandlerTimeout(t) => {
                write!(
                    f,
                    "a delivery was not handled within its Timeout of {} s",
                    t.as_secs()
                )
            }
            ExitReason::SpawnFailed(why) => write!(f, "could not start: {why}"),
            ExitReason::MemoryLimit(kb) => {
                write!(
                    f,
                    "memory limit exceeded (MemorySize {kb} KB): killed by the kernel"
                )
            }
        }
    }
}

/// The reason a reaped child's status gives.
pub(super) fn exit_reason(status: ExitStatus) -> ExitReason {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitReason::Exited(code),
        (None, Some(sig)) => ExitReason::Signalled(sig),
        (None, None) => ExitReason::Exited(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(policy: RestartPolicy) -> RestartSettings {
        RestartSettings {
            policy,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: 0.2,
            reset_after: Duration::from_secs(60),
            crash_loop_limit: 3,
            crash_loop_window: Duration::from_secs(60),
            failed_cooldown: Duration::from_secs(600),
        }
    }

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let r = settings(RestartPolicy::Always);
        assert_eq!(r.delay(0, 0.5), Duration::from_millis(100));
        assert_eq!(r.delay(3, 0.5), Duration::from_millis(800));
        assert_eq!(r.delay(30, 0.5), Duration::from_secs(5));
        assert!(
            r.delay(0, 0.0) >= Duration::from_millis(79)
                && r.delay(0, 0.0) <= Duration::from_millis(81)
        );
        assert!(r.delay(0, 0.999_999) <= Duration::from_millis(121));
        assert!(
            r.delay(40, 0.999) <= Duration::from_secs(5),
            "jitter never exceeds the cap"
        );
    }

    #[test]
    fn restart_policies_decide_as_documented() {
        let crash = ExitReason::Exited(3);
        let clean = ExitReason::Exited(0);
        let killed = ExitReason::Signalled(9);
        let bad = ExitReason::ProtocolViolation("x".into());
        let always = settings(RestartPolicy::Always);
        assert_eq!(
            always.decide(&clean, 0, 0, 0.5),
            AfterExit::Restart(Duration::from_millis(100))
        );
        assert_eq!(
            always.decide(&crash, 2, 1, 0.5),
            AfterExit::Restart(Duration::from_millis(400))
        );
        assert_eq!(
            always.decide(&crash, 2, 3, 0.5),
            AfterExit::Fail,
            "third failure in the window"
        );
        assert_eq!(always.decide(&bad, 0, 3, 0.5), AfterExit::Fail);
        assert!(
            matches!(always.decide(&clean, 9, 9, 0.5), AfterExit::Restart(_)),
            "a clean exit is no crash"
        );

        let on_failure = settings(RestartPolicy::OnFailure);
        assert!(matches!(
            on_failure.decide(&clean, 0, 0, 0.5),
            AfterExit::Stop(_)
        ));
        assert!(matches!(
            on_failure.decide(&killed, 0, 1, 0.5),
            AfterExit::Restart(_)
        ));
        assert_eq!(on_failure.decide(&killed, 0, 3, 0.5), AfterExit::Fail);

        let never = settings(RestartPolicy::Never);
        for reason in [&clean, &crash, &killed, &bad] {
            assert!(
                matches!(never.decide(reason, 0, 1, 0.5), AfterExit::Stop(_)),
                "{reason}"
            );
        }

        let timeout = ExitReason::HandlerTimeout(Duration::from_secs(1));
        assert!(timeout.is_failure() && !timeout.is_crash());
        assert_eq!(
            always.decide(&timeout, 0, 50, 0.5),
            AfterExit::Restart(Duration::from_millis(100)),
            "a handler timeout never marks the function Failed nor grows the backoff"
        );
        assert!(matches!(
            on_failure.decide(&timeout, 0, 50, 0.5),
            AfterExit::Restart(_)
        ));

        let unlimited = RestartSettings {
            crash_loop_limit: 0,
            ..always
        };
        assert!(matches!(
            unlimited.decide(&crash, 50, 50, 0.5),
            AfterExit::Restart(_)
        ));
    }
}
