//! The supervisor actor: turns a deployed [`GroupPlan`] into running
//! components and stops them all on shutdown.
//!
//! It owns the *running set* (component ARN → spec + actor), which a
//! deployment diffs against ([`diff`]): components whose spec is unchanged
//! keep running, removed or changed ones are stopped, new ones started, and
//! the router's subscription table is swapped in one step. It never talks to
//! a child itself; each component actor does.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use actix::prelude::*;

use crate::component::{
    ComponentActor, ComponentEnv, ComponentStatus, GetStatus, Hold, Release, Retry, RetryError,
    RuntimeSettings, Stop,
};
use crate::router::{
    bounded_queue, DeliverySink, Message as Routed, OfferError, QueueSink, Router, RouterStats,
    Subscription, SubscriptionTable,
};
use crate::sandbox::Sandboxes;
use crate::services::{PlanListener, ShadowService};
use evergreen_group::plan::{ComponentSpec, GroupPlan};

/// What a deployment changes, by component ARN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentDiff {
    pub start: Vec<String>,
    pub stop: Vec<String>,
    pub keep: Vec<String>,
}

/// Compares the running specs with a new plan. A component whose spec changed
/// in any way is stopped and started again.
pub(crate) fn diff(
    running: &BTreeMap<String, Arc<ComponentSpec>>,
    plan: &GroupPlan,
) -> DeploymentDiff {
    let mut d = DeploymentDiff::default();
    for (arn, spec) in running {
        match plan.components.get(arn) {
            Some(new) if new == spec.as_ref() => d.keep.push(arn.clone()),
            Some(_) => {
                d.stop.push(arn.clone());
                d.start.push(arn.clone());
            }
            None => d.stop.push(arn.clone()),
        }
    }
    for arn in plan.components.keys() {
        if !running.contains_key(arn) {
            d.start.push(arn.clone());
        }
    }
    d
}

/// Why a plan was not deployed. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deployment refused:\n  {}", .0.join("\n  "))]
pub struct DeployError(pub Vec<String>);

/// Deploy a validated plan.
#[derive(Debug, Message)]
#[rtype(result = "Result<DeploymentDiff, DeployError>")]
pub struct Deploy {
    pub plan: GroupPlan,
    /// The sender's span (its deployment): the supervisor's lines about this plan carry it.
    pub span: tracing::Span,
}

impl Deploy {
    /// Deploys `plan` in the current span's context.
    pub fn new(plan: GroupPlan) -> Deploy {
        Deploy {
            plan,
            span: tracing::Span::current(),
        }
    }
}

/// Stop every component (stop, SIGTERM, SIGKILL); resolves when all are gone.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// The status of every running component.
#[derive(Debug, Message)]
#[rtype(result = "Vec<ComponentStatus>")]
pub struct Status;

/// The inbox of an on-demand component: queues like any target, and wakes
/// the component so it starts a child for the message.
#[derive(Debug)]
struct WakingSink {
    inner: QueueSink,
    wake: Arc<tokio::sync::Notify>,
}

impl DeliverySink for WakingSink {
    fn offer(&self, msg: Routed) -> Result<(), OfferError> {
        let result = self.inner.offer(msg);
        if result.is_ok() {
            // One stored permit covers any number of messages until the
            // component looks; it never blocks the publisher.
            self.wake.notify_one();
        }
        result
    }

    fn queued(&self) -> Option<usize> {
        self.inner.queued()
    }
}

/// How often the supervisor reports messages the router had to drop.
const DROP_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

struct Running {
    spec: Arc<ComponentSpec>,
    addr: Addr<ComponentActor>,
    /// A connector's stream manager token, which dies with it.
    stream_token: Option<String>,
}

