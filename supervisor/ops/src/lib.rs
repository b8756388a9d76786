//! Operating a running runtime: the [`store`] of immutable group versions, the [`artefacts`]
//! they carry and the [`bundle`]s they travel in, the [`deploy`]er that applies one and rolls
//! back a failed one, the [`control`] socket the CLI talks to, the systemd [`notify`] protocol,
//! the [`lock`] that keeps a second runtime off a root, the binary's [`release`] version, the
//! Prometheus [`metrics`] endpoint and the read-only [`statuspage`] for a browser.

pub mod artefacts;
pub mod bundle;
pub mod control;
pub mod deploy;
pub mod lock;
pub mod metrics;
pub mod notify;
pub mod release;
pub mod statuspage;
pub mod store;
