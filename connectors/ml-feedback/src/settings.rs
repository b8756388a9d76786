//! The connector's parameters: `FeedbackConfigurationMap` read into one
//! [`FeedbackConfig`] per configuration id, and `RequestLimit`. Every
//! problem is found and named (configuration id and field), never a panic.
//!
//! V1 refused to start when any part of the map was wrong. Evergreen keeps
//! the connector up (it is pinned: a refusal would restart it in a loop)
//! and keeps every configuration that is valid; an invalid one is logged
//! at error level at start, and each request naming it is refused with the
//! same words, so the mistake shows where the caller looks too.

use std::collections::BTreeMap;
use std::sync::Arc;

use evergreen_connector_kit::{Notes, Params};
use evergreen_ipc::ComponentConfig;
use serde_json::{Map, Value};

use crate::sampling::{Strategy, ENTROPY, LEAST_CONFIDENCE, MARGIN, RANDOM_SAMPLING};

pub const FEEDBACK_CONFIGURATION_MAP: &str = "FeedbackConfigurationMap";
pub const REQUEST_LIMIT: &str = "RequestLimit";

/// The fields of one feedback configuration.
pub const S3_BUCKET_NAME: &str = "s3-bucket-name";
pub const CONTENT_TYPE: &str = "content-type";
pub const S3_PREFIX: &str = "s3-prefix";
pub const FILE_EXT: &str = "file-ext";
pub const SAMPLING_STRATEGY: &str = "sampling-strategy";
pub const STRATEGY_NAME: &str = "strategy-name";
pub const RATE: &str = "rate";
pub const THRESHOLD: &str = "threshold";

/// Requests held when `RequestLimit` is absent, empty or 0. V1 held an
/// unbounded number then (Python's `Queue(0)`); each request holds its
/// model input (up to an IPC frame, 1 MiB), so Evergreen keeps a bound.
pub const DEFAULT_REQUEST_LIMIT: usize = 100;
/// The largest `RequestLimit` (V1's pattern allows three digits).
pub const MAX_REQUEST_LIMIT: usize = 999;
/// S3's longest object key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Bytes of a key besides the prefix and extension: `/`, a UUID, `.`.
const KEY_OVERHEAD: usize = 1 + 36 + 1;

/// One feedback configuration, ready to use.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackConfig {
    pub bucket: String,
    pub content_type: String,
    /// Without leading or trailing `/`; empty for none.
    pub prefix: String,
    /// Without a leading `.`; empty for none.
    pub file_ext: String,
    /// `None`: every sample is uploaded (V1: "If omitted, the connector
    /// tries to upload all the samples that it receives").
    pub strategy: Option<Strategy>,
}

/// What the connector runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The usable configurations by id.
    pub configs: BTreeMap<String, Arc<FeedbackConfig>>,
    /// Configuration ids given but unusable, with why.
    pub unusable: BTreeMap<String, String>,
    /// Why the whole map is unusable (missing, not JSON, not an object).
    pub map_error: Option<String>,
    /// Requests held (queued or being uploaded) before new ones are refused.
    pub request_limit: usize,
}

impl Settings {
    /// The settings, and what to log about them once the link is up.
    pub fn from_config(config: &ComponentConfig) -> (Settings, Notes) {
        let mut p = Params::new(config);
        let mut configs = BTreeMap::new();
        let mut unusable = BTreeMap::new();
        let map_error = match p.text(FEEDBACK_CONFIGURATION_MAP) {
            None => Some(format!("{FEEDBACK_CONFIGURATION_MAP} is missing or empty")),
            Some(text) => match parse_map(&text) {
                Err(e) => Some(format!("{FEEDBACK_CONFIGURATION_MAP}: {e}")),
                Ok(parsed) => {
                    for (id, entry) in parsed {
                        match entry {
                            Ok((c, warnings)) => {
                                for w in warnings {
                                    p.warn(format!("{FEEDBACK_CONFIGURATION_MAP} {id:?}: {w}"));
                                }
                                p.info(format!("feedback configuration {id:?}: {}", describe(&c)));
                                configs.insert(id, Arc::new(c));
                            }
                            Err(problems) => {
                                let why = problems.join("; ");
                                p.error(format!(
                                    "{FEEDBACK_CONFIGURATION_MAP}: configuration {id:?} is invalid \
                                     and requests naming it will be refused: {why}"
                                ));
                                unusable.insert(id, why);
                            }
                        }
                    }
                    None
                }
            },
        };
        if let Some(e) = &map_error {
            p.error(format!("{e}; every request will be refused"));
        }
        let request_limit = match p.text(REQUEST_LIMIT) {
            None => DEFAULT_REQUEST_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(0) => DEFAULT_REQUEST_LIMIT,
                Ok(n) if n <= MAX_REQUEST_LIMIT => n,
                _ => {
                    p.error(format!(
                        "{REQUEST_LIMIT} {v:?} is not a number 0-{MAX_REQUEST_LIMIT}; using {DEFAULT_REQUEST_LIMIT}"
                    ));
                    DEFAULT_REQUEST_LIMIT
                }
            },
        };
        p.info(format!("at most {request_limit} requests held"));
        p.finish(Settings {
            configs,
            unusable,
            map_error,
            request_limit,
        })
    }

    /// The configuration named `id`, or why a request naming it is refused.
    pub fn lookup(&self, id: &str) -> Result<Arc<FeedbackConfig>, String> {
        if let Some(c) = self.configs.get(id) {
            return Ok(c.clone());
        }
        if let Some(e) = &self.map_error {
            return Err(format!("the connector has no feedback configurations: {e}"));
        }
        match self.unusable.get(id) {
            Some(why) => Err(format!("feedback configuration {id:?} is invalid: {why}")),
            None => Err(format!(
                "Feedback configuration map does not contain config_id: {id}"
            )),
        }
    }
}

