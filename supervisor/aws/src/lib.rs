//! Evergreen's AWS client: SigV4-signed calls over reqwest for the
//! cloud-service connectors (SNS, Kinesis Firehose, CloudWatch Metrics, IoT
//! Analytics) and the supervisor's own calls (Secrets Manager).
//!
//! **Why not the AWS SDK.** Each `aws-sdk-*` crate costs minutes of build
//! and megabytes of binary, and every connector here makes one or two kinds
//! of call. The three wire protocols those calls use are small: awsJson1.1
//! ([`AwsClient::json`]: Firehose, Secrets Manager), the query protocol
//! ([`AwsClient::query`]: SNS, CloudWatch) and REST-JSON
//! ([`AwsClient::rest_json`]: IoT Analytics). So this crate builds the body,
//! signs it with `aws-sigv4` (the SDK's own signer, alone) and sends it with
//! reqwest. `aws-sigv4` 1.6 needs rustc 1.94.1, within our 1.95.
//!
//! **TLS.** [`http_client`] builds reqwest on a preconfigured rustls
//! `ClientConfig` with the *ring* provider (the MQTT side already links it;
//! no aws-lc C build) and `rustls-platform-verifier`, which on Linux trusts
//! the system's CA store (the same crate reqwest pulls in anyway). Timeouts:
//! 5 s to connect, 30 s for a whole call, so a dead endpoint costs a
//! connector one retry slot, not a hang.
//!
//! **Credentials.** [`AwsClient::new`] asks the supervisor
//! (`Handle::aws_credentials`, Greengrass's token exchange service) on the
//! first call, caches the answer and asks again 5 minutes before
//! `expiration_ms`. An answer of the service that says the credentials are
//! expired or unknown drops the cache, so the next call asks again.
//! Credentials are never logged: [`AwsError`] messages may carry the
//! service's text, which names at most the access key id.
//!
//! **Endpoints.** `ComponentConfig::endpoints` maps a signing name (`sns`,
//! `firehose`, `monitoring`, `iotanalytics`, `secretsmanager`) to a URL
//! (the core's `evergreen.aws.endpointUrl` / `evergreen.aws.endpoints`);
//! otherwise `https://{service}.{region}.amazonaws.com` (`.com.cn` for the
//! `cn-` regions). The signing region is the configured region; the signing
//! name is the map key, so one moto server can answer every service.
//!
//! **Errors.** A call either gets no HTTP answer ([`AwsError::Transport`]),
//! or an answer that is not 2xx ([`AwsError::Service`]), whose `code` is
//! the service's error code: the `x-amzn-ErrorType` header, else the JSON
//! body's `__type` / `code` (namespace before `#` and suffix after `:`
//! removed), else the XML body's `<Code>`, else the HTTP reason phrase
//! without spaces (e.g. `ServiceUnavailable`). [`AwsError::is_retryable`]
//! says whether trying again later can help: no answer, a 5xx, a 429, a
//! throttling code, or no credentials yet.
//!
//! **API.** The contract of issue #7 (`http_client`, `AwsClient::{new,
//! with_credentials, endpoint, json, query, rest_json}`, `AwsError` with
//! `is_retryable`, `Backoff`, `xml_value`) is unchanged; added to it:
//! `AwsClient::with_region` / `region` (a connector's `PublishRegion`, an
//! SNS topic in another region), `AwsError::code` / `message` (a status
//! message's `error` / `error_message`), `classify` and `form_encode` (the
//! pure parts, public for tests), and the re-exported `Method`. For the
//! stream manager's exports: `AwsClient::with_access` (the core's own
//! credentials chain, asked on every call), `signed_request` and
//! [`RawAnswer`] (S3's REST-XML calls: a full URL, answer headers such as
//! `ETag`; signing name `s3` signs the S3 way), `endpoint_override` and
//! `domain`; `kinesis`, `iotsitewise` (default host
//! `data.iotsitewise.{region}`) and `s3` take `evergreen.aws.endpointUrl`.
//!
//! **Tests.** moto does not check signatures, so the signing is checked by
//! the IoT Analytics stand-in of the integration tests
//! (`tests/src/iotanalytics_server.rs`), which verifies SigV4 from scratch.

