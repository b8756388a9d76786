//! `evergreen run` and `evergreen validate`: loads the configuration and the
//! group, starts the actor system, deploys, and waits for a signal.
//!
//! This is the one place that knows the order of start-up: configuration,
//! runtime log, group validation, then actors, the control socket (bound
//! before the deployment, so a second runtime on it starts nothing; served
//! after it), the deployment. Everything before the actors fails with a typed
//! [`RunError`] that maps to an exit code; nothing here panics on input.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use evergreen_config::{self as config, ConfigEnv, ConfigError, CoreConfig};
use evergreen_group::plan::{GroupPlan, RunAs};
use evergreen_group::{GroupFile, LoadError, Loader, ValidationOptions};
use evergreen_ops::control::{ControlError, ControlSocket, ControlState, RuntimeInfo};
use evergreen_ops::deploy::{self, Deployer};
use evergreen_ops::notify::{watchdog_interval, Notifier};
use evergreen_ops::store::{VersionId, VersionStore};
use evergreen_runtime::component::{RestartSettings, RuntimeSettings, Slots};
use evergreen_runtime::logs::SystemLogger;
use evergreen_runtime::router::{Router, SubscriptionTable};
use evergreen_runtime::sandbox::Sandboxes;
use evergreen_runtime::services::{PlanListener, SecretSource};
use evergreen_runtime::supervisor::{Deploy, DeployError, Shutdown, Supervisor};
use evergreen_secrets::SecretService;

use crate::catalogue;

/// The group `evergreen run` starts when no `--group` is given; it needs
/// nothing but the machine. DeviceDefender reads the host's `/proc` (a volume
/// resource, as Greengrass groups declare it) and reports listening ports,
/// connections and traffic every 10 s (its development interval; the AWS
/// service takes one report per 300 s), Heartbeat publishes uptime, load and
/// memory every 5 s, and both are routed to MessageLog, whose log shows them.
pub const DEFAULT_GROUP: &str = include_str!("../default_group.json");

/// Where the embedded default group's messages can be watched.
pub const DEFAULT_GROUP_LOG: &str = "user/<region>/aws/MessageLog.log";

/// What `evergreen run` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub config: Option<PathBuf>,
    pub group: Option<PathBuf>,
    pub root: Option<PathBuf>,
}

/// Why the runtime could not start (or stopped with an error).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Group(#[from] LoadError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("evergreen.defaultRunAs: {0}")]
    DefaultRunAs(String),
    #[error("evergreen.aws: {0}")]
    Aws(String),
}

impl RunError {
    /// The process exit status for this error: configuration and group
    /// problems are `EX_CONFIG` (78) so systemd does not restart into them.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Config(_)
            | RunError::Group(_)
            | RunError::Deploy(_)
            | RunError::DefaultRunAs(_)
            | RunError::Aws(_) => crate::EXIT_CONFIG,
            // Another runtime on the socket may be gone by the next try.
            RunError::Control(_) | RunError::Io { .. } => 1,
        }
    }
}

/// The group loader with what validation needs from `cfg` and this host: every group is
/// judged by it, whether `run --group`, `validate`, `group create-version` or a deployment.
pub fn loader(cfg: &CoreConfig) -> Loader {
    Loader::new(
        catalogue::registry(),
        ValidationOptions {
            base_dir: PathBuf::from("."),
            allow_root: cfg.allow_root(),
            default_core_thing_arn: cfg.core_thing.thing_arn.clone(),
            secret_name_prefix: Some(cfg.evergreen.secret_name_prefix.clone())
                .filter(|p| !p.is_empty()),
            container_unavailable: evergreen_runtime::sandbox::check::container_support()
                .map(str::to_string),
        },
    )
}

/// Parses and validates a group text; `name` is used in messages.
pub fn load_group(
    text: &str,
    name: &str,
    base_dir: PathBuf,
    cfg: &CoreConfig,
) -> Result<GroupPlan, RunError> {
    Ok(loader(cfg).load(text, name, base_dir)?)
}

/// The configuration as `evergreen run` uses it: `--config` (or the default
/// file) with `--root` applied on top. Shared with the `group` commands so a
/// stored version lands under the root the runtime will read it from.
pub fn load_config(config: Option<&Path>, root: Option<PathBuf>) -> Result<CoreConfig, RunError> {
    let mut cfg = config::load(config, &ConfigEnv::from_process())?;
    if let Some(root) = root {
        cfg.evergreen.root = Some(root);
    }
    Ok(cfg)
}

