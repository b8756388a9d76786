//! Fixtures for connectors' unit tests: a `ComponentConfig` builder over
//! `ComponentConfig::connector`, and the pattern check group validation
//! applies to a manifest's parameters. Test-only (the `testing` feature);
//! nothing here talks to a supervisor.

use std::collections::BTreeMap;

use evergreen_ipc::manifest::{ConnectorManifest, ResourceKind};
use evergreen_ipc::{ComponentConfig, ResourceGrant};

/// Builds the configuration a connector is started with.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: ComponentConfig,
}

/// A configuration for `manifest` at `version` in us-east-1, with
/// `parameters` and neutral values for the rest.
pub fn config(
    manifest: &ConnectorManifest,
    version: u32,
    parameters: &[(&str, &str)],
) -> ConfigBuilder {
    ConfigBuilder {
        config: ComponentConfig::connector(manifest.arn("us-east-1", version), parameters),
    }
}

impl ConfigBuilder {
    /// Endpoint overrides by service key.
    pub fn endpoints(mut self, endpoints: &[(&str, &str)]) -> Self {
        self.config.endpoints = endpoints
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>();
        self
    }

    /// The core's thing name.
    pub fn core(mut self, name: &str) -> Self {
        self.config.core_thing_name = name.into();
        self
    }

    /// The component's id in its group.
    pub fn id(mut self, id: &str) -> Self {
        self.config.id = id.into();
        self
    }

    /// A granted resource: id `id`, seen by the connector at `path`.
    pub fn grant(mut self, id: &str, path: &str, read_write: bool) -> Self {
        self.config.resources.insert(
            id.into(),
            ResourceGrant {
                path: path.into(),
                read_write,
            },
        );
        self
    }

    pub fn build(self) -> ComponentConfig {
        self.config
    }
}

/// Whether `value` matches the pattern of parameter `name`, anchored the
/// way group validation anchors every pattern. Panics when the parameter
/// has no pattern or it does not compile: a test's premise is wrong.
pub fn matches(manifest: &ConnectorManifest, name: &str, value: &str) -> bool {
    let pattern = manifest
        .parameter(name)
        .and_then(|p| p.pattern)
        .unwrap_or_else(|| panic!("{name} has no pattern"));
    regex::Regex::new(&format!("^(?:{pattern})$"))
        .unwrap_or_else(|e| panic!("{name}'s pattern does not compile: {e}"))
        .is_match(value)
}

/// Asserts that every input and output of `manifest` is a valid topic
/// filter, as group validation requires of subscriptions to it.
pub fn assert_filters_valid(manifest: &ConnectorManifest) {
    for filter in manifest.inputs.iter().chain(manifest.outputs) {
        if let Err(e) = evergreen_ipc::topic::validate_filter(filter) {
            panic!(
                "{} declares the invalid filter {filter:?}: {e}",
                manifest.name
            );
        }
    }
}

/// The kind of resource parameter `name` of `manifest` names, if any.
pub fn resource_kind(manifest: &ConnectorManifest, name: &str) -> Option<ResourceKind> {
    manifest.parameter(name).and_then(|p| p.resource)
}
