//! The `TwilioNotifications` connector (Greengrass versions 1–5): text
//! messages (`twilio/txt`) and voice calls (`twilio/call`) through the
//! Twilio REST API, answered on `twilio/message/status`.
//!
//! **What it calls.** A text is `POST <base>/2010-04-01/Accounts/<AccountSid>/Messages.json`
//! with the form `To`, `From`, `Body`; a call is `…/Calls.json` with `To`,
//! `From`, `Url` (the request's `voice_message_location`, TwiML). Both
//! with HTTP basic auth `TWILIO_ACCOUNT_SID:<auth token>`, as twilio-python
//! sends them. `<base>` is `https://api.twilio.com`, or the core
//! configuration's `evergreen.aws.endpoints.twilio` (tests point it at a
//! local recorder; `ComponentConfig::endpoints["twilio"]`).
//!
//! **The auth token** is the text secret `TwilioAuthTokenSecretArn`, read
//! with the component's secret request (the supervisor checks that the
//! group granted it through `TwilioAuthTokenSecretArn-ResourceId`). It is
//! read at start and, while it cannot be read, again for every request, so
//! a token put into the store later (`evergreen secrets put`) is picked up
//! without a restart. Surrounding whitespace is trimmed (a token saved from
//! a file usually ends in a newline). The token never appears in a log or
//! a status message.
//!
//! **Status messages** (`twilio/message/status`), exactly the reference's
//! shapes: success `{"response":{"status":"success","payload":{"from_number":…,
//! "messages":{"message_status":<Twilio's status>,"to_number":…,"name":…}}},"id":…}`;
//! failure `{"response":{"status":"fail","error_message":…,"error":…,"payload":null},"id":…}`
//! (`null` where the Python connector printed `None`). The `error` names
//! (the reference gives only `InvalidParameter`; the others are Evergreen's
//! choice, after twilio-python's exception classes):
//! * `InvalidParameter` — the input is not what the reference describes;
//!   the message names the field (`request.recipient.phone_number …`).
//! * `TwilioRestException` — Twilio answered with an error status; the
//!   message has the HTTP status, Twilio's error code and its text.
//! * `ConnectionError` — no answer from Twilio after the last attempt.
//! * `SecretError` — the auth token cannot be read (not granted, not in
//!   the store); the message says which secret and why.
//! * `QueueFullException` — more than [`QUEUE`] requests are waiting.
//!
//! **Retries.** A request's `retries` (default 0, at most [`MAX_RETRIES`])
//! is how many more attempts a failed send gets. Only transient failures
//! are retried — no answer (refused, reset, timeout), 5xx, 429 — with
//! exponential backoff from 1 s to 30 s; a 4xx other than 429 (a bad
//! number, a bad token) is reported at once, as retrying cannot help.
//! Requests are sent one at a time in arrival order; a request waiting for
//! its retry holds the ones behind it (in the queue of [`QUEUE`]).
//!
//! **[doc inconsistency] phone numbers.** The reference's pattern for
//! `phone_number` and `from_number` is `\+[1-9]+`, which refuses every
//! number with a 0 — including its own example `+12345000000`. Evergreen
//! takes E.164 numbers: `+`, then 1–15 digits, the first not 0.
//! `DefaultFromPhoneNumber` keeps the reference's `^$|\+[0-9]+`.
//!
//! **Input checks** besides the reference's: `name` may be empty on
//! `twilio/txt` (`.*`) but not on `twilio/call` (`.+`); a payload with both
//! `message` and `voice_message_location` is refused; `from_number` is
//! required when `DefaultFromPhoneNumber` is absent or empty.

use std::time::Duration;

use evergreen_connector_kit::manifest;
use evergreen_connector_kit::{secret, status, Backoff, Notes, Params};
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec};
use evergreen_ipc::sdk::{Component, Event, Handle, SdkError};
use evergreen_ipc::ComponentConfig;
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub const TXT_TOPIC: &str = "twilio/txt";
pub const CALL_TOPIC: &str = "twilio/call";
pub const STATUS_TOPIC: &str = "twilio/message/status";
/// Twilio's API when no endpoint override is configured.
pub const DEFAULT_BASE: &str = "https://api.twilio.com";
/// Requests that may wait to be sent.
pub const QUEUE: usize = 1000;
/// The most retries a request may ask for.
pub const MAX_RETRIES: u64 = 10;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

