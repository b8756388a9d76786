//! The AWS IoT Jobs transport: the deployment document is the job document, and the gateway
//! speaks the Jobs MQTT API for its thing, so thing groups, rollout rates and abort criteria
//! come from AWS IoT Jobs itself.
//!
//! What the gateway does, as the Jobs developer guide describes the device side:
//!
//! * subscribes to `$aws/things/<thing>/jobs/notify-next` and to the answers of
//!   `$aws/things/<thing>/jobs/start-next` (`/accepted`, `/rejected`);
//! * asks `start-next` (StartNextPendingJobExecution) on every new connection, on each
//!   `notify-next` that names an execution, and after finishing a job;
//! * runs the `jobDocument` of the execution `start-next` returns as a deployment document
//!   (checked exactly as on the MQTT transport: signature, target, sequence);
//! * reports on `$aws/things/<thing>/jobs/<jobId>/update` (UpdateJobExecution): `IN_PROGRESS`
//!   with the state (`Downloading`, `Deploying`), then `SUCCEEDED` or `FAILED`, with
//!   `statusDetails` (strings only, as the API requires: `state`, `code`, `reason` cut to
//!   1,024 characters, `version`, `sequence`). A job delivered again after it finished here (the
//!   runtime stopped before its update reached AWS) gets its final status again.

use serde_json::{json, Value};

use crate::topics::State;

/// `$aws/things/<thing>/jobs/<rest>`.
pub fn topic(thing: &str, rest: &str) -> String {
    format!("$aws/things/{thing}/jobs/{rest}")
}

/// The topics the gateway subscribes to.
pub fn subscriptions(thing: &str) -> Vec<String> {
    ["notify-next", "start-next/accepted", "start-next/rejected"]
        .iter()
        .map(|r| topic(thing, r))
        .collect()
}

/// What arrived on a Jobs topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `notify-next` naming an execution: ask for it with `start-next`.
    Pending,
    /// `notify-next` without one: nothing is pending.
    Idle,
    /// `start-next/accepted` with an execution to run.
    Execution { job_id: String, document: Value },
    /// `start-next/accepted` without one, or a rejection (logged).
    Nothing(String),
}

/// Reads a message from one of [`subscriptions`]; `None` when it is not one of them.
pub fn parse(thing: &str, topic_name: &str, payload: &[u8]) -> Option<Incoming> {
    let body: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    let execution = body.get("execution").filter(|e| e.is_object());
    if topic_name == topic(thing, "notify-next") {
        return Some(if execution.is_some() {
            Incoming::Pending
        } else {
            Incoming::Idle
        });
    }
    if topic_name == topic(thing, "start-next/accepted") {
        let Some(e) = execution else {
            return Some(Incoming::Nothing("no job is pending".into()));
        };
        return Some(
            match (e.get("jobId").and_then(Value::as_str), e.get("jobDocument")) {
                (Some(id), Some(doc)) => Incoming::Execution {
                    job_id: id.to_string(),
                    document: doc.clone(),
                },
                _ => Incoming::Nothing(format!("an execution without jobId or jobDocument: {e}")),
            },
        );
    }
    if topic_name == topic(thing, "start-next/rejected") {
        return Some(Incoming::Nothing(format!("start-next rejected: {body}")));
    }
    None
}

/// The `start-next` request.
pub fn start_next() -> Vec<u8> {
    json!({ "statusDetails": { "state": "Starting" } })
        .to_string()
        .into_bytes()
}

/// The `update` request for a deployment in `state`.
pub fn update(
    state: State,
    code: Option<&str>,
    reason: Option<&str>,
    version: Option<&str>,
    sequence: Option<u64>,
) -> Vec<u8> {
    let status = match state {
        State::Downloading | State::Deploying | State::Installing => "IN_PROGRESS",
        State::Success => "SUCCEEDED",
        State::Failure | State::RolledBack => "FAILED",
    };
    let mut details = serde_json::Map::new();
    details.insert("state".into(), json!(format!("{state:?}")));
    if let Some(c) = code {
        details.insert("code".into(), json!(c));
    }
    if let Some(r) = reason {
        details.insert(
            "reason".into(),
            json!(r.chars().take(1024).collect::<String>()),
        );
    }
    if let Some(v) = version {
        details.insert("version".into(), json!(v));
    }
    if let Some(n) = sequence {
        details.insert("sequence".into(), json!(n.to_string()));
    }
    json!({ "status": status, "statusDetails": details })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_and_notifications_are_read_as_the_guide_shows_them() {
        let accepted = br#"{"execution":{"jobId":"j-1","status":"QUEUED","versionNumber":1,
            "jobDocument":{"format":"evergreen-deployment"}},"timestamp":1}"#;
        assert_eq!(
            parse("gw", "$aws/things/gw/jobs/start-next/accepted", accepted),
            Some(Incoming::Execution {
                job_id: "j-1".into(),
                document: json!({"format": "evergreen-deployment"})
            })
        );
        assert!(matches!(
            parse(
                "gw",
                "$aws/things/gw/jobs/start-next/accepted",
                br#"{"timestamp":1}"#
            ),
            Some(Incoming::Nothing(_))
        ));
        assert_eq!(
            parse(
                "gw",
                "$aws/things/gw/jobs/notify-next",
                br#"{"execution":{"jobId":"j"}}"#
            ),
            Some(Incoming::Pending)
        );
        assert_eq!(
            parse(
                "gw",
                "$aws/things/gw/jobs/notify-next",
                br#"{"timestamp":1}"#
            ),
            Some(Incoming::Idle)
        );
        assert_eq!(
            parse("gw", "$aws/things/other/jobs/notify-next", b"{}"),
            None
        );
    }

    #[test]
    fn updates_map_states_and_keep_details_strings() {
        let v: Value = serde_json::from_slice(&update(
            State::RolledBack,
            Some("DeploymentFailed"),
            Some(&"x".repeat(2000)),
            Some("abc"),
            Some(7),
        ))
        .expect("json");
        assert_eq!(v["status"], "FAILED");
        assert_eq!(v["statusDetails"]["state"], "RolledBack");
        assert_eq!(v["statusDetails"]["sequence"], "7");
        assert_eq!(
            v["statusDetails"]["reason"].as_str().map(str::len),
            Some(1024)
        );
        assert!(v["statusDetails"]
            .as_object()
            .is_some_and(|d| d.values().all(Value::is_string)));
        let v: Value = serde_json::from_slice(&update(State::Deploying, None, None, None, None))
            .expect("json");
        assert_eq!(v["status"], "IN_PROGRESS");
    }
}
