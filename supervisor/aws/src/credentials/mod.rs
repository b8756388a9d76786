//! AWS access for connectors: the core's credentials chain (Greengrass's
//! token exchange service) and the per-service endpoint overrides.
//!
//! Connectors whose manifest sets `aws` ask for credentials over their IPC
//! link (`GetCredentials`); the supervisor answers from one [`AwsAccess`]
//! shared by every component. Credentials live only in this process's
//! memory and in the asking child's; they are never written to disk or to a
//! log (`AwsCredentials`'s `Debug` redacts them).
//!
//! The chain, first source that has credentials wins (fixed when the runtime
//! starts, so a log line can say which one is in use):
//! 1. `evergreen.aws.credentials` in the core configuration (static keys;
//!    for development, since the file then holds a secret);
//! 2. the AWS IoT credentials provider (`evergreen.aws.iotCredEndpoint` and
//!    `iotRoleAlias`): temporary credentials for the role alias, exchanged
//!    with the core's certificate over mutual TLS, refreshed 5 minutes
//!    before they expire (see [`iot`]);
//! 3. the supervisor's environment: `AWS_ACCESS_KEY_ID`,
//!    `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`;
//! 4. the shared credentials file: `AWS_SHARED_CREDENTIALS_FILE` or
//!    `~/.aws/credentials`, profile `evergreen.aws.profile`, else
//!    `AWS_PROFILE`, else `default`.

pub mod iot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use evergreen_ipc::AwsCredentials;

/// Where the credentials in use come from, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Config,
    IotProvider {
        endpoint: String,
        role_alias: String,
    },
    Environment,
    SharedFile {
        path: PathBuf,
        profile: String,
    },
    None,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Config => f.write_str("evergreen.aws.credentials in the core configuration"),
            Source::IotProvider {
                endpoint,
                role_alias,
            } => {
                write!(
                    f,
                    "the AWS IoT credentials provider {endpoint}, role alias {role_alias}"
                )
            }
            Source::Environment => {
                f.write_str("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment")
            }
            Source::SharedFile { path, profile } => {
                write!(f, "profile [{profile}] of {}", path.display())
            }
            Source::None => f.write_str("none configured"),
        }
    }
}

/// The environment variables the chain reads, passed in so tests never
/// touch the real environment.
#[derive(Debug, Clone, Default)]
pub struct AwsEnv {
    pub vars: BTreeMap<String, String>,
}