const ACCOUNT_SID: &str = "TWILIO_ACCOUNT_SID";
const SECRET_ARN: &str = "TwilioAuthTokenSecretArn";
const SECRET_RESOURCE: &str = "TwilioAuthTokenSecretArn-ResourceId";
const DEFAULT_FROM: &str = "DefaultFromPhoneNumber";

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "TwilioNotifications",
    versions: &[1, 2, 3, 4, 5],
    description: "Sends text messages (twilio/txt) and voice calls (twilio/call) through the Twilio \
                  REST API with the auth token from a secret; answers on twilio/message/status.",
    parameters: &[
        ParameterSpec::new(ACCOUNT_SID, "The Twilio account SID.")
            .required()
            .pattern(".+"),
        ParameterSpec::new(
            SECRET_ARN,
            "ARN of the Secrets Manager secret holding the Twilio auth token (plain text).",
        )
        .required()
        .pattern(manifest::SECRET_ARN_PATTERN),
        manifest::secret_resource(SECRET_RESOURCE),
        ParameterSpec::new(
            DEFAULT_FROM,
            "Default sender number; a request's from_number overrides it, and is required without it.",
        )
        .pattern("^$|\\+[0-9]+"),
        manifest::isolation_mode(5),
    ],
    inputs: &[TXT_TOPIC, CALL_TOPIC],
    outputs: &[STATUS_TOPIC],
    isolation: manifest::EITHER_MODE,
    pinned: false,
    aws: false,
};

/// What the connector runs with, from its `ComponentConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub account_sid: String,
    pub secret_arn: String,
    pub default_from: Option<String>,
    /// Twilio's API base URL, without a trailing `/`.
    pub base: String,
}

impl Settings {
    /// The settings, and what to log about them once the link is up.
    pub fn from_config(config: &ComponentConfig) -> (Settings, Notes) {
        let mut p = Params::new(config);
        let account_sid = p.text(ACCOUNT_SID).unwrap_or_else(|| {
            p.error(format!(
                "{ACCOUNT_SID} is missing; Twilio will refuse every request"
            ));
            String::new()
        });
        let secret_arn = p.text(SECRET_ARN).unwrap_or_else(|| {
            p.error(format!("{SECRET_ARN} is missing"));
            String::new()
        });
        let default_from = p.text(DEFAULT_FROM);
        let base = p
            .endpoint_override("twilio", "Twilio API")
            .unwrap_or_else(|| DEFAULT_BASE.to_string());
        p.finish(Settings {
            account_sid,
            secret_arn,
            default_from,
            base,
        })
    }
}

/// Which API a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Call,
}

/// A valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    pub kind: Kind,
    pub name: String,
    pub to: String,
    pub from: String,
    /// The SMS body, or the TwiML URL of a call.
    pub content: String,
    pub retries: u64,
}

/// Why an input is refused (the kit's, shared with the other connectors that echo an `id`).
pub use evergreen_connector_kit::status::Invalid;

