//! The S3 export task executor: each message is an `S3ExportTaskDefinition`
//! (JSON); the local file it names is uploaded (`PutObject`, or a
//! multipart upload above the threshold) and the task's progress is
//! appended to the status stream as `StatusMessage` JSON.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use evergreen_aws::{AwsClient, AwsError, Method};
use time::OffsetDateTime;

use super::driver::{now_ms, Batch, SendError};
use super::ExportEnv;
use crate::model::{
    EventType, S3ExportTaskDefinition, S3ExportTaskExecutorConfig, Status, StatusContext,
    StatusLevel, StatusMessage,
};

/// The SDK's default and minimum multipart threshold, and S3's minimum part.
pub(crate) const DEFAULT_THRESHOLD: u64 = 5 << 20;
const MIN_PART: u64 = 5 << 20;
const MAX_PARTS: u64 = 10_000;
/// Tries of one part before the whole upload is given up (and retried).
const PART_TRIES: u32 = 3;

/// `key` with its `!{timestamp:FORMAT}` placeholders replaced by `at`
/// (UTC). FORMAT: `yyyy`/`YYYY` (year), `yy`, `MM`, `dd`, `HH`, `mm`, `ss`,
/// `SSS` (milliseconds) and `/`; anything else is an error.
pub fn expand_key(key: &str, at: OffsetDateTime) -> Result<String, String> {
    let mut out = String::with_capacity(key.len());
    let mut rest = key;
    while let Some(start) = rest.find("!{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed placeholder in key {key:?}"))?;
        let inner = &after[..end];
        let (name, format) = inner
            .split_once(':')
            .ok_or_else(|| format!("placeholder !{{{inner}}} has no ':'"))?;
        if name != "timestamp" {
            return Err(format!(
                "unknown placeholder !{{{inner}}}: only !{{timestamp:FORMAT}} is supported"
            ));
        }
        out.push_str(&format_time(format, at)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn format_time(format: &str, at: OffsetDateTime) -> Result<String, String> {
    let chars: Vec<char> = format.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|x| **x == c).count();
        let piece = match (c, run) {
            ('/', _) => "/".repeat(run),
            ('y' | 'Y', 4) => format!("{:04}", at.year()),
            ('y' | 'Y', 2) => format!("{:02}", at.year().rem_euclid(100)),
            ('M', 2) => format!("{:02}", u8::from(at.month())),
            ('d', 2) => format!("{:02}", at.day()),
            ('H', 2) => format!("{:02}", at.hour()),
            ('m', 2) => format!("{:02}", at.minute()),
            ('s', 2) => format!("{:02}", at.second()),
            ('S', 3) => format!("{:03}", at.millisecond()),
            _ => {
                return Err(format!(
                    "timestamp format {format:?}: {:?} is not supported (use yyyy, yy, MM, dd, HH, mm, ss, SSS and /)",
                    c.to_string().repeat(run)
                ))
            }
        };
        out.push_str(&piece);
        i += run;
    }
    Ok(out)
}

/// The local path of `inputUrl`: `file:///abs/path` or an absolute path.
fn input_path(url: &str) -> Result<PathBuf, String> {
    let path = url.strip_prefix("file://").unwrap_or(url);
    let path = percent_decode(path);
    if !path.starts_with('/') {
        return Err(format!(
            "inputUrl {url:?} is not a local file (file:///absolute/path)"
        ));
    }
    Ok(PathBuf::from(path))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| char::from(b).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How a task ended when it did not succeed.
enum TaskError {
    /// Retrying later may help (no answer, 5xx, throttling).
    Retry(String),
    /// It never will: reported `Failure`, the executor goes on.
    Fail(String),
}

impl From<AwsError> for TaskError {
    fn from(e: AwsError) -> Self {
        if e.is_retryable() {
            TaskError::Retry(e.to_string())
        } else {
            TaskError::Fail(e.to_string())
        }
    }
}

/// `userMetadata` as `x-amz-meta-*` headers, or why it cannot be sent
/// (names must be HTTP tokens, values printable ASCII: what a header holds).
fn metadata_headers(task: &S3ExportTaskDefinition) -> Result<Vec<(String, String)>, String> {
    task.user_metadata
        .iter()
        .flatten()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if k.is_empty() || !k.chars().all(token) {
                return Err(format!(
                    "userMetadata key {k:?} cannot be an HTTP header name"
                ));
            }
            if !value.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
                return Err(format!(
                    "userMetadata value of {k:?} must be printable ASCII"
                ));
            }
            Ok((format!("x-amz-meta-{}", k.to_ascii_lowercase()), value))
        })
        .collect()
}

async fn read_range(path: PathBuf, offset: u64, len: u64) -> Result<Vec<u8>, TaskError> {
    tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(&path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        f.take(len).read_to_end(&mut buf)?;
        Ok(buf)
    })
    .await
    .map_err(|e| TaskError::Retry(format!("reading the file: {e}")))?
    .map_err(|e| TaskError::Fail(format!("cannot read the file: {e}")))
}

