//! Deployments to a running runtime: a stored group version becomes the
//! running set, or the previous one comes back.
//!
//! A deployment goes `Building` (the version is loaded, its hash checked and
//! the group validated against this runtime's configuration) → `InProgress`
//! (the supervisor diffs it against what runs: unchanged components keep
//! their process, changed and removed ones stop, new ones start, and the
//! subscription table is swapped in one step) → `Success` once every started
//! component is `Ready`, or `Failure`. A failure after the supervisor changed
//! anything **rolls back**: the plan that ran before is deployed again (the
//! same diff in reverse, so components that were never touched keep running
//! throughout). The last successful version is recorded and is what
//! `evergreen run` starts after a reboot or a crash when no `--group` is given.
//!
//! Records use the Greengrass API's names (`DeploymentId`, `DeploymentType`
//! `NewDeployment | Redeployment | ResetDeployment`, `DeploymentStatus`,
//! `ErrorMessage`, `ErrorDetails`, `CreatedAt`, `UpdatedAt`) and are kept in
//! `<write dir>/deployments/history.json` (the newest 100). One deployment
//! runs at a time. This module never starts a process itself and never
//! touches the router: both go through the supervisor actor.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::Instrument as _;

use actix::Addr;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::{format_time, VersionId, VersionStore};
use evergreen_group::plan::GroupPlan;
use evergreen_group::{LoadError, Loader};
use evergreen_runtime::component::ComponentState;
use evergreen_runtime::supervisor::{Deploy, Status, Supervisor};

/// Records kept in the history file.
const HISTORY_LIMIT: usize = 100;
/// How often readiness is polled while a deployment is in progress. A poll
/// is one message per component on the actors' thread, cheap next to a
/// deployment; eg-deploy-bench showed 50 ms dominating a one-component change.
const POLL: Duration = Duration::from_millis(10);
/// Time beyond the readiness timeout before a deployment gives up waiting
/// (the component actor itself kills a child that is not ready in time, so
/// this only covers a supervisor that does not answer).
const READY_MARGIN: Duration = Duration::from_secs(2);

/// `DeploymentType`, as the Greengrass API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentType {
    NewDeployment,
    Redeployment,
    ResetDeployment,
}

/// `DeploymentStatus`, as the Greengrass API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentStatus {
    Building,
    InProgress,
    Success,
    Failure,
}

/// One deployment, as `evergreen deployments` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeploymentRecord {
    pub deployment_id: String,
    pub deployment_type: DeploymentType,
    /// The full id of the group version deployed.
    pub group_version: Option<String>,
    pub deployment_status: DeploymentStatus,
    pub error_message: Option<String>,
    #[serde(default)]
    pub error_details: Vec<String>,
    /// Whether the previous group was deployed again after this one failed.
    #[serde(default)]
    pub rolled_back: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// What runs now, so a failed deployment can restore it.
#[derive(Debug, Clone)]
struct Current {
    plan: GroupPlan,
    label: String,
}

/// Performs deployments against the running supervisor.
#[derive(Debug)]
pub struct Deployer {
    supervisor: Addr<Supervisor>,
    store: VersionStore,
    /// Validates stored versions as `evergreen run` does.
    loader: std::sync::Arc<Loader>,
    dir: PathBuf,
    readiness: Duration,
    current: Mutex<Option<Current>>,
    /// One deployment at a time; the guard spans the whole deployment.
    busy: tokio::sync::Mutex<()>,
    /// What every plan needs installed before the supervisor gets it, in
    /// order: its secrets (resolved and stored under a new data key), its
    /// machine-learning models (fetched from S3).
    installers: Vec<std::sync::Arc<dyn PlanInstaller>>,
}

/// What installs some of a plan's resources before the supervisor gets it: the secret store
/// (fetching with the core's credentials, storing under a new data key) or the model
/// installer (fetching from S3). The deployment fails, before anything changes, when one
/// cannot.
pub trait PlanInstaller: std::fmt::Debug {
    fn install<'a>(&'a self, plan: &'a GroupPlan) -> Installing<'a>;
}

/// A [`PlanInstaller`]'s work in progress, awaited on the actors' thread.
pub type Installing<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), Box<dyn std::error::Error>>> + 'a>,
>;

