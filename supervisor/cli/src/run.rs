//! `evergreen run`, in the order start-up must happen: [`prepare`] (configuration, the group to
//! start, the runtime log, everything that can fail before a thread starts), [`start_services`]
//! (the router, the shadow service, the Lambda endpoint, the cloud bridge, the MQTT server and
//! the supervisor they plug into), [`first_deployment`] (control socket bound first, secrets,
//! the deployment, readiness to systemd) and [`wait_for_signal`] (the graceful stop). Each step
//! fails with a typed [`RunError`] that maps to an exit code; nothing here panics on input.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr};
use evergreen_aws::credentials::AwsAccess;
use evergreen_cloud::bridge::{BridgeHandle, Cloud, LinkState};
use evergreen_cloud::Spool;
use evergreen_config::CoreConfig;
use evergreen_cwlogs::CloudLogs;
use evergreen_group::plan::{GroupPlan, Launch};
use evergreen_models::ModelInstaller;
use evergreen_mqtt::MqttHub;
use evergreen_ops::control::{
    CloudDrops, CloudLink, CloudReport, CloudState, ControlSocket, ControlState, MqttConnections,
    MqttCounters, MqttDrops, MqttPublishes, MqttReport, RuntimeInfo,
};
use evergreen_ops::deploy::{self, Deployer, Installing, PlanInstaller};
use evergreen_ops::lock::RootLock;
use evergreen_ops::notify::{watchdog_interval, Notifier};
use evergreen_runtime::component::{ComponentState, RuntimeSettings};
use evergreen_runtime::logs::{LogGuard, SystemLogOptions};
use evergreen_runtime::router::{Router, SubscriptionTable};
use evergreen_runtime::sandbox::Sandboxes;
use evergreen_runtime::services::{PlanListener, SecretSource};
use evergreen_runtime::supervisor::{Deploy, DeployError, Shutdown, Status, Supervisor};
use evergreen_secrets::SecretService;
use evergreen_shadow::ShadowHandle;

use crate::app::{
    aws_access, default_group_for, load_config, load_version, loader, read_group, settings,
    store_group_file, RunError, RunOptions, DEFAULT_GROUP_LOG,
};

/// What the label of the embedded default group reads.
const EMBEDDED: &str = "the embedded default group";

/// Why a run ended.
#[derive(Debug)]
pub enum Stopped {
    /// SIGINT or SIGTERM.
    Signal,
    /// To start again onto another runtime release ([`crate::launch::restart`]).
    Restart(Box<CoreConfig>),
}

/// `evergreen run`: runs until SIGINT or SIGTERM, or a restart onto another release, then
/// stops every component.
pub fn run(opts: RunOptions) -> Result<Stopped, RunError> {
    let mut prepared = prepare(opts)?;
    // Dropped after the actor system (declared before it): the last lines are written.
    let _log_guard = prepared.log_guard.take();
    let cfg = prepared.cfg.clone();
    let system = actix_rt::System::new();
    system.block_on(async move {
        let started = start_services(&mut prepared).await?;
        let supervisor = started.supervisor.clone();
        match first_deployment(prepared, started).await {
            Ok(running) => Ok(match wait_for_signal(running).await {
                true => Stopped::Restart(Box::new(cfg)),
                false => Stopped::Signal,
            }),
            Err(e) => {
                // The supervisor must have run and stopped before the system is
                // dropped: actix starts an actor that never ran when its context
                // is dropped, outside any reactor, and that panics. Stopping it
                // also stops anything the refused deployment started.
                let _ = supervisor.send(Shutdown).await;
                Err(e)
            }
        }
    })
}

/// Everything settled before the actor system starts.
struct Prepared {
    /// Held for the whole run: no second runtime on this root.
    _lock: RootLock,
    /// The log writer; [`run`] takes it to outlive the actor system.
    log_guard: Option<LogGuard>,
    started: Instant,
    cfg: CoreConfig,
    plan: GroupPlan,
    /// Names the group in the log: a file, a stored version or the embedded group.
    label: String,
    group_file: Option<PathBuf>,
    settings: RuntimeSettings,
    secrets: Arc<SecretService>,
    /// The credentials chain the deployer fetches secrets with.
    aws: Arc<AwsAccess>,
    /// Fetches the plans' machine-learning model resources from S3.
    models: Arc<ModelInstaller>,
    notifier: Option<Rc<Notifier>>,
    watchdog: Option<Duration>,
    /// `<root>/runtime/python`, or `None` when its files could not be written.
    python_dir: Option<PathBuf>,
    /// Where native functions load the C SDK library from, if it was found and copied.
    native_lib_dir: Option<PathBuf>,
    mqtt_setup: evergreen_mqtt::Setup,
    cloud: Option<Cloud>,
}

