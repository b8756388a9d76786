//! The stream manager (Greengrass V1's `GGStreamManager`): named local
//! streams that functions and connectors append to and read from through
//! the `greengrasssdk` `StreamManagerClient`, kept in memory or in segment
//! files under the runtime's root, and exported in the background to AWS.

pub mod client;
pub mod export;
pub mod host;
pub mod model;
pub mod server;
pub mod store;
pub mod wire;
