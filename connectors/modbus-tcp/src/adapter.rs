//! The request/response path for TCP endpoints: Greengrass Modbus adapter
//! requests on `modbus/adapter/request`, answered on `modbus/adapter/response`.
//!
//! Parsing, execution and the response JSON are the Modbus-RTU connector's
//! ([`evergreen_connector_modbus`]); this module only decides which source's
//! connection a request uses and runs it there, between that source's polls.
//!
//! **Which endpoint.** The Evergreen extension field `request.source` names
//! a configured source (`sources[i].name`); without it the request goes to
//! the first source. `request.device` is the unit id put in the Modbus TCP
//! header, whatever the source's `endpoint.unitId` (which only applies to
//! polling). A request naming no configured source, or arriving when there
//! is none (no or an invalid `CapabilityConfiguration`), is answered with
//! status `fail`, error `No Response` and the reason.
//!
//! **Sharing the connection.** A request runs on the source's task, so it
//! honours `minimumInterRequestDuration` and never interleaves with a poll.
//! Each source queues at most [`QUEUE_CAPACITY`] requests; one more is
//! answered `No Response` at once ("queue full") rather than waiting
//! unboundedly. A transport failure, a timeout or an answer that does not
//! match the request drops the connection (a late or stray answer would
//! desynchronise the next transaction) and the source's backoff applies, as
//! for polling; while the endpoint is down requests are answered
//! `No Response` without waiting.

use evergreen_connector_modbus::request::{parse_request, type_name};
use evergreen_connector_modbus::response::{Response, NO_RESPONSE_MESSAGE};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::source::Command;
use crate::Running;

/// Where requests arrive.
pub const REQUEST_TOPIC: &str = "modbus/adapter/request";
/// Where responses go.
pub const RESPONSE_TOPIC: &str = "modbus/adapter/response";
/// Requests that may wait for one source before more are refused.
pub const QUEUE_CAPACITY: usize = 16;

/// Why no source can take requests, when none can.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    /// The configured sources, in configuration order.
    Sources(&'a [Running]),
    /// `CapabilityConfiguration` was refused.
    InvalidConfiguration,
}

/// What to do with one request message.
#[derive(Debug)]
pub enum Routed {
    /// Publish this response now (invalid request, no such source, queue full).
    Answer(Box<Response>),
    /// The request is queued on a source; its response arrives here.
    Pending(oneshot::Receiver<Response>),
}