/// Loads the configuration and the group to start (the `--group` file, else the last good
/// deployment, else the embedded group), opens the runtime log, and prepares what can fail
/// with a reason before any thread starts: the runtime settings, the Python support files and
/// the cloud bridge's TLS files and spool.
fn prepare(opts: RunOptions) -> Result<Prepared, RunError> {
    let started = Instant::now();
    let cfg = load_config(opts.config.as_deref(), opts.root)?;
    // A runtime release from the fleet may be the one to run: then this does not return.
    crate::launch::launch(&cfg);
    // First of all: a second runtime on this root must change nothing, not even
    // append to the runtime log, let alone clean up the first one's cgroups.
    let lock = RootLock::acquire(cfg.write_dir())?;
    let log_root = cfg.log_dir();
    let runtime_root = cfg.root().to_path_buf();
    // The group says how the runtime log is kept (Logger `GreengrassSystem`),
    // so it is read first; an invalid group is still logged, with defaults.
    // With no --group, what the last successful deployment left running
    // comes back (after a reboot or a crash); else the embedded group.
    let mut restore_problem = None;
    let restored = match opts.group {
        Some(_) => None,
        None => deploy::last_good(cfg.write_dir()).and_then(|id| match load_version(&cfg, &id) {
            Ok(plan) => Some((id, plan)),
            Err(e) => {
                restore_problem = Some(format!(
                    "cannot restore the last good deployment (group version {}): {e}; starting the embedded default group",
                    id.short()
                ));
                None
            }
        }),
    };
    let mut version = None;
    let (group, label) = match restored {
        Some((id, plan)) => {
            let label = format!("group version {} (the last good deployment)", id.short());
            version = Some(id);
            (Ok(plan), label)
        }
        None => match opts.group.as_deref() {
            // The file is stored as a version with its code first, exactly as `deploy FILE`
            // stores it, and the stored copy is what runs.
            Some(path) => {
                let file = std::path::absolute(path)
                    .unwrap_or_else(|_| path.to_path_buf())
                    .display()
                    .to_string();
                match store_group_file(path, &cfg) {
                    Ok((id, plan)) => {
                        let label = format!("{file} (group version {})", id.short());
                        version = Some(id);
                        (Ok(plan), label)
                    }
                    Err(e) => (Err(e), file),
                }
            }
            None => (read_group(None, &cfg), EMBEDDED.to_string()),
        },
    };
    let system_log = group.as_ref().map(|p| p.loggers.system).unwrap_or_default();
    // The command line, then the configuration, then the group's GreengrassSystem logger.
    let level = opts
        .log_level
        .or(cfg.evergreen.log_level.map(|l| l.level()))
        .unwrap_or(system_log.level);
    let log_guard = evergreen_runtime::logs::install(
        &log_root,
        SystemLogOptions {
            level,
            space_kb: system_log.space_kb,
            to_stderr: cfg.evergreen.log_to_stderr,
            format: opts.log_format,
        },
    )
    .map_err(|source| RunError::Io {
        what: format!("cannot open the runtime log under {}", log_root.display()),
        source,
    })?;
    // What this run starts, for `evergreen logs` while the runtime is stopped.
    if group.is_ok() {
        if let Err(e) = deploy::record_last_run(cfg.write_dir(), version.as_ref()) {
            tracing::warn!("cannot record the group this run starts: {e}");
        }
    }
    if let Some(problem) = &restore_problem {
        tracing::error!("{problem}");
    }
    if label == EMBEDDED {
        if let (_, Some(note)) =
            default_group_for(evergreen_runtime::sandbox::check::container_support())
        {
            tracing::warn!("{note}");
            eprintln!("evergreen: {note}");
        }
    }
    for key in cfg.ignored_keys() {
        tracing::info!(
            "configuration key {key} is accepted for Greengrass compatibility and ignored"
        );
    }
    let plan = match group {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!("{e}");
            return Err(e);
        }
    };
    for key in cfg.evergreen.components.keys() {
        if !plan
            .components
            .values()
            .any(|c| &c.id == key || &c.arn == key)
        {
            tracing::warn!("evergreen.components.{key}: no component with that Id or ARN in the group; its settings are unused");
        }
    }
    let secrets = Arc::new(SecretService::new(&cfg.write_dir().join("secrets")));
    let aws = aws_access(&cfg, &plan)?;
    let models = Arc::new(ModelInstaller::new(
        &cfg.root().join("resources"),
        aws.clone(),
    ));
    tracing::info!("AWS credentials for connectors: {}", aws.source());
    let settings = settings(&cfg, &plan, secrets.clone(), aws.clone())?;

    // Under systemd (Type=notify): readiness, stopping and watchdog keep-alives.
    let notifier = match Notifier::new(std::env::var_os("NOTIFY_SOCKET").as_deref()) {
        Ok(n) => n.map(Rc::new),
        Err(e) => {
            tracing::warn!(
                "NOTIFY_SOCKET is set but unusable, not notifying the service manager: {e}"
            );
            None
        }
    };
    let watchdog = watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    );

    // Python functions: Evergreen's support files, written before anything
    // starts, and the port of their IPC endpoint.
    let python_functions = plan
        .components
        .values()
        .filter(|c| c.launch.lambda_link())
        .count();
    let python_dir = runtime_root.join("runtime").join("python");
    let python_dir = match evergreen_runtime::lambda::python::install(&python_dir) {
        Ok(()) => Some(python_dir),
        Err(source) => {
            let what = format!(
                "cannot write the Python runtime files to {}",
                python_dir.display()
            );
            if python_functions > 0 {
                return Err(RunError::Io { what, source });
            }
            tracing::warn!("{what}: {source}; Python functions cannot run");
            None
        }
    };
    // Native functions (`Runtime` `executable`): Evergreen's C SDK library, copied to the
    // runtime directory under V1's name (docs/c-functions.md). Without it they cannot start,
    // which each one's log then says; everything else runs.
    let native_functions = plan
        .components
        .values()
        .filter(|c| matches!(c.launch, Launch::Native { .. }))
        .count();
    let native_lib_dir = runtime_root.join("runtime").join("lib");
    let exe = std::env::current_exe().unwrap_or_default();
    let named = std::env::var_os(evergreen_runtime::lambda::native::LIBRARY_VAR);
    let native_lib_dir = match evergreen_runtime::lambda::native::find_library(
        &exe,
        named.as_deref(),
    ) {
        None => {
            let what = match &named {
                Some(named) => format!(
                    "{}={} is not a file: native functions (Runtime executable) cannot run",
                    evergreen_runtime::lambda::native::LIBRARY_VAR,
                    std::path::Path::new(named).display()
                ),
                None => format!(
                    "{} was found neither beside {} nor in {}: native functions (Runtime executable) cannot run",
                    evergreen_runtime::lambda::native::LIBRARY,
                    exe.display(),
                    evergreen_runtime::lambda::native::PACKAGED_DIR
                ),
            };
            if native_functions > 0 {
                tracing::error!("{what}");
            } else {
                tracing::debug!("{what}");
            }
            None
        }
        Some(library) => {
            match evergreen_runtime::lambda::native::install(&native_lib_dir, &library) {
                Ok(()) => {
                    tracing::debug!(
                        "C SDK library {} copied to {}",
                        library.display(),
                        native_lib_dir.display()
                    );
                    Some(native_lib_dir)
                }
                Err(e) => {
                    tracing::error!(
                    "cannot copy {} to {}: {e}; native functions (Runtime executable) cannot run",
                    library.display(),
                    native_lib_dir.display()
                );
                    None
                }
            }
        }
    };

    let mqtt_setup = evergreen_mqtt::Setup::from_config(&cfg);
    // The cloud bridge (coreThing.iotHost): settings read and its spool
    // opened now, so a bad TLS file or spool stops the start with a reason.
    let cloud = Cloud::prepare(&cfg, &plan.core.thing_name).map_err(|e| {
        tracing::error!("cloud bridge: {e}");
        RunError::Cloud(e)
    })?;
    if cloud.is_none() {
        tracing::info!("no coreThing.iotHost: no cloud connection; messages to \"cloud\" are dropped and counted");
    }
    Ok(Prepared {
        _lock: lock,
        log_guard: Some(log_guard),
        started,
        cfg,
        plan,
        label,
        group_file: opts.group,
        settings,
        secrets,
        models,
        aws,
        notifier,
        watchdog,
        python_dir,
        native_lib_dir,
        mqtt_setup,
        cloud,
    })
}