/// Uploads one task's file; the resolved key and the size on success.
async fn upload(
    aws: &AwsClient,
    task: &S3ExportTaskDefinition,
    threshold: u64,
    min_part: u64,
) -> Result<(String, u64), TaskError> {
    let path = input_path(&task.input_url).map_err(TaskError::Fail)?;
    let size = std::fs::metadata(&path)
        .map_err(|e| TaskError::Fail(format!("cannot read {}: {e}", path.display())))?
        .len();
    let key = expand_key(&task.key, OffsetDateTime::now_utc()).map_err(TaskError::Fail)?;
    if key.is_empty() {
        return Err(TaskError::Fail("the key is empty".into()));
    }
    // URL parsing folds `.` and `..` path segments (even percent-encoded):
    // such a key would land elsewhere.
    if key.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(TaskError::Fail(format!(
            "key {key:?} has a '.' or '..' segment, which Evergreen cannot send"
        )));
    }
    let url = aws.s3_object_url(&task.bucket, &key);
    let meta = metadata_headers(task).map_err(TaskError::Fail)?;
    let meta_refs: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if size <= threshold {
        let body = read_range(path, 0, size).await?;
        aws.signed_request("s3", Method::PUT, &url, &meta_refs, body)
            .await?;
        return Ok((key, size));
    }
    multipart(aws, &url, &meta_refs, path, size, min_part).await?;
    Ok((key, size))
}

async fn multipart(
    aws: &AwsClient,
    url: &str,
    meta: &[(&str, &str)],
    path: PathBuf,
    size: u64,
    min_part: u64,
) -> Result<(), TaskError> {
    let created = aws
        .signed_request(
            "s3",
            Method::POST,
            &format!("{url}?uploads"),
            meta,
            Vec::new(),
        )
        .await?;
    let text = String::from_utf8_lossy(&created.body);
    let upload_id = evergreen_aws::xml_value(&text, "UploadId")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| TaskError::Retry("CreateMultipartUpload answered no UploadId".into()))?;
    let id = evergreen_aws::form_encode(&upload_id);
    let result = parts(aws, url, &id, path, size, min_part).await;
    if result.is_err() {
        // Best effort: an upload left open costs storage until a lifecycle
        // rule removes it.
        if let Err(e) = aws
            .signed_request(
                "s3",
                Method::DELETE,
                &format!("{url}?uploadId={id}"),
                &[],
                Vec::new(),
            )
            .await
        {
            tracing::warn!("cannot abort the multipart upload {upload_id}: {e}");
        }
    }
    result
}

