//! The wire protocol of the control socket: one JSON request per line
//! ([`Request`]), one JSON response per line ([`Reply`] or an error). It
//! owns the encoding and the wording of a refused line; it never touches a
//! socket.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::status::RuntimeStatus;
use crate::deploy::DeploymentRecord;

/// One request line. New operations (deploy, redeploy, reset, deployments,
/// logs) are new variants; [`Request::OPS`] lists every `op` name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// The runtime's and every component's status.
    Status,
    /// Is anybody there? Answers with the runtime's version.
    Ping,
    /// Deploy a stored group version (full id or unique prefix); answers
    /// once it succeeded or failed and was rolled back.
    Deploy { version: String },
    /// Deploy again the group version of an earlier deployment.
    Redeploy {
        #[serde(rename = "deploymentId")]
        deployment_id: String,
    },
    /// Stop every component (deploy the empty group).
    Reset,
    /// The deployment history, newest first.
    Deployments,
    /// Start a component again now (by name, Id or ARN): the operator's way
    /// out of `Failed` without waiting for the cool-down; a running one is
    /// stopped gracefully and started again.
    Restart { component: String },
    /// The status page's URL with its token (`evergreen status --page-url`): whoever may use
    /// this socket may read the page.
    StatusPage,
    /// Stop a component (by name, Id or ARN) until `start` or a new deployment: no restart
    /// policy brings it back. Answers once its child is gone.
    Stop { component: String },
    /// Start a component an operator stopped.
    Start { component: String },
}

impl Request {
    /// Every `op` a request may name, for the "unknown op" error.
    pub const OPS: &'static [&'static str] = &[
        "status",
        "ping",
        "deploy",
        "redeploy",
        "reset",
        "deployments",
        "restart",
        "status-page",
        "stop",
        "start",
    ];
}

/// The body of a successful response, tagged with the request's `op`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Reply {
    /// Boxed: the status is far larger than every other answer.
    Status {
        status: Box<RuntimeStatus>,
    },
    Ping {
        version: String,
    },
    /// The outcome of `deploy`, `redeploy` or `reset`.
    Deployment {
        deployment: DeploymentRecord,
    },
    Deployments {
        deployments: Vec<DeploymentRecord>,
    },
    /// `restart`: which component, and what was done.
    Restart {
        arn: String,
        message: String,
    },
    /// `status-page`: the URL to open, `None` when the page is off.
    StatusPage {
        url: Option<String>,
    },
    /// `stop`: which component, and what was done.
    Stop {
        arn: String,
        message: String,
    },
    /// `start`: which component, and what was done.
    Start {
        arn: String,
        message: String,
    },
}

#[derive(Serialize)]
struct OkLine<'a> {
    ok: bool,
    #[serde(flatten)]
    reply: &'a Reply,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    ok: bool,
    error: &'a str,
}

/// One response line, without its newline: `{"ok":true,"op":…,…}` or
/// `{"ok":false,"error":"…"}`, the error as its message reads.
pub(crate) fn encode_response<E: fmt::Display>(response: &Result<Reply, E>) -> String {
    let encoded = match response {
        Ok(reply) => serde_json::to_string(&OkLine { ok: true, reply }),
        Err(error) => serde_json::to_string(&ErrorLine {
            ok: false,
            error: &error.to_string(),
        }),
    };
    // Serializing these plain structs cannot fail (string keys, no maps with
    // other keys); should it ever, the peer still gets a well-formed line.
    encoded.unwrap_or_else(|e| {
        format!(
            r#"{{"ok":false,"error":{}}}"#,
            Value::String(format!("cannot encode the response: {e}"))
        )
    })
}

/// Why a request line was refused. The message is the text sent back to the
/// peer, so its wording is part of the protocol.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("invalid request: not JSON: {0}")]
    NotJson(String),
    #[error(r#"invalid request: a request is a JSON object with an "op" string, e.g. {{"op":"status"}}"#)]
    NoOp,
    /// The op, already cut to 64 characters so the error never echoes a whole line.
    #[error("unknown op {op:?}; known: {}", Request::OPS.join(", "))]
    UnknownOp { op: String },
    #[error("invalid {op} request: {message}")]
    Invalid { op: String, message: String },
}