/// The services around the core, started, and the supervisor they plug into.
struct Started {
    router: Arc<Router>,
    supervisor: Addr<Supervisor>,
    /// Flushed on a clean stop.
    cloud_spool: Option<Arc<Spool>>,
    /// The CloudWatch Logs uploader: what it collected is written to its spool on a clean stop.
    cloud_logs: Option<Arc<CloudLogs>>,
    /// The bridge's connection state, for `evergreen status`.
    cloud_link: Option<Arc<dyn CloudLink>>,
    /// The bridge, for the fleet agent.
    bridge: Option<BridgeHandle>,
    /// Its persistent sessions' store is flushed last on a clean stop.
    mqtt: Arc<MqttHub>,
}

/// Starts the router and the services that plug into the core, in the order each needs the
/// one before: the shadow service (attached to the router before any deployment routes to
/// it), the Lambda endpoint, the cloud bridge (which syncs shadows), the MQTT server (bound
/// before the deployment); then the supervisor with all of them.
async fn start_services(p: &mut Prepared) -> Result<Started, RunError> {
    let runtime_root = p.cfg.root().to_path_buf();
    let router = Arc::new(Router::new(SubscriptionTable::default()));
    let mut supervisor = Supervisor::new(
        p.settings.clone(),
        router.clone(),
        Sandboxes::detect(&runtime_root),
    );
    // The local shadow service (GGShadowService). Without its directory the
    // runtime runs on, and shadow requests are dropped and counted.
    let shadow_dir = runtime_root.join("shadow");
    let shadow = match ShadowHandle::start(&shadow_dir, router.clone()) {
        Ok(shadow) => {
            supervisor = supervisor.with_shadow(Arc::new(shadow.clone()));
            Some(shadow)
        }
        Err(e) => {
            tracing::error!(
                "cannot start the local shadow service in {}: {e}",
                shadow_dir.display()
            );
            None
        }
    };
    // The Lambda IPC endpoint's hub. It listens only while a deployed group has
    // functions: the supervisor binds the port before it deploys the first one (a busy
    // port refuses that deployment) and closes it when a deployment leaves none.
    if let Some(python_dir) = &p.python_dir {
        let l = &p.cfg.evergreen.lambda_endpoint;
        let limits = evergreen_runtime::lambda::EndpointLimits {
            head_timeout: Duration::from_millis(l.head_timeout_ms),
            body_timeout: Duration::from_millis(l.body_timeout_ms),
            max_head_bytes: l.max_head_bytes,
            max_body_bytes: l.max_body_bytes,
            max_pending_connections: l.max_pending_connections,
            max_connections_per_function: l.max_connections_per_function,
        };
        let hub = evergreen_runtime::lambda::LambdaHub::new(
            router.clone(),
            p.cfg.core_thing.gg_daemon_port,
            python_dir.clone(),
            limits,
        );
        if let Some(shadow) = &shadow {
            hub.set_shadow(Arc::new(shadow.clone()));
        }
        hub.set_secrets(p.secrets.clone() as Arc<dyn SecretSource>);
        if let Some(dir) = &p.native_lib_dir {
            hub.set_native_library(dir.clone());
        }
        hub.set_credentials(p.settings.aws.clone());
        // The stream manager, for groups that configure GGStreamManager: its clients
        // are the functions' workers, checked against the hub's live tokens.
        let s = &p.cfg.evergreen.stream_manager;
        let streams = evergreen_streams::host::StreamManagerHost::new(
            runtime_root.join("stream-manager"),
            hub.token_directory(),
        )
        .with_aws(p.aws.clone())
        .with_limits(
            evergreen_streams::store::StoreLimits {
                max_streams: s.max_streams,
                max_file_bytes: s.max_file_bytes,
                max_memory_bytes: s.max_memory_bytes,
                max_message_bytes: s.max_message_bytes,
            },
            evergreen_streams::server::ServerLimits {
                max_connections: s.max_connections,
                max_request_bytes: s.max_request_bytes,
                max_response_bytes: s.max_response_bytes,
                ..Default::default()
            },
        );
        supervisor = supervisor.with_lambda(hub).with_listener(Arc::new(streams));
    }
    let mut cloud_spool = None;
    let mut cloud_link = None;
    let mut cloud_listener = None;
    let mut bridge_handle = None;
    if let Some(cloud) = p.cloud.take() {
        match cloud.start(
            router.clone(),
            p.cfg.evergreen.queue_capacity,
            shadow.clone(),
        ) {
            Ok(bridge) => {
                cloud_spool = Some(bridge.spool().clone());
                cloud_link = Some(Arc::new(BridgeStatus(bridge.clone())) as Arc<dyn CloudLink>);
                bridge_handle = Some(bridge.clone());
                cloud_listener = Some(Arc::new(bridge) as Arc<dyn PlanListener>);
            }
            Err(e) => {
                tracing::error!("{e}");
                return Err(RunError::Cloud(e));
            }
        }
    }
    // The local MQTT server for client devices: bound before the deployment.
    let mqtt = MqttHub::new(router.clone(), p.mqtt_setup.queue_capacity);
    if let Err(what) =
        evergreen_mqtt::start(&p.mqtt_setup, mqtt.clone(), !p.plan.devices.is_empty())
    {
        tracing::error!("{what}");
        return Err(RunError::Mqtt(what));
    }
    // The CloudWatch Logs uploader for AWSCloudWatch loggers: its spool (lines a previous run
    // could not send) is taken over now; each deployed plan sets what it ships.
    let cloud_logs = match CloudLogs::start(
        evergreen_cwlogs::Settings {
            spool_dir: runtime_root.join("cloudwatch-logs"),
            account: p.plan.core.account.clone(),
            thing_name: p.plan.core.thing_name.clone(),
        },
        p.aws.clone(),
    ) {
        Ok(logs) => {
            evergreen_runtime::logs::set_shipper(logs.clone());
            supervisor = supervisor.with_listener(logs.clone());
            Some(logs)
        }
        Err(e) => {
            tracing::error!(
                "cannot start the CloudWatch Logs uploader (spool {}): {e}; AWSCloudWatch loggers send nothing",
                runtime_root.join("cloudwatch-logs").display()
            );
            None
        }
    };
    // Told of each deployed plan in this order: the CloudWatch Logs uploader's levels, the
    // MQTT server's devices, the shadow service's synced things, the cloud bridge's
    // subscriptions.
    supervisor = supervisor.with_listener(mqtt.clone());
    if let Some(shadow) = &shadow {
        supervisor = supervisor.with_listener(Arc::new(shadow.clone()));
    }
    if let Some(bridge) = cloud_listener {
        supervisor = supervisor.with_listener(bridge);
    }
    Ok(Started {
        router,
        supervisor: supervisor.start(),
        cloud_spool,
        cloud_logs,
        cloud_link,
        bridge: bridge_handle,
        mqtt,
    })
}