async fn parts(
    aws: &AwsClient,
    url: &str,
    id: &str,
    path: PathBuf,
    size: u64,
    min_part: u64,
) -> Result<(), TaskError> {
    let part_size = min_part.max(MIN_PART).max(size.div_ceil(MAX_PARTS));
    let count = size.div_ceil(part_size);
    let mut etags = Vec::new();
    for n in 1..=count {
        let offset = (n - 1) * part_size;
        let body = read_range(path.clone(), offset, part_size.min(size - offset)).await?;
        let part_url = format!("{url}?partNumber={n}&uploadId={id}");
        let mut tries = 0;
        let answer = loop {
            tries += 1;
            match aws
                .signed_request("s3", Method::PUT, &part_url, &[], body.clone())
                .await
            {
                Ok(a) => break a,
                Err(e) if e.is_retryable() && tries < PART_TRIES => {
                    tokio::time::sleep(Duration::from_secs(u64::from(tries))).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let etag = answer
            .header("etag")
            .ok_or_else(|| TaskError::Retry(format!("UploadPart {n} answered no ETag")))?;
        etags.push(etag.to_string());
    }
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (n, etag) in etags.iter().enumerate() {
        let etag = etag
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('"', "&quot;");
        xml.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag></Part>",
            n + 1
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let done = aws
        .signed_request(
            "s3",
            Method::POST,
            &format!("{url}?uploadId={id}"),
            &[("content-type", "application/xml")],
            xml.into_bytes(),
        )
        .await?;
    // S3 can answer 200 with an error document once the body streams.
    let text = String::from_utf8_lossy(&done.body);
    if text.contains("<Error>") {
        let code = evergreen_aws::xml_value(&text, "Code").unwrap_or_default();
        let message = evergreen_aws::xml_value(&text, "Message").unwrap_or_default();
        return Err(TaskError::Retry(format!(
            "CompleteMultipartUpload: {code}: {message}"
        )));
    }
    Ok(())
}

/// Appends a status message if the configuration asks for its level.
fn report(
    env: &ExportEnv,
    config: &S3ExportTaskExecutorConfig,
    context: StatusContext,
    level: StatusLevel,
    status: Status,
    message: String,
) {
    let Some(status_config) = &config.status_config else {
        return;
    };
    let Some(stream) = &status_config.status_stream_name else {
        return;
    };
    if level > status_config.status_level.unwrap_or(StatusLevel::Info) {
        return;
    }
    let status = StatusMessage {
        event_type: EventType::S3Task,
        status_level: Some(level),
        status,
        status_context: Some(context),
        message: Some(message),
        timestamp_epoch_ms: Some(now_ms()),
    };
    match serde_json::to_vec(&status) {
        Ok(json) => {
            if let Err(e) = env.source.append(stream, json) {
                tracing::warn!("cannot append to the S3 executor's status stream {stream:?}: {e}");
            }
        }
        Err(e) => tracing::warn!("cannot encode a status message: {e}"),
    }
}

pub(crate) async fn send(
    env: &ExportEnv,
    stream: &str,
    config: &S3ExportTaskExecutorConfig,
    batch: &mut Batch,
) -> Result<(), SendError> {
    let threshold = config
        .size_threshold_for_multipart_upload_bytes
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(DEFAULT_THRESHOLD)
        .max(DEFAULT_THRESHOLD);
    for i in batch.pending() {
        let m = &batch.messages[i];
        let mut context = StatusContext {
            s3_export_task_definition: None,
            export_identifier: Some(config.identifier.clone()),
            stream_name: Some(stream.to_string()),
            sequence_number: Some(m.sequence_number),
        };
        let task: S3ExportTaskDefinition = match serde_json::from_slice(&m.payload) {
            Ok(t) => t,
            Err(e) => {
                let why = format!("not an S3ExportTaskDefinition (JSON): {e}");
                report(
                    env,
                    config,
                    context,
                    StatusLevel::Error,
                    Status::Failure,
                    why.clone(),
                );
                batch.skip(i, why);
                continue;
            }
        };
        context.s3_export_task_definition = Some(task.clone());
        if !batch.announced[i] {
            batch.announced[i] = true;
            report(
                env,
                config,
                context.clone(),
                StatusLevel::Info,
                Status::InProgress,
                format!(
                    "uploading {} to s3://{}/{}",
                    task.input_url, task.bucket, task.key
                ),
            );
        }
        match upload(
            &env.aws,
            &task,
            threshold,
            env.s3_min_part_size.unwrap_or(MIN_PART),
        )
        .await
        {
            Ok((key, size)) => {
                report(
                    env,
                    config,
                    context,
                    StatusLevel::Info,
                    Status::Success,
                    format!("uploaded {size} bytes to s3://{}/{key}", task.bucket),
                );
                batch.deliver(i);
            }
            Err(TaskError::Fail(why)) => {
                report(
                    env,
                    config,
                    context,
                    StatusLevel::Error,
                    Status::Failure,
                    why.clone(),
                );
                batch.skip(i, why);
            }
            Err(TaskError::Retry(why)) => {
                return Err(SendError {
                    retryable: true,
                    message: format!("S3 upload of {}: {why}", task.input_url),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn timestamp_placeholders_take_the_upload_time_in_utc() {
        let at = datetime!(2026-03-04 05:06:07.089 UTC);
        assert_eq!(
            expand_key("logs/!{timestamp:yyyy/MM/dd}/f-!{timestamp:HHmmss}.bin", at)
                .expect("should succeed"),
            "logs/2026/03/04/f-050607.bin"
        );
        assert_eq!(
            expand_key("!{timestamp:YYYY}-!{timestamp:yy}!{timestamp:SSS}", at)
                .expect("should succeed"),
            "2026-26089"
        );
        assert_eq!(
            expand_key("plain/key.txt", at).expect("should succeed"),
            "plain/key.txt"
        );
        assert!(expand_key("!{timestamp:yyyy", at)
            .expect_err("should fail")
            .contains("unclosed"));
        assert!(expand_key("!{date:yyyy}", at)
            .expect_err("should fail")
            .contains("unknown placeholder"));
        assert!(expand_key("!{timestamp:EEE}", at)
            .expect_err("should fail")
            .contains("EEE"));
        assert!(expand_key("!{timestamp:yyy}", at)
            .expect_err("should fail")
            .contains("yyy"));
    }

    #[test]
    fn user_metadata_becomes_lowercase_headers_or_a_reason() {
        let mut task = S3ExportTaskDefinition {
            input_url: "file:///x".into(),
            bucket: "bkt".into(),
            key: "k".into(),
            user_metadata: Some(
                serde_json::json!({"Owner": "a b", "n": 3})
                    .as_object()
                    .cloned()
                    .expect("object"),
            ),
        };
        assert_eq!(
            metadata_headers(&task).expect("valid"),
            vec![
                ("x-amz-meta-owner".to_string(), "a b".to_string()),
                ("x-amz-meta-n".to_string(), "3".to_string())
            ]
        );
        task.user_metadata = serde_json::json!({"bad key": "v"}).as_object().cloned();
        assert!(metadata_headers(&task)
            .expect_err("bad")
            .contains("header name"));
        task.user_metadata = serde_json::json!({"k": "é"}).as_object().cloned();
        assert!(metadata_headers(&task).expect_err("bad").contains("ASCII"));
    }

    #[test]
    fn input_urls_are_local_files() {
        assert_eq!(
            input_path("file:///tmp/a%20b").expect("should succeed"),
            PathBuf::from("/tmp/a b")
        );
        assert_eq!(
            input_path("/tmp/x").expect("should succeed"),
            PathBuf::from("/tmp/x")
        );
        assert!(input_path("s3://b/k").is_err());
        assert!(input_path("file://relative").is_err());
    }
}