/// The supervisor actor.
pub struct Supervisor {
    settings: Arc<RuntimeSettings>,
    router: Arc<Router>,
    sandboxes: Arc<Sandboxes>,
    running: BTreeMap<String, Running>,
    stopping: bool,
    /// Router counters at the last drop report.
    reported: RouterStats,
    /// The Lambda IPC endpoint Python functions are served by, if running.
    lambda: Option<std::rc::Rc<crate::lambda::LambdaHub>>,
    /// Told of each deployed plan, in the order they were added (the MQTT server's devices,
    /// the shadow service's synced things, the cloud bridge's subscriptions).
    listeners: Vec<Arc<dyn PlanListener>>,
    /// The local shadow service, handed to each component for its shadow requests.
    shadow: Option<Arc<dyn ShadowService>>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("running", &self.running.keys().collect::<Vec<_>>())
            .field("stopping", &self.stopping)
            .finish()
    }
}

impl Supervisor {
    pub fn new(settings: RuntimeSettings, router: Arc<Router>, sandboxes: Sandboxes) -> Self {
        Supervisor {
            settings: Arc::new(settings),
            router,
            sandboxes: Arc::new(sandboxes),
            running: BTreeMap::new(),
            stopping: false,
            reported: RouterStats::default(),
            lambda: None,
            listeners: Vec::new(),
            shadow: None,
        }
    }

    /// Answers the components' shadow requests with this shadow service.
    pub fn with_shadow(mut self, shadow: Arc<dyn ShadowService>) -> Self {
        self.shadow = Some(shadow);
        self
    }

    /// Serves Python functions through this Lambda IPC endpoint.
    pub fn with_lambda(mut self, hub: std::rc::Rc<crate::lambda::LambdaHub>) -> Self {
        self.lambda = Some(hub);
        self
    }

    /// Tells `listener` of every deployed plan, after the listeners added before it.
    pub fn with_listener(mut self, listener: Arc<dyn PlanListener>) -> Self {
        self.listeners.push(listener);
        self
    }

    fn forget_stream_token(&self, running: &Running) {
        if let (Some(token), Some(hub)) = (&running.stream_token, &self.lambda) {
            hub.token_directory().remove(token);
        }
    }

