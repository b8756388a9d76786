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
//!   `python3`; other runtimes (Node.js, Java) are refused.
//! * System functions (`arn:aws:lambda:::function:GG…`), which Greengrass
//!   groups use to configure the spooler or the IP detector, are accepted
//!   and not run: Evergreen provides those services itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use evergreen_ipc::manifest::{parse_connector_arn, ConnectorManifest, ResourceKind};
use evergreen_ipc::topic::{self, TopicError};
use evergreen_ipc::{ComponentKind, LogLevel};

use crate::model::{self, key_segment, GroupDefinition, ValidationError};
use crate::plan::{
    ComponentSpec, CoreSpec, DeviceSpec, GroupOwner, GroupPlan, Isolation, Launch, LogSettings,
    LoggerPlan, ResourceAccess, ResourceData, ResourceSpec, RunAs, SubscriptionSpec,
};
use crate::registry::{anchored_pattern, is_greengrass_connector, ConnectorRegistry};

/// The secret-name prefix the default Greengrass service role can read.
pub const DEFAULT_SECRET_NAME_PREFIX: &str = "greengrass-";

const MAX_ID_LEN: usize = 128;
const MAX_RESOURCES: usize = 50;
const MAX_RESOURCES_PER_FUNCTION: usize = 20;
const MAX_DEVICES: usize = 2500;
/// Greengrass defaults for a function without `MemorySize`/`Timeout`.
const DEFAULT_MEMORY_KB: u64 = 16384;
const DEFAULT_TIMEOUT_S: u64 = 3;
const DEFAULT_LOG_SPACE_KB: u64 = 128;
const CLOUD: &str = "cloud";
const SHADOW: &str = "GGShadowService";
/// Everything the local shadow service sends or accepts lives under this.
const SHADOW_TOPICS: &str = "$aws/things/+/shadow/#";
/// Greengrass system functions that a group may configure.
const SYSTEM_FUNCTIONS: &[&str] = &[
    "GGCloudSpooler",
    "GGConnManager",
    "GGDeviceCertificateManager",
    "GGIPDetector",
    "GGSecretManager",
    "GGShadowService",
    "GGShadowSyncManager",
    "GGStreamManager",
    "GGTES",
];

const CORES: &str = "$.CoreDefinitionVersion.Cores";
const DEVICES: &str = "$.DeviceDefinitionVersion.Devices";
const DEFAULT_EXECUTION: &str = "$.FunctionDefinitionVersion.DefaultConfig.Execution";
const FUNCTIONS: &str = "$.FunctionDefinitionVersion.Functions";
const SUBSCRIPTIONS: &str = "$.SubscriptionDefinitionVersion.Subscriptions";
const RESOURCES: &str = "$.ResourceDefinitionVersion.Resources";
const CONNECTORS: &str = "$.ConnectorDefinitionVersion.Connectors";
const LOGGERS: &str = "$.LoggerDefinitionVersion.Loggers";

/// What validation needs from the core's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl Default for ValidationOptions {
    fn default() -> Self {
        ValidationOptions {
            base_dir: PathBuf::from("."),
            allow_root: false,
            default_core_thing_arn: String::new(),
            secret_name_prefix: Some(DEFAULT_SECRET_NAME_PREFIX.to_string()),
            container_unavailable: None,
        }
    }
}

/// Checks every rule and builds the plan, or returns every problem found.
pub fn validate(
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
        }),
        _ => Err(v.errors),
    }
}

/// A resource as other parts of the group see it. `kind` is known whenever
/// the container holds exactly one member, even if that member is invalid,
/// so that a bad path does not also make every reference to the resource an
/// error.
#[derive(Debug)]
struct ResourceEntry {
    index: usize,
    name: String,
    kind: Option<ResourceKind>,
    spec: Option<ResourceSpec>,
}

impl ResourceEntry {
    fn path(&self) -> String {
        format!("{RESOURCES}[{}]", self.index)
    }

    fn data(&self) -> Option<&ResourceData> {
        self.spec.as_ref().map(|s| &s.data)
    }

    fn device_source(&self) -> Option<&Path> {
        match self.data() {
            Some(ResourceData::LocalDevice { source_path, .. }) => Some(source_path),
            _ => None,
        }
    }

    fn volume_source(&self) -> Option<&Path> {
        match self.data() {
            Some(ResourceData::LocalVolume { source_path, .. }) => Some(source_path),
            _ => None,
        }
    }

    fn volume_destination(&self) -> Option<&Path> {
        match self.data() {
            Some(ResourceData::LocalVolume {
                destination_path, ..
            }) => Some(destination_path),
            _ => None,
        }
    }