/// Parses a request message and queues it on its source.
pub fn route(payload: &[u8], targets: &Targets<'_>) -> Routed {
    let req = match parse_request(payload) {
        Ok(req) => req,
        Err(invalid) => return Routed::Answer(Box::new(Response::from(*invalid))),
    };
    let fail = |message: String| Routed::Answer(Box::new(Response::no_response(&req, message)));
    let sources = match targets {
        Targets::InvalidConfiguration => {
            return fail(
                "No Modbus TCP source: the connector's CapabilityConfiguration is invalid \
                 (see modbus/tcp/status and the connector's log)"
                    .to_string(),
            )
        }
        Targets::Sources(s) => *s,
    };
    // Valid JSON: parse_request just accepted it.
    let wanted = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| v.get("request").and_then(|r| r.get("source")).cloned());
    let source = match &wanted {
        None => sources.first(),
        Some(Value::String(name)) => sources.iter().find(|s| s.name == *name),
        Some(other) => {
            return fail(format!(
                "Invalid source field. Expected str, got {}",
                type_name(other)
            ))
        }
    };
    let Some(source) = source else {
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        return fail(match wanted {
            None => "No Modbus TCP source is configured (CapabilityConfiguration has no sources)"
                .to_string(),
            Some(name) => format!(
                "Invalid source field. No source named {name}; configured: {}",
                names.join(", ")
            ),
        });
    };
    let (reply, rx) = oneshot::channel();
    match source.commands.try_send(Command::Adapter {
        request: req,
        reply,
    }) {
        Ok(()) => Routed::Pending(rx),
        Err(mpsc::error::TrySendError::Full(Command::Adapter { request, .. })) => {
            Routed::Answer(Box::new(Response::no_response(
                &request,
                format!(
                    "{NO_RESPONSE_MESSAGE} (source {:?} has {QUEUE_CAPACITY} requests waiting)",
                    source.name
                ),
            )))
        }
        Err(mpsc::error::TrySendError::Closed(Command::Adapter { request, .. })) => {
            Routed::Answer(Box::new(Response::no_response(
                &request,
                format!("{NO_RESPONSE_MESSAGE} (source {:?} stopped)", source.name),
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn running(name: &str, capacity: usize) -> (Running, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Running {
                name: name.into(),
                commands: tx,
                stats: Arc::default(),
            },
            rx,
        )
    }

    fn answer(routed: Routed) -> serde_json::Value {
        match routed {
            Routed::Answer(r) => evergreen_connector_kit::testing::json(&r.to_json()),
            Routed::Pending(_) => panic!("expected an immediate answer"),
        }
    }

    const READ: &str = r#"{"request":{"operation":"ReadHoldingRegistersRequest","device":1,"address":0,"count":2},"id":"r1"}"#;

    #[test]
    fn requests_go_to_the_first_source_or_the_named_one() {
        let (a, mut rx_a) = running("a", 4);
        let (b, mut rx_b) = running("b", 4);
        let sources = [a, b];
        let targets = Targets::Sources(&sources);
        assert!(matches!(
            route(READ.as_bytes(), &targets),
            Routed::Pending(_)
        ));
        let Ok(Command::Adapter { request, .. }) = rx_a.try_recv() else {
            panic!("queued on the first source")
        };
        assert_eq!((request.id.as_str(), request.device), ("r1", 1));
        let named = READ.replace("\"device\":1", "\"device\":7,\"source\":\"b\"");
        assert!(matches!(
            route(named.as_bytes(), &targets),
            Routed::Pending(_)
        ));
        let Ok(Command::Adapter { request, .. }) = rx_b.try_recv() else {
            panic!("queued on b")
        };
        assert_eq!(request.device, 7, "device is the unit id");
        assert!(rx_a.try_recv().is_err());
    }

    #[test]
    fn bad_requests_and_missing_sources_are_answered_at_once() {
        let (a, _rx) = running("a", 1);
        let sources = [a];
        let targets = Targets::Sources(&sources);
        let r = answer(route(b"{not json", &targets));
        assert_eq!(r["response"]["status"], "fail");
        assert_eq!(r["response"]["error"], "No Response");
        let r = answer(route(
            READ.replace("\"address\":0", "\"address\":\"0\"")
                .as_bytes(),
            &targets,
        ));
        assert!(r["response"]["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("address"));
        let r = answer(route(
            READ.replace("\"device\":1", "\"device\":1,\"source\":\"zz\"")
                .as_bytes(),
            &targets,
        ));
        assert_eq!(r["id"], "r1");
        assert!(r["response"]["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("No source named \"zz\"; configured: a"));
        let r = answer(route(
            READ.replace("\"device\":1", "\"device\":1,\"source\":3")
                .as_bytes(),
            &targets,
        ));
        assert!(r["response"]["error_message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Invalid source field"));
        let r = answer(route(READ.as_bytes(), &Targets::Sources(&[])));
        assert!(r["response"]["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("no sources"));
        let r = answer(route(READ.as_bytes(), &Targets::InvalidConfiguration));
        assert!(r["response"]["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("CapabilityConfiguration is invalid"));
    }

    #[test]
    fn a_full_queue_answers_instead_of_waiting() {
        let (a, _rx) = running("a", 1);
        let sources = [a];
        let targets = Targets::Sources(&sources);
        assert!(matches!(
            route(READ.as_bytes(), &targets),
            Routed::Pending(_)
        ));
        let r = answer(route(READ.as_bytes(), &targets));
        assert!(r["response"]["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("requests waiting"));
    }
}