impl AwsEnv {
    pub fn from_process() -> Self {
        const KEYS: [&str; 6] = [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_PROFILE",
            "HOME",
        ];
        AwsEnv {
            vars: KEYS
                .iter()
                .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
                .collect(),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Why the credentials chain could not be resolved: the operator named a
/// source that cannot be used. No credentials at all is not an error.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("iotCredEndpoint needs the core's certificate and key (coreThing.certPath, coreThing.keyPath)")]
    IotNeedsCoreFiles,
    #[error("iotCredEndpoint and iotRoleAlias go together; one is missing")]
    IotHalfConfigured,
    #[error("cannot read the shared credentials file {}: {source}", path.display())]
    SharedFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile [{profile}] in {} has no aws_access_key_id and aws_secret_access_key", path.display())]
    ProfileIncomplete { profile: String, path: PathBuf },
    #[error(transparent)]
    Iot(#[from] iot::IotError),
}

/// Credentials and endpoints for the components of one runtime.
#[derive(Debug, Clone)]
pub struct AwsAccess {
    credentials: Option<AwsCredentials>,
    iot: Option<Arc<iot::IotProvider>>,
    source: Source,
    endpoints: BTreeMap<String, String>,
    region: String,
}

impl AwsAccess {
    /// Resolves the chain once. An unreadable shared file is an error (the
    /// operator pointed at it); no credentials at all is not: connectors
    /// that need them then say so in their status messages.
    pub fn resolve(
        config: &AwsSettings,
        env: &AwsEnv,
        region: &str,
    ) -> Result<Arc<Self>, ResolveError> {
        Self::resolve_with_iot(config, env, region, None)
    }

    /// As [`AwsAccess::resolve`], with the core's thing name and certificate
    /// files for the IoT credentials provider when the configuration names
    /// one. Naming only one of `iotCredEndpoint` and `iotRoleAlias` is an
    /// error, as is the provider without certificate files.
    pub fn resolve_with_iot(
        config: &AwsSettings,
        env: &AwsEnv,
        region: &str,
        core: Option<(&str, iot::TlsFiles)>,
    ) -> Result<Arc<Self>, ResolveError> {
        Self::resolve_typed(config, env, region, core)
    }

    fn resolve_typed(
        config: &AwsSettings,
        env: &AwsEnv,
        region: &str,
        core: Option<(&str, iot::TlsFiles)>,
    ) -> Result<Arc<Self>, ResolveError> {
        let mut iot_provider = None;
        let (credentials, source) = match (&config.iot_cred_endpoint, &config.iot_role_alias) {
            _ if config.credentials.is_some() => chain(config, env)?,
            (Some(endpoint), Some(alias)) => {
                let (thing, files) = core.ok_or(ResolveError::IotNeedsCoreFiles)?;
                iot_provider = Some(Arc::new(iot::IotProvider::new(
                    endpoint, alias, thing, &files,
                )?));
                (
                    None,
                    Source::IotProvider {
                        endpoint: endpoint.clone(),
                        role_alias: alias.clone(),
                    },
                )
            }
            (Some(_), None) | (None, Some(_)) => return Err(ResolveError::IotHalfConfigured),
            (None, None) => chain(config, env)?,
        };
        let mut endpoints = BTreeMap::new();
        if let Some(all) = &config.endpoint_url {
            for key in SERVICE_KEYS {
                endpoints.insert(key.to_string(), all.trim_end_matches('/').to_string());
            }
        }
        for (k, v) in &config.endpoints {
            endpoints.insert(k.clone(), v.trim_end_matches('/').to_string());
        }
        Ok(Arc::new(AwsAccess {
            credentials,
            iot: iot_provider,
            source,
            endpoints,
            region: region.to_string(),
        }))
    }

    /// No credentials and no overrides (tests, tools).
    pub fn none(region: &str) -> Arc<Self> {
        Arc::new(AwsAccess {
            credentials: None,
            iot: None,
            source: Source::None,
            endpoints: BTreeMap::new(),
            region: region.to_string(),
        })
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The endpoint overrides handed to every component.
    pub fn endpoints(&self) -> &BTreeMap<String, String> {
        &self.endpoints
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The credentials for a component that asked, or why there are none.
    pub async fn credentials(&self) -> Result<AwsCredentials, String> {
        if let Some(iot) = &self.iot {
            // A component's request carries the answer as text (see the runtime).
            return iot.credentials().await.map_err(|e| e.to_string());
        }
        self.credentials.clone().ok_or_else(|| {
            "the core has no AWS credentials: set evergreen.aws in the core configuration, \
             AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the runtime's environment, or a shared \
             credentials file"
                .to_string()
        })
    }
}

/// Service keys `evergreen.aws.endpointUrl` applies to: the AWS services
/// Evergreen calls. (Twilio is not AWS; it only takes an explicit entry.)
pub(crate) const SERVICE_KEYS: [&str; 9] = [
    "sns",
    "firehose",
    "monitoring",
    "iotanalytics",
    "secretsmanager",
    "logs",
    // The stream manager's exports.
    "kinesis",
    "iotsitewise",
    "s3",
];

fn chain(
    config: &AwsSettings,
    env: &AwsEnv,
) -> Result<(Option<AwsCredentials>, Source), ResolveError> {
    if let Some(c) = &config.credentials {
        return Ok((
            Some(AwsCredentials {
                access_key_id: c.access_key_id.clone(),
                secret_access_key: c.secret_access_key.clone(),
                session_token: c.session_token.clone(),
                expiration_ms: None,
            }),
            Source::Config,
        ));
    }
    if let (Some(id), Some(key)) = (
        env.get("AWS_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok((
            Some(AwsCredentials {
                access_key_id: id.to_string(),
                secret_access_key: key.to_string(),
                session_token: env.get("AWS_SESSION_TOKEN").map(str::to_string),
                expiration_ms: None,
            }),
            Source::Environment,
        ));
    }
    let explicit = env.get("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from);
    let path = match (&explicit, env.get("HOME")) {
        (Some(p), _) => p.clone(),
        (None, Some(home)) => Path::new(home).join(".aws/credentials"),
        (None, None) => return Ok((None, Source::None)),
    };
    let profile = config
        .profile
        .clone()
        .or_else(|| env.get("AWS_PROFILE").map(str::to_string))
        .unwrap_or_else(|| "default".to_string());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok((None, Source::None))
        }
        Err(source) => return Err(ResolveError::SharedFile { path, source }),
    };
    match profile_credentials(&text, &profile) {
        Some(c) => Ok((Some(c), Source::SharedFile { path, profile })),
        None if config.profile.is_some() => Err(ResolveError::ProfileIncomplete { profile, path }),
        None => Ok((None, Source::None)),
    }
}

/// The keys of `[profile]` in an INI-style shared credentials file.
fn profile_credentials(text: &str, profile: &str) -> Option<AwsCredentials> {
    let mut in_profile = false;
    let mut values: BTreeMap<&str, &str> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if in_profile {
            if let Some((k, v)) = line.split_once('=') {
                values.insert(k.trim(), v.trim());
            }
        }
    }
    Some(AwsCredentials {
        access_key_id: values.get("aws_access_key_id")?.to_string(),
        secret_access_key: values.get("aws_secret_access_key")?.to_string(),
        session_token: values.get("aws_session_token").map(|s| s.to_string()),
        expiration_ms: None,
    })
}

/// Where connectors' AWS credentials come from and which endpoints they call: the core
/// configuration's `evergreen.aws`, as the composition root hands it over. Every field is
/// optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwsSettings {
    /// Static keys; the chain's first source.
    pub credentials: Option<StaticKeys>,
    /// The shared credentials file's profile (default `AWS_PROFILE`, then `default`).
    pub profile: Option<String>,
    /// One endpoint for every AWS service; `endpoints` entries win over it.
    pub endpoint_url: Option<String>,
    /// Endpoint per service key (`sns`, `firehose`, `monitoring`, `iotanalytics`,
    /// `secretsmanager`, `twilio`).
    pub endpoints: BTreeMap<String, String>,
    /// The AWS IoT credentials provider endpoint; with `iot_role_alias`, the core exchanges
    /// its certificate for credentials.
    pub iot_cred_endpoint: Option<String>,
    pub iot_role_alias: Option<String>,
}

/// Static keys (`evergreen.aws.credentials`). `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> AwsEnv {
        AwsEnv {
            vars: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_configuration_wins_then_the_environment_then_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = filesecret\n\n[other]\naws_access_key_id=OTHER\naws_secret_access_key=o\naws_session_token=t\n",
        )
        .expect("write");
        let file_env = env(&[("AWS_SHARED_CREDENTIALS_FILE", file.to_str().expect("utf8"))]);
        let mut config = AwsSettings::default();
        let (c, s) = chain(&config, &file_env).expect("chain");
        assert_eq!(c.expect("creds").access_key_id, "FILEKEY");
        assert!(matches!(s, Source::SharedFile { ref profile, .. } if profile == "default"));

