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
//! Shadow requests (`FromChild::Shadow`) go to the local shadow service
//! (`evergreen_shadow`) as the request topic `$aws/things/<thing>/shadow/<op>`
//! with the component's ARN as source, and the `/accepted` or `/rejected`
//! payload comes back as `ShadowResult`. As for a Python function's
//! shadow call through the Lambda endpoint, the service also publishes its
//! answers (`…/accepted`, `…/rejected`, `…/update/documents`,
//! `…/update/delta`) with source `GGShadowService`, so the group's
//! subscriptions hear a change whoever made it; and as there, no
//! subscription is needed to ask. A request costs a file read and maybe an
//! fsync, so it never runs on the actors' thread: each child gets one
//! shadow task, started at its first request, that hands the requests in
//! arrival order to the blocking pool one at a time (a child's requests are
//! handled in the order it sent them) and answers through the writer. Bad
//! requests are answered as the service answers (`code`, `message`,
//! `timestamp`, the request's `clientToken`):
//! 400 for a thing name that cannot form the topic (empty, over 128 bytes,
//! or with `/`, `+`, `#` or NUL; those get no `…/rejected` publish, as
//! there is no topic to publish on), 429 when `SHADOW_QUEUE` requests of
//! the child are already waiting, 503 when the runtime has no shadow
//! service (its directory could not be opened at start).

use std::cell::RefCell;
use std::ffi::OsString;
use std::fmt;
use std::path::Path;
use std::process::ExitStatus;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use evergreen_ipc::link::{expect_child_hello, variant_name, HandshakeError, SupervisorLink};
use evergreen_ipc::{
    ComponentConfig, ComponentKind, FrameReader, FromChild, LogLevel, ResourceGrant, ShadowOp,
};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, oneshot};

use crate::lambda::{self, FunctionLink, LambdaHub};
use crate::logs::LogFile;
use crate::router::{QueueReceiver, Router};
use crate::sandbox::{ContainerGuard, MountKind, ResourceMount, Sandboxes, SpawnSpec};
use evergreen_config::RestartPolicy;
use evergreen_group::plan::{ComponentSpec, GroupPlan, Isolation, Launch, ResourceData, RunAs};

/// Longest stderr line kept whole; longer ones are cut so a child that never
/// writes a newline cannot make us buffer without bound.
const MAX_STDERR_LINE: usize = 16 << 10;
/// Frames a reader routes before letting other tasks run.
const READER_YIELD_EVERY: usize = 32;
/// Deliveries written before a flush, so a busy target still sees its
/// messages promptly.
const DELIVERY_BATCH: usize = 64;
/// Shadow requests of one child that may wait for its shadow task; more are
/// answered 429 at once. The SDK waits for each answer, so only a child
/// firing requests from many tasks reaches this, and it bounds what one
/// child can queue.
const SHADOW_QUEUE: usize = 16;
/// AWS IoT's limit on thing names.
const MAX_THING_NAME: usize = 128;

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
    /// AWS credentials and endpoint overrides for connectors (`evergreen_aws::credentials`).
    pub aws: Arc<evergreen_aws::credentials::AwsAccess>,
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
    /// Level and `Space` for component logs (the `Lambda` logger).
    pub user_log_level: LogLevel,
    pub user_log_space_kb: u64,
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
    /// Failures within `crash_loop_window` that mark the component `Failed`
    /// (0 = never).
    pub crash_loop_limit: u32,
    pub crash_loop_window: Duration,
    /// How long a `Failed` component waits before it is tried again.
    pub failed_cooldown: Duration,
}

/// What follows the end of a child.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterExit {
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
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let base = self.initial.as_secs_f64() * self.multiplier.powi(failures.min(64) as i32);
        let capped = base.min(self.max.as_secs_f64());
        let factor = 1.0 + self.jitter * (2.0 * unit - 1.0);
        Duration::from_secs_f64((capped * factor).clamp(0.0, self.max.as_secs_f64()))
    }

    /// Decides what follows an exit for `reason`. `consecutive` counts the
    /// failures since the child last ran healthily (it sets the backoff);
    /// `in_window` counts the failures within the crash-loop window,
    /// this one included.
    pub fn decide(
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
        if failed && self.crash_loop_limit > 0 && in_window >= self.crash_loop_limit as usize {
            return AfterExit::Fail;
        }
        AfterExit::Restart(self.delay(if failed { consecutive } else { 0 }, unit))
    }
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
    /// Anything but a clean exit with status 0 is a failure.
    pub fn is_failure(&self) -> bool {
        !matches!(self, ExitReason::Exited(0))
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

/// A snapshot for `status` displays and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentStatus {
    pub arn: String,
    pub id: String,
    pub name: String,
    pub kind: ComponentKind,
    pub state: ComponentState,
    pub pid: Option<u32>,
    /// How long its current child has run (since it was spawned); `None`
    /// between children.
    pub uptime: Option<Duration>,
    pub restarts: u64,
    pub last_exit: Option<ExitReason>,
    /// Its log file, absolute (`evergreen logs` reads it).
    pub log_file: std::path::PathBuf,
}

pub(crate) type SharedLog = Rc<RefCell<LogFile>>;

/// What a child's tasks tell the actor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct InstanceEvent {
    generation: u64,
    kind: InstanceEventKind,
}

#[derive(Debug)]
enum InstanceEventKind {
    Ready,
    Violation(String),
    Exited(std::io::Result<ExitStatus>),
}

/// Stop the component: resolves once its child is gone.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Stop;

/// Ask for the component's status.
#[derive(Debug, Message)]
#[rtype(result = "ComponentStatus")]
pub struct GetStatus;

/// Orders for a child's writer task.
#[derive(Debug)]
enum WriterCmd {
    /// The child said `Ready`: start delivering.
    Ready,
    /// Send `Shutdown` with this deadline, then close stdin.
    Shutdown(Duration),
    /// Tell the child a publish was refused.
    Refused { topic: String, reason: String },
    /// Answer a secret request.
    Secret {
        request_id: u64,
        result: Result<evergreen_ipc::SecretValue, String>,
    },
    /// Answer a credentials request.
    Credentials {
        request_id: u64,
        result: Result<evergreen_ipc::AwsCredentials, String>,
    },
    /// Answer a shadow request.
    Shadow {
        request_id: u64,
        accepted: bool,
        payload: Vec<u8>,
    },
}

/// Deliveries written to a child and not yet acknowledged with `Done`,
/// shared by its writer (which pushes) and reader (which pops). Only the
/// actor's thread touches it.
#[derive(Debug)]
pub(crate) struct InFlight {
    sent: std::collections::VecDeque<Instant>,
    /// When the last `Done` arrived: the next delivery is being handled since.
    last_done: Option<Instant>,
    /// The last delivery written or acknowledged, for the idle stop.
    last_activity: Instant,
}

impl InFlight {
    fn new() -> Self {
        InFlight {
            sent: std::collections::VecDeque::new(),
            last_done: None,
            last_activity: Instant::now(),
        }
    }

    /// How long the delivery being handled has been in the child's hands:
    /// since it was written, or since the previous one was done if later
    /// (deliveries queue in the pipe; each one's time starts when it is next).
    fn handling_for(&self, now: Instant) -> Option<Duration> {
        let sent = *self.sent.front()?;
        let since = self.last_done.map_or(sent, |done| done.max(sent));
        Some(now.saturating_duration_since(since))
    }

    /// A delivery was handed to the child (the lambda link's `…/work`).
    pub(crate) fn begin(&mut self, now: Instant) {
        if self.sent.len() >= MAX_UNACKNOWLEDGED {
            self.sent.pop_front();
        }
        self.sent.push_back(now);
        self.last_activity = now;
    }

    /// The child answered the oldest delivery.
    pub(crate) fn finish(&mut self, now: Instant) {
        if self.sent.pop_front().is_some() {
            self.last_done = Some(now);
            self.last_activity = now;
        }
    }
}

pub(crate) type SharedInFlight = Rc<RefCell<InFlight>>;