pub mod credentials;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use evergreen_ipc::sdk::Handle;
use evergreen_ipc::{AwsCredentials, ComponentConfig};
/// The HTTP method type [`AwsClient::rest_json`] takes (reqwest's).
pub use reqwest::Method;

/// Time allowed to open a connection (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a whole call, answer body included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Credentials are asked for again this long before they expire.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// Longest service message kept in an [`AwsError`] (bodies can be pages of HTML).
const MESSAGE_MAX: usize = 1024;

/// The reqwest client every AWS and HTTP connector uses: rustls on ring,
/// the system's trusted roots, 5 s connect and 30 s call timeouts.
pub fn http_client() -> reqwest::Client {
    match try_http_client() {
        Ok(client) => client,
        Err(e) => {
            // Only a broken TLS set-up gets here. Make ring the process's
            // provider so reqwest's own default can be built: better a
            // client that cannot verify HTTPS than a panic in a
            // connector's start.
            eprintln!("evergreen-aws: cannot build the HTTP client ({e}); using defaults");
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(CALL_TIMEOUT)
                .build()
                .unwrap_or_default()
        }
    }
}

/// [`http_client`] that also trusts `extra_roots` (DER certificates, e.g.
/// Splunk's `SplunkCustomCALocation`), or why it could not be built.
pub fn try_http_client_with_roots(extra_roots: &[Vec<u8>]) -> Result<reqwest::Client, String> {
    if extra_roots.is_empty() {
        return try_http_client();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = extra_roots
        .iter()
        .map(|der| rustls::pki_types::CertificateDer::from(der.clone()));
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
            .map_err(|e| format!("cannot load the trusted roots: {e}"))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A client for large downloads (fleet bundles): the system's trusted roots, 5 s connect, and
/// a 60 s limit on each read instead of one on the whole call, which a slow link and a large
/// file would exceed.
pub fn download_client() -> Result<reqwest::Client, String> {
    let tls = platform_tls()?;
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(Duration::from_secs(60))
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| e.to_string())
}

/// TLS with the system's trusted roots on ring, or why it could not be set up.
fn platform_tls() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            rustls_platform_verifier::BuilderVerifierExt::with_platform_verifier(b)
                .map(|b| b.with_no_client_auth())
        })
        .map_err(|e| format!("no TLS verifier: {e}"))
}

/// [`http_client`], or why the preconfigured TLS set-up failed.
pub fn try_http_client() -> Result<reqwest::Client, String> {
    let tls = platform_tls()?;
    // reqwest checks the preconfigured config's type at run time (`Any`):
    // it must be the rustls 0.23 `ClientConfig` reqwest itself links.
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| e.to_string())
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsError {
    /// No HTTP answer: connection refused or reset, timeout, DNS.
    #[error("no answer from the endpoint: {0}")]
    Transport(String),
    /// The service answered with an error.
    #[error("{code} (HTTP {status}): {message}")]
    Service {
        status: u16,
        code: String,
        message: String,
    },
    /// The supervisor has no credentials for us (yet).
    #[error("no AWS credentials: {0}")]
    Credentials(String),
    /// A 2xx answer this client cannot read, or a request it cannot build.
    #[error("cannot decode the answer: {0}")]
    Decode(String),
}

/// Service error codes that mean "slow down and try again".
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "Throttled",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Service error codes that mean "a transient fault on their side".
const TRANSIENT_CODES: &[&str] = &[
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalFailure",
    "InternalError",
    "InternalServiceError",
    "InternalServiceErrorException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// Service error codes that mean our credentials are stale: drop the
/// cache, ask the supervisor again, retry.
const STALE_CREDENTIAL_CODES: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
];

impl AwsError {
    /// Whether the same call may succeed later: no answer, a 5xx, a 429, a
    /// throttling or transient code, stale or missing credentials.
    pub fn is_retryable(&self) -> bool {
        match self {
            AwsError::Transport(_) | AwsError::Credentials(_) => true,
            AwsError::Service { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || THROTTLING_CODES.contains(&code.as_str())
                    || TRANSIENT_CODES.contains(&code.as_str())
                    || STALE_CREDENTIAL_CODES.contains(&code.as_str())
            }
            AwsError::Decode(_) => false,
        }
    }

