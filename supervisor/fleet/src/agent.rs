//! The gateway's fleet agent: takes deployment documents from the upstream broker, checks them,
//! fetches and stores the bundle, deploys it, and publishes the gateway's status, retained.
//!
//! One document at a time, in the order they arrive. For each:
//!
//! 1. [`crate::document::verify`]: size, envelope, trusted key, signature, target, bundle
//!    reference. A refusal is published on the gateway's `refused` topic with its code;
//!    nothing else happens.
//! 2. [`crate::state::FleetState::judge`]: an older sequence (or the same one with other content)
//!    is refused as `Replayed` (reported as in 1); the document accepted last and finished is ignored (a retained
//!    message comes again at every reconnect, and must not redeploy); the one accepted last and
//!    not finished is resumed (the runtime stopped while applying it).
//! 3. Accepted (recorded durably), then `Downloading`: [`crate::fetch`].
//! 4. `Deploying`: [`Apply::import`] stores the bundle as a group version, [`Apply::deploy`]
//!    runs it with the deployer, which rolls back by itself when the new group fails.
//! 5. `Success`, `Failure` or `RolledBack`, recorded as the document's outcome and published.
//!
//! The status is published retained, so an operator sees each gateway's last word even if it
//! connected later. On the AWS IoT Jobs transport ([`crate::jobs`]) documents come as job
//! executions instead, and each status also updates the job execution.

use std::path::{Path, PathBuf};

use crate::document::{self, Identity, Refusal, TrustedKey};
use crate::fetch;
use crate::jobs;
use crate::state::{FleetState, Verdict};
use crate::topics::{self, State, Status};

/// Where the agent publishes: the upstream connection (the cloud bridge).
pub trait Upstream {
    /// Publishes `payload` on `topic`, retained, QoS 1. Only the newest payload of a topic
    /// matters: an older one not yet sent may be replaced.
    fn publish_retained(&self, topic: &str, payload: Vec<u8>);
    /// The same, not retained (the Jobs API's requests).
    fn publish(&self, topic: &str, payload: Vec<u8>);
}

/// Where deployment documents come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Retained messages on the fleet's topics ([`crate::topics`]).
    Mqtt,
    /// AWS IoT Jobs: the job document is the deployment document ([`crate::jobs`]).
    Jobs,
}

/// What became of a deployment the deployer ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub success: bool,
    pub rolled_back: bool,
    pub deployment_id: String,
    pub message: Option<String>,
}

/// What the agent needs of the runtime: storing a bundle and deploying a stored version.
#[allow(async_fn_in_trait)]
pub trait Apply {
    /// Stores the bundle at `path` as a group version; its id, or why not.
    fn import(&self, path: &Path, label: &str) -> Result<String, String>;
    /// Deploys the stored version `id` (waits until it succeeded, failed or rolled back).
    async fn deploy(&self, id: &str) -> Deployed;
    /// The group version running now, if known.
    fn current(&self) -> Option<String>;
    /// The runtime's status document, for the health message; `None` when it has none now.
    async fn health(&self) -> Option<serde_json::Value>;
}

/// The agent's settings, from `evergreen.fleet` and the core's thing name.
#[derive(Debug, Clone)]
pub struct Settings {
    pub me: Identity,
    pub topic_prefix: String,
    pub trusted: Vec<TrustedKey>,
    pub max_bundle_bytes: u64,
    pub write_dir: PathBuf,
    /// How often the health message is published (also at start and after each deployment).
    pub health_interval: std::time::Duration,
    pub transport: Transport,
}

impl Settings {
    /// The topics the agent takes documents from: the thing's own, then each group's (MQTT),
    /// or the thing's Jobs topics.
    pub fn document_topics(&self) -> Vec<String> {
        if self.transport == Transport::Jobs {
            return jobs::subscriptions(&self.me.thing);
        }
        std::iter::once(topics::thing_deployment(&self.topic_prefix, &self.me.thing))
            .chain(
                self.me
                    .groups
                    .iter()
                    .map(|g| topics::group_deployment(&self.topic_prefix, g)),
            )
            .collect()
    }
}