/// A runtime that has deployed its first group and serves its control socket.
struct Running {
    /// Released only after every component has stopped.
    _lock: RootLock,
    supervisor: Addr<Supervisor>,
    signals: Signals,
    control: evergreen_ops::control::ControlServer,
    notifier: Option<Rc<Notifier>>,
    runtime_root: PathBuf,
    cloud_spool: Option<Arc<Spool>>,
    cloud_logs: Option<Arc<CloudLogs>>,
    mqtt: Arc<MqttHub>,
    /// Set (with the reason) when the runtime is to restart onto another release.
    restart: tokio::sync::watch::Receiver<Option<String>>,
}

/// Installs the signal handlers, binds the control socket (so a second runtime on it refuses
/// before it starts a second copy of every component), installs the group's secrets, deploys
/// the plan, serves the control socket and tells systemd the runtime is ready.
async fn first_deployment(p: Prepared, s: Started) -> Result<Running, RunError> {
    // Handlers first: a SIGTERM during start-up must stop the components
    // gracefully too, not kill the runtime with them half started.
    let signals = Signals::new().map_err(|source| RunError::Io {
        what: "cannot install signal handlers".into(),
        source,
    })?;
    let control = ControlSocket::bind(&p.cfg.control_socket())
        .await
        .map_err(|e| {
            tracing::error!("{e}");
            RunError::Control(e)
        })?;
    // The group's secret resources, resolved and installed under a new
    // data key before anything that may ask for them starts.
    let aws = p.aws.clone();
    if let Err(e) = p.secrets.deploy(&p.plan, &aws).await {
        let e = DeployError(vec![e.to_string()]);
        tracing::error!("{e}");
        return Err(RunError::Deploy(e));
    }
    // Its machine-learning models, fetched (or found in the cache) before
    // anything that reads them starts.
    if let Err(e) = p.models.install(&p.plan).await {
        let e = DeployError(vec![e.to_string()]);
        tracing::error!("{e}");
        return Err(RunError::Deploy(e));
    }
    let log_root = p.cfg.log_dir();
    let components = p.plan.components.len();
    let watch = if p.label == EMBEDDED {
        format!(
            "; watch {}",
            log_root
                .join(DEFAULT_GROUP_LOG.replace("<region>", &p.plan.core.region))
                .display()
        )
    } else {
        String::new()
    };
    let deployer = Rc::new(
        Deployer::new(
            s.supervisor.clone(),
            p.cfg.write_dir(),
            Arc::new(loader(&p.cfg)),
            p.settings.readiness_timeout,
        )
        .with_installer(Arc::new(StoreSecrets {
            secrets: p.secrets.clone(),
            aws,
        }))
        .with_installer(Arc::new(Models(p.models.clone()))),
    );
    deployer.set_current(p.plan.clone(), p.label.clone());
    let thing = p.plan.core.thing_name.clone();
    let first = tracing::info_span!("deployment", id = "start").in_scope(|| Deploy::new(p.plan));
    match s.supervisor.send(first).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::error!("{e}");
            return Err(RunError::Deploy(e));
        }
        Err(e) => return Err(RunError::SupervisorGone(e)),
    }
    // Served once deployed; it keeps answering while components stop.
    let mut info = RuntimeInfo::new(p.started, p.group_file.as_deref())
        .with_log_file(&log_root.join(evergreen_runtime::logs::SYSTEM_LOG))
        .with_mqtt(Arc::new(MqttStatus(s.mqtt.clone())));
    if let Some(link) = s.cloud_link {
        info = info.with_cloud(link);
    }
    let mut state = ControlState::new(s.supervisor.clone(), s.router, info);
    state.deployer = Some(deployer.clone());
    let (restart, restart_rx) = tokio::sync::watch::channel(None);
    let decided = Rc::new(tokio::sync::Notify::new());
    crate::gate::start(
        &p.cfg,
        s.supervisor.clone(),
        s.bridge.clone(),
        restart.clone(),
        decided.clone(),
    );
    crate::fleet::start(
        &p.cfg,
        &thing,
        s.bridge.as_ref(),
        crate::fleet::Hooks {
            deployer,
            loader: loader(&p.cfg),
            control: state.clone(),
            restart,
            decided,
        },
    );
    if let Some(address) = p.cfg.evergreen.metrics_address {
        evergreen_ops::metrics::serve(address, state.clone())
            .await
            .map_err(|source| RunError::Io {
                what: format!("cannot serve metrics on evergreen.metricsAddress {address}"),
                source,
            })?;
    }
    if let Some(m) = &p.cfg.evergreen.metrics_upstream {
        match &s.bridge {
            Some(bridge) => {
                let (bridge, topic) = (bridge.clone(), m.topic.clone());
                tracing::info!(
                    "metrics published on {topic} of the upstream broker every {} s",
                    m.interval_secs
                );
                evergreen_ops::metrics::publish_every(
                    Duration::from_secs(m.interval_secs),
                    state.clone(),
                    move |text| bridge.publish(&topic, text.into_bytes()),
                );
            }
            None => tracing::warn!(
                "evergreen.metricsUpstream is set but there is no cloud connection (coreThing.iotHost): metrics are not published"
            ),
        }
    }
    if let Some(page) = &p.cfg.evergreen.status_page {
        state.status_page_url = Some(status_page(page, p.cfg.root(), &thing, &state).await?);
    }
    let control = control.serve(state);
    tracing::info!(
        "evergreen {} running {}: {components} components; logs under {}{watch}; stop with Ctrl-C or SIGTERM",
        evergreen_ops::release::version(),
        p.label,
        log_root.display()
    );
    if let Some(n) = &p.notifier {
        n.notify(&format!("READY=1\nSTATUS=running {components} components"));
        if let Some(every) = p.watchdog {
            // The keep-alive runs on the actors' thread, so a wedged
            // thread stops it and systemd restarts the runtime.
            let n = n.clone();
            actix_rt::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    n.notify("WATCHDOG=1");
                }
            });
        }
    }
    // Start-up code runs once: once the components have come up, its pages are unmapped, so
    // the runtime keeps mapped only the code it goes on using (see `resident`).
    actix_rt::spawn(drop_start_up_code(
        s.supervisor.clone(),
        p.settings.readiness_timeout,
    ));
    Ok(Running {
        _lock: p._lock,
        supervisor: s.supervisor,
        signals,
        control,
        notifier: p.notifier,
        runtime_root: p.cfg.root().to_path_buf(),
        cloud_spool: s.cloud_spool,
        cloud_logs: s.cloud_logs,
        mqtt: s.mqtt,
        restart: restart_rx,
    })
}

