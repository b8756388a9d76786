//! The token exchange service for functions (Greengrass V1's `GGTES`):
//! `GET /2016-11-01/credentialprovider/` on the Lambda endpoint answers the
//! core's AWS credentials (the chain connectors use, see
//! `evergreen_aws::credentials`) in the container-credentials JSON that
//! botocore's `ContainerProvider` and the other AWS SDKs read.
//!
//! Every Python function's child is told the URL in
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` (`http://localhost:<port>/…`, the
//! value V1 set; botocore only accepts plain HTTP to a loopback address or
//! `localhost`) and sends its worker token in `Authorization`, which the
//! endpoint checks before it routes anything: a missing or unknown token is
//! 403, and a killed worker's token dies with it.
//!
//! Credentials are never logged: only the reason there are none, once per
//! outage, in the runtime log.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use evergreen_ipc::AwsCredentials;
use serde_json::json;

use super::http::Response;
use super::LambdaHub;

/// The path (below `/2016-11-01/`) the URL names.
pub(super) const PATH: &str = "credentialprovider";

/// How long credentials without an expiry (static keys) are announced for:
/// botocore asks again this long after (less its refresh margin), so a key
/// rotated in the core's configuration reaches functions within the hour.
const STATIC_LIFETIME: Duration = Duration::from_secs(3600);

/// The URL a function is told (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
pub(crate) fn full_uri(port: u16) -> String {
    format!("http://localhost:{port}/2016-11-01/{PATH}/")
}

/// Remembers whether the runtime log already says why there are no
/// credentials, so an outage is told once, not on every retry of every
/// function.
#[derive(Debug, Default)]
pub(super) struct Outage {
    logged: Cell<bool>,
}

/// Answers one credentials request from a function, authenticated by the
/// endpoint already.
pub(super) async fn answer(hub: &LambdaHub, caller_arn: &str) -> Response {
    let source = hub.credentials.borrow().clone();
    let result = match source {
        Some(source) => source.credentials().await,
        None => Err("this runtime hands no AWS credentials to functions".to_string()),
    };
    match result {
        Ok(creds) => {
            if hub.credential_outage.logged.replace(false) {
                tracing::info!("token exchange: AWS credentials are available to functions again");
            }
            Response::new(200)
                .header("Content-Type", "application/json")
                .body(document(&creds, SystemTime::now()).to_string())
        }
        Err(why) => {
            if !hub.credential_outage.logged.replace(true) {
                tracing::warn!(
                    "token exchange: {caller_arn} asked for AWS credentials and the core has none to give: {why} \
                     (told once until credentials are available again)"
                );
            }
            // 503, not 404: botocore retries a non-200 answer a few times and
            // then raises it with this text, which names the reason.
            Response::error(
                503,
                &format!("Evergreen token exchange: no AWS credentials: {why}"),
            )
        }
    }
}

/// The container-credentials document: `AccessKeyId`, `SecretAccessKey`,
/// `Token` (null for long-lived keys) and `Expiration` in RFC 3339.
fn document(creds: &AwsCredentials, now: SystemTime) -> serde_json::Value {
    let expires = creds
        .expiration_ms
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
        .unwrap_or(now + STATIC_LIFETIME);
    json!({
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.session_token,
        "Expiration": rfc3339(expires),
    })
}

/// `2026-12-07T09:00:00Z` (whole seconds, UTC), as ECS and V1 wrote it.
fn rfc3339(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(253_402_300_799); // 9999-12-31T23:59:59Z, the format's end.
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_has_botocores_fields() {
        let creds = AwsCredentials {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            session_token: Some("tok".into()),
            expiration_ms: Some(1_796_634_000_000),
        };
        let doc = document(&creds, UNIX_EPOCH);
        assert_eq!(doc["AccessKeyId"], "AKID");
        assert_eq!(doc["SecretAccessKey"], "secret");
        assert_eq!(doc["Token"], "tok");
        assert_eq!(doc["Expiration"], "2026-12-07T09:00:00Z");
    }

    #[test]
    fn static_keys_get_an_hour_and_a_null_token() {
        let creds = AwsCredentials {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            session_token: None,
            expiration_ms: None,
        };
        let doc = document(&creds, UNIX_EPOCH + Duration::from_secs(86_400));
        assert_eq!(doc["Token"], serde_json::Value::Null);
        assert_eq!(doc["Expiration"], "1970-01-02T01:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(300_000_000_000)),
            "9999-12-31T23:59:59Z"
        );
    }

    #[test]
    fn the_uri_is_one_botocore_accepts() {
        assert_eq!(
            full_uri(8000),
            "http://localhost:8000/2016-11-01/credentialprovider/"
        );
    }
}
