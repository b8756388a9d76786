//! The `SNS` connector (Greengrass versions 1–4): publishes each
//! `sns/message` request to an Amazon SNS topic and answers on
//! `sns/message/status`.
//!
//! **Input** (`sns/message`, JSON):
//! `{"request": {"message": …, "subject": …, "sns_topic_arn": …,
//! "message_structure": "json"}, "id": …}`. `request.message` is required;
//! the rest is optional. `sns_topic_arn` overrides `DefaultSNSArn` for that
//! message. With `message_structure: "json"` the message must be a
//! string-encoded JSON object with a string `default` key (SNS's own rule
//! for per-protocol messages), passed to SNS as `MessageStructure=json`.
//!
//! **Output** (`sns/message/status`), one per input message, in input order:
//! `{"response": {"sns_message_id": …, "status": "success"}, "id": …}` or
//! `{"response": {"error": …, "error_message": …, "status": "fail"}, "id": …}`.
//! `id` echoes the request's `id` and is left out when the request had none
//! (or could not be read).
//!
//! **Choices where the guide is silent** (also in docs/connectors.md):
//! * Bad input fails before anything is sent, with `error`
//!   `InvalidInputException` (the guide's own example) and an
//!   `error_message` that names the field (`request.message`,
//!   `request.subject`, `request.sns_topic_arn`, `request.message_structure`,
//!   `id`). Checked here: the payload is a JSON object with an object
//!   `request`; `message` is a non-empty string of at most 262144 bytes
//!   (SNS's 256 KB); `subject` is 1–100 printable ASCII characters not
//!   starting with a space (the guide: ASCII, ≤ 100, starts with a letter,
//!   number or punctuation, no line breaks or control characters);
//!   `sns_topic_arn` matches the `DefaultSNSArn` pattern; `message_structure`
//!   is `json` if given; `id` is a string if given.
//! * A service error that retrying cannot cure fails with the service's
//!   error code as `error` (e.g. `NotFound` for a missing topic, as the
//!   query protocol names it) and its message as `error_message`.
//! * Transient failures (no answer, 5xx, 429, throttling codes, credentials
//!   not yet available) are retried with exponential backoff and jitter
//!   (0.5 s doubling to 10 s), without end: an accepted message is sent
//!   once the endpoint is back, in order, while later requests wait in the
//!   queue. It is lost only when the connector stops (the queue is in
//!   memory, as in Greengrass).
//! * The queue holds `MessageQueueSize` messages (an Evergreen extension
//!   parameter, 1–100000, default 1000; Greengrass's connector documents
//!   none). A request that arrives while it is full fails at once with
//!   `error` `QueueFullException`: the queue never grows past its bound
//!   and never drops what it accepted.
//! * The message is published to the region in its topic ARN (SNS only
//!   accepts a topic in its own region); endpoint overrides
//!   (`evergreen.aws.endpointUrl` / `endpoints.sns`) still apply.
//! * One publish is in flight at a time, so statuses come in input order.
//! * On shutdown the connector keeps sending what is queued until the
//!   supervisor's deadline is near, then stops; what is left is lost.
//!
//! **Isolation.** Both modes, as in Greengrass (`IsolationMode`, version 4).

use std::sync::LazyLock;
use std::time::Duration;

use evergreen_aws::{xml_value, AwsClient, AwsError};
use evergreen_connector_kit::manifest;
use evergreen_connector_kit::{status, Backoff, Notes, Params};
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec};
use evergreen_ipc::sdk::{Component, Event, Handle, SdkError};
use evergreen_ipc::ComponentConfig;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// The request topic.
pub const INPUT_TOPIC: &str = "sns/message";
/// The status topic.
pub const STATUS_TOPIC: &str = "sns/message/status";
/// SNS's maximum message size (256 KB).
pub const MAX_MESSAGE_BYTES: usize = 262_144;
/// Longest subject SNS takes.
pub const MAX_SUBJECT_CHARS: usize = 100;
/// Messages queued when `MessageQueueSize` is not set.
pub const DEFAULT_QUEUE_SIZE: usize = 1000;
/// Largest `MessageQueueSize` (256 KB messages: a bound on memory too).
pub const MAX_QUEUE_SIZE: usize = 100_000;
/// First retry delay after a transient failure.
pub const RETRY_INITIAL: Duration = Duration::from_millis(500);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(10);
/// The SNS query API version.
pub const SNS_VERSION: &str = "2010-03-31";
/// Time kept back from the shutdown deadline for a clean exit.
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(300);

