//! The secret store: local, encrypted copies of a group's secret resources
//! (`SecretsManagerSecretResourceData`) and the answers to components'
//! secret requests.
//!
//! Where values come from, at each deployment, for every secret resource of
//! the group (see `names` for how a resource's ARN matches a local name):
//! 1. a value put with `evergreen secrets put NAME` (module `store`);
//! 2. else, when the core has AWS credentials, AWS Secrets Manager
//!    `GetSecretValue` for `AWSCURRENT` and each
//!    `AdditionalStagingLabelsToDownload` (module `fetch`); if Secrets
//!    Manager cannot be reached (no answer, 5xx, throttling) and the previous
//!    deployment held a copy of the same ARN, that copy is kept and a
//!    warning logged;
//! 3. else the deployment fails with the resource and the secret named
//!    ("secret can't be found"), before anything changes.
//!
//! A local value is one version with the `AWSCURRENT` label only; when the
//! resource lists additional labels a warning says they are not available
//! and requests for them are refused.
//!
//! The deployed copies live in `<root>/secrets/deployed.json`, each value
//! AES-256-GCM sealed under a **data key that is new at every deployment**
//! (all copies are re-encrypted under it, the old one is forgotten); the
//! data key is stored in the same file wrapped under the core key
//! (`<root>/secrets/core.key`, see `crypto`). A resource removed from the
//! group leaves the file with the next deployment.
//!
//! A request (`GetSecret` from a connector or stdio function,
//! `GGSecretManager` from a Python function) is answered only from the
//! copies of resources **granted to that component** (a connector's
//! `…-ResourceId` parameter, a function's `ResourceAccessPolicies`).
//! Everything else is refused and the refusal logged with the component and
//! the requested id. No value is ever logged, shown in a status or put in an
//! error message: errors name resources, ARNs and ids only.

mod crypto;
mod fetch;
pub mod names;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use evergreen_ipc::SecretValue;
use serde::{Deserialize, Serialize};
#[cfg(test)]
use serde_json::Value;

use crypto::Key;
use evergreen_group::plan::{GroupPlan, ResourceData};
use evergreen_runtime::lambda::http::{base64_decode, base64_encode};
pub use store::{LocalStore, StoredInfo};

/// Secrets Manager's limit on a secret value.
pub const MAX_SECRET_BYTES: usize = 65536;
/// The staging label every secret resource downloads.
pub const AWSCURRENT: &str = "AWSCURRENT";
const FORMAT: u32 = 1;
const DEPLOYED_FILE: &str = "deployed.json";

/// Whether a value is text (`SecretString`) or bytes (`SecretBinary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    String,
    Binary,
}

impl ValueKind {
    /// Valid UTF-8 is a string; anything else binary.
    pub(crate) fn of(value: &[u8]) -> ValueKind {
        if std::str::from_utf8(value).is_ok() {
            ValueKind::String
        } else {
            ValueKind::Binary
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::String => "string",
            ValueKind::Binary => "binary",
        }
    }
}

/// Why a store operation or a deployment's secrets failed. Messages never
/// contain a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    BadName(#[from] names::NameError),
    #[error("the value is {0} bytes; Secrets Manager values are at most {MAX_SECRET_BYTES} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    #[error("{what}: {source}")]
    Corrupt {
        what: String,
        source: crypto::CryptoError,
    },
    #[error("{what}: {message}")]
    Io { what: String, message: String },
    /// Greengrass's wording: "secret can't be found".
    #[error("secret resource {resource:?}: secret can't be found: {arn} ({why})")]
    NotFound {
        resource: String,
        arn: String,
        why: String,
    },
    #[error("secret resource {resource:?}: cannot get {arn}: {why}")]
    Unavailable {
        resource: String,
        arn: String,
        why: String,
    },
}