/// E.164: `+` and 1–15 digits, the first not 0 (see the crate docs).
pub fn is_phone_number(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (1..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Checks a payload received on `topic` against the reference.
pub fn parse_request(
    topic: &str,
    payload: &[u8],
    default_from: Option<&str>,
) -> Result<Request, Invalid> {
    let invalid = |id: Option<String>, message: String| Invalid { id, message };
    let kind = match topic {
        TXT_TOPIC => Kind::Text,
        CALL_TOPIC => Kind::Call,
        other => {
            return Err(invalid(
                None,
                format!("topic {other} is neither {TXT_TOPIC} nor {CALL_TOPIC}"),
            ))
        }
    };
    let top = status::json_object(payload, "payload").map_err(|e| invalid(None, e))?;
    let id = match top.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(invalid(None, "id cannot be empty".into())),
        Some(Value::Null) | None => return Err(invalid(None, "id is required".into())),
        Some(_) => return Err(invalid(None, "id must be a string".into())),
    };
    let fail = |message: String| Err(invalid(Some(id.clone()), message));
    let Some(request) = top.get("request") else {
        return fail("request is required".into());
    };
    let Value::Object(request) = request else {
        return fail("request must be an object".into());
    };
    let Some(recipient) = request.get("recipient") else {
        return fail("request.recipient is required".into());
    };
    let Value::Object(recipient) = recipient else {
        return fail("request.recipient must be an object (one recipient)".into());
    };
    let string = |obj: &serde_json::Map<String, Value>, key: &str, path: &str| match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{path} must be a string")),
    };
    let name = match string(recipient, "name", "request.recipient.name") {
        Ok(Some(n)) if kind == Kind::Call && n.is_empty() => {
            return fail("request.recipient.name cannot be empty on twilio/call".into())
        }
        Ok(Some(n)) => n,
        Ok(None) => {
            return fail(
                "request.recipient.name is required (Recipient name cannot be None)".into(),
            )
        }
        Err(e) => return fail(e),
    };
    let to = match string(recipient, "phone_number", "request.recipient.phone_number") {
        Ok(Some(n)) if is_phone_number(&n) => n,
        Ok(Some(n)) => {
            return fail(format!(
                "request.recipient.phone_number {n:?} is not a phone number (+ and up to 15 digits)"
            ))
        }
        Ok(None) => return fail("request.recipient.phone_number is required".into()),
        Err(e) => return fail(e),
    };
    let message = match string(recipient, "message", "request.recipient.message") {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let location = match string(
        recipient,
        "voice_message_location",
        "request.recipient.voice_message_location",
    ) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let content = match (kind, message, location) {
        (_, Some(_), Some(_)) => {
            return fail(
                "request.recipient has both message and voice_message_location; give one".into(),
            )
        }
        (Kind::Text, Some(m), None) if !m.is_empty() => m,
        (Kind::Text, Some(_), None) => {
            return fail("request.recipient.message cannot be empty".into())
        }
        (Kind::Text, None, _) => {
            return fail("request.recipient.message is required on twilio/txt".into())
        }
        (Kind::Call, None, Some(l)) if !l.is_empty() => l,
        (Kind::Call, None, Some(_)) => {
            return fail("request.recipient.voice_message_location cannot be empty".into())
        }
        (Kind::Call, _, None) => {
            return fail(
                "request.recipient.voice_message_location is required on twilio/call".into(),
            )
        }
    };
    let from = match string(request, "from_number", "request.from_number") {
        Ok(Some(n)) if is_phone_number(&n) => n,
        Ok(Some(n)) => {
            return fail(format!(
                "request.from_number {n:?} is not a phone number (+ and up to 15 digits)"
            ))
        }
        Ok(None) => match default_from {
            Some(d) => d.to_string(),
            None => {
                return fail(format!(
                    "request.from_number is required: the connector has no {DEFAULT_FROM}"
                ))
            }
        },
        Err(e) => return fail(e),
    };
    let retries = match request.get("retries") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(r) if r <= MAX_RETRIES => r,
            _ => {
                return fail(format!(
                    "request.retries must be an integer from 0 to {MAX_RETRIES}, got {n}"
                ))
            }
        },
        Some(_) => return fail("request.retries must be an integer".into()),
    };
    Ok(Request {
        id,
        kind,
        name,
        to,
        from,
        content,
        retries,
    })
}

/// The success status for a sent request.
pub fn success_status(request: &Request, message_status: &str) -> Value {
    json!({
        "response": {
            "status": "success",
            "payload": {
                "from_number": request.from,
                "messages": {
                    "message_status": message_status,
                    "to_number": request.to,
                    "name": request.name,
                }
            }
        },
        "id": request.id,
    })
}

/// A failure status (`payload` is `null`, as the reference's `None`).
pub fn fail_status(id: Option<&str>, error: &str, message: &str) -> Value {
    json!({
        "response": {
            "status": "fail",
            "error_message": message,
            "error": error,
            "payload": null,
        },
        "id": id,
    })
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No HTTP answer.
    Transport(String),
    /// Twilio answered with an error status.
    Service { status: u16, message: String },
}

impl SendError {
    /// Transport errors, 5xx and 429 may go away by themselves.
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::Transport(_) => true,
            SendError::Service { status, .. } => *status >= 500 || *status == 429,
        }
    }

    fn status(&self, id: &str) -> Value {
        match self {
            SendError::Transport(m) => fail_status(Some(id), "ConnectionError", m),
            SendError::Service { message, .. } => {
                fail_status(Some(id), "TwilioRestException", message)
            }
        }
    }
}

/// Sends one request once; `Ok` is Twilio's status for the new message or call.
pub async fn send_once(
    client: &reqwest::Client,
    settings: &Settings,
    token: &str,
    request: &Request,
) -> Result<String, SendError> {
    let (resource, content_field) = match request.kind {
        Kind::Text => ("Messages", "Body"),
        Kind::Call => ("Calls", "Url"),
    };
    let url = format!(
        "{}/2010-04-01/Accounts/{}/{resource}.json",
        settings.base, settings.account_sid
    );
    let form = [
        ("To", request.to.as_str()),
        ("From", request.from.as_str()),
        (content_field, request.content.as_str()),
    ];
    let response = client
        .post(&url)
        .basic_auth(&settings.account_sid, Some(token))
        .form(&form)
        .send()
        .await
        .map_err(|e| SendError::Transport(evergreen_aws::describe_reqwest(&e)))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| SendError::Transport(evergreen_aws::describe_reqwest(&e)))?;
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    if (200..300).contains(&status) {
        let message_status = json
            .as_ref()
            .and_then(|j| j.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("queued");
        return Ok(message_status.to_string());
    }
    // Twilio's error body: {"code":21211,"message":"…","more_info":"…","status":400}.
    let text = json
        .as_ref()
        .and_then(|j| j.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| evergreen_aws::quote_body(&body));
    let code = json
        .as_ref()
        .and_then(|j| j.get("code"))
        .map(|c| format!(" (Twilio error {c})"))
        .unwrap_or_default();
    Err(SendError::Service {
        status,
        message: format!("HTTP {status}{code}: {text}"),
    })
}

