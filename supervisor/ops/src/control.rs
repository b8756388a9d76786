//! The control socket: how `evergreen status` (and later the deployment
//! commands) talk to a running runtime.
//!
//! It owns the Unix-domain socket file (`evergreen.controlSocket`), the
//! authentication of every connection by its peer credentials, the wire
//! protocol (one JSON request per line, one JSON response per line), the
//! status document, and the client the CLI uses.
//!
//! It must never change the runtime except through messages to the
//! [`Supervisor`] actor, never block the actix thread it runs on (every wait
//! is a task with a deadline), and never trust a peer: a connection is served
//! only after its credentials pass [`peer_allowed`], and a line that is too
//! long, not JSON or not a known operation is answered with an error, never a
//! panic.
//!
//! # Protocol
//!
//! Requests are objects tagged by `op` ([`Request`]): `{"op":"status"}`,
//! `{"op":"ping"}`. A success is `{"ok":true,"op":<op>,...}` ([`Reply`]), a
//! failure `{"ok":false,"error":"<why>"}`. A bad line (invalid JSON, unknown
//! op) gets an error and the connection stays usable; a line longer than
//! [`MAX_LINE`] bytes gets an error and the connection is closed, since the
//! rest of it cannot be told from the next request. Blank lines are ignored.
//! A connection that sends no complete line for [`IDLE_TIMEOUT`] is closed;
//! at most [`MAX_CONNECTIONS`] are served at once.
//!
//! # Who may connect
//!
//! The socket is created `0660` in a directory created `0750`, so the file
//! system already limits it to the runtime's user and group. Each connection
//! is checked again by `SO_PEERCRED` (the file's mode is set just after
//! `bind`, and an operator may loosen it): root, the runtime's own user, or a
//! process whose effective group is the runtime's group.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, Write as _};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use evergreen_ipc::ComponentKind;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::deploy::{Deployer, DeploymentRecord, DeploymentType};
use evergreen_runtime::component::{ComponentState, ComponentStatus};
use evergreen_runtime::router::{Router, RouterStats};
use evergreen_runtime::supervisor::{RestartComponent, Status, Supervisor};

/// Longest request line, in bytes without its newline. Requests are small
/// (a deployment request names a file, it does not carry one); the bound is
/// what keeps a peer from making the runtime buffer without limit.
pub const MAX_LINE: usize = 64 << 10;
/// A connection that sends no complete request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once; more are answered with an error and closed.
/// An operator's tools need a handful; the bound keeps a runaway script from
/// holding the runtime's file descriptors.
pub const MAX_CONNECTIONS: usize = 16;
pub use evergreen_config::MAX_SOCKET_PATH;
/// Mode of the socket file: the runtime's user and group may connect.
pub const SOCKET_MODE: u32 = 0o660;
/// Mode of the socket's directory when the runtime creates it.
pub const DIR_MODE: u32 = 0o750;
/// How long the supervisor has to answer a status request.
const SUPERVISOR_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an existing socket has to accept a probe connection before it is
/// taken as owned by another runtime (a busy one may be slow, not gone).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// What the status says about the cloud until the cloud bridge exists.
pub const CLOUD_NOT_CONFIGURED: &str = "not configured";
/// The group source when no group file was given.
pub const EMBEDDED_GROUP: &str = "embedded default group";
/// How long the CLI waits for the runtime's answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest response line the client reads: a status of many components is
/// far larger than a request, but still bounded.
const MAX_RESPONSE: u64 = 16 << 20;

// ---------------------------------------------------------------------------------------------
// Protocol
// ---------------------------------------------------------------------------------------------

/// One request line. New operations (deploy, redeploy, reset, deployments,
/// logs) are new variants; [`Request::OPS`] lists every `op` name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// The runtime's and every component's status.
    Status,
    /// Is anybody there? Answers with the runtime's version.
    Ping,
    /// Deploy a stored group version (full id or unique prefix); answers
    /// once it succeeded or failed and was rolled back.
    Deploy { version: String },
    /// Deploy again the group version of an earlier deployment.
    Redeploy {
        #[serde(rename = "deploymentId")]
        deployment_id: String,
    },
    /// Stop every component (deploy the empty group).
    Reset,
    /// The deployment history, newest first.
    Deployments,
    /// Start a component again now (by name, Id or ARN): the operator's way
    /// out of `Failed` without waiting for the cool-down; a running one is
    /// stopped gracefully and started again.
    Restart { component: String },
}

impl Request {
    /// Every `op` a request may name, for the "unknown op" error.
    pub const OPS: &'static [&'static str] = &[
        "status",
        "ping",
        "deploy",
        "redeploy",
        "reset",
        "deployments",
        "restart",
    ];
}

/// The body of a successful response, tagged with the request's `op`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Reply {
    Status {
        status: RuntimeStatus,
    },
    Ping {
        version: String,
    },
    /// The outcome of `deploy`, `redeploy` or `reset`.
    Deployment {
        deployment: DeploymentRecord,
    },
    Deployments {
        deployments: Vec<DeploymentRecord>,
    },
    /// `restart`: which component, and what was done.
    Restart {
        arn: String,
        message: String,
    },
}

/// A response: a reply, or the reason the request failed.
pub type Response = Result<Reply, String>;

#[derive(Serialize)]
struct OkLine<'a> {
    ok: bool,
    #[serde(flatten)]
    reply: &'a Reply,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    ok: bool,
    error: &'a str,
}

/// One response line, without its newline: `{"ok":true,"op":…,…}` or
/// `{"ok":false,"error":"…"}`.
pub fn encode_response(response: &Response) -> String {
    let encoded = match response {
        Ok(reply) => serde_json::to_string(&OkLine { ok: true, reply }),
        Err(error) => serde_json::to_string(&ErrorLine { ok: false, error }),
    };
    // Serializing these plain structs cannot fail (string keys, no maps with
    // other keys); should it ever, the peer still gets a well-formed line.
    encoded.unwrap_or_else(|e| {
        format!(
            r#"{{"ok":false,"error":{}}}"#,
            Value::String(format!("cannot encode the response: {e}"))
        )
    })
}