impl SecretError {
    fn io(path: &Path, e: std::io::Error) -> SecretError {
        SecretError::Io {
            what: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// A random version id in the UUID layout Secrets Manager uses.
pub(crate) fn random_uuid() -> Result<String, crypto::CryptoError> {
    let mut b = [0u8; 16];
    crypto::random_bytes(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// Where a deployed copy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Origin {
    /// `evergreen secrets put`.
    Local,
    /// AWS Secrets Manager `GetSecretValue`.
    SecretsManager,
}

/// One version of a secret, in clear, between resolution and sealing.
#[derive(Clone)]
pub(crate) struct PlainVersion {
    pub version_id: String,
    pub stages: Vec<String>,
    pub created_ms: u64,
    pub kind: ValueKind,
    pub value: Vec<u8>,
}

impl std::fmt::Debug for PlainVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainVersion")
            .field("version_id", &self.version_id)
            .field("stages", &self.stages)
            .field("kind", &self.kind)
            .field("value", &"<redacted>")
            .finish()
    }
}

impl Drop for PlainVersion {
    fn drop(&mut self) {
        self.value.iter_mut().for_each(|b| *b = 0);
    }
}

/// A secret resolved for a deployment, in clear.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub resource_id: String,
    pub arn: String,
    /// The friendly name (`Name` in answers).
    pub name: String,
    pub origin: Origin,
    pub versions: Vec<PlainVersion>,
}

/// A sealed version, as kept in memory and on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SealedVersion {
    version_id: String,
    stages: Vec<String>,
    created_date_ms: u64,
    #[serde(rename = "type")]
    kind: ValueKind,
    /// base64 of `nonce || ciphertext || tag`.
    value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SealedSecret {
    resource_id: String,
    arn: String,
    name: String,
    origin: Origin,
    versions: Vec<SealedVersion>,
}

/// `deployed.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeployedFile {
    format: u32,
    /// The data key of this deployment, wrapped under the core key (base64).
    data_key: String,
    rotated_at: String,
    secrets: Vec<SealedSecret>,
}

fn value_aad(s: &SealedSecret, v: &SealedVersion) -> Vec<u8> {
    format!(
        "evergreen/secrets/deployed/v1\0{}\0{}\0{}\0{}\0{}\0{}",
        s.resource_id,
        s.arn,
        s.name,
        v.version_id,
        v.stages.join(","),
        v.kind.as_str()
    )
    .into_bytes()
}

/// What a deployment installed: the data key and the sealed copies.
#[derive(Debug)]
struct State {
    data_key: Key,
    /// By resource id.
    secrets: BTreeMap<String, SealedSecret>,
    /// Component ARN -> the secret resources it was granted.
    grants: BTreeMap<String, BTreeSet<String>>,
}

pub use evergreen_runtime::services::Refusal;

/// The deployed secrets of a runtime, shared by the component actors, the
/// Lambda IPC endpoint and the deployment path.
#[derive(Debug)]
pub struct SecretService {
    dir: PathBuf,
    state: RwLock<Option<State>>,
}

/// An id as it may appear in a log line: quoted, and cut short.
pub(crate) fn show_id(id: &str) -> String {
    let mut end = id.len().min(256);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}", &id[..end])
}

