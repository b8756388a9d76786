//! How a component's process is started: the `Sandbox` trait and its variants.
//!
//! The supervisor describes *what* to run in a [`SpawnSpec`]; a sandbox
//! decides *how*: [`PlainExec`] for `NoContainer`, [`ContainerSandbox`] (its
//! own namespaces, root and cgroup; see [`jail`] and [`cgroup`]) for
//! `GreengrassContainer`. Whatever the
//! variant, the child gets its stdio as pipes (stdin/stdout carry frames,
//! stderr is free text), its own process group (so the whole group can be
//! signalled), and dies with the supervisor (`PR_SET_PDEATHSIG`). A sandbox
//! never waits for or reaps the child: the component actor owns that.

pub(crate) mod cgroup;
pub mod check;
mod container;
pub(crate) mod jail;
mod plain;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use container::{component_pid, ContainerGuard, ContainerSandbox};
pub use jail::{CapabilityMasks, CapabilityPlan};
pub(crate) use plain::PlainExec;

use evergreen_group::plan::{Isolation, RunAs};

/// What to run, independent of the isolation used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpawnSpec {
    /// The component's ARN, for errors and for the child's environment.
    pub arn: String,
    pub program: PathBuf,
    /// `argv[0]` as `ps` should show it.
    pub arg0: Option<OsString>,
    pub args: Vec<OsString>,
    /// The complete environment: nothing is inherited that is not listed.
    pub env: Vec<(OsString, OsString)>,
    pub run_as: RunAs,
    pub working_dir: Option<PathBuf>,
    /// `MemorySize` in KB; plain exec cannot enforce it (as in Greengrass's
    /// NoContainer mode) and ignores it.
    pub memory_kb: Option<u64>,
    /// A name no other started child of this runtime shares (component id
    /// and the runtime-wide instance number, see [`Sandboxes::next_instance`]):
    /// the container's cgroup and mount point. Per component it is not
    /// enough: a redeployment starts the new actor of a component while the
    /// old one is still stopping, and both actors count from 1.
    pub instance: String,
    /// The container's hostname.
    pub hostname: String,
    /// Granted resources to mount in a container (plain exec ignores them:
    /// NoContainer components use host paths).
    pub mounts: Vec<ResourceMount>,
}

/// What a granted resource is, for mounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MountKind {
    Device,
    Volume,
    Model,
}

/// A granted resource as a container mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceMount {
    pub resource_id: String,
    pub kind: MountKind,
    /// Host path.
    pub source: PathBuf,
    /// Path inside the container.
    pub target: PathBuf,
    pub read_write: bool,
    /// `AutoAddGroupOwner`: the source's group joins the process's groups.
    pub auto_add_group_owner: bool,
    /// `GroupOwner` (a name or gid) when not automatic.
    pub group_owner: Option<String>,
}

/// A started child, and for a container what must be cleaned up after it.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub child: tokio::process::Child,
    pub container: Option<ContainerGuard>,
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SandboxError {
    #[error("{arn}: cannot start {program}: {source}")]
    Spawn {
        arn: String,
        program: String,
        source: std::io::Error,
    },
    #[error("{arn}: cannot run as uid {uid:?} gid {gid:?}: the supervisor runs as uid {own_uid} and only root may switch identity")]
    Identity {
        arn: String,
        uid: Option<u32>,
        gid: Option<u32>,
        own_uid: u32,
    },
    #[error("{arn}: GreengrassContainer isolation cannot run on this host: {why} (see `evergreen check`)")]
    Unsupported { arn: String, why: String },
    #[error("{arn}: cannot set up the container: {why}")]
    Container {
        arn: String,
        why: container::ContainerError,
    },
}

/// A way of starting component processes.
pub(crate) trait Sandbox: fmt::Debug + Send + Sync {
    /// Starts the child with piped stdio. Must be called on a thread that
    /// outlives the child (the supervisor's main thread): Linux delivers the
    /// parent-death signal when the *thread* that forked exits.
    fn spawn(&self, spec: &SpawnSpec) -> Result<Spawned, SandboxError>;
}