/// Parses one request line. The error is the text sent back to the peer.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| format!("invalid request: not JSON: {e}"))?;
    let op = match value.get("op") {
        Some(Value::String(op)) => op.clone(),
        _ => {
            return Err(
                r#"invalid request: a request is a JSON object with an "op" string, e.g. {"op":"status"}"#
                    .to_string(),
            )
        }
    };
    if !Request::OPS.contains(&op.as_str()) {
        return Err(format!(
            "unknown op {:?}; known: {}",
            truncate(&op, 64),
            Request::OPS.join(", ")
        ));
    }
    serde_json::from_value(value).map_err(|e| format!("invalid {op} request: {e}"))
}

/// At most `max` characters of `s`, so an error never echoes a whole line.
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The status document
// ---------------------------------------------------------------------------------------------

/// The answer to `{"op":"status"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStatus {
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    /// The group file's path, or [`EMBEDDED_GROUP`].
    pub group: String,
    /// The cloud connection; [`CLOUD_NOT_CONFIGURED`] until the bridge exists.
    pub cloud: String,
    /// The runtime's own resident set (children not included).
    pub rss_kib: Option<u64>,
    /// The runtime's own log (`<log root>/system/runtime.log`), absolute;
    /// `None` when not known (a runtime built before it was reported).
    #[serde(default)]
    pub log_file: Option<String>,
    pub counts: Counts,
    /// In ARN order.
    pub components: Vec<ComponentReport>,
}

/// How many components are in each state, and how many subscriptions route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub components: usize,
    pub starting: usize,
    pub running: usize,
    pub stopping: usize,
    pub backoff: usize,
    pub failed: usize,
    pub stopped: usize,
    pub subscriptions: usize,
}

/// One component in the status document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentReport {
    pub arn: String,
    pub id: String,
    pub name: String,
    pub kind: ComponentKind,
    pub state: ComponentState,
    pub pid: Option<u32>,
    /// Since its current child was started; `None` without a child.
    pub uptime_ms: Option<u64>,
    pub restarts: u64,
    /// How its previous child ended, in words.
    pub last_exit: Option<String>,
    /// The child's resident set (`VmRSS`), not counting its own children.
    pub rss_kib: Option<u64>,
    /// Messages the router delivered into its queue.
    pub messages_in: u64,
    /// Messages it published (valid topics, routed or not).
    pub messages_out: u64,
    /// Messages waiting in its queue.
    pub queue_depth: usize,
    /// Messages for it that were lost: queue full, or nothing attached.
    pub drops: u64,
    /// Its log file, absolute; empty from a runtime built before it was
    /// reported. Text, like `group`, so a path that is not UTF-8 cannot make
    /// the whole status unencodable.
    #[serde(default)]
    pub log_file: String,
}

/// What the status says about the runtime itself, fixed at start.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    pub started: Instant,
    pub group: String,
    /// The runtime's own log, absolute.
    pub log_file: Option<PathBuf>,
}

impl RuntimeInfo {
    /// `group` is the group file, `None` for the embedded default group.
    pub fn new(started: Instant, group: Option<&Path>) -> Self {
        let group = group.map_or_else(
            || EMBEDDED_GROUP.to_string(),
            // Absolute, so the status means the same from any directory.
            |p| {
                std::path::absolute(p)
                    .unwrap_or_else(|_| p.to_path_buf())
                    .display()
                    .to_string()
            },
        );
        RuntimeInfo {
            started,
            group,
            log_file: None,
        }
    }

    /// Reports `path` (made absolute) as the runtime's own log.
    pub fn with_log_file(mut self, path: &Path) -> Self {
        self.log_file = Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        self
    }
}

