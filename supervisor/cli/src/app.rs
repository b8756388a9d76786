//! What `evergreen run`, `validate` and the `group` commands share: the configuration, the
//! group [`loader`] with this host's options, the embedded default group, and the mapping of
//! `CoreConfig` onto the runtime's own settings. Start-up itself is [`crate::run`]. Every
//! failure is a typed [`RunError`] that maps to an exit code; nothing here panics on input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use evergreen_aws::credentials::{AwsAccess, AwsSettings, StaticKeys};
use evergreen_config::{self as config, ConfigEnv, ConfigError, CoreConfig};
use evergreen_group::plan::{GroupPlan, RunAs};
use evergreen_group::{GroupFile, LoadError, Loader, ValidationOptions};
use evergreen_ops::control::ControlError;
use evergreen_ops::store::{VersionId, VersionStore};
use evergreen_runtime::component::{RestartPolicy, RestartSettings, RuntimeSettings, Slots};
use evergreen_runtime::services::{CredentialSource, CredentialsAnswer, SecretSource};
use evergreen_runtime::supervisor::DeployError;

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
    /// The runtime log's format (`--log-format`).
    pub log_format: evergreen_runtime::logs::LogFormat,
    /// The runtime log's level (`--log-level`), over the configuration's and the group's.
    pub log_level: Option<evergreen_ipc::LogLevel>,
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
    Aws(#[from] evergreen_aws::credentials::ResolveError),
    #[error("group version {id}: {source}")]
    Version {
        id: String,
        source: evergreen_ops::store::StoreError,
    },
    #[error("cannot store {file} as a group version: {source}")]
    Store {
        file: String,
        source: evergreen_ops::store::StoreError,
    },
    #[error("cannot start the cloud bridge: {0}")]
    Cloud(#[from] evergreen_cloud::bridge::BridgeError),
    #[error("{0}: MQTT server")]
    Mqtt(#[from] evergreen_mqtt::StartError),
    #[error("the supervisor stopped unexpectedly: {0}")]
    SupervisorGone(actix::MailboxError),
    #[error(transparent)]
    Locked(#[from] evergreen_ops::lock::LockError),
    #[error(transparent)]
    StatusPage(#[from] evergreen_ops::statuspage::StatusPageError),
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
            // A program or code directory the group names is missing or unusable: fixed in
            // the group, not by restarting.
            RunError::Store {
                source: evergreen_ops::store::StoreError::Artefact(e),
                ..
            } if !matches!(e, evergreen_ops::artefacts::ArtefactError::Write { .. }) => {
                crate::EXIT_CONFIG
            }
            // A TLS file of the cloud connection or of the MQTT server that is missing,
            // unreadable or unusable: an operator puts the right file in place (`evergreen
            // check` says which); restarting into it would fail the same way.
            RunError::Cloud(
                evergreen_cloud::bridge::BridgeError::MissingTlsFile { .. }
                | evergreen_cloud::bridge::BridgeError::TlsFile { .. }
                | evergreen_cloud::bridge::BridgeError::Tls(_),
            )
            | RunError::Mqtt(evergreen_mqtt::StartError::Tls(_)) => crate::EXIT_CONFIG,
            // Another runtime on the socket may be gone by the next try.
            RunError::Control(_)
            | RunError::Io { .. }
            | RunError::Version { .. }
            | RunError::Store { .. }
            | RunError::Cloud(_)
            | RunError::Mqtt(_)
            | RunError::SupervisorGone(_) => 1,
            // Its own status, so a script (or a unit's RestartPreventExitStatus=) can tell
            // "another runtime has this root" from a failure of this one.
            RunError::Locked(evergreen_ops::lock::LockError::Held { .. }) => crate::EXIT_LOCKED,
            RunError::Locked(evergreen_ops::lock::LockError::Io { .. }) => 1,
            // A token file others may read, or that holds no token: the operator fixes or
            // deletes it; restarting into it would fail the same way.
            RunError::StatusPage(evergreen_ops::statuspage::StatusPageError::Token(
                evergreen_ops::statuspage::TokenError::TooOpen { .. }
                | evergreen_ops::statuspage::TokenError::Malformed { .. },
            )) => crate::EXIT_CONFIG,
            // The port may be free by the next try.
            RunError::StatusPage(_) => 1,
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
            connector_unavailable: Some(catalogue::host_unavailable),
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
pub(crate) fn load_version(cfg: &CoreConfig, id: &VersionId) -> Result<GroupPlan, RunError> {
    let stored = VersionStore::open(cfg.write_dir())
        .load(id.as_str())
        .map_err(|source| RunError::Version {
            id: id.short().to_string(),
            source,
        })?;
    load_group(
        &stored.group,
        &format!("group version {}", id.short()),
        stored.base_dir.clone(),
        cfg,
    )
}

/// Reads and validates a group file, stores it as a version with its artefacts, and loads the
/// stored version: `run --group FILE` runs what `deploy FILE` would, from the same stored copy.
pub(crate) fn store_group_file(
    path: &Path,
    cfg: &CoreConfig,
) -> Result<(VersionId, GroupPlan), RunError> {
    let group = read_group_file(path, cfg)?;
    let store = VersionStore::open(cfg.write_dir());
    let store_err = |source| RunError::Store {
        file: path.display().to_string(),
        source,
    };
    let created = store
        .create(&group.text, &group.base_dir, Some(path), &group.plan)
        .map_err(store_err)?;
    // Its artefacts were hashed as they were stored, a moment ago: not again at start-up.
    let stored = store.read_created(&created.id).map_err(store_err)?;
    let plan = load_group(
        &stored.group,
        &format!("group version {}", created.id.short()),
        stored.base_dir,
        cfg,
    )?;
    Ok((created.id, plan))
}

pub(crate) fn read_group(path: Option<&Path>, cfg: &CoreConfig) -> Result<GroupPlan, RunError> {
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

/// `evergreen connectors --json`: the built-in connectors, for scripts. The field names are
/// documented in docs/cli.md and stay stable.
pub fn connectors_document() -> serde_json::Value {
    let connectors: Vec<serde_json::Value> = catalogue::BUILTIN
        .iter()
        .map(|c| {
            let m = c.manifest;
            let parameters: Vec<serde_json::Value> = m
                .parameters
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "name": p.name,
                        "description": p.description,
                        "required": p.required,
                        "default": p.default,
                        "pattern": p.pattern,
                        "sinceVersion": p.since_version,
                    })
                })
                .collect();
            serde_json::json!({
                "name": m.name,
                "versions": m.versions,
                "description": m.description,
                "inputs": m.inputs,
                "outputs": m.outputs,
                "pinned": m.pinned,
                "aws": m.aws,
                "isolation": {
                    "greengrassContainer": m.isolation.container,
                    "noContainer": m.isolation.no_container,
                },
                "parameters": parameters,
            })
        })
        .collect();
    serde_json::json!({ "connectors": connectors })
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
        policy: match r.policy {
            config::RestartPolicy::Always => RestartPolicy::Always,
            config::RestartPolicy::OnFailure => RestartPolicy::OnFailure,
            config::RestartPolicy::Never => RestartPolicy::Never,
        },
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

/// The core's AWS credentials chain (`evergreen.aws`, the IoT credentials provider with the
/// core's certificate, the environment, the shared file), fixed at start.
pub(crate) fn aws_access(cfg: &CoreConfig, plan: &GroupPlan) -> Result<Arc<AwsAccess>, RunError> {
    AwsAccess::resolve_with_iot(
        &aws_settings(&cfg.evergreen.aws),
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
    .map_err(RunError::Aws)
}

/// `evergreen.aws` as the credentials chain takes it.
fn aws_settings(aws: &config::AwsConfig) -> AwsSettings {
    AwsSettings {
        credentials: aws.credentials.as_ref().map(|c| StaticKeys {
            access_key_id: c.access_key_id.clone(),
            secret_access_key: c.secret_access_key.clone(),
            session_token: c.session_token.clone(),
        }),
        profile: aws.profile.clone(),
        endpoint_url: aws.endpoint_url.clone(),
        endpoints: aws.endpoints.clone(),
        iot_cred_endpoint: aws.iot_cred_endpoint.clone(),
        iot_role_alias: aws.iot_role_alias.clone(),
    }
}

/// The credentials chain as the runtime's components ask it.
#[derive(Debug)]
struct ChainCredentials(Arc<AwsAccess>);

impl CredentialSource for ChainCredentials {
    fn credentials(&self) -> CredentialsAnswer {
        let aws = self.0.clone();
        Box::pin(async move { aws.credentials().await })
    }

    fn endpoints(&self) -> BTreeMap<String, String> {
        self.0.endpoints().clone()
    }
}

/// `CoreConfig` and the plan's core, as the runtime's components need them.
pub(crate) fn settings(
    cfg: &CoreConfig,
    plan: &GroupPlan,
    secrets: Arc<dyn SecretSource>,
    aws: Arc<AwsAccess>,
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
        max_workers_per_function: usize::try_from(e.max_workers_per_function).unwrap_or(usize::MAX),
        max_workers_overrides: e
            .components
            .iter()
            .filter_map(|(key, c)| {
                let max = c.max_workers?;
                Some((key.clone(), usize::try_from(max).unwrap_or(usize::MAX)))
            })
            .collect(),
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
        aws: Arc::new(ChainCredentials(aws)),
        secrets,
        user_log_level: plan.loggers.user.level,
        user_log_space_kb: plan.loggers.user.space_kb,
    })
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