    fn secret_arn(&self) -> Option<&str> {
        match self.data() {
            Some(ResourceData::Secret { arn, .. }) => Some(arn),
            _ => None,
        }
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

#[derive(Debug)]
struct ConnectorEntry {
    arn: String,
    version: u32,
    index: usize,
}

/// What a subscription's `Source` or `Target` turned out to be.
#[derive(Debug)]
enum Endpoint {
    Cloud,
    Shadow,
    Other,
    Connector(&'static ConnectorManifest),
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
}

impl Validator<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError::new(path, message));
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

    // ------------------------------------------------------------ cores

    fn cores(&mut self, group: &GroupDefinition) -> Option<CoreSpec> {
        let Some(cdv) = &group.core_definition_version else {
            return match parse_thing_arn(&self.opts.default_core_thing_arn) {
                Ok(t) => Some(CoreSpec {
                    thing_arn: self.opts.default_core_thing_arn.clone(),
                    thing_name: t.name,
                    region: t.region,
                    account: t.account,
                    sync_shadow: false,
                }),
                Err(problem) => {
                    self.err(
                        "$",
                        format!(
                            "the group has no CoreDefinitionVersion and the configured core thing ARN is unusable: {problem}"
                        ),
                    );
                    None
                }
            };
        };
        let mut spec = None;
        for (i, core) in cdv.cores.iter().enumerate() {
            let path = format!("{CORES}[{i}]");
            self.check_id(format!("{path}.Id"), &core.id);
            if let Err(problem) = check_certificate_arn(&core.certificate_arn) {
                self.err(format!("{path}.CertificateArn"), problem);
            }
            match parse_thing_arn(&core.thing_arn) {
                Ok(t) if i == 0 => {
                    spec = Some(CoreSpec {
                        thing_arn: core.thing_arn.clone(),
                        thing_name: t.name,
                        region: t.region,
                        account: t.account,
                        sync_shadow: core.sync_shadow.unwrap_or(false),
                    })
                }
                Ok(_) => {}
                Err(problem) => self.err(format!("{path}.ThingArn"), problem),
            }
        }
        match cdv.cores.len() {
            0 => self.err(
                CORES,
                "a CoreDefinitionVersion must contain exactly one core (it has none)",
            ),
            1 => {}
            n => self.err(
                format!("{CORES}[1]"),
                format!("a CoreDefinitionVersion must contain exactly one core (it has {n})"),
            ),
        }
        spec
    }

    // ------------------------------------------------------------ devices

    fn devices(&mut self, group: &GroupDefinition, core: Option<&CoreSpec>) {
        let Some(ddv) = &group.device_definition_version else {
            return;
        };
        if ddv.devices.len() > MAX_DEVICES {
            self.err(
                DEVICES,
                format!(
                    "a group may have at most {MAX_DEVICES} devices (it has {})",
                    ddv.devices.len()
                ),
            );
        }
        self.check_unique(
            "device Id",
            ddv.devices
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("{DEVICES}[{i}].Id"), d.id.as_str())),
        );
        for (i, device) in ddv.devices.iter().enumerate() {
            let path = format!("{DEVICES}[{i}]");
            self.check_id(format!("{path}.Id"), &device.id);
            if let Err(problem) = check_certificate_arn(&device.certificate_arn) {
                self.err(format!("{path}.CertificateArn"), problem);
            }
            let thing = match parse_thing_arn(&device.thing_arn) {
                Ok(t) => t,
                Err(problem) => {
                    self.err(format!("{path}.ThingArn"), problem);
                    continue;
                }
            };
            if core.is_some_and(|c| c.thing_arn == device.thing_arn) {
                self.err(
                    format!("{path}.ThingArn"),
                    "this is the group's core; the core is not one of its client devices",
                );
                continue;
            }
            if self.devices.contains_key(&device.thing_arn) {
                let first = ddv
                    .devices
                    .iter()
                    .position(|d| d.thing_arn == device.thing_arn)
                    .unwrap_or(0);
                self.err(
                    format!("{path}.ThingArn"),
                    format!(
                        "duplicate device ThingArn (first used at {DEVICES}[{first}].ThingArn)"
                    ),
                );
                continue;
            }
            self.devices.insert(
                device.thing_arn.clone(),
                DeviceSpec {
                    id: device.id.clone(),
                    thing_arn: device.thing_arn.clone(),
                    thing_name: thing.name,
                    certificate_arn: device.certificate_arn.clone(),
                    sync_shadow: device.sync_shadow.unwrap_or(false),
                },
            );
        }
    }

    // ------------------------------------------------------------ resources

    fn resources(&mut self, group: &GroupDefinition) {
        let Some(rdv) = &group.resource_definition_version else {
            return;
        };
        if rdv.resources.len() > MAX_RESOURCES {
            self.err(
                RESOURCES,
                format!(
                    "a group may have at most {MAX_RESOURCES} resources (it has {})",
                    rdv.resources.len()
                ),
            );
        }
        let ids = rdv.resources.iter().enumerate();
        self.check_unique(
            "resource Id",
            ids.map(|(i, r)| (format!("{RESOURCES}[{i}].Id"), r.id.as_str())),
        );
        let names = rdv.resources.iter().enumerate();
        self.check_unique(
            "resource Name",
            names.map(|(i, r)| (format!("{RESOURCES}[{i}].Name"), r.name.as_str())),
        );
        let mut secret_arns: BTreeMap<String, String> = BTreeMap::new();
        for (i, resource) in rdv.resources.iter().enumerate() {
            let path = format!("{RESOURCES}[{i}]");
            self.check_id(format!("{path}.Id"), &resource.id);
            self.check_id(format!("{path}.Name"), &resource.name);
            let (kind, data) = self.resource_data(&path, &resource.resource_data_container);
            if let Some(ResourceData::Secret { arn, .. }) = &data {
                let arn_path =
                    format!("{path}.ResourceDataContainer.SecretsManagerSecretResourceData.ARN");
                if let Some(first) = secret_arns.get(arn) {
                    let message = format!(
                        "secret `{}` is already referenced at {first}; a secret may be referenced by one resource per group",
                        show(arn)
                    );
                    self.err(arn_path, message);
                } else {
                    secret_arns.insert(arn.clone(), arn_path);
                }
            }
            if self.resources.contains_key(&resource.id) {
                continue; // reported as a duplicate Id above
            }
            self.resources.insert(
                resource.id.clone(),
                ResourceEntry {
                    index: i,
                    name: resource.name.clone(),
                    kind,
                    spec: data.map(|data| ResourceSpec {
                        id: resource.id.clone(),
                        name: resource.name.clone(),
                        data,
                    }),
                },
            );
        }
    }

    /// Checks one `ResourceDataContainer`; returns its kind when it has
    /// exactly one member, and the validated data when that member is valid.
    fn resource_data(
        &mut self,
        path: &str,
        c: &model::ResourceDataContainer,
    ) -> (Option<ResourceKind>, Option<ResourceData>) {
        let path = format!("{path}.ResourceDataContainer");
        let present: Vec<&str> = [
            c.local_device_resource_data
                .is_some()
                .then_some("LocalDeviceResourceData"),
            c.local_volume_resource_data
                .is_some()
                .then_some("LocalVolumeResourceData"),
            c.s3_machine_learning_model_resource_data
                .is_some()
                .then_some("S3MachineLearningModelResourceData"),
            c.sage_maker_machine_learning_model_resource_data
                .is_some()
                .then_some("SageMakerMachineLearningModelResourceData"),
            c.secrets_manager_secret_resource_data
                .is_some()
                .then_some("SecretsManagerSecretResourceData"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if present.len() != 1 {
            let found = if present.is_empty() {
                "none".to_string()
            } else {
                present.join(", ")
            };
            self.err(
                path,
                format!(
                    "must hold exactly one of LocalDeviceResourceData, LocalVolumeResourceData, \
                     S3MachineLearningModelResourceData, SageMakerMachineLearningModelResourceData, \
                     SecretsManagerSecretResourceData (found {found})"
                ),
            );
            return (None, None);
        }
        if let Some(d) = &c.local_device_resource_data {
            let path = format!("{path}.LocalDeviceResourceData");
            let source =
                self.device_source(&format!("{path}.SourcePath"), d.source_path.as_deref());
            let data = source.map(|source_path| ResourceData::LocalDevice {
                source_path,
                group_owner: group_owner(d.group_owner_setting.as_ref()),
            });
            return (Some(ResourceKind::LocalDevice), data);
        }
        if let Some(v) = &c.local_volume_resource_data {
            let path = format!("{path}.LocalVolumeResourceData");
            let source =
                self.volume_source(&format!("{path}.SourcePath"), v.source_path.as_deref());
            let destination = self.volume_destination(
                &format!("{path}.DestinationPath"),
                v.destination_path.as_deref(),
            );
            let data = match (source, destination) {
                (Some(source_path), Some(destination_path)) => Some(ResourceData::LocalVolume {
                    source_path,
                    destination_path,
                    group_owner: group_owner(v.group_owner_setting.as_ref()),
                }),
                _ => None,
            };
            return (Some(ResourceKind::LocalVolume), data);
        }
        if let Some(s3) = &c.s3_machine_learning_model_resource_data {
            let path = format!("{path}.S3MachineLearningModelResourceData");
            let origin = match s3.s3_uri.as_deref() {
                None => {
                    self.err(format!("{path}.S3Uri"), "S3Uri is required");
                    None
                }
                Some(uri) => match check_s3_uri(uri) {
                    Ok(()) => Some(uri.to_string()),
                    Err(problem) => {
                        self.err(format!("{path}.S3Uri"), problem);
                        None
                    }
                },
            };
            let data = self.ml_data(
                &path,
                origin,
                s3.destination_path.as_deref(),
                s3.owner_setting.as_ref(),
            );
            return (Some(ResourceKind::MachineLearningModel), data);
        }
        if let Some(sm) = &c.sage_maker_machine_learning_model_resource_data {
            let path = format!("{path}.SageMakerMachineLearningModelResourceData");
            let origin = match sm.sage_maker_job_arn.as_deref() {
                None => {
                    self.err(
                        format!("{path}.SageMakerJobArn"),
                        "SageMakerJobArn is required",
                    );
                    None
                }
                Some(arn) => match check_sagemaker_arn(arn) {
                    Ok(()) => Some(arn.to_string()),
                    Err(problem) => {
                        self.err(format!("{path}.SageMakerJobArn"), problem);
                        None
                    }
                },
            };
            let data = self.ml_data(
                &path,
                origin,
                sm.destination_path.as_deref(),
                sm.owner_setting.as_ref(),
            );
            return (Some(ResourceKind::MachineLearningModel), data);
        }
        if let Some(s) = &c.secrets_manager_secret_resource_data {
            let path = format!("{path}.SecretsManagerSecretResourceData");
            let mut ok = true;
            for (i, label) in s.additional_staging_labels_to_download.iter().enumerate() {
                if label.is_empty() {
                    self.err(
                        format!("{path}.AdditionalStagingLabelsToDownload[{i}]"),
                        "a staging label cannot be empty",
                    );
                    ok = false;
                }
            }
            let arn = match s.arn.as_deref() {
                None => {
                    self.err(format!("{path}.ARN"), "ARN is required");
                    None
                }
                Some(arn) => match secret_name(arn) {
                    Err(problem) => {
                        self.err(format!("{path}.ARN"), problem);
                        None
                    }
                    Ok(name) => {
                        if let Some(prefix) = self.opts.secret_name_prefix.as_deref() {
                            if !name.starts_with(prefix) {
                                self.err(
                                    format!("{path}.ARN"),
                                    format!(
                                        "the secret's name `{}` does not start with `{prefix}`; only secrets named \
                                         `{prefix}…` may be used (the prefix is set by the core configuration)",
                                        show(name)
                                    ),
                                );
                            }
                        }
                        Some(arn.to_string())
                    }
                },
            };
            let data = arn.filter(|_| ok).map(|arn| ResourceData::Secret {
                arn,
                additional_staging_labels: s.additional_staging_labels_to_download.clone(),
            });
            return (Some(ResourceKind::Secret), data);
        }
        (None, None)
    }

    fn ml_data(
        &mut self,
        path: &str,
        origin: Option<String>,
        destination: Option<&str>,
        owner: Option<&model::ResourceDownloadOwnerSetting>,
    ) -> Option<ResourceData> {
        let destination = self.absolute_path(&format!("{path}.DestinationPath"), destination);
        let mut owner_ok = true;
        if let Some(o) = owner {
            if o.group_owner.is_empty() {
                self.err(
                    format!("{path}.OwnerSetting.GroupOwner"),
                    "GroupOwner cannot be empty",
                );
                owner_ok = false;
            }
            if parse_permission(&o.group_permission).is_none() {
                self.err(
                    format!("{path}.OwnerSetting.GroupPermission"),
                    format!(
                        "`{}` is not a permission: use \"ro\" or \"rw\"",
                        show(&o.group_permission)
                    ),
                );
                owner_ok = false;
            }
        }
        match (origin, destination, owner_ok) {
            (Some(origin), Some(destination_path), true) => {
                Some(ResourceData::MachineLearningModel {
                    origin,
                    destination_path,
                    group_owner: owner.map(|o| o.group_owner.clone()),
                    read_write: owner.is_some_and(|o| o.group_permission == "rw"),
                })
            }
            _ => None,
        }
    }

    /// A required absolute path, without `..`, returned normalised (no `.`
    /// components, no repeated or trailing slashes) so that two spellings
    /// of one path compare equal.
    fn absolute_path(&mut self, path: &str, value: Option<&str>) -> Option<PathBuf> {
        let member = path.rsplit('.').next().unwrap_or(path);
        let Some(value) = value else {
            self.err(path, format!("{member} is required"));
            return None;
        };
        match normalise_absolute(value) {
            Ok(p) => Some(p),
            Err(problem) => {
                self.err(path, problem);
                None
            }
        }
    }

    fn device_source(&mut self, path: &str, value: Option<&str>) -> Option<PathBuf> {
        let p = self.absolute_path(path, value)?;
        if under(&p, "/dev/shm") {
            self.err(
                path,
                "/dev/shm is shared memory, not a device: declare it as a LocalVolumeResourceData",
            );
            return None;
        }
        if !under(&p, "/dev") || p == Path::new("/dev") {
            self.err(
                path,
                format!(
                    "`{}` is not under /dev: a device resource is a character or block device in /dev",
                    p.display()
                ),
            );
            return None;
        }
        Some(p)
    }

    fn volume_source(&mut self, path: &str, value: Option<&str>) -> Option<PathBuf> {
        let p = self.absolute_path(path, value)?;
        let problem = if under(&p, "/sys") {
            Some("a volume cannot come from /sys (functions get read access to /sys with AccessSysfs)")
        } else if under(&p, "/dev") && !under(&p, "/dev/shm") {
            Some("a volume cannot come from /dev (except /dev/shm): declare devices as LocalDeviceResourceData")
        } else if under(&p, "/var") {
            Some("a volume cannot come from /var: bind-mount the directory elsewhere first and use that path")
        } else {
            None
        };
        match problem {
            Some(problem) => {
                self.err(path, format!("`{}`: {problem}", p.display()));
                None
            }
            None => Some(p),
        }
    }

    fn volume_destination(&mut self, path: &str, value: Option<&str>) -> Option<PathBuf> {
        let p = self.absolute_path(path, value)?;
        if under(&p, "/proc") {
            self.err(
                path,
                format!("`{}`: a volume cannot be mounted on /proc, which the container provides itself", p.display()),
            );
            return None;
        }
        if p == Path::new("/") {
            self.err(path, "a volume cannot be mounted on /");
            return None;
        }
        Some(p)
    }

    // ------------------------------------------------------------ functions

    fn functions(&mut self, group: &GroupDefinition) {
        let Some(fdv) = &group.function_definition_version else {
            return;
        };
        if let Some(execution) = fdv
            .default_config
            .as_ref()
            .and_then(|d| d.execution.as_ref())
        {
            let (isolation, run_as) = self.execution(DEFAULT_EXECUTION, execution);
            self.default_isolation = isolation;
            self.default_run_as = run_as;
        }
        self.check_unique(
            "function Id",
            fdv.functions
                .iter()
                .enumerate()
                .map(|(i, f)| (format!("{FUNCTIONS}[{i}].Id"), f.id.as_str())),
        );
        let mut root_own: Vec<(String, String)> = Vec::new();
        let mut seen_arns: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, function) in fdv.functions.iter().enumerate() {
            let path = format!("{FUNCTIONS}[{i}]");
            self.check_id(format!("{path}.Id"), &function.id);
            let arn_path = format!("{path}.FunctionArn");
            let (arn, parsed) = match function.function_arn.as_deref() {
                None => {
                    self.err(arn_path, "FunctionArn is required");
                    (None, None)
                }
                Some(arn) => match parse_function_arn(arn) {
                    Ok(FunctionArn::System { name }) => {
                        if !SYSTEM_FUNCTIONS.contains(&name.as_str()) {
                            self.err(
                                arn_path,
                                format!(
                                    "`{name}` is not a Greengrass system function (known: {})",
                                    SYSTEM_FUNCTIONS.join(", ")
                                ),
                            );
                        }
                        // Configures a service Evergreen provides itself.
                        continue;
                    }
                    Ok(FunctionArn::User(parts)) => {
                        if let Some(first) = seen_arns.get(arn) {
                            self.err(
                                arn_path,
                                format!("duplicate FunctionArn (first used at {FUNCTIONS}[{first}].FunctionArn)"),
                            );
                            (None, None)
                        } else {
                            seen_arns.insert(arn, i);
                            (Some(arn), Some(parts))
                        }
                    }
                    Err(problem) => {
                        self.err(arn_path, problem);
                        (None, None)
                    }
                },
            };
            let spec = self.function(&path, function, arn, parsed.as_ref(), &mut root_own);
            if let (Some(arn), Some(parts)) = (arn, parsed) {
                self.function_arns.insert(arn.to_string());
                self.functions_by_base
                    .entry(parts.base())
                    .or_default()
                    .push(arn.to_string());
                if let Some(spec) = spec {
                    self.components.insert(arn.to_string(), spec);
                }
            }
        }
        if !self.opts.allow_root {
            for (path, arn) in root_own {
                self.err(path, root_message(&[arn]));
            }
        }
    }

    /// Checks an `Execution` block; returns the isolation and identity it
    /// sets, when set and valid.
    fn execution(
        &mut self,
        path: &str,
        execution: &model::FunctionExecutionConfig,
    ) -> (Option<Isolation>, Option<RunAs>) {
        let isolation = execution.isolation_mode.as_deref().and_then(|mode| {
            let parsed = parse_isolation(mode);
            if parsed.is_none() {
                self.err(
                    format!("{path}.IsolationMode"),
                    format!(
                        "`{}` is not an isolation mode: use GreengrassContainer or NoContainer",
                        show(mode)
                    ),
                );
            }
            parsed
        });
        let run_as = execution.run_as.map(|r| {
            let path = format!("{path}.RunAs");
            RunAs {
                uid: self.id_number(&format!("{path}.Uid"), r.uid),
                gid: self.id_number(&format!("{path}.Gid"), r.gid),
            }
        });
        (isolation, run_as)
    }

    fn id_number(&mut self, path: &str, value: Option<i64>) -> Option<u32> {
        let value = value?;
        match u32::try_from(value) {
            Ok(id) => Some(id),
            Err(_) => {
                self.err(
                    path,
                    format!("{value} is not a user or group id (0 to {})", u32::MAX),
                );
                None
            }
        }
    }

    /// Checks one user function and builds its spec when everything needed
    /// for it is valid.
    fn function(
        &mut self,
        path: &str,
        function: &model::Function,
        arn: Option<&str>,
        parsed: Option<&UserFunctionArn>,
        root_own: &mut Vec<(String, String)>,
    ) -> Option<ComponentSpec> {
        let Some(config) = &function.function_configuration else {
            self.err(
                format!("{path}.FunctionConfiguration"),
                "FunctionConfiguration is required (it holds the Executable to run)",
            );
            return None;
        };
        let cpath = format!("{path}.FunctionConfiguration");
        let mut ok = true;

        let executable = match config.executable.as_deref() {
            None => {
                self.err(
                    format!("{cpath}.Executable"),
                    "Executable is required: the program to run",
                );
                None
            }
            Some(e) if e.trim().is_empty() => {
                self.err(format!("{cpath}.Executable"), "Executable cannot be empty");
                None
            }
            Some(e) if e.contains('\0') => {
                self.err(
                    format!("{cpath}.Executable"),
                    "Executable contains a NUL character",
                );
                None
            }
            Some(e) => Some(e),
        };
        let args: Vec<String> = match config.exec_args.as_deref() {
            Some(a) if a.contains('\0') => {
                self.err(
                    format!("{cpath}.ExecArgs"),
                    "ExecArgs contains a NUL character",
                );
                ok = false;
                Vec::new()
            }
            Some(a) => a.split_whitespace().map(str::to_string).collect(),
            None => Vec::new(),
        };
        let python = self.python(&cpath, config, executable);
        ok &= python != Some(None);
        let python = python.flatten();
        let memory_kb = self.positive(&format!("{cpath}.MemorySize"), config.memory_size, "KB");
        let timeout_s = self.positive(&format!("{cpath}.Timeout"), config.timeout, "seconds");
        ok &= config.memory_size.is_none() || memory_kb.is_some();
        ok &= config.timeout.is_none() || timeout_s.is_some();
        if let Some(encoding) = config.encoding_type.as_deref() {
            if encoding != "json" && encoding != "binary" {
                self.err(
                    format!("{cpath}.EncodingType"),
                    format!(
                        "`{}` is not an encoding type: use json or binary",
                        show(encoding)
                    ),
                );
                ok = false;
            }
        }

        let env_path = format!("{cpath}.Environment");
        let env = config.environment.as_ref();
        let mut variables = BTreeMap::new();
        for (key, value) in env.map(|e| &e.variables).into_iter().flatten() {
            let vpath = format!("{env_path}.Variables{}", key_segment(key));
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                self.err(
                    vpath,
                    "an environment variable name cannot be empty or contain '=' or NUL",
                );
                ok = false;
            } else if value.contains('\0') {
                self.err(vpath, "an environment variable value cannot contain NUL");
                ok = false;
            } else {
                variables.insert(key.clone(), value.clone());
            }
        }

        let (own_isolation, own_run_as) = match env.and_then(|e| e.execution.as_ref()) {
            Some(execution) => self.execution(&format!("{env_path}.Execution"), execution),
            None => (None, None),
        };
        let isolation = own_isolation
            .or(self.default_isolation)
            .unwrap_or(Isolation::GreengrassContainer);
        if isolation == Isolation::GreengrassContainer {
            let where_from = if own_isolation.is_some() {
                format!("{env_path}.Execution.IsolationMode")
            } else {
                env_path.to_string()
            };
            self.require_container(where_from, "the function");
        }
        let run_as = own_run_as.or(self.default_run_as).unwrap_or_default();
        if let Some(arn) = arn {
            if runs_as_root(run_as) {
                if own_run_as.is_some() {
                    root_own.push((format!("{env_path}.Execution.RunAs"), arn.to_string()));
                } else {
                    self.root_by_default.push(arn.to_string());
                }
            }
        }

        let label = match parsed {
            Some(p) => format!("function {}", p.name),
            None => format!("function `{}`", function.id),
        };
        let (resources, secrets) = self.access_policies(
            &env_path,
            env.map(|e| e.resource_access_policies.as_slice())
                .unwrap_or_default(),
            isolation,
            arn.unwrap_or_default(),
            &label,
        )?;

        let (arn, parsed, executable) = (arn?, parsed?, executable?);
        if !ok {
            return None;
        }
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                self.opts.base_dir.join(p)
            }
        };
        let launch = match python {
            Some((code, runtime)) => Launch::Python {
                handler: executable.to_string(),
                code: resolve(code),
                runtime: runtime.to_string(),
                binary: config.encoding_type.as_deref() == Some("binary"),
            },
            None => Launch::Executable {
                path: resolve(executable),
                args,
            },
        };
        Some(ComponentSpec {
            id: function.id.clone(),
            arn: arn.to_string(),
            kind: ComponentKind::Function,
            name: parsed.name.clone(),
            launch,
            parameters: variables,
            isolation,
            run_as,
            pinned: config.pinned.unwrap_or(false),
            // Greengrass discards the memory limit without a container.
            memory_kb: match isolation {
                Isolation::GreengrassContainer => Some(memory_kb.unwrap_or(DEFAULT_MEMORY_KB)),
                Isolation::NoContainer => None,
            },
            timeout_s: timeout_s.unwrap_or(DEFAULT_TIMEOUT_S),
            resources,
            secrets,
            aws: false,
            log_file: PathBuf::from(format!(
                "user/{}/{}/{}.log",
                parsed.region, parsed.account, parsed.name
            )),
        })
    }

    /// Recognises a Greengrass V1 Python function: one with a `CodeUri` or a
    /// `python…` `Runtime`. Returns `None` for a plain executable,
    /// `Some(Some((code, runtime)))` for a valid Python function and
    /// `Some(None)` when it is one but something is wrong (reported).
    fn python<'c>(
        &mut self,
        cpath: &str,
        config: &'c model::FunctionConfiguration,
        executable: Option<&str>,
    ) -> Option<Option<(&'c str, &'c str)>> {
        let runtime = config.runtime.as_deref();
        let code = config.code_uri.as_deref();
        if code.is_none() && runtime.is_none() {
            return None;
        }
        let mut ok = true;
        let runtime_ok = runtime.is_none_or(|r| {
            r == "python3"
                || r.strip_prefix("python3.").is_some_and(|minor| {
                    !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
                })
        });
        if !runtime_ok {
            self.err(
                format!("{cpath}.Runtime"),
                format!(
                    "`{}` is not a supported runtime: use python3.7, python3.8 or another python3.N",
                    show(runtime.unwrap_or_default())
                ),
            );
            ok = false;
        }
        match code {
            None => {
                self.err(
                    format!("{cpath}.CodeUri"),
                    "CodeUri is required for a Python function: the directory or .zip holding its code",
                );
                ok = false;
            }
            Some(c) if c.trim().is_empty() || c.contains('\0') => {
                self.err(
                    format!("{cpath}.CodeUri"),
                    "CodeUri cannot be empty or contain NUL",
                );
                ok = false;
            }
            Some(_) => {}
        }
        if let Some(handler) = executable {
            let ident = |s: &str| {
                let mut chars = s.chars();
                chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            };
            let parts: Vec<&str> = handler.split('.').collect();
            if parts.len() < 2 || !parts.iter().all(|p| ident(p)) {
                self.err(
                    format!("{cpath}.Executable"),
                    format!(
                        "`{}` is not a Python handler: use module.function (for example lambda_function.function_handler)",
                        show(handler)
                    ),
                );
                ok = false;
            }
        }
        if config
            .exec_args
            .as_deref()
            .is_some_and(|a| !a.trim().is_empty())
        {
            self.err(
                format!("{cpath}.ExecArgs"),
                "ExecArgs does not apply to a Python function",
            );
            ok = false;
        }
        match (ok, code) {
            (true, Some(code)) => Some(Some((code, runtime.unwrap_or("python3")))),
            _ => Some(None),
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

    /// Checks a function's `ResourceAccessPolicies`; returns its grants and
    /// the names of its secrets, or `None` when any policy is invalid.
    fn access_policies(
        &mut self,
        env_path: &str,
        policies: &[model::ResourceAccessPolicy],
        isolation: Isolation,
        arn: &str,
        label: &str,
    ) -> Option<(Vec<ResourceAccess>, Vec<String>)> {
        let list_path = format!("{env_path}.ResourceAccessPolicies");
        let mut ok = true;
        if policies.len() > MAX_RESOURCES_PER_FUNCTION {
            self.err(
                list_path.clone(),
                format!(
                    "a function may be granted at most {MAX_RESOURCES_PER_FUNCTION} resources (it has {})",
                    policies.len()
                ),
            );
            ok = false;
        }
        let mut grants = Vec::new();
        let mut secrets = Vec::new();
        let mut local = Vec::new();
        let mut seen = BTreeSet::new();
        for (r, policy) in policies.iter().enumerate() {
            let ppath = format!("{list_path}[{r}]");
            let read_write = match policy.permission.as_deref() {
                None => false,
                Some(p) => match parse_permission(p) {
                    Some(rw) => rw,
                    None => {
                        self.err(
                            format!("{ppath}.Permission"),
                            format!("`{}` is not a permission: use \"ro\" or \"rw\"", show(p)),
                        );
                        ok = false;
                        false
                    }
                },
            };
            if !seen.insert(policy.resource_id.as_str()) {
                self.err(
                    format!("{ppath}.ResourceId"),
                    format!(
                        "resource `{}` is listed twice for this function",
                        show(&policy.resource_id)
                    ),
                );
                ok = false;
                continue;
            }
            let Some(entry) = self.resources.get(&policy.resource_id) else {
                self.err(
                    format!("{ppath}.ResourceId"),
                    format!(
                        "`{}` is not the Id of a resource in this group's ResourceDefinitionVersion",
                        show(&policy.resource_id)
                    ),
                );
                ok = false;
                continue;
            };
            let mut problems = Vec::new();
            match entry.kind {
                Some(ResourceKind::Secret) => {
                    if read_write {
                        problems
                            .push("a secret can only be granted read-only (\"ro\")".to_string());
                    }
                    secrets.push(entry.name.clone());
                }
                Some(ResourceKind::LocalVolume) => {
                    local.push(policy.resource_id.clone());
                    if read_write && entry.volume_source().is_some_and(|s| under(s, "/proc")) {
                        problems.push(
                            "a volume from /proc can only be granted read-only (\"ro\")"
                                .to_string(),
                        );
                    }
                    if !read_write && entry.volume_source().is_some_and(|s| under(s, "/dev/shm")) {
                        problems.push(
                            "a /dev/shm volume must be granted read-write (\"rw\")".to_string(),
                        );
                    }
                }
                Some(ResourceKind::LocalDevice) => {
                    local.push(policy.resource_id.clone());
                    if let Some(source) = entry.device_source() {
                        self.claims.push(DeviceClaim {
                            source: source.to_path_buf(),
                            resource_id: policy.resource_id.clone(),
                            component_arn: arn.to_string(),
                            label: label.to_string(),
                            by_connector: false,
                            path: format!("{ppath}.ResourceId"),
                        });
                    }
                }
                Some(ResourceKind::MachineLearningModel) => {
                    let owned = matches!(
                        entry.data(),
                        Some(ResourceData::MachineLearningModel {
                            group_owner: Some(_),
                            ..
                        })
                    );
                    if isolation == Isolation::NoContainer && entry.spec.is_some() && !owned {
                        problems.push(format!(
                            "machine-learning resource `{}` has no OwnerSetting; a function without a container \
                             can only read it through the owner group",
                            show(&policy.resource_id)
                        ));
                    }
                }
                None => {}
            }
            let permission_path = format!("{ppath}.Permission");
            for problem in problems {
                self.err(permission_path.clone(), problem);
                ok = false;
            }
            grants.push(ResourceAccess {
                resource_id: policy.resource_id.clone(),
                read_write,
            });
        }
        if isolation == Isolation::NoContainer && !local.is_empty() {
            self.err(
                list_path,
                format!(
                    "the function runs with NoContainer isolation but is granted local resources [{}]; local device \
                     and volume resources can only be attached to functions in a Greengrass container",
                    local.join(", ")
                ),
            );
            ok = false;
        }
        secrets.dedup();
        ok.then_some((grants, secrets))
    }

    // ------------------------------------------------------------ connectors

    fn connectors(&mut self, group: &GroupDefinition, core_region: &str) {
        let Some(cdv) = &group.connector_definition_version else {
            return;
        };
        self.check_unique(
            "connector Id",
            cdv.connectors
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("{CONNECTORS}[{i}].Id"), c.id.as_str())),
        );
        for (i, connector) in cdv.connectors.iter().enumerate() {
            let path = format!("{CONNECTORS}[{i}]");
            self.check_id(format!("{path}.Id"), &connector.id);
            let arn_path = format!("{path}.ConnectorArn");
            let Some((name, version)) = parse_connector_arn(&connector.connector_arn) else {
                self.err(
                    arn_path,
                    format!(
                        "`{}` is not a connector ARN (expected arn:aws:greengrass:<region>::/connectors/<Name>/versions/<N>)",
                        show(&connector.connector_arn)
                    ),
                );
                continue;
            };
            if let Some(first) = self.connectors_by_name.get(name) {
                let message = format!(
                    "{name} is already in this group at {CONNECTORS}[{}]; a group may contain one instance of each connector",
                    first.index
                );
                self.err(arn_path, message);
                continue;
            }
            self.connectors_by_name.insert(
                name.to_string(),
                ConnectorEntry {
                    arn: connector.connector_arn.clone(),
                    version,
                    index: i,
                },
            );
            let manifest = self.lookup_connector(&arn_path, name, version);
            self.connector_manifests
                .insert(connector.connector_arn.clone(), manifest);
            let Some(manifest) = manifest else {
                continue;
            };
            if let Some(spec) = self.connector(&path, connector, manifest, version, core_region) {
                self.components
                    .insert(connector.connector_arn.clone(), spec);
            }
        }
    }

    /// The manifest for a connector name and version, or an error saying why
    /// there is none.
    fn lookup_connector(
        &mut self,
        arn_path: &str,
        name: &str,
        version: u32,
    ) -> Option<&'static ConnectorManifest> {
        let Some(manifest) = self.registry.get(name) else {
            let built_in = match self.registry.names() {
                names if names.is_empty() => "none".to_string(),
                names => names.join(", "),
            };
            let message = if is_greengrass_connector(name) {
                format!(
                    "{name} is a Greengrass connector that this build of Evergreen does not contain (built-in connectors: {built_in})"
                )
            } else {
                format!(
                    "unknown connector `{}` (built-in connectors: {built_in})",
                    show(name)
                )
            };
            self.err(arn_path, message);
            return None;
        };
        if !manifest.versions.contains(&version) {
            let versions: Vec<String> = manifest.versions.iter().map(u32::to_string).collect();
            self.err(
                arn_path,
                format!(
                    "{name} version {version} is not available: this build implements version(s) {}",
                    versions.join(", ")
                ),
            );
            return None;
        }
        Some(manifest)
    }

    fn connector(
        &mut self,
        path: &str,
        connector: &model::Connector,
        manifest: &'static ConnectorManifest,
        version: u32,
        core_region: &str,
    ) -> Option<ComponentSpec> {
        let name = manifest.name;
        let ppath = format!("{path}.Parameters");
        let param_path = |key: &str| format!("{ppath}{}", key_segment(key));
        let mut ok = true;
        let mut parameters = BTreeMap::new();
        let mut resources = Vec::new();
        let mut secrets = Vec::new();
        let arn = connector.connector_arn.as_str();
        let label = format!("connector {name}");

        for (key, value) in &connector.parameters {
            let Some(spec) = manifest.parameter(key) else {
                let known: Vec<&str> = manifest
                    .parameters
                    .iter()
                    .filter(|p| p.since_version <= version)
                    .map(|p| p.name)
                    .collect();
                self.err(
                    param_path(key),
                    format!(
                        "unknown parameter `{}` for {name} version {version} (known: {})",
                        show(key),
                        known.join(", ")
                    ),
                );
                ok = false;
                continue;
            };
            if spec.since_version > version {
                self.err(
                    param_path(key),
                    format!(
                        "parameter {key} exists from {name} version {} on; this group uses version {version}",
                        spec.since_version
                    ),
                );
                ok = false;
                continue;
            }
            if let Some(pattern) = spec.pattern {
                match anchored_pattern(pattern) {
                    Err(e) => {
                        self.err(
                            param_path(key),
                            format!("the {name} manifest's pattern for {key} does not compile ({e}): a bug in this build"),
                        );
                        ok = false;
                        continue;
                    }
                    Ok(re) if !re.is_match(value) => {
                        self.err(
                            param_path(key),
                            format!(
                                "`{}` is not a valid {key}: it must match `{pattern}`",
                                show(value)
                            ),
                        );
                        ok = false;
                        continue;
                    }
                    Ok(_) => {}
                }
            }
            parameters.insert(key.clone(), value.clone());
        }

        for spec in manifest
            .parameters
            .iter()
            .filter(|p| p.since_version <= version)
        {
            if connector.parameters.contains_key(spec.name) {
                continue;
            }
            match spec.default {
                Some(default) => {
                    parameters.insert(spec.name.to_string(), default.to_string());
                }
                None if spec.required => {
                    let description = if spec.description.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", spec.description)
                    };
                    self.err(
                        ppath.clone(),
                        format!(
                            "missing required parameter {} of {name}{description}",
                            spec.name
                        ),
                    );
                    ok = false;
                }
                None => {}
            }
        }

        // Resources named by parameters: they must exist and be of the kind
        // the connector expects; they are what the connector is granted.
        // (The table is moved out for the loop so errors can be recorded
        // while an entry is borrowed; it is put back right after.)
        let table = std::mem::take(&mut self.resources);
        for spec in manifest
            .parameters
            .iter()
            .filter(|p| p.since_version <= version)
        {
            let Some(kind) = spec.resource else { continue };
            let Some(id) = parameters.get(spec.name).filter(|v| !v.is_empty()) else {
                continue;
            };
            let Some(entry) = table.get(id) else {
                self.err(
                    param_path(spec.name),
                    format!(
                        "`{}` is not the Id of a resource in this group's ResourceDefinitionVersion ({name} needs a {})",
                        show(id),
                        kind.container_name()
                    ),
                );
                ok = false;
                continue;
            };
            match entry.kind {
                Some(actual) if actual != kind => {
                    let message = format!(
                        "resource `{}` ({}) is a {}, but {} needs a {}",
                        show(id),
                        entry.path(),
                        actual.container_name(),
                        spec.name,
                        kind.container_name()
                    );
                    self.err(param_path(spec.name), message);
                    ok = false;
                    continue;
                }
                _ => {}
            }
            // `<X>-ResourceId` usually comes with `<X>` repeating what the
            // resource says (the port path, the secret ARN); a mismatch
            // would only fail once the connector runs.
            if let Some(companion) = spec.name.strip_suffix("-ResourceId") {
                if let Some(given) = parameters.get(companion) {
                    let expected = match kind {
                        ResourceKind::Secret => entry.secret_arn().map(str::to_string),
                        ResourceKind::LocalDevice => {
                            entry.device_source().map(|p| p.display().to_string())
                        }
                        ResourceKind::LocalVolume => {
                            entry.volume_destination().map(|p| p.display().to_string())
                        }
                        ResourceKind::MachineLearningModel => None,
                    };
                    let same = match (kind, &expected) {
                        (_, None) => true,
                        (ResourceKind::Secret, Some(e)) => e == given,
                        (_, Some(e)) => normalise_absolute(given).is_ok_and(|g| g == Path::new(e)),
                    };
                    if let (false, Some(expected)) = (same, expected) {
                        let message = format!(
                            "`{}` does not match resource `{}` named by {} (which has `{}`)",
                            show(given),
                            show(id),
                            spec.name,
                            show(&expected)
                        );
                        self.err(param_path(companion), message);
                        ok = false;
                    }
                }
            }
            match kind {
                ResourceKind::Secret => secrets.push(entry.name.clone()),
                ResourceKind::LocalDevice => {
                    if let Some(source) = entry.device_source() {
                        self.claims.push(DeviceClaim {
                            source: source.to_path_buf(),
                            resource_id: id.clone(),
                            component_arn: arn.to_string(),
                            label: label.clone(),
                            by_connector: true,
                            path: param_path(spec.name),
                        });
                    }
                }
                ResourceKind::LocalVolume | ResourceKind::MachineLearningModel => {}
            }
            resources.push(ResourceAccess {
                resource_id: id.clone(),
                // Connectors write to their devices (serial, GPIO) and only
                // read volumes (/proc), models and secrets.
                read_write: kind == ResourceKind::LocalDevice,
            });
        }
        self.resources = table;
        secrets.dedup();

        let explicit_mode = connector
            .parameters
            .get("IsolationMode")
            .map(String::as_str);
        let isolation = self.connector_isolation(path, manifest, explicit_mode, &mut parameters)?;
        let run_as = self.default_run_as.unwrap_or_default();
        if runs_as_root(run_as) {
            self.root_by_default.push(arn.to_string());
        }
        if !ok {
            return None;
        }
        Some(ComponentSpec {
            id: connector.id.clone(),
            arn: arn.to_string(),
            kind: ComponentKind::Connector,
            name: name.to_string(),
            launch: Launch::Connector {
                name: name.to_string(),
                version,
            },
            parameters,
            isolation,
            run_as,
            pinned: manifest.pinned,
            memory_kb: None,
            timeout_s: DEFAULT_TIMEOUT_S,
            resources,
            secrets,
            aws: manifest.aws,
            log_file: PathBuf::from(format!("user/{core_region}/aws/{name}.log")),
        })
    }

    /// Connectors ignore the group's default containerization, except that a
    /// NoContainer default forces every connector out of containers (the
    /// Greengrass rule). Otherwise: the `IsolationMode` parameter (given, or
    /// the manifest default), else a container when the connector supports
    /// one. Only a mode the group *gave* can conflict with the group default.
    fn connector_isolation(
        &mut self,
        path: &str,
        manifest: &ConnectorManifest,
        explicit: Option<&str>,
        parameters: &mut BTreeMap<String, String>,
    ) -> Option<Isolation> {
        let name = manifest.name;
        let mode_path = format!("{path}.Parameters.IsolationMode");
        let requested = match parameters.get("IsolationMode").map(String::as_str) {
            None | Some("") => None,
            Some(mode) => {
                match parse_isolation(mode) {
                    Some(m) => Some(m),
                    None => {
                        self.err(
                        mode_path,
                        format!("`{}` is not an isolation mode: use GreengrassContainer or NoContainer", show(mode)),
                    );
                        return None;
                    }
                }
            }
        };
        if self.default_isolation == Some(Isolation::NoContainer) {
            if !manifest.isolation.no_container {
                self.err(
                    format!("{path}.ConnectorArn"),
                    format!(
                        "the group's default isolation ({DEFAULT_EXECUTION}.IsolationMode) is NoContainer, so every \
                         connector must run without a container, but {name} runs only in a Greengrass container"
                    ),
                );
                return None;
            }
            if explicit.and_then(parse_isolation) == Some(Isolation::GreengrassContainer) {
                self.err(
                    mode_path,
                    format!(
                        "the group's default isolation ({DEFAULT_EXECUTION}.IsolationMode) is NoContainer, so every \
                         connector must run without a container"
                    ),
                );
                return None;
            }
            if parameters.contains_key("IsolationMode") {
                // Tell the connector how it actually runs.
                parameters.insert("IsolationMode".to_string(), "NoContainer".to_string());
            }
            return Some(Isolation::NoContainer);
        }
        let isolation = match requested {
            Some(mode) => mode,
            None if manifest.isolation.container => Isolation::GreengrassContainer,
            None => Isolation::NoContainer,
        };
        let supported = match isolation {
            Isolation::GreengrassContainer => manifest.isolation.container,
            Isolation::NoContainer => manifest.isolation.no_container,
        };
        if !supported {
            let mode = match isolation {
                Isolation::GreengrassContainer => "GreengrassContainer",
                Isolation::NoContainer => "NoContainer",
            };
            self.err(mode_path, format!("{name} cannot run in {mode} isolation"));
            return None;
        }
        if isolation == Isolation::GreengrassContainer {
            self.require_container(path.to_string(), &format!("the {name} connector"));
        }
        Some(isolation)
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

    // ------------------------------------------------------------ subscriptions

    fn subscriptions(
        &mut self,
        group: &GroupDefinition,
        core: Option<&CoreSpec>,
    ) -> Vec<SubscriptionSpec> {
        let Some(sdv) = &group.subscription_definition_version else {
            return Vec::new();
        };
        self.check_unique(
            "subscription Id",
            sdv.subscriptions
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("{SUBSCRIPTIONS}[{i}].Id"), s.id.as_str())),
        );
        let mut out = Vec::with_capacity(sdv.subscriptions.len());
        for (i, s) in sdv.subscriptions.iter().enumerate() {
            let path = format!("{SUBSCRIPTIONS}[{i}]");
            self.check_id(format!("{path}.Id"), &s.id);
            let subject_ok = match topic::validate_filter(&s.subject) {
                Ok(()) => true,
                Err(e) => {
                    self.err(format!("{path}.Subject"), subject_message(&s.subject, &e));
                    false
                }
            };
            let source = self.endpoint(&format!("{path}.Source"), &s.id, &s.source, core);
            let target = self.endpoint(&format!("{path}.Target"), &s.id, &s.target, core);
            match (&source, &target) {
                (Some(Endpoint::Cloud), Some(Endpoint::Cloud))
                | (Some(Endpoint::Shadow), Some(Endpoint::Shadow)) => {
                    self.err(
                        format!("{path}.Target"),
                        format!("a subscription from {0} to {0} would loop messages back to where they came from", s.source),
                    );
                }
                _ => {}
            }
            if subject_ok {
                self.subject_fits(&path, &s.subject, source.as_ref(), target.as_ref());
            }
            out.push(SubscriptionSpec {
                id: s.id.clone(),
                source: s.source.clone(),
                subject: s.subject.clone(),
                target: s.target.clone(),
            });
        }
        out
    }

    /// Resolves a `Source`/`Target`; reports and returns `None` when it names
    /// nothing in the group.
    fn endpoint(
        &mut self,
        path: &str,
        id: &str,
        value: &str,
        core: Option<&CoreSpec>,
    ) -> Option<Endpoint> {
        if value == CLOUD {
            return Some(Endpoint::Cloud);
        }
        if value == SHADOW {
            return Some(Endpoint::Shadow);
        }
        if self.function_arns.contains(value) {
            return Some(Endpoint::Other);
        }
        if let Some(manifest) = self.connector_manifests.get(value) {
            // A connector this build lacks is already an error; do not add
            // topic errors on top of it.
            return Some(manifest.map_or(Endpoint::Other, Endpoint::Connector));
        }
        if self.devices.contains_key(value) {
            return Some(Endpoint::Other);
        }
        let message = self.unknown_endpoint(id, value, core);
        self.err(path, message);
        None
    }

    /// The most useful explanation for an endpoint that is not in the group.
    fn unknown_endpoint(&self, id: &str, value: &str, core: Option<&CoreSpec>) -> String {
        if let Some((name, version)) = parse_connector_arn(value) {
            return match self.connectors_by_name.get(name) {
                Some(deployed) if deployed.version != version => format!(
                    "stale subscription `{}`: it refers to {name} version {version} ({}), but the group deploys \
                     {name} version {} ({}); after a connector upgrade every subscription that uses it must be replaced",
                    show(id),
                    show(value),
                    deployed.version,
                    deployed.arn
                ),
                Some(deployed) => format!(
                    "`{}` is not exactly the ConnectorArn of {name} in this group (`{}`); subscriptions name a \
                     connector by its exact versioned ARN",
                    show(value),
                    deployed.arn
                ),
                None => format!("connector {name} is not in this group's ConnectorDefinitionVersion"),
            };
        }
        if let Ok(FunctionArn::User(parts)) = parse_function_arn(value) {
            if let Some(arns) = self.functions_by_base.get(&parts.base()) {
                return format!(
                    "function {} is in this group as `{}`; a subscription must use the same qualifier",
                    parts.name,
                    arns.join("`, `")
                );
            }
            return format!(
                "function `{}` is not in this group's FunctionDefinitionVersion",
                show(value)
            );
        }
        if parse_thing_arn(value).is_ok() {
            if core.is_some_and(|c| c.thing_arn == value) {
                return "the core itself cannot be a subscription source or target".to_string();
            }
            return format!(
                "device `{}` is not in this group's DeviceDefinitionVersion",
                show(value)
            );
        }
        format!(
            "`{}` is not \"{CLOUD}\", \"{SHADOW}\", or the ARN of a function, connector or device in this group",
            show(value)
        )
    }

    /// A connector only speaks its predefined topics, and the shadow service
    /// only shadow topics: a subject that can never match them is a mistake.
    fn subject_fits(
        &mut self,
        path: &str,
        subject: &str,
        source: Option<&Endpoint>,
        target: Option<&Endpoint>,
    ) {
        if let Some(Endpoint::Connector(m)) = target {
            self.subject_within(path, subject, m.name, m.inputs, "accepts");
        }
        if let Some(Endpoint::Connector(m)) = source {
            self.subject_within(path, subject, m.name, m.outputs, "publishes");
        }
        let shadow = source.is_some_and(|e| matches!(e, Endpoint::Shadow))
            || target.is_some_and(|e| matches!(e, Endpoint::Shadow));
        if shadow && !topic::filters_intersect(subject, SHADOW_TOPICS) {
            self.err(
                format!("{path}.Subject"),
                format!(
                    "`{}` can never match a shadow topic ({SHADOW_TOPICS}), the only topics {SHADOW} speaks",
                    show(subject)
                ),
            );
        }
    }

    fn subject_within(
        &mut self,
        path: &str,
        subject: &str,
        name: &str,
        topics: &[&str],
        verb: &str,
    ) {
        if topics.is_empty() {
            self.err(
                format!("{path}.Subject"),
                format!(
                    "{name} {verb} no MQTT messages; a connector only speaks its predefined topics"
                ),
            );
        } else if !topics.iter().any(|t| topic::filters_intersect(subject, t)) {
            self.err(
                format!("{path}.Subject"),
                format!(
                    "`{}` can never match a topic that {name} {verb} ({}); a connector only speaks its predefined topics",
                    show(subject),
                    topics.join(", ")
                ),
            );
        }
    }

    // ------------------------------------------------------------ loggers

    fn loggers(&mut self, group: &GroupDefinition) -> LoggerPlan {
        let mut plan = LoggerPlan::default();
        let Some(ldv) = &group.logger_definition_version else {
            return plan;
        };
        self.check_unique(
            "logger Id",
            ldv.loggers
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("{LOGGERS}[{i}].Id"), l.id.as_str())),
        );
        // (component is system, type is file system) → (level, space, path)
        let mut chosen: BTreeMap<(bool, bool), (LogLevel, Option<u64>, String)> = BTreeMap::new();
        for (i, logger) in ldv.loggers.iter().enumerate() {
            let path = format!("{LOGGERS}[{i}]");
            self.check_id(format!("{path}.Id"), &logger.id);
            let system = match logger.component.as_str() {
                "GreengrassSystem" => Some(true),
                "Lambda" => Some(false),
                other => {
                    self.err(
                        format!("{path}.Component"),
                        format!(
                            "`{}` is not a logger component: use GreengrassSystem or Lambda",
                            show(other)
                        ),
                    );
                    None
                }
            };
            let level = LogLevel::parse(&logger.level);
            if level.is_none() {
                self.err(
                    format!("{path}.Level"),
                    format!(
                        "`{}` is not a level: use DEBUG, INFO, WARN, ERROR or FATAL",
                        show(&logger.level)
                    ),
                );
            }
            let file_system = match logger.logger_type.as_str() {
                "FileSystem" => Some(true),
                "AWSCloudWatch" => Some(false),
                other => {
                    self.err(
                        format!("{path}.Type"),
                        format!(
                            "`{}` is not a logger type: use FileSystem or AWSCloudWatch",
                            show(other)
                        ),
                    );
                    None
                }
            };
            let space = self.positive(&format!("{path}.Space"), logger.space, "KB");
            let space_ok = logger.space.is_none() || space.is_some();
            let (Some(system), Some(level), Some(file_system), true) =
                (system, level, file_system, space_ok)
            else {
                continue;
            };
            if let Some((_, _, first)) = chosen.get(&(system, file_system)) {
                let message = format!(
                    "a second {} logger for {} (first at {first}); each component has at most one logger of each Type",
                    logger.logger_type, logger.component
                );
                self.err(format!("{path}.Type"), message);
                continue;
            }
            chosen.insert((system, file_system), (level, space, path));
        }
        for (system, settings) in [(true, &mut plan.system), (false, &mut plan.user)] {
            if let Some((level, space, _)) = chosen.get(&(system, true)) {
                *settings = LogSettings {
                    level: *level,
                    space_kb: space.unwrap_or(DEFAULT_LOG_SPACE_KB),
                    file_system: true,
                };
            } else if let Some((level, _, _)) = chosen.get(&(system, false)) {
                *settings = LogSettings {
                    level: *level,
                    space_kb: DEFAULT_LOG_SPACE_KB,
                    file_system: false,
                };
            }
        }
        plan
    }
}

