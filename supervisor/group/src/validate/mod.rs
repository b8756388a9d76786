//! Group validation: turns a parsed [`GroupDefinition`] into a [`GroupPlan`]
//! or into the complete list of what is wrong with it.
//!
//! This module owns the group rules that Greengrass enforced in the cloud
//! before a deployment (ids, ARNs, one core, resource shapes, run-as-root)
//! and the ones DESIGN.md adds before anything starts (one instance per
//! connector, exact connector versions in subscriptions, parameters against
//! the manifest, resource kinds, exclusive serial ports, secret names). It
//! reports *every* problem at once, each with the JSON path of the member
//! at fault, and it never touches the file system or panics: a deployment
//! either gets a plan with nothing left to check, or a list to show the
//! operator.
//!
//! Choices where the Greengrass documentation is silent or inconsistent:
//! * Per-function resource limit: the service model says 10, the guide 20;
//!   Evergreen allows 20 (nothing here depends on the lower number).
//! * `ResourceAccessPolicies[].Permission` is optional in the API; when
//!   absent the grant is read-only, the least privilege.
//! * A function's own `RunAs` replaces the `DefaultConfig` one as a whole
//!   (a function giving only `Uid` does not inherit the default `Gid`).
//! * Connectors run as the group's default identity (`DefaultConfig` `RunAs`).
//! * `ExecArgs` is split on whitespace; quoting is not interpreted.
//! * A device used by a connector (a serial port, a GPIO node) belongs to it
//!   alone; several functions may still share a device, as in Greengrass.
//! * A function with `CodeUri` (an Evergreen extension: the directory or
//!   `.zip` holding a Lambda's code, relative to the group file) or a
//!   `python3…` `Runtime` is a Greengrass V1 Python function: its
//!   `Executable` is the handler `module.function` and it runs on
//!   Evergreen's Python runtime (`evergreen_runtime::lambda`). `Runtime` defaults to
//!   `python3`; a `nodejs…` one (V1's `nodejs12.x`, `nodejs8.10`) makes it a Node.js function
//!   (`file.function`) on Evergreen's Node.js runtime; others (Java) are refused.
//! * System functions (`arn:aws:lambda:::function:GG…`), which Greengrass
//!   groups use to configure the spooler or the IP detector, are accepted
//!   and not run: Evergreen provides those services itself.
//!
//! The rules are split by the part of the group they judge, each adding its
//! methods to the one `Validator` this module owns: `core` (the core and the
//! client devices), `resources`, `functions`, `connectors`, `subscriptions`
//! and `loggers`, with `arns` parsing the ARNs they all name. The order of
//! the sections in [`validate`] matters: each may read what earlier ones
//! recorded in the `Validator` (the resource table, the function and
//! connector ARNs). Sections import only from this module and from `arns`,
//! never from each other, so there is no cycle among them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use evergreen_ipc::manifest::ConnectorManifest;

use crate::model::{GroupDefinition, ValidationError};
use crate::plan::{ComponentSpec, DeviceSpec, GroupPlan, Isolation, RunAs};
use crate::registry::ConnectorRegistry;

use connectors::ConnectorEntry;
use resources::ResourceEntry;

mod arns;
mod connectors;
mod core;
mod functions;
mod loggers;
mod resources;
mod subscriptions;
#[cfg(test)]
mod tests;

/// The secret-name prefix the default Greengrass service role can read.
const DEFAULT_SECRET_NAME_PREFIX: &str = "greengrass-";

const MAX_ID_LEN: usize = 128;
/// Greengrass defaults for a function without `MemorySize`/`Timeout`.
const DEFAULT_MEMORY_KB: u64 = 16384;
const DEFAULT_TIMEOUT_S: u64 = 3;

const DEFAULT_EXECUTION: &str = "$.FunctionDefinitionVersion.DefaultConfig.Execution";

/// What validation needs from the core's configuration.
#[derive(Debug, Clone)]
pub struct ValidationOptions {
    /// Relative `Executable`s resolve against this: the group file's
    /// directory.
    pub base_dir: PathBuf,
    /// `allowFunctionsToRunAsRoot` in the core configuration.
    pub allow_root: bool,
    /// The core's thing ARN from the configuration, used when the group has
    /// no `CoreDefinitionVersion`.
    pub default_core_thing_arn: String,
    /// Secret names must start with this (the Secrets Manager name inside
    /// the resource's ARN); `None` allows any name.
    pub secret_name_prefix: Option<String>,
    /// Why this host cannot run `GreengrassContainer` components (see
    /// `evergreen check`); `None` when it can. A component that would run
    /// in a container is then an error: nothing runs with less isolation
    /// than its group asked for.
    pub container_unavailable: Option<String>,
    /// Why this host cannot run the connector named (its ARN name), or
    /// `None` when it can: the connectors that drive host software
    /// (`DockerApplicationDeployment` needs Docker Engine and Compose) are
    /// refused at deployment with the reason, not left to fail once running.
    pub connector_unavailable: Option<fn(&str) -> Option<String>>,
}