/// One configuration for the start-up log.
fn describe(c: &FeedbackConfig) -> String {
    let strategy = match c.strategy {
        None => "every sample".to_string(),
        Some(Strategy::Random { rate }) => format!("{RANDOM_SAMPLING} rate {rate}"),
        Some(
            s @ (Strategy::LeastConfidence { threshold }
            | Strategy::Margin { threshold }
            | Strategy::Entropy { threshold }),
        ) => format!("{} threshold {threshold}", s.name()),
    };
    let ext = if c.file_ext.is_empty() {
        String::new()
    } else {
        format!(".{}", c.file_ext)
    };
    let prefix = if c.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", c.prefix)
    };
    format!(
        "s3://{}/{prefix}<uuid>{ext} ({}), {strategy}",
        c.bucket, c.content_type
    )
}

/// The result of one entry: the configuration and warnings, or its problems.
pub type Entry = Result<(FeedbackConfig, Vec<String>), Vec<String>>;

/// Reads the map: each id with its configuration or its problems; `Err`
/// when the text is not a JSON object at all.
pub fn parse_map(text: &str) -> Result<BTreeMap<String, Entry>, String> {
    let map = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            return Err(format!(
                "must be a JSON object of configurations, not {}",
                evergreen_connector_kit::status::kind(&other)
            ))
        }
        Err(e) => return Err(format!("is not JSON: {e}")),
    };
    if map.is_empty() {
        return Err("holds no feedback configuration".into());
    }
    Ok(map
        .into_iter()
        .map(|(id, value)| {
            let entry = match check_config_id(&id) {
                Err(e) => Err(vec![e]),
                Ok(()) => match value {
                    Value::Object(fields) => parse_entry(&fields),
                    other => Err(vec![format!(
                        "must be an object, not {}",
                        evergreen_connector_kit::status::kind(&other)
                    )]),
                },
            };
            (id, entry)
        })
        .collect())
}

/// V1's configuration id pattern `^[a-zA-Z0-9][a-zA-Z0-9-]{1,62}$`.
pub fn check_config_id(id: &str) -> Result<(), String> {
    let ok = (2..=63).contains(&id.len())
        && id
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_alphanumeric() || (i > 0 && b == b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the id {:?} does not match ^[a-zA-Z0-9][a-zA-Z0-9-]{{1,62}}$",
            evergreen_connector_kit::status::clip(id, 80)
        ))
    }
}

/// V1's bucket pattern `^[a-z0-9\.\-]{3,63}$`.
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
}

/// Printable ASCII (space allowed): what an HTTP header value holds.
pub fn header_safe(s: &str) -> bool {
    s.chars().all(|c| c == ' ' || c.is_ascii_graphic())
}

