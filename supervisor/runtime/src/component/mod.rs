//! One actor per component: starts its child, speaks the stdio protocol with
//! it, bridges its publishes into the router and the router's deliveries into
//! its stdin, and restarts it with exponential backoff when it exits or breaks
//! the protocol.
//!
//! Each running child has four tasks on the actor's thread: a *writer* (the
//! handshake, then deliveries from the component's bounded inbox, then
//! `Shutdown`), a *reader* (frames from stdout: `Ready`, `Publish`, `Log`, …),
//! a *stderr* reader (free text into the component's log) and a *waiter*
//! (reaps the child). Tasks report to the actor with the child's
//! *generation*, so a late event from a previous child is ignored. The actor
//! never blocks: every wait is a timer or a task.
//!
//! Stopping is stop, then SIGTERM, then SIGKILL: the child gets `Shutdown`
//! and `shutdownGraceMs` to exit, then SIGTERM to its process group and
//! `termGraceMs`, then SIGKILL.
//!
//! The modules follow those seams: [`actor`] owns the child's life cycle,
//! [`policy`] decides restarts (pure), [`spawn`] builds what the sandbox
//! starts, [`writer`], [`reader`] (with its shadow requests), [`stderr`] and
//! [`events`] (the waiter) are the child's tasks, and [`slots`] limits the
//! on-demand children. What the tasks and the Lambda endpoint share lives
//! outside: the deliveries in flight in `crate::inflight`, the log in
//! `crate::logs`. The tasks know nothing of the actor: they report
//! through a `Recipient` of [`events::InstanceEvent`].

mod actor;
mod events;
mod policy;
mod reader;
mod slots;
mod spawn;
mod stderr;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use evergreen_group::plan::RunAs;
use evergreen_ipc::{ComponentKind, LogLevel};

pub(crate) use actor::{ComponentActor, GetStatus, Hold, Release, Retry, RetryError, Stop};
pub use policy::{ExitReason, RestartPolicy, RestartSettings};
pub use slots::Slots;
pub(crate) use spawn::ComponentEnv;

/// Settings every component actor shares (from the core configuration).
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub max_frame: usize,
    pub queue_capacity: usize,
    pub readiness_timeout: Duration,
    pub shutdown_grace: Duration,
    pub term_grace: Duration,
    /// Restart settings for components the configuration says nothing about.
    pub restart: RestartSettings,
    /// Per-component restart settings, keyed by component `Id` or ARN
    /// (`evergreen.components.<key>.restart`).
    pub restart_overrides: std::collections::BTreeMap<String, RestartSettings>,
    /// `<root>/var/log`.
    pub log_root: std::path::PathBuf,
    /// `<root>/resources`: where model resources are read from.
    pub resource_root: std::path::PathBuf,
    /// The program re-executed for built-in connectors (`/proc/self/exe`).
    pub self_exe: std::path::PathBuf,
    pub core_thing_name: String,
    pub core_thing_arn: String,
    pub region: String,
    /// AWS credentials and endpoint overrides for connectors whose manifest declares AWS
    /// access (the composition root hands in the core's credentials chain).
    pub aws: Arc<dyn crate::services::CredentialSource>,
    /// The deployed secrets components may ask for (`evergreen_secrets`).
    pub secrets: Arc<dyn crate::services::SecretSource>,
    /// How long an on-demand (not `Pinned`) function's child may sit idle
    /// before it is stopped; the next message starts it again.
    pub on_demand_idle: Duration,
    /// Who components run as when their group sets no `RunAs`
    /// (`evergreen.defaultRunAs`, resolved); empty = the runtime's own.
    pub default_run_as: RunAs,
    /// Children of on-demand functions that may run at once
    /// (`runtime.maxConcurrentLimit`), shared by every component.
    pub on_demand_slots: Arc<Slots>,
    /// Workers an on-demand function may run at once
    /// (`evergreen.maxWorkersPerFunction`); pinned functions have one.
    pub max_workers_per_function: usize,
    /// Per-component overrides of it, keyed by `Id` or ARN
    /// (`evergreen.components.<key>.maxWorkers`).
    pub max_workers_overrides: std::collections::BTreeMap<String, usize>,
    /// Level and `Space` for component logs (the `Lambda` logger).
    pub user_log_level: LogLevel,
    pub user_log_space_kb: u64,
}

/// The life-cycle states of a component (their names are also the status
/// document's, see `control`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ComponentState {
    Starting,
    Running,
    Stopping,
    Backoff,
    Failed,
    Stopped,
}

/// A snapshot for `status` displays and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentStatus {
    pub arn: String,
    pub id: String,
    pub name: String,
    pub kind: ComponentKind,
    pub state: ComponentState,
    pub pid: Option<u32>,
    /// The pids of all its running workers (an on-demand function may have
    /// several; `pid` is the first of them).
    pub workers: Vec<u32>,
    /// How long its current child has run (since it was spawned); `None`
    /// between children.
    pub uptime: Option<Duration>,
    pub restarts: u64,
    pub last_exit: Option<ExitReason>,
    /// Its log file, absolute (`evergreen logs` reads it).
    pub log_file: std::path::PathBuf,
    /// Lines of its log dropped because the log writer was behind.
    pub log_dropped: u64,
    /// Stopped by an operator (`evergreen stop`): it stays `Stopped` until `evergreen start`
    /// or a new deployment.
    pub stopped_by_operator: bool,
}
