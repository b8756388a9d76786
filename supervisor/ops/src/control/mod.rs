//! The control socket: how `evergreen status` (and later the deployment
//! commands) talk to a running runtime.
//!
//! It owns the Unix-domain socket file (`evergreen.controlSocket`), the
//! authentication of every connection by its peer credentials, the wire
//! protocol (one JSON request per line, one JSON response per line), the
//! status document, and the client the CLI uses.
//!
//! It must never change the runtime except through messages to the
//! `Supervisor` actor, never block the actix thread it runs on (every wait
//! is a task with a deadline), and never trust a peer: a connection is served
//! only after its credentials pass `peer_allowed`, and a line that is too
//! long, not JSON or not a known operation is answered with an error, never a
//! panic.
//!
//! # Protocol
//!
//! Requests are objects tagged by `op` ([`Request`]): `{"op":"status"}`,
//! `{"op":"ping"}`. A success is `{"ok":true,"op":<op>,...}` ([`Reply`]), a
//! failure `{"ok":false,"error":"<why>"}`. A bad line (invalid JSON, unknown
//! op) gets an error and the connection stays usable; a line longer than
//! `MAX_LINE` bytes gets an error and the connection is closed, since the
//! rest of it cannot be told from the next request. Blank lines are ignored.
//! A connection that sends no complete line for `IDLE_TIMEOUT` is closed;
//! at most `MAX_CONNECTIONS` are served at once.
//!
//! # Who may connect
//!
//! The socket is created `0660` in a directory created `0750`, so the file
//! system already limits it to the runtime's user and group. Each connection
//! is checked again by `SO_PEERCRED` (the file's mode is set just after
//! `bind`, and an operator may loosen it): root, the runtime's own user, or a
//! process whose effective group is the runtime's group.
//!
//! # Layout
//!
//! `protocol` is the wire format, `status` the status document and its
//! table, `peer` the credentials rule, `server` the socket and its
//! connections, `client` the CLI's side. Only `server` depends on actix.

mod client;
mod peer;
mod protocol;
mod server;
mod status;

use std::time::Duration;

pub use client::{Client, ClientError};
pub use protocol::{Reply, Request};
pub use server::{ControlError, ControlServer, ControlSocket, ControlState};
pub use status::{
    CloudDrops, CloudLink, CloudReport, CloudState, ComponentReport, Counts, MqttConnections,
    MqttCounters, MqttDrops, MqttPublishes, MqttReport, RuntimeInfo, RuntimeStatus,
};

/// Longest request line, in bytes without its newline. Requests are small
/// (a deployment request names a file, it does not carry one); the bound is
/// what keeps a peer from making the runtime buffer without limit.
pub(crate) const MAX_LINE: usize = 64 << 10;
/// A connection that sends no complete request for this long is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once; more are answered with an error and closed.
/// An operator's tools need a handful; the bound keeps a runaway script from
/// holding the runtime's file descriptors.
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// Mode of the socket file: the runtime's user and group may connect.
pub(crate) const SOCKET_MODE: u32 = 0o660;
/// Mode of the socket's directory when the runtime creates it.
pub(crate) const DIR_MODE: u32 = 0o750;
/// How long the supervisor has to answer a status request.
pub(crate) const SUPERVISOR_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an existing socket has to accept a probe connection before it is
/// taken as owned by another runtime (a busy one may be slow, not gone).
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop
/// does not spin while the condition lasts.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// What the status says about the cloud when no cloud bridge is configured.
pub(crate) const CLOUD_NOT_CONFIGURED: &str = "not configured";
/// The group source when no group file was given.
pub(crate) const EMBEDDED_GROUP: &str = "embedded default group";
/// How long the CLI waits for the runtime's answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest response line the client reads: a status of many components is
/// far larger than a request, but still bounded.
pub(crate) const MAX_RESPONSE: u64 = 16 << 20;