const DEFAULT_ARN: &str = "DefaultSNSArn";
const QUEUE_SIZE: &str = "MessageQueueSize";
/// The guide's pattern for topic ARNs (validation anchors it at both ends).
const TOPIC_ARN_PATTERN: &str = r"arn:aws:sns:([a-z]{2}-[a-z]+-\d{1}):(\d{12}):([a-zA-Z0-9-_]+)$";

static TOPIC_ARN: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(&format!("^(?:{TOPIC_ARN_PATTERN})$")).ok());

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "SNS",
    versions: &[1, 2, 3, 4],
    description: "Publishes each sns/message request to an Amazon SNS topic (DefaultSNSArn, or the \
                  request's sns_topic_arn) and answers on sns/message/status.",
    parameters: &[
        ParameterSpec::new(
            DEFAULT_ARN,
            "ARN of the SNS topic messages go to unless a request names another.",
        )
        .required()
        .pattern(TOPIC_ARN_PATTERN),
        manifest::isolation_mode(4),
        ParameterSpec::new(
            QUEUE_SIZE,
            "Evergreen extension: messages held while SNS cannot be reached (1-100000, default 1000); \
             a request arriving when the queue is full fails with QueueFullException.",
        )
        .pattern("^$|^[1-9][0-9]{0,5}$"),
    ],
    inputs: &[INPUT_TOPIC],
    outputs: &[STATUS_TOPIC],
    ..manifest::AWS_SERVICE
};

/// What the connector runs with, from its `ComponentConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `DefaultSNSArn`, when it is a topic ARN.
    pub default_topic_arn: Option<String>,
    pub queue_size: usize,
}

impl Settings {
    /// The settings, and what to log about them once the link is up.
    pub fn from_config(config: &ComponentConfig) -> (Settings, Notes) {
        let mut p = Params::new(config);
        let default_topic_arn = match p.raw(DEFAULT_ARN) {
            Some(arn) if is_topic_arn(arn) => {
                p.info(format!("default topic {arn}"));
                Some(arn.to_string())
            }
            Some(arn) => {
                p.error(format!(
                    "{DEFAULT_ARN} {arn:?} is not an SNS topic ARN; requests without \
                     sns_topic_arn will fail"
                ));
                None
            }
            None => {
                p.error(format!(
                    "{DEFAULT_ARN} is missing; requests without sns_topic_arn will fail"
                ));
                None
            }
        };
        let queue_size = match p.text(QUEUE_SIZE) {
            None => DEFAULT_QUEUE_SIZE,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_QUEUE_SIZE).contains(&n) => n,
                _ => {
                    p.warn(format!(
                        "{QUEUE_SIZE} {v:?} is not 1-{MAX_QUEUE_SIZE}; using {DEFAULT_QUEUE_SIZE}"
                    ));
                    DEFAULT_QUEUE_SIZE
                }
            },
        };
        p.info(format!("queue of {queue_size} messages"));
        p.finish(Settings {
            default_topic_arn,
            queue_size,
        })
    }
}

fn is_topic_arn(s: &str) -> bool {
    TOPIC_ARN.as_ref().is_some_and(|re| re.is_match(s))
}

/// The region part of a topic ARN (`arn:aws:sns:<region>:…`).
fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

/// One valid request, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub id: Option<String>,
    pub topic_arn: String,
    pub message: String,
    pub subject: Option<String>,
    pub json_structure: bool,
}

impl Publish {
    /// The query parameters of SNS `Publish`.
    pub fn params(&self) -> Vec<(String, String)> {
        let mut p = vec![
            ("TopicArn".to_string(), self.topic_arn.clone()),
            ("Message".to_string(), self.message.clone()),
        ];
        if let Some(s) = &self.subject {
            p.push(("Subject".to_string(), s.clone()));
        }
        if self.json_structure {
            p.push(("MessageStructure".to_string(), "json".to_string()));
        }
        p
    }
}