/// Binds and serves the status page (`evergreen.statusPage`); its URL with the token, for the
/// control socket's `status-page` answer. A configured token wins; otherwise the one kept under
/// the root (made on first use).
async fn status_page(
    page: &evergreen_config::StatusPage,
    root: &std::path::Path,
    thing: &str,
    state: &ControlState,
) -> Result<evergreen_ops::statuspage::PageUrl, RunError> {
    use evergreen_ops::statuspage::{self, StatusPage};
    let token = match &page.token {
        Some(token) => token.clone(),
        None => statuspage::token::load_or_create(&root.join(statuspage::TOKEN_FILE))
            .map_err(statuspage::StatusPageError::from)?,
    };
    let bound = StatusPage::bind(statuspage::Settings {
        address: page.address,
        token,
        sample_every: Duration::from_secs(page.sample_secs),
        samples: evergreen_config::StatusPage::SAMPLES,
        title: thing.to_string(),
    })
    .await?;
    let url = bound.url();
    bound.serve(state.clone());
    Ok(url)
}

/// Waits until no component is starting any more (each is running, or has failed and backs
/// off) or `readiness` has passed, then unmaps the start-up code's pages.
async fn drop_start_up_code(supervisor: Addr<Supervisor>, readiness: Duration) {
    let deadline = Instant::now() + readiness;
    loop {
        match supervisor.send(Status).await {
            Ok(statuses) if statuses.iter().all(|s| s.state != ComponentState::Starting) => break,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Ok(_) => break,
            // The supervisor is gone: the runtime is stopping.
            Err(_) => return,
        }
    }
    crate::resident::trim_heap();
    match crate::resident::drop_code_pages() {
        Ok(kb) => tracing::info!(
            "start-up over: {kb} kB of the executable's pages unmapped (they come back from the page cache when used)"
        ),
        Err(e) => tracing::warn!("cannot unmap the start-up code's pages: {e}"),
    }
}

