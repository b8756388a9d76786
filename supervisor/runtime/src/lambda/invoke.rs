//! Invokes (`POST /2016-11-01/functions/<arn>/invocations`) and result
//! fetches: publishes through `GGRouter`, shadow requests through
//! `GGShadowService`, secrets through `GGSecretManager`, and direct
//! Lambda-to-Lambda invokes queued for the target function's worker.

use std::sync::Arc;
use std::time::Duration;

use evergreen_ipc::LogLevel;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::http::{base64_decode, base64_encode, Request, Response};
use super::{invocation_id, note, FunctionLink, LambdaHub, Outcome, Target, WorkItem};
use crate::services::Refusal;

/// A caller waits for a result up to the target's `Timeout` plus this.
const RESULT_WAIT_MARGIN: Duration = Duration::from_secs(5);

/// Answers `POST /2016-11-01/functions/<arn>/invocations` from `caller`.
pub(super) async fn invoke(
    hub: &LambdaHub,
    caller: &FunctionLink,
    arn: &str,
    req: &Request,
) -> Response {
    let wants_result = match req
        .header("x-amz-invocation-type")
        .unwrap_or("RequestResponse")
    {
        "RequestResponse" => true,
        "Event" => false,
        other => {
            return Response::error(
                400,
                &format!("X-Amz-Invocation-Type {other:?}: use RequestResponse or Event"),
            )
        }
    };
    let context = req.header("x-amz-client-context").unwrap_or("");
    let Some(target) = hub.resolve(arn) else {
        return Response::error(
            404,
            &format!("{arn} is not a Python function of this group, nor a Greengrass service"),
        );
    };
    let id = invocation_id();
    // A target's Timeout kills its worker, which completes the result with
    // an Unhandled error; the margin covers the kill.
    let limit = match &target {
        Target::Function(link) => link.timeout + RESULT_WAIT_MARGIN,
        Target::Service(link) => link.limit(),
        _ => RESULT_WAIT_MARGIN,
    };
    let accepted = |outcome: Option<Outcome>| {
        if wants_result && !hub.expect_result(&id, &caller.arn, outcome, limit) {
            return Response::error(429, "too many results waiting to be fetched");
        }
        Response::new(if wants_result { 200 } else { 202 }).header("X-Amz-InvocationId", &id)
    };
    match target {
        Target::Router => {
            let custom = match custom_context(context) {
                Ok(c) => c,
                Err(e) => return Response::error(400, &e.to_string()),
            };
            let Some(topic) = custom.get("subject").and_then(Value::as_str) else {
                return Response::error(
                    400,
                    "X-Amz-Client-Context: custom.subject (the topic) is missing or not a string",
                );
            };
            let all_or_error =
                custom.get("queueFullPolicy").and_then(Value::as_str) == Some("AllOrError");
            let payload = Arc::from(req.body.as_slice());
            // AllOrError answers only once every durable target (the cloud spool) has stored
            // the message, so a success the SDK returns survives a crash of the runtime;
            // BestEffort answers at once.
            let (routed, stored) = if all_or_error {
                let (receipt, stored) = crate::router::Receipt::new();
                let routed = hub
                    .router
                    .publish_acked(&caller.arn, topic, payload, receipt);
                (routed, Some(stored))
            } else {
                (hub.router.publish(&caller.arn, topic, payload), None)
            };
            match routed {
                Err(e) => Response::error(400, &format!("publish on {topic:?} refused: {e}")),
                Ok(outcome) if all_or_error && outcome.dropped_full > 0 => Response::error(
                    429,
                    &format!(
                        "publish on {topic:?}: {} target queues were full (queueFullPolicy AllOrError)",
                        outcome.dropped_full
                    ),
                ),
                Ok(_) => {
                    if let Some(stored) = stored {
                        if !stored.await {
                            return Response::error(
                                503,
                                &format!("publish on {topic:?}: not stored for the cloud (queueFullPolicy AllOrError); send it again"),
                            );
                        }
                    }
                    accepted(Some(Outcome {
                        function_error: String::new(),
                        payload: Vec::new(),
                    }))
                }
            }
        }
        Target::Shadow => {
            let shadow = hub.shadow.borrow().clone();
            if let Some(shadow) = shadow {
                let custom = match custom_context(context) {
                    Ok(c) => c,
                    Err(e) => return Response::error(400, &e.to_string()),
                };
                let Some(topic) = custom.get("subject").and_then(Value::as_str) else {
                    return Response::error(
                        400,
                        "X-Amz-Client-Context: custom.subject (the shadow topic) is missing or not a string",
                    );
                };
                // One small file read and, for a change, one fsync: on the
                // blocking pool, so the actors' thread never waits for the
                // disk (a component's IPC requests go the same way). A
                // rejection is the `{"code","message"}` body the SDK turns
                // into a ShadowError.
                let (source, request, body) =
                    (caller.arn.clone(), topic.to_owned(), req.body.clone());
                let answer =
                    tokio::task::spawn_blocking(move || shadow.request(&source, &request, &body))
                        .await;
                let answer = match answer {
                    Ok(answer) => answer,
                    Err(e) => {
                        return Response::error(500, &format!("the shadow request failed: {e}"))
                    }
                };
                let Some((_, payload)) = answer else {
                    return Response::error(
                        400,
                        &format!("{topic:?} is not a shadow request topic ($aws/things/<thing>/shadow[/name/<name>]/get|update|delete)"),
                    );
                };
                return accepted(Some(Outcome {
                    function_error: String::new(),
                    payload,
                }));
            }
            accepted(Some(Outcome {
                function_error: String::new(),
                payload: json!({
                    "code": 503,
                    "message": "the local shadow service is not running (see the runtime's log)"
                })
                .to_string()
                .into_bytes(),
            }))
        }
        Target::Secrets => {
            let secrets = hub.secrets.borrow().clone();
            accepted(Some(Outcome {
                function_error: String::new(),
                payload: secret_answer(secrets.as_deref(), caller, &req.body),
            }))
        }
        Target::Service(link) => {
            // The child gets the context as the JSON it encodes (V1's ML SDK
            // sends `{"custom": {...}}`); none is an empty context.
            let client_context = if context.trim().is_empty() {
                Vec::new()
            } else {
                match base64_decode(context.trim()) {
                    Some(bytes) => bytes,
                    None => return Response::error(400, "X-Amz-Client-Context is not base64"),
                }
            };
            let response = accepted(None);
            if response.status >= 400 {
                return response;
            }
            if let Err(e) =
                hub.hand_to_service(&link, &id, &caller.arn, client_context, req.body.clone())
            {
                hub.forget_result(&id);
                let status = match e {
                    super::local::HandoffError::Busy(_) => 429,
                    super::local::HandoffError::Gone(_) => 503,
                };
                return Response::error(status, &e.to_string());
            }
            response
        }
        Target::Function(link) => {
            if link.direct.borrow().len() >= link.direct_capacity {
                return Response::error(429, &format!("{}: its invoke queue is full", link.arn));
            }
            let response = accepted(None);
            if response.status >= 400 {
                return response;
            }
            link.enqueue(WorkItem {
                id: id.clone(),
                payload: Arc::from(req.body.as_slice()),
                client_context: context.to_string(),
            });
            response
        }
    }
}