/// Why a request was not accepted: the failure status to answer with.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The request's `id`, as it was given (not always a string).
    pub id: Option<Value>,
    pub message: String,
}

/// Reads one `sns/message` payload.
pub fn parse_request(
    payload: &[u8],
    default_topic_arn: Option<&str>,
) -> Result<Publish, Rejection> {
    let reject = |id: Option<Value>, message: String| Rejection { id, message };
    let root = status::json_object(payload, "message").map_err(|e| reject(None, e))?;
    let raw_id = root.get("id").cloned();
    let id = match &raw_id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(reject(raw_id, "id must be a string".into())),
    };
    let fail = |message: String| reject(raw_id.clone(), message);
    let request = status::object_field(&root, "request").map_err(fail)?;
    let message = status::nonempty_string(request, "message", "request.message").map_err(fail)?;
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(fail(format!(
            "request.message is {} bytes, more than SNS's {MAX_MESSAGE_BYTES}",
            message.len()
        )));
    }
    let message = message.to_string();
    let subject = match request.get("subject") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            check_subject(s).map_err(|why| fail(format!("request.subject {why}")))?;
            Some(s.clone())
        }
        Some(_) => return Err(fail("request.subject must be a string".into())),
    };
    let topic_arn = match request.get("sns_topic_arn") {
        None | Some(Value::Null) => match default_topic_arn {
            Some(arn) => arn.to_string(),
            None => {
                return Err(fail(format!(
                    "request.sns_topic_arn is missing and {DEFAULT_ARN} is not a topic ARN"
                )))
            }
        },
        Some(Value::String(arn)) if is_topic_arn(arn) => arn.clone(),
        Some(Value::String(arn)) => {
            return Err(fail(format!(
                "request.sns_topic_arn: SNS Topic Arn is invalid: {arn:?} does not match {TOPIC_ARN_PATTERN}"
            )))
        }
        Some(_) => return Err(fail("request.sns_topic_arn must be a string".into())),
    };
    let json_structure = match request.get("message_structure") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "json" => true,
        Some(other) => {
            return Err(fail(format!(
                "request.message_structure must be \"json\" when given, not {other}"
            )))
        }
    };
    if json_structure {
        match serde_json::from_str::<Value>(&message) {
            Ok(Value::Object(o)) if o.get("default").is_some_and(Value::is_string) => {}
            Ok(Value::Object(_)) => return Err(fail(
                "request.message must have a string \"default\" key when message_structure is json"
                    .into(),
            )),
            _ => {
                return Err(fail(
                    "request.message must be a JSON object when message_structure is json".into(),
                ))
            }
        }
    }
    Ok(Publish {
        id,
        topic_arn,
        message,
        subject,
        json_structure,
    })
}

/// SNS subjects: 1–100 printable ASCII characters, not starting with a
/// space. `Err` completes "request.subject …".
fn check_subject(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().count() > MAX_SUBJECT_CHARS {
        return Err(format!("is longer than {MAX_SUBJECT_CHARS} characters"));
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii() || c.is_ascii_control()) {
        return Err(format!(
            "may hold only printable ASCII characters, without line breaks ({c:?} found)"
        ));
    }
    if s.starts_with(' ') {
        return Err("must start with a letter, number or punctuation".into());
    }
    Ok(())
}

/// A success status.
pub fn success_status(id: Option<&str>, message_id: &str) -> Value {
    status::with_id(
        json!({"sns_message_id": message_id, "status": "success"}),
        id.map(|i| Value::String(i.to_string())),
    )
}

