//! The operator's side of a rollout, without the connection: what the fleet looks like from
//! the gateways' retained health and status messages ([`FleetView`]), the stages a rollout goes
//! in ([`stages`]), and the rollout record other operators see and can abort ([`Rollout`]).
//!
//! A rollout publishes one document per stage, signed for exactly that stage's things, on each
//! of their topics; the first stage is the canary. A stage ends when every gateway in it has
//! reported a final state for the document (`Success`, `Failure`, `RolledBack`) or its time is
//! up (a gateway that did not answer counts as failed). Once more gateways failed than the
//! rollout allows, it halts: the stages after it are never published, so those gateways keep
//! what they run. The record is retained on `<prefix>/fleets/<fleet>/rollout`; `evergreen fleet
//! abort` sets it to `Aborted`, which the running rollout sees before its next stage.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::topics::{Health, State, Status};

/// Where a fleet's current rollout is recorded.
pub fn rollout_topic(prefix: &str, fleet: &str) -> String {
    format!("{prefix}/fleets/{fleet}/rollout")
}

/// `things` in stages: the first `canary` (at least 1), then `batch` at a time.
pub fn stages(things: &[String], canary: usize, batch: usize) -> Vec<Vec<String>> {
    let canary = canary.max(1).min(things.len());
    let mut out = Vec::new();
    if canary > 0 {
        out.push(things[..canary].to_vec());
    }
    out.extend(
        things[canary..]
            .chunks(batch.max(1))
            .map(<[String]>::to_vec),
    );
    out
}

/// The state of a rollout, as its record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutState {
    InProgress,
    /// Every stage was published and ended.
    Completed,
    /// More gateways failed than allowed: the remaining stages were not published.
    Halted,
    /// `evergreen fleet abort`: the remaining stages were not published.
    Aborted,
}

/// The retained rollout record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub fleet: String,
    pub sequence: u64,
    pub state: RolloutState,
    /// Every gateway the rollout is for, in stage order.
    pub things: Vec<String>,
    pub succeeded: Vec<String>,
    pub failed: Vec<String>,
    pub updated_at: String,
}

/// One gateway as its retained messages show it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gateway {
    pub health: Option<Health>,
    pub status: Option<Status>,
    /// The last document it refused.
    pub refused: Option<Status>,
}

/// The fleet as the operator sees it.
#[derive(Debug, Clone, Default)]
pub struct FleetView {
    prefix: String,
    pub gateways: BTreeMap<String, Gateway>,
    pub rollouts: BTreeMap<String, Rollout>,
}

impl FleetView {
    pub fn new(prefix: &str) -> FleetView {
        FleetView {
            prefix: prefix.to_string(),
            ..FleetView::default()
        }
    }

    /// The filters that feed the view.
    pub fn filters(&self) -> Vec<String> {
        vec![
            format!("{}/things/+/health", self.prefix),
            format!("{}/things/+/status", self.prefix),
            format!("{}/things/+/refused", self.prefix),
            format!("{}/fleets/+/rollout", self.prefix),
        ]
    }

    /// Takes one message; returns the thing or fleet it changed (`None`: not ours, or not
    /// readable, which is logged).
    pub fn take(&mut self, topic: &str, payload: &[u8]) -> Option<String> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["things", thing, "health"] => {
                let health: Health = parse(topic, payload)?;
                self.gateways.entry(thing.to_string()).or_default().health = Some(health);
                Some(thing.to_string())
            }
            ["things", thing, "status"] => {
                let status: Status = parse(topic, payload)?;
                self.gateways.entry(thing.to_string()).or_default().status = Some(status);
                Some(thing.to_string())
            }
            ["things", thing, "refused"] => {
                let refused: Status = parse(topic, payload)?;
                self.gateways.entry(thing.to_string()).or_default().refused = Some(refused);
                Some(thing.to_string())
            }
            ["fleets", fleet, "rollout"] => {
                let rollout: Rollout = parse(topic, payload)?;
                self.rollouts.insert(fleet.to_string(), rollout);
                Some(fleet.to_string())
            }
            _ => None,
        }
    }

    /// The gateways whose health names `group`, sorted.
    pub fn members(&self, group: &str) -> Vec<String> {
        self.gateways
            .iter()
            .filter(|(_, g)| {
                g.health
                    .as_ref()
                    .is_some_and(|h| h.groups.iter().any(|x| x == group))
            })
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// One more than the highest sequence of `fleet` any gateway reported (accepted or
    /// refused) or a rollout recorded; 1 for a fleet nobody has heard of.
    pub fn next_sequence(&self, fleet: &str) -> u64 {
        let from_gateways = self.gateways.values().flat_map(|g| {
            let accepted = g
                .health
                .as_ref()
                .and_then(|h| h.accepted.get(fleet))
                .map(|a| a.sequence);
            let reported = g
                .status
                .as_ref()
                .filter(|s| s.fleet.as_deref() == Some(fleet))
                .and_then(|s| s.sequence);
            [accepted, reported]
        });
        let recorded = self.rollouts.get(fleet).map(|r| r.sequence);
        from_gateways
            .chain(std::iter::once(recorded))
            .flatten()
            .max()
            .map_or(1, |n| n + 1)
    }

    /// How `thing` ended document `sequence` of `fleet` (refused counts as `Failure`), once it
    /// has; `None` while it works on it or has not reported.
    pub fn outcome(&self, thing: &str, fleet: &str, sequence: u64) -> Option<State> {
        let gateway = self.gateways.get(thing)?;
        // A refusal of this very document (one it could read) is its end there.
        if gateway
            .refused
            .as_ref()
            .is_some_and(|r| r.fleet.as_deref() == Some(fleet) && r.sequence == Some(sequence))
        {
            return Some(State::Failure);
        }
        let status = gateway.status.as_ref()?;
        if status.fleet.as_deref() != Some(fleet) || status.sequence != Some(sequence) {
            return None;
        }
        matches!(
            status.state,
            State::Success | State::Failure | State::RolledBack
        )
        .then_some(status.state)
    }

    /// Whether the rollout of `fleet` at `sequence` was aborted.
    pub fn aborted(&self, fleet: &str, sequence: u64) -> bool {
        self.rollouts
            .get(fleet)
            .is_some_and(|r| r.sequence == sequence && r.state == RolloutState::Aborted)
    }
}

