//! Fleet deployments over the upstream broker: the signed deployment document
//! ([`document`]), what a gateway has accepted ([`state`]), the topics and status messages
//! ([`topics`]), fetching a bundle ([`fetch`]), the gateway's agent that ties them to the
//! version store and the deployer ([`agent`]), the AWS IoT Jobs transport ([`jobs`]), the
//! installed runtime releases and which one starts ([`slots`]), and the operator's view of a
//! rollout ([`operator`]). The MQTT connection is the cloud bridge's; this
//! crate sees it only through [`agent::Upstream`].

pub mod agent;
pub mod document;
pub mod fetch;
pub mod jobs;
pub mod operator;
pub mod slots;
pub mod state;
pub mod topics;