/// A counting limit on running on-demand children (Greengrass's
/// `maxConcurrentLimit`): a component takes a slot to start a child and gives
/// it back when the child exits; components waiting for one are woken then.
#[derive(Debug)]
pub struct Slots {
    limit: usize,
    taken: std::sync::atomic::AtomicUsize,
    freed: tokio::sync::Notify,
}

impl Slots {
    pub fn new(limit: usize) -> Self {
        Slots {
            limit: limit.max(1),
            taken: std::sync::atomic::AtomicUsize::new(0),
            freed: tokio::sync::Notify::new(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    fn try_take(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        use std::sync::atomic::Ordering;
        let _ = self
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.freed.notify_waiters();
    }
}

/// Delivery times kept per child while it has not acknowledged them.
const MAX_UNACKNOWLEDGED: usize = 4096;

/// How often `Timeout` and idleness are checked.
const LIFECYCLE_TICK: Duration = Duration::from_millis(100);

struct Instance {
    generation: u64,
    inflight: SharedInFlight,
    /// The child holds one of the on-demand slots.
    holds_slot: bool,
    pid: Option<u32>,
    started: Instant,
    ready: bool,
    violation: Option<ExitReason>,
    /// The only strong sender: dropping the instance ends its writer, which
    /// releases the inbox for the next child.
    cmds: mpsc::UnboundedSender<WriterCmd>,
    /// The container's cgroup and mount point (container mode only).
    container: Option<ContainerGuard>,
}

/// The actor owning one component.
pub struct ComponentActor {
    spec: Arc<ComponentSpec>,
    plan_env: Arc<ComponentEnv>,
    settings: Arc<RuntimeSettings>,
    router: Arc<Router>,
    sandboxes: Arc<Sandboxes>,
    inbox: Arc<tokio::sync::Mutex<QueueReceiver>>,
    log: SharedLog,
    instance: Option<Instance>,
    generation: u64,
    state: ComponentState,
    /// The settings that apply to this component (global or overridden).
    restart: RestartSettings,
    failures: u32,
    /// When recent failures happened, for the crash-loop limit.
    failure_times: std::collections::VecDeque<Instant>,
    restarts: u64,
    last_exit: Option<ExitReason>,
    stopping: bool,
    /// The child is being stopped because it sat idle (on-demand functions):
    /// its exit is not a failure and starts nothing.
    idle_stopping: bool,
    /// A message arrived while no child could take it (starting or stopping).
    wake_pending: bool,
    /// Set for on-demand components: notified when a message is queued.
    wake: Option<Arc<tokio::sync::Notify>>,
    stop_waiters: Vec<oneshot::Sender<()>>,
    rng: u64,
    /// The Lambda IPC endpoint, for Python functions.
    lambda: Option<Rc<LambdaHub>>,
    /// This function's registration with it (Python functions only).
    lambda_link: Option<Rc<FunctionLink>>,
    /// The token the next child is given.
    lambda_token: String,
    /// The local shadow service, for `FromChild::Shadow`; `None` when the
    /// runtime could not start it.
    shadow: Option<Arc<dyn crate::services::ShadowService>>,
}

impl fmt::Debug for ComponentActor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentActor")
            .field("arn", &self.spec.arn)
            .field("state", &self.state)
            .field("generation", &self.generation)
            .finish()
    }
}

/// What a component needs from the group beyond its own spec: the resources
/// it was granted, resolved to paths, and for a container what to mount.
#[derive(Debug, Clone, Default)]
pub struct ComponentEnv {
    pub resources: std::collections::BTreeMap<String, ResourceGrant>,
    pub mounts: Vec<ResourceMount>,
}

impl ComponentEnv {
    /// Resolves the resources `spec` was granted in `plan`.
    ///
    /// In `NoContainer` mode nothing is mounted, so a grant's path is the
    /// host path (the volume's `SourcePath`), as Greengrass's NoContainer
    /// functions see it. In a container the grant's path is where the
    /// resource is mounted: a device at its own path, a volume or model at
    /// its `DestinationPath`. Model resources are read from
    /// `<resource_root>/ml/<resource id>` on the host: this build does not
    /// download models, the operator places them there.
    pub fn for_component(spec: &ComponentSpec, plan: &GroupPlan, resource_root: &Path) -> Self {
        let container = spec.isolation == Isolation::GreengrassContainer;
        let mut resources = std::collections::BTreeMap::new();
        let mut mounts = Vec::new();
        for access in &spec.resources {
            let Some(res) = plan.resources.get(&access.resource_id) else {
                continue;
            };
            let (kind, source, target, owner) = match &res.data {
                ResourceData::LocalDevice {
                    source_path,
                    group_owner,
                } => (
                    MountKind::Device,
                    source_path.clone(),
                    source_path.clone(),
                    (group_owner.auto_add, group_owner.group.clone()),
                ),
                ResourceData::LocalVolume {
                    source_path,
                    destination_path,
                    group_owner,
                } => (
                    MountKind::Volume,
                    source_path.clone(),
                    destination_path.clone(),
                    (group_owner.auto_add, group_owner.group.clone()),
                ),
                ResourceData::MachineLearningModel {
                    destination_path,
                    group_owner,
                    ..
                } => (
                    MountKind::Model,
                    resource_root.join("ml").join(&access.resource_id),
                    destination_path.clone(),
                    (false, group_owner.clone()),
                ),
                ResourceData::Secret { .. } => continue,
            };
            let seen = if container || kind == MountKind::Model {
                &target
            } else {
                &source
            };
            resources.insert(
                access.resource_id.clone(),
                ResourceGrant {
                    path: seen.display().to_string(),
                    read_write: access.read_write,
                },
            );
            if container {
                mounts.push(ResourceMount {
                    resource_id: access.resource_id.clone(),
                    kind,
                    source,
                    target,
                    read_write: access.read_write,
                    auto_add_group_owner: owner.0,
                    group_owner: owner.1,
                });
            }
        }
        ComponentEnv { resources, mounts }
    }
}

impl ComponentActor {
    pub fn new(
        spec: Arc<ComponentSpec>,
        plan_env: ComponentEnv,
        settings: Arc<RuntimeSettings>,
        router: Arc<Router>,
        sandboxes: Arc<Sandboxes>,
        inbox: QueueReceiver,
    ) -> std::io::Result<Self> {
        let log = LogFile::open(
            &settings.log_root,
            &spec.log_file,
            &spec.arn,
            settings.user_log_level,
            settings.user_log_space_kb,
        )?;
        // Seed the jitter from the clock and the ARN: good enough to spread
        // restarts, no cryptographic use.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ spec.arn.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        let restart = settings
            .restart_overrides
            .get(&spec.arn)
            .or_else(|| settings.restart_overrides.get(&spec.id))
            .copied()
            .unwrap_or(settings.restart);
        Ok(ComponentActor {
            restart,
            failure_times: std::collections::VecDeque::new(),
            spec,
            plan_env: Arc::new(plan_env),
            settings,
            router,
            sandboxes,
            inbox: Arc::new(tokio::sync::Mutex::new(inbox)),
            log: Rc::new(RefCell::new(log)),
            instance: None,
            generation: 0,
            state: ComponentState::Starting,
            failures: 0,
            restarts: 0,
            last_exit: None,
            stopping: false,
            idle_stopping: false,
            wake_pending: false,
            wake: None,
            stop_waiters: Vec::new(),
            rng: seed | 1,
            lambda: None,
            lambda_link: None,
            lambda_token: String::new(),
            shadow: None,
        })
    }

    /// Writes a line about this component to its own log and to the runtime log.
    fn note(&self, level: LogLevel, message: &str) {
        if let Err(e) = self.log.borrow_mut().write(level, message) {
            log::warn!("{}: cannot write its log: {e}", self.spec.arn);
        }
        let lvl = match level {
            LogLevel::Debug => log::Level::Debug,
            LogLevel::Info => log::Level::Info,
            LogLevel::Warn => log::Level::Warn,
            LogLevel::Error | LogLevel::Fatal => log::Level::Error,
        };
        log::log!(lvl, "{} ({}): {message}", self.spec.name, self.spec.arn);
    }