/// `VmRSS` of process `pid` in KiB, from `<proc_root>/<pid>/status`; `None`
/// if the process is gone or has no memory of its own (a zombie).
pub fn vm_rss_kib(proc_root: &Path, pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Puts the status document together from the supervisor's answer and the
/// router's counters. `proc_root` is `/proc` outside tests.
pub fn build_status(
    info: &RuntimeInfo,
    components: Vec<ComponentStatus>,
    stats: &RouterStats,
    depths: &BTreeMap<String, usize>,
    subscriptions: usize,
    proc_root: &Path,
) -> RuntimeStatus {
    let mut counts = Counts {
        components: components.len(),
        subscriptions,
        ..Counts::default()
    };
    let mut reports = Vec::with_capacity(components.len());
    for c in components {
        *match c.state {
            ComponentState::Starting => &mut counts.starting,
            ComponentState::Running => &mut counts.running,
            ComponentState::Stopping => &mut counts.stopping,
            ComponentState::Backoff => &mut counts.backoff,
            ComponentState::Failed => &mut counts.failed,
            ComponentState::Stopped => &mut counts.stopped,
        } += 1;
        let target = stats.targets.get(&c.arn).copied().unwrap_or_default();
        let source = stats.sources.get(&c.arn).copied().unwrap_or_default();
        reports.push(ComponentReport {
            rss_kib: c.pid.and_then(|pid| vm_rss_kib(proc_root, pid)),
            messages_in: target.delivered,
            messages_out: source.published,
            queue_depth: depths.get(&c.arn).copied().unwrap_or(0),
            drops: target.dropped_full + target.dropped_unattached,
            uptime_ms: c.uptime.map(millis),
            last_exit: c.last_exit.map(|e| e.to_string()),
            arn: c.arn,
            id: c.id,
            name: c.name,
            kind: c.kind,
            state: c.state,
            pid: c.pid,
            restarts: c.restarts,
            log_file: c.log_file.display().to_string(),
        });
    }
    let pid = std::process::id();
    RuntimeStatus {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid,
        uptime_ms: millis(info.started.elapsed()),
        group: info.group.clone(),
        cloud: CLOUD_NOT_CONFIGURED.to_string(),
        rss_kib: vm_rss_kib(proc_root, pid),
        log_file: info.log_file.as_ref().map(|p| p.display().to_string()),
        counts,
        components: reports,
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

/// A user and group id pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

impl Ids {
    /// The runtime's own effective ids.
    pub fn of_process() -> Self {
        Ids {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }
}

/// Whether a peer with credentials `peer` may use the socket of a runtime
/// running as `runtime`: root, the same user, or the same (effective) group.
/// Supplementary groups are not in `SO_PEERCRED`; a member of the runtime's
/// group uses it with `sg <group> -c 'evergreen status'`.
pub fn peer_allowed(peer: Ids, runtime: Ids) -> bool {
    peer.uid == 0 || peer.uid == runtime.uid || peer.gid == runtime.gid
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {}: another Evergreen runtime is listening on it; stop that runtime first, or set evergreen.controlSocket to another path", path.display())]
    InUse { path: PathBuf },
    #[error("control socket {}: the path exists and is not a socket; remove it or set evergreen.controlSocket to another path", path.display())]
    NotASocket { path: PathBuf },
    #[error("control socket {}: the path is {len} bytes, longer than the {MAX_SOCKET_PATH} a Unix socket address holds; set evergreen.controlSocket to a shorter path", path.display())]
    PathTooLong { path: PathBuf, len: usize },
    #[error("control socket {}: {step}: {source}", path.display())]
    Io {
        path: PathBuf,
        step: &'static str,
        source: io::Error,
    },
}

/// The limits of the server; [`Limits::default`] holds the documented ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_line: usize,
    pub idle: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: MAX_LINE,
            idle: IDLE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// What connections read and ask: the supervisor (by message only) and the
/// router's counters.
#[derive(Debug)]
pub struct ControlState {
    pub supervisor: Addr<Supervisor>,
    pub router: Arc<Router>,
    pub info: RuntimeInfo,
    /// Who the runtime runs as, for [`peer_allowed`].
    pub owner: Ids,
    pub limits: Limits,
    /// `/proc`; a parameter so tests can point it elsewhere.
    pub proc_root: PathBuf,
    /// Performs `deploy`, `redeploy` and `reset`.
    pub deployer: Option<Rc<Deployer>>,
}

impl ControlState {
    pub fn new(supervisor: Addr<Supervisor>, router: Arc<Router>, info: RuntimeInfo) -> Self {
        ControlState {
            supervisor,
            router,
            info,
            owner: Ids::of_process(),
            limits: Limits::default(),
            proc_root: PathBuf::from("/proc"),
            deployer: None,
        }
    }
}

/// The socket file we created; removed when dropped, but only if it is still
/// ours (a runtime started after us may have replaced it).
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::warn!(
                    "control socket {}: cannot remove it: {e}",
                    self.path.display()
                );
            }
        }
    }
}

/// A bound control socket, not yet serving.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    file: SocketFile,
}

impl ControlSocket {
    /// Creates the socket at `path`: its directory (`0750`) if missing, a
    /// stale socket file removed if nothing answers on it, the socket `0660`.
    /// Refuses if another runtime answers there. Must run on a tokio runtime.
    pub async fn bind(path: &Path) -> Result<ControlSocket, ControlError> {
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(ControlError::PathTooLong {
                path: path.to_path_buf(),
                len,
            });
        }
        let io_err = |step: &'static str| {
            move |source| ControlError::Io {
                path: path.to_path_buf(),
                step,
                source,
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(dir)
                    .map_err(io_err("cannot create its directory"))?;
                // The umask may have taken bits the group needs; a directory
                // that already existed is left as its owner set it.
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
                    .map_err(io_err("cannot set its directory's mode"))?;
            }
        }
        remove_if_stale(path).await?;
        let listener = UnixListener::bind(path).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                // Another runtime bound it between our check and our bind.
                ControlError::InUse {
                    path: path.to_path_buf(),
                }
            } else {
                io_err("cannot bind")(e)
            }
        })?;
        let meta = std::fs::symlink_metadata(path).map_err(io_err("cannot stat it"))?;
        let file = SocketFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(io_err("cannot set its mode"))?;
        Ok(ControlSocket { listener, file })
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Starts serving on the current actix (or tokio local) thread.
    pub fn serve(self, state: ControlState) -> ControlServer {
        let (stop, stopped) = watch::channel(false);
        let task = actix_rt::spawn(accept_loop(self, Rc::new(state), stopped));
        ControlServer { stop, task }
    }
}

/// Removes `path` if it is a socket nobody answers on; refuses if someone
/// does, or if it is not a socket.
async fn remove_if_stale(path: &Path) -> Result<(), ControlError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ControlError::Io {
                path: path.to_path_buf(),
                step: "cannot check for an existing socket",
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ControlError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match tokio::time::timeout(PROBE_TIMEOUT, UnixStream::connect(path)).await {
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!(
                "control socket {}: removing a stale socket nobody listens on (left by a runtime that did not stop cleanly)",
                path.display()
            );
            std::fs::remove_file(path).map_err(|source| ControlError::Io {
                path: path.to_path_buf(),
                step: "cannot remove the stale socket",
                source,
            })
        }
        Ok(Err(source)) => Err(ControlError::Io {
            path: path.to_path_buf(),
            step: "cannot tell whether another runtime listens on it",
            source,
        }),
        // It answered, or is too busy to: either way someone owns it.
        Ok(Ok(_)) | Err(_) => Err(ControlError::InUse {
            path: path.to_path_buf(),
        }),
    }
}

/// A serving control socket.
#[derive(Debug)]
pub struct ControlServer {
    stop: watch::Sender<bool>,
    task: actix_rt::task::JoinHandle<()>,
}

