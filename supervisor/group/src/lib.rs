//! Groups: the Greengrass V1 group file, its validation, and the plan the
//! runtime runs.
//!
//! The flow is one way: `model::read` reads the file into the API shapes
//! (`GroupDefinition`) after `schema` has checked every member of the untyped document, `validate::validate` checks every group rule
//! against the built-in connectors ([`ConnectorRegistry`]) and produces a
//! [`plan::GroupPlan`] with nothing left to check; [`Loader`] is the one place that
//! does both for a text or a file, and the only way in from other crates.
//! Nothing in this crate starts a process or reads anything but the group
//! file.
//!
//! The surface other crates use is deliberate and small: the [`plan`] they
//! run, the [`registry`] of connectors they build, the [`Loader`] with its
//! options and errors. The file's shapes and the rules stay private, so they
//! can change without touching the runtime.

mod loader;
mod model;
pub mod plan;
pub mod registry;
mod schema;
mod validate;

pub use loader::{GroupFile, LoadError, Loader};
pub use model::ValidationError;
pub use registry::ConnectorRegistry;
pub use validate::ValidationOptions;
