//! What Evergreen's connectors share, so that each connector keeps only its
//! own protocol: reading parameters with notes ([`params`]), one retry
//! spacing ([`Backoff`]), one keyed batching queue ([`batch`]), one
//! uploader loop ([`uploader`]), status JSON helpers ([`status`]) and, with
//! the `testing` feature, fixtures for their unit tests ([`testing`]).
//!
//! It depends on `evergreen-ipc` and small crates only: it must never pull
//! in actix, ntex, the supervisor or an HTTP client, because connectors that
//! never call HTTP (Heartbeat, Modbus) link it too.

pub mod backoff;
pub mod batch;
pub mod manifest;
pub mod params;
pub mod secret;
pub mod status;
#[cfg(feature = "testing")]
pub mod testing;
pub mod uploader;

pub use backoff::Backoff;
pub use params::{Notes, Params};
