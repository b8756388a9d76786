//! Connectors: one instance of each, a version this build implements,
//! parameters against the manifest (known, in their version, matching their
//! pattern, required ones present, defaults filled in), the resources
//! parameters name, and the isolation the connector and the group allow.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use evergreen_ipc::manifest::{parse_connector_arn, ConnectorManifest, ResourceKind};
use evergreen_ipc::ComponentKind;

use super::{
    normalise_absolute, parse_isolation, runs_as_root, show, DeviceClaim, Validator,
    DEFAULT_EXECUTION, DEFAULT_TIMEOUT_S,
};
use crate::model::{self, key_segment, GroupDefinition};
use crate::plan::{ComponentSpec, Isolation, Launch, ResourceAccess};
use crate::registry::{anchored_pattern, is_greengrass_connector};

const CONNECTORS: &str = "$.ConnectorDefinitionVersion.Connectors";
/// The parameter naming secrets by ARN (a JSON array), as Greengrass's
/// IoT SiteWise and Docker connectors take them.
const SECRET_ARN_LIST: &str = "AWSSecretsArnList";

/// The one instance of a connector in the group, for the one-instance rule
/// and for subscriptions naming another version of it.
#[derive(Debug)]
pub(super) struct ConnectorEntry {
    pub(super) arn: String,
    pub(super) version: u32,
    index: usize,
}

impl Validator<'_> {
    pub(super) fn connectors(&mut self, group: &GroupDefinition, core_region: &str) {
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
        // `AWSSecretsArnList` (IoT SiteWise, Docker): secrets named by ARN
        // rather than by resource id. Each must be a secret resource of the
        // group, and is granted to the connector like a `…-ResourceId` one.
        if let Some(list) = parameters
            .get(SECRET_ARN_LIST)
            .filter(|v| !v.trim().is_empty())
        {
            match serde_json::from_str::<Vec<String>>(list) {
                Err(e) => {
                    self.err(
                        param_path(SECRET_ARN_LIST),
                        format!("must be a JSON array of secret ARNs ({e})"),
                    );
                    ok = false;
                }
                Ok(arns) => {
                    for given in arns {
                        match table
                            .iter()
                            .find(|(_, entry)| entry.secret_arn() == Some(given.as_str()))
                        {
                            Some((id, entry)) => {
                                secrets.push(entry.name.clone());
                                resources.push(ResourceAccess {
                                    resource_id: id.clone(),
                                    read_write: false,
                                });
                            }
                            None => {
                                self.err(
                                    param_path(SECRET_ARN_LIST),
                                    format!(
                                        "`{}` is not the ARN of a secret resource in this group's ResourceDefinitionVersion",
                                        show(&given)
                                    ),
                                );
                                ok = false;
                            }
                        }
                    }
                }
            }
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
}
