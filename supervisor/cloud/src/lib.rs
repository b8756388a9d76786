//! The cloud side: the bridge (an MQTT client to AWS IoT Core or any upstream broker) and the
//! durable spool that holds what the group sends to `cloud` until the broker has acknowledged it.

pub mod bridge;
mod spool;

pub use spool::{Spool, SpoolDrops};
