//! Groups: the Greengrass V1 group file, its validation, and the plan the
//! runtime runs.
//!
//! The flow is one way: [`model::parse`] reads the file into the API shapes
//! ([`GroupDefinition`]), [`validate::validate`] checks every group rule
//! against the built-in connectors ([`ConnectorRegistry`]) and produces a
//! [`GroupPlan`] with nothing left to check; [`Loader`] is the one place that
//! does both for a text or a file. Nothing in this crate starts a process or
//! reads anything but the group file.

pub mod loader;
pub mod model;
pub mod plan;
pub mod registry;
pub mod validate;

pub use loader::{GroupFile, LoadError, Loader};
pub use model::{parse, GroupDefinition, ValidationError};
pub use plan::{ComponentSpec, GroupPlan, Isolation, Launch};
pub use registry::{is_greengrass_connector, ConnectorRegistry, GREENGRASS_CONNECTORS};
pub use validate::{validate, ValidationOptions, DEFAULT_SECRET_NAME_PREFIX};