/// The payload answering a `GGSecretManager` invoke: the `GetSecretValue`
/// shape, or `{"Status","Message"}` (logged; never with a value).
fn secret_answer(
    secrets: Option<&dyn crate::services::SecretSource>,
    caller: &FunctionLink,
    body: &[u8],
) -> Vec<u8> {
    // The SDK raises `SecretsManagerError` with the status and the message;
    // the message starts with Secrets Manager's error code for the case.
    let refuse = |r: Refusal| {
        let line = format!("secret request refused: {}", r.message);
        note(caller, LogLevel::Warn, &line);
        tracing::warn!("{}: {line}", caller.arn);
        json!({ "Status": r.status, "Message": r.to_string() })
            .to_string()
            .into_bytes()
    };
    let bad = |message: &str| Refusal {
        status: 400,
        code: "InvalidParameterException",
        message: message.to_string(),
    };
    let Some(secrets) = secrets else {
        return refuse(Refusal {
            status: 503,
            code: "InternalServiceError",
            message: "the secret store is not running".into(),
        });
    };
    let request: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return refuse(bad("the request is not a JSON object")),
    };
    let Some(secret_id) = request.get("SecretId").and_then(Value::as_str) else {
        return refuse(bad("SecretId is missing or not a string"));
    };
    if request.get("VersionId").is_some_and(|v| !v.is_null()) {
        return refuse(bad("VersionId is not supported; use VersionStage"));
    }
    let stage = match request.get("VersionStage") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return refuse(bad("VersionStage is not a string")),
    };
    match secrets.get(&caller.arn, secret_id, stage) {
        Err(r) => refuse(r),
        Ok(v) => {
            note(
                caller,
                LogLevel::Debug,
                &format!(
                    "secret {} read (version {}, stages {})",
                    v.arn,
                    v.version_id,
                    v.version_stages.join(",")
                ),
            );
            let mut answer = json!({
                "ARN": v.arn,
                "Name": v.name,
                "VersionId": v.version_id,
                "VersionStages": v.version_stages,
                "CreatedDate": v.created_date_ms,
            });
            if let Some(s) = &v.secret_string {
                answer["SecretString"] = Value::String(s.clone());
            }
            if let Some(b) = &v.secret_binary {
                answer["SecretBinary"] = Value::String(base64_encode(b));
            }
            answer.to_string().into_bytes()
        }
    }
}

