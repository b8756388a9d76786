//! Fixtures for connectors' unit tests: a `ComponentConfig` builder over
//! `ComponentConfig::connector`, and the checks of a manifest's parameters
//! (the pattern check group validation applies, a parameter's resource
//! kind, valid topic filters) as methods on the manifest ([`ManifestChecks`]), and [`json`] for
//! reading what a connector published. Test-only (the `testing` feature); nothing here talks to
//! a supervisor.

use std::collections::BTreeMap;

use evergreen_ipc::manifest::{ConnectorManifest, ResourceKind};
use evergreen_ipc::{ComponentConfig, ResourceGrant};

/// A published payload as JSON; panics (failing the test) when it is not JSON.
pub fn json(payload: &[u8]) -> serde_json::Value {
    match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => panic!("not JSON ({e}): {}", String::from_utf8_lossy(payload)),
    }
}

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

    /// `grant(id, path, read_write)` when `path` is given; a test of the
    /// missing grant passes `None`.
    pub fn maybe_grant(self, id: &str, path: Option<&str>, read_write: bool) -> Self {
        match path {
            Some(path) => self.grant(id, path, read_write),
            None => self,
        }
    }

    pub fn build(self) -> ComponentConfig {
        self.config
    }
}

/// What connectors' tests ask of their own manifest, as methods on it
/// (`MANIFEST.admits("PublishInterval", "900")`), so no test module wraps
/// the manifest in helpers of its own.
pub trait ManifestChecks {
    /// Whether `value` matches the pattern of parameter `name`, anchored
    /// the way group validation anchors every pattern. Panics when the
    /// parameter has no pattern or it does not compile: a test's premise is
    /// wrong.
    fn admits(&self, name: &str, value: &str) -> bool;

    /// The kind of resource parameter `name` names, if any.
    fn resource_kind(&self, name: &str) -> Option<ResourceKind>;

    /// Asserts that every input and output is a valid topic filter, as
    /// group validation requires of subscriptions to the connector.
    fn assert_filters_valid(&self);
}

impl ManifestChecks for ConnectorManifest {
    fn admits(&self, name: &str, value: &str) -> bool {
        let pattern = self
            .parameter(name)
            .and_then(|p| p.pattern)
            .unwrap_or_else(|| panic!("{name} has no pattern"));
        regex::Regex::new(&format!("^(?:{pattern})$"))
            .unwrap_or_else(|e| panic!("{name}'s pattern does not compile: {e}"))
            .is_match(value)
    }

    fn resource_kind(&self, name: &str) -> Option<ResourceKind> {
        self.parameter(name).and_then(|p| p.resource)
    }

    fn assert_filters_valid(&self) {
        for filter in self.inputs.iter().chain(self.outputs) {
            if let Err(e) = evergreen_ipc::topic::validate_filter(filter) {
                panic!("{} declares the invalid filter {filter:?}: {e}", self.name);
            }
        }
    }
}