    fn next_unit(&mut self) -> f64 {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn component_config(&self) -> ComponentConfig {
        ComponentConfig {
            arn: self.spec.arn.clone(),
            kind: self.spec.kind,
            id: self.spec.id.clone(),
            parameters: self.spec.parameters.clone(),
            resources: self.plan_env.resources.clone(),
            secrets: self.spec.secrets.clone(),
            log_level: self.settings.user_log_level,
            core_thing_name: self.settings.core_thing_name.clone(),
            region: self.settings.region.clone(),
            endpoints: self.settings.aws.endpoints().clone(),
        }
    }

    fn spawn_spec(&self) -> SpawnSpec {
        let spec = &self.spec;
        let s = &self.settings;
        let mut env: Vec<(OsString, OsString)> = Vec::new();
        let path = std::env::var_os("PATH").unwrap_or_else(|| {
            OsString::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        });
        env.push(("PATH".into(), path));
        for key in ["LANG", "LC_ALL", "TZ"] {
            if let Some(v) = std::env::var_os(key) {
                env.push((key.into(), v));
            }
        }
        if spec.kind == ComponentKind::Function {
            for (k, v) in &spec.parameters {
                env.push((k.into(), v.into()));
            }
        }
        // Identity variables come last so that they are truthful whatever the
        // function's own variables say.
        let mut identity = vec![
            ("AWS_IOT_THING_NAME", s.core_thing_name.as_str()),
            ("AWS_IOT_THING_ARN", s.core_thing_arn.as_str()),
            ("AWS_REGION", s.region.as_str()),
            ("AWS_DEFAULT_REGION", s.region.as_str()),
            ("EVERGREEN_COMPONENT_ARN", spec.arn.as_str()),
        ];
        if spec.kind == ComponentKind::Function {
            identity.push(("MY_FUNCTION_ARN", spec.arn.as_str()));
        }
        for (k, v) in identity {
            env.retain(|(ek, _)| ek != k);
            env.push((k.into(), v.into()));
        }
        let mut working_dir = None;
        let mut mounts = self.plan_env.mounts.clone();
        if let (
            Launch::Python {
                handler,
                code,
                binary,
                ..
            },
            Some(hub),
        ) = (&spec.launch, &self.lambda)
        {
            let launch = lambda::python::PythonLaunch {
                handler,
                code,
                binary: *binary,
                timeout_ms: spec.timeout_s.saturating_mul(1000),
                token: &self.lambda_token,
            };
            for (k, v) in lambda::python::environment(hub, &launch) {
                env.retain(|(ek, _)| *ek != k);
                env.push((k, v));
            }
            // The function's own directory is its working directory, as
            // in Greengrass (code that opens files next to itself).
            if code.is_dir() {
                working_dir = Some(code.clone());
            }
            // In a container the code and Evergreen's Python files are
            // bound read-only at their host paths, so PYTHONPATH holds.
            if spec.isolation == Isolation::GreengrassContainer {
                for (id, path) in [
                    ("function-code", code),
                    ("evergreen-python", &hub.runtime_dir().to_path_buf()),
                ] {
                    mounts.push(ResourceMount {
                        resource_id: id.to_string(),
                        kind: MountKind::Volume,
                        source: path.clone(),
                        target: path.clone(),
                        read_write: false,
                        auto_add_group_owner: false,
                        group_owner: None,
                    });
                }
            }
        }
        let (program, arg0, args) = match &spec.launch {
            Launch::Executable { path, args } => (
                path.clone(),
                None,
                args.iter().map(OsString::from).collect(),
            ),
            Launch::Python { .. } => (
                match spec.isolation {
                    Isolation::NoContainer => std::path::PathBuf::from(lambda::python::INTERPRETER),
                    Isolation::GreengrassContainer => {
                        lambda::python::container_interpreter(std::env::var_os("PATH").as_deref())
                    }
                },
                None,
                self.lambda.as_ref().map_or_else(Vec::new, |hub| {
                    vec![hub
                        .runtime_dir()
                        .join(lambda::python::RUNTIME_SCRIPT)
                        .into_os_string()]
                }),
            ),
            Launch::Connector { name, .. } => (
                s.self_exe.clone(),
                Some(OsString::from("evergreen")),
                vec![OsString::from("connector"), OsString::from(name)],
            ),
        };
        SpawnSpec {
            arn: spec.arn.clone(),
            program,
            arg0,
            args,
            env,
            // The group's RunAs wins; what it leaves out comes from the
            // configured default identity.
            run_as: RunAs {
                uid: spec.run_as.uid.or(s.default_run_as.uid),
                gid: spec.run_as.gid.or(s.default_run_as.gid),
            },
            working_dir,
            memory_kb: spec.memory_kb,
            instance: crate::sandbox::cgroup::cgroup_name(&spec.id, self.generation),
            hostname: hostname(&spec.name),
            mounts,
        }
    }

    /// Starts a new child.
    fn launch(&mut self, ctx: &mut Context<Self>) {
        let holds_slot = !self.spec.pinned;
        if holds_slot && !self.settings.on_demand_slots.try_take() {
            // All slots are busy: wait, the message stays queued.
            self.state = ComponentState::Stopped;
            if !self.wake_pending {
                self.wake_pending = true;
                self.note(
                    LogLevel::Info,
                    &format!(
                        "waiting for a free on-demand slot ({} may run at once)",
                        self.settings.on_demand_slots.limit()
                    ),
                );
                let slots = self.settings.on_demand_slots.clone();
                let addr = ctx.address();
                actix_rt::spawn(async move {
                    slots.freed.notified().await;
                    addr.do_send(Wake);
                });
            }
            return;
        }
        self.wake_pending = false;
        self.generation += 1;
        let generation = self.generation;
        self.state = ComponentState::Starting;
        // Start-up time counts from here, so it includes what the sandbox
        // does before exec (for a container: cgroup, namespaces, mounts).
        let spawn_began = Instant::now();
        let python = matches!(self.spec.launch, Launch::Python { .. });
        if python {
            match &self.lambda {
                Some(hub) if self.lambda_link.is_some() => self.lambda_token = hub.new_token(),
                _ => {
                    if holds_slot {
                        self.settings.on_demand_slots.give_back();
                    }
                    let why = "the Lambda IPC endpoint is not running (see the runtime log)";
                    self.note(LogLevel::Error, &format!("cannot start: {why}"));
                    self.after_exit(ctx, ExitReason::SpawnFailed(why.into()), Duration::ZERO);
                    return;
                }
            }
        }
        let spawned = self
            .sandboxes
            .for_mode(self.spec.isolation, &self.spec.arn)
            .and_then(|sandbox| sandbox.spawn(&self.spawn_spec()));
        let (mut child, container) = match spawned {
            Ok(spawned) => (spawned.child, spawned.container),
            Err(e) => {
                if holds_slot {
                    self.settings.on_demand_slots.give_back();
                }
                self.note(LogLevel::Error, &format!("cannot start: {e}"));
                self.after_exit(ctx, ExitReason::SpawnFailed(e.to_string()), Duration::ZERO);
                return;
            }
        };
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            // Cannot happen with piped stdio; treat it as a failed start.
            if holds_slot {
                self.settings.on_demand_slots.give_back();
            }
            self.note(LogLevel::Error, "child has no stdio pipes");
            let _ = child.start_kill();
            if let Some(c) = container {
                self.release_container(c, false);
            }
            self.after_exit(
                ctx,
                ExitReason::SpawnFailed("no stdio pipes".into()),
                Duration::ZERO,
            );
            return;
        };
        self.note(
            LogLevel::Info,
            &format!("started pid {} (generation {generation})", pid.unwrap_or(0)),
        );
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let addr = ctx.address();
        let max_frame = self.settings.max_frame;
        let inflight: SharedInFlight = Rc::new(RefCell::new(InFlight::new()));
        if let (true, Some(hub), Some(link)) = (python, &self.lambda, &self.lambda_link) {
            // The lambda link: work goes over the IPC endpoint, so stdin is
            // closed and stdout is log text like stderr. Nothing reads
            // `cmds`: a stop is SIGTERM (see `begin_stop`).
            drop(stdin);
            drop(cmd_rx);
            let ready_addr = addr.clone();
            hub.attach_worker(
                link,
                std::mem::take(&mut self.lambda_token),
                generation,
                inflight.clone(),
                Box::new(move || {
                    ready_addr.do_send(InstanceEvent {
                        generation,
                        kind: InstanceEventKind::Ready,
                    })
                }),
            );
            actix_rt::spawn(stderr_task(stdout, self.log.clone()));
        } else {
            actix_rt::spawn(writer_task(
                stdin,
                cmd_rx,
                self.inbox.clone(),
                self.component_config(),
                max_frame,
                self.log.clone(),
                inflight.clone(),
            ));
            actix_rt::spawn(reader_task(
                stdout,
                addr.clone(),
                generation,
                ReaderEnv {
                    arn: Arc::from(self.spec.arn.as_str()),
                    router: self.router.clone(),
                    log: self.log.clone(),
                    cmds: cmd_tx.downgrade(),
                    max_frame,
                    inflight: inflight.clone(),
                    aws: self.spec.aws.then(|| self.settings.aws.clone()),
                    secrets: self.settings.secrets.clone(),
                    shadow: self.shadow.clone(),
                },
            ));
        }
        actix_rt::spawn(stderr_task(stderr, self.log.clone()));
        actix_rt::spawn(waiter_task(child, addr, generation));
        self.watch_readiness(ctx, generation);
        self.instance = Some(Instance {
            generation,
            inflight,
            holds_slot,
            pid,
            started: spawn_began,
            ready: false,
            violation: None,
            cmds: cmd_tx,
            container,
        });
    }

