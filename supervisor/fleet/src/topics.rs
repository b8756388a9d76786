//! The fleet's topics on the upstream broker and the JSON a gateway publishes on them.
//!
//! With the default prefix `evergreen/fleet` (`evergreen.fleet.topicPrefix`):
//!
//! | topic | who publishes | retained | payload |
//! |---|---|---|---|
//! | `evergreen/fleet/things/<thing>/deployment` | operator | yes | a signed envelope ([`crate::document`]) for one gateway |
//! | `evergreen/fleet/groups/<group>/deployment` | operator | yes | a signed envelope for every gateway of a fleet group |
//! | `evergreen/fleet/things/<thing>/status` | gateway | yes | [`Status`] of the newest accepted document |
//! | `evergreen/fleet/things/<thing>/refused` | gateway | yes | [`Status`] (`Failure`, with `code` and `reason`) of the last document refused |
//! | `evergreen/fleet/things/<thing>/health` | gateway | yes | [`Health`], at start, after each deployment, within 5 s of a component's state or restart count changing, and every `healthIntervalSecs` |
//!
//! Only exact topics are used (no wildcards), so an AWS IoT policy can grant each gateway its
//! own topics and its groups' and nothing else.

use serde::{Deserialize, Serialize};

/// The default topic prefix.
pub const DEFAULT_PREFIX: &str = "evergreen/fleet";

/// Where a thing's own deployment document is published.
pub fn thing_deployment(prefix: &str, thing: &str) -> String {
    format!("{prefix}/things/{thing}/deployment")
}

/// Where a fleet group's deployment document is published.
pub fn group_deployment(prefix: &str, group: &str) -> String {
    format!("{prefix}/groups/{group}/deployment")
}

/// Where a gateway reports on its deployments.
pub fn thing_status(prefix: &str, thing: &str) -> String {
    format!("{prefix}/things/{thing}/status")
}

/// Where a gateway reports the last document it refused.
pub fn thing_refused(prefix: &str, thing: &str) -> String {
    format!("{prefix}/things/{thing}/refused")
}

/// Where a gateway publishes its health.
pub fn thing_health(prefix: &str, thing: &str) -> String {
    format!("{prefix}/things/{thing}/health")
}

/// The retained health message of a gateway: who it is (its fleet groups, so an operator can
/// find a group's members), what it runs, what it accepted last, and the runtime's status
/// document (`evergreen status --json`: each component's state, restarts and RSS, the cloud
/// spool's depth and drops, the MQTT server's counters, uptime).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub thing: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The group version running (its id), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Per fleet, the newest document accepted and how it ended.
    #[serde(default)]
    pub accepted: std::collections::BTreeMap<String, crate::state::Accepted>,
    /// The Evergreen version running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    /// The status document; `null` when the supervisor did not answer in time.
    pub runtime: serde_json::Value,
    pub updated_at: String,
}

/// A deployment's state, as the status message names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Accepted; the bundle is being fetched.
    Downloading,
    /// Fetched and stored; the deployer is running it.
    Deploying,
    /// A release: its binary fetched, verified and installed in a slot; the runtime is
    /// restarting onto it, and reports `Success` once the new runtime passed the health gate.
    Installing,
    Success,
    /// Refused, or it could not be fetched, stored or deployed (nothing changed).
    Failure,
    /// Deployed, failed, and the previous group came back.
    RolledBack,
}

/// The retained status message of a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub thing: String,
    /// The fleet and sequence of the document this is about (absent when it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    pub state: State,
    /// A stable code for a failure (`BadSignature`, `Replayed`, `DigestMismatch`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The sentence for an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The group version running when this was published (its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The Evergreen version running when this was published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    /// The deployer's record id, once it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// RFC 3339.
    pub updated_at: String,
}