/// Reads one configuration's fields: every problem, or the configuration
/// and warnings (fields V1 does not know, which it ignored too).
pub fn parse_entry(fields: &Map<String, Value>) -> Entry {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let string = |key: &str, problems: &mut Vec<String>| -> Option<String> {
        match fields.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                problems.push(format!(
                    "{key} must be a string, not {}",
                    evergreen_connector_kit::status::kind(other)
                ));
                None
            }
        }
    };
    let bucket = string(S3_BUCKET_NAME, &mut problems).unwrap_or_default();
    if !valid_bucket(&bucket) {
        problems.push(if bucket.is_empty() {
            format!("{S3_BUCKET_NAME} is required")
        } else {
            format!("{S3_BUCKET_NAME} {bucket:?} does not match ^[a-z0-9\\.\\-]{{3,63}}$")
        });
    }
    let content_type = string(CONTENT_TYPE, &mut problems).unwrap_or_default();
    if content_type.trim().is_empty() {
        problems.push(format!("{CONTENT_TYPE} is required"));
    } else if !header_safe(&content_type) {
        problems.push(format!(
            "{CONTENT_TYPE} {content_type:?} must be printable ASCII (it is sent as an HTTP header)"
        ));
    }
    let prefix = string(S3_PREFIX, &mut problems)
        .map(|p| p.trim_matches('/').to_string())
        .unwrap_or_default();
    if prefix.split('/').any(|seg| seg == "." || seg == "..") {
        problems.push(format!(
            "{S3_PREFIX} {prefix:?} has a '.' or '..' segment, which Evergreen cannot send"
        ));
    }
    if prefix.chars().any(char::is_control) {
        problems.push(format!("{S3_PREFIX} must not hold control characters"));
    }
    let file_ext = string(FILE_EXT, &mut problems)
        .map(|e| e.strip_prefix('.').unwrap_or(&e).to_string())
        .unwrap_or_default();
    if file_ext.contains('/') || file_ext.chars().any(char::is_control) {
        problems.push(format!(
            "{FILE_EXT} {file_ext:?} must not hold '/' or control characters"
        ));
    }
    if prefix.len() + file_ext.len() + KEY_OVERHEAD > MAX_KEY_BYTES {
        problems.push(format!(
            "{S3_PREFIX} and {FILE_EXT} make keys longer than S3's {MAX_KEY_BYTES} bytes"
        ));
    }
    let strategy = match fields.get(SAMPLING_STRATEGY) {
        None | Some(Value::Null) => None,
        Some(v) => match parse_strategy(v) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(format!("{SAMPLING_STRATEGY}: {e}"));
                None
            }
        },
    };
    for key in fields.keys() {
        if ![
            S3_BUCKET_NAME,
            CONTENT_TYPE,
            S3_PREFIX,
            FILE_EXT,
            SAMPLING_STRATEGY,
        ]
        .contains(&key.as_str())
        {
            warnings.push(format!("unknown field {key:?} ignored"));
        }
    }
    if problems.is_empty() {
        Ok((
            FeedbackConfig {
                bucket,
                content_type,
                prefix,
                file_ext,
                strategy,
            },
            warnings,
        ))
    } else {
        Err(problems)
    }
}

/// Reads `sampling-strategy`: an object, or (the guide calls its type "a
/// well-formed JSON string") a string holding one.
pub fn parse_strategy(v: &Value) -> Result<Strategy, String> {
    let owned;
    let fields = match v {
        Value::Object(m) => m,
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => {
                owned = m;
                &owned
            }
            _ => return Err("a string here must hold a JSON object".into()),
        },
        other => {
            return Err(format!(
                "must be an object, not {}",
                evergreen_connector_kit::status::kind(other)
            ))
        }
    };
    let name = match fields.get(STRATEGY_NAME) {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(format!("{STRATEGY_NAME} must be a string")),
        None => return Err(format!("{STRATEGY_NAME} is required")),
    };
    let number = |key: &str| -> Result<f64, String> {
        match fields.get(key) {
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| format!("{key} is not a finite number")),
            Some(other) => Err(format!(
                "{key} must be a number, not {}",
                evergreen_connector_kit::status::kind(other)
            )),
            None => Err(format!("{key} is required for {name}")),
        }
    };
    let unit = |key: &str| -> Result<f64, String> {
        let n = number(key)?;
        if (0.0..=1.0).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{key} {n} is not within 0.0-1.0"))
        }
    };
    match name {
        RANDOM_SAMPLING => Ok(Strategy::Random { rate: unit(RATE)? }),
        LEAST_CONFIDENCE => Ok(Strategy::LeastConfidence {
            threshold: unit(THRESHOLD)?,
        }),
        MARGIN => Ok(Strategy::Margin {
            threshold: unit(THRESHOLD)?,
        }),
        ENTROPY => {
            let threshold = number(THRESHOLD)?;
            if threshold < 0.0 {
                return Err(format!("{THRESHOLD} {threshold} is below 0.0"));
            }
            Ok(Strategy::Entropy { threshold })
        }
        other => Err(format!(
            "{STRATEGY_NAME} {:?} is not one of {RANDOM_SAMPLING}, {LEAST_CONFIDENCE}, {MARGIN}, {ENTROPY}",
            evergreen_connector_kit::status::clip(other, 80)
        )),
    }
}