    /// The name for a status message's `error` field: the service's code,
    /// or a fixed name for the other kinds.
    pub fn code(&self) -> &str {
        match self {
            AwsError::Service { code, .. } => code,
            AwsError::Transport(_) => "ConnectionError",
            AwsError::Credentials(_) => "NoCredentialsError",
            AwsError::Decode(_) => "DecodeError",
        }
    }

    /// The text for a status message's `error_message` field.
    pub fn message(&self) -> String {
        match self {
            AwsError::Service { message, .. } if !message.is_empty() => message.clone(),
            other => other.to_string(),
        }
    }

    /// The `error` and `error_message` of the batching connectors'
    /// statuses (CloudWatchMetrics, KinesisFirehose): the service's code and
    /// message, else a name for the kind (`InvalidResponse` for an answer
    /// that cannot be read) and the bare detail.
    pub fn code_and_detail(&self) -> (String, String) {
        match self {
            AwsError::Service { code, message, .. } => (code.clone(), message.clone()),
            AwsError::Transport(m) => ("ConnectionError".to_string(), m.clone()),
            AwsError::Credentials(m) => ("NoCredentialsError".to_string(), m.clone()),
            AwsError::Decode(m) => ("InvalidResponse".to_string(), m.clone()),
        }
    }

    fn stale_credentials(&self) -> bool {
        matches!(self, AwsError::Service { code, .. } if STALE_CREDENTIAL_CODES.contains(&code.as_str()))
    }
}

/// Where a client's credentials come from.
#[derive(Debug, Clone)]
enum CredentialSource {
    Fixed(AwsCredentials),
    /// The supervisor's own chain, asked on every call (it caches and
    /// refreshes the IoT provider's temporary credentials itself).
    Access(Arc<credentials::AwsAccess>),
    Supervisor {
        handle: Handle,
        cache: Arc<tokio::sync::Mutex<Option<AwsCredentials>>>,
    },
}

/// A 2xx answer of [`AwsClient::signed_request`]: status, headers (names
/// lowercase; values that are not text left out) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A SigV4 client for one region. Cheap to clone (clones share the HTTP
/// connection pool and the credentials cache).
#[derive(Debug, Clone)]
pub struct AwsClient {
    http: reqwest::Client,
    region: String,
    endpoints: BTreeMap<String, String>,
    credentials: CredentialSource,
}

impl AwsClient {
    /// Region and endpoint overrides from the config; credentials asked from
    /// the supervisor through `handle.aws_credentials()`, cached, asked again
    /// 5 minutes before `expiration_ms`.
    pub fn new(config: &ComponentConfig, handle: Handle) -> Self {
        AwsClient {
            http: http_client(),
            region: config.region.clone(),
            endpoints: config.endpoints.clone(),
            credentials: CredentialSource::Supervisor {
                handle,
                cache: Arc::default(),
            },
        }
    }

    /// Fixed credentials (the supervisor's own calls, tests).
    pub fn with_credentials(
        region: &str,
        endpoints: BTreeMap<String, String>,
        creds: AwsCredentials,
    ) -> Self {
        AwsClient {
            http: http_client(),
            region: region.to_string(),
            endpoints,
            credentials: CredentialSource::Fixed(creds),
        }
    }

    /// The supervisor's own calls (the stream manager's exports): region,
    /// endpoint overrides and credentials from the core's [`AwsAccess`]
    /// chain, asked on every call so refreshed credentials are used.
    ///
    /// [`AwsAccess`]: credentials::AwsAccess
    pub fn with_access(access: Arc<credentials::AwsAccess>) -> Self {
        AwsClient {
            http: http_client(),
            region: access.region().to_string(),
            endpoints: access.endpoints().clone(),
            credentials: CredentialSource::Access(access),
        }
    }

    /// The same client for another region (a connector's `PublishRegion`):
    /// same credentials, pool and endpoint overrides.
    pub fn with_region(&self, region: &str) -> Self {
        AwsClient {
            region: region.to_string(),
            ..self.clone()
        }
    }