// ---------------------------------------------------------------- helpers

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

fn group_owner(setting: Option<&model::GroupOwnerSetting>) -> GroupOwner {
    GroupOwner {
        auto_add: setting
            .and_then(|s| s.auto_add_group_owner)
            .unwrap_or(false),
        group: setting.and_then(|s| s.group_owner.clone()),
    }
}

fn subject_message(subject: &str, e: &TopicError) -> String {
    match e {
        TopicError::Empty => "Subject cannot be empty".to_string(),
        _ => format!("`{}` is not a valid topic filter: {e}", show(subject)),
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

fn check_identifier(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("cannot be empty".to_string());
    }
    let len = value.chars().count();
    if len > MAX_ID_LEN {
        return Err(format!(
            "is {len} characters long; at most {MAX_ID_LEN} are allowed"
        ));
    }
    if let Some(c) = value.chars().find(|c| !is_id_char(*c)) {
        return Err(format!(
            "`{}` contains {c:?}; only letters, digits, ':', '_' and '-' are allowed",
            show(value)
        ));
    }
    Ok(())
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':' || c == '_' || c == '-'
}

/// `value` as an absolute path without `..`, normalised.
fn normalise_absolute(value: &str) -> Result<PathBuf, String> {
    if value.contains('\0') {
        return Err("a path cannot contain NUL".to_string());
    }
    if !value.starts_with('/') {
        return Err(format!("`{}` is not an absolute path", show(value)));
    }
    let mut out = PathBuf::from("/");
    for component in Path::new(value).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                return Err(format!(
                    "`{}` contains `..`; write the path without it",
                    show(value)
                ));
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

fn is_partition(p: &str) -> bool {
    matches!(p, "aws" | "aws-cn" | "aws-us-gov")
}

fn check_region(region: &str) -> Result<(), String> {
    if !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Ok(())
    } else {
        Err(format!("`{}` is not a region", show(region)))
    }
}

fn check_account(account: &str) -> Result<(), String> {
    if account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("`{}` is not a 12-digit account id", show(account)))
    }
}