impl SecretService {
    /// The service for the secrets directory `dir` (`<root>/secrets`).
    pub fn new(dir: &Path) -> SecretService {
        SecretService {
            dir: dir.to_path_buf(),
            state: RwLock::new(None),
        }
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, Option<State>> {
        // A poisoned lock still holds a whole State: it is only replaced.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The copies of the running deployment, or of the last one on disk, in
    /// clear, by ARN: what resolution may fall back on.
    fn previous(&self) -> BTreeMap<String, Resolved> {
        let mut out = BTreeMap::new();
        let guard = self.read_state();
        let from_disk;
        let state = match guard.as_ref() {
            Some(s) => s,
            None => match self.load_file() {
                Ok(Some(s)) => {
                    from_disk = s;
                    &from_disk
                }
                Ok(None) => return out,
                Err(e) => {
                    tracing::warn!("secrets: the previous deployment's copies are unreadable: {e}");
                    return out;
                }
            },
        };
        for s in state.secrets.values() {
            match open_secret(&state.data_key, s) {
                Ok(r) => {
                    out.insert(s.arn.clone(), r);
                }
                Err(e) => tracing::warn!("secrets: {e}"),
            }
        }
        out
    }

    fn load_file(&self) -> Result<Option<State>, SecretError> {
        let path = self.dir.join(DEPLOYED_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SecretError::io(&path, e)),
        };
        let file: DeployedFile =
            evergreen_json::from_slice(&bytes).map_err(|e| SecretError::Io {
                what: path.display().to_string(),
                message: e.to_string(),
            })?;
        let core = crypto::core_key(&self.dir)?;
        let wrapped = base64_decode(&file.data_key).ok_or_else(|| SecretError::Io {
            what: path.display().to_string(),
            message: "dataKey is not base64".into(),
        })?;
        let data_key = crypto::unwrap(&core, &wrapped).map_err(|source| SecretError::Corrupt {
            what: format!("the data key in {}", path.display()),
            source,
        })?;
        Ok(Some(State {
            data_key,
            secrets: file
                .secrets
                .into_iter()
                .map(|s| (s.resource_id.clone(), s))
                .collect(),
            grants: BTreeMap::new(),
        }))
    }

    /// Resolves every secret resource of `plan` (local store, then Secrets
    /// Manager through `aws`, see the module docs). Changes nothing.
    pub(crate) async fn resolve(
        &self,
        plan: &GroupPlan,
        aws: &evergreen_aws::credentials::AwsAccess,
    ) -> Result<Vec<Resolved>, SecretError> {
        let wanted: Vec<(&String, &String, &Vec<String>)> = plan
            .resources
            .values()
            .filter_map(|r| match &r.data {
                ResourceData::Secret {
                    arn,
                    additional_staging_labels,
                } => Some((&r.id, arn, additional_staging_labels)),
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let local = LocalStore::new(&self.dir);
        let mut previous: Option<BTreeMap<String, Resolved>> = None;
        let mut out = Vec::new();
        for (resource, arn, extra) in wanted {
            let mut stages = vec![AWSCURRENT.to_string()];
            for label in extra {
                if !stages.contains(label) {
                    stages.push(label.clone());
                }
            }
            if let Some((info, value)) = local.find_for_arn(arn)? {
                if stages.len() > 1 {
                    tracing::warn!(
                        "secret resource {resource:?}: the local value {:?} is the AWSCURRENT version only; \
                         staging labels {} are not available from the local store",
                        info.name,
                        stages[1..].join(", ")
                    );
                }
                tracing::info!(
                    "secret resource {resource:?} ({arn}): local value {:?} ({}, {} bytes)",
                    info.name,
                    info.kind.as_str(),
                    info.size
                );
                out.push(Resolved {
                    resource_id: resource.clone(),
                    arn: arn.clone(),
                    name: names::friendly_name(arn),
                    origin: Origin::Local,
                    versions: vec![PlainVersion {
                        version_id: info.version_id,
                        stages: vec![AWSCURRENT.to_string()],
                        created_ms: info.stored_at_ms,
                        kind: info.kind,
                        value,
                    }],
                });
                continue;
            }
            let creds = match aws.credentials().await {
                Ok(c) => c,
                Err(_) => return Err(SecretError::NotFound {
                    resource: resource.clone(),
                    arn: arn.clone(),
                    why:
                        "no local value matches it (evergreen secrets put) and the core has no AWS \
                              credentials to fetch it from Secrets Manager"
                            .into(),
                }),
            };
            match fetch::fetch(aws, creds, resource, arn, &stages).await {
                Ok(r) => {
                    tracing::info!(
                        "secret resource {resource:?} ({arn}): fetched from Secrets Manager ({} versions)",
                        r.versions.len()
                    );
                    out.push(r);
                }
                Err(fetch::FetchError::Transient(why)) => {
                    let prev = previous.get_or_insert_with(|| self.previous());
                    match prev.remove(arn.as_str()) {
                        Some(mut copy) => {
                            tracing::warn!(
                                "secret resource {resource:?}: Secrets Manager cannot be reached ({why}); \
                                 keeping the copy of {arn} from the previous deployment"
                            );
                            copy.resource_id = resource.clone();
                            out.push(copy);
                        }
                        None => {
                            return Err(SecretError::Unavailable {
                                resource: resource.clone(),
                                arn: arn.clone(),
                                why,
                            })
                        }
                    }
                }
                Err(fetch::FetchError::NotFound(why)) => {
                    return Err(SecretError::NotFound {
                        resource: resource.clone(),
                        arn: arn.clone(),
                        why,
                    })
                }
                Err(fetch::FetchError::Failed(why)) => {
                    return Err(SecretError::Unavailable {
                        resource: resource.clone(),
                        arn: arn.clone(),
                        why,
                    })
                }
            }
        }
        Ok(out)
    }

    /// Seals `resolved` under a fresh data key, writes `deployed.json` and
    /// makes it (with `plan`'s grants) what requests are answered from.
    pub(crate) fn install(
        &self,
        plan: &GroupPlan,
        resolved: Vec<Resolved>,
    ) -> Result<(), SecretError> {
        if resolved.is_empty() {
            // Nothing to keep: no key file is created for a group without
            // secrets, and the previous deployment's copies are deleted.
            let path = self.dir.join(DEPLOYED_FILE);
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(
                    "secrets: the group has no secret resources; deployed copies removed"
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SecretError::io(&path, e)),
            }
            *self.state.write().unwrap_or_else(|p| p.into_inner()) = Some(State {
                data_key: Key::random()?,
                secrets: BTreeMap::new(),
                grants: BTreeMap::new(),
            });
            return Ok(());
        }
        let core = crypto::core_key(&self.dir)?;
        let data_key = Key::random()?;
        let mut secrets = BTreeMap::new();
        for r in &resolved {
            let mut s = SealedSecret {
                resource_id: r.resource_id.clone(),
                arn: r.arn.clone(),
                name: r.name.clone(),
                origin: r.origin,
                versions: Vec::new(),
            };
            for v in &r.versions {
                let mut sv = SealedVersion {
                    version_id: v.version_id.clone(),
                    stages: v.stages.clone(),
                    created_date_ms: v.created_ms,
                    kind: v.kind,
                    value: String::new(),
                };
                sv.value = base64_encode(&crypto::seal(&data_key, &v.value, &value_aad(&s, &sv))?);
                s.versions.push(sv);
            }
            secrets.insert(s.resource_id.clone(), s);
        }
        let file = DeployedFile {
            format: FORMAT,
            data_key: base64_encode(&crypto::wrap(&core, &data_key)?),
            rotated_at: evergreen_durable::format_time(time::OffsetDateTime::now_utc())
                .unwrap_or_else(|_| "unknown".into()),
            secrets: secrets.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| SecretError::Io {
            what: "cannot encode the deployed secrets".into(),
            message: e.to_string(),
        })?;
        let path = self.dir.join(DEPLOYED_FILE);
        crypto::ensure_dir(&self.dir)?;
        crypto::write_private(&path, &bytes).map_err(|e| SecretError::io(&path, e))?;
        let grants = grants(plan);
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Some(State {
            data_key,
            secrets,
            grants,
        });
        tracing::info!(
            "secrets: {} secret resources deployed under a new data key",
            resolved.len()
        );
        Ok(())
    }

    /// `Self::resolve` then `Self::install`: what a deployment does
    /// before the supervisor starts anything.
    pub async fn deploy(
        &self,
        plan: &GroupPlan,
        aws: &evergreen_aws::credentials::AwsAccess,
    ) -> Result<(), SecretError> {
        let resolved = self.resolve(plan, aws).await?;
        self.install(plan, resolved)
    }

    /// Answers `component`'s request for `secret_id` at `stage` (default
    /// `AWSCURRENT`), or refuses it. The caller logs refusals.
    pub(crate) fn get(
        &self,
        component: &str,
        secret_id: &str,
        stage: Option<&str>,
    ) -> Result<SecretValue, Refusal> {
        let stage = stage.filter(|s| !s.is_empty()).unwrap_or(AWSCURRENT);
        // As Secrets Manager answers: a secret the group does not have is not
        // found (404); one it has but did not grant to the caller is denied (403).
        let not_found = || Refusal {
            status: 404,
            code: "ResourceNotFoundException",
            message: format!(
                "secret {} is not a secret resource of this group (add it to the group's \
                 ResourceDefinitionVersion and grant it to the component)",
                show_id(secret_id)
            ),
        };
        let not_granted = || Refusal {
            status: 403,
            code: "AccessDeniedException",
            message: format!(
                "secret {} is not granted to this component (grant its secret resource: \
                 ResourceAccessPolicies, or the connector's …-ResourceId parameter)",
                show_id(secret_id)
            ),
        };
        if secret_id.is_empty() {
            return Err(Refusal {
                status: 400,
                code: "InvalidParameterException",
                message: "SecretId is empty".into(),
            });
        }
        let guard = self.read_state();
        let Some(state) = guard.as_ref() else {
            return Err(not_found());
        };
        let in_group = state
            .secrets
            .values()
            .any(|s| names::request_matches(secret_id, &s.arn));
        if !in_group {
            return Err(not_found());
        }
        let Some(granted) = state.grants.get(component) else {
            return Err(not_granted());
        };
        let Some(secret) = granted
            .iter()
            .filter_map(|id| state.secrets.get(id))
            .find(|s| names::request_matches(secret_id, &s.arn))
        else {
            return Err(not_granted());
        };
        let Some(version) = secret
            .versions
            .iter()
            .find(|v| v.stages.iter().any(|s| s == stage))
        else {
            return Err(Refusal {
                status: 404,
                code: "ResourceNotFoundException",
                message: format!(
                    "secret {}: version stage {} was not downloaded to this core (AWSCURRENT always is; \
                     others must be listed in AdditionalStagingLabelsToDownload)",
                    show_id(secret_id),
                    show_id(stage)
                ),
            });
        };
        let value = base64_decode(&version.value)
            .ok_or(crypto::CryptoError::Authentication)
            .and_then(|sealed| crypto::open(&state.data_key, &sealed, &value_aad(secret, version)))
            .map_err(|e| {
                tracing::error!(
                    "secrets: the deployed copy of {} (resource {:?}) cannot be decrypted: {e}",
                    secret.arn,
                    secret.resource_id
                );
                Refusal {
                    status: 500,
                    code: "InternalServiceError",
                    message: format!(
                        "secret {}: the local copy cannot be decrypted (see the runtime log)",
                        show_id(secret_id)
                    ),
                }
            })?;
        let (secret_string, secret_binary) = match version.kind {
            ValueKind::String => match String::from_utf8(value) {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e.into_bytes())),
            },
            ValueKind::Binary => (None, Some(value)),
        };
        Ok(SecretValue {
            arn: secret.arn.clone(),
            name: secret.name.clone(),
            version_id: version.version_id.clone(),
            version_stages: version.stages.clone(),
            secret_string,
            secret_binary,
            created_date_ms: version.created_date_ms,
        })
    }
}