/// Waits for SIGINT or SIGTERM or a restart onto another release, then stops every component
/// gracefully (a second signal, a moment later, exits at once), closes the control socket and
/// flushes the spool and the session store. True for a restart.
async fn wait_for_signal(mut r: Running) -> bool {
    let (name, restart) = tokio::select! {
        name = r.signals.next() => (name, false),
        Ok(()) = r.restart.changed() => ("restart", true),
    };
    let first = Instant::now();
    if restart {
        let why = r.restart.borrow().clone().unwrap_or_default();
        tracing::info!("{why}: stopping components to restart");
    } else {
        tracing::info!("{name} received: stopping components (send it again to exit at once)");
    }
    if let Some(n) = &r.notifier {
        n.notify("STOPPING=1");
    }
    let shutdown = r.supervisor.send(Shutdown);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                Sandboxes::release_host(&r.runtime_root);
                tracing::info!("all components stopped");
                break;
            }
            name = r.signals.next() => {
                // A signal sent to the whole process group (a terminal,
                // `timeout`, a service manager) can arrive twice at once;
                // only a deliberate second one, a moment later, skips the
                // graceful stop.
                if first.elapsed() >= REPEAT_SIGNAL_AFTER {
                    tracing::warn!("{name} received again: exiting without waiting");
                    break;
                }
            }
        }
    }
    r.control.shutdown().await;
    if let Some(spool) = r.cloud_spool {
        spool.flush();
    }
    if let Some(logs) = r.cloud_logs {
        logs.flush(Duration::from_secs(2));
    }
    r.mqtt.flush_sessions();
    restart
}