/// The auth token, asked from the supervisor.
async fn read_token(handle: &Handle, arn: &str) -> Result<String, String> {
    secret::read_text(handle, arn, "Twilio auth token", "auth token secret").await
}

async fn publish(handle: &Handle, status: &Value) -> Result<(), SdkError> {
    handle
        .publish_or_log(STATUS_TOPIC, status.to_string())
        .await
}

/// Sends the queued requests one after another.
async fn worker(
    handle: Handle,
    settings: Settings,
    mut queue: mpsc::Receiver<Request>,
) -> Result<(), SdkError> {
    let client = evergreen_aws::http_client();
    let mut token = match read_token(&handle, &settings.secret_arn).await {
        Ok(t) => Some(t),
        Err(e) => {
            handle.error(format!(
                "{e}; every request fails with SecretError until it can be read"
            ));
            None
        }
    };
    while let Some(request) = queue.recv().await {
        if token.is_none() {
            match read_token(&handle, &settings.secret_arn).await {
                Ok(t) => {
                    handle.info(format!("auth token secret {} read", settings.secret_arn));
                    token = Some(t);
                }
                Err(e) => {
                    handle.warn(format!("request {}: {e}", request.id));
                    publish(&handle, &fail_status(Some(&request.id), "SecretError", &e)).await?;
                    continue;
                }
            }
        }
        let Some(tok) = token.as_deref() else {
            continue;
        };
        let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
        let mut attempt = 0;
        let status = loop {
            match send_once(&client, &settings, tok, &request).await {
                Ok(message_status) => {
                    handle.info(format!(
                        "request {}: Twilio says {message_status} for {}",
                        request.id, request.to
                    ));
                    break success_status(&request, &message_status);
                }
                Err(e) if e.is_transient() && attempt < request.retries => {
                    attempt += 1;
                    let delay = backoff.next_delay();
                    handle.warn(format!(
                        "request {}: {e:?}; retrying in {} ms ({attempt} of {})",
                        request.id,
                        delay.as_millis(),
                        request.retries
                    ));
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    handle.warn(format!("request {} failed: {e:?}", request.id));
                    break e.status(&request.id);
                }
            }
        };
        publish(&handle, &status).await?;
    }
    Ok(())
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    let default_from = settings.default_from.clone();
    let (tx, rx) = mpsc::channel(QUEUE);
    let mut worker = tokio::spawn(worker(handle.clone(), settings, rx));
    loop {
        tokio::select! {
            done = &mut worker => {
                // The worker ends only when the link closed under it.
                return match done {
                    Ok(result) => result,
                    Err(e) => { handle.error(format!("the sender stopped: {e}")); Err(SdkError::Closed) }
                };
            }
            event = component.next_event() => match event {
                None | Some(Event::Shutdown { .. }) => break,
                // Only a component that serves a function name gets invokes.
                Some(Event::Invoke(_)) => {}
                Some(Event::Refused { topic, reason }) => {
                    handle.warn(format!("publish on {topic} refused: {reason}"))
                }
                Some(Event::Message(m)) => {
                    match parse_request(&m.topic, &m.payload, default_from.as_deref()) {
                        Ok(request) => {
                            if let Err(mpsc::error::TrySendError::Full(r)) = tx.try_send(request) {
                                handle.warn(format!("request {}: {QUEUE} requests are waiting; refused", r.id));
                                publish(&handle, &fail_status(Some(&r.id), "QueueFullException",
                                    &format!("{QUEUE} requests are waiting to be sent; try again later"))).await?;
                            }
                        }
                        Err(invalid) => {
                            handle.warn(format!("invalid request on {}: {}", m.topic, invalid.message));
                            publish(&handle, &fail_status(invalid.id.as_deref(), "InvalidParameter", &invalid.message)).await?;
                        }
                    }
                }
            }
        }
    }
    handle.info("stopping");
    Ok(())
}

#[cfg(test)]
mod tests;