/// Reads and validates a group file exactly as `evergreen run --group` does; the file's path
/// names it in messages.
pub fn read_group_file(path: &Path, cfg: &CoreConfig) -> Result<GroupFile, RunError> {
    Ok(loader(cfg).read_file(path)?)
}

/// Loads and validates a stored group version.
fn load_version(cfg: &CoreConfig, id: &VersionId) -> Result<GroupPlan, RunError> {
    let stored = VersionStore::open(cfg.write_dir())
        .load(id.as_str())
        .map_err(|e| RunError::Io {
            what: format!("group version {}", id.short()),
            source: std::io::Error::other(e.to_string()),
        })?;
    load_group(
        &stored.group,
        &format!("group version {}", id.short()),
        stored.meta.base_dir.clone(),
        cfg,
    )
}

fn read_group(path: Option<&Path>, cfg: &CoreConfig) -> Result<GroupPlan, RunError> {
    match path {
        Some(path) => read_group_file(path, cfg).map(|g| g.plan),
        None => {
            let (text, _) =
                default_group_for(evergreen_runtime::sandbox::check::container_support());
            load_group(&text, "(embedded default group)", PathBuf::from("/"), cfg)
        }
    }
}

/// The connector of the default group that needs container mode.
const DEFAULT_CONTAINER_CONNECTOR: &str = "DeviceDefender";

/// The embedded default group as this host can run it. DeviceDefender runs
/// only in a container (as in Greengrass); where container mode cannot run
/// (`unavailable` says why, e.g. the runtime is not root) the group is
/// returned without it, its resource and its subscriptions, with a note
/// saying so. A group the user wrote is never changed like this: it is
/// refused with the reason instead.
pub fn default_group_for(unavailable: Option<&str>) -> (String, Option<String>) {
    let Some(why) = unavailable else {
        return (DEFAULT_GROUP.to_string(), None);
    };
    let Ok(mut group) = serde_json::from_str::<serde_json::Value>(DEFAULT_GROUP) else {
        return (DEFAULT_GROUP.to_string(), None);
    };
    let mut removed_arn = None;
    if let Some(list) = group
        .pointer_mut("/ConnectorDefinitionVersion/Connectors")
        .and_then(serde_json::Value::as_array_mut)
    {
        list.retain(|c| {
            let drop = c["Id"] == DEFAULT_CONTAINER_CONNECTOR;
            if drop {
                removed_arn = c["ConnectorArn"].as_str().map(str::to_string);
            }
            !drop
        });
    }
    if let Some(arn) = &removed_arn {
        if let Some(list) = group
            .pointer_mut("/SubscriptionDefinitionVersion/Subscriptions")
            .and_then(serde_json::Value::as_array_mut)
        {
            list.retain(|s| s["Source"] != arn.as_str() && s["Target"] != arn.as_str());
        }
        if let Some(object) = group.as_object_mut() {
            object.remove("ResourceDefinitionVersion");
        }
    }
    let note = format!(
        "container mode cannot run on this host ({why}), so the embedded default group runs without \
         its {DEFAULT_CONTAINER_CONNECTOR} connector, which runs only in a container; run as root \
         (see `evergreen check`) to get it"
    );
    (group.to_string(), Some(note))
}

/// `evergreen validate [FILE]`: a one-line summary when valid. Without a
/// file, the embedded default group is checked.
pub fn validate_file(file: Option<&Path>, config: Option<&Path>) -> Result<String, RunError> {
    let cfg = config::load(config, &ConfigEnv::from_process())?;
    let plan = read_group(file, &cfg)?;
    Ok(format!(
        "{} components, {} subscriptions, {} resources, {} devices",
        plan.components.len(),
        plan.subscriptions.len(),
        plan.resources.len(),
        plan.devices.len()
    ))
}