    /// Kills the child of `generation` if it is not ready in time.
    fn watch_readiness(&self, ctx: &mut Context<Self>, generation: u64) {
        let timeout = self.settings.readiness_timeout;
        ctx.run_later(timeout, move |act, _ctx| {
            if let Some(inst) = act.current(generation) {
                if !inst.ready {
                    act.violate(generation, ExitReason::ReadinessTimeout(timeout));
                }
            }
        });
    }

    /// Removes what a container left on the host once its child is gone.
    /// Returns whether the kernel OOM-killed something in it.
    fn release_container(&self, container: ContainerGuard, check_oom: bool) -> bool {
        let oom = check_oom && container.oom_killed();
        if let Err(e) = container.remove() {
            self.note(
                LogLevel::Warn,
                &format!("cannot clean up the container: {e}"),
            );
        }
        oom
    }

    fn current(&self, generation: u64) -> Option<&Instance> {
        self.instance
            .as_ref()
            .filter(|i| i.generation == generation)
    }

    fn signal(&self, generation: u64, sig: Signal) {
        if let Some(pid) = self.current(generation).and_then(|i| i.pid) {
            // The child leads its own process group (see the sandbox), so
            // this reaches anything it started too.
            if let Ok(pid) = i32::try_from(pid) {
                let _ = killpg(Pid::from_raw(pid), sig);
            }
        }
    }

    /// The child broke the protocol (or never became ready): kill it; its
    /// exit then restarts it.
    fn violate(&mut self, generation: u64, reason: ExitReason) {
        let Some(inst) = self
            .instance
            .as_mut()
            .filter(|i| i.generation == generation)
        else {
            return;
        };
        if inst.violation.is_some() {
            return;
        }
        inst.violation = Some(reason.clone());
        self.note(LogLevel::Error, &format!("{reason}; killing the child"));
        self.signal(generation, Signal::SIGKILL);
    }

    /// Decides what follows the end of a child: stopped, or a restart after
    /// a backoff delay.
    fn after_exit(&mut self, ctx: &mut Context<Self>, reason: ExitReason, ran: Duration) {
        self.last_exit = Some(reason.clone());
        if self.idle_stopping && !self.stopping {
            self.idle_stopping = false;
            self.state = ComponentState::Stopped;
            if self.wake_pending {
                self.wake_pending = false;
                self.note(
                    LogLevel::Info,
                    "messages arrived while stopping: starting again",
                );
                self.launch(ctx);
            }
            return;
        }
        if self.stopping {
            self.state = ComponentState::Stopped;
            for tx in self.stop_waiters.drain(..) {
                let _ = tx.send(());
            }
            ctx.stop();
            return;
        }
        if ran >= self.restart.reset_after {
            self.failures = 0;
        }
        let failed = reason.is_failure();
        if failed {
            let now = Instant::now();
            self.failure_times.push_back(now);
            while self
                .failure_times
                .front()
                .is_some_and(|t| now.duration_since(*t) > self.restart.crash_loop_window)
            {
                self.failure_times.pop_front();
            }
        }
        let unit = self.next_unit();
        match self
            .restart
            .decide(&reason, self.failures, self.failure_times.len(), unit)
        {
            AfterExit::Restart(delay) => {
                if failed {
                    self.failures = self.failures.saturating_add(1);
                }
                self.restarts += 1;
                self.state = ComponentState::Backoff;
                self.note(
                    LogLevel::Warn,
                    &format!(
                        "restarting in {} ms (restart {})",
                        delay.as_millis(),
                        self.restarts
                    ),
                );
                let generation = self.generation;
                ctx.run_later(delay, move |act, ctx| {
                    if act.generation == generation && act.instance.is_none() && !act.stopping {
                        act.launch(ctx);
                    }
                });
            }
            AfterExit::Stop(why) => {
                self.state = ComponentState::Stopped;
                self.note(LogLevel::Warn, &format!("not restarted: {why}"));
            }
            AfterExit::Fail => {
                self.state = ComponentState::Failed;
                let cooldown = self.restart.failed_cooldown;
                self.note(
                    LogLevel::Error,
                    &format!(
                        "crash loop: {} failures within {} s; marked Failed, next attempt in {} s (or redeploy)",
                        self.failure_times.len(),
                        self.restart.crash_loop_window.as_secs(),
                        cooldown.as_secs()
                    ),
                );
                let generation = self.generation;
                ctx.run_later(cooldown, move |act, ctx| {
                    if act.generation == generation
                        && act.state == ComponentState::Failed
                        && !act.stopping
                    {
                        act.failure_times.clear();
                        act.failures = 0;
                        act.note(LogLevel::Info, "cool-down over: trying again");
                        act.launch(ctx);
                    }
                });
            }
        }
    }

    fn begin_stop(&mut self, ctx: &mut Context<Self>) {
        let Some(inst) = &self.instance else {
            self.state = ComponentState::Stopped;
            for tx in self.stop_waiters.drain(..) {
                let _ = tx.send(());
            }
            ctx.stop();
            return;
        };
        self.state = ComponentState::Stopping;
        let generation = inst.generation;
        let grace = self.settings.shutdown_grace;
        let term = self.settings.term_grace;
        let _ = inst.cmds.send(WriterCmd::Shutdown(grace));
        if matches!(self.spec.launch, Launch::Python { .. }) {
            // A Python worker has no stdio link to hear `Shutdown`; SIGTERM
            // is its stop (Python's default action for it is to exit).
            self.signal(generation, Signal::SIGTERM);
        }
        self.note(
            LogLevel::Info,
            &format!("stopping (grace {} ms)", grace.as_millis()),
        );
        ctx.run_later(grace, move |act, ctx| {
            if act.current(generation).is_some() {
                act.note(
                    LogLevel::Warn,
                    "did not stop within the grace period; sending SIGTERM",
                );
                act.signal(generation, Signal::SIGTERM);
                ctx.run_later(term, move |act, _| {
                    if act.current(generation).is_some() {
                        act.note(
                            LogLevel::Warn,
                            "still running after SIGTERM; sending SIGKILL",
                        );
                        act.signal(generation, Signal::SIGKILL);
                    }
                });
            }
        });
    }
}

/// A message was queued for an on-demand component.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Wake;

impl Handler<Wake> for ComponentActor {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        if self.stopping {
            return;
        }
        match (&self.instance, self.state) {
            (None, ComponentState::Stopped) => {
                if !self.wake_pending {
                    self.note(LogLevel::Info, "message arrived: starting on demand");
                }
                // A retry after waiting for a slot must be able to wait again.
                self.wake_pending = false;
                self.launch(ctx);
            }
            // Running: the writer delivers it. Starting, stopping for idleness,
            // or backing off: remember, so the exit starts it again.
            _ => self.wake_pending = true,
        }
    }
}

