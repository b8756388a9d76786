//! `eg-mqtt-bench`'s library: device → device messages through Evergreen's local MQTT server,
//! mosquitto and rumqttd in the same run, on loopback, with the same clients for all three.
//! It reports and asserts nothing.
//!
//! - [`client`]: one MQTT 3.1.1 or 5 connection on tokio;
//! - [`tally`]: the stamped payload and what a subscriber counts (loss, duplicates, order,
//!   latency);
//! - [`run`]: one case against one broker (publishers, subscribers, the broker's CPU and RSS);
//! - [`idle`]: idle connections and the broker's memory for them;
//! - [`broker`]: starting and stopping the three brokers;
//! - [`procfs`]: CPU time and resident size from `/proc`;
//! - [`sections`] and [`table`]: which cases make a section, and its table.

pub mod broker;
pub mod client;
pub mod idle;
pub mod procfs;
pub mod run;
pub mod sections;
pub mod table;
pub mod tally;