impl Default for ValidationOptions {
    fn default() -> Self {
        ValidationOptions {
            base_dir: PathBuf::from("."),
            allow_root: false,
            default_core_thing_arn: String::new(),
            secret_name_prefix: Some(DEFAULT_SECRET_NAME_PREFIX.to_string()),
            container_unavailable: None,
            connector_unavailable: None,
        }
    }
}

/// Checks every rule and builds the plan, or returns every problem found.
pub(crate) fn validate(
    group: &GroupDefinition,
    registry: &ConnectorRegistry,
    opts: &ValidationOptions,
) -> Result<GroupPlan, Vec<ValidationError>> {
    let mut v = Validator {
        registry,
        opts,
        errors: Vec::new(),
        devices: BTreeMap::new(),
        resources: BTreeMap::new(),
        components: BTreeMap::new(),
        function_arns: BTreeSet::new(),
        functions_by_base: BTreeMap::new(),
        connectors_by_name: BTreeMap::new(),
        connector_manifests: BTreeMap::new(),
        claims: Vec::new(),
        default_isolation: None,
        default_run_as: None,
        root_by_default: Vec::new(),
        stream_manager: None,
    };
    let core = v.cores(group);
    v.devices(group, core.as_ref());
    v.resources(group);
    v.functions(group);
    let core_region = core
        .as_ref()
        .map_or("unknown", |c| c.region.as_str())
        .to_string();
    v.connectors(group, &core_region);
    v.root_by_default_error();
    v.device_claims();
    let subscriptions = v.subscriptions(group, core.as_ref());
    let loggers = v.loggers(group);

    match core {
        Some(core) if v.errors.is_empty() => Ok(GroupPlan {
            core,
            components: v.components,
            subscriptions,
            devices: v.devices,
            resources: v
                .resources
                .into_iter()
                .filter_map(|(id, r)| r.spec.map(|s| (id, s)))
                .collect(),
            loggers,
            stream_manager: v.stream_manager,
        }),
        _ => Err(v.errors),
    }
}

/// A component's use of a local device, for the exclusive-device rule.
#[derive(Debug)]
struct DeviceClaim {
    source: PathBuf,
    resource_id: String,
    component_arn: String,
    label: String,
    by_connector: bool,
    path: String,
}

struct Validator<'a> {
    registry: &'a ConnectorRegistry,
    opts: &'a ValidationOptions,
    errors: Vec<ValidationError>,
    devices: BTreeMap<String, DeviceSpec>,
    resources: BTreeMap<String, ResourceEntry>,
    components: BTreeMap<String, ComponentSpec>,
    /// Valid, unique user function ARNs, even of functions with other
    /// errors, so a subscription to them is not reported as well.
    function_arns: BTreeSet<String>,
    /// User function ARN without its qualifier → ARNs in the group, to
    /// suggest the right qualifier in a subscription.
    functions_by_base: BTreeMap<String, Vec<String>>,
    /// Connector name → the one instance in the group.
    connectors_by_name: BTreeMap<String, ConnectorEntry>,
    /// Connector ARN as written → its manifest, when this build has it.
    connector_manifests: BTreeMap<String, Option<&'static ConnectorManifest>>,
    claims: Vec<DeviceClaim>,
    /// `DefaultConfig.Execution.IsolationMode`, when given and valid.
    default_isolation: Option<Isolation>,
    /// `DefaultConfig.Execution.RunAs`, when given and valid.
    default_run_as: Option<RunAs>,
    /// Components that run as root only because of `DefaultConfig`.
    root_by_default: Vec<String>,
    /// From the `GGStreamManager` system function, when the group has it.
    stream_manager: Option<crate::plan::StreamManagerSpec>,
}

