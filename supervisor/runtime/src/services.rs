//! The two seams between the core and the services around it, so that the core names none of
//! them: a [`PlanListener`] is told of every plan the supervisor deploys (the MQTT server's
//! devices, the shadow service's synced things, the cloud bridge's subscriptions), and the
//! component services ([`ShadowService`], [`SecretSource`], [`CredentialSource`]) answer what a
//! component asks over its link (stdio frames or the Lambda endpoint).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use evergreen_group::plan::GroupPlan;
use evergreen_ipc::{AwsCredentials, SecretValue};

/// Told of each plan the supervisor deploys, after the router's table is swapped and before
/// the new components start.
pub trait PlanListener: Send + Sync + std::fmt::Debug {
    /// Called while the supervisor checks a plan, before anything changes: an error (a port
    /// the service cannot bind, say) refuses the deployment with that reason.
    fn prepare(&self, _plan: &GroupPlan) -> Result<(), String> {
        Ok(())
    }

    fn deployed(&self, plan: &GroupPlan);
}

/// The tokens the runtime gave its functions' workers, each with the ARN it was given to,
/// readable from any thread: services outside the actor system's thread (the stream manager)
/// check their clients against it. A worker's token leaves it when the worker exits.
#[derive(Debug, Clone, Default)]
pub struct TokenDirectory(
    std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, String>>>,
);

impl TokenDirectory {
    pub fn insert(&self, token: &str, arn: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_string(), arn.to_string());
    }

    pub fn remove(&self, token: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }

    /// The ARN `token` was given to, while it lives.
    pub fn lookup(&self, token: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }
}

/// Answers a component's shadow requests: the local shadow service.
pub trait ShadowService: Send + Sync + std::fmt::Debug {
    /// Handles the request `topic` (`$aws/things/<thing>/shadow[/name/<name>]/<op>`) from the
    /// component `source`: `(accepted, answer document)`, or `None` when `topic` is not a
    /// shadow request topic. Blocking (it may read and fsync a file): callers run it on the
    /// blocking pool.
    fn request(&self, source: &str, topic: &str, payload: &[u8]) -> Option<(bool, Vec<u8>)>;
}

/// Answers a component's secret requests: the deployed secrets granted to it.
pub trait SecretSource: Send + Sync + std::fmt::Debug {
    /// `component`'s request for `secret_id` at `stage` (default `AWSCURRENT`), or why it is
    /// refused. Answered from memory; the caller logs refusals.
    fn get(
        &self,
        component: &str,
        secret_id: &str,
        stage: Option<&str>,
    ) -> Result<SecretValue, Refusal>;
}

/// The answer to a credentials request, awaited on the actors' thread.
pub type CredentialsAnswer = Pin<Box<dyn Future<Output = Result<AwsCredentials, String>>>>;

/// Answers the AWS credential requests of components whose manifest declares AWS access (the
/// core's credentials chain), and names the endpoints their AWS calls go to.
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// Credentials for one request: may call out (the IoT credentials provider), so the
    /// answer is a future the caller awaits without holding up the component's reader.
    fn credentials(&self) -> CredentialsAnswer;
    /// Endpoint overrides by service key (`sns`, `firehose`, …), handed to connectors in
    /// their configuration.
    fn endpoints(&self) -> BTreeMap<String, String>;
}

/// Why a request was refused: an HTTP-like status (for the Lambda IPC's
/// `{"Status","Message"}`), the error code Secrets Manager gives for the same
/// case (`ResourceNotFoundException` with 404 for a secret the group does not
/// have, `AccessDeniedException` with 403 for one not granted to the caller),
/// and a message naming the id, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    /// `<code>: <message>`: the text a component is answered with, so code
    /// written against Secrets Manager finds the exception's name in it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The answer to every secret request when there is no secret store: nothing is granted.
/// Only tests need one; the runtime always has a store.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct NoSecrets;

#[cfg(test)]
impl SecretSource for NoSecrets {
    fn get(&self, _: &str, secret_id: &str, _: Option<&str>) -> Result<SecretValue, Refusal> {
        Err(Refusal {
            status: 404,
            code: "ResourceNotFoundException",
            message: format!("secret {secret_id:?} is not a secret resource of this group"),
        })
    }
}

/// Largest shadow request payload: AWS IoT's MQTT message limit. The shadow service refuses
/// larger ones (413); the core looks for no `clientToken` in them.
pub const MAX_SHADOW_REQUEST: usize = 128 << 10;
/// Longest `clientToken`, as AWS IoT allows; a longer one is not echoed.
pub const MAX_CLIENT_TOKEN: usize = 64;

/// The `clientToken` of a request body if it is a valid one: echoed even when another field is
/// bad.
pub fn client_token(body: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    match body.get("clientToken") {
        Some(serde_json::Value::String(s)) if s.len() <= MAX_CLIENT_TOKEN => Some(s.clone()),
        _ => None,
    }
}

/// The shadow service's `/rejected` document: `code`, `message`, `timestamp` (seconds since
/// the epoch), and `clientToken` when the request had a valid one. One shape for the shadow
/// service and for the requests the core answers itself.
pub fn rejected(code: u16, message: &str, token: Option<&str>, now: u64) -> serde_json::Value {
    let mut doc = serde_json::json!({ "code": code, "message": message, "timestamp": now });
    if let (Some(token), serde_json::Value::Object(map)) = (token, &mut doc) {
        map.insert(
            "clientToken".into(),
            serde_json::Value::String(token.into()),
        );
    }
    doc
}

/// The `/rejected` document for a shadow request the core answers itself: no shadow service,
/// a full queue, a thing name that cannot form the topic.
pub(crate) fn rejection_document(code: u16, message: &str, request: &[u8]) -> Vec<u8> {
    let token = (request.len() <= MAX_SHADOW_REQUEST)
        .then(|| serde_json::from_slice::<serde_json::Value>(request).ok())
        .flatten()
        .and_then(|body| body.as_object().and_then(client_token));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rejected(code, message, token.as_deref(), now)
        .to_string()
        .into_bytes()
}