fn now() -> String {
    format_time(OffsetDateTime::now_utc()).unwrap_or_else(|_| "unknown".to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only whole values are stored under this lock, so a poisoned one still
    // holds a consistent value.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why `redeploy`, `reset` or reading the history failed; the control
/// socket sends the message to the CLI as it is.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("deployment history {} is unreadable: {source}", path.display())]
    HistoryUnreadable {
        path: PathBuf,
        source: evergreen_json::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    HistoryRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no deployment {0:?} in the history")]
    UnknownDeployment(String),
    #[error("deployment {0} names no group version")]
    NoVersion(String),
    #[error(transparent)]
    Group(#[from] LoadError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Why the started components did not all become `Ready`: the deployment
/// fails and is rolled back, and this is its error message.
#[derive(Debug, thiserror::Error)]
enum ReadyError {
    #[error("supervisor: {0}")]
    Supervisor(actix::MailboxError),
    #[error("{arn} did not come up: {why}")]
    DidNotComeUp { arn: String, why: String },
    #[error("not Ready in time: {}", .0.join(", "))]
    NotReadyInTime(Vec<String>),
}

/// `<write dir>/deployments`.
pub(crate) fn deployments_dir(write_dir: &Path) -> PathBuf {
    write_dir.join("deployments")
}

/// The version the last successful deployment left running, if any.
pub fn last_good(write_dir: &Path) -> Option<VersionId> {
    let text = std::fs::read_to_string(deployments_dir(write_dir).join("last-good")).ok()?;
    VersionId::parse(text.trim())
}

/// What a runtime on this write directory ran last: the newer of `evergreen run`'s record
/// (`last-run`: the version it started, or the embedded group) and the last successful
/// deployment (`last-good`), for tools that read its files while it is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastRun {
    Version(VersionId),
    Embedded,
}

/// The text of `last-run` for the embedded default group.
const EMBEDDED_RECORD: &str = "embedded";

/// Records what `evergreen run` starts (`None`: the embedded default group).
pub fn record_last_run(write_dir: &Path, version: Option<&VersionId>) -> std::io::Result<()> {
    let dir = deployments_dir(write_dir);
    std::fs::create_dir_all(&dir)?;
    let text = version.map_or(EMBEDDED_RECORD, VersionId::as_str);
    write_atomic(&dir.join("last-run"), format!("{text}\n").as_bytes())
}

/// The deployment history a runtime on `write_dir` recorded, newest first, read from its file
/// (for tools that read it while no runtime runs; a running one answers `Deployments`).
pub fn history(write_dir: &Path) -> Result<Vec<DeploymentRecord>, DeployError> {
    read_history(deployments_dir(write_dir).join("history.json"))
}

/// What ran last (see [`LastRun`]); `None` when nothing was ever recorded.
pub fn last_run(write_dir: &Path) -> Option<LastRun> {
    let dir = deployments_dir(write_dir);
    let modified = |name: &str| {
        std::fs::metadata(dir.join(name))
            .and_then(|m| m.modified())
            .ok()
    };
    let run = modified("last-run");
    let good = modified("last-good");
    if good.is_some() && (run.is_none() || good > run) {
        return last_good(write_dir).map(LastRun::Version);
    }
    let text = std::fs::read_to_string(dir.join("last-run")).ok()?;
    match text.trim() {
        EMBEDDED_RECORD => Some(LastRun::Embedded),
        id => VersionId::parse(id).map(LastRun::Version),
    }
}

/// Writes `bytes` to `path` atomically and durably (directory fsync included), so a crash
/// leaves the old record or the new, never half of one.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    evergreen_durable::write_atomic(path, bytes, evergreen_durable::Mode::Default)
}

impl Deployer {
    /// Deploys versions stored under `write_dir` (`evergreen.writeDirectory`), validated by
    /// `loader`, waiting up to `readiness` for started components.
    pub fn new(
        supervisor: Addr<Supervisor>,
        write_dir: &Path,
        loader: std::sync::Arc<Loader>,
        readiness: Duration,
    ) -> Self {
        Deployer {
            supervisor,
            store: VersionStore::open(write_dir),
            dir: deployments_dir(write_dir),
            loader,
            readiness,
            current: Mutex::new(None),
            busy: tokio::sync::Mutex::new(()),
            installers: Vec::new(),
        }
    }

    /// Deployments install some of their resources through `installer`,
    /// after those of the installers added before it.
    pub fn with_installer(mut self, installer: std::sync::Arc<dyn PlanInstaller>) -> Self {
        self.installers.push(installer);
        self
    }

    /// Installs `plan`'s resources (secrets, models).
    async fn install_resources(&self, plan: &GroupPlan) -> Result<(), Box<dyn std::error::Error>> {
        for installer in &self.installers {
            installer.install(plan).await?;
        }
        Ok(())
    }

    /// Puts the previous plan's resources back after a refused or failed
    /// deployment; a failure is logged (its components keep running).
    async fn restore_resources(&self, previous: Option<&Current>) {
        if let Some(prev) = previous {
            if let Err(e) = self.install_resources(&prev.plan).await {
                tracing::error!("cannot restore the resources of {}: {e}", prev.label);
            }
        }
    }

    /// Records what the runtime started with (a version, a file or the
    /// embedded group), the rollback target of the first deployment.
    pub fn set_current(&self, plan: GroupPlan, label: String) {
        *lock(&self.current) = Some(Current { plan, label });
    }

    /// What runs now, for `evergreen status`.
    pub(crate) fn current_label(&self) -> Option<String> {
        lock(&self.current).as_ref().map(|c| c.label.clone())
    }

    fn history_path(&self) -> PathBuf {
        self.dir.join("history.json")
    }

    /// Every recorded deployment, newest first.
    pub fn history(&self) -> Result<Vec<DeploymentRecord>, DeployError> {
        read_history(self.history_path())
    }

    /// Adds or updates `rec` in the history file. A history that cannot be
    /// written is logged, never a reason to fail the deployment itself.
    fn save(&self, rec: &DeploymentRecord) {
        let mut records = self.history().unwrap_or_else(|e| {
            tracing::warn!("{e}; starting a new history");
            Vec::new()
        });
        records.reverse(); // oldest first on disk
        match records
            .iter_mut()
            .find(|r| r.deployment_id == rec.deployment_id)
        {
            Some(r) => *r = rec.clone(),
            None => records.push(rec.clone()),
        }
        let excess = records.len().saturating_sub(HISTORY_LIMIT);
        records.drain(..excess);
        let result = serde_json::to_vec_pretty(&records)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomic(&self.history_path(), &bytes));
        if let Err(e) = result {
            tracing::warn!("cannot record deployment {}: {e}", rec.deployment_id);
        }
    }

    fn new_record(&self, kind: DeploymentType, version: Option<String>) -> DeploymentRecord {
        let ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let mut id = ms;
        // Ids are unique and increasing even for two deployments in one millisecond.
        if let Some(last) = self
            .history()
            .ok()
            .and_then(|h| h.first().and_then(|r| r.deployment_id.parse::<i128>().ok()))
        {
            id = id.max(last + 1);
        }
        let at = now();
        DeploymentRecord {
            deployment_id: id.to_string(),
            deployment_type: kind,
            group_version: version,
            deployment_status: DeploymentStatus::Building,
            error_message: None,
            error_details: Vec::new(),
            rolled_back: false,
            created_at: at.clone(),
            updated_at: at,
        }
    }

    fn finish(
        &self,
        mut rec: DeploymentRecord,
        status: DeploymentStatus,
        error: Option<String>,
    ) -> DeploymentRecord {
        rec.deployment_status = status;
        rec.error_message = error;
        rec.updated_at = now();
        self.save(&rec);
        match status {
            DeploymentStatus::Success => tracing::info!(
                "deployment {} of group version {} succeeded",
                rec.deployment_id,
                rec.group_version.as_deref().unwrap_or("?")
            ),
            _ => tracing::error!(
                "deployment {} failed: {}",
                rec.deployment_id,
                rec.error_message.as_deref().unwrap_or("")
            ),
        }
        rec
    }

    /// Deploys the stored version `id_or_prefix`; returns when it succeeded or
    /// failed (and, if needed, was rolled back).
    pub async fn deploy(&self, id_or_prefix: &str, kind: DeploymentType) -> DeploymentRecord {
        let _busy = self.busy.lock().await;
        let rec = self.new_record(kind, None);
        self.save(&rec);
        let span = tracing::info_span!(parent: None, "deployment", id = %rec.deployment_id);
        self.deploy_recorded(rec, id_or_prefix)
            .instrument(span)
            .await
    }

    /// [`Self::deploy`] once its record is saved.
    async fn deploy_recorded(
        &self,
        mut rec: DeploymentRecord,
        id_or_prefix: &str,
    ) -> DeploymentRecord {
        let stored = match self.store.load(id_or_prefix) {
            Ok(s) => s,
            Err(e) => return self.finish(rec, DeploymentStatus::Failure, Some(e.to_string())),
        };
        let id = stored.id().clone();
        rec.group_version = Some(id.as_str().to_string());
        let label = format!("group version {}", id.short());
        let plan = match self
            .loader
            .load(&stored.group, &label, stored.base_dir.clone())
        {
            Ok(plan) => plan,
            Err(LoadError::Invalid { errors, .. }) => {
                rec.error_details = errors.iter().map(ToString::to_string).collect();
                let msg = format!("{label} is not valid with this runtime's configuration");
                return self.finish(rec, DeploymentStatus::Failure, Some(msg));
            }
            Err(e) => return self.finish(rec, DeploymentStatus::Failure, Some(e.to_string())),
        };
        rec.deployment_status = DeploymentStatus::InProgress;
        rec.updated_at = now();
        self.save(&rec);
        tracing::info!("deployment {}: deploying {label}", rec.deployment_id);

        let previous = lock(&self.current).clone();
        // A secret that cannot be resolved or a model that cannot be
        // fetched fails the deployment before anything changes.
        if let Err(e) = self.install_resources(&plan).await {
            return self.finish(rec, DeploymentStatus::Failure, Some(e.to_string()));
        }
        let diff = match self.supervisor.send(Deploy::new(plan.clone())).await {
            Ok(Ok(diff)) => diff,
            // Refused before anything changed: nothing to roll back.
            Ok(Err(e)) => {
                self.restore_resources(previous.as_ref()).await;
                rec.error_details = e.0;
                return self.finish(
                    rec,
                    DeploymentStatus::Failure,
                    Some("the runtime refused the group".into()),
                );
            }
            Err(e) => {
                return self.finish(
                    rec,
                    DeploymentStatus::Failure,
                    Some(format!("supervisor: {e}")),
                )
            }
        };
        // On-demand functions start with their first message, not now.
        let pinned: Vec<String> = diff
            .start
            .iter()
            .filter(|arn| plan.components.get(*arn).is_some_and(|c| c.pinned))
            .cloned()
            .collect();
        match self.wait_ready(&pinned).await {
            Ok(()) => {
                let bytes = format!("{}\n", id.as_str());
                if let Err(e) = write_atomic(&self.dir.join("last-good"), bytes.as_bytes()) {
                    tracing::error!("cannot record the last good deployment: {e}");
                }
                *lock(&self.current) = Some(Current { plan, label });
                self.finish(rec, DeploymentStatus::Success, None)
            }
            Err(reason) => {
                self.restore_resources(previous.as_ref()).await;
                let restored = match previous {
                    Some(prev) => {
                        match self.supervisor.send(Deploy::new(prev.plan.clone())).await {
                            Ok(Ok(_)) => {
                                rec.rolled_back = true;
                                format!("rolled back to {}", prev.label)
                            }
                            Ok(Err(e)) => format!("rolling back to {} failed too: {e}", prev.label),
                            Err(e) => format!("rolling back failed: supervisor: {e}"),
                        }
                    }
                    None => "nothing ran before it to roll back to".to_string(),
                };
                self.finish(
                    rec,
                    DeploymentStatus::Failure,
                    Some(format!("{reason}; {restored}")),
                )
            }
        }
    }

    /// Waits until every component in `started` is `Ready`; the first one
    /// that exits, breaks the protocol or times out fails the deployment.
    async fn wait_ready(&self, started: &[String]) -> Result<(), ReadyError> {
        let deadline = Instant::now() + self.readiness + READY_MARGIN;
        loop {
            let statuses = match self.supervisor.send(Status).await {
                Ok(s) => s,
                Err(e) => return Err(ReadyError::Supervisor(e)),
            };
            let mut pending = Vec::new();
            for arn in started {
                let Some(s) = statuses.iter().find(|s| &s.arn == arn) else {
                    pending.push(arn.as_str());
                    continue;
                };
                let failed = s.restarts > 0
                    || matches!(
                        s.state,
                        ComponentState::Backoff | ComponentState::Failed | ComponentState::Stopped
                    );
                if failed {
                    let why = s
                        .last_exit
                        .as_ref()
                        .map_or_else(|| "stopped".to_string(), ToString::to_string);
                    return Err(ReadyError::DidNotComeUp {
                        arn: arn.clone(),
                        why,
                    });
                }
                if s.state != ComponentState::Running {
                    pending.push(arn.as_str());
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ReadyError::NotReadyInTime(
                    pending.iter().map(|a| a.to_string()).collect(),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Deploys again the version of deployment `deployment_id`.
    pub async fn redeploy(&self, deployment_id: &str) -> Result<DeploymentRecord, DeployError> {
        let history = self.history()?;
        let Some(version) = history
            .iter()
            .find(|r| r.deployment_id == deployment_id)
            .map(|r| r.group_version.clone())
        else {
            return Err(DeployError::UnknownDeployment(deployment_id.to_owned()));
        };
        let Some(version) = version else {
            return Err(DeployError::NoVersion(deployment_id.to_owned()));
        };
        Ok(self.deploy(&version, DeploymentType::Redeployment).await)
    }

    /// Stops every component: deploys the empty group (stored as a version,
    /// so a restart after a reset starts nothing too).
    pub async fn reset(&self) -> Result<DeploymentRecord, DeployError> {
        let text = "{}";
        let plan = self
            .loader
            .load(text, "the empty group", PathBuf::from("/"))?;
        let created = self.store.create(text, Path::new("/"), None, &plan)?;
        Ok(self
            .deploy(created.id.as_str(), DeploymentType::ResetDeployment)
            .await)
    }
}

/// The history file's records, newest first; none when there is no file. Read strictly: a
/// record is an object (serde alone would take one from an array, by position).
fn read_history(path: PathBuf) -> Result<Vec<DeploymentRecord>, DeployError> {
    let mut records: Vec<DeploymentRecord> = match std::fs::read(&path) {
        Ok(bytes) => match evergreen_json::from_slice(&bytes) {
            Ok(records) => records,
            Err(source) => return Err(DeployError::HistoryUnreadable { path, source }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(DeployError::HistoryRead { path, source }),
    };
    records.reverse();
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_record_in_array_form_is_unreadable() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("history.json");
        assert_eq!(read_history(path.clone()).expect("no file"), []);
        let record = r#"{"DeploymentId":"1","DeploymentType":"NewDeployment","GroupVersion":null,
            "DeploymentStatus":"Success","ErrorMessage":null,"CreatedAt":"t0","UpdatedAt":"t1"}"#;
        std::fs::write(&path, format!("[{record}]")).expect("write");
        assert_eq!(read_history(path.clone()).expect("reads").len(), 1);
        std::fs::write(
            &path,
            r#"[["1", "NewDeployment", null, "Success", null, [], false, "t0", "t1"]]"#,
        )
        .expect("write");
        let err = read_history(path).expect_err("array form");
        assert!(
            err.to_string()
                .contains("[0]: expected an object, found an array"),
            "{err}"
        );
    }

    #[test]
    fn records_use_the_greengrass_field_names() {
        let rec = DeploymentRecord {
            deployment_id: "1".into(),
            deployment_type: DeploymentType::Redeployment,
            group_version: Some("ab".into()),
            deployment_status: DeploymentStatus::Failure,
            error_message: Some("x".into()),
            error_details: vec!["y".into()],
            rolled_back: true,
            created_at: "t0".into(),
            updated_at: "t1".into(),
        };
        let json = serde_json::to_value(&rec).expect("json");
        assert_eq!(json["DeploymentType"], "Redeployment");
        assert_eq!(json["DeploymentStatus"], "Failure");
        assert_eq!(json["ErrorDetails"][0], "y");
        assert_eq!(json["GroupVersion"], "ab");
        let back: DeploymentRecord = serde_json::from_value(json).expect("back");
        assert_eq!(back, rec);
    }

    #[test]
    fn last_good_is_read_back_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(last_good(dir.path()), None);
        let id = VersionId::of(b"{}");
        write_atomic(
            &deployments_dir(dir.path()).join("last-good"),
            format!("{}\n", id.as_str()).as_bytes(),
        )
        .expect("write");
        assert_eq!(last_good(dir.path()), Some(id));
        write_atomic(&deployments_dir(dir.path()).join("last-good"), b"garbage").expect("write");
        assert_eq!(last_good(dir.path()), None);
    }
}