/// Parses one request line.
pub(crate) fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    // Strictly: with `{"op":"status","op":"reset"}` a lenient reader keeps the last `op`,
    // so what the request does would depend on who reads it.
    let value: Value =
        evergreen_json::from_slice(line).map_err(|e| RequestError::NotJson(e.to_string()))?;
    let op = match value.get("op") {
        Some(Value::String(op)) => op.clone(),
        _ => return Err(RequestError::NoOp),
    };
    if !Request::OPS.contains(&op.as_str()) {
        return Err(RequestError::UnknownOp {
            op: truncate(&op, 64),
        });
    }
    serde_json::from_value(value).map_err(|e| RequestError::Invalid {
        message: evergreen_json::in_words(&e),
        op,
    })
}

/// At most `max` characters of `s`, so an error never echoes a whole line.
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_naming_op_twice_is_refused() {
        // A lenient reader keeps the last `op`: this status request would reset the runtime.
        let err = parse_request(br#"{"op":"status","op":"reset"}"#).expect_err("refused");
        assert!(err.to_string().contains("duplicate key `op`"), "{err}");
        let err = parse_request(br#"{"op":"deploy","version":"abc","version":"def"}"#)
            .expect_err("refused");
        assert!(err.to_string().contains("duplicate key `version`"), "{err}");
    }

    #[test]
    fn requests_parse_and_bad_lines_are_explained() {
        assert_eq!(parse_request(br#"{"op":"status"}"#), Ok(Request::Status));
        assert_eq!(
            parse_request(br#"{"op":"ping","extra":1}"#),
            Ok(Request::Ping)
        );
        for op in Request::OPS {
            // Ops with arguments get them; the point is that every listed op parses.
            let line = match *op {
                "deploy" => r#"{"op":"deploy","version":"abcdef"}"#.to_string(),
                "redeploy" => r#"{"op":"redeploy","deploymentId":"1"}"#.to_string(),
                "restart" | "stop" | "start" => format!(r#"{{"op":"{op}","component":"f"}}"#),
                _ => format!(r#"{{"op":"{op}"}}"#),
            };
            assert!(
                parse_request(line.as_bytes()).is_ok(),
                "{op} is listed and parses"
            );
        }
        let err = parse_request(b"{nope").expect_err("not json").to_string();
        assert!(err.starts_with("invalid request: not JSON"), "{err}");
        let err = parse_request(b"[1,2]").expect_err("no op").to_string();
        assert!(err.contains(r#"an "op" string"#), "{err}");
        let err = parse_request(br#"{"op":"launch"}"#)
            .expect_err("unknown op")
            .to_string();
        assert_eq!(
            err,
            r#"unknown op "launch"; known: status, ping, deploy, redeploy, reset, deployments, restart, status-page, stop, start"#
        );
        let err = parse_request(br#"{"op":"deploy"}"#)
            .expect_err("missing version")
            .to_string();
        assert_eq!(
            err,
            r#"invalid deploy request: the member "version" is required but missing"#
        );
        let long = format!(r#"{{"op":"{}"}}"#, "x".repeat(1000));
        let err = parse_request(long.as_bytes())
            .expect_err("unknown op")
            .to_string();
        assert!(err.len() < 200, "the op is not echoed whole: {err}");
    }

    #[test]
    fn responses_encode_as_documented_and_decode_back() {
        let pong = Reply::Ping {
            version: "1.2.3".into(),
        };
        assert_eq!(
            encode_response(&Ok::<_, String>(pong.clone())),
            r#"{"ok":true,"op":"ping","version":"1.2.3"}"#
        );
        assert_eq!(
            encode_response(&Err::<Reply, _>(
                "permission denied: uid 7 is not allowed on this socket"
            )),
            r#"{"ok":false,"error":"permission denied: uid 7 is not allowed on this socket"}"#
        );
        let value: Value =
            serde_json::from_str(&encode_response(&Ok::<_, String>(pong.clone()))).expect("json");
        assert_eq!(serde_json::from_value::<Reply>(value).expect("reply"), pong);
    }
}