impl ComponentActor {
    /// Gives an on-demand component its waker (before it starts).
    pub fn with_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Enforces a function's `Timeout` per delivery and stops an idle
    /// on-demand child.
    fn lifecycle_tick(&mut self, ctx: &mut Context<Self>) {
        let Some(inst) = &self.instance else { return };
        if !inst.ready || inst.violation.is_some() || self.stopping || self.idle_stopping {
            return;
        }
        let generation = inst.generation;
        let now = Instant::now();
        let (handling, idle_for) = {
            let f = inst.inflight.borrow();
            let idle = f
                .sent
                .is_empty()
                .then(|| now.saturating_duration_since(f.last_activity));
            (f.handling_for(now), idle)
        };
        let timeout = Duration::from_secs(self.spec.timeout_s);
        // Greengrass applies `Timeout` to functions; connectors are
        // long-lived services whose work is not one handler call.
        if self.spec.kind == ComponentKind::Function
            && !timeout.is_zero()
            && handling.is_some_and(|h| h > timeout)
        {
            self.violate(generation, ExitReason::HandlerTimeout(timeout));
            return;
        }
        if !self.spec.pinned && idle_for.is_some_and(|i| i >= self.settings.on_demand_idle) {
            self.idle_stopping = true;
            self.note(
                LogLevel::Info,
                &format!(
                    "idle for {} ms: stopping until the next message",
                    self.settings.on_demand_idle.as_millis()
                ),
            );
            self.begin_stop(ctx);
        }
    }
}

impl Actor for ComponentActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let (Some(hub), Some(link)) = (&self.lambda, self.lambda_link.take()) {
            hub.unregister(&link);
        }
    }

    fn started(&mut self, ctx: &mut Self::Context) {
        if let (Launch::Python { .. }, Some(hub)) = (&self.spec.launch, &self.lambda) {
            self.lambda_link = Some(hub.register(
                &self.spec.arn,
                Duration::from_secs(self.spec.timeout_s),
                self.log.clone(),
                self.inbox.clone(),
                self.wake.clone(),
                self.settings.queue_capacity,
            ));
        }
        // Only functions have a Timeout and only on-demand ones idle out;
        // a gateway full of connectors should not wake ten times a second each.
        if self.spec.kind == ComponentKind::Function || !self.spec.pinned {
            ctx.run_interval(LIFECYCLE_TICK, |act, ctx| act.lifecycle_tick(ctx));
        }
        if let Some(wake) = self.wake.clone() {
            // On demand: the waker turns "a message was queued" into a start.
            let addr = ctx.address();
            actix_rt::spawn(async move {
                loop {
                    wake.notified().await;
                    if !addr.connected() {
                        return;
                    }
                    addr.do_send(Wake);
                }
            });
        }
        if self.spec.pinned {
            self.launch(ctx);
        } else {
            self.state = ComponentState::Stopped;
            self.note(
                LogLevel::Info,
                "on demand: starts when a message arrives for it",
            );
        }
    }
}

impl ComponentActor {
    /// Connects a Python function to the Lambda IPC endpoint (before it starts).
    pub fn with_lambda(mut self, hub: Rc<LambdaHub>) -> Self {
        self.lambda = Some(hub);
        self
    }

    /// Answers the child's shadow requests with this shadow service.
    pub fn with_shadow(mut self, shadow: Arc<dyn crate::services::ShadowService>) -> Self {
        self.shadow = Some(shadow);
        self
    }
}

impl Handler<InstanceEvent> for ComponentActor {
    type Result = ();

    fn handle(&mut self, msg: InstanceEvent, ctx: &mut Self::Context) {
        let generation = msg.generation;
        match msg.kind {
            InstanceEventKind::Ready => {
                let Some(inst) = self
                    .instance
                    .as_mut()
                    .filter(|i| i.generation == generation)
                else {
                    return;
                };
                if inst.ready {
                    return;
                }
                inst.ready = true;
                let took = inst.started.elapsed();
                if !self.stopping {
                    self.state = ComponentState::Running;
                }
                self.note(
                    LogLevel::Info,
                    &format!("ready after {:.2} ms", took.as_secs_f64() * 1000.0),
                );
            }
            InstanceEventKind::Violation(why) => {
                self.violate(generation, ExitReason::ProtocolViolation(why))
            }
            InstanceEventKind::Exited(status) => {
                let Some(inst) = self.instance.take_if(|i| i.generation == generation) else {
                    return;
                };
                if inst.holds_slot {
                    self.settings.on_demand_slots.give_back();
                }
                // Anything the child left in its process group goes with it.
                if let Some(pid) = inst.pid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let oom = inst
                    .container
                    .is_some_and(|c| self.release_container(c, true));
                let reason = inst.violation.clone().unwrap_or_else(|| match status {
                    // The kernel says why it killed: a SIGKILL from the OOM
                    // killer is reported as what it is.
                    Ok(_) if oom => ExitReason::MemoryLimit(self.spec.memory_kb.unwrap_or(0)),
                    Ok(st) => exit_reason(st),
                    Err(e) => ExitReason::SpawnFailed(format!("cannot wait for the child: {e}")),
                });
                if let (Some(hub), Some(link)) = (&self.lambda, &self.lambda_link) {
                    hub.detach_worker(link, generation, &reason.to_string());
                }
                let level = if self.stopping {
                    LogLevel::Info
                } else {
                    LogLevel::Error
                };
                self.note(level, &format!("child {reason}"));
                self.after_exit(ctx, reason, inst.started.elapsed());
            }
        }
    }
}

impl Handler<Stop> for ComponentActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.stop_waiters.push(tx);
        if !self.stopping {
            self.stopping = true;
            self.begin_stop(ctx);
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// An operator's restart: start a stopped, failed or backing-off component
/// now (forgetting its failures), or stop a running one gracefully and start
/// it again.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, String>")]
pub struct Retry;

impl Handler<Retry> for ComponentActor {
    type Result = Result<String, String>;

    fn handle(&mut self, _: Retry, ctx: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return Err(format!("{} is being stopped", self.spec.arn));
        }
        self.failures = 0;
        self.failure_times.clear();
        if self.instance.is_none() {
            let was = self.state;
            self.note(
                LogLevel::Info,
                &format!("restarted by an operator (was {was:?})"),
            );
            // A pending backoff or cool-down timer sees a new generation and
            // does nothing.
            self.generation += 1;
            self.launch(ctx);
            return Ok(format!("started (was {was:?})"));
        }
        if self.idle_stopping {
            self.wake_pending = true;
            return Ok("stopping; it starts again right after".to_string());
        }
        self.note(
            LogLevel::Info,
            "restart requested by an operator: stopping, then starting again",
        );
        self.idle_stopping = true;
        self.wake_pending = true;
        self.begin_stop(ctx);
        Ok("stopping gracefully, then starting again".to_string())
    }
}

impl Handler<GetStatus> for ComponentActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(ComponentStatus {
            arn: self.spec.arn.clone(),
            id: self.spec.id.clone(),
            name: self.spec.name.clone(),
            kind: self.spec.kind,
            state: self.state,
            pid: self.instance.as_ref().and_then(|i| i.pid),
            uptime: self.instance.as_ref().map(|i| i.started.elapsed()),
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            // Absolute even under a relative `--root`, so a reader in another
            // directory finds the file; the runtime's directory never changes.
            log_file: {
                let path = self.settings.log_root.join(&self.spec.log_file);
                std::path::absolute(&path).unwrap_or(path)
            },
        })
    }
}

