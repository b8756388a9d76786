//! The component actor: owns one component's child from spawn to reap,
//! turns the events of its tasks into state changes, and applies the
//! restart policy, the per-delivery `Timeout`, the idle stop of on-demand
//! functions and the stop sequence (stop, SIGTERM, SIGKILL).
//!
//! An on-demand Python function may have more children than the one the
//! restart policy is about (its *main* child): *extra workers*, started
//! when work waits that no worker is free to take (see
//! `crate::lambda::Demand`), each holding an on-demand slot. An extra worker
//! is never restarted: it ends when it sits idle, breaks its `Timeout` or
//! crashes (the invocation it held fails, as V1's did), and the next wave of
//! work starts another. A stop or an operator's hold waits for all of them.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use evergreen_group::plan::{ComponentSpec, Launch};
use evergreen_ipc::{ComponentKind, LogLevel};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use super::events::{waiter_task, InstanceEvent, InstanceEventKind};
use super::policy::{exit_reason, AfterExit, ExitReason, RestartSettings};
use super::reader::{reader_task, ReaderEnv};
use super::spawn::{component_config, spawn_spec, ComponentEnv};
use super::stderr::stderr_task;
use super::writer::{writer_task, WriterCmd};
use super::{ComponentState, ComponentStatus, RuntimeSettings};
use crate::inflight::{InFlight, SharedInFlight};
use crate::lambda::{FunctionLink, LambdaHub};
use crate::logs::ComponentLog;
use crate::router::{QueueReceiver, Router};
use crate::sandbox::{ContainerGuard, Sandboxes};

/// Stop the component: resolves once its child is gone.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Stop;

/// Ask for the component's status.
#[derive(Debug, Message)]
#[rtype(result = "ComponentStatus")]
pub(crate) struct GetStatus;

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
    /// An extra worker being stopped (idle, or the function stopping).
    stopping: bool,
}

impl Instance {
    /// The component's own pid as the host sees it, for `status`. `pid` is
    /// the process the sandbox started, which signals reach the component
    /// through; in a container that is the waiter (a fork of the
    /// supervisor), whose pid and memory say nothing of the component. Until
    /// the container's component is forked, the waiter is all there is.
    fn component_pid(&self) -> Option<u32> {
        let pid = self.pid?;
        if self.container.is_none() {
            return Some(pid);
        }
        Some(crate::sandbox::component_pid(std::path::Path::new("/proc"), pid).unwrap_or(pid))
    }
}