/// Picks the sandbox for an isolation mode, or says why there is none.
#[derive(Debug)]
pub struct Sandboxes {
    plain: PlainExec,
    /// The container sandbox, or why this host cannot have one.
    container: Result<ContainerSandbox, String>,
    /// The last instance number handed out (see [`Sandboxes::next_instance`]).
    instances: AtomicU64,
}

impl Sandboxes {
    /// The sandboxes this build and host provide, for the runtime whose root
    /// is `runtime_root`. Container mode is set up only when the host check
    /// passes; leftovers of a previous run on the same root are removed.
    pub fn detect(runtime_root: &std::path::Path) -> Self {
        let container = match crate::sandbox::check::container_support() {
            Some(why) => Err(why.to_string()),
            None => cgroup::Cgroups::detect_host(runtime_root)
                .map_err(|e| e.to_string())
                .and_then(|cgroups| {
                    ContainerSandbox::new(cgroups, runtime_root).map_err(|e| e.to_string())
                }),
        }
        .map(|(sandbox, stale)| {
            if stale > 0 {
                tracing::info!(
                    "removed {stale} cgroups and container mount points left by a previous run"
                );
            }
            sandbox
        });
        if let Err(why) = &container {
            tracing::info!("container mode is not available: {why}");
        }
        Sandboxes {
            plain: PlainExec::new(),
            container,
            instances: AtomicU64::new(0),
        }
    }

    /// What a clean stop leaves of container mode on the host, removed:
    /// this runtime's (empty) cgroup instance directories and the empty
    /// `<root>/containers` directory. Called once every component is gone.
    pub fn release_host(runtime_root: &std::path::Path) {
        if crate::sandbox::check::container_support().is_some() {
            return;
        }
        if let Ok(cgroups) = cgroup::Cgroups::detect_host(runtime_root) {
            cgroups.remove_instance();
        }
        let _ = std::fs::remove_dir(runtime_root.join("containers"));
    }

    /// Plain exec only, for tests of the supervisor that never start containers.
    pub fn plain_only() -> Self {
        Sandboxes {
            plain: PlainExec::new(),
            container: Err("container mode is disabled here".into()),
            instances: AtomicU64::new(0),
        }
    }

    /// A number no other child started by this runtime has had, for its
    /// [`SpawnSpec::instance`]. One counter for every component: the old
    /// and the new actor of a redeployed (or rolled back) component each
    /// count their own generations from 1, so a per-actor number would give
    /// both instances the same cgroup, and creating or removing one would
    /// kill the other. Leftovers of an earlier run on the same root are
    /// removed before the first child starts, so numbering anew at every
    /// start cannot meet a live instance.
    pub(crate) fn next_instance(&self) -> u64 {
        self.instances.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn for_mode(
        &self,
        mode: Isolation,
        arn: &str,
    ) -> Result<&dyn Sandbox, SandboxError> {
        match (mode, &self.container) {
            (Isolation::NoContainer, _) => Ok(&self.plain),
            (Isolation::GreengrassContainer, Ok(container)) => Ok(container),
            (Isolation::GreengrassContainer, Err(why)) => Err(SandboxError::Unsupported {
                arn: arn.to_string(),
                why: why.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_started_instance_of_a_component_gets_its_own_name() {
        // The defect: a redeployed connector's old and new actor both
        // named their first child `<Id>.1`. The names now come from one
        // counter shared by every actor of the runtime.
        let sandboxes = std::sync::Arc::new(Sandboxes::plain_only());
        let old_actor_first = cgroup::cgroup_name("SerialStream", sandboxes.next_instance());
        let new_actor_first = cgroup::cgroup_name("SerialStream", sandboxes.next_instance());
        assert_ne!(old_actor_first, new_actor_first);
        assert_eq!(old_actor_first, "SerialStream.1");
        assert_eq!(new_actor_first, "SerialStream.2");
        // Actors run on one thread today, but the counter must hold if
        // they ever do not: numbers taken from several threads never repeat.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = sandboxes.clone();
                std::thread::spawn(move || (0..1000).map(|_| s.next_instance()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect();
        assert_eq!(all.len(), 4000);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4000, "an instance number was handed out twice");
        assert!(all.iter().all(|n| *n > 2));
    }
}