#[derive(Debug)]
struct ThingArn {
    region: String,
    account: String,
    name: String,
}

fn parse_thing_arn(arn: &str) -> Result<ThingArn, String> {
    let shape = |why: String| {
        format!(
            "`{}` is not a thing ARN ({why}; expected arn:aws:iot:<region>:<account-id>:thing/<ThingName>)",
            show(arn)
        )
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, "iot", region, account, resource] = parts.as_slice() else {
        return Err(shape("not an IoT ARN".to_string()));
    };
    if !is_partition(partition) {
        return Err(shape(format!("unknown partition `{partition}`")));
    }
    check_region(region).map_err(shape)?;
    check_account(account).map_err(shape)?;
    let name = resource
        .strip_prefix("thing/")
        .ok_or_else(|| shape("the resource is not `thing/…`".to_string()))?;
    check_identifier(name).map_err(|why| shape(format!("the thing name {why}")))?;
    Ok(ThingArn {
        region: region.to_string(),
        account: account.to_string(),
        name: name.to_string(),
    })
}

fn check_certificate_arn(arn: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`{}` is not a certificate ARN (expected arn:aws:iot:<region>:<account-id>:cert/<certificate-id>)",
            show(arn)
        )
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, "iot", region, account, resource] = parts.as_slice() else {
        return Err(bad());
    };
    let id = resource.strip_prefix("cert/").unwrap_or_default();
    if is_partition(partition)
        && check_region(region).is_ok()
        && check_account(account).is_ok()
        && !id.is_empty()
        && id.chars().all(|c| c.is_ascii_alphanumeric())
    {
        Ok(())
    } else {
        Err(bad())
    }
}