    /// Makes sure the Lambda IPC endpoint listens, for a plan with functions:
    /// a port that cannot be bound refuses the deployment, nothing changed.
    fn listen_for_functions(&self) -> Result<(), DeployError> {
        let Some(hub) = &self.lambda else {
            return Err(DeployError(vec![
                "the group has Python or native functions, but the runtime could not write the Python \
                 runtime files at its start (see its log); restart it once the root is writable"
                    .into(),
            ]));
        };
        match hub.listen() {
            Ok(true) => {
                tracing::info!("Lambda IPC endpoint on localhost:{}", hub.port());
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => Err(DeployError(vec![format!(
                "cannot listen on localhost:{} (coreThing.ggDaemonPort) for the Lambda IPC \
                 endpoint the group's functions need: {e}",
                hub.port()
            )])),
        }
    }

    /// Logs every target that lost messages since the last report: local
    /// delivery is best effort (QoS 0, as in Greengrass), but never silent.
    fn report_drops(&mut self) {
        let now = self.router.stats();
        for (target, stats) in &now.targets {
            let before = self
                .reported
                .targets
                .get(target)
                .copied()
                .unwrap_or_default();
            let full = stats.dropped_full.saturating_sub(before.dropped_full);
            let unattached = stats
                .dropped_unattached
                .saturating_sub(before.dropped_unattached);
            if full > 0 {
                tracing::warn!("{target}: {full} messages dropped because its queue was full (a slow or stopped target)");
            }
            if unattached > 0 {
                tracing::warn!("{target}: {unattached} messages not delivered: nothing was attached to receive them (an MQTT device not connected and without a persistent session, or a service that is not running, such as the cloud without coreThing.iotHost)");
            }
        }
        self.reported = now;
    }

    fn check(&self, plan: &GroupPlan) -> Result<SubscriptionTable, DeployError> {
        let mut errors = Vec::new();
        for spec in plan.components.values() {
            if let Err(e) = self.sandboxes.for_mode(spec.isolation, &spec.arn) {
                errors.push(e.to_string());
            }
        }
        let subs = plan.subscriptions.iter().map(|s| Subscription {
            id: s.id.clone(),
            source: s.source.clone(),
            subject: s.subject.clone(),
            target: s.target.clone(),
        });
        let table = match SubscriptionTable::build(subs) {
            Ok(t) => Some(t),
            Err(errs) => {
                errors.extend(errs.iter().map(|e| e.to_string()));
                None
            }
        };
        if errors.is_empty() {
            for listener in &self.listeners {
                if let Err(e) = listener.prepare(plan) {
                    errors.push(e);
                }
            }
        }
        match table {
            Some(t) if errors.is_empty() => Ok(t),
            _ => Err(DeployError(errors)),
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(DROP_REPORT_INTERVAL, |act, _| act.report_drops());
    }
}

impl Handler<Deploy> for Supervisor {
    type Result = Result<DeploymentDiff, DeployError>;

    fn handle(&mut self, Deploy { plan, span }: Deploy, _ctx: &mut Self::Context) -> Self::Result {
        let _context = span.enter();
        if self.stopping {
            return Err(DeployError(vec!["the runtime is shutting down".into()]));
        }
        let table = self.check(&plan)?;
        let functions = plan.components.values().any(|c| c.launch.lambda_link());
        if functions {
            self.listen_for_functions()?;
        }
        if let Some(hub) = &self.lambda {
            hub.set_stream_manager_port(plan.stream_manager.as_ref().map(|s| s.port));
        }
        let specs: BTreeMap<String, Arc<ComponentSpec>> = self
            .running
            .iter()
            .map(|(k, r)| (k.clone(), r.spec.clone()))
            .collect();
        let d = diff(&specs, &plan);
        for arn in &d.stop {
            if let Some(old) = self.running.remove(arn) {
                self.forget_stream_token(&old);
                self.router.detach(arn);
                tracing::info!("stopping {arn} (removed or changed by the deployment)");
                old.addr.do_send(Stop);
            }
        }
        self.router.replace_table(table);
        // A new deployment ends every operator's stop: what it keeps runs again.
        for arn in &d.keep {
            if let Some(kept) = self.running.get(arn) {
                kept.addr.do_send(Release {
                    by_deployment: true,
                });
            }
        }
        for listener in &self.listeners {
            listener.deployed(&plan);
        }
        for arn in &d.start {
            let Some(spec) = plan.components.get(arn) else {
                continue;
            };
            let spec = Arc::new(spec.clone());
            let (sink, inbox) = bounded_queue(self.settings.queue_capacity);
            let mut env = ComponentEnv::for_component(&spec, &plan, &self.settings.resource_root);
            let mut stream_token = None;
            if let (Some(sm), Some(hub), evergreen_ipc::ComponentKind::Connector) =
                (&plan.stream_manager, &self.lambda, spec.kind)
            {
                let token = hub.new_token();
                hub.token_directory().insert(&token, arn);
                env.stream_manager = Some((sm.port, token.clone()));
                stream_token = Some(token);
            }
            let mut actor = match ComponentActor::new(
                spec.clone(),
                env,
                self.settings.clone(),
                self.router.clone(),
                self.sandboxes.clone(),
                inbox,
            ) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!("{arn}: cannot open its log file, not started: {e}");
                    if let (Some(token), Some(hub)) = (&stream_token, &self.lambda) {
                        hub.token_directory().remove(token);
                    }
                    continue;
                }
            };
            if let Some(hub) = &self.lambda {
                actor = actor.with_lambda(hub.clone());
            }
            if let Some(shadow) = &self.shadow {
                actor = actor.with_shadow(shadow.clone());
            }
            if spec.pinned {
                self.router.attach(arn, Arc::new(sink));
            } else {
                // On demand: a queued message also wakes the component.
                let wake = Arc::new(tokio::sync::Notify::new());
                actor = actor.with_wake(wake.clone());
                self.router
                    .attach(arn, Arc::new(WakingSink { inner: sink, wake }));
            }
            let addr = actor.start();
            self.running.insert(
                arn.clone(),
                Running {
                    spec,
                    addr,
                    stream_token,
                },
            );
        }
        if !functions {
            if let Some(hub) = self.lambda.as_ref().filter(|hub| hub.close()) {
                tracing::info!(
                    "Lambda IPC endpoint on localhost:{} closed: the group has no function",
                    hub.port()
                );
            }
        }
        tracing::info!(
            "deployed: {} started, {} stopped, {} unchanged; {} subscriptions",
            d.start.len(),
            d.stop.len(),
            d.keep.len(),
            plan.subscriptions.len()
        );
        Ok(d)
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        self.report_drops();
        tracing::info!("shutting down {} components", self.running.len());
        // All stops are sent now and run concurrently; awaiting them in turn
        // then takes as long as the slowest.
        let requests: Vec<_> = self.running.values().map(|r| r.addr.send(Stop)).collect();
        for arn in self.running.keys() {
            self.router.detach(arn);
        }
        self.running.clear();
        // A child is SIGKILLed after grace + term at the latest; the margin
        // covers reaping. Past it we stop waiting: children die with us anyway.
        let limit = self.settings.shutdown_grace
            + self.settings.term_grace
            + std::time::Duration::from_secs(2);
        Box::pin(async move {
            let all = async {
                for r in requests {
                    let _ = r.await;
                }
            };
            if tokio::time::timeout(limit, all).await.is_err() {
                tracing::warn!("some components did not confirm their stop in time");
            }
        })
    }
}