/// The agent.
pub struct Agent<U, A> {
    settings: Settings,
    state: FleetState,
    upstream: U,
    apply: A,
    /// The AWS IoT job whose document is being applied (Jobs transport).
    job: Option<String>,
    /// What the last health message said of the version and each component's state and
    /// restarts: a change publishes one at once.
    last_health: Option<String>,
}

impl<U, A> std::fmt::Debug for Agent<U, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("settings", &self.settings)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<U: Upstream, A: Apply> Agent<U, A> {
    /// An agent over the state kept in the write directory.
    pub fn new(settings: Settings, upstream: U, apply: A) -> Result<Self, String> {
        let state = FleetState::open(&settings.write_dir)?;
        Ok(Agent {
            settings,
            state,
            upstream,
            apply,
            job: None,
            last_health: None,
        })
    }

    /// A connection to the broker is up with the agent's topics subscribed: on the Jobs
    /// transport, ask for the next pending job (a notification sent meanwhile was missed).
    pub fn on_connected(&self) {
        if self.settings.transport == Transport::Jobs {
            self.start_next();
        }
    }

    /// Handles one message on the agent's topics.
    pub async fn on_message(&mut self, topic: &str, payload: &[u8]) {
        if self.settings.transport == Transport::Mqtt {
            return self.on_document(topic, payload).await;
        }
        match jobs::parse(&self.settings.me.thing, topic, payload) {
            Some(jobs::Incoming::Pending) => self.start_next(),
            Some(jobs::Incoming::Execution { job_id, document }) => {
                log::info!("fleet: AWS IoT job {job_id} started");
                let bytes = serde_json::to_vec(&document).unwrap_or_default();
                self.job = Some(job_id);
                self.on_document(topic, &bytes).await;
                self.job = None;
                // The next one, if any.
                self.start_next();
            }
            Some(jobs::Incoming::Nothing(why)) => log::debug!("fleet: {why}"),
            Some(jobs::Incoming::Idle) | None => {}
        }
    }

    fn start_next(&self) {
        self.upstream.publish(
            &jobs::topic(&self.settings.me.thing, "start-next"),
            jobs::start_next(),
        );
    }

    /// Handles one deployment document.
    pub async fn on_document(&mut self, topic: &str, payload: &[u8]) {
        if payload.is_empty() {
            // A cleared retained message: nothing is asked.
            return;
        }
        let s = &self.settings;
        let document = match document::verify(payload, &s.trusted, &s.me, s.max_bundle_bytes) {
            Ok(d) => d,
            Err(refusal) => return self.refuse(topic, None, &refusal),
        };
        // The signed text, to tell a redelivery from a replay (verify checked it parses).
        let text = serde_json::from_slice::<document::Envelope>(payload)
            .map(|e| e.document)
            .unwrap_or_default();
        match self.state.judge(&document, &text) {
            Ok(Verdict::Apply) => {
                if let Err(e) = self.state.accept(&document, &text) {
                    log::error!(
                        "fleet: cannot record document {} of {}: {e}",
                        document.sequence,
                        document.fleet
                    );
                    self.report(
                        Some(&document),
                        State::Failure,
                        Some(("StateIo", e.to_string())),
                        None,
                    );
                    return;
                }
                log::info!(
                    "fleet: deployment {} of fleet {} accepted from {topic}",
                    document.sequence,
                    document.fleet
                );
            }
            Ok(Verdict::Resume) => log::info!(
                "fleet: resuming deployment {} of fleet {} (the runtime stopped while applying it)",
                document.sequence,
                document.fleet
            ),
            Ok(Verdict::Done(outcome)) if self.job.is_some() => {
                // A job delivered again after it finished here: its final status again.
                let state = match outcome.as_str() {
                    "Success" => State::Success,
                    "RolledBack" => State::RolledBack,
                    _ => State::Failure,
                };
                let failure = (state != State::Success).then(|| {
                    (
                        "DeploymentFailed",
                        format!("the deployment ended {outcome}"),
                    )
                });
                self.report(Some(&document), state, failure, None);
                return;
            }
            Ok(Verdict::Done(outcome)) => {
                log::debug!(
                    "fleet: deployment {} of fleet {} delivered again; it ended {outcome}, nothing to do",
                    document.sequence,
                    document.fleet
                );
                return;
            }
            Err(refusal) => return self.refuse(topic, Some(&document), &refusal),
        }
        let outcome = self.apply_document(&document).await;
        if let Err(e) = self.state.finish(&document.fleet, &format!("{outcome:?}")) {
            log::error!(
                "fleet: cannot record the outcome of deployment {}: {e}",
                document.sequence
            );
        }
        self.publish_health().await;
    }