/// The cloud bridge's connection state, as the control socket's status reports it (the ops
/// crate knows no cloud crate; this maps one's words onto the other's).
#[derive(Debug)]
struct BridgeStatus(BridgeHandle);

/// The MQTT server's counters, as `evergreen status` reports them.
#[derive(Debug)]
struct MqttStatus(Arc<MqttHub>);

impl MqttCounters for MqttStatus {
    fn report(&self) -> MqttReport {
        let c = self.0.snapshot();
        MqttReport {
            connected: c.connected,
            connections: MqttConnections {
                accepted: c.connections_accepted,
                refused_not_authorized: c.connections_refused,
                refused_max_connections: c.refused_max_connections,
                refused_max_connections_per_ip: c.refused_max_connections_per_ip,
                closed_connect_deadline: c.connect_deadlines_expired,
                closed_packet_too_large: c.closed_packet_too_large,
                closed_keep_alive: c.closed_keep_alive,
                closed_read_timeout: c.closed_read_timeout,
                closed_protocol_error: c.closed_protocol_error,
            },
            publishes: MqttPublishes {
                received: c.publishes_routed
                    + c.dropped_not_authorized
                    + c.dropped_topic_invalid
                    + c.payload_timeouts
                    + c.payloads_lost
                    + c.lost_at_disconnect,
                received_payload_bytes: c.payload_bytes_received,
                routed: c.publishes_routed,
                delivered: c.delivered,
                delivered_payload_bytes: c.payload_bytes_delivered,
                queued_offline: c.queued_offline,
                held_too_long: c.held_too_long,
            },
            drops: MqttDrops {
                not_authorized: c.dropped_not_authorized,
                topic_invalid: c.dropped_topic_invalid,
                payload_timeout: c.payload_timeouts,
                payload_lost: c.payloads_lost,
                lost_at_disconnect: c.lost_at_disconnect,
                lost_at_targets: c.lost_at_targets,
                not_stored: c.not_stored,
                offline_queue_full: c.dropped_offline,
                too_large_for_device: c.too_large_for_device,
                expired: c.expired,
            },
            subscribes_refused: c.subscribes_refused,
        }
    }
}

