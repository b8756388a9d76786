//! `eg-mqtt-bench`'s library: device → device messages through Evergreen's local MQTT server,
//! mosquitto and rumqttd in the same run, on loopback, with the same clients for all three.
//! It reports and asserts nothing.
//!
//! - [`tally`]: the stamped payload and what a subscriber counts (loss, duplicates, order,
//!   latency);
//! - [`procfs`]: CPU time and resident size from `/proc`.

pub mod procfs;
pub mod tally;
