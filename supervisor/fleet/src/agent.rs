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
//! A document with a `release` instead of a bundle installs a new runtime ([`crate::slots`]):
//! 3. `Downloading` the binary for this gateway's target into its slot, checked against the
//!    signed size and SHA-256, then asked for its version (`<binary> --version` must name the
//!    signed version: a binary for another machine, or a wrong build, fails here).
//! 4. `Installing`: the trial is written to the boot record and the runtime restarts
//!    ([`Apply::restart`]); the launcher starts the new binary, which reports `Success` once
//!    it passed the health gate. A failed gate or a crash loop brings the previous release
//!    back, and that runtime reports `RolledBack` with the reason ([`Agent::reconcile`]).
//!
//! The status is published retained, so an operator sees each gateway's last word even if it
//! connected later. On the AWS IoT Jobs transport ([`crate::jobs`]) documents come as job
//! executions instead, and each status also updates the job execution.

use std::path::{Path, PathBuf};

use crate::document::{self, Content, Identity, Refusal, TrustedKey};
use crate::fetch;
use crate::jobs;
use crate::slots::{Slot, Slots, Trial};
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
    /// Stops every component and starts the runtime again (through the launcher, which picks
    /// the release the boot record names).
    fn restart(&self, reason: &str);
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
    /// The Evergreen version running (reported; a release of this version is already done).
    pub runtime_version: String,
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
    slots: Slots,
    /// A release was installed and the runtime is restarting onto it: no further document.
    restarting: bool,
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
        let slots = Slots::new(&settings.write_dir);
        let mut agent = Agent {
            settings,
            state,
            upstream,
            apply,
            job: None,
            last_health: None,
            slots,
            restarting: false,
        };
        agent.reconcile();
        Ok(agent)
    }

    /// Reports how the last runtime update ended, if the boot record holds an outcome not yet
    /// reported (the new runtime passed its health gate, or the previous one came back), and
    /// records it as the document's outcome, so that the document delivered again is done.
    pub fn reconcile(&mut self) {
        let mut boot = match self.slots.load() {
            Ok(Some(boot)) => boot,
            Ok(None) => return,
            Err(e) => return tracing::error!("fleet: cannot read the release boot record: {e}"),
        };
        let Some(outcome) = boot.outcome.take() else {
            return;
        };
        tracing::info!(
            "fleet: runtime update {} of fleet {} to version {}: {:?}{}",
            outcome.sequence,
            outcome.fleet,
            outcome.version,
            outcome.state,
            outcome
                .reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        let document = ReportFor {
            fleet: outcome.fleet.clone(),
            sequence: outcome.sequence,
        };
        let failure = outcome.code.clone().map(|code| {
            (
                code,
                outcome
                    .reason
                    .clone()
                    .unwrap_or_else(|| "the update failed".into()),
            )
        });
        let status = self.status_for(Some(&document), outcome.state, failure, None);
        self.publish(&status);
        if let Err(e) = self
            .state
            .finish(&outcome.fleet, &format!("{:?}", outcome.state))
        {
            tracing::error!(
                "fleet: cannot record the outcome of update {}: {e}",
                outcome.sequence
            );
        }
        if let Err(e) = self.slots.save(&boot) {
            tracing::error!("fleet: cannot update the release boot record: {e}");
        }
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
                tracing::info!("fleet: AWS IoT job {job_id} started");
                let bytes = serde_json::to_vec(&document).unwrap_or_default();
                self.job = Some(job_id);
                self.on_document(topic, &bytes).await;
                self.job = None;
                // The next one, if any.
                self.start_next();
            }
            Some(jobs::Incoming::Nothing(why)) => tracing::debug!("fleet: {why}"),
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
        if self.restarting {
            tracing::info!(
                "fleet: a document on {topic} waits: the runtime is restarting onto a new release"
            );
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
                    tracing::error!(
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
                tracing::info!(
                    "fleet: deployment {} of fleet {} accepted from {topic}",
                    document.sequence,
                    document.fleet
                );
            }
            Ok(Verdict::Resume) if self.trying(&document) => {
                tracing::info!(
                    "fleet: update {} of fleet {} is being tried (the health gate decides)",
                    document.sequence,
                    document.fleet
                );
                return;
            }
            Ok(Verdict::Resume) => tracing::info!(
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
                tracing::debug!(
                    "fleet: deployment {} of fleet {} delivered again; it ended {outcome}, nothing to do",
                    document.sequence,
                    document.fleet
                );
                return;
            }
            Err(refusal) => return self.refuse(topic, Some(&document), &refusal),
        }
        let outcome = match document.content(document::target()) {
            Ok(Content::Release { version, binary }) => {
                let (version, binary) = (version.to_string(), binary.clone());
                match self.apply_release(&document, &version, &binary).await {
                    Some(outcome) => outcome,
                    // Restarting: the outcome is the next runtime's to record.
                    None => return,
                }
            }
            Ok(Content::Bundle(_)) | Err(_) => self.apply_document(&document).await,
        };
        if let Err(e) = self.state.finish(&document.fleet, &format!("{outcome:?}")) {
            tracing::error!(
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
            runtime_version: Some(self.settings.runtime_version.clone()),
            accepted: self.state.accepted().clone(),
            runtime,
            updated_at: now(),
        };
        match serde_json::to_vec(&health) {
            Ok(bytes) => self.upstream.publish_retained(
                &topics::thing_health(&self.settings.topic_prefix, &self.settings.me.thing),
                bytes,
            ),
            Err(e) => tracing::error!("fleet: cannot encode the health message: {e}"),
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

    /// Whether the boot record has `document`'s release on trial.
    fn trying(&self, document: &document::Document) -> bool {
        let trial = self.slots.load().ok().flatten().and_then(|b| b.trial);
        trial.is_some_and(|t| t.fleet == document.fleet && t.sequence == document.sequence)
    }

    /// Fetches the release's binary into its slot, checks it, writes the trial and restarts;
    /// `None` once restarting, else the final state (already published).
    async fn apply_release(
        &mut self,
        document: &document::Document,
        version: &str,
        binary: &document::BundleRef,
    ) -> Option<State> {
        if version == self.settings.runtime_version {
            tracing::info!(
                "fleet: update {} of fleet {}: version {version} runs already",
                document.sequence,
                document.fleet
            );
            self.report(Some(document), State::Success, None, None);
            return Some(State::Success);
        }
        self.report(Some(document), State::Downloading, None, None);
        let source = match binary.source() {
            Ok(s) => s,
            Err(r) => return Some(self.fail(document, r.code(), r.to_string())),
        };
        let path = match fetch::fetch(
            &source,
            &binary.sha256,
            binary.size,
            &self.settings.write_dir,
        )
        .await
        {
            Ok(p) => p,
            Err(e) => return Some(self.fail(document, e.code(), e.to_string())),
        };
        let mut boot = match self.slots.load() {
            Ok(b) => b.unwrap_or_default(),
            Err(e) => return Some(self.fail(document, "StateIo", e)),
        };
        let keep = boot.active.as_ref().map(|a| a.version.clone());
        let installed = match self.slots.install(version, &path, keep.as_deref()) {
            Ok(p) => p,
            Err(e) => {
                return Some(self.fail(
                    document,
                    "InstallIo",
                    format!("cannot install the binary into its slot: {e}"),
                ))
            }
        };
        if let Err(reason) = probe_version(&installed, version).await {
            let _ = self.slots.remove_except(&[keep.as_deref()]);
            return Some(self.fail(document, "BadRelease", reason));
        }
        boot.outcome = None;
        boot.trial = Some(Trial {
            slot: Slot {
                version: version.to_string(),
                sha256: binary.sha256.clone(),
            },
            fleet: document.fleet.clone(),
            sequence: document.sequence,
            starts: 0,
            from_version: self.settings.runtime_version.clone(),
        });
        if let Err(e) = self.slots.save(&boot) {
            return Some(self.fail(
                document,
                "StateIo",
                format!("cannot write the boot record: {e}"),
            ));
        }
        tracing::info!(
            "fleet: update {} of fleet {}: version {version} installed in {}; restarting onto it",
            document.sequence,
            document.fleet,
            installed.display()
        );
        self.report(Some(document), State::Installing, None, None);
        self.restarting = true;
        self.apply.restart(&format!("update to version {version}"));
        None
    }

    /// Fetches, stores and deploys; returns the final state (already published).
    async fn apply_document(&mut self, document: &document::Document) -> State {
        self.report(Some(document), State::Downloading, None, None);
        let Some(b) = document.bundle.as_ref() else {
            return self.fail(document, "Malformed", "the document has no bundle".into());
        };
        let source = match b.source() {
            Ok(s) => s,
            Err(r) => return self.fail(document, r.code(), r.to_string()),
        };
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
        tracing::info!(
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
        tracing::error!(
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
        tracing::error!("fleet: a document on {topic} refused: {refusal}");
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
            Err(e) => tracing::error!("fleet: cannot encode the refusal: {e}"),
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
        let about = document.map(|d| ReportFor {
            fleet: d.fleet.clone(),
            sequence: d.sequence,
        });
        let failure = failure.map(|(c, r)| (c.to_string(), r));
        self.status_for(about.as_ref(), state, failure, deployment_id)
    }

    fn status_for(
        &self,
        about: Option<&ReportFor>,
        state: State,
        failure: Option<(String, String)>,
        deployment_id: Option<String>,
    ) -> Status {
        let (code, reason) = failure.unzip();
        Status {
            thing: self.settings.me.thing.clone(),
            fleet: about.map(|d| d.fleet.clone()),
            sequence: about.map(|d| d.sequence),
            state,
            code,
            reason,
            version: self.apply.current(),
            runtime_version: Some(self.settings.runtime_version.clone()),
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
            Err(e) => tracing::error!("fleet: cannot encode the status: {e}"),
        }
    }
}

/// Which document a status is about.
#[derive(Debug)]
struct ReportFor {
    fleet: String,
    sequence: u64,
}

/// How long `<binary> --version` may take.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Runs `<binary> --version`: it must print `evergreen <version>`. A binary for another
/// machine, a truncated or wrong build fails here, before the runtime restarts onto it.
pub async fn probe_version(binary: &Path, version: &str) -> Result<(), String> {
    let run = tokio::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(PROBE_TIMEOUT, run).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(format!("cannot run {} --version: {e}", binary.display())),
        Err(_) => {
            return Err(format!(
                "{} --version did not answer within {} s",
                binary.display(),
                PROBE_TIMEOUT.as_secs()
            ))
        }
    };
    let said = String::from_utf8_lossy(&output.stdout);
    let said = said.trim();
    if output.status.success() && said == format!("evergreen {version}") {
        Ok(())
    } else {
        Err(format!(
            "{} --version says {said:?} ({}), the release is version {version}",
            binary.display(),
            output.status
        ))
    }
}

/// Now, in RFC 3339 (UTC), as status messages and documents date themselves.
pub fn now() -> String {
    evergreen_durable::format_time(time::OffsetDateTime::now_utc()).unwrap_or_default()
}