#[derive(Debug)]
struct UserFunctionArn {
    partition: String,
    region: String,
    account: String,
    name: String,
}

impl UserFunctionArn {
    /// The ARN without its qualifier.
    fn base(&self) -> String {
        format!(
            "arn:{}:lambda:{}:{}:function:{}",
            self.partition, self.region, self.account, self.name
        )
    }
}

#[derive(Debug)]
enum FunctionArn {
    User(UserFunctionArn),
    /// `arn:aws:lambda:::function:GG…:<qualifier>`.
    System {
        name: String,
    },
}

fn parse_function_arn(arn: &str) -> Result<FunctionArn, String> {
    const SHAPE: &str =
        "expected arn:aws:lambda:<region>:<account-id>:function:<name>:<version-or-alias>";
    let bad = |why: &str| {
        format!(
            "`{}` is not a qualified function ARN ({why}; {SHAPE})",
            show(arn)
        )
    };
    let parts: Vec<&str> = arn.splitn(8, ':').collect();
    let (partition, region, account, name, qualifier) = match parts.as_slice() {
        ["arn", partition, "lambda", region, account, "function", name, qualifier] => {
            (*partition, *region, *account, *name, *qualifier)
        }
        ["arn", _, "lambda", _, _, "function", _] => {
            return Err(bad(
                "it has no version or alias; Greengrass runs a published version or an alias",
            ))
        }
        _ => return Err(bad("not a Lambda function ARN")),
    };
    if !is_partition(partition) {
        return Err(bad("unknown partition"));
    }
    if qualifier == "$LATEST" {
        return Err(format!(
            "`{}`: $LATEST is not supported; qualify the ARN with a published version or an alias",
            show(arn)
        ));
    }
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(bad(
            "the function name must be 1-64 letters, digits, '-' or '_'",
        ));
    }
    let qualifier_ok = !qualifier.is_empty()
        && qualifier.len() <= 128
        && qualifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !qualifier_ok {
        return Err(bad(
            "the version or alias must be 1-128 letters, digits, '-' or '_'",
        ));
    }
    if region.is_empty() && account.is_empty() && name.starts_with("GG") {
        return Ok(FunctionArn::System {
            name: name.to_string(),
        });
    }
    check_region(region).map_err(|why| bad(&why))?;
    check_account(account).map_err(|why| bad(&why))?;
    Ok(FunctionArn::User(UserFunctionArn {
        partition: partition.to_string(),
        region: region.to_string(),
        account: account.to_string(),
        name: name.to_string(),
    }))
}

/// The secret's name inside a Secrets Manager ARN.
fn secret_name(arn: &str) -> Result<&str, String> {
    let bad = || {
        format!(
            "`{}` is not a Secrets Manager secret ARN (expected arn:aws:secretsmanager:<region>:<account-id>:secret:<name>)",
            show(arn)
        )
    };
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    let ["arn", partition, "secretsmanager", region, account, "secret", name] = parts.as_slice()
    else {
        return Err(bad());
    };
    let name_ok = !name.is_empty()
        && name.len() <= 512
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    if is_partition(partition)
        && check_region(region).is_ok()
        && check_account(account).is_ok()
        && name_ok
    {
        Ok(name)
    } else {
        Err(bad())
    }
}

fn check_sagemaker_arn(arn: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`{}` is not a SageMaker training job ARN (expected arn:aws:sagemaker:<region>:<account-id>:training-job/<name>)",
            show(arn)
        )
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, "sagemaker", region, account, resource] = parts.as_slice() else {
        return Err(bad());
    };
    let job = resource.strip_prefix("training-job/").unwrap_or_default();
    let job_ok = !job.is_empty()
        && job.len() <= 63
        && job.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if is_partition(partition)
        && check_region(region).is_ok()
        && check_account(account).is_ok()
        && job_ok
    {
        Ok(())
    } else {
        Err(bad())
    }
}