impl ControlServer {
    /// Stops accepting, closes every connection and removes the socket file.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Counts served connections; a slot is given back when dropped.
struct Slot(Rc<Cell<usize>>);

impl Slot {
    fn take(active: &Rc<Cell<usize>>, max: usize) -> Option<Slot> {
        (active.get() < max).then(|| {
            active.set(active.get() + 1);
            Slot(active.clone())
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

async fn accept_loop(
    socket: ControlSocket,
    state: Rc<ControlState>,
    mut stopped: watch::Receiver<bool>,
) {
    let ControlSocket { listener, file } = socket;
    log::info!(
        "control socket listening on {} (uid {}, gid {} and root may connect)",
        file.path.display(),
        state.owner.uid,
        state.owner.gid
    );
    let active = Rc::new(Cell::new(0usize));
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                // The slot is taken here, not in the task, so the count is
                // exact however the tasks are scheduled.
                let slot = Slot::take(&active, state.limits.max_connections);
                actix_rt::spawn(connection(stream, slot, state.clone(), stopped.clone()));
            }
            Err(e) => {
                log::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    drop(listener);
    drop(file);
    log::debug!("control socket closed");
}

async fn connection(
    mut stream: UnixStream,
    slot: Option<Slot>,
    state: Rc<ControlState>,
    mut stopped: watch::Receiver<bool>,
) {
    let limits = state.limits;
    let cred = match stream.peer_cred() {
        Ok(cred) => cred,
        Err(e) => {
            log::warn!("control socket: cannot read a peer's credentials, closing: {e}");
            return;
        }
    };
    let peer = Ids {
        uid: cred.uid(),
        gid: cred.gid(),
    };
    let pid = cred
        .pid()
        .map_or_else(|| "unknown".to_string(), |p| p.to_string());
    if !peer_allowed(peer, state.owner) {
        log::warn!(
            "control socket: refused pid {pid} (uid {}, gid {}): only root, uid {} or gid {} may connect",
            peer.uid,
            peer.gid,
            state.owner.uid,
            state.owner.gid
        );
        let error = format!(
            "permission denied: uid {} is not allowed on this socket",
            peer.uid
        );
        let _ = write_response(&mut stream, &Err(error), limits.idle).await;
        return;
    }
    let Some(_slot) = slot else {
        log::warn!(
            "control socket: refused pid {pid}: {} connections are already open",
            limits.max_connections
        );
        let error = format!(
            "too many connections: at most {} at once; try again later",
            limits.max_connections
        );
        let _ = write_response(&mut stream, &Err(error), limits.idle).await;
        return;
    };
    log::debug!(
        "control socket: connection from pid {pid} (uid {})",
        peer.uid
    );
    let (read, mut write) = stream.split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::select! {
            _ = stopped.changed() => return,
            read = tokio::time::timeout(limits.idle, read_line_limited(&mut reader, &mut line, limits.max_line)) => read,
        };
        let response = match read {
            Err(_) => {
                let error = format!(
                    "idle for {} s: closing the connection",
                    limits.idle.as_secs_f32()
                );
                let _ = write_response(&mut write, &Err(error), limits.idle).await;
                return;
            }
            Ok(Err(_)) | Ok(Ok(LineRead::End)) => return,
            Ok(Ok(LineRead::TooLong)) => {
                let error = format!(
                    "request line longer than {} bytes: closing the connection",
                    limits.max_line
                );
                let _ = write_response(&mut write, &Err(error), limits.idle).await;
                return;
            }
            Ok(Ok(LineRead::Line)) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match parse_request(&line) {
                    Ok(request) => handle(request, &state).await,
                    Err(error) => Err(error),
                }
            }
        };
        if write_response(&mut write, &response, limits.idle)
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn handle(request: Request, state: &ControlState) -> Response {
    let deployer = || {
        state
            .deployer
            .clone()
            .ok_or_else(|| "this runtime accepts no deployments".to_string())
    };
    match request {
        Request::Deploy { version } => {
            let deployment = deployer()?
                .deploy(&version, DeploymentType::NewDeployment)
                .await;
            Ok(Reply::Deployment { deployment })
        }
        Request::Redeploy { deployment_id } => {
            let deployment = deployer()?.redeploy(&deployment_id).await?;
            Ok(Reply::Deployment { deployment })
        }
        Request::Reset => {
            let deployment = deployer()?.reset().await?;
            Ok(Reply::Deployment { deployment })
        }
        Request::Restart { component } => {
            match state.supervisor.send(RestartComponent(component)).await {
                Ok(Ok((arn, message))) => Ok(Reply::Restart { arn, message }),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(format!("the supervisor is not running: {e}")),
            }
        }
        Request::Deployments => Ok(Reply::Deployments {
            deployments: deployer()?.history()?,
        }),
        Request::Ping => Ok(Reply::Ping {
            version: env!("CARGO_PKG_VERSION").to_string(),
        }),
        Request::Status => {
            let components =
                match tokio::time::timeout(SUPERVISOR_TIMEOUT, state.supervisor.send(Status)).await
                {
                    Ok(Ok(components)) => components,
                    Ok(Err(_)) => return Err("the supervisor is not running".to_string()),
                    Err(_) => {
                        return Err(format!(
                            "the supervisor did not answer within {} s",
                            SUPERVISOR_TIMEOUT.as_secs()
                        ))
                    }
                };
            // What runs changes with each deployment.
            let mut info = state.info.clone();
            if let Some(label) = state.deployer.as_ref().and_then(|d| d.current_label()) {
                info.group = label;
            }
            let status = build_status(
                &info,
                components,
                &state.router.stats(),
                &state.router.queue_depths(),
                state.router.table().len(),
                &state.proc_root,
            );
            Ok(Reply::Status { status })
        }
    }
}

/// How a line read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineRead {
    /// A line (without its newline) is in the buffer; a last line without a
    /// newline before the end of the stream counts too.
    Line,
    /// The stream ended with nothing buffered.
    End,
    /// More than the limit arrived without a newline.
    TooLong,
}

/// Reads one line into `buf` (newline dropped), refusing more than `max`
/// bytes before the newline without buffering them.
async fn read_line_limited<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                LineRead::End
            } else {
                LineRead::Line
            });
        }
        let (chunk, consumed, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        if buf.len() + chunk.len() > max {
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(chunk);
        reader.consume(consumed);
        if done {
            return Ok(LineRead::Line);
        }
    }
}

async fn write_response<W: AsyncWrite + Unpin>(
    writer: &mut W,
    response: &Response,
    limit: Duration,
) -> io::Result<()> {
    let mut line = encode_response(response);
    line.push('\n');
    // A peer that never reads would otherwise hold the task forever.
    tokio::time::timeout(limit, async {
        writer.write_all(line.as_bytes()).await?;
        writer.flush().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the peer does not read"))?
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// Why a request over the control socket failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no Evergreen runtime is listening on {}", path.display())]
    NotListening { path: PathBuf },
    #[error("cannot connect to {}: {source} (the socket is for root, the runtime's user and its group)", path.display())]
    PermissionDenied { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("the runtime answered: {0}")]
    Refused(String),
    #[error("the runtime's answer is not understood: {0}")]
    BadAnswer(String),
}

/// A connection to a runtime's control socket (blocking: the CLI has no
/// async runtime and needs none for one request).
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    stream: io::BufReader<std::os::unix::net::UnixStream>,
}

impl Client {
    /// Connects; every later read and write waits at most `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Client, ClientError> {
        let stream =
            std::os::unix::net::UnixStream::connect(path).map_err(|source| {
                match source.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                        ClientError::NotListening {
                            path: path.to_path_buf(),
                        }
                    }
                    io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                        path: path.to_path_buf(),
                        source,
                    },
                    _ => ClientError::Io {
                        path: path.to_path_buf(),
                        source,
                    },
                }
            })?;
        let io_err = |source| ClientError::Io {
            path: path.to_path_buf(),
            source,
        };
        stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
        stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
        Ok(Client {
            path: path.to_path_buf(),
            stream: io::BufReader::new(stream),
        })
    }

    /// Sends `request` and returns the successful response object as
    /// received (`ok`, `op` and the reply's fields), for `--json` output.
    pub fn call_raw(&mut self, request: &Request) -> Result<Map<String, Value>, ClientError> {
        let io_err = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_string(request)
            .map_err(|e| ClientError::BadAnswer(format!("cannot encode the request: {e}")))?;
        line.push('\n');
        if let Err(e) = self.stream.get_mut().write_all(line.as_bytes()) {
            // A server that refuses a connection answers and closes at once,
            // possibly before our request is written: its answer is still
            // there to read, and says more than "broken pipe".
            if !matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) {
                return Err(io_err(e));
            }
        }
        let mut answer = String::new();
        let n = io::Read::take(&mut self.stream, MAX_RESPONSE)
            .read_line(&mut answer)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Err(ClientError::BadAnswer(
                "the runtime closed the connection without answering".into(),
            ));
        }
        if !answer.ends_with('\n') {
            return Err(ClientError::BadAnswer(
                "the answer is incomplete or too long".into(),
            ));
        }
        let value: Value = serde_json::from_str(&answer)
            .map_err(|e| ClientError::BadAnswer(format!("not JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(ClientError::BadAnswer("not a JSON object".into()));
        };
        match object.get("ok") {
            Some(Value::Bool(true)) => Ok(object),
            Some(Value::Bool(false)) => Err(ClientError::Refused(
                object
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("(no reason given)")
                    .to_string(),
            )),
            _ => Err(ClientError::BadAnswer("no \"ok\" field".into())),
        }
    }

    /// Sends `request` and decodes the reply.
    pub fn call(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let object = self.call_raw(request)?;
        serde_json::from_value(Value::Object(object))
            .map_err(|e| ClientError::BadAnswer(e.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// The status table
// ---------------------------------------------------------------------------------------------

/// A duration as people read uptimes: `42s`, `5m07s`, `3h12m`, `2d04h`.
pub fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// KiB as `812K`, `12.3M` or `1.2G`.
pub fn human_kib(kib: u64) -> String {
    const MIB: u64 = 1024;
    const GIB: u64 = 1024 * 1024;
    match kib {
        0..MIB => format!("{kib}K"),
        MIB..GIB => format!("{:.1}M", kib as f64 / MIB as f64),
        _ => format!("{:.1}G", kib as f64 / GIB as f64),
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

impl fmt::Display for RuntimeStatus {
    /// The table `evergreen status` prints: a line for the runtime, then one
    /// row per component.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        let mut states = vec![format!("{} running", c.running)];
        for (n, what) in [
            (c.starting, "starting"),
            (c.backoff, "in backoff"),
            (c.failed, "failed"),
            (c.stopping, "stopping"),
            (c.stopped, "stopped"),
        ] {
            if n > 0 {
                states.push(format!("{n} {what}"));
            }
        }
        writeln!(
            f,
            "evergreen {} pid {} up {} rss {}; group {}; {} ({}), {}; cloud {}",
            self.version,
            self.pid,
            human_duration(self.uptime_ms),
            self.rss_kib.map_or_else(|| "-".to_string(), human_kib),
            self.group,
            plural(c.components, "component"),
            states.join(", "),
            plural(c.subscriptions, "subscription"),
            self.cloud,
        )?;
        let dash = || "-".to_string();
        let mut rows = vec![[
            "NAME",
            "STATE",
            "PID",
            "UPTIME",
            "RESTARTS",
            "RSS",
            "IN/OUT",
            "QUEUE",
            "DROPS",
            "LAST EXIT",
        ]
        .map(str::to_string)];
        for comp in &self.components {
            rows.push([
                comp.name.clone(),
                format!("{:?}", comp.state),
                comp.pid.map_or_else(dash, |p| p.to_string()),
                comp.uptime_ms.map_or_else(dash, human_duration),
                comp.restarts.to_string(),
                comp.rss_kib.map_or_else(dash, human_kib),
                format!("{}/{}", comp.messages_in, comp.messages_out),
                comp.queue_depth.to_string(),
                comp.drops.to_string(),
                comp.last_exit.clone().unwrap_or_else(dash),
            ]);
        }
        let mut widths = [0usize; 10];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  "));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::Actor;
    use evergreen_config::RestartPolicy;
    use evergreen_ipc::LogLevel;
    use evergreen_runtime::component::{ExitReason, RestartSettings, RuntimeSettings};
    use evergreen_runtime::router::{SourceStats, SubscriptionTable, TargetStats};
    use evergreen_runtime::sandbox::Sandboxes;
    use std::io::Read as _;
    use std::os::unix::net::UnixStream as StdStream;

    const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:f:1";

    #[test]
    fn permission_rule() {
        let runtime = Ids {
            uid: 1000,
            gid: 1000,
        };
        let allowed = |uid, gid| peer_allowed(Ids { uid, gid }, runtime);
        assert!(allowed(0, 0), "root");
        assert!(allowed(0, 4242), "root in any group");
        assert!(allowed(1000, 4242), "the runtime's user");
        assert!(allowed(4242, 1000), "the runtime's group");
        assert!(!allowed(65534, 65534), "nobody");
        assert!(!allowed(1001, 1001), "another user");
        let as_root = Ids { uid: 0, gid: 0 };
        assert!(!peer_allowed(Ids { uid: 5, gid: 6 }, as_root));
        assert!(peer_allowed(Ids { uid: 5, gid: 0 }, as_root));
    }

    #[test]
    fn requests_parse_and_bad_lines_are_explained() {
        assert_eq!(parse_request(br#"{"op":"status"}"#), Ok(Request::Status));
        assert_eq!(
            parse_request(br#"{"op":"ping","extra":1}"#),
            Ok(Request::Ping)
        );
        for op in Request::OPS {
            // Ops with arguments get them; the point is that every listed op parses.
            let line = match *op {
                "deploy" => r#"{"op":"deploy","version":"abcdef"}"#.to_string(),
                "redeploy" => r#"{"op":"redeploy","deploymentId":"1"}"#.to_string(),
                "restart" => r#"{"op":"restart","component":"f"}"#.to_string(),
                _ => format!(r#"{{"op":"{op}"}}"#),
            };
            assert!(
                parse_request(line.as_bytes()).is_ok(),
                "{op} is listed and parses"
            );
        }
        let err = parse_request(b"{nope").expect_err("not json");
        assert!(err.starts_with("invalid request: not JSON"), "{err}");
        let err = parse_request(b"[1,2]").expect_err("no op");
        assert!(err.contains(r#"an "op" string"#), "{err}");
        let err = parse_request(br#"{"op":"launch"}"#).expect_err("unknown op");
        assert_eq!(
            err,
            r#"unknown op "launch"; known: status, ping, deploy, redeploy, reset, deployments, restart"#
        );
        let err = parse_request(br#"{"op":"deploy"}"#).expect_err("missing version");
        assert!(err.contains("version"), "{err}");
        let long = format!(r#"{{"op":"{}"}}"#, "x".repeat(1000));
        let err = parse_request(long.as_bytes()).expect_err("unknown op");
        assert!(err.len() < 200, "the op is not echoed whole: {err}");
    }

    #[test]
    fn responses_encode_as_documented_and_decode_back() {
        let pong = Reply::Ping {
            version: "1.2.3".into(),
        };
        assert_eq!(
            encode_response(&Ok(pong.clone())),
            r#"{"ok":true,"op":"ping","version":"1.2.3"}"#
        );
        assert_eq!(
            encode_response(&Err(
                "permission denied: uid 7 is not allowed on this socket".into()
            )),
            r#"{"ok":false,"error":"permission denied: uid 7 is not allowed on this socket"}"#
        );
        let value: Value = serde_json::from_str(&encode_response(&Ok(pong.clone()))).expect("json");
        assert_eq!(serde_json::from_value::<Reply>(value).expect("reply"), pong);
    }

    fn component(state: ComponentState, pid: Option<u32>) -> ComponentStatus {
        ComponentStatus {
            arn: ARN.into(),
            id: "f".into(),
            name: "f".into(),
            kind: ComponentKind::Function,
            state,
            pid,
            uptime: pid.map(|_| Duration::from_millis(61_500)),
            restarts: 2,
            last_exit: Some(ExitReason::Exited(3)),
            log_file: PathBuf::from("/var/log/user/f.log"),
        }
    }

    #[test]
    fn status_combines_supervisor_router_and_proc() {
        let proc = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(proc.path().join("4242")).expect("mkdir");
        std::fs::write(
            proc.path().join("4242/status"),
            "Name:\tf\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t1\n",
        )
        .expect("write");
        let mut stats = RouterStats::default();
        stats.targets.insert(
            ARN.into(),
            TargetStats {
                delivered: 10,
                dropped_full: 3,
                dropped_unattached: 1,
                closed: 0,
            },
        );
        stats.sources.insert(
            ARN.into(),
            SourceStats {
                published: 7,
                unrouted: 1,
                refused: 0,
            },
        );
        let depths = BTreeMap::from([(ARN.to_string(), 5)]);
        let info = RuntimeInfo::new(Instant::now(), None)
            .with_log_file(Path::new("/var/log/system/runtime.log"));
        let status = build_status(
            &info,
            vec![component(ComponentState::Running, Some(4242))],
            &stats,
            &depths,
            4,
            proc.path(),
        );
        assert_eq!(status.group, EMBEDDED_GROUP);
        assert_eq!(status.cloud, "not configured");
        assert_eq!(status.pid, std::process::id());
        assert_eq!(status.rss_kib, None, "no such pid in the fake /proc");
        assert_eq!(
            status.counts,
            Counts {
                components: 1,
                running: 1,
                subscriptions: 4,
                ..Counts::default()
            }
        );
        let c = &status.components[0];
        assert_eq!(c.rss_kib, Some(1234));
        assert_eq!((c.messages_in, c.messages_out), (10, 7));
        assert_eq!((c.queue_depth, c.drops), (5, 4));
        assert_eq!(c.uptime_ms, Some(61_500));
        assert_eq!(c.last_exit.as_deref(), Some("exited with status 3"));

        let json = serde_json::to_value(&status).expect("json");
        for key in [
            "version", "pid", "uptimeMs", "group", "cloud", "rssKib", "counts",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
        assert_eq!(json["components"][0]["state"], "Running");
        assert_eq!(json["components"][0]["kind"], "Function");
        assert_eq!(json["components"][0]["queueDepth"], 5);
        assert_eq!(json["logFile"], "/var/log/system/runtime.log");
        assert_eq!(json["components"][0]["logFile"], "/var/log/user/f.log");

        let table = status.to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("evergreen "), "{table}");
        assert!(
            lines[0].contains("1 component (1 running), 4 subscriptions"),
            "{table}"
        );
        assert!(lines[1].starts_with("NAME"), "{table}");
        assert!(lines[2].starts_with("f "), "{table}");
        for cell in [
            "Running",
            "4242",
            "1m01s",
            "1.2M",
            "10/7",
            "exited with status 3",
        ] {
            assert!(lines[2].contains(cell), "{cell} in {table}");
        }

        // A component between children has no pid, uptime or rss.
        let status = build_status(
            &info,
            vec![component(ComponentState::Backoff, None)],
            &stats,
            &depths,
            0,
            proc.path(),
        );
        assert_eq!(status.counts.backoff, 1);
        assert_eq!(status.components[0].uptime_ms, None);
        assert!(status.to_string().contains("1 in backoff"));
    }

    #[test]
    fn rss_of_this_process_is_read_from_proc() {
        let rss = vm_rss_kib(Path::new("/proc"), std::process::id());
        assert!(rss.is_some_and(|k| k > 0), "{rss:?}");
        assert_eq!(vm_rss_kib(Path::new("/nonexistent"), 1), None);
    }

    #[test]
    fn human_units() {
        assert_eq!(human_duration(999), "0s");
        assert_eq!(human_duration(59_999), "59s");
        assert_eq!(human_duration(307_000), "5m07s");
        assert_eq!(human_duration(3 * 3_600_000 + 12 * 60_000), "3h12m");
        assert_eq!(human_duration(2 * 86_400_000 + 4 * 3_600_000), "2d04h");
        assert_eq!(human_kib(812), "812K");
        assert_eq!(human_kib(12_595), "12.3M");
        assert_eq!(human_kib(1_258_291), "1.2G");
    }

    async fn lines(data: &[u8], max: usize) -> Vec<Result<String, LineRead>> {
        // A small buffer, so lines arrive in several pieces.
        let mut reader = tokio::io::BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            buf.clear();
            match read_line_limited(&mut reader, &mut buf, max)
                .await
                .expect("read")
            {
                LineRead::End => return out,
                LineRead::Line => out.push(Ok(String::from_utf8_lossy(&buf).into_owned())),
                LineRead::TooLong => {
                    out.push(Err(LineRead::TooLong));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn line_reader_keeps_lines_and_refuses_long_ones() {
        let ok = |s: &str| Ok(s.to_string());
        assert_eq!(
            lines(b"ping\n\n0123456789\nlast", 10).await,
            [ok("ping"), ok(""), ok("0123456789"), ok("last")]
        );
        assert_eq!(
            lines(b"ping\n0123456789a\nnext\n", 10).await,
            [ok("ping"), Err(LineRead::TooLong)]
        );
        assert_eq!(
            lines(b"0123456789abcdef", 10).await,
            [Err(LineRead::TooLong)],
            "no newline at all"
        );
    }

    fn settings() -> RuntimeSettings {
        let restart = RestartSettings {
            policy: RestartPolicy::Always,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.0,
            reset_after: Duration::from_secs(60),
            crash_loop_limit: 0,
            crash_loop_window: Duration::from_secs(60),
            failed_cooldown: Duration::from_secs(60),
        };
        RuntimeSettings {
            max_frame: 1 << 20,
            queue_capacity: 16,
            readiness_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(1),
            term_grace: Duration::from_secs(1),
            on_demand_idle: Duration::from_secs(60),
            default_run_as: evergreen_group::plan::RunAs::default(),
            on_demand_slots: Arc::new(evergreen_runtime::component::Slots::new(25)),
            restart,
            restart_overrides: BTreeMap::new(),
            log_root: PathBuf::from("/nonexistent"),
            resource_root: PathBuf::from("/nonexistent"),
            self_exe: PathBuf::from("/proc/self/exe"),
            core_thing_name: "core".into(),
            core_thing_arn: "arn:aws:iot:us-east-1:123456789012:thing/core".into(),
            region: "us-east-1".into(),
            aws: evergreen_aws::credentials::AwsAccess::none("us-east-1"),
            secrets: Arc::new(evergreen_secrets::SecretService::new(std::path::Path::new(
                "/nonexistent",
            ))),
            user_log_level: LogLevel::Info,
            user_log_space_kb: 128,
        }
    }

    /// Runs `test` on a thread of its own, against an actix system with a
    /// supervisor (no components) whose control socket is served at
    /// `<tmp>/run/control.sock` with `limits`. The clients are blocking, so
    /// the server's thread stays free to answer.
    fn with_server(limits: Limits, test: impl FnOnce(PathBuf) + Send + 'static) {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("run/control.sock");
        actix_rt::System::new().block_on(async move {
            let router = Arc::new(Router::new(SubscriptionTable::default()));
            let supervisor =
                Supervisor::new(settings(), router.clone(), Sandboxes::plain_only()).start();
            let socket = ControlSocket::bind(&path).await.expect("bind");
            let mut state = ControlState::new(
                supervisor,
                router,
                RuntimeInfo::new(Instant::now(), Some(Path::new("/g.json"))),
            );
            state.limits = limits;
            let server = socket.serve(state);
            let client_path = path.clone();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                test(client_path);
                let _ = done_tx.send(());
            });
            done_rx
                .await
                .expect("the test thread finished without panicking");
            server.shutdown().await;
            assert!(!path.exists(), "the socket is removed on shutdown");
        });
    }

    /// Sends raw bytes and reads one answer line.
    fn exchange(stream: &mut StdStream, bytes: &[u8]) -> Value {
        use std::io::Write;
        stream.write_all(bytes).expect("write");
        read_answer(stream)
    }

    fn read_answer(stream: &mut StdStream) -> Value {
        let mut line = String::new();
        let mut reader = io::BufReader::new(stream);
        reader.read_line(&mut line).expect("read");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    fn connect(path: &Path) -> StdStream {
        let s = StdStream::connect(path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }

    #[test]
    fn server_answers_status_and_survives_bad_lines() {
        with_server(Limits::default(), |path| {
            let dir = path.parent().expect("dir");
            let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode(dir), 0o750);
            assert_eq!(mode(&path), 0o660);

            let mut client = Client::connect(&path, CLIENT_TIMEOUT).expect("connect");
            match client.call(&Request::Status).expect("status") {
                Reply::Status { status } => {
                    assert_eq!(status.group, "/g.json");
                    assert_eq!(status.counts.components, 0);
                    assert!(status.rss_kib.is_some());
                }
                other => panic!("{other:?}"),
            }

            let mut s = connect(&path);
            let a = exchange(&mut s, b"not json\n");
            assert_eq!(a["ok"], false);
            assert!(
                a["error"].as_str().expect("error").contains("not JSON"),
                "{a}"
            );
            let a = exchange(&mut s, b"\n  \n{\"op\":\"explode\"}\n");
            assert_eq!(
                a["ok"], false,
                "blank lines are skipped, then the unknown op"
            );
            assert!(
                a["error"]
                    .as_str()
                    .expect("error")
                    .starts_with("unknown op"),
                "{a}"
            );
            let a = exchange(&mut s, b"{\"op\":\"ping\"}\n");
            assert_eq!(a["ok"], true);
            assert_eq!(a["version"], env!("CARGO_PKG_VERSION"));
            let a = exchange(&mut s, b"{\"op\":\"status\"}\n");
            assert_eq!(a["op"], "status");

            // Over-long: an error, then the connection is closed.
            let mut long = vec![b'x'; MAX_LINE + 10];
            long.push(b'\n');
            let a = exchange(&mut s, &long);
            assert!(
                a["error"]
                    .as_str()
                    .expect("error")
                    .contains("longer than 65536"),
                "{a}"
            );
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            assert!(rest.is_empty(), "closed after the error");

            // A line of exactly the limit is still read (and is no JSON).
            let mut s = connect(&path);
            let mut max = vec![b' '; MAX_LINE - 1];
            max.push(b'1');
            max.push(b'\n');
            let a = exchange(&mut s, &max);
            assert_eq!(a["ok"], false);
            assert!(
                a["error"]
                    .as_str()
                    .expect("error")
                    .contains("an \"op\" string"),
                "{a}"
            );
        });
    }

    #[test]
    fn idle_connections_are_closed() {
        let limits = Limits {
            idle: Duration::from_millis(200),
            ..Limits::default()
        };
        with_server(limits, |path| {
            let mut s = connect(&path);
            let a = exchange(&mut s, b"{\"op\":\"ping\"}\n");
            assert_eq!(a["ok"], true);
            // Half a line, then silence.
            let a = exchange(&mut s, b"{\"op\":");
            assert!(
                a["error"].as_str().expect("error").starts_with("idle for"),
                "{a}"
            );
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            assert!(rest.is_empty());
        });
    }

    #[test]
    fn connections_beyond_the_limit_are_refused() {
        let limits = Limits {
            max_connections: 3,
            ..Limits::default()
        };
        with_server(limits, |path| {
            let mut open: Vec<StdStream> = (0..3).map(|_| connect(&path)).collect();
            for s in &mut open {
                assert_eq!(exchange(s, b"{\"op\":\"ping\"}\n")["ok"], true);
            }
            let mut extra = connect(&path);
            let a = read_answer(&mut extra);
            assert!(
                a["error"]
                    .as_str()
                    .expect("error")
                    .starts_with("too many connections"),
                "{a}"
            );
            drop(open.pop());
            // The slot comes back once the server has seen the close.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mut s = connect(&path);
                if exchange(&mut s, b"{\"op\":\"ping\"}\n")["ok"] == true {
                    break;
                }
                assert!(Instant::now() < deadline, "a slot is given back");
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }

    #[test]
    fn stale_sockets_are_replaced_and_live_ones_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("control.sock");
        let other = dir.path().join("file");
        std::fs::write(&other, "x").expect("write");
        actix_rt::System::new().block_on(async {
            // A socket left behind by a runtime that was killed.
            drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
            assert!(path.exists());
            let first = ControlSocket::bind(&path)
                .await
                .expect("stale socket replaced");
            match ControlSocket::bind(&path).await {
                Err(ControlError::InUse { .. }) => {}
                other => panic!("expected InUse, got {other:?}"),
            }
            assert!(path.exists(), "the live socket is left alone");
            drop(first);
            assert!(!path.exists(), "removed when dropped");
            match ControlSocket::bind(&other).await {
                Err(e @ ControlError::NotASocket { .. }) => {
                    assert!(e.to_string().contains("not a socket"))
                }
                other => panic!("expected NotASocket, got {other:?}"),
            }
            assert!(
                other.exists(),
                "a file that is not a socket is never removed"
            );
            let long = dir.path().join("x".repeat(120));
            assert!(matches!(
                ControlSocket::bind(&long).await,
                Err(ControlError::PathTooLong { .. })
            ));
        });
    }

    #[test]
    fn client_reports_a_missing_runtime() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("none.sock");
        let err = Client::connect(&path, CLIENT_TIMEOUT).expect_err("nobody there");
        assert_eq!(
            err.to_string(),
            format!("no Evergreen runtime is listening on {}", path.display())
        );
        // A stale socket file: refused, same message.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        let err = Client::connect(&path, CLIENT_TIMEOUT).expect_err("nobody there");
        assert!(matches!(err, ClientError::NotListening { .. }), "{err:?}");
    }
}