fn exit_reason(status: ExitStatus) -> ExitReason {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitReason::Exited(code),
        (None, Some(sig)) => ExitReason::Signalled(sig),
        (None, None) => ExitReason::Exited(-1),
    }
}

async fn waiter_task(mut child: Child, addr: Addr<ComponentActor>, generation: u64) {
    let status = child.wait().await;
    addr.do_send(InstanceEvent {
        generation,
        kind: InstanceEventKind::Exited(status),
    });
}

async fn writer_task(
    stdin: ChildStdin,
    mut cmds: mpsc::UnboundedReceiver<WriterCmd>,
    inbox: Arc<tokio::sync::Mutex<QueueReceiver>>,
    config: ComponentConfig,
    max_frame: usize,
    log: SharedLog,
    inflight: SharedInFlight,
) {
    let mut link = SupervisorLink::new(stdin, max_frame);
    if link.start(&config).await.is_err() {
        return; // the child is already gone; its exit is reported by the waiter
    }
    // Until the child is ready, only answer commands; deliveries wait in the
    // inbox (bounded, counted when full).
    loop {
        match cmds.recv().await {
            None => return,
            Some(WriterCmd::Ready) => break,
            Some(cmd) => {
                if !command(&mut link, cmd).await {
                    return;
                }
            }
        }
    }
    // A previous child's writer holds the inbox until its instance is
    // dropped; keep answering commands while waiting for it.
    let mut inbox = loop {
        tokio::select! {
            guard = inbox.lock() => break guard,
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(cmd) => if !command(&mut link, cmd).await { return },
            },
        }
    };
    loop {
        tokio::select! {
            biased;
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(cmd) => if !command(&mut link, cmd).await { return },
            },
            msg = inbox.recv() => {
                let Some(mut msg) = msg else { return };
                let mut written = 0;
                loop {
                    {
                        let mut f = inflight.borrow_mut();
                        let now = Instant::now();
                        // A child that never acknowledges (a connector on the
                        // raw protocol) must not grow this without bound; its
                        // oldest times only matter for a function's Timeout,
                        // which would have fired long before.
                        if f.sent.len() >= MAX_UNACKNOWLEDGED {
                            f.sent.pop_front();
                        }
                        f.sent.push_back(now);
                        f.last_activity = now;
                    }
                    if let Err(e) = link.deliver_parts(&msg.topic, &msg.payload, &msg.source).await {
                        let _ = log.borrow_mut().write(LogLevel::Debug, &format!("delivery lost, stdin closed: {e}"));
                        return;
                    }
                    written += 1;
                    if written >= DELIVERY_BATCH {
                        break;
                    }
                    match inbox.try_recv() {
                        Ok(next) => msg = next,
                        Err(_) => break,
                    }
                }
                if link.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Performs one writer command; `false` ends the writer.
async fn command<W: tokio::io::AsyncWrite + Unpin>(
    link: &mut SupervisorLink<W>,
    cmd: WriterCmd,
) -> bool {
    let result = match cmd {
        WriterCmd::Ready => Ok(()),
        WriterCmd::Shutdown(deadline) => {
            let _ = link.shutdown(deadline.as_millis() as u64).await;
            // Closing stdin after Shutdown gives the child an EOF too.
            return false;
        }
        WriterCmd::Refused { topic, reason } => link.refused(topic, reason).await,
        WriterCmd::Secret { request_id, result } => link.secret(request_id, result).await,
        WriterCmd::Shadow {
            request_id,
            accepted,
            payload,
        } => link.shadow_result(request_id, accepted, payload).await,
        WriterCmd::Credentials { request_id, result } => link.credentials(request_id, result).await,
    };
    result.is_ok()
}

struct ReaderEnv {
    arn: Arc<str>,
    router: Arc<Router>,
    log: SharedLog,
    cmds: mpsc::WeakUnboundedSender<WriterCmd>,
    max_frame: usize,
    inflight: SharedInFlight,
    /// `Some` for a connector whose manifest sets `aws`.
    aws: Option<Arc<evergreen_aws::credentials::AwsAccess>>,
    /// Answers `GetSecret` from the secrets granted to this component.
    secrets: Arc<dyn crate::services::SecretSource>,
    /// Answers `Shadow`; `None` when the runtime has no shadow service.
    shadow: Option<Arc<dyn crate::services::ShadowService>>,
}

impl ReaderEnv {
    fn reply(&self, cmd: WriterCmd) {
        if let Some(tx) = self.cmds.upgrade() {
            let _ = tx.send(cmd);
        }
    }
}

async fn reader_task<R: AsyncRead + Unpin>(
    stdout: R,
    addr: Addr<ComponentActor>,
    generation: u64,
    env: ReaderEnv,
) {
    let violation = |why: String| {
        addr.do_send(InstanceEvent {
            generation,
            kind: InstanceEventKind::Violation(why),
        })
    };
    let mut reader = FrameReader::new(stdout, env.max_frame);
    let mut since_yield = 0usize;
    // The child's shadow task, started at its first shadow request.
    let mut shadow_jobs: Option<mpsc::Sender<ShadowJob>> = None;
    match expect_child_hello(&mut reader).await {
        Ok(()) => {}
        // The child exited before saying anything; the waiter reports it.
        Err(HandshakeError::Closed) => return,
        Err(e) => return violation(format!("handshake failed: {e}")),
    }
    loop {
        // One pipe read can hold hundreds of small frames, and routing them
        // never waits; yield now and then so the targets' writer tasks (on
        // this same thread) drain their queues during a burst instead of
        // after it, when the queues may already have overflowed.
        since_yield += 1;
        if since_yield >= READER_YIELD_EVERY {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
        let msg = match reader.read_frame::<FromChild>().await {
            Ok(Some(msg)) => msg,
            Ok(None) => return,
            Err(e) => return violation(format!("bad frame on stdout: {e}")),
        };
        match msg {
            FromChild::Ready => {
                env.reply(WriterCmd::Ready);
                addr.do_send(InstanceEvent {
                    generation,
                    kind: InstanceEventKind::Ready,
                });
            }
            FromChild::Publish { topic, payload } => {
                if let Err(e) = env.router.publish(&env.arn, &topic, Arc::from(payload)) {
                    let reason = e.to_string();
                    let _ = env.log.borrow_mut().write(
                        LogLevel::Warn,
                        &format!("publish on {topic:?} refused: {reason}"),
                    );
                    env.reply(WriterCmd::Refused { topic, reason });
                }
            }
            FromChild::Done => {
                let mut f = env.inflight.borrow_mut();
                // A `Done` with nothing outstanding is harmless; ignore it.
                if f.sent.pop_front().is_some() {
                    let now = Instant::now();
                    f.last_done = Some(now);
                    f.last_activity = now;
                }
            }
            FromChild::Log { level, message } => {
                let _ = env.log.borrow_mut().write(level, &message);
            }
            FromChild::GetSecret {
                request_id,
                secret_id,
                version_stage,
            } => {
                // Answered at once from memory (one AES-GCM open); a refusal
                // is logged here and in the runtime log, naming the id only.
                let result = env
                    .secrets
                    .get(&env.arn, &secret_id, version_stage.as_deref())
                    .map_err(|refusal| {
                        let line = format!("secret request refused: {}", refusal.message);
                        let _ = env.log.borrow_mut().write(LogLevel::Warn, &line);
                        log::warn!("{}: {line}", env.arn);
                        refusal.message
                    });
                if let Ok(value) = &result {
                    let _ = env.log.borrow_mut().write(
                        LogLevel::Debug,
                        &format!(
                            "secret {} read (version {}, stages {})",
                            value.arn,
                            value.version_id,
                            value.version_stages.join(",")
                        ),
                    );
                }
                env.reply(WriterCmd::Secret { request_id, result });
            }
            FromChild::GetCredentials { request_id } => match env.aws.clone() {
                None => {
                    let _ = env.log.borrow_mut().write(
                        LogLevel::Warn,
                        "AWS credentials requested, refused: this component's manifest does not declare AWS access",
                    );
                    env.reply(WriterCmd::Credentials {
                        request_id,
                        result: Err("this component may not use the core's AWS credentials".into()),
                    });
                }
                Some(aws) => {
                    // The chain may have to call out (the IoT credentials
                    // provider); answer from a task so the reader keeps going.
                    let cmds = env.cmds.clone();
                    actix_rt::spawn(async move {
                        let result = aws.credentials().await;
                        if let Some(tx) = cmds.upgrade() {
                            let _ = tx.send(WriterCmd::Credentials { request_id, result });
                        }
                    });
                }
            },
            FromChild::Shadow {
                request_id,
                thing_name,
                op,
                payload,
            } => shadow_request(&env, &mut shadow_jobs, request_id, &thing_name, op, payload),
            other @ FromChild::Hello { .. } => {
                return violation(format!(
                    "unexpected {} after the handshake",
                    variant_name(&other)
                ))
            }
        }
    }
}

/// One shadow request waiting for the child's shadow task.
struct ShadowJob {
    request_id: u64,
    /// `$aws/things/<thing>/shadow/<op>`.
    topic: String,
    payload: Vec<u8>,
}

/// The request topic for `op` on the classic shadow of `thing_name`, or why
/// the name cannot form one. Only what would change the topic's meaning
/// (another level, a wildcard) or break it (NUL, empty) is checked here;
/// the service itself rejects the other names AWS IoT refuses, with its
/// own 400.
fn shadow_topic(thing_name: &str, op: ShadowOp) -> Result<String, String> {
    if thing_name.is_empty() {
        return Err("Invalid thing name: it is empty".into());
    }
    if thing_name.len() > MAX_THING_NAME {
        return Err(format!(
            "Invalid thing name: {} bytes long, at most {MAX_THING_NAME}",
            thing_name.len()
        ));
    }
    if let Some(c) = thing_name
        .chars()
        .find(|c| matches!(c, '/' | '+' | '#' | '\0'))
    {
        return Err(format!(
            "Invalid thing name: {thing_name:?} contains {c:?}, which cannot be in a shadow topic"
        ));
    }
    Ok(format!("$aws/things/{thing_name}/shadow/{}", op.as_str()))
}

/// The service's `/rejected` document (`code`, `message`, `timestamp`, and
/// the request's `clientToken` when it has a valid one) for a request the
/// supervisor answers itself.
fn shadow_error(code: u16, message: &str, request: &[u8]) -> Vec<u8> {
    crate::services::rejection_document(code, message, request)
}

/// Queues one `FromChild::Shadow` for the child's shadow task (starting it
/// at the first request), or answers at once when it cannot be served.
fn shadow_request(
    env: &ReaderEnv,
    jobs: &mut Option<mpsc::Sender<ShadowJob>>,
    request_id: u64,
    thing_name: &str,
    op: ShadowOp,
    payload: Vec<u8>,
) {
    let refuse = |code: u16, why: String, request: &[u8]| {
        let line = format!("shadow {op} of {thing_name:?} refused: {code} {why}");
        let _ = env.log.borrow_mut().write(LogLevel::Warn, &line);
        env.reply(WriterCmd::Shadow {
            request_id,
            accepted: false,
            payload: shadow_error(code, &why, request),
        });
    };
    let topic = match shadow_topic(thing_name, op) {
        Ok(topic) => topic,
        Err(why) => return refuse(400, why, &payload),
    };
    let Some(shadow) = &env.shadow else {
        return refuse(
            503,
            "the local shadow service is not running (see the runtime's log)".into(),
            &payload,
        );
    };
    let jobs = jobs.get_or_insert_with(|| {
        let (tx, rx) = mpsc::channel(SHADOW_QUEUE);
        actix_rt::spawn(shadow_task(
            rx,
            shadow.clone(),
            env.arn.clone(),
            env.log.clone(),
            env.cmds.clone(),
        ));
        tx
    });
    let job = ShadowJob {
        request_id,
        topic,
        payload,
    };
    if let Err(e) = jobs.try_send(job) {
        // Full (the task only ends once this sender is dropped).
        let job = e.into_inner();
        refuse(
            429,
            format!("too many shadow requests of this component are waiting ({SHADOW_QUEUE}); retry later"),
            &job.payload,
        );
    }
}

/// Serves one child's shadow requests in arrival order, each on the
/// blocking pool (the service reads a file and fsyncs a change), and answers
/// through the writer. Ends when the reader drops its sender or the writer
/// is gone.
async fn shadow_task(
    mut jobs: mpsc::Receiver<ShadowJob>,
    shadow: Arc<dyn crate::services::ShadowService>,
    arn: Arc<str>,
    log: SharedLog,
    cmds: mpsc::WeakUnboundedSender<WriterCmd>,
) {
    while let Some(ShadowJob {
        request_id,
        topic,
        payload,
    }) = jobs.recv().await
    {
        let (service, source, request_topic) = (shadow.clone(), arn.clone(), topic.clone());
        let answer =
            tokio::task::spawn_blocking(move || service.request(&source, &request_topic, &payload))
                .await;
        let (accepted, payload) = match answer {
            Ok(Some(answer)) => answer,
            // Unreachable with a topic from `shadow_topic`; answered all the same.
            Ok(None) => (
                false,
                shadow_error(
                    400,
                    &format!("{topic:?} is not a shadow request topic"),
                    b"",
                ),
            ),
            Err(e) => {
                log::error!("{arn}: the shadow request on {topic:?} failed: {e}");
                (
                    false,
                    shadow_error(500, "Internal service failure (see the runtime's log)", b""),
                )
            }
        };
        let outcome = if accepted { "accepted" } else { "rejected" };
        let _ = log.borrow_mut().write(
            LogLevel::Debug,
            &format!("shadow request {topic}: {outcome}"),
        );
        let Some(tx) = cmds.upgrade() else { return };
        let _ = tx.send(WriterCmd::Shadow {
            request_id,
            accepted,
            payload,
        });
    }
}

async fn stderr_task<R: AsyncRead + Unpin>(stderr: R, log: SharedLog) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_capped(&mut reader, &mut line, MAX_STDERR_LINE).await {
            Ok(0) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                let _ = log.borrow_mut().write(LogLevel::Info, text);
            }
            Err(_) => return,
        }
    }
}