    /// The signing region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The override for `service`, or `https://{service}.{region}.amazonaws.com`
    /// (IoT SiteWise's data plane, signing name `iotsitewise`, is
    /// `https://data.iotsitewise.{region}.amazonaws.com`).
    pub fn endpoint(&self, service: &str) -> String {
        if let Some(url) = self.endpoint_override(service) {
            return url;
        }
        let host = match service {
            "iotsitewise" => "data.iotsitewise",
            other => other,
        };
        format!("https://{host}.{}.{}", self.region, self.domain())
    }

    /// The configured endpoint for `service`, if any (no trailing `/`).
    pub fn endpoint_override(&self, service: &str) -> Option<String> {
        self.endpoints
            .get(service)
            .map(|url| url.trim_end_matches('/').to_string())
    }

    /// An S3 object's URL: path style under an endpoint override (moto, a
    /// gateway) or for bucket names with dots (TLS wildcard), else virtual
    /// host style `https://{bucket}.s3.{region}.amazonaws.com/{key}`.
    pub fn s3_object_url(&self, bucket: &str, key: &str) -> String {
        let key = encode_s3_key(key);
        match self.endpoint_override("s3") {
            Some(base) => format!("{base}/{bucket}/{key}"),
            None if bucket.contains('.') => format!("{}/{bucket}/{key}", self.endpoint("s3")),
            None => format!(
                "https://{bucket}.s3.{}.{}/{key}",
                self.region(),
                self.domain()
            ),
        }
    }