        config.profile = Some("other".into());
        let (c, _) = chain(&config, &file_env).expect("chain");
        let c = c.expect("creds");
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token.as_deref()),
            ("OTHER", Some("t"))
        );

        config.profile = Some("missing".into());
        assert!(chain(&config, &file_env)
            .expect_err("missing profile")
            .to_string()
            .contains("[missing]"));

        let mut both = file_env.clone();
        both.vars
            .insert("AWS_ACCESS_KEY_ID".into(), "ENVKEY".into());
        both.vars
            .insert("AWS_SECRET_ACCESS_KEY".into(), "envsecret".into());
        let (c, s) = chain(&config, &both).expect("chain");
        assert_eq!(
            (c.expect("creds").access_key_id, s),
            ("ENVKEY".to_string(), Source::Environment)
        );

        config.credentials = Some(StaticKeys {
            access_key_id: "CFGKEY".into(),
            secret_access_key: "cfgsecret".into(),
            session_token: None,
        });
        let (c, s) = chain(&config, &both).expect("chain");
        assert_eq!(
            (c.expect("creds").access_key_id, s),
            ("CFGKEY".to_string(), Source::Config)
        );
    }

    #[test]
    fn no_source_is_not_an_error_but_a_named_refusal() {
        let access = AwsAccess::resolve(
            &AwsSettings::default(),
            &env(&[("HOME", "/nonexistent")]),
            "eu-west-1",
        )
        .expect("resolve");
        assert_eq!(access.source(), &Source::None);
        let refusal = futures_lite_block_on(access.credentials()).expect_err("no creds");
        assert!(refusal.contains("no AWS credentials"), "{refusal}");
    }

    #[test]
    fn endpoint_url_applies_to_every_aws_service_and_endpoints_override_it() {
        let config = AwsSettings {
            endpoint_url: Some("http://127.0.0.1:5000/".into()),
            endpoints: BTreeMap::from([("sns".to_string(), "http://127.0.0.1:6000".to_string())]),
            ..AwsSettings::default()
        };
        let access = AwsAccess::resolve(&config, &env(&[]), "eu-west-1").expect("resolve");
        assert_eq!(access.endpoints()["firehose"], "http://127.0.0.1:5000");
        assert_eq!(access.endpoints()["sns"], "http://127.0.0.1:6000");
        assert!(!access.endpoints().contains_key("twilio"));
    }

    #[test]
    fn the_iot_provider_needs_both_keys_and_the_core_certificate() {
        let half = AwsSettings {
            iot_cred_endpoint: Some("x.credentials.iot.eu-west-1.amazonaws.com".into()),
            ..AwsSettings::default()
        };
        let e = AwsAccess::resolve(&half, &env(&[]), "eu-west-1").expect_err("half");
        assert!(e.to_string().contains("iotRoleAlias"), "{e}");
        let both = AwsSettings {
            iot_role_alias: Some("role".into()),
            ..half
        };
        let e = AwsAccess::resolve(&both, &env(&[]), "eu-west-1").expect_err("no cert");
        assert!(e.to_string().contains("coreThing.certPath"), "{e}");
    }

    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }
}