fn check_s3_uri(uri: &str) -> Result<(), String> {
    let ok = uri
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(bucket, key)| {
            (3..=63).contains(&bucket.len())
                && bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
                && !key.is_empty()
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an S3 object URI (expected s3://<bucket>/<key>)",
            show(uri)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::list;
    use crate::registry::manifest_problems;
    use evergreen_ipc::manifest::{IsolationSupport, ParameterSpec};

    // Test manifests: the parameter tables of connectors.md for a few
    // connectors, plus one artificial manifest. The real manifests live in
    // the connector crates; these keep validation tests independent of them.

    const FLAG: &str = "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$";
    const OPT_FLAG: &str = "^(|[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$";
    const ISOLATION: &str = "^NoContainer$|^GreengrassContainer$";
    const CONTAINER_ONLY: IsolationSupport = IsolationSupport {
        container: true,
        no_container: false,
    };
    const BOTH: IsolationSupport = IsolationSupport {
        container: true,
        no_container: true,
    };

    static SERIAL_STREAM: ConnectorManifest = ConnectorManifest {
        name: "SerialStream",
        versions: &[1, 2, 3],
        description: "reads and writes a serial port",
        parameters: &[
            ParameterSpec::new("BaudRate", "baud rate").required().pattern(
                "^110$|^300$|^600$|^1200$|^2400$|^4800$|^9600$|^14400$|^19200$|^28800$|^38400$|^56000$|^57600$|^115200$|^230400$",
            ),
            ParameterSpec::new("Timeout", "read timeout, seconds").required().pattern("^([1-9]|[1-5][0-9])$"),
            ParameterSpec::new("SerialPort", "absolute path of the port").required().pattern("[/a-zA-Z0-9_-]+"),
            ParameterSpec::new("SerialPort-ResourceId", "device resource of the port")
                .required()
                .pattern("[a-zA-Z0-9_-]+")
                .resource(ResourceKind::LocalDevice),
            ParameterSpec::new("PollingRead", "poll the port").required().pattern(FLAG),
            ParameterSpec::new("PollingReadLength", "bytes per poll").pattern(
                "^(|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-2][0-9]{3}|63[0-8][0-9]{2}|639[0-8][0-9]|6399[0-4])$",
            ),
            ParameterSpec::new("PollingReadInterval", "seconds between polls")
                .pattern("^(|[1-9]|[1-9][0-9]|[1-9][0-9][0-9])$"),
            ParameterSpec::new("PollingReadType", "ascii or hex").pattern("^(|[Aa][Ss][Cc][Ii][Ii]|[Hh][Ee][Xx])$"),
            ParameterSpec::new("RtsCts", "RTS/CTS").pattern(OPT_FLAG).default_value("false"),
            ParameterSpec::new("XonXoff", "XON/XOFF").pattern(OPT_FLAG).default_value("false"),
            ParameterSpec::new("Parity", "parity").pattern("^(|[NEOSMneosm])$").default_value("N"),
        ],
        inputs: &["serial/+/read/#", "serial/+/write/#"],
        outputs: &["serial/+/status/#", "serial/+/read_response/#"],
        isolation: CONTAINER_ONLY,
        pinned: true,
        aws: false,
    };

    static MODBUS_RTU: ConnectorManifest = ConnectorManifest {
        name: "ModbusRTUProtocolAdapter",
        versions: &[1, 2, 3],
        description: "Modbus RTU master",
        parameters: &[
            ParameterSpec::new("ModbusSerialPort-ResourceId", "")
                .required()
                .pattern(".+")
                .resource(ResourceKind::LocalDevice),
            ParameterSpec::new("ModbusSerialPort", "")
                .required()
                .pattern(".+"),
        ],
        inputs: &["modbus/adapter/request"],
        outputs: &["modbus/adapter/response"],
        isolation: CONTAINER_ONLY,
        pinned: true,
        aws: false,
    };

    static TWILIO: ConnectorManifest = ConnectorManifest {
        name: "TwilioNotifications",
        versions: &[1, 2, 3, 4, 5],
        description: "text and voice messages",
        parameters: &[
            ParameterSpec::new("TWILIO_ACCOUNT_SID", "account SID").required().pattern(".+"),
            ParameterSpec::new("TwilioAuthTokenSecretArn", "auth token secret").required().pattern(
                "arn:aws:secretsmanager:[a-z0-9\\-]+:[0-9]{12}:secret:([a-zA-Z0-9\\\\]+/)*[a-zA-Z0-9/_+=,.@\\-]+-[a-zA-Z0-9]+",
            ),
            ParameterSpec::new("TwilioAuthTokenSecretArn-ResourceId", "secret resource")
                .required()
                .pattern(".+")
                .resource(ResourceKind::Secret),
            ParameterSpec::new("DefaultFromPhoneNumber", "sender").pattern("^$|\\+[0-9]+"),
            ParameterSpec::new("IsolationMode", "")
                .pattern(ISOLATION)
                .default_value("GreengrassContainer")
                .since(5),
        ],
        inputs: &["twilio/txt", "twilio/call"],
        outputs: &["twilio/message/status"],
        isolation: BOTH,
        pinned: false,
        aws: false,
    };

    static CLOUDWATCH: ConnectorManifest = ConnectorManifest {
        name: "CloudWatchMetrics",
        versions: &[1, 2, 3, 4, 5],
        description: "publishes CloudWatch metrics",
        parameters: &[
            ParameterSpec::new("PublishInterval", "")
                .required()
                .pattern("[0-9]|[1-9]\\d|[1-9]\\d\\d|900"),
            ParameterSpec::new("PublishRegion", "").pattern("^$|([a-z]{2}-[a-z]+-\\d{1})"),
            ParameterSpec::new("MemorySize", "")
                .required()
                .pattern("^[0-9]+$"),
            ParameterSpec::new("MaxMetricsToRetain", "")
                .required()
                .pattern("^([2-9]\\d{3}|[1-9]\\d{4,})$"),
            ParameterSpec::new("IsolationMode", "")
                .pattern(ISOLATION)
                .default_value("GreengrassContainer")
                .since(4),
        ],
        inputs: &["cloudwatch/metric/put"],
        outputs: &["cloudwatch/metric/put/status"],
        isolation: BOTH,
        pinned: false,
        aws: false,
    };

    static DEVICE_DEFENDER: ConnectorManifest = ConnectorManifest {
        name: "DeviceDefender",
        versions: &[1, 2, 3],
        description: "system metrics to Device Defender",
        parameters: &[
            ParameterSpec::new("SampleIntervalSeconds", "")
                .required()
                .pattern("^[0-9]*(?:3[0-9][0-9]|[4-9][0-9]{2}|[1-9][0-9]{3,})$"),
            ParameterSpec::new("ProcDestinationPath-ResourceId", "")
                .required()
                .pattern("[a-zA-Z0-9_-]+")
                .resource(ResourceKind::LocalVolume),
            ParameterSpec::new("ProcDestinationPath", "")
                .required()
                .pattern("\\/[a-zA-Z0-9_-]+"),
        ],
        inputs: &[],
        outputs: &["$aws/things/+/defender/metrics/json"],
        isolation: CONTAINER_ONLY,
        pinned: true,
        aws: false,
    };

    static MODBUS_TCP: ConnectorManifest = ConnectorManifest {
        name: "ModbusTCPConnector",
        versions: &[1, 2, 3],
        description: "Modbus TCP to stream manager",
        // Greengrass prints `^\s*$|\/.`, a prefix test; anchored, the
        // path part must say `.+`.
        parameters: &[ParameterSpec::new("LocalStoragePath", "")
            .pattern("^\\s*$|\\/.+")
            .default_value("/var/sitewise")],
        inputs: &[],
        outputs: &[],
        isolation: IsolationSupport {
            container: false,
            no_container: true,
        },
        pinned: true,
        aws: false,
    };

    /// Artificial: a container-only connector that still has the
    /// `IsolationMode` parameter, to test the support check.
    static CONTAINER_ONLY_WITH_MODE: ConnectorManifest = ConnectorManifest {
        name: "ContainerOnlyWithMode",
        versions: &[1],
        description: "test",
        parameters: &[ParameterSpec::new("IsolationMode", "").pattern(ISOLATION)],
        inputs: &["x/in"],
        outputs: &["x/out"],
        isolation: CONTAINER_ONLY,
        pinned: false,
        aws: false,
    };

    const REGION: &str = "eu-west-1";
    const ACCOUNT: &str = "123456789012";
    const CORE: &str = "arn:aws:iot:eu-west-1:123456789012:thing/evergreen-core";

    fn registry() -> ConnectorRegistry {
        ConnectorRegistry::new(vec![
            &SERIAL_STREAM,
            &MODBUS_RTU,
            &TWILIO,
            &CLOUDWATCH,
            &DEVICE_DEFENDER,
            &MODBUS_TCP,
            &CONTAINER_ONLY_WITH_MODE,
        ])
    }

    fn options() -> ValidationOptions {
        ValidationOptions {
            base_dir: PathBuf::from("/srv/groups/demo"),
            default_core_thing_arn: CORE.to_string(),
            ..ValidationOptions::default()
        }
    }

    fn fn_arn(name: &str, qualifier: &str) -> String {
        format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}:{qualifier}")
    }

    fn connector_arn(name: &str, version: u32) -> String {
        format!("arn:aws:greengrass:{REGION}::/connectors/{name}/versions/{version}")
    }

    fn check(json: &str, opts: &ValidationOptions) -> Result<GroupPlan, Vec<ValidationError>> {
        let group = model::parse(json)?;
        validate(&group, &registry(), opts)
    }

    fn plan(json: &str) -> GroupPlan {
        match check(json, &options()) {
            Ok(plan) => plan,
            Err(errors) => panic!("expected a valid group, got:{}", list(&errors)),
        }
    }

    fn errors(json: &str) -> Vec<ValidationError> {
        match check(json, &options()) {
            Ok(plan) => panic!("expected errors, got a plan: {plan:#?}"),
            Err(errors) => errors,
        }
    }

    /// Exactly the expected errors: each `(path, fragment)` matches one
    /// error with that path whose message contains the fragment, and there
    /// are no others (a fixture tests one class of error, without cascades).
    fn expect(json: &str, expected: &[(&str, &str)]) {
        let errors = errors(json);
        for (path, fragment) in expected {
            assert!(
                errors
                    .iter()
                    .any(|e| e.path == *path && e.message.contains(fragment)),
                "no error at {path} containing {fragment:?}; got:{}",
                list(&errors)
            );
        }
        assert_eq!(
            errors.len(),
            expected.len(),
            "unexpected extra errors:{}",
            list(&errors)
        );
    }

    fn component<'p>(plan: &'p GroupPlan, arn: &str) -> &'p ComponentSpec {
        match plan.components.get(arn) {
            Some(c) => c,
            None => panic!(
                "no component {arn} in {:?}",
                plan.components.keys().collect::<Vec<_>>()
            ),
        }
    }

    macro_rules! fixture {
        ($kind:literal, $name:literal) => {
            include_str!(concat!(
                "../tests/fixtures/groups/",
                $kind,
                "/",
                $name,
                ".json"
            ))
        };
    }

    macro_rules! bad_fixture {
        ($test:ident, $name:literal, [$(($path:expr, $fragment:expr)),+ $(,)?]) => {
            #[test]
            fn $test() {
                expect(fixture!("bad", $name), &[$(($path, $fragment)),+]);
            }
        };
    }

    const F: &str = "$.FunctionDefinitionVersion.Functions";
    const C: &str = "$.ConnectorDefinitionVersion.Connectors";
    const S: &str = "$.SubscriptionDefinitionVersion.Subscriptions";
    const R: &str = "$.ResourceDefinitionVersion.Resources";
    const L: &str = "$.LoggerDefinitionVersion.Loggers";

    #[test]
    fn test_manifests_are_sound() {
        for m in registry().iter() {
            assert_eq!(manifest_problems(m), Vec::<String>::new());
        }
    }

    // ------------------------------------------------------------ good fixtures

    #[test]
    fn good_empty() {
        let plan = plan(fixture!("good", "empty"));
        assert_eq!(plan.core.thing_arn, CORE);
        assert_eq!(plan.core.thing_name, "evergreen-core");
        assert_eq!(
            (plan.core.region.as_str(), plan.core.account.as_str()),
            (REGION, ACCOUNT)
        );
        assert!(plan.components.is_empty() && plan.subscriptions.is_empty());
        assert_eq!(plan.loggers, LoggerPlan::default());
    }

    #[test]
    fn good_function_to_function() {
        let plan = plan(fixture!("good", "function-to-function"));
        assert!(plan.core.sync_shadow);
        let producer = component(&plan, &fn_arn("producer", "1"));
        assert_eq!(producer.kind, ComponentKind::Function);
        assert_eq!(producer.name, "producer");
        assert_eq!(
            producer.launch,
            Launch::Executable {
                path: PathBuf::from("/srv/groups/demo/bin/producer"),
                args: vec!["--interval".into(), "5".into(), "--verbose".into()],
            }
        );
        assert!(producer.pinned);
        assert_eq!((producer.memory_kb, producer.timeout_s), (Some(32768), 10));
        assert_eq!(producer.isolation, Isolation::GreengrassContainer);
        assert_eq!(producer.run_as, RunAs::default());
        assert_eq!(
            producer.log_file,
            PathBuf::from("user/eu-west-1/123456789012/producer.log")
        );

        let consumer = component(&plan, &fn_arn("consumer", "live"));
        assert_eq!(
            consumer.launch,
            Launch::Executable {
                path: PathBuf::from("/usr/local/bin/consumer"),
                args: vec![],
            }
        );
        assert!(!consumer.pinned);
        assert_eq!(
            (consumer.memory_kb, consumer.timeout_s),
            (Some(DEFAULT_MEMORY_KB), DEFAULT_TIMEOUT_S)
        );
        assert_eq!(
            consumer.parameters.get("THRESHOLD").map(String::as_str),
            Some("30")
        );
        assert_eq!(plan.subscriptions.len(), 3);
        assert_eq!(plan.subscriptions[0].subject, "sensors/+/temperature");
    }

    #[test]
    fn good_serial_stream() {
        let plan = plan(fixture!("good", "serial-stream"));
        let arn = connector_arn("SerialStream", 3);
        let serial = component(&plan, &arn);
        assert_eq!(serial.kind, ComponentKind::Connector);
        assert_eq!(serial.name, "SerialStream");
        assert_eq!(
            serial.launch,
            Launch::Connector {
                name: "SerialStream".into(),
                version: 3
            }
        );
        assert_eq!(serial.isolation, Isolation::GreengrassContainer);
        assert!(serial.pinned);
        assert_eq!(
            (serial.memory_kb, serial.timeout_s),
            (None, DEFAULT_TIMEOUT_S)
        );
        assert_eq!(
            serial.log_file,
            PathBuf::from("user/eu-west-1/aws/SerialStream.log")
        );
        let params: Vec<(&str, &str)> = serial
            .parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            params,
            [
                ("BaudRate", "115200"),
                ("Parity", "N"),
                ("PollingRead", "true"),
                ("PollingReadInterval", "2"),
                ("PollingReadLength", "64"),
                ("PollingReadType", "ascii"),
                ("RtsCts", "false"),
                ("SerialPort", "/dev/ttyUSB0"),
                ("SerialPort-ResourceId", "serial-port"),
                ("Timeout", "5"),
                ("XonXoff", "false"),
            ]
        );
        assert_eq!(
            serial.resources,
            [ResourceAccess {
                resource_id: "serial-port".into(),
                read_write: true
            }]
        );
        assert!(serial.secrets.is_empty());
        assert_eq!(
            plan.resources.get("serial-port").map(|r| &r.data),
            Some(&ResourceData::LocalDevice {
                source_path: PathBuf::from("/dev/ttyUSB0"),
                group_owner: GroupOwner {
                    auto_add: true,
                    group: None
                },
            })
        );
    }

    #[test]
    fn good_no_container_default() {
        let plan = plan(fixture!("good", "no-container-default"));
        // No CoreDefinitionVersion: the configured core is used.
        assert_eq!(plan.core.thing_arn, CORE);
        let alarm = component(&plan, &fn_arn("alarm", "1"));
        assert_eq!(alarm.isolation, Isolation::NoContainer);
        assert_eq!(alarm.memory_kb, None, "no memory limit without a container");
        assert_eq!(
            alarm.run_as,
            RunAs {
                uid: Some(1001),
                gid: Some(1002)
            }
        );
        assert_eq!(alarm.secrets, ["TwilioAuthToken"]);
        for name in ["TwilioNotifications", "CloudWatchMetrics"] {
            let c = component(&plan, &connector_arn(name, 5));
            assert_eq!(c.isolation, Isolation::NoContainer, "{name}");
            assert_eq!(
                c.parameters.get("IsolationMode").map(String::as_str),
                Some("NoContainer")
            );
            assert_eq!(
                c.run_as, alarm.run_as,
                "connectors run as the group's default identity"
            );
        }
        let twilio = component(&plan, &connector_arn("TwilioNotifications", 5));
        assert_eq!(twilio.secrets, ["TwilioAuthToken"]);
        assert_eq!(
            twilio.resources,
            [ResourceAccess {
                resource_id: "twilio-token".into(),
                read_write: false
            }]
        );
    }

    #[test]
    fn good_everything() {
        let plan = plan(fixture!("good", "everything"));
        // The system function configures a service Evergreen runs itself.
        assert!(!plan.components.keys().any(|k| k.contains("GGCloudSpooler")));
        assert_eq!(plan.components.len(), 5);
        assert_eq!(plan.devices.len(), 2);
        assert_eq!(plan.resources.len(), 7);
        let controller = component(&plan, &fn_arn("controller", "prod"));
        assert_eq!(
            controller.run_as,
            RunAs {
                uid: Some(1005),
                gid: None
            }
        );
        let grants: Vec<(&str, bool)> = controller
            .resources
            .iter()
            .map(|r| (r.resource_id.as_str(), r.read_write))
            .collect();
        assert_eq!(
            grants,
            [
                ("data-volume", true),
                ("model", false),
                ("webcam", false),
                ("shared-memory", true)
            ]
        );
        let twilio = component(&plan, &connector_arn("TwilioNotifications", 4));
        assert_eq!(twilio.isolation, Isolation::GreengrassContainer);
        assert!(
            !twilio.parameters.contains_key("IsolationMode"),
            "v4 has no IsolationMode"
        );
        let defender = component(&plan, &connector_arn("DeviceDefender", 3));
        assert_eq!(
            defender.resources,
            [ResourceAccess {
                resource_id: "host-proc".into(),
                read_write: false
            }]
        );
        let modbus = component(&plan, &connector_arn("ModbusTCPConnector", 3));
        assert_eq!(
            modbus.isolation,
            Isolation::NoContainer,
            "the only mode it supports"
        );
        assert_eq!(
            modbus
                .parameters
                .get("LocalStoragePath")
                .map(String::as_str),
            Some("/var/sitewise")
        );
        assert_eq!(
            plan.loggers,
            LoggerPlan {
                system: LogSettings {
                    level: LogLevel::Warn,
                    space_kb: 512,
                    file_system: true
                },
                user: LogSettings {
                    level: LogLevel::Info,
                    space_kb: 2048,
                    file_system: true
                },
            }
        );
        assert_eq!(
            plan.resources.get("model").map(|r| &r.data),
            Some(&ResourceData::MachineLearningModel {
                origin: "s3://my-models/squeezenet.tar.gz".into(),
                destination_path: PathBuf::from("/ml/squeezenet"),
                group_owner: Some("ml".into()),
                read_write: false,
            })
        );
    }

    #[test]
    fn examples_are_valid() {
        let minimal = plan(include_str!("../../../examples/function-to-function.json"));
        assert_eq!(minimal.components.len(), 2);
        let full = plan(include_str!("../../../examples/full-group.json"));
        assert!(full.components.len() >= 4);
    }

    #[test]
    fn validation_is_deterministic() {
        let json = fixture!("good", "everything");
        assert_eq!(plan(json), plan(json));
    }

    #[test]
    fn good_python_functions() {
        let plan = plan(fixture!("good", "python-functions"));
        assert_eq!(
            component(&plan, &fn_arn("hello", "1")).launch,
            Launch::Python {
                handler: "greengrassHelloWorld.function_handler".into(),
                code: PathBuf::from("/srv/groups/demo/functions/hello"),
                runtime: "python3.7".into(),
                binary: false,
            }
        );
        assert_eq!(
            component(&plan, &fn_arn("bin", "2")).launch,
            Launch::Python {
                handler: "pkg.handlers.on_bytes".into(),
                code: PathBuf::from("/opt/functions/bin.zip"),
                runtime: "python3".into(),
                binary: true,
            }
        );
    }

    // ------------------------------------------------------------ bad fixtures

    bad_fixture!(
        bad_python_functions,
        "python-functions",
        [
            (
                &format!("{F}[0].FunctionConfiguration.Executable"),
                "is not a Python handler: use module.function"
            ),
            (
                &format!("{F}[1].FunctionConfiguration.Runtime"),
                "`nodejs12.x` is not a supported runtime"
            ),
            (
                &format!("{F}[2].FunctionConfiguration.CodeUri"),
                "CodeUri is required for a Python function"
            ),
            (
                &format!("{F}[3].FunctionConfiguration.ExecArgs"),
                "ExecArgs does not apply to a Python function"
            ),
        ]
    );

    bad_fixture!(
        bad_not_an_object,
        "not-an-object",
        [("$", "one JSON object")]
    );
    bad_fixture!(
        bad_unknown_key,
        "unknown-key",
        [(
            &format!("{F}[0].FunctionConfiguration.MemorySizeKB"),
            "unknown field `MemorySizeKB`"
        )]
    );
    bad_fixture!(
        bad_missing_field,
        "missing-field",
        [(&format!("{S}[0]"), "missing field `Target`")]
    );
    bad_fixture!(
        bad_ids,
        "bad-ids",
        [
            ("$.DeviceDefinitionVersion.Devices[0].Id", "cannot be empty"),
            (&format!("{F}[0].Id"), "contains ' '"),
            (&format!("{S}[0].Id"), "is 129 characters long; at most 128"),
        ]
    );
    bad_fixture!(
        bad_duplicate_ids,
        "duplicate-ids",
        [
            (&format!("{F}[1].Id"), "duplicate function Id `app`"),
            (&format!("{S}[1].Id"), "duplicate subscription Id `s`"),
        ]
    );
    bad_fixture!(
        bad_two_cores,
        "two-cores",
        [(
            "$.CoreDefinitionVersion.Cores[1]",
            "exactly one core (it has 2)"
        )]
    );
    bad_fixture!(
        bad_no_core,
        "no-core",
        [(
            "$.CoreDefinitionVersion.Cores",
            "exactly one core (it has none)"
        )]
    );
    bad_fixture!(
        bad_core_arns,
        "core-arns",
        [
            (
                "$.CoreDefinitionVersion.Cores[0].ThingArn",
                "is not a thing ARN"
            ),
            (
                "$.CoreDefinitionVersion.Cores[0].CertificateArn",
                "is not a certificate ARN"
            ),
        ]
    );
    bad_fixture!(
        bad_device_thing_arns,
        "device-thing-arns",
        [
            (
                "$.DeviceDefinitionVersion.Devices[0].ThingArn",
                "not a 12-digit account id"
            ),
            (
                "$.DeviceDefinitionVersion.Devices[2].ThingArn",
                "duplicate device ThingArn"
            ),
            (
                "$.DeviceDefinitionVersion.Devices[3].ThingArn",
                "this is the group's core"
            ),
        ]
    );
    bad_fixture!(
        bad_function_arn_latest,
        "function-arn-latest",
        [(&format!("{F}[0].FunctionArn"), "$LATEST is not supported")]
    );
    bad_fixture!(
        bad_function_arn_unqualified,
        "function-arn-unqualified",
        [(&format!("{F}[0].FunctionArn"), "it has no version or alias")]
    );
    bad_fixture!(
        bad_function_arn_duplicate,
        "function-arn-duplicate",
        [(&format!("{F}[1].FunctionArn"), "duplicate FunctionArn")]
    );
    bad_fixture!(
        bad_function_required_members,
        "function-required-members",
        [
            (&format!("{F}[0].FunctionArn"), "FunctionArn is required"),
            (
                &format!("{F}[1].FunctionConfiguration"),
                "FunctionConfiguration is required"
            ),
            (
                &format!("{F}[2].FunctionConfiguration.Executable"),
                "Executable is required"
            ),
        ]
    );
    bad_fixture!(
        bad_run_as_root,
        "run-as-root",
        [
            (
                &format!("{F}[0].FunctionConfiguration.Environment.Execution.RunAs"),
                "lambda(s) [arn:aws:lambda:eu-west-1:123456789012:function:root-fn:1] are configured to run as root \
                 while Greengrass is not configured to run lambdas with root permissions"
            ),
            (
                "$.FunctionDefinitionVersion.DefaultConfig.Execution.RunAs",
                "lambda(s) [arn:aws:lambda:eu-west-1:123456789012:function:inherits:1] are configured to run as root"
            ),
        ]
    );
    bad_fixture!(
        bad_memory_timeout,
        "memory-timeout",
        [
            (
                &format!("{F}[0].FunctionConfiguration.MemorySize"),
                "positive number of KB (found 0)"
            ),
            (
                &format!("{F}[0].FunctionConfiguration.Timeout"),
                "positive number of seconds (found -1)"
            ),
        ]
    );
    bad_fixture!(
        bad_function_enum_values,
        "function-enum-values",
        [
            (
                &format!("{F}[0].FunctionConfiguration.EncodingType"),
                "`xml` is not an encoding type"
            ),
            (
                &format!("{F}[0].FunctionConfiguration.Environment.Execution.IsolationMode"),
                "`Docker` is not an isolation mode"
            ),
            (
                &format!("{F}[0].FunctionConfiguration.Environment.Execution.RunAs.Uid"),
                "-5 is not a user or group id"
            ),
        ]
    );
    bad_fixture!(
        bad_environment_variables,
        "environment-variables",
        [(
            &format!("{F}[0].FunctionConfiguration.Environment.Variables[\"A=B\"]"),
            "cannot be empty or contain '='"
        )]
    );
    bad_fixture!(
        bad_resource_policy_unknown,
        "resource-policy-unknown",
        [(
            &format!(
                "{F}[0].FunctionConfiguration.Environment.ResourceAccessPolicies[0].ResourceId"
            ),
            "`nope` is not the Id of a resource"
        )]
    );
    bad_fixture!(
        bad_permission_invalid,
        "permission-invalid",
        [(
            &format!(
                "{F}[0].FunctionConfiguration.Environment.ResourceAccessPolicies[0].Permission"
            ),
            "`wr` is not a permission"
        )]
    );
    bad_fixture!(
        bad_secret_rw,
        "secret-rw",
        [(
            &format!(
                "{F}[0].FunctionConfiguration.Environment.ResourceAccessPolicies[0].Permission"
            ),
            "a secret can only be granted read-only"
        )]
    );
    bad_fixture!(
        bad_proc_volume_rw,
        "proc-volume-rw",
        [(
            &format!(
                "{F}[0].FunctionConfiguration.Environment.ResourceAccessPolicies[0].Permission"
            ),
            "a volume from /proc can only be granted read-only"
        )]
    );
    bad_fixture!(
        bad_no_container_local_resource,
        "no-container-local-resource",
        [(
            &format!("{F}[0].FunctionConfiguration.Environment.ResourceAccessPolicies"),
            "runs with NoContainer isolation but is granted local resources [serial]"
        )]
    );
    bad_fixture!(
        bad_connector_arn,
        "connector-arn",
        [(&format!("{C}[0].ConnectorArn"), "is not a connector ARN")]
    );
    bad_fixture!(
        bad_connector_not_in_build,
        "connector-not-in-build",
        [(
            &format!("{C}[0].ConnectorArn"),
            "IoTAnalytics is a Greengrass connector that this build of Evergreen does not contain (built-in \
             connectors: CloudWatchMetrics, ContainerOnlyWithMode, DeviceDefender, ModbusRTUProtocolAdapter, \
             ModbusTCPConnector, SerialStream, TwilioNotifications)"
        )]
    );
    bad_fixture!(
        bad_connector_unknown,
        "connector-unknown",
        [(
            &format!("{C}[0].ConnectorArn"),
            "unknown connector `FancyConnector` (built-in connectors: "
        )]
    );
    bad_fixture!(
        bad_connector_version,
        "connector-version",
        [(
            &format!("{C}[0].ConnectorArn"),
            "SerialStream version 4 is not available: this build implements version(s) 1, 2, 3"
        )]
    );
    bad_fixture!(
        bad_connector_twice,
        "connector-twice",
        [(
            &format!("{C}[1].ConnectorArn"),
            "SerialStream is already in this group at $.ConnectorDefinitionVersion.Connectors[0]"
        )]
    );
    bad_fixture!(
        bad_parameter_missing,
        "parameter-missing",
        [(
            &format!("{C}[0].Parameters"),
            "missing required parameter BaudRate of SerialStream: baud rate"
        )]
    );
    bad_fixture!(
        bad_parameter_pattern,
        "parameter-pattern",
        [
            (
                &format!("{C}[0].Parameters.BaudRate"),
                "`9601` is not a valid BaudRate: it must match"
            ),
            (
                &format!("{C}[0].Parameters.Timeout"),
                "`60` is not a valid Timeout"
            ),
        ]
    );
    bad_fixture!(
        bad_parameter_unknown,
        "parameter-unknown",
        [(
            &format!("{C}[0].Parameters.Speed"),
            "unknown parameter `Speed` for SerialStream version 3 (known: BaudRate"
        )]
    );
    bad_fixture!(
        bad_parameter_later_version,
        "parameter-later-version",
        [(
            &format!("{C}[0].Parameters.IsolationMode"),
            "parameter IsolationMode exists from TwilioNotifications version 5 on; this group uses version 4"
        )]
    );
    bad_fixture!(
        bad_parameter_resource_missing,
        "parameter-resource-missing",
        [(
            &format!("{C}[0].Parameters.SerialPort-ResourceId"),
            "`ghost` is not the Id of a resource in this group's ResourceDefinitionVersion (SerialStream needs a \
             LocalDeviceResourceData)"
        )]
    );
    bad_fixture!(
        bad_parameter_resource_kind,
        "parameter-resource-kind",
        [(
            &format!("{C}[0].Parameters.SerialPort-ResourceId"),
            "is a LocalVolumeResourceData, but SerialPort-ResourceId needs a LocalDeviceResourceData"
        )]
    );
    bad_fixture!(
        bad_parameter_resource_mismatch,
        "parameter-resource-mismatch",
        [(
            &format!("{C}[0].Parameters.SerialPort"),
            "`/dev/ttyUSB1` does not match resource `serial-port` named by SerialPort-ResourceId (which has `/dev/ttyUSB0`)"
        )]
    );
    bad_fixture!(
        bad_secret_prefix,
        "secret-prefix",
        [(
            &format!("{R}[0].ResourceDataContainer.SecretsManagerSecretResourceData.ARN"),
            "the secret's name `TwilioAuthToken-AbCdEf` does not start with `greengrass-`"
        )]
    );
    bad_fixture!(
        bad_serial_port_shared,
        "serial-port-shared",
        [
            (
                &format!(
                    "{F}[0].FunctionConfiguration.Environment.ResourceAccessPolicies[0].ResourceId"
                ),
                "/dev/ttyUSB0 (resource `serial-port`) is already used by connector SerialStream"
            ),
            (
                &format!("{C}[1].Parameters.ModbusSerialPort-ResourceId"),
                "/dev/ttyUSB0 (resource `modbus-port`) is already used by connector SerialStream"
            ),
        ]
    );
    bad_fixture!(
        bad_isolation_unsupported,
        "isolation-unsupported",
        [(
            &format!("{C}[0].Parameters.IsolationMode"),
            "ContainerOnlyWithMode cannot run in NoContainer isolation"
        )]
    );
    bad_fixture!(
        bad_group_no_container,
        "group-no-container",
        [
            (
                &format!("{C}[0].ConnectorArn"),
                "but SerialStream runs only in a Greengrass container"
            ),
            (
                &format!("{C}[1].Parameters.IsolationMode"),
                "every connector must run without a container"
            ),
        ]
    );
    bad_fixture!(
        bad_subscription_unknown_endpoint,
        "subscription-unknown-endpoint",
        [
            (&format!("{S}[0].Source"), "`Cloud` is not \"cloud\", \"GGShadowService\", or the ARN of"),
            (&format!("{S}[1].Target"), "function:ghost:1` is not in this group's FunctionDefinitionVersion"),
            (
                &format!("{S}[2].Source"),
                "function app is in this group as `arn:aws:lambda:eu-west-1:123456789012:function:app:prod`"
            ),
            (&format!("{S}[3].Source"), "thing/stranger` is not in this group's DeviceDefinitionVersion"),
            (&format!("{S}[4].Target"), "connector SNS is not in this group's ConnectorDefinitionVersion"),
        ]
    );
    bad_fixture!(
        bad_subscription_stale_connector,
        "subscription-stale-connector",
        [(
            &format!("{S}[0].Target"),
            "stale subscription `to-serial`: it refers to SerialStream version 2 \
             (arn:aws:greengrass:eu-west-1::/connectors/SerialStream/versions/2), but the group deploys SerialStream \
             version 3 (arn:aws:greengrass:eu-west-1::/connectors/SerialStream/versions/3)"
        )]
    );
    bad_fixture!(
        bad_subject_hash_not_last,
        "subject-hash-not-last",
        [(
            &format!("{S}[0].Subject"),
            "'#' must be the last level of a filter"
        )]
    );
    bad_fixture!(
        bad_subject_wildcard_inside_level,
        "subject-wildcard-inside-level",
        [
            (
                &format!("{S}[0].Subject"),
                "a wildcard must occupy a whole level (found 'temp+')"
            ),
            (
                &format!("{S}[1].Subject"),
                "a wildcard must occupy a whole level (found 'a#')"
            ),
        ]
    );
    bad_fixture!(
        bad_subject_connector_input,
        "subject-connector-input",
        [
            (
                &format!("{S}[0].Subject"),
                "`serial/evergreen-core/status/dev/ttyUSB0` can never match a topic that SerialStream accepts \
                 (serial/+/read/#, serial/+/write/#); a connector only speaks its predefined topics"
            ),
            (&format!("{S}[1].Subject"), "DeviceDefender accepts no MQTT messages"),
        ]
    );
    bad_fixture!(
        bad_subject_connector_output,
        "subject-connector-output",
        [(
            &format!("{S}[0].Subject"),
            "can never match a topic that SerialStream publishes"
        )]
    );
    bad_fixture!(
        bad_subject_shadow_and_loop,
        "subject-shadow-and-loop",
        [
            (&format!("{S}[0].Subject"), "can never match a shadow topic"),
            (
                &format!("{S}[1].Target"),
                "a subscription from cloud to cloud would loop"
            ),
        ]
    );
    bad_fixture!(
        bad_resource_container,
        "resource-container",
        [
            (
                &format!("{R}[0].ResourceDataContainer"),
                "must hold exactly one of"
            ),
            (
                &format!("{R}[1].ResourceDataContainer"),
                "(found LocalDeviceResourceData, LocalVolumeResourceData)"
            ),
        ]
    );
    bad_fixture!(
        bad_device_paths,
        "device-paths",
        [
            (
                &format!("{R}[0].ResourceDataContainer.LocalDeviceResourceData.SourcePath"),
                "/dev/shm is shared memory"
            ),
            (
                &format!("{R}[1].ResourceDataContainer.LocalDeviceResourceData.SourcePath"),
                "`/tmp/tty` is not under /dev"
            ),
            (
                &format!("{R}[2].ResourceDataContainer.LocalDeviceResourceData.SourcePath"),
                "contains `..`"
            ),
            (
                &format!("{R}[3].ResourceDataContainer.LocalDeviceResourceData.SourcePath"),
                "is not an absolute path"
            ),
        ]
    );
    bad_fixture!(
        bad_volume_paths,
        "volume-paths",
        [
            (
                &format!("{R}[0].ResourceDataContainer.LocalVolumeResourceData.SourcePath"),
                "cannot come from /sys"
            ),
            (
                &format!("{R}[1].ResourceDataContainer.LocalVolumeResourceData.SourcePath"),
                "cannot come from /var"
            ),
            (
                &format!("{R}[2].ResourceDataContainer.LocalVolumeResourceData.SourcePath"),
                "cannot come from /dev"
            ),
            (
                &format!("{R}[3].ResourceDataContainer.LocalVolumeResourceData.DestinationPath"),
                "cannot be mounted on /proc"
            ),
        ]
    );
    bad_fixture!(
        bad_ml_resources,
        "ml-resources",
        [
            (&format!("{R}[0].ResourceDataContainer.S3MachineLearningModelResourceData.S3Uri"), "is not an S3 object URI"),
            (
                &format!("{R}[1].ResourceDataContainer.SageMakerMachineLearningModelResourceData.SageMakerJobArn"),
                "is not a SageMaker training job ARN"
            ),
            (
                &format!("{R}[2].ResourceDataContainer.S3MachineLearningModelResourceData.OwnerSetting.GroupPermission"),
                "`rwx` is not a permission"
            ),
        ]
    );
    bad_fixture!(
        bad_secret_arns,
        "secret-arns",
        [
            (
                &format!("{R}[0].ResourceDataContainer.SecretsManagerSecretResourceData.ARN"),
                "is not a Secrets Manager secret ARN"
            ),
            (
                &format!("{R}[2].ResourceDataContainer.SecretsManagerSecretResourceData.ARN"),
                "is already referenced at $.ResourceDefinitionVersion.Resources[1]"
            ),
        ]
    );
    bad_fixture!(
        bad_too_many_resources,
        "too-many-resources",
        [(R, "a group may have at most 50 resources (it has 51)")]
    );
    bad_fixture!(
        bad_resource_name_duplicate,
        "resource-name-duplicate",
        [(&format!("{R}[1].Name"), "duplicate resource Name `Data`")]
    );
    bad_fixture!(
        bad_logger_values,
        "logger-values",
        [
            (
                &format!("{L}[0].Component"),
                "`System` is not a logger component"
            ),
            (&format!("{L}[1].Level"), "`VERBOSE` is not a level"),
            (&format!("{L}[2].Type"), "`Syslog` is not a logger type"),
            (&format!("{L}[3].Space"), "positive number of KB (found 0)"),
        ]
    );
    bad_fixture!(
        bad_logger_duplicate_type,
        "logger-duplicate-type",
        [(
            &format!("{L}[1].Type"),
            "a second FileSystem logger for Lambda"
        )]
    );

    // ------------------------------------------------------------ focused cases

    /// Every problem in every section is reported in one pass.
    #[test]
    fn several_errors_are_reported_together() {
        expect(
            fixture!("bad", "several-errors"),
            &[
                (
                    "$.CoreDefinitionVersion.Cores[0].ThingArn",
                    "is not a thing ARN",
                ),
                (&format!("{F}[0].FunctionArn"), "$LATEST is not supported"),
                (
                    &format!("{F}[1].FunctionConfiguration.MemorySize"),
                    "positive number of KB",
                ),
                (
                    &format!("{C}[0].Parameters.BaudRate"),
                    "`fast` is not a valid BaudRate",
                ),
                (&format!("{S}[0].Subject"), "'#' must be the last level"),
                (&format!("{S}[0].Target"), "stale subscription `s`"),
                (&format!("{L}[0].Level"), "`LOUD` is not a level"),
            ],
        );
    }

    #[test]
    fn root_is_fine_when_allowed() {
        let opts = ValidationOptions {
            allow_root: true,
            ..options()
        };
        let plan = match check(fixture!("bad", "run-as-root"), &opts) {
            Ok(plan) => plan,
            Err(errors) => panic!("{}", list(&errors)),
        };
        let root = component(&plan, &fn_arn("root-fn", "1"));
        assert_eq!(
            root.run_as,
            RunAs {
                uid: Some(0),
                gid: Some(0)
            }
        );
        // The function's own RunAs replaces DefaultConfig's as a whole.
        let own = component(&plan, &fn_arn("own-identity", "1"));
        assert_eq!(
            own.run_as,
            RunAs {
                uid: Some(1001),
                gid: Some(1001)
            }
        );
        let inherits = component(&plan, &fn_arn("inherits", "1"));
        assert_eq!(
            inherits.run_as,
            RunAs {
                uid: None,
                gid: Some(0)
            }
        );
    }

    #[test]
    fn secret_prefix_can_be_disabled() {
        let opts = ValidationOptions {
            secret_name_prefix: None,
            ..options()
        };
        assert!(check(fixture!("bad", "secret-prefix"), &opts).is_ok());
    }

    #[test]
    fn missing_core_configuration_is_reported() {
        let opts = ValidationOptions {
            default_core_thing_arn: String::new(),
            ..options()
        };
        let errors = check("{}", &opts).err().unwrap_or_default();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "$");
        assert!(
            errors[0].message.contains("no CoreDefinitionVersion"),
            "{}",
            errors[0]
        );
    }

    /// The Greengrass wildcard rules, as subjects: `#` only last, wildcards
    /// only as whole levels.
    #[test]
    fn wildcard_positions() {
        let subscription = |subject: &str| {
            format!(
                r#"{{"SubscriptionDefinitionVersion": {{"Subscriptions": [
                    {{"Id": "s", "Source": "cloud", "Subject": {}, "Target": "GGShadowService"}}]}}}}"#,
                serde_json::Value::String(subject.to_string())
            )
        };
        for ok in [
            "$aws/things/+/shadow/#",
            "#",
            "+/+/+/+/#",
            "$aws/things/t/shadow/update",
            "$aws/things/+/shadow/+",
        ] {
            assert!(check(&subscription(ok), &options()).is_ok(), "{ok}");
        }
        for (bad, fragment) in [
            ("$aws/#/shadow", "'#' must be the last level"),
            ("#/x", "'#' must be the last level"),
            ("$aws/things/a+/shadow/update", "whole level (found 'a+')"),
            ("$aws/things/+/shadow/up#", "whole level (found 'up#')"),
            ("$aws/things/++/shadow/update", "whole level (found '++')"),
            ("", "Subject cannot be empty"),
        ] {
            let errors = check(&subscription(bad), &options())
                .err()
                .unwrap_or_default();
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(errors[0].path, format!("{S}[0].Subject"));
            assert!(errors[0].message.contains(fragment), "{bad}: {}", errors[0]);
        }
    }

    /// A subscription to or from a connector must be able to carry one of
    /// the connector's own topics.
    #[test]
    fn subjects_against_connector_topics() {
        let group = |source: &str, subject: &str, target: &str| {
            format!(
                r#"{{"ResourceDefinitionVersion": {{"Resources": [{{"Id": "port", "Name": "port",
                      "ResourceDataContainer": {{"LocalDeviceResourceData": {{"SourcePath": "/dev/ttyS0"}}}}}}]}},
                    "ConnectorDefinitionVersion": {{"Connectors": [{{"Id": "serial", "ConnectorArn": "{serial}",
                      "Parameters": {{"BaudRate": "9600", "Timeout": "1", "SerialPort": "/dev/ttyS0",
                                      "SerialPort-ResourceId": "port", "PollingRead": "false"}}}}]}},
                    "SubscriptionDefinitionVersion": {{"Subscriptions": [
                      {{"Id": "s", "Source": "{source}", "Subject": "{subject}", "Target": "{target}"}}]}}}}"#,
                serial = connector_arn("SerialStream", 3),
            )
        };
        let serial = connector_arn("SerialStream", 3);
        for (source, subject, target, fits) in [
            ("cloud", "serial/core/read/dev/ttyS0", serial.as_str(), true),
            ("cloud", "serial/#", serial.as_str(), true),
            ("cloud", "#", serial.as_str(), true),
            ("cloud", "serial/+/write/#", serial.as_str(), true),
            ("cloud", "serial/core/status/x", serial.as_str(), false),
            ("cloud", "serial/core/read", serial.as_str(), false), // `#` needs a level
            ("cloud", "modbus/adapter/request", serial.as_str(), false),
            (
                serial.as_str(),
                "serial/core/status/dev/ttyS0",
                "cloud",
                true,
            ),
            (serial.as_str(), "serial/+/read_response/#", "cloud", true),
            (serial.as_str(), "serial/core/read/x", "cloud", false),
        ] {
            let result = check(&group(source, subject, target), &options());
            if fits {
                assert!(result.is_ok(), "{subject}: {:?}", result.err());
            } else {
                let errors = result.err().unwrap_or_default();
                assert_eq!(errors.len(), 1, "{subject}: {errors:?}");
                assert!(
                    errors[0]
                        .message
                        .contains("a connector only speaks its predefined topics"),
                    "{}",
                    errors[0]
                );
            }
        }
    }

    #[test]
    fn stale_connector_version_names_both_versions() {
        let json = fixture!("bad", "subscription-stale-connector");
        let errors = errors(json);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let message = &errors[0].message;
        assert!(
            message.contains("SerialStream version 2")
                && message.contains("SerialStream version 3"),
            "{message}"
        );
        assert!(message.contains("`to-serial`"), "{message}");
    }

    #[test]
    fn connector_arn_must_match_exactly() {
        // Same name and version, different region spelling.
        let json = fixture!("good", "serial-stream").replace(
            "\"Target\": \"arn:aws:greengrass:eu-west-1::/connectors/SerialStream/versions/3\"",
            "\"Target\": \"arn:aws:greengrass:::/connectors/SerialStream/versions/3\"",
        );
        let errors = errors(&json);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .message
                .contains("is not exactly the ConnectorArn of SerialStream"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn the_loader_reads_resolves_and_reports() {
        let dir = std::env::temp_dir().join(format!("evergreen-group-test-{}", std::process::id()));
        let created = std::fs::create_dir_all(&dir);
        assert!(created.is_ok(), "{created:?}");
        let good = dir.join("group.json");
        let bad = dir.join("bad.json");
        let written = std::fs::write(&good, fixture!("good", "function-to-function"))
            .and_then(|()| std::fs::write(&bad, fixture!("bad", "two-cores")));
        assert!(written.is_ok(), "{written:?}");

        let loader = crate::loader::Loader::new(registry(), options());
        match loader.read_file(&good) {
            Ok(file) => {
                let plan = file.plan;
                let producer = component(&plan, &fn_arn("producer", "1"));
                let Launch::Executable { path, .. } = &producer.launch else {
                    panic!("not an executable: {producer:?}");
                };
                assert_eq!(
                    path,
                    &dir.join("bin/producer"),
                    "relative to the group file"
                );
            }
            Err(e) => panic!("{e}"),
        }
        match loader.read_file(&bad) {
            Err(e @ crate::loader::LoadError::Invalid { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("bad.json:\n  $.CoreDefinitionVersion.Cores[1]: "),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        match loader.read_file(&dir.join("missing.json")) {
            Err(e @ crate::loader::LoadError::Io { .. }) => {
                assert!(e.to_string().contains("missing.json"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// No input may panic: every string and number in the good fixtures is
    /// replaced, one at a time, by awkward values.
    #[test]
    fn awkward_values_never_panic() {
        use serde_json::Value;
        fn leaves(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
            match v {
                Value::Object(map) => {
                    for (k, v) in map {
                        path.push(k.clone());
                        leaves(v, path, out);
                        path.pop();
                    }
                }
                Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        path.push(i.to_string());
                        leaves(v, path, out);
                        path.pop();
                    }
                }
                _ => out.push(path.clone()),
            }
        }
        fn at<'v>(v: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
            path.iter().try_fold(v, |v, key| match v {
                Value::Object(map) => map.get_mut(key),
                Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
                _ => None,
            })
        }
        let awkward = [
            Value::from(""),
            Value::from("#"),
            Value::from("arn:aws:greengrass:::/connectors/SerialStream/versions/99999999999"),
            Value::from("\u{0}/.."),
            Value::from("é".repeat(300)),
            Value::from(-1),
            Value::from(u64::MAX),
        ];
        for json in [
            fixture!("good", "function-to-function"),
            fixture!("good", "serial-stream"),
            fixture!("good", "no-container-default"),
            fixture!("good", "everything"),
        ] {
            let original: Value = match serde_json::from_str(json) {
                Ok(v) => v,
                Err(e) => panic!("{e}"),
            };
            let mut paths = Vec::new();
            leaves(&original, &mut Vec::new(), &mut paths);
            for path in &paths {
                for value in &awkward {
                    let mut doc = original.clone();
                    if let Some(slot) = at(&mut doc, path) {
                        *slot = value.clone();
                    }
                    let _ = check(&doc.to_string(), &options());
                }
            }
        }
    }

    #[test]
    fn container_components_are_refused_where_containers_cannot_run() {
        let opts = ValidationOptions {
            container_unavailable: Some("the runtime lacks CAP_SYS_ADMIN".into()),
            ..options()
        };
        // The serial-stream fixture has a container-only connector; the
        // function-to-function one runs NoContainer and is unaffected.
        let errors = match check(fixture!("good", "serial-stream"), &opts) {
            Ok(_) => panic!("a container-only connector must be refused"),
            Err(errors) => errors,
        };
        assert!(
            errors.iter().any(|e| e.message.contains("GreengrassContainer isolation, which this host cannot provide: the runtime lacks CAP_SYS_ADMIN")),
            "{}",
            list(&errors)
        );
        assert!(check(fixture!("good", "no-container-default"), &opts).is_ok());
        // A function that takes the Greengrass default (a container) is refused too.
        let json = format!(
            r#"{{"FunctionDefinitionVersion": {{"Functions": [{{"Id": "f", "FunctionArn": "{}",
                "FunctionConfiguration": {{"Executable": "/bin/true", "Pinned": true}}}}]}}}}"#,
            fn_arn("f", "1")
        );
        let errors = match check(&json, &opts) {
            Ok(_) => panic!("a default-container function must be refused"),
            Err(errors) => errors,
        };
        assert!(
            errors
                .iter()
                .any(|e| e.path.ends_with("FunctionConfiguration.Environment")
                    && e.message
                        .contains("the function runs in GreengrassContainer")),
            "{}",
            list(&errors)
        );
    }
}