    /// `amazonaws.com`, or `amazonaws.com.cn` for the `cn-` regions.
    pub fn domain(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        }
    }

    /// awsJson1.1 (`X-Amz-Target: <target>`, e.g.
    /// `Firehose_20150804.PutRecordBatch`, `secretsmanager.GetSecretValue`):
    /// the decoded JSON response.
    pub async fn json(
        &self,
        service: &str,
        target: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, AwsError> {
        let body = serde_json::to_vec(body).map_err(|e| AwsError::Decode(e.to_string()))?;
        let answer = self
            .call(
                service,
                Method::POST,
                "/",
                &[
                    ("content-type", "application/x-amz-json-1.1"),
                    ("x-amz-target", target),
                ],
                body,
            )
            .await?;
        decode_json(&answer)
    }

    /// Query protocol (form POST `Action=..&Version=..`; SNS `2010-03-31`,
    /// CloudWatch `2010-08-01`): the XML response body.
    pub async fn query(
        &self,
        service: &str,
        version: &str,
        action: &str,
        params: &[(String, String)],
    ) -> Result<String, AwsError> {
        let mut body = format!(
            "Action={}&Version={}",
            form_encode(action),
            form_encode(version)
        );
        for (k, v) in params {
            body.push('&');
            body.push_str(&form_encode(k));
            body.push('=');
            body.push_str(&form_encode(v));
        }
        let answer = self
            .call(
                service,
                Method::POST,
                "/",
                &[(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                )],
                body.into_bytes(),
            )
            .await?;
        String::from_utf8(answer).map_err(|e| AwsError::Decode(format!("answer is not UTF-8: {e}")))
    }

    /// REST-JSON (IoT Analytics `POST /messages/batch`): the decoded JSON
    /// response (`Null` if empty).
    pub async fn rest_json(
        &self,
        service: &str,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, AwsError> {
        let body = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| AwsError::Decode(e.to_string()))?,
            None => Vec::new(),
        };
        let answer = self
            .call(
                service,
                method,
                path,
                &[("content-type", "application/json")],
                body,
            )
            .await?;
        decode_json(&answer)
    }

    /// Signs and sends one request to a full URL (the REST-XML calls of S3,
    /// whose host may carry the bucket): the 2xx answer with its headers,
    /// or the error. `url` must already be percent-encoded as it goes on
    /// the wire. Signing name `s3` signs as S3 wants it: the path encoded
    /// once, not normalised, and `x-amz-content-sha256` sent and signed.
    pub async fn signed_request(
        &self,
        service: &str,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<RawAnswer, AwsError> {
        self.send(service, method, url.to_string(), headers, body)
            .await
    }

    /// Signs and sends one request; the 2xx body, or the error.
    async fn call(
        &self,
        service: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, AwsError> {
        let url = format!("{}{path}", self.endpoint(service));
        Ok(self.send(service, method, url, headers, body).await?.body)
    }

    async fn send(
        &self,
        service: &str,
        method: Method,
        url: String,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<RawAnswer, AwsError> {
        let creds = self.credentials().await?;
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| AwsError::Decode(format!("bad endpoint URL {url:?}: {e}")))?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => {
                return Err(AwsError::Decode(format!(
                    "endpoint URL {url:?} has no host"
                )))
            }
        };
        let mut all: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 1);
        all.push(("host", &host));
        all.extend_from_slice(headers);

        let signed = self.sign(service, &creds, method.as_str(), &url, &all, &body)?;
        let mut request = self.http.request(method, parsed);
        for (name, value) in all.iter().filter(|(n, _)| *n != "host") {
            request = request.header(*name, *value);
        }
        for (name, value) in &signed {
            request = request.header(*name, value.as_str());
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| AwsError::Transport(describe_reqwest(&e)))?;
        let status = response.status();
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let answer_headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| AwsError::Transport(describe_reqwest(&e)))?;
        if status.is_success() {
            return Ok(RawAnswer {
                status: status.as_u16(),
                headers: answer_headers,
                body: bytes.to_vec(),
            });
        }
        let error = classify(status.as_u16(), error_type.as_deref(), &bytes);
        if error.stale_credentials() {
            self.forget_credentials().await;
        }
        Err(error)
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, and
    /// `x-amz-security-token` for temporary credentials).
    fn sign(
        &self,
        service: &str,
        creds: &AwsCredentials,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, AwsError> {
        let identity = aws_credential_types::Credentials::new(
            creds.access_key_id.clone(),
            creds.secret_access_key.clone(),
            creds.session_token.clone(),
            None,
            "evergreen",
        )
        .into();
        let mut settings = SigningSettings::default();
        if service == "s3" {
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| AwsError::Decode(format!("cannot sign: {e}")))?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| AwsError::Decode(format!("cannot sign: {e}")))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| AwsError::Decode(format!("cannot sign: {e}")))?
            .into_parts();
        let (headers, _params) = instructions.into_parts();
        Ok(headers
            .into_iter()
            .map(|h| (h.name(), h.value().to_string()))
            .collect())
    }

    async fn credentials(&self) -> Result<AwsCredentials, AwsError> {
        match &self.credentials {
            CredentialSource::Fixed(c) => Ok(c.clone()),
            CredentialSource::Access(access) => {
                access.credentials().await.map_err(AwsError::Credentials)
            }
            CredentialSource::Supervisor { handle, cache } => {
                // One request at a time: concurrent calls wait for the first
                // answer instead of all asking the supervisor.
                let mut cached = cache.lock().await;
                if let Some(c) = cached.as_ref() {
                    if fresh(c, now_ms()) {
                        return Ok(c.clone());
                    }
                }
                let c = handle.aws_credentials().await.map_err(|e| match e {
                    evergreen_ipc::sdk::SdkError::Credentials(why) => AwsError::Credentials(why),
                    other => AwsError::Credentials(other.to_string()),
                })?;
                *cached = Some(c.clone());
                Ok(c)
            }
        }
    }

    async fn forget_credentials(&self) {
        if let CredentialSource::Supervisor { cache, .. } = &self.credentials {
            *cache.lock().await = None;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Cached credentials are used until 5 minutes before they expire.
fn fresh(c: &AwsCredentials, now_ms: u64) -> bool {
    match c.expiration_ms {
        None => true,
        Some(exp) => now_ms.saturating_add(REFRESH_BEFORE_EXPIRY.as_millis() as u64) < exp,
    }
}

fn decode_json(bytes: &[u8]) -> Result<serde_json::Value, AwsError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|e| AwsError::Decode(format!("answer is not JSON: {e}")))
}

/// An S3 object key percent-encoded for the URL path (`/` kept).
pub fn encode_s3_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Longest piece of an answer body [`quote_body`] keeps.
const QUOTE_MAX: usize = 512;

/// An answer body for a status message or a log line: text, cut at 512
/// characters (error pages can be long HTML).
pub fn quote_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