/// A failure status; `id` as the request gave it (not always a string).
pub fn failure_status(id: Option<Value>, error: &str, message: &str) -> Value {
    status::with_id(status::fail_response(error, message), id)
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    let aws = AwsClient::new(component.config(), handle.clone());
    let (queue, pending) = mpsc::channel::<Publish>(settings.queue_size);
    let mut worker = tokio::spawn(publisher(aws, handle.clone(), pending));
    let mut deadline = None;
    loop {
        let event = tokio::select! {
            e = component.next_event() => e,
            // The worker ends only if the link to the supervisor closed.
            _ = &mut worker => break,
        };
        match event {
            None => break,
            Some(Event::Shutdown { deadline: d }) => {
                deadline = Some(d);
                break;
            }
            // Only a component that serves a function name gets invokes.
            Some(Event::Invoke(_)) => {}
            Some(Event::Refused { topic, reason }) => {
                handle.warn(format!("publish on {topic} refused: {reason}"))
            }
            Some(Event::Message(m)) => {
                match parse_request(&m.payload, settings.default_topic_arn.as_deref()) {
                    Err(r) => {
                        handle.warn(format!("request from {} rejected: {}", m.source, r.message));
                        evergreen_connector_kit::status::publish(
                            &handle,
                            STATUS_TOPIC,
                            failure_status(r.id, "InvalidInputException", &r.message),
                        )
                        .await?;
                    }
                    Ok(p) => {
                        if let Err(mpsc::error::TrySendError::Full(p)) = queue.try_send(p) {
                            let text = format!(
                                "the connector's queue of {} messages is full; message not sent",
                                settings.queue_size
                            );
                            handle.warn(format!("request {:?}: {text}", p.id));
                            evergreen_connector_kit::status::publish(
                                &handle,
                                STATUS_TOPIC,
                                failure_status(
                                    p.id.map(Value::String),
                                    "QueueFullException",
                                    &text,
                                ),
                            )
                            .await?;
                        }
                    }
                }
            }
        }
    }
    // Let the worker send what it can before the deadline.
    drop(queue);
    if !worker.is_finished() {
        let grace = deadline
            .map(|d| d.saturating_sub(SHUTDOWN_MARGIN))
            .unwrap_or_default();
        if tokio::time::timeout(grace, &mut worker).await.is_err() {
            handle.warn("stopping with messages not yet sent to SNS");
            worker.abort();
        }
    }
    handle.info("stopping");
    Ok(())
}