/// Opens every version of a sealed secret.
fn open_secret(key: &Key, s: &SealedSecret) -> Result<Resolved, SecretError> {
    let mut versions = Vec::new();
    for v in &s.versions {
        let sealed = base64_decode(&v.value).ok_or(SecretError::Corrupt {
            what: format!("deployed copy of {}", s.arn),
            source: crypto::CryptoError::Authentication,
        })?;
        let value = crypto::open(key, &sealed, &value_aad(s, v)).map_err(|source| {
            SecretError::Corrupt {
                what: format!("deployed copy of {}", s.arn),
                source,
            }
        })?;
        versions.push(PlainVersion {
            version_id: v.version_id.clone(),
            stages: v.stages.clone(),
            created_ms: v.created_date_ms,
            kind: v.kind,
            value,
        });
    }
    Ok(Resolved {
        resource_id: s.resource_id.clone(),
        arn: s.arn.clone(),
        name: s.name.clone(),
        origin: s.origin,
        versions,
    })
}

/// Component ARN -> the secret resources granted to it.
fn grants(plan: &GroupPlan) -> BTreeMap<String, BTreeSet<String>> {
    plan.components
        .iter()
        .map(|(arn, spec)| {
            let ids = spec
                .resources
                .iter()
                .filter(|a| {
                    plan.resources
                        .get(&a.resource_id)
                        .is_some_and(|r| matches!(r.data, ResourceData::Secret { .. }))
                })
                .map(|a| a.resource_id.clone())
                .collect();
            (arn.clone(), ids)
        })
        .collect()
}