fn parse<T: serde::de::DeserializeOwned>(topic: &str, payload: &[u8]) -> Option<T> {
    if payload.is_empty() {
        return None;
    }
    match serde_json::from_slice(payload) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("fleet: unreadable message on {topic}: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("gw-{i:02}")).collect()
    }

    #[test]
    fn stages_start_with_the_canary_then_go_in_batches() {
        let s = stages(&names(7), 2, 3);
        let sizes: Vec<usize> = s.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 3, 2]);
        assert_eq!(s.concat(), names(7), "every gateway once, in order");
        assert_eq!(stages(&names(1), 5, 10), [names(1)]);
        assert!(stages(&[], 1, 10).is_empty());
        // A canary of 0 is still one gateway: the first stage always tests the document.
        assert_eq!(stages(&names(3), 0, 10)[0].len(), 1);
    }

    fn status(thing: &str, sequence: u64, state: State) -> Vec<u8> {
        serde_json::to_vec(&Status {
            thing: thing.into(),
            fleet: Some("factory".into()),
            sequence: Some(sequence),
            state,
            code: None,
            reason: None,
            version: None,
            runtime_version: None,
            deployment_id: None,
            updated_at: String::new(),
        })
        .expect("json")
    }

    #[test]
    fn the_view_follows_statuses_health_and_rollouts() {
        let mut v = FleetView::new("evergreen/fleet");
        let health = serde_json::json!({
            "thing": "gw-01", "groups": ["line-1"], "runtime": null, "updatedAt": "",
            "accepted": {"factory": {"sequence": 6, "documentSha256": "x", "outcome": "Success"}}
        });
        assert_eq!(
            v.take(
                "evergreen/fleet/things/gw-01/health",
                health.to_string().as_bytes()
            ),
            Some("gw-01".into())
        );
        v.take(
            "evergreen/fleet/things/gw-02/status",
            &status("gw-02", 7, State::Deploying),
        );
        assert_eq!(v.members("line-1"), ["gw-01"]);
        assert_eq!(v.next_sequence("factory"), 8);
        assert_eq!(v.next_sequence("other"), 1);
        assert_eq!(v.outcome("gw-02", "factory", 7), None, "still deploying");
        v.take(
            "evergreen/fleet/things/gw-02/status",
            &status("gw-02", 7, State::RolledBack),
        );
        assert_eq!(v.outcome("gw-02", "factory", 7), Some(State::RolledBack));
        assert_eq!(v.outcome("gw-02", "factory", 8), None, "another document");
        let aborted = Rollout {
            fleet: "factory".into(),
            sequence: 8,
            state: RolloutState::Aborted,
            things: vec![],
            succeeded: vec![],
            failed: vec![],
            updated_at: String::new(),
        };
        v.take(
            "evergreen/fleet/fleets/factory/rollout",
            &serde_json::to_vec(&aborted).expect("json"),
        );
        assert!(v.aborted("factory", 8));
        assert!(!v.aborted("factory", 7));
        assert_eq!(v.take("elsewhere/things/x/status", b"{}"), None);
        assert_eq!(v.take("evergreen/fleet/things/x/status", b"not json"), None);
    }
}
