//! The cloud side: the bridge (an MQTT client to AWS IoT Core or any upstream broker) and the
//! durable spool that holds what the group sends to `cloud` until the broker has acknowledged it,
//! and a plain client connection for commands (`client`).

pub mod bridge;
pub mod client;
mod spool;

pub use spool::{Spool, SpoolDepth, SpoolDrops};