impl CloudLink for BridgeStatus {
    fn report(&self) -> CloudReport {
        let link = self.0.link();
        CloudReport {
            state: match link.state {
                LinkState::Connecting => CloudState::Connecting,
                LinkState::Connected => CloudState::Connected,
                LinkState::Disconnected => CloudState::Disconnected,
            },
            endpoint: link.endpoint,
            last_error: link.last_error,
            spooled: link.spooled.messages,
            spooled_bytes: link.spooled.bytes,
            oldest_spooled_ms: link
                .spooled
                .oldest_age
                .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            drops: CloudDrops {
                hand_off_full: link.drops.hand_off_full,
                spool_full: link.drops.spool_full,
                not_stored: link.drops.not_stored,
            },
        }
    }
}

/// The secret store, fetching with the core's credentials, as the deployer installs each
/// plan's secret resources.
#[derive(Debug)]
struct StoreSecrets {
    secrets: Arc<SecretService>,
    aws: Arc<AwsAccess>,
}

impl PlanInstaller for StoreSecrets {
    fn install<'a>(&'a self, plan: &'a GroupPlan) -> Installing<'a> {
        Box::pin(async move {
            self.secrets
                .deploy(plan, &self.aws)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
        })
    }
}

/// The model installer, as the deployer installs each plan's machine-learning resources.
#[derive(Debug)]
struct Models(Arc<ModelInstaller>);

impl PlanInstaller for Models {
    fn install<'a>(&'a self, plan: &'a GroupPlan) -> Installing<'a> {
        Box::pin(async move {
            self.0
                .install(plan)
                .await
                .map(drop)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
        })
    }
}

/// A second SIGINT/SIGTERM at least this long after the first exits at once.
const REPEAT_SIGNAL_AFTER: Duration = Duration::from_secs(1);

/// SIGINT and SIGTERM, whichever comes first. The supervisor is the one
/// owner of these signals.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}
