//! Deployment-time download of secret values from AWS Secrets Manager
//! (`GetSecretValue`, awsJson1.1, signed with the core's credentials), one
//! call per staging label: `AWSCURRENT` and each
//! `AdditionalStagingLabelsToDownload`. Versions that carry several of the
//! requested labels are kept once.

use serde_json::Value;

use super::{names, Origin, PlainVersion, Resolved, ValueKind, MAX_SECRET_BYTES};
use evergreen_runtime::lambda::http::base64_decode;

/// Why a download failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchError {
    /// The secret or the staging label does not exist (or is deleted).
    NotFound(String),
    /// No answer, 5xx, throttling: worth falling back on an earlier copy.
    Transient(String),
    /// Anything else (access denied, a malformed answer).
    Failed(String),
}

/// One `GetSecretValue` answer as a version. Never puts the value in an
/// error message.
pub(crate) fn parse_answer(answer: &Value, stage: &str) -> Result<PlainVersion, FetchError> {
    let bad = |what: &str| FetchError::Failed(format!("GetSecretValue({stage}) answer: {what}"));
    let version_id = answer
        .get("VersionId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("VersionId is missing"))?
        .to_string();
    let mut stages: Vec<String> = answer
        .get("VersionStages")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if !stages.iter().any(|s| s == stage) {
        stages.push(stage.to_string());
    }
    // `CreatedDate` is epoch seconds (a JSON number, possibly fractional).
    let created_ms = answer
        .get("CreatedDate")
        .and_then(Value::as_f64)
        .map(|s| (s * 1000.0).max(0.0) as u64)
        .unwrap_or(0);
    let (kind, value) = match (
        answer.get("SecretString").and_then(Value::as_str),
        answer.get("SecretBinary").and_then(Value::as_str),
    ) {
        (Some(s), _) => (ValueKind::String, s.as_bytes().to_vec()),
        (None, Some(b)) => (
            ValueKind::Binary,
            base64_decode(b).ok_or_else(|| bad("SecretBinary is not base64"))?,
        ),
        (None, None) => return Err(bad("neither SecretString nor SecretBinary")),
    };
    if value.len() > MAX_SECRET_BYTES {
        return Err(bad(&format!("the value is {} bytes", value.len())));
    }
    Ok(PlainVersion {
        version_id,
        stages,
        created_ms,
        kind,
        value,
    })
}

/// Merges per-stage answers into one secret: a version answered for two
/// labels appears once, with both.
pub(crate) fn merge(resource: &str, arn: &str, answers: Vec<PlainVersion>) -> Resolved {
    let mut versions: Vec<PlainVersion> = Vec::new();
    for v in answers {
        match versions.iter_mut().find(|k| k.version_id == v.version_id) {
            Some(known) => {
                for s in &v.stages {
                    if !known.stages.contains(s) {
                        known.stages.push(s.clone());
                    }
                }
            }
            None => versions.push(v),
        }
    }
    Resolved {
        resource_id: resource.to_string(),
        arn: arn.to_string(),
        name: names::friendly_name(arn),
        origin: Origin::SecretsManager,
        versions,
    }
}

/// Calls to one label before a retryable failure counts as transient.
const ATTEMPTS: u32 = 3;

/// Downloads `arn` at every label of `stages`, signed with `creds`, from
/// the `secretsmanager` endpoint of `aws` (an override, or the public one
/// for the core's region — the ARN's own region when it names another).
pub(crate) async fn fetch(
    aws: &evergreen_aws::credentials::AwsAccess,
    creds: evergreen_ipc::AwsCredentials,
    resource: &str,
    arn: &str,
    stages: &[String],
) -> Result<Resolved, FetchError> {
    let region = arn
        .split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .unwrap_or(aws.region());
    let client = evergreen_aws::AwsClient::with_credentials(region, aws.endpoints().clone(), creds);
    let mut answers = Vec::new();
    for stage in stages {
        let body = serde_json::json!({ "SecretId": arn, "VersionStage": stage });
        let mut backoff = evergreen_aws::Backoff::new(
            std::time::Duration::from_millis(200),
            std::time::Duration::from_secs(2),
        );
        let mut attempt = 0;
        let answer = loop {
            attempt += 1;
            match client
                .json("secretsmanager", "secretsmanager.GetSecretValue", &body)
                .await
            {
                Ok(answer) => break answer,
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(classify(&e, stage)),
            }
        };
        answers.push(parse_answer(&answer, stage)?);
    }
    Ok(merge(resource, arn, answers))
}

/// What a failed call means for the deployment.
fn classify(e: &evergreen_aws::AwsError, stage: &str) -> FetchError {
    let text = format!("GetSecretValue(VersionStage {stage}): {e}");
    match e {
        evergreen_aws::AwsError::Service { code, .. } if code == "ResourceNotFoundException" => {
            FetchError::NotFound(text)
        }
        e if e.is_retryable() => FetchError::Transient(text),
        _ => FetchError::Failed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-x-AbCdEf";

    #[test]
    fn answers_become_versions_and_merge_by_version_id() {
        let current = parse_answer(
            &json!({"ARN": ARN, "Name": "greengrass-x", "VersionId": "v1", "SecretString": "tok",
                    "VersionStages": ["AWSCURRENT"], "CreatedDate": 1700000000.5}),
            "AWSCURRENT",
        )
        .expect("parse");
        assert_eq!(current.created_ms, 1_700_000_000_500);
        assert_eq!(current.kind, ValueKind::String);
        let binary = parse_answer(
            &json!({"VersionId": "v1", "SecretBinary": "AAEC", "VersionStages": ["AWSCURRENT", "LABEL"]}),
            "LABEL",
        )
        .expect("parse");
        assert_eq!(binary.value, [0, 1, 2]);
        let merged = merge("R", ARN, vec![current, binary]);
        assert_eq!(merged.versions.len(), 1);
        assert_eq!(merged.versions[0].stages, ["AWSCURRENT", "LABEL"]);
        assert_eq!(merged.name, "greengrass-x");
    }

    #[test]
    fn malformed_answers_are_refused_without_the_value() {
        let e = parse_answer(&json!({"SecretString": "do-not-show"}), "AWSCURRENT")
            .expect_err("no VersionId");
        assert!(
            matches!(&e, FetchError::Failed(m) if m.contains("VersionId") && !m.contains("do-not-show"))
        );
        assert!(parse_answer(&json!({"VersionId": "v"}), "AWSCURRENT").is_err());
        assert!(parse_answer(
            &json!({"VersionId": "v", "SecretBinary": "!!"}),
            "AWSCURRENT"
        )
        .is_err());
    }
}