    /// Publishes the gateway's health message (retained).
    pub async fn publish_health(&mut self) {
        let runtime = self.apply.health().await.unwrap_or(serde_json::Value::Null);
        self.publish_health_with(runtime);
    }

    /// Publishes the health message now if the version or a component's state or restart
    /// count changed since the last one (a crash shows at once, not at the next interval).
    pub async fn publish_health_if_changed(&mut self) {
        let runtime = self.apply.health().await.unwrap_or(serde_json::Value::Null);
        if self.last_health != Some(self.fingerprint(&runtime)) {
            self.publish_health_with(runtime);
        }
    }

    /// The version and each component's name, state and restarts.
    fn fingerprint(&self, runtime: &serde_json::Value) -> String {
        let components: Vec<String> = runtime["components"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|c| format!("{}={}/{}", c["id"], c["state"], c["restarts"]))
                    .collect()
            })
            .unwrap_or_default();
        format!("{:?} {}", self.apply.current(), components.join(","))
    }

    fn publish_health_with(&mut self, runtime: serde_json::Value) {
        self.last_health = Some(self.fingerprint(&runtime));
        let health = topics::Health {
            thing: self.settings.me.thing.clone(),
            groups: self.settings.me.groups.clone(),
            version: self.apply.current(),
            accepted: self.state.accepted().clone(),
            runtime,
            updated_at: now(),
        };
        match serde_json::to_vec(&health) {
            Ok(bytes) => self.upstream.publish_retained(
                &topics::thing_health(&self.settings.topic_prefix, &self.settings.me.thing),
                bytes,
            ),
            Err(e) => log::error!("fleet: cannot encode the health message: {e}"),
        }
    }

    /// How often [`Agent::publish_health`] is due.
    pub fn health_interval(&self) -> std::time::Duration {
        self.settings.health_interval
    }

    /// How often [`Agent::publish_health_if_changed`] looks: every 5 s, or the health interval
    /// when that is shorter.
    pub fn change_interval(&self) -> std::time::Duration {
        self.settings
            .health_interval
            .min(std::time::Duration::from_secs(5))
    }

    /// Fetches, stores and deploys; returns the final state (already published).
    async fn apply_document(&mut self, document: &document::Document) -> State {
        self.report(Some(document), State::Downloading, None, None);
        let source = match document.bundle.source() {
            Ok(s) => s,
            Err(r) => return self.fail(document, r.code(), r.to_string()),
        };
        let b = &document.bundle;
        let path = match fetch::fetch(&source, &b.sha256, b.size, &self.settings.write_dir).await {
            Ok(p) => p,
            Err(e) => return self.fail(document, e.code(), e.to_string()),
        };
        self.report(Some(document), State::Deploying, None, None);
        let label = format!("fleet {} deployment {}", document.fleet, document.sequence);
        let id = match self.apply.import(&path, &label) {
            Ok(id) => id,
            Err(e) => return self.fail(document, "InvalidBundle", e),
        };
        let deployed = self.apply.deploy(&id).await;
        let state = if deployed.success {
            State::Success
        } else if deployed.rolled_back {
            State::RolledBack
        } else {
            State::Failure
        };
        let failure = (!deployed.success).then(|| {
            (
                "DeploymentFailed",
                deployed
                    .message
                    .clone()
                    .unwrap_or_else(|| "the deployment failed".into()),
            )
        });
        log::info!(
            "fleet: deployment {} of fleet {}: {state:?}{}",
            document.sequence,
            document.fleet,
            failure
                .as_ref()
                .map(|(_, m)| format!(" ({m})"))
                .unwrap_or_default()
        );
        self.report(Some(document), state, failure, Some(deployed.deployment_id));
        state
    }

    fn fail(&mut self, document: &document::Document, code: &str, reason: String) -> State {
        log::error!(
            "fleet: deployment {} of fleet {} failed: {reason}",
            document.sequence,
            document.fleet
        );
        self.report(Some(document), State::Failure, Some((code, reason)), None);
        State::Failure
    }

    /// Reports a refused document: in the log, retained on the gateway's `refused` topic (never
    /// on its status topic, which keeps saying how the deployment it accepted went: an old
    /// retained document coming again, or a forged one, must not hide that), and as the job's
    /// failure on the Jobs transport.
    fn refuse(&mut self, topic: &str, document: Option<&document::Document>, refusal: &Refusal) {
        log::error!("fleet: a document on {topic} refused: {refusal}");
        let status = self.status(
            document,
            State::Failure,
            Some((refusal.code(), refusal.to_string())),
            None,
        );
        match serde_json::to_vec(&status) {
            Ok(bytes) => self.upstream.publish_retained(
                &topics::thing_refused(&self.settings.topic_prefix, &self.settings.me.thing),
                bytes,
            ),
            Err(e) => log::error!("fleet: cannot encode the refusal: {e}"),
        }
        self.update_job(&status);
    }

    /// Publishes the gateway's status (retained).
    fn report(
        &mut self,
        document: Option<&document::Document>,
        state: State,
        failure: Option<(&str, String)>,
        deployment_id: Option<String>,
    ) {
        let status = self.status(document, state, failure, deployment_id);
        self.publish(&status);
        self.update_job(&status);
    }

    fn status(
        &self,
        document: Option<&document::Document>,
        state: State,
        failure: Option<(&str, String)>,
        deployment_id: Option<String>,
    ) -> Status {
        let (code, reason) = match failure {
            Some((c, r)) => (Some(c.to_string()), Some(r)),
            None => (None, None),
        };
        Status {
            thing: self.settings.me.thing.clone(),
            fleet: document.map(|d| d.fleet.clone()),
            sequence: document.map(|d| d.sequence),
            state,
            code,
            reason,
            version: self.apply.current(),
            deployment_id,
            updated_at: now(),
        }
    }

    /// On the Jobs transport, the job execution follows the status.
    fn update_job(&self, status: &Status) {
        if let Some(job) = &self.job {
            self.upstream.publish(
                &jobs::topic(&self.settings.me.thing, &format!("{job}/update")),
                jobs::update(
                    status.state,
                    status.code.as_deref(),
                    status.reason.as_deref(),
                    status.version.as_deref(),
                    status.sequence,
                ),
            );
        }
    }

    fn publish(&self, status: &Status) {
        match serde_json::to_vec(status) {
            Ok(bytes) => self.upstream.publish_retained(
                &topics::thing_status(&self.settings.topic_prefix, &self.settings.me.thing),
                bytes,
            ),
            Err(e) => log::error!("fleet: cannot encode the status: {e}"),
        }
    }
}

/// Now, in RFC 3339 (UTC), as status messages and documents date themselves.
pub fn now() -> String {
    evergreen_durable::format_time(time::OffsetDateTime::now_utc()).unwrap_or_default()
}