/// Start a component again (by name, Id or ARN); answers its ARN and what
/// was done, or why not.
#[derive(Debug, Message)]
#[rtype(result = "Result<(String, String), RestartError>")]
pub struct RestartComponent(pub String);

/// An operator's stop of a component (by name, Id or ARN): it stays stopped, whatever its
/// restart policy, until [`StartComponent`] or a new deployment. Answers once its child is
/// gone.
#[derive(Debug, Message)]
#[rtype(result = "Result<(String, String), RestartError>")]
pub struct StopComponent(pub String);

/// Ends an operator's stop of a component (by name, Id or ARN).
#[derive(Debug, Message)]
#[rtype(result = "Result<(String, String), RestartError>")]
pub struct StartComponent(pub String);

/// Why an operator's restart, stop or start was refused.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("no component named {0:?} runs")]
    Unknown(String),
    #[error("{key:?} names several components; use an ARN: {}", arns.join(", "))]
    Ambiguous { key: String, arns: Vec<String> },
    #[error("{0}")]
    Refused(String),
    #[error("{arn}: {source}")]
    Gone {
        arn: String,
        source: actix::MailboxError,
    },
}

impl Supervisor {
    /// The one running component `key` names (its ARN, Id or name).
    fn find(&self, key: &str) -> Result<(String, Addr<ComponentActor>), RestartError> {
        let matches: Vec<(&String, &Running)> = self
            .running
            .iter()
            .filter(|(arn, r)| **arn == key || r.spec.id == key || r.spec.name == key)
            .collect();
        match matches.as_slice() {
            [(arn, r)] => Ok(((*arn).clone(), r.addr.clone())),
            [] => Err(RestartError::Unknown(key.to_string())),
            many => Err(RestartError::Ambiguous {
                key: key.to_string(),
                arns: many.iter().map(|(a, _)| (*a).clone()).collect(),
            }),
        }
    }
}