/// The actor owning one component.
pub(crate) struct ComponentActor {
    spec: Arc<ComponentSpec>,
    plan_env: Arc<ComponentEnv>,
    settings: Arc<RuntimeSettings>,
    router: Arc<Router>,
    sandboxes: Arc<Sandboxes>,
    inbox: Arc<tokio::sync::Mutex<QueueReceiver>>,
    log: ComponentLog,
    /// The context of the runtime's lines about this component (`component{name=… arn=…}`),
    /// entered by the actor and carried by its tasks.
    span: tracing::Span,
    instance: Option<Instance>,
    /// Extra workers of an on-demand Python function (see the module doc).
    extras: Vec<Instance>,
    /// Workers (main and extra) this function may run at once.
    max_workers: usize,
    /// "Waiting for a free slot" was said for the current wait for one.
    extra_wait_noted: bool,
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
    /// Stopped by an operator (`evergreen stop`): no restart policy, message or cool-down
    /// starts it until an operator's `start` or a new deployment.
    held: bool,
    /// Operators waiting for a held component's child to be gone.
    hold_waiters: Vec<oneshot::Sender<()>>,
    rng: u64,
    /// The Lambda IPC endpoint, for Python and native functions.
    lambda: Option<Rc<LambdaHub>>,
    /// This function's registration with it (Python and native functions only).
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

impl ComponentActor {
    pub(crate) fn new(
        spec: Arc<ComponentSpec>,
        plan_env: ComponentEnv,
        settings: Arc<RuntimeSettings>,
        router: Arc<Router>,
        sandboxes: Arc<Sandboxes>,
        inbox: QueueReceiver,
    ) -> std::io::Result<Self> {
        let log = ComponentLog::open(
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
        // Pinned functions keep exactly one worker, as in V1.
        let max_workers = if spec.pinned {
            1
        } else {
            settings
                .max_workers_overrides
                .get(&spec.arn)
                .or_else(|| settings.max_workers_overrides.get(&spec.id))
                .copied()
                .unwrap_or(settings.max_workers_per_function)
                .max(1)
        };
        // A root span: the component outlives the deployment that started it.
        let span =
            tracing::info_span!(parent: None, "component", name = %spec.name, arn = %spec.arn);
        Ok(ComponentActor {
            restart,
            failure_times: std::collections::VecDeque::new(),
            spec,
            plan_env: Arc::new(plan_env),
            settings,
            router,
            sandboxes,
            inbox: Arc::new(tokio::sync::Mutex::new(inbox)),
            log,
            span,
            instance: None,
            extras: Vec::new(),
            max_workers,
            extra_wait_noted: false,
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
            held: false,
            hold_waiters: Vec::new(),
            rng: seed | 1,
            lambda: None,
            lambda_link: None,
            lambda_token: String::new(),
            shadow: None,
        })
    }

    /// Writes a line about this component to its own log and to the runtime log.
    fn note(&self, level: LogLevel, message: &str) {
        self.log.write(level, message);
        let _context = self.span.enter();
        match level {
            LogLevel::Debug => tracing::debug!("{message}"),
            LogLevel::Info => tracing::info!("{message}"),
            LogLevel::Warn => tracing::warn!("{message}"),
            LogLevel::Error => tracing::error!("{message}"),
            LogLevel::Fatal => tracing::error!(fatal = true, "{message}"),
        }
    }

    fn next_unit(&mut self) -> f64 {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
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
                    slots.freed().await;
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
        let python = self.spec.launch.lambda_link();
        if python {
            let native = matches!(self.spec.launch, Launch::Native { .. });
            match &self.lambda {
                Some(hub)
                    if self.lambda_link.is_some()
                        && (!native || hub.native_library().is_some()) =>
                {
                    self.lambda_token = hub.new_token()
                }
                _ => {
                    if holds_slot {
                        self.settings.on_demand_slots.give_back();
                    }
                    let why = if self.lambda.is_some() && native {
                        "Evergreen's C SDK library (libaws-greengrass-core-sdk-c.so) was not found \
                         at start, beside the evergreen program or in /usr/lib/evergreen \
                         (see the runtime log)"
                    } else {
                        "the Lambda IPC endpoint is not running (see the runtime log)"
                    };
                    self.note(LogLevel::Error, &format!("cannot start: {why}"));
                    self.after_exit(ctx, ExitReason::SpawnFailed(why.into()), Duration::ZERO);
                    return;
                }
            }
        }
        // The instance name comes from the runtime-wide counter, not from
        // `generation`: another actor of this component (the one a
        // redeployment replaces, or a rollback brings back) counts its own
        // generations, and its container must not share a name with ours.
        let instance = self.sandboxes.next_instance();
        let mut instance_name = String::new();
        let spawned = self
            .sandboxes
            .for_mode(self.spec.isolation, &self.spec.arn)
            .and_then(|sandbox| {
                let lambda = self
                    .lambda
                    .as_deref()
                    .map(|hub| (hub, self.lambda_token.as_str()));
                let spec = spawn_spec(&self.spec, &self.settings, &self.plan_env, lambda, instance);
                instance_name.clone_from(&spec.instance);
                sandbox.spawn(&spec)
            });
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
        let container_note = if container.is_some() {
            format!("; container {instance_name}")
        } else {
            String::new()
        };
        self.note(
            LogLevel::Info,
            &format!(
                "started pid {} (generation {generation}){container_note}",
                pid.unwrap_or(0)
            ),
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
            actix_rt::spawn(
                stderr_task(stdout, self.log.clone(), true).instrument(self.span.clone()),
            );
        } else {
            actix_rt::spawn(
                writer_task(
                    stdin,
                    cmd_rx,
                    self.inbox.clone(),
                    component_config(&self.spec, &self.plan_env, &self.settings),
                    max_frame,
                    self.log.clone(),
                    inflight.clone(),
                )
                .instrument(self.span.clone()),
            );
            actix_rt::spawn(
                reader_task(
                    stdout,
                    addr.clone().recipient(),
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
                        lambda: self.lambda.clone(),
                    },
                )
                .instrument(self.span.clone()),
            );
        }
        actix_rt::spawn(
            stderr_task(stderr, self.log.clone(), python).instrument(self.span.clone()),
        );
        actix_rt::spawn(waiter_task(child, addr.recipient(), generation));
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
            stopping: false,
        });
    }

    /// Starts another worker of an on-demand Python function when work
    /// waits that none of its workers is free to take, within its own limit
    /// and the shared on-demand slots (a full set of slots is waited out:
    /// every tick asks again, the work stays queued).
    fn add_worker(&mut self, ctx: &mut Context<Self>) {
        let (Some(hub), Some(link)) = (self.lambda.clone(), self.lambda_link.clone()) else {
            return;
        };
        // Without a main child the ordinary start (`Wake`) comes first.
        let main_up = self
            .instance
            .as_ref()
            .is_some_and(|i| i.violation.is_none());
        if self.spec.pinned
            || self.stopping
            || self.held
            || self.idle_stopping
            || !main_up
            || 1 + self.extras.len() >= self.max_workers
            || !hub.demand(&link).wants_worker()
        {
            return;
        }
        if !self.settings.on_demand_slots.try_take() {
            if !self.extra_wait_noted {
                self.extra_wait_noted = true;
                self.note(
                    LogLevel::Info,
                    &format!(
                        "work waits for a worker; waiting for a free on-demand slot ({} may run at once)",
                        self.settings.on_demand_slots.limit()
                    ),
                );
            }
            return;
        }
        self.extra_wait_noted = false;
        let token = hub.new_token();
        let instance = self.sandboxes.next_instance();
        let spawn_began = Instant::now();
        let spawned = self
            .sandboxes
            .for_mode(self.spec.isolation, &self.spec.arn)
            .and_then(|sandbox| {
                let spec = spawn_spec(
                    &self.spec,
                    &self.settings,
                    &self.plan_env,
                    Some((&hub, token.as_str())),
                    instance,
                );
                sandbox.spawn(&spec)
            });
        let (mut child, container) = match spawned {
            Ok(spawned) => (spawned.child, spawned.container),
            Err(e) => {
                self.settings.on_demand_slots.give_back();
                self.note(LogLevel::Warn, &format!("cannot start another worker: {e}"));
                return;
            }
        };
        self.generation += 1;
        let generation = self.generation;
        let pid = child.id();
        drop(child.stdin.take());
        let addr = ctx.address();
        let inflight: SharedInFlight = Rc::new(RefCell::new(InFlight::new()));
        hub.attach_worker(
            &link,
            token,
            generation,
            inflight.clone(),
            Box::new(move || {
                addr.do_send(InstanceEvent {
                    generation,
                    kind: InstanceEventKind::Ready,
                })
            }),
        );
        // Stdout is log text like stderr, as for the main child.
        if let Some(out) = child.stdout.take() {
            actix_rt::spawn(stderr_task(out, self.log.clone(), true).instrument(self.span.clone()));
        }
        if let Some(err) = child.stderr.take() {
            actix_rt::spawn(stderr_task(err, self.log.clone(), true).instrument(self.span.clone()));
        }
        actix_rt::spawn(waiter_task(child, ctx.address().recipient(), generation));
        self.watch_readiness(ctx, generation);
        let (cmds, _) = mpsc::unbounded_channel();
        self.extras.push(Instance {
            generation,
            inflight,
            holds_slot: true,
            pid,
            started: spawn_began,
            ready: false,
            violation: None,
            cmds,
            container,
            stopping: false,
        });
        self.note(
            LogLevel::Info,
            &format!(
                "work waits and every worker is busy: started worker pid {} (generation {generation}; {} workers)",
                pid.unwrap_or(0),
                1 + self.extras.len()
            ),
        );
    }

    /// Stops the extra worker of `generation`: SIGTERM (a Python worker's
    /// stop), then SIGKILL once both grace periods passed.
    fn stop_extra(&mut self, ctx: &mut Context<Self>, generation: u64) {
        let Some(inst) = self
            .extras
            .iter_mut()
            .find(|i| i.generation == generation && !i.stopping)
        else {
            return;
        };
        inst.stopping = true;
        self.signal(generation, Signal::SIGTERM);
        let grace = self.settings.shutdown_grace + self.settings.term_grace;
        ctx.run_later(grace, move |act, _| {
            if act.current(generation).is_some() {
                act.note(
                    LogLevel::Warn,
                    "a worker still runs after SIGTERM; sending SIGKILL",
                );
                act.signal(generation, Signal::SIGKILL);
            }
        });
    }

    /// Stops every extra worker (the function is stopping or held).
    fn stop_extras(&mut self, ctx: &mut Context<Self>) {
        let generations: Vec<u64> = self.extras.iter().map(|i| i.generation).collect();
        for generation in generations {
            self.stop_extra(ctx, generation);
        }
    }

    /// An extra worker exited: its slot and token go, the invocation it held
    /// fails; the last child of a stopping function completes the stop.
    /// What every exit of a child (the main one or an extra worker) releases, and why it
    /// ended: its on-demand slot, whatever it left in its process group, its container, and
    /// its lambda-link worker.
    fn reap(
        &mut self,
        inst: &mut Instance,
        status: std::io::Result<std::process::ExitStatus>,
    ) -> ExitReason {
        if inst.holds_slot {
            self.settings.on_demand_slots.give_back();
        }
        // Anything the child left in its process group goes with it.
        if let Some(pid) = inst.pid.and_then(|p| i32::try_from(p).ok()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let oom = inst
            .container
            .take()
            .is_some_and(|c| self.release_container(c, true));
        let reason = inst.violation.clone().unwrap_or_else(|| match status {
            // The kernel says why it killed: a SIGKILL from the OOM killer is reported as
            // what it is.
            Ok(_) if oom => ExitReason::MemoryLimit(self.spec.memory_kb.unwrap_or(0)),
            Ok(st) => exit_reason(st),
            Err(e) => ExitReason::SpawnFailed(format!("cannot wait for the child: {e}")),
        });
        if let (Some(hub), Some(link)) = (&self.lambda, &self.lambda_link) {
            hub.detach_worker(link, inst.generation, &reason.to_string());
        }
        reason
    }

    fn extra_exited(
        &mut self,
        ctx: &mut Context<Self>,
        mut inst: Instance,
        status: std::io::Result<std::process::ExitStatus>,
    ) {
        let reason = self.reap(&mut inst, status);
        let level = if inst.stopping || self.stopping || self.held {
            LogLevel::Info
        } else {
            LogLevel::Warn
        };
        self.note(
            level,
            &format!(
                "worker pid {} {reason} ({} workers left)",
                inst.pid.unwrap_or(0),
                self.extras.len() + usize::from(self.instance.is_some())
            ),
        );
        if !self.extras.is_empty() || self.instance.is_some() {
            return;
        }
        if self.stopping {
            self.state = ComponentState::Stopped;
            for tx in self.stop_waiters.drain(..) {
                let _ = tx.send(());
            }
            ctx.stop();
        } else if self.held {
            for tx in self.hold_waiters.drain(..) {
                let _ = tx.send(());
            }
        }
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

    /// The main child or extra worker of `generation`, if it still runs.
    fn current(&self, generation: u64) -> Option<&Instance> {
        self.instance
            .iter()
            .chain(self.extras.iter())
            .find(|i| i.generation == generation)
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
            .iter_mut()
            .chain(self.extras.iter_mut())
            .find(|i| i.generation == generation)
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
            // The child is gone: an operator's `stop` waiting for it has its
            // answer (once the extra workers are gone too).
            if self.extras.is_empty() {
                for tx in self.hold_waiters.drain(..) {
                    let _ = tx.send(());
                }
            }
            if self.held {
                // An operator's stop: nothing starts it again, not even queued messages.
                self.wake_pending = false;
                return;
            }
            // A message queued just before the idle stop began woke a running
            // child (nothing to remember then) that never took it.
            let queued = self.inbox.try_lock().is_ok_and(|inbox| !inbox.is_empty());
            if self.wake_pending || queued {
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
            if !self.extras.is_empty() {
                // The last extra worker's exit completes the stop.
                self.state = ComponentState::Stopping;
                return;
            }
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
        // Only crashes count (see `policy`): a handler timeout restarts the
        // function without bringing it closer to `Failed`.
        let crashed = reason.is_crash();
        if crashed {
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
                if crashed {
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
        // An idle stop is the main child's alone; a stop for good or an
        // operator's hold takes every worker.
        if self.stopping || self.held {
            self.stop_extras(ctx);
        }
        let Some(inst) = &self.instance else {
            if !self.extras.is_empty() {
                // The last extra worker's exit completes the stop.
                self.state = ComponentState::Stopping;
                return;
            }
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
        if self.spec.launch.lambda_link() {
            // A Python or native worker has no stdio link to hear `Shutdown`;
            // SIGTERM is its stop (Python's default action for it is to exit;
            // the C SDK's gg_runtime_start restores the default action).
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
        // Held by an operator: messages wait in the queue (and are dropped when it is full).
        if self.stopping || self.held {
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
            // A child is stopping because it sat idle: it will not take the
            // message, so its exit must start the next one.
            (Some(_), _) if self.idle_stopping => self.wake_pending = true,
            // A child is starting or running: it takes the message from the
            // inbox itself, or (an on-demand Python function whose workers
            // are all busy) another worker does. Remembering this wake would
            // restart the function right after its next idle stop, with
            // nothing to do.
            (Some(_), _) => self.add_worker(ctx),
            // Backing off, Failed or waiting for a slot: the pending start
            // (backoff timer, cool-down, freed slot) delivers it.
            (None, _) => self.wake_pending = true,
        }
    }
}

impl ComponentActor {
    /// Gives an on-demand component its waker (before it starts).
    pub(crate) fn with_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Enforces a function's `Timeout` per delivery and stops an idle
    /// on-demand child.
    fn lifecycle_tick(&mut self, ctx: &mut Context<Self>) {
        self.extras_tick(ctx);
        let Some(inst) = &self.instance else { return };
        if !inst.ready || inst.violation.is_some() || self.stopping || self.idle_stopping {
            return;
        }
        let generation = inst.generation;
        let now = Instant::now();
        let (handling, idle_for) = {
            let f = inst.inflight.borrow();
            (f.handling_for(now), f.idle_for(now))
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

impl ComponentActor {
    /// `Timeout` and the idle stop for extra workers, then another worker
    /// if work waits (a wake can come while no slot is free).
    fn extras_tick(&mut self, ctx: &mut Context<Self>) {
        if self.extras.is_empty() && (self.spec.pinned || self.lambda_link.is_none()) {
            return;
        }
        let now = Instant::now();
        let timeout = Duration::from_secs(self.spec.timeout_s);
        let mut late = Vec::new();
        let mut idle = Vec::new();
        for inst in &self.extras {
            if !inst.ready || inst.violation.is_some() || inst.stopping {
                continue;
            }
            let f = inst.inflight.borrow();
            if !timeout.is_zero() && f.handling_for(now).is_some_and(|h| h > timeout) {
                late.push(inst.generation);
            } else if f
                .idle_for(now)
                .is_some_and(|i| i >= self.settings.on_demand_idle)
            {
                idle.push(inst.generation);
            }
        }
        for generation in late {
            self.violate(generation, ExitReason::HandlerTimeout(timeout));
        }
        for generation in idle {
            self.note(
                LogLevel::Info,
                &format!(
                    "a worker was idle for {} ms: stopping it",
                    self.settings.on_demand_idle.as_millis()
                ),
            );
            self.stop_extra(ctx, generation);
        }
        self.add_worker(ctx);
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
        if let (true, Some(hub)) = (self.spec.launch.lambda_link(), &self.lambda) {
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
    pub(crate) fn with_lambda(mut self, hub: Rc<LambdaHub>) -> Self {
        self.lambda = Some(hub);
        self
    }

    /// Answers the child's shadow requests with this shadow service.
    pub(crate) fn with_shadow(mut self, shadow: Arc<dyn crate::services::ShadowService>) -> Self {
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
                if let Some(extra) = self
                    .extras
                    .iter_mut()
                    .find(|i| i.generation == generation && !i.ready)
                {
                    extra.ready = true;
                    let took = extra.started.elapsed();
                    self.note(
                        LogLevel::Info,
                        &format!("worker ready after {:.2} ms", took.as_secs_f64() * 1000.0),
                    );
                    return;
                }
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
                if let Some(i) = self.extras.iter().position(|i| i.generation == generation) {
                    let inst = self.extras.swap_remove(i);
                    self.extra_exited(ctx, inst, status);
                    return;
                }
                let Some(mut inst) = self.instance.take_if(|i| i.generation == generation) else {
                    return;
                };
                let reason = self.reap(&mut inst, status);
                // A stop the runtime asked for (deployment removal, shutdown,
                // idle stop, an operator's restart) is normal operation,
                // however the child ended; only an exit nobody asked for is
                // an error.
                let level = if self.stopping || self.idle_stopping {
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
#[rtype(result = "Result<String, RetryError>")]
pub(crate) struct Retry;

/// Why an operator's restart was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RetryError {
    /// The component is being stopped for good (a redeployment or shutdown).
    #[error("{0} is being stopped")]
    Stopping(String),
    /// An operator stopped it; only `start` (or a deployment) brings it back.
    #[error("{0} was stopped by an operator; `evergreen start` starts it again")]
    Held(String),
}

impl Handler<Retry> for ComponentActor {
    type Result = Result<String, RetryError>;

    fn handle(&mut self, _: Retry, ctx: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return Err(RetryError::Stopping(self.spec.arn.clone()));
        }
        if self.held {
            return Err(RetryError::Held(self.spec.arn.clone()));
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
        // The main child speaks for the function; with only extra workers
        // left (the main one idled out), the oldest of them does.
        let first = self.instance.as_ref().or_else(|| self.extras.first());
        let state = match self.state {
            ComponentState::Stopped if first.is_some() => ComponentState::Running,
            state => state,
        };
        MessageResult(ComponentStatus {
            arn: self.spec.arn.clone(),
            id: self.spec.id.clone(),
            name: self.spec.name.clone(),
            kind: self.spec.kind,
            state,
            pid: first.and_then(Instance::component_pid),
            workers: self
                .instance
                .iter()
                .chain(self.extras.iter())
                .filter_map(Instance::component_pid)
                .collect(),
            uptime: first.map(|i| i.started.elapsed()),
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            // Absolute even under a relative `--root`, so a reader in another
            // directory finds the file; the runtime's directory never changes.
            log_file: {
                let path = self.settings.log_root.join(&self.spec.log_file);
                std::path::absolute(&path).unwrap_or(path)
            },
            log_dropped: self.log.dropped(),
            stopped_by_operator: self.held,
        })
    }
}

/// An operator's stop (`evergreen stop`): the child is stopped gracefully (stop, SIGTERM,
/// SIGKILL, as for a removal) and the component stays `Stopped` until [`Release`]. Answers once
/// the child is gone.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, RetryError>")]
pub(crate) struct Hold;

impl Handler<Hold> for ComponentActor {
    type Result = ResponseFuture<Result<String, RetryError>>;

    fn handle(&mut self, _: Hold, ctx: &mut Self::Context) -> Self::Result {
        if self.stopping {
            let arn = self.spec.arn.clone();
            return Box::pin(async move { Err(RetryError::Stopping(arn)) });
        }
        if self.held && self.instance.is_none() && self.extras.is_empty() {
            return Box::pin(async { Ok("already stopped by an operator".to_string()) });
        }
        let was = self.state;
        self.held = true;
        self.wake_pending = false;
        if self.instance.is_none() {
            // Backing off, Failed, waiting for a slot or an idle on-demand function: a new
            // generation makes every pending backoff or cool-down timer do nothing.
            self.generation += 1;
            self.state = ComponentState::Stopped;
            if !self.extras.is_empty() {
                // Its main child idled out while extra workers still run: the
                // last one's exit answers.
                self.note(
                    LogLevel::Info,
                    "stop requested by an operator: stopping its workers; it stays stopped until `evergreen start`",
                );
                self.stop_extras(ctx);
                let (tx, rx) = oneshot::channel();
                self.hold_waiters.push(tx);
                return Box::pin(async move {
                    let _ = rx.await;
                    Ok(format!("stopped (was {was:?})"))
                });
            }
            self.note(
                LogLevel::Info,
                &format!("stopped by an operator (was {was:?}); it stays stopped until `evergreen start`"),
            );
            return Box::pin(async move { Ok(format!("stopped (was {was:?})")) });
        }
        let (tx, rx) = oneshot::channel();
        self.hold_waiters.push(tx);
        if !self.idle_stopping {
            self.note(
                LogLevel::Info,
                "stop requested by an operator: stopping; it stays stopped until `evergreen start`",
            );
            // The idle-stop path: its exit is not a failure and, held, starts nothing.
            self.idle_stopping = true;
            self.begin_stop(ctx);
        }
        Box::pin(async move {
            // A dropped sender means the actor stopped for good (a deployment or shutdown
            // removed it meanwhile): the child is gone either way.
            let _ = rx.await;
            Ok(format!("stopped (was {was:?})"))
        })
    }
}

/// Ends an operator's stop: the component starts again as a deployment would start it (a
/// pinned one now, an on-demand one at its next message). Sent by an operator's
/// `evergreen start` and, for every component a deployment keeps, by the supervisor.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, RetryError>")]
pub(crate) struct Release {
    /// A deployment's release of a component that is not held says nothing.
    pub(crate) by_deployment: bool,
}

impl Handler<Release> for ComponentActor {
    type Result = Result<String, RetryError>;

    fn handle(&mut self, msg: Release, ctx: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return Err(RetryError::Stopping(self.spec.arn.clone()));
        }
        if !self.held {
            return Ok(format!(
                "not stopped by an operator (it is {:?}); nothing to do",
                self.state
            ));
        }
        self.held = false;
        self.failures = 0;
        self.failure_times.clear();
        let who = if msg.by_deployment {
            "a new deployment"
        } else {
            "an operator"
        };
        if self.instance.is_some() {
            // Its stop is still under way: the exit starts the next child.
            self.wake_pending = true;
            self.note(
                LogLevel::Info,
                &format!("started again by {who}: starting once its stop completes"),
            );
            return Ok("stopping; it starts again right after".to_string());
        }
        self.note(LogLevel::Info, &format!("started again by {who}"));
        self.generation += 1;
        let queued = self.inbox.try_lock().is_ok_and(|inbox| !inbox.is_empty());
        if self.spec.pinned || queued {
            self.launch(ctx);
            Ok("started".to_string())
        } else {
            self.state = ComponentState::Stopped;
            Ok("on demand: starts when a message arrives for it".to_string())
        }
    }
}
