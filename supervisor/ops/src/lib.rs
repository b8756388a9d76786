//! Operating a running runtime: the [`store`] of immutable group versions, the [`deploy`]er that
//! applies one and rolls back a failed one, the [`control`] socket the CLI talks to, and the
//! systemd [`notify`] protocol.

pub mod control;
pub mod deploy;
pub mod notify;
pub mod store;