/// Sends an operator's request to the component `found` names and turns its answer into the
/// supervisor's.
fn ask_component<M>(
    found: Result<(String, Addr<ComponentActor>), RestartError>,
    msg: M,
) -> ResponseFuture<Result<(String, String), RestartError>>
where
    M: Message<Result = Result<String, RetryError>> + Send + 'static,
    ComponentActor: Handler<M>,
{
    Box::pin(async move {
        let (arn, addr) = found?;
        match addr.send(msg).await {
            Ok(Ok(message)) => Ok((arn, message)),
            Ok(Err(e)) => Err(RestartError::Refused(e.to_string())),
            Err(source) => Err(RestartError::Gone { arn, source }),
        }
    })
}

impl Handler<RestartComponent> for Supervisor {
    type Result = ResponseFuture<Result<(String, String), RestartError>>;

    fn handle(
        &mut self,
        RestartComponent(key): RestartComponent,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        ask_component(self.find(&key), Retry)
    }
}

impl Handler<StopComponent> for Supervisor {
    type Result = ResponseFuture<Result<(String, String), RestartError>>;

    fn handle(
        &mut self,
        StopComponent(key): StopComponent,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        ask_component(self.find(&key), Hold)
    }
}

impl Handler<StartComponent> for Supervisor {
    type Result = ResponseFuture<Result<(String, String), RestartError>>;

    fn handle(
        &mut self,
        StartComponent(key): StartComponent,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        ask_component(
            self.find(&key),
            Release {
                by_deployment: false,
            },
        )
    }
}

impl Handler<Status> for Supervisor {
    type Result = ResponseFuture<Vec<ComponentStatus>>;

    fn handle(&mut self, _: Status, _ctx: &mut Self::Context) -> Self::Result {
        let requests: Vec<_> = self
            .running
            .values()
            .map(|r| r.addr.send(GetStatus))
            .collect();
        Box::pin(async move {
            let mut out = Vec::new();
            for r in requests {
                if let Ok(s) = r.await {
                    out.push(s);
                }
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_group::plan::{CoreSpec, Isolation, Launch, LoggerPlan, RunAs};
    use evergreen_ipc::ComponentKind;

    fn spec(arn: &str, arg: &str) -> ComponentSpec {
        ComponentSpec {
            id: arn.into(),
            arn: arn.into(),
            kind: ComponentKind::Function,
            name: arn.into(),
            launch: Launch::Executable {
                path: "/bin/true".into(),
                args: vec![arg.into()],
            },
            parameters: Default::default(),
            isolation: Isolation::NoContainer,
            run_as: RunAs::default(),
            pinned: true,
            memory_kb: None,
            timeout_s: 3,
            resources: vec![],
            secrets: vec![],
            aws: false,
            log_file: "x.log".into(),
        }
    }

    fn plan(specs: Vec<ComponentSpec>) -> GroupPlan {
        GroupPlan {
            core: CoreSpec {
                thing_arn: "arn:aws:iot:r:1:thing/c".into(),
                thing_name: "c".into(),
                region: "r".into(),
                account: "1".into(),
                sync_shadow: false,
            },
            components: specs.into_iter().map(|s| (s.arn.clone(), s)).collect(),
            subscriptions: vec![],
            devices: Default::default(),
            resources: Default::default(),
            loggers: LoggerPlan::default(),
            stream_manager: None,
        }
    }

    #[test]
    fn diff_keeps_unchanged_and_restarts_changed() {
        let running: BTreeMap<_, _> = [spec("a", "1"), spec("b", "1"), spec("c", "1")]
            .into_iter()
            .map(|s| (s.arn.clone(), Arc::new(s)))
            .collect();
        let next = plan(vec![spec("a", "1"), spec("b", "2"), spec("d", "1")]);
        let d = diff(&running, &next);
        assert_eq!(d.keep, vec!["a"]);
        assert_eq!(d.stop, vec!["b", "c"]);
        assert_eq!(d.start, vec!["b", "d"]);
    }
}