/// Why an invoke's client context was refused (answered 400 with this text).
#[derive(Debug, thiserror::Error)]
pub(super) enum ContextError {
    #[error("X-Amz-Client-Context is not base64")]
    NotBase64,
    #[error("X-Amz-Client-Context is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("X-Amz-Client-Context has no custom object")]
    NoCustom,
}

/// The `custom` object of a base64 JSON client context.
pub(super) fn custom_context(
    context: &str,
) -> Result<serde_json::Map<String, Value>, ContextError> {
    let bytes = base64_decode(context.trim()).ok_or(ContextError::NotBase64)?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(ContextError::NotJson)?;
    match doc.get("custom") {
        Some(Value::Object(custom)) => Ok(custom.clone()),
        _ => Err(ContextError::NoCustom),
    }
}

/// Answers a result fetch: at once if the result is in, else when it comes
/// or the wait limit passes (then Unhandled).
pub(super) async fn fetch(hub: &LambdaHub, caller: &FunctionLink, req: &Request) -> Response {
    let Some(id) = req.header("x-amz-invocationid") else {
        return Response::error(400, "X-Amz-InvocationId is required to fetch a result");
    };
    let (rx, limit) = {
        let mut results = hub.results.borrow_mut();
        let Some(pending) = results.get_mut(id).filter(|p| p.caller == caller.arn) else {
            return Response::error(404, &format!("no result {id} for this function"));
        };
        if pending.outcome.is_some() {
            let outcome = results.remove(id).and_then(|p| p.outcome);
            return result_response(outcome.unwrap_or_else(|| Outcome::unhandled("lost result")));
        }
        let (tx, rx) = oneshot::channel();
        pending.waiters.push(tx);
        (rx, pending.limit)
    };
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(outcome)) => result_response(outcome),
        _ => {
            hub.results.borrow_mut().remove(id);
            result_response(Outcome::unhandled(&format!(
                "no result within {} s",
                limit.as_secs()
            )))
        }
    }
}

fn result_response(outcome: Outcome) -> Response {
    Response::new(200)
        .header("X-Amz-Function-Error", outcome.function_error)
        .body(outcome.payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_contexts_are_checked() {
        let good = base64_encode(br#"{"custom":{"subject":"a/b"}}"#);
        assert_eq!(
            custom_context(&good).expect("good")["subject"],
            json!("a/b")
        );
        assert!(custom_context("%%%")
            .expect_err("refused")
            .to_string()
            .contains("base64"));
        assert!(custom_context(&base64_encode(b"nope"))
            .expect_err("refused")
            .to_string()
            .contains("JSON"));
        assert!(custom_context(&base64_encode(b"{}"))
            .expect_err("refused")
            .to_string()
            .contains("custom"));
    }
}
