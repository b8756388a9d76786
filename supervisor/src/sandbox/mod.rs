//! How a component's process is started: the `Sandbox` trait and its variants.
//!
//! The supervisor describes *what* to run in a [`SpawnSpec`]; a sandbox
//! decides *how*: [`PlainExec`] for `NoContainer` (here), the namespaced
//! container for `GreengrassContainer` (the container issue). Whatever the
//! variant, the child gets its stdio as pipes (stdin/stdout carry frames,
//! stderr is free text), its own process group (so the whole group can be
//! signalled), and dies with the supervisor (`PR_SET_PDEATHSIG`). A sandbox
//! never waits for or reaps the child: the component actor owns that.

mod plain;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

pub use plain::PlainExec;

use crate::group::plan::{Isolation, RunAs};

/// What to run, independent of the isolation used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnSpec {
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
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
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
    #[error("{arn}: {mode:?} isolation is not available in this build (only NoContainer is); set IsolationMode to NoContainer")]
    Unsupported { arn: String, mode: Isolation },
}

/// A way of starting component processes.
pub trait Sandbox: fmt::Debug + Send + Sync {
    /// The isolation mode this sandbox provides.
    fn isolation(&self) -> Isolation;

    /// Starts the child with piped stdio. Must be called on a thread that
    /// outlives the child (the supervisor's main thread): Linux delivers the
    /// parent-death signal when the *thread* that forked exits.
    fn spawn(&self, spec: &SpawnSpec) -> Result<tokio::process::Child, SandboxError>;
}

/// Picks the sandbox for an isolation mode, or says why there is none.
#[derive(Debug)]
pub struct Sandboxes {
    plain: PlainExec,
}

impl Sandboxes {
    /// The sandboxes this build and kernel provide.
    pub fn detect() -> Self {
        Sandboxes {
            plain: PlainExec::new(),
        }
    }

    pub fn for_mode(&self, mode: Isolation, arn: &str) -> Result<&dyn Sandbox, SandboxError> {
        match mode {
            Isolation::NoContainer => Ok(&self.plain),
            Isolation::GreengrassContainer => Err(SandboxError::Unsupported {
                arn: arn.to_string(),
                mode,
            }),
        }
    }
}