/// The whole chain of a reqwest error: its top line alone often says only
/// "error sending request".
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `application/x-www-form-urlencoded` with only RFC 3986 unreserved
/// characters left as they are (what the AWS SDKs send).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The error for a non-2xx answer (see the crate docs for the order).
pub fn classify(status: u16, error_type_header: Option<&str>, body: &[u8]) -> AwsError {
    let text = String::from_utf8_lossy(body);
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let json_field = |keys: &[&str]| {
        json.as_ref().and_then(|j| {
            keys.iter()
                .find_map(|k| j.get(*k).and_then(|v| v.as_str()).map(str::to_string))
        })
    };
    let code = error_type_header
        .filter(|h| !h.trim().is_empty())
        .map(str::to_string)
        .or_else(|| json_field(&["__type", "code", "Code"]))
        .or_else(|| xml_value(&text, "Code"))
        .map(|c| normalize_code(&c))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| reason_code(status));
    let message = json_field(&["message", "Message", "errorMessage"])
        .or_else(|| xml_value(&text, "Message"))
        .unwrap_or_else(|| {
            if json.is_none() && !text.trim_start().starts_with('<') {
                text.trim().to_string()
            } else {
                String::new()
            }
        });
    AwsError::Service {
        status,
        code,
        message: truncate(message, MESSAGE_MAX),
    }
}

/// `aws.protocoltests#ResourceNotFoundException:http://…` →
/// `ResourceNotFoundException`.
fn normalize_code(raw: &str) -> String {
    let raw = raw.trim();
    let raw = raw.split(':').next().unwrap_or(raw);
    let raw = raw.rsplit('#').next().unwrap_or(raw);
    raw.to_string()
}

/// The HTTP reason phrase without spaces, e.g. `ServiceUnavailable`.
fn reason_code(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| r.split(|c: char| !c.is_ascii_alphanumeric()).collect())
        .unwrap_or_else(|| format!("Http{status}"))
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The text of the first `<tag>…</tag>` (attributes allowed on the opening
/// tag), entities decoded; `None` if there is none. Enough for the flat
/// answers of the query protocol (`<MessageId>`, `<RequestId>`, `<Code>`).
pub fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut from = 0;
    while let Some(at) = xml[from..].find(&open) {
        let start = from + at + open.len();
        let rest = &xml[start..];
        // `<Code>` or `<Code attr=…>`, not `<CodeName>`.
        match rest.chars().next() {
            Some('>') => {
                let body = &rest[1..];
                let end = body.find(&close)?;
                return Some(decode_entities(&body[..end]));
            }
            Some(c) if c.is_whitespace() => {
                let gt = rest.find('>')?;
                if rest[..gt].ends_with('/') {
                    return Some(String::new());
                }
                let body = &rest[gt + 1..];
                let end = body.find(&close)?;
                return Some(decode_entities(&body[..end]));
            }
            Some('/') if rest.starts_with("/>") => return Some(String::new()),
            _ => from = start,
        }
    }
    None
}

fn decode_entities(s: &str) -> String {
    let s = s.trim();
    if let Some(cdata) = s
        .strip_prefix("<![CDATA[")
        .and_then(|r| r.strip_suffix("]]>"))
    {
        return cdata.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let Some(semi) = after.find(';').filter(|i| *i <= 10) else {
            out.push('&');
            rest = after;
            continue;
        };
        let entity = &after[..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Exponential backoff with jitter: each delay doubles up to `max`, and is
/// drawn from its upper half (equal jitter), so retries of several
/// connectors after the same outage spread out without ever retrying at
/// once. The kit's [`evergreen_connector_kit::Backoff`], always jittered:
/// AWS callers (and the supervisor) get the spread without asking for it.
#[derive(Debug, Clone)]
pub struct Backoff(evergreen_connector_kit::Backoff);

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff(evergreen_connector_kit::Backoff::jittered(initial, max))
    }

    /// The delay before the next try; the one after it is twice as long.
    pub fn next_delay(&mut self) -> Duration {
        self.0.next_delay()
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.0.reset();
    }
}

#[cfg(test)]
mod tests;