/// `evergreen connectors`: the built-in connectors, for people.
pub fn describe_connectors() -> String {
    let mut out = String::new();
    for c in catalogue::BUILTIN {
        let m = c.manifest;
        let versions: Vec<String> = m.versions.iter().map(u32::to_string).collect();
        out.push_str(&format!(
            "{} (versions {})\n  {}\n",
            m.name,
            versions.join(", "),
            m.description
        ));
        out.push_str(&format!("  inputs: {}\n", list(m.inputs)));
        out.push_str(&format!("  outputs: {}\n", list(m.outputs)));
        for p in m.parameters {
            let mut notes = Vec::new();
            if p.required {
                notes.push("required".to_string());
            }
            if let Some(d) = p.default {
                notes.push(format!("default {d:?}"));
            }
            if let Some(pat) = p.pattern {
                notes.push(format!("pattern {pat}"));
            }
            out.push_str(&format!(
                "  parameter {}: {} [{}]\n",
                p.name,
                p.description,
                notes.join("; ")
            ));
        }
    }
    out
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

/// Resolves `evergreen.defaultRunAs` names to ids, now, so a missing user
/// is a start-up error rather than a failure of every component.
pub fn default_run_as(d: &config::DefaultRunAs) -> Result<RunAs, RunError> {
    use nix::unistd::{Group, User};
    let mut run_as = RunAs::default();
    if let Some(name) = &d.user {
        let user = User::from_name(name)
            .map_err(|e| RunError::DefaultRunAs(format!("cannot look up user {name:?}: {e}")))?
            .ok_or_else(|| RunError::DefaultRunAs(format!("no user named {name:?}")))?;
        run_as.uid = Some(user.uid.as_raw());
        run_as.gid = Some(user.gid.as_raw());
    }
    if let Some(name) = &d.group {
        let group = Group::from_name(name)
            .map_err(|e| RunError::DefaultRunAs(format!("cannot look up group {name:?}: {e}")))?
            .ok_or_else(|| RunError::DefaultRunAs(format!("no group named {name:?}")))?;
        run_as.gid = Some(group.gid.as_raw());
    }
    Ok(run_as)
}

fn restart_settings(r: &config::Restart) -> RestartSettings {
    RestartSettings {
        policy: r.policy,
        initial: Duration::from_millis(r.initial_backoff_ms),
        max: Duration::from_millis(r.max_backoff_ms),
        multiplier: r.multiplier,
        jitter: r.jitter,
        reset_after: Duration::from_millis(r.reset_after_ms),
        crash_loop_limit: r.crash_loop_limit,
        crash_loop_window: Duration::from_millis(r.crash_loop_window_ms),
        failed_cooldown: Duration::from_millis(r.failed_cooldown_ms),
    }
}

fn settings(
    cfg: &CoreConfig,
    plan: &GroupPlan,
    secrets: Arc<dyn SecretSource>,
) -> Result<RuntimeSettings, RunError> {
    let e = &cfg.evergreen;
    // Re-executing /proc/self/exe works even when a package upgrade replaced
    // the file on disk while we run.
    let self_exe = PathBuf::from("/proc/self/exe");
    let self_exe = if self_exe.exists() {
        self_exe
    } else {
        std::env::current_exe().map_err(|source| RunError::Io {
            what: "cannot find the evergreen executable".into(),
            source,
        })?
    };
    Ok(RuntimeSettings {
        max_frame: e.max_frame_bytes,
        queue_capacity: e.queue_capacity,
        readiness_timeout: Duration::from_millis(e.readiness_timeout_ms),
        shutdown_grace: Duration::from_millis(e.shutdown_grace_ms),
        term_grace: Duration::from_millis(e.term_grace_ms),
        restart: restart_settings(&e.restart),
        restart_overrides: e
            .components
            .iter()
            .map(|(key, c)| (key.clone(), restart_settings(&e.restart.with(&c.restart))))
            .collect(),
        on_demand_idle: Duration::from_millis(e.on_demand_idle_ms),
        default_run_as: default_run_as(&e.default_run_as)?,
        on_demand_slots: Arc::new(Slots::new(
            usize::try_from(cfg.runtime.max_concurrent_limit).unwrap_or(usize::MAX),
        )),
        log_root: cfg.log_dir(),
        resource_root: cfg.root().join("resources"),
        self_exe,
        core_thing_name: plan.core.thing_name.clone(),
        core_thing_arn: plan.core.thing_arn.clone(),
        region: plan.core.region.clone(),
        aws: evergreen_aws::credentials::AwsAccess::resolve_with_iot(
            &e.aws,
            &evergreen_aws::credentials::AwsEnv::from_process(),
            &plan.core.region,
            cfg.cert_path().zip(cfg.key_path()).map(|(cert, key)| {
                (
                    plan.core.thing_name.as_str(),
                    evergreen_aws::credentials::iot::TlsFiles {
                        ca: cfg.ca_path(),
                        cert,
                        key,
                    },
                )
            }),
        )
        .map_err(RunError::Aws)?,
        secrets,
        user_log_level: plan.loggers.user.level,
        user_log_space_kb: plan.loggers.user.space_kb,
    })
}

/// `evergreen run`: runs until SIGINT or SIGTERM, then stops every component.
pub fn run(opts: RunOptions) -> Result<(), RunError> {
    let started = std::time::Instant::now();
    let cfg = load_config(opts.config.as_deref(), opts.root)?;
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
    let (group, label) = match restored {
        Some((id, plan)) => (
            Ok(plan),
            format!("group version {} (the last good deployment)", id.short()),
        ),
        None => (
            read_group(opts.group.as_deref(), &cfg),
            opts.group.as_ref().map_or_else(
                || "the embedded default group".to_string(),
                |p| {
                    std::path::absolute(p)
                        .unwrap_or_else(|_| p.clone())
                        .display()
                        .to_string()
                },
            ),
        ),
    };
    let system_log = group.as_ref().map(|p| p.loggers.system).unwrap_or_default();
    SystemLogger::install(
        &log_root,
        system_log.level,
        system_log.space_kb,
        cfg.evergreen.log_to_stderr,
    )
    .map_err(|source| RunError::Io {
        what: format!("cannot open the runtime log under {}", log_root.display()),
        source,
    })?;
    if let Some(problem) = &restore_problem {
        log::error!("{problem}");
    }
    if label == "the embedded default group" {
        if let (_, Some(note)) =
            default_group_for(evergreen_runtime::sandbox::check::container_support())
        {
            log::warn!("{note}");
            eprintln!("evergreen: {note}");
        }
    }
    for key in cfg.ignored_keys() {
        log::info!("configuration key {key} is accepted for Greengrass compatibility and ignored");
    }
    let plan = match group {
        Ok(plan) => plan,
        Err(e) => {
            log::error!("{e}");
            return Err(e);
        }
    };
    for key in cfg.evergreen.components.keys() {
        if !plan
            .components
            .values()
            .any(|c| &c.id == key || &c.arn == key)
        {
            log::warn!("evergreen.components.{key}: no component with that Id or ARN in the group; its settings are unused");
        }
    }
    let secrets = Arc::new(SecretService::new(&cfg.write_dir().join("secrets")));
    let settings = settings(&cfg, &plan, secrets.clone())?;
    log::info!("AWS credentials for connectors: {}", settings.aws.source());
    let settings_readiness = settings.readiness_timeout;
    let aws = settings.aws.clone();
    let group_name = label.clone();
    let components = plan.components.len();
    let watch = if group_name == "the embedded default group" {
        format!(
            "; watch {}",
            log_root
                .join(DEFAULT_GROUP_LOG.replace("<region>", &plan.core.region))
                .display()
        )
    } else {
        String::new()
    };

    // Under systemd (Type=notify): readiness, stopping and watchdog keep-alives.
    let notifier = match Notifier::new(std::env::var_os("NOTIFY_SOCKET").as_deref()) {
        Ok(n) => n.map(std::rc::Rc::new),
        Err(e) => {
            log::warn!("NOTIFY_SOCKET is set but unusable, not notifying the service manager: {e}");
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
        .filter(|c| matches!(c.launch, evergreen_group::plan::Launch::Python { .. }))
        .count();
    let python_dir = runtime_root.join("runtime").join("python");
    let daemon_port = cfg.core_thing.gg_daemon_port;
    let mut lambda_ok = true;
    if let Err(source) = evergreen_runtime::lambda::python::install(&python_dir) {
        let what = format!(
            "cannot write the Python runtime files to {}",
            python_dir.display()
        );
        if python_functions > 0 {
            return Err(RunError::Io { what, source });
        }
        log::warn!("{what}: {source}; Python functions cannot run");
        lambda_ok = false;
    }

    let mqtt_setup = evergreen_mqtt::Setup::from_config(&cfg);
    let has_devices = !plan.devices.is_empty();
    // The local shadow service's files (see evergreen_shadow).
    let shadow_dir = runtime_root.join("shadow");
    // The cloud bridge (coreThing.iotHost): settings read and its spool
    // opened now, so a bad TLS file or spool stops the start with a reason.
    let cloud =
        evergreen_cloud::bridge::Cloud::prepare(&cfg, &plan.core.thing_name).map_err(|e| {
            log::error!("cloud bridge: {e}");
            RunError::Io {
                what: "cannot start the cloud bridge".into(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
    if cloud.is_none() {
        log::info!("no coreThing.iotHost: no cloud connection; messages to \"cloud\" are dropped and counted");
    }
    let cloud_queue = cfg.evergreen.queue_capacity;

    let control_path = cfg.control_socket();
    let info = RuntimeInfo::new(started, opts.group.as_deref())
        .with_log_file(&log_root.join(evergreen_runtime::logs::SYSTEM_LOG));

    let system = actix_rt::System::new();
    system.block_on(async move {
        let router = Arc::new(Router::new(SubscriptionTable::default()));
        let mut supervisor = Supervisor::new(settings, router.clone(), Sandboxes::detect(&runtime_root));
        // The local shadow service (GGShadowService): attached to the router
        // before the deployment routes to it. Without its directory the
        // runtime runs on, and shadow requests are dropped and counted.
        let shadow = match evergreen_shadow::ShadowHandle::start(&shadow_dir, router.clone()) {
            Ok(shadow) => {
                supervisor = supervisor.with_shadow(Arc::new(shadow.clone()));
                Some(shadow)
            }
            Err(e) => {
                log::error!("cannot start the local shadow service in {}: {e}", shadow_dir.display());
                None
            }
        };
        // The Lambda IPC endpoint: needed when the group has Python
        // functions; otherwise a busy port is only worth a warning.
        if lambda_ok {
            match evergreen_runtime::lambda::bind(daemon_port).await {
                Ok(listeners) => {
                    let hub = evergreen_runtime::lambda::LambdaHub::new(router.clone(), daemon_port, python_dir);
                    if let Some(shadow) = &shadow {
                        hub.set_shadow(Arc::new(shadow.clone()));
                    }
                    hub.set_secrets(secrets.clone() as Arc<dyn SecretSource>);
                    evergreen_runtime::lambda::serve(hub.clone(), listeners);
                    log::info!("Lambda IPC endpoint on localhost:{daemon_port}");
                    supervisor = supervisor.with_lambda(hub);
                }
                Err(source) => {
                    let what = format!("cannot listen on localhost:{daemon_port} (coreThing.ggDaemonPort) for the Lambda IPC endpoint");
                    if python_functions > 0 {
                        log::error!("{what}: {source}");
                        return Err(RunError::Io { what, source });
                    }
                    log::warn!("{what}: {source}; Python functions cannot run");
                }
            }
        }
        let mut cloud_spool = None;
        let mut cloud_listener = None;
        if let Some(cloud) = cloud {
            match cloud.start(router.clone(), cloud_queue, shadow.clone()) {
                Ok(bridge) => {
                    cloud_spool = Some(bridge.spool().clone());
                    cloud_listener = Some(Arc::new(bridge) as Arc<dyn PlanListener>);
                }
                Err(e) => {
                    log::error!("{e}");
                    return Err(RunError::Io {
                        what: "cannot start the cloud bridge".into(),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
            }
        }
        // The local MQTT server for client devices: bound before the deployment.
        let mqtt = evergreen_mqtt::MqttHub::new(router.clone(), mqtt_setup.queue_capacity);
        if let Err(what) = evergreen_mqtt::start(&mqtt_setup, mqtt.clone(), has_devices) {
            log::error!("{what}");
            return Err(RunError::Io { what, source: std::io::Error::other("MQTT server") });
        }
        // Kept for the clean stop: the persistent sessions' store is flushed last.
        let mqtt_sessions = mqtt.clone();
        // Told of each deployed plan in this order: the MQTT server's devices, the shadow
        // service's synced things, the cloud bridge's subscriptions.
        supervisor = supervisor.with_listener(mqtt);
        if let Some(shadow) = &shadow {
            supervisor = supervisor.with_listener(Arc::new(shadow.clone()));
        }
        if let Some(bridge) = cloud_listener {
            supervisor = supervisor.with_listener(bridge);
        }
        let supervisor = supervisor.start();
        // Handlers first: a SIGTERM during start-up must stop the components
        // gracefully too, not kill the runtime with them half started.
        let mut signals = Signals::new().map_err(|source| RunError::Io {
            what: "cannot install signal handlers".into(),
            source,
        })?;
        // Bound before the deployment: a second runtime on the same socket
        // must refuse before it starts a second copy of every component.
        let control = ControlSocket::bind(&control_path).await.map_err(|e| {
            log::error!("{e}");
            RunError::Control(e)
        })?;
        // The group's secret resources, resolved and installed under a new
        // data key before anything that may ask for them starts.
        if let Err(e) = secrets.deploy(&plan, &aws).await {
            let e = DeployError(vec![e.to_string()]);
            log::error!("{e}");
            return Err(RunError::Deploy(e));
        }
        let deployer = std::rc::Rc::new(
            Deployer::new(
                supervisor.clone(),
                cfg.write_dir(),
                Arc::new(loader(&cfg)),
                settings_readiness,
            )
            .with_secrets(secrets, aws),
        );
        deployer.set_current(plan.clone(), label);
        match supervisor.send(Deploy(plan)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                log::error!("{e}");
                return Err(RunError::Deploy(e));
            }
            Err(e) => {
                return Err(RunError::Io {
                    what: "the supervisor stopped unexpectedly".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            }
        }
        // Served once deployed; it keeps answering while components stop.
        let mut state = ControlState::new(supervisor.clone(), router, info);
        state.deployer = Some(deployer);
        let control = control.serve(state);
        log::info!(
            "evergreen {} running {group_name}: {components} components; logs under {}{watch}; stop with Ctrl-C or SIGTERM",
            env!("CARGO_PKG_VERSION"),
            log_root.display()
        );
        if let Some(n) = &notifier {
            n.notify(&format!("READY=1\nSTATUS=running {components} components"));
            if let Some(every) = watchdog {
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
        let name = signals.next().await;
        let first = std::time::Instant::now();
        log::info!("{name} received: stopping components (send it again to exit at once)");
        if let Some(n) = &notifier {
            n.notify("STOPPING=1");
        }
        let shutdown = supervisor.send(Shutdown);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    Sandboxes::release_host(&runtime_root);
                    log::info!("all components stopped");
                    break;
                }
                name = signals.next() => {
                    // A signal sent to the whole process group (a terminal,
                    // `timeout`, a service manager) can arrive twice at once;
                    // only a deliberate second one, a moment later, skips the
                    // graceful stop.
                    if first.elapsed() >= REPEAT_SIGNAL_AFTER {
                        log::warn!("{name} received again: exiting without waiting");
                        break;
                    }
                }
            }
        }
        control.shutdown().await;
        if let Some(spool) = cloud_spool {
            spool.flush();
        }
        mqtt_sessions.flush_sessions();
        Ok(())
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_group_is_valid() {
        let env = ConfigEnv {
            uid: 1000,
            xdg_data_home: None,
            home: Some(PathBuf::from("/home/u")),
        };
        let cfg = CoreConfig::defaults(&env).expect("defaults");
        let plan = load_group(DEFAULT_GROUP, "default", PathBuf::from("/"), &cfg).expect("valid");
        assert_eq!(plan.components.len(), 3);
        assert_eq!(plan.subscriptions.len(), 2);
        assert!(describe_connectors().contains("Heartbeat"));
    }

    #[test]
    fn without_containers_the_default_group_drops_only_device_defender() {
        let (text, note) = default_group_for(Some("not root"));
        let note = note.expect("a note says what was left out");
        assert!(
            note.contains("DeviceDefender") && note.contains("not root"),
            "{note}"
        );
        let env = ConfigEnv {
            uid: 1000,
            xdg_data_home: None,
            home: Some(PathBuf::from("/home/u")),
        };
        let cfg = CoreConfig::defaults(&env).expect("defaults");
        let plan = load_group(&text, "default", PathBuf::from("/"), &cfg).expect("valid");
        assert_eq!(plan.components.len(), 2);
        assert!(plan
            .components
            .keys()
            .all(|arn| !arn.contains("DeviceDefender")));
        assert_eq!(plan.subscriptions.len(), 1);
        assert!(plan.resources.is_empty());
        assert_eq!(default_group_for(None), (DEFAULT_GROUP.to_string(), None));
    }
}
