//! Operating a running runtime: the [`store`] of immutable group versions and the
//! [`artefacts`] they carry, the [`deploy`]er that
//! applies one and rolls back a failed one, the [`control`] socket the CLI talks to, and the
//! systemd [`notify`] protocol.

pub mod artefacts;
pub mod bundle;
pub mod control;
pub mod deploy;
pub mod notify;
pub mod store;