impl Validator<'_> {
    /// Records one error; `message` is a string or one of this module's
    /// typed errors, whose text is what the operator reads.
    fn err(&mut self, path: impl Into<String>, message: impl fmt::Display) {
        self.errors
            .push(ValidationError::new(path, message.to_string()));
    }

    /// An entity `Id` (or resource `Name`): 1–128 of `[a-zA-Z0-9:_-]`.
    fn check_id(&mut self, path: String, value: &str) {
        if let Err(problem) = check_identifier(value) {
            self.err(path, problem);
        }
    }

    /// Reports every repeat of a value after its first use.
    fn check_unique<'v>(&mut self, what: &str, items: impl IntoIterator<Item = (String, &'v str)>) {
        let mut first: BTreeMap<&str, String> = BTreeMap::new();
        for (path, value) in items {
            match first.get(value) {
                Some(first_path) => {
                    let message = format!(
                        "duplicate {what} `{}` (first used at {first_path})",
                        show(value)
                    );
                    self.err(path, message);
                }
                None => {
                    first.insert(value, path);
                }
            }
        }
    }

    fn positive(&mut self, path: &str, value: Option<i64>, unit: &str) -> Option<u64> {
        let value = value?;
        match u64::try_from(value) {
            Ok(v) if v > 0 => Some(v),
            _ => {
                self.err(
                    path,
                    format!("must be a positive number of {unit} (found {value})"),
                );
                None
            }
        }
    }

    /// An error at `path` when this host cannot run containers.
    fn require_container(&mut self, path: String, what: &str) {
        if let Some(why) = self.opts.container_unavailable.clone() {
            self.err(
                path,
                format!(
                    "{what} runs in GreengrassContainer isolation, which this host cannot provide: {why} \
                     (see `evergreen check`; set IsolationMode to NoContainer where the component allows it)"
                ),
            );
        }
    }

    /// The Greengrass error for components that run as root only because of
    /// the group's `DefaultConfig`.
    fn root_by_default_error(&mut self) {
        if self.opts.allow_root || self.root_by_default.is_empty() {
            return;
        }
        let arns = std::mem::take(&mut self.root_by_default);
        self.err(format!("{DEFAULT_EXECUTION}.RunAs"), root_message(&arns));
    }

    /// A device that a connector uses belongs to that connector alone.
    fn device_claims(&mut self) {
        let mut by_source: BTreeMap<&Path, Vec<&DeviceClaim>> = BTreeMap::new();
        for claim in &self.claims {
            by_source.entry(&claim.source).or_default().push(claim);
        }
        let mut errors = Vec::new();
        for (source, claims) in by_source {
            let components: BTreeSet<&str> =
                claims.iter().map(|c| c.component_arn.as_str()).collect();
            if components.len() < 2 {
                continue;
            }
            // Functions may share a device; once a connector uses it, the
            // connector owns it and every other claim is an error naming it.
            let Some(owner) = claims.iter().find(|c| c.by_connector) else {
                continue;
            };
            for claim in claims
                .iter()
                .filter(|c| c.component_arn != owner.component_arn)
            {
                errors.push(ValidationError::new(
                    claim.path.clone(),
                    format!(
                        "{} (resource `{}`) is already used by {} ({}); a device that a connector uses cannot be \
                         shared with another component",
                        source.display(),
                        claim.resource_id,
                        owner.label,
                        owner.path
                    ),
                ));
            }
        }
        self.errors.extend(errors);
    }
}

/// Greengrass's own wording, so operators find it in existing runbooks.
fn root_message(arns: &[String]) -> String {
    format!(
        "lambda(s) [{}] are configured to run as root while Greengrass is not configured to run lambdas with root permissions",
        arns.join(", ")
    )
}

fn runs_as_root(run_as: RunAs) -> bool {
    run_as.uid == Some(0) || run_as.gid == Some(0)
}

fn parse_isolation(mode: &str) -> Option<Isolation> {
    match mode {
        "GreengrassContainer" => Some(Isolation::GreengrassContainer),
        "NoContainer" => Some(Isolation::NoContainer),
        _ => None,
    }
}

/// `ro` → false, `rw` → true.
fn parse_permission(p: &str) -> Option<bool> {
    match p {
        "ro" => Some(false),
        "rw" => Some(true),
        _ => None,
    }
}

/// Echoes a value from the group in a message, shortened so one absurd
/// value cannot flood the report.
fn show(value: &str) -> String {
    const MAX: usize = 120;
    if value.chars().count() <= MAX {
        value.to_string()
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head}…")
    }
}

/// Why a value is not an entity `Id` (or resource `Name`). The messages
/// follow the member's path, so they start with the verb.
#[derive(Debug, thiserror::Error)]
enum IdError {
    #[error("cannot be empty")]
    Empty,
    #[error("is {len} characters long; at most {max} are allowed", max = MAX_ID_LEN)]
    TooLong { len: usize },
    #[error("`{value}` contains {c:?}; only letters, digits, ':', '_' and '-' are allowed")]
    BadChar { value: String, c: char },
}

fn check_identifier(value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    let len = value.chars().count();
    if len > MAX_ID_LEN {
        return Err(IdError::TooLong { len });
    }
    if let Some(c) = value.chars().find(|c| !is_id_char(*c)) {
        return Err(IdError::BadChar {
            value: show(value),
            c,
        });
    }
    Ok(())
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':' || c == '_' || c == '-'
}

/// Why a value is not an absolute path this crate accepts.
#[derive(Debug, thiserror::Error)]
enum PathError {
    #[error("a path cannot contain NUL")]
    Nul,
    #[error("`{0}` is not an absolute path")]
    NotAbsolute(String),
    #[error("`{0}` contains `..`; write the path without it")]
    ParentDir(String),
}

/// `value` as an absolute path without `..`, normalised.
fn normalise_absolute(value: &str) -> Result<PathBuf, PathError> {
    if value.contains('\0') {
        return Err(PathError::Nul);
    }
    if !value.starts_with('/') {
        return Err(PathError::NotAbsolute(show(value)));
    }
    let mut out = PathBuf::from("/");
    for component in Path::new(value).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                return Err(PathError::ParentDir(show(value)));
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// Whether `path` is `dir` or inside it (component-wise, so `/devices` is
/// not under `/dev`).
fn under(path: &Path, dir: &str) -> bool {
    path.starts_with(dir)
}