/// The core answers components' secret requests (stdio link and Lambda endpoint) from here.
impl evergreen_runtime::services::SecretSource for SecretService {
    fn get(
        &self,
        component: &str,
        secret_id: &str,
        stage: Option<&str>,
    ) -> Result<SecretValue, Refusal> {
        SecretService::get(self, component, secret_id, stage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_group::plan::{
        ComponentSpec, CoreSpec, Isolation, Launch, LoggerPlan, ResourceAccess, ResourceSpec, RunAs,
    };
    use evergreen_ipc::ComponentKind;

    const TWILIO: &str = "arn:aws:greengrass:us-east-1::/connectors/TwilioNotifications/versions/4";
    const OTHER: &str = "arn:aws:lambda:us-east-1:123456789012:function:other:1";
    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-tok-AbCdEf";

    fn component(arn: &str, resources: &[&str]) -> ComponentSpec {
        ComponentSpec {
            id: arn.into(),
            arn: arn.into(),
            kind: ComponentKind::Connector,
            name: "c".into(),
            launch: Launch::Connector {
                name: "TwilioNotifications".into(),
                version: 4,
            },
            parameters: BTreeMap::new(),
            isolation: Isolation::NoContainer,
            run_as: RunAs::default(),
            pinned: true,
            memory_kb: None,
            timeout_s: 3,
            resources: resources
                .iter()
                .map(|r| ResourceAccess {
                    resource_id: r.to_string(),
                    read_write: false,
                })
                .collect(),
            secrets: Vec::new(),
            aws: false,
            log_file: PathBuf::from("c.log"),
        }
    }

    /// A connector granted the `Tok` secret resource (its
    /// `…SecretArn-ResourceId` parameter) and a function granted nothing.
    fn plan() -> GroupPlan {
        GroupPlan {
            core: CoreSpec {
                thing_arn: "arn:aws:iot:us-east-1:123456789012:thing/core".into(),
                thing_name: "core".into(),
                region: "us-east-1".into(),
                account: "123456789012".into(),
                sync_shadow: false,
            },
            components: [
                (TWILIO.to_string(), component(TWILIO, &["Tok"])),
                (OTHER.to_string(), component(OTHER, &[])),
            ]
            .into_iter()
            .collect(),
            subscriptions: Vec::new(),
            devices: BTreeMap::new(),
            resources: [(
                "Tok".to_string(),
                ResourceSpec {
                    id: "Tok".into(),
                    name: "TwilioAuthToken".into(),
                    data: ResourceData::Secret {
                        arn: ARN.into(),
                        additional_staging_labels: Vec::new(),
                    },
                },
            )]
            .into_iter()
            .collect(),
            loggers: LoggerPlan::default(),
            stream_manager: None,
        }
    }

    fn deploy(service: &SecretService) {
        let aws = evergreen_aws::credentials::AwsAccess::none("us-east-1");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(service.deploy(&plan(), &aws)).expect("deploy");
    }

    #[test]
    fn only_the_granted_connector_gets_the_secret() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("secrets");
        LocalStore::new(&dir)
            .put("greengrass-tok", b"AC-token-value")
            .expect("put");
        let service = SecretService::new(&dir);
        deploy(&service);
        let v = service.get(TWILIO, ARN, None).expect("granted");
        assert_eq!(v.secret_string.as_deref(), Some("AC-token-value"));
        assert_eq!(v.name, "greengrass-tok");
        assert_eq!(v.version_stages, ["AWSCURRENT"]);
        let v = service
            .get(TWILIO, "greengrass-tok", Some("AWSCURRENT"))
            .expect("by name");
        assert_eq!(v.arn, ARN);
        let r = service.get(OTHER, ARN, None).expect_err("not granted");
        assert_eq!((r.status, r.code), (403, "AccessDeniedException"));
        assert!(r.message.contains("not granted") && !r.message.contains("AC-token"));
        // A secret the group does not have is not found, whoever asks.
        for who in [TWILIO, OTHER] {
            let r = service
                .get(who, "greengrass-not-in-the-group", None)
                .expect_err("not in the group");
            assert_eq!((r.status, r.code), (404, "ResourceNotFoundException"));
            assert!(r.to_string().starts_with("ResourceNotFoundException: "));
        }
        let r = service
            .get(TWILIO, ARN, Some("AWSPREVIOUS"))
            .expect_err("stage");
        assert_eq!(r.status, 404);
        assert_eq!(
            service.get(TWILIO, "", None).expect_err("empty").status,
            400
        );
        let r = service
            .get("arn:unknown", ARN, None)
            .expect_err("unknown component");
        assert_eq!(r.status, 403);
    }

    #[test]
    fn a_deployed_copy_in_array_form_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("secrets");
        LocalStore::new(&dir)
            .put("greengrass-tok", b"AC-token-value")
            .expect("put");
        let service = SecretService::new(&dir);
        deploy(&service);
        let path = dir.join(DEPLOYED_FILE);
        let mut file: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        // serde alone reads a sealed secret from an array of its members, by position.
        let s = file["secrets"][0].clone();
        file["secrets"][0] = serde_json::json!([
            s["resourceId"],
            s["arn"],
            s["name"],
            s["origin"],
            s["versions"]
        ]);
        std::fs::write(&path, file.to_string()).expect("write");
        let err = SecretService::new(&dir)
            .load_file()
            .map(|_| ())
            .expect_err("array form");
        assert!(
            err.to_string()
                .contains("secrets[0]: expected an object, found an array"),
            "{err}"
        );
    }