/// Sends queued messages one at a time, retrying transient failures.
async fn publisher(aws: AwsClient, handle: Handle, mut pending: mpsc::Receiver<Publish>) {
    let mut backoff = Backoff::jittered(RETRY_INITIAL, RETRY_MAX);
    while let Some(p) = pending.recv().await {
        let client = match arn_region(&p.topic_arn) {
            Some(region) if region != aws.region() => aws.with_region(region),
            _ => aws.clone(),
        };
        let mut attempt = 0u32;
        let status = loop {
            attempt += 1;
            match publish(&client, &p).await {
                Ok(message_id) => {
                    handle.debug(format!(
                        "request {:?} published to {} as {message_id}",
                        p.id, p.topic_arn
                    ));
                    break success_status(p.id.as_deref(), &message_id);
                }
                Err(e) if e.is_retryable() => {
                    let delay = backoff.next_delay();
                    // Every try of a long outage would flood the log: the
                    // first few, then every tenth.
                    if attempt <= 3 || attempt.is_multiple_of(10) {
                        handle.warn(format!(
                            "request {:?} to {}: {e}; try {attempt}, retrying in {} ms",
                            p.id,
                            p.topic_arn,
                            delay.as_millis()
                        ));
                    }
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    handle.warn(format!("request {:?} to {} failed: {e}", p.id, p.topic_arn));
                    break failure_status(p.id.clone().map(Value::String), e.code(), &e.message());
                }
            }
        };
        backoff.reset();
        if evergreen_connector_kit::status::publish(&handle, STATUS_TOPIC, status)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// One SNS `Publish`: the message id.
async fn publish(aws: &AwsClient, p: &Publish) -> Result<String, AwsError> {
    let xml = aws
        .query("sns", SNS_VERSION, "Publish", &p.params())
        .await?;
    xml_value(&xml, "MessageId")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| AwsError::Decode(format!("no MessageId in the answer: {xml}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_connector_kit::manifest::ISOLATION_MODE;
    use evergreen_connector_kit::testing::ManifestChecks;
    use evergreen_ipc::LogLevel;

    const ARN: &str = "arn:aws:sns:us-east-1:123456789012:alerts";

    fn config(params: &[(&str, &str)]) -> ComponentConfig {
        evergreen_connector_kit::testing::config(&MANIFEST, 4, params).build()
    }

    fn rejected(payload: &str) -> Rejection {
        parse_request(payload.as_bytes(), Some(ARN)).expect_err(payload)
    }

    #[test]
    fn manifest_patterns_say_what_the_reference_says() {
        assert!(MANIFEST.admits(DEFAULT_ARN, ARN));
        assert!(MANIFEST.admits(DEFAULT_ARN, "arn:aws:sns:eu-west-1:000000000000:a_b-C9"));
        for bad in [
            "arn:aws:sns:us-east-1:12345678901:t",
            "arn:aws:sns:useast1:123456789012:t",
            "arn:aws:sqs:us-east-1:123456789012:t",
            "arn:aws:sns:us-east-1:123456789012:t.fifo",
            "",
        ] {
            assert!(!MANIFEST.admits(DEFAULT_ARN, bad), "{bad}");
        }
        assert!(MANIFEST.admits(ISOLATION_MODE, "NoContainer"));
        assert!(!MANIFEST.admits(ISOLATION_MODE, "Container"));
        assert!(MANIFEST.admits(QUEUE_SIZE, "1") && MANIFEST.admits(QUEUE_SIZE, "100000"));
        assert!(!MANIFEST.admits(QUEUE_SIZE, "0") && !MANIFEST.admits(QUEUE_SIZE, "1000000"));
        MANIFEST.assert_filters_valid();
        assert!(MANIFEST.aws);
    }

    #[test]
    fn settings_from_parameters() {
        let (s, notes) = Settings::from_config(&config(&[(DEFAULT_ARN, ARN)]));
        assert_eq!(s.default_topic_arn.as_deref(), Some(ARN));
        assert_eq!(s.queue_size, DEFAULT_QUEUE_SIZE);
        assert!(notes.iter().all(|(l, _)| *l == LogLevel::Info), "{notes:?}");
        let (s, _) = Settings::from_config(&config(&[(DEFAULT_ARN, ARN), (QUEUE_SIZE, "7")]));
        assert_eq!(s.queue_size, 7);
        let (s, notes) = Settings::from_config(&config(&[(DEFAULT_ARN, "x"), (QUEUE_SIZE, "0")]));
        assert_eq!(s.default_topic_arn, None);
        assert_eq!(s.queue_size, DEFAULT_QUEUE_SIZE);
        assert!(notes.iter().any(|(l, _)| *l == LogLevel::Error));
        assert!(notes.iter().any(|(l, _)| *l == LogLevel::Warn));
    }

    #[test]
    fn the_guide_examples_parse() {
        let p = parse_request(
            br#"{"request": {"subject": "Message subject", "message": "Message data",
                "sns_topic_arn": "arn:aws:sns:us-west-2:123456789012:topic2-name"}, "id": "request123"}"#,
            Some(ARN),
        )
        .expect("example 1");
        assert_eq!(p.id.as_deref(), Some("request123"));
        assert_eq!(
            p.topic_arn,
            "arn:aws:sns:us-west-2:123456789012:topic2-name"
        );
        assert_eq!(arn_region(&p.topic_arn), Some("us-west-2"));
        assert_eq!(
            p.params(),
            vec![
                ("TopicArn".to_string(), p.topic_arn.clone()),
                ("Message".to_string(), "Message data".to_string()),
                ("Subject".to_string(), "Message subject".to_string()),
            ]
        );
        let p = parse_request(
            br#"{"request": {"subject": "Message subject", "message": "{ \"default\": \"Message data\" }",
                "message_structure": "json"}, "id": "request123"}"#,
            Some(ARN),
        )
        .expect("example 2");
        assert_eq!(p.topic_arn, ARN, "the default topic");
        assert!(p.json_structure);
        assert!(p
            .params()
            .contains(&("MessageStructure".into(), "json".into())));
        let p = parse_request(br#"{"request": {"message": "m"}}"#, Some(ARN)).expect("minimal");
        assert_eq!((p.id, p.subject), (None, None));
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases: &[(&str, &str)] = &[
            ("not json", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"id": "a"}"#, "request is missing"),
            (
                r#"{"request": "m", "id": "a"}"#,
                "request must be an object",
            ),
            (
                r#"{"request": {}, "id": "a"}"#,
                "request.message is missing",
            ),
            (
                r#"{"request": {"message": 5}}"#,
                "request.message must be a string",
            ),
            (
                r#"{"request": {"message": ""}}"#,
                "request.message must not be empty",
            ),
            (
                r#"{"request": {"message": "m", "subject": "a\nb"}}"#,
                "request.subject may hold only printable ASCII",
            ),
            (
                r#"{"request": {"message": "m", "subject": "é"}}"#,
                "request.subject may hold only printable ASCII",
            ),
            (
                r#"{"request": {"message": "m", "subject": " lead"}}"#,
                "request.subject must start with",
            ),
            (
                r#"{"request": {"message": "m", "subject": ""}}"#,
                "request.subject must not be empty",
            ),
            (
                r#"{"request": {"message": "m", "subject": 1}}"#,
                "request.subject must be a string",
            ),
            (
                r#"{"request": {"message": "m", "sns_topic_arn": "arn:aws:sns:x"}}"#,
                "request.sns_topic_arn: SNS Topic Arn is invalid",
            ),
            (
                r#"{"request": {"message": "m", "sns_topic_arn": 3}}"#,
                "request.sns_topic_arn must be a string",
            ),
            (
                r#"{"request": {"message": "m", "message_structure": "xml"}}"#,
                "request.message_structure must be \"json\"",
            ),
            (
                r#"{"request": {"message": "m", "message_structure": "json"}}"#,
                "request.message must be a JSON object",
            ),
            (
                r#"{"request": {"message": "{\"email\":\"x\"}", "message_structure": "json"}}"#,
                "string \"default\" key",
            ),
            (
                r#"{"request": {"message": "m"}, "id": 7}"#,
                "id must be a string",
            ),
        ];
        for (payload, expected) in cases {
            let r = rejected(payload);
            assert!(r.message.contains(expected), "{payload}: {}", r.message);
        }
        let long = format!(
            r#"{{"request": {{"message": "m", "subject": "{}"}}}}"#,
            "s".repeat(101)
        );
        assert!(rejected(&long).message.contains("longer than 100"));
        let ok = format!(
            r#"{{"request": {{"message": "m", "subject": "{}"}}}}"#,
            "s".repeat(100)
        );
        assert!(parse_request(ok.as_bytes(), Some(ARN)).is_ok());
        let big = format!(
            r#"{{"request": {{"message": "{}"}}}}"#,
            "x".repeat(MAX_MESSAGE_BYTES + 1)
        );
        assert!(rejected(&big).message.contains("more than SNS's 262144"));
        let r = parse_request(br#"{"request": {"message": "m"}, "id": "r1"}"#, None)
            .expect_err("no default");
        assert!(
            r.message.contains("request.sns_topic_arn is missing"),
            "{}",
            r.message
        );
        assert_eq!(r.id, Some(json!("r1")), "the id is echoed");
        assert_eq!(
            rejected(r#"{"request": {"message": "m"}, "id": 7}"#).id,
            Some(json!(7))
        );
    }

    #[test]
    fn statuses_have_the_guide_shape() {
        assert_eq!(
            success_status(Some("request123"), "f80a81bc"),
            json!({"response": {"sns_message_id": "f80a81bc", "status": "success"}, "id": "request123"})
        );
        assert_eq!(
            failure_status(
                Some(json!("request123")),
                "InvalidInputException",
                "SNS Topic Arn is invalid"
            ),
            json!({"response": {"error": "InvalidInputException", "error_message": "SNS Topic Arn is invalid",
                "status": "fail"}, "id": "request123"})
        );
        assert_eq!(
            failure_status(None, "E", "m"),
            json!({"response": {"error": "E", "error_message": "m", "status": "fail"}})
        );
    }
}