/// Reads one line into `buf`, keeping at most `cap` bytes of it (the rest of
/// an over-long line is read and dropped). Returns the bytes consumed.
async fn read_line_capped<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(consumed);
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if done {
            return Ok(consumed);
        }
    }
}

/// A hostname for a component's container: its name, limited to what a
/// hostname may hold.
fn hostname(name: &str) -> String {
    let h: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if h.is_empty() {
        "component".into()
    } else {
        h
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

        let unlimited = RestartSettings {
            crash_loop_limit: 0,
            ..always
        };
        assert!(matches!(
            unlimited.decide(&crash, 50, 50, 0.5),
            AfterExit::Restart(_)
        ));
    }

    #[tokio::test]
    async fn stderr_lines_are_capped() {
        let data = format!("short\n{}\nnext\n", "x".repeat(100));
        let mut reader = BufReader::with_capacity(8, data.as_bytes());
        let mut line = Vec::new();
        let mut got = Vec::new();
        loop {
            line.clear();
            let n = read_line_capped(&mut reader, &mut line, 10)
                .await
                .expect("read");
            if n == 0 {
                break;
            }
            got.push(String::from_utf8_lossy(&line).into_owned());
        }
        assert_eq!(got, vec!["short\n", "xxxxxxxxxx", "next\n"]);
    }

    #[test]
    fn shadow_topics_are_built_from_valid_thing_names_only() {
        assert_eq!(
            shadow_topic("lamp", ShadowOp::Get).as_deref(),
            Ok("$aws/things/lamp/shadow/get")
        );
        assert_eq!(
            shadow_topic("a:b_c-1", ShadowOp::Update).as_deref(),
            Ok("$aws/things/a:b_c-1/shadow/update")
        );
        let longest = "t".repeat(MAX_THING_NAME);
        assert_eq!(
            shadow_topic(&longest, ShadowOp::Delete),
            Ok(format!("$aws/things/{longest}/shadow/delete"))
        );
        let refused = |name: &str| shadow_topic(name, ShadowOp::Get).expect_err(name);
        assert_eq!(refused(""), "Invalid thing name: it is empty");
        assert!(
            refused(&"t".repeat(MAX_THING_NAME + 1)).contains("129 bytes long, at most 128"),
            "too long"
        );
        // Each would change what the topic means: another shadow, or a filter.
        for (name, c) in [
            ("lamp/shadow/name/x", "'/'"),
            ("lamp+", "'+'"),
            ("#", "'#'"),
            ("nul\0", "'\\0'"),
        ] {
            let why = refused(name);
            assert!(
                why.starts_with("Invalid thing name") && why.contains(c),
                "{name:?}: {why}"
            );
        }
    }

    #[test]
    fn shadow_errors_are_the_services_error_document() {
        let doc: serde_json::Value = serde_json::from_slice(&shadow_error(
            400,
            "bad \"name\"",
            br#"{"clientToken":"t1","state":{}}"#,
        ))
        .expect("JSON");
        assert_eq!(doc["code"], serde_json::json!(400));
        assert_eq!(doc["message"], serde_json::json!("bad \"name\""));
        assert_eq!(doc["clientToken"], serde_json::json!("t1"), "{doc}");
        assert!(doc["timestamp"].as_u64().is_some_and(|t| t > 0), "{doc}");
        // No token to echo from a request that is not JSON.
        let doc: serde_json::Value =
            serde_json::from_slice(&shadow_error(503, "down", b"{oops")).expect("JSON");
        assert_eq!(doc["code"], serde_json::json!(503));
        assert!(doc.get("clientToken").is_none(), "{doc}");
    }

    /// A shadow service that answers each request with the next version, as the real one
    /// (`evergreen_shadow`, tested in its crate and end to end in tests/shadow_ipc.rs) numbers
    /// updates: the versions in the answers show the order the requests reached it.
    #[derive(Debug, Default)]
    struct Versions(std::sync::Mutex<u64>);

    impl crate::services::ShadowService for Versions {
        fn request(&self, _: &str, _: &str, payload: &[u8]) -> Option<(bool, Vec<u8>)> {
            let mut version = self.0.lock().expect("lock");
            *version += 1;
            let body: serde_json::Value = serde_json::from_slice(payload).ok()?;
            let answer = serde_json::json!({ "version": *version, "state": body["state"] });
            Some((true, answer.to_string().into_bytes()))
        }
    }

    /// A reader's environment with a real router, log file and (if `shadow`)
    /// a shadow service; the writer's commands arrive on the receiver (keep
    /// the sender alive).
    fn shadow_env(
        dir: &Path,
        shadow: bool,
    ) -> (
        ReaderEnv,
        mpsc::UnboundedSender<WriterCmd>,
        mpsc::UnboundedReceiver<WriterCmd>,
    ) {
        let router = Arc::new(Router::new(crate::router::SubscriptionTable::default()));
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:f:1";
        let log = LogFile::open(dir, Path::new("f.log"), arn, LogLevel::Debug, 128).expect("log");
        let shadow = shadow
            .then(|| Arc::new(Versions::default()) as Arc<dyn crate::services::ShadowService>);
        let (tx, rx) = mpsc::unbounded_channel();
        let env = ReaderEnv {
            arn: Arc::from(arn),
            router,
            log: Rc::new(RefCell::new(log)),
            cmds: tx.downgrade(),
            max_frame: 1 << 20,
            inflight: Rc::new(RefCell::new(InFlight::new())),
            aws: None,
            secrets: Arc::new(crate::services::NoSecrets),
            shadow,
        };
        (env, tx, rx)
    }

    /// A `WriterCmd::Shadow` as (request id, accepted, parsed payload).
    fn shadow_answer(cmd: WriterCmd) -> (u64, bool, serde_json::Value) {
        match cmd {
            WriterCmd::Shadow {
                request_id,
                accepted,
                payload,
            } => (
                request_id,
                accepted,
                serde_json::from_slice(&payload).expect("JSON answer"),
            ),
            other => panic!("expected a shadow answer, got {other:?}"),
        }
    }

    #[test]
    fn a_childs_shadow_requests_are_served_in_order_and_bounded() {
        let dir = tempfile::tempdir().expect("tmp");
        actix_rt::System::new().block_on(async {
            let (env, _keep, mut rx) = shadow_env(dir.path(), true);
            let mut jobs = None;
            let total = SHADOW_QUEUE as u64 + 3;
            // Nothing here yields, so the shadow task has not run yet: the
            // first SHADOW_QUEUE requests wait, the rest are refused at once.
            for id in 1..=total {
                let body =
                    format!(r#"{{"state":{{"reported":{{"n":{id}}}}},"clientToken":"c{id}"}}"#);
                shadow_request(
                    &env,
                    &mut jobs,
                    id,
                    "lamp",
                    ShadowOp::Update,
                    body.into_bytes(),
                );
            }
            let mut answers = Vec::new();
            for _ in 0..total {
                let cmd = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .expect("an answer in time")
                    .expect("open");
                answers.push(shadow_answer(cmd));
            }
            let (served, refused): (Vec<_>, Vec<_>) = answers.into_iter().partition(|a| a.1);
            let ids =
                |v: &[(u64, bool, serde_json::Value)]| v.iter().map(|a| a.0).collect::<Vec<_>>();
            assert_eq!(
                ids(&refused),
                (SHADOW_QUEUE as u64 + 1..=total).collect::<Vec<_>>()
            );
            for (id, _, doc) in &refused {
                assert_eq!(doc["code"], serde_json::json!(429), "{doc}");
                assert_eq!(doc["clientToken"], serde_json::json!(format!("c{id}")));
            }
            // In the order sent: each update is the next version.
            assert_eq!(ids(&served), (1..=SHADOW_QUEUE as u64).collect::<Vec<_>>());
            for (id, _, doc) in &served {
                assert_eq!(doc["version"], serde_json::json!(id), "{doc}");
                assert_eq!(doc["state"]["reported"]["n"], serde_json::json!(id));
            }
        });
    }

    #[test]
    fn shadow_requests_that_cannot_be_served_are_answered_at_once() {
        let dir = tempfile::tempdir().expect("tmp");
        actix_rt::System::new().block_on(async {
            let (env, _keep, mut rx) = shadow_env(dir.path(), false);
            let mut jobs = None;
            shadow_request(
                &env,
                &mut jobs,
                7,
                "lamp",
                ShadowOp::Get,
                br#"{"clientToken":"x"}"#.to_vec(),
            );
            let (id, accepted, doc) = shadow_answer(rx.try_recv().expect("answered at once"));
            assert_eq!((id, accepted), (7, false));
            assert_eq!(doc["code"], serde_json::json!(503), "{doc}");
            assert_eq!(doc["clientToken"], serde_json::json!("x"));
            shadow_request(&env, &mut jobs, 8, "a/b", ShadowOp::Delete, Vec::new());
            let (id, _, doc) = shadow_answer(rx.try_recv().expect("answered at once"));
            assert_eq!(id, 8);
            assert_eq!(doc["code"], serde_json::json!(400), "{doc}");
            assert!(jobs.is_none(), "no shadow task was started");
            let log = std::fs::read_to_string(dir.path().join("f.log")).expect("log");
            assert!(log.contains("shadow get of \"lamp\" refused: 503"), "{log}");
            assert!(
                log.contains("shadow delete of \"a/b\" refused: 400"),
                "{log}"
            );
        });
    }
}