    #[test]
    fn a_tampered_deployed_copy_is_not_used_and_rotation_changes_the_key() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("secrets");
        LocalStore::new(&dir)
            .put("greengrass-tok", b"AC-token-value")
            .expect("put");
        let service = SecretService::new(&dir);
        deploy(&service);
        let file = |d: &Path| -> Value {
            serde_json::from_slice(&std::fs::read(d.join(DEPLOYED_FILE)).expect("read"))
                .expect("json")
        };
        let first = file(&dir);
        deploy(&service);
        let second = file(&dir);
        assert_ne!(first["dataKey"], second["dataKey"]);
        assert_ne!(
            first["secrets"][0]["versions"][0]["value"],
            second["secrets"][0]["versions"][0]["value"]
        );
        // A fresh service reading the file whose value was altered cannot
        // open it: the previous copies are unusable.
        let mut bad = second.clone();
        let value = bad["secrets"][0]["versions"][0]["value"]
            .as_str()
            .expect("value")
            .to_string();
        let mut bytes = base64_decode(&value).expect("b64");
        bytes[14] ^= 1;
        bad["secrets"][0]["versions"][0]["value"] = Value::String(base64_encode(&bytes));
        std::fs::write(dir.join(DEPLOYED_FILE), bad.to_string()).expect("write");
        let fresh = SecretService::new(&dir);
        assert!(fresh.previous().is_empty());
        let state = fresh.load_file().expect("load").expect("some");
        let s = state.secrets.get("Tok").expect("Tok");
        assert!(matches!(
            open_secret(&state.data_key, s),
            Err(SecretError::Corrupt { .. })
        ));
    }
}
