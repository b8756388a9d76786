//! The server side of the control socket: binding (and replacing a stale
//! socket, never a live one), accepting with a connection limit, reading
//! bounded lines, and answering each request through the supervisor actor.
//! It never blocks the actix thread: every wait has a deadline.

use std::cell::Cell;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::peer::{peer_allowed, Ids};
use super::protocol::{encode_response, parse_request, Reply, Request, RequestError};
use super::status::{build_status, RuntimeInfo};
use super::*;
use crate::deploy::{DeployError, Deployer, DeploymentType};
use evergreen_config::MAX_SOCKET_PATH;
use evergreen_runtime::router::Router;
use evergreen_runtime::supervisor::{
    RestartComponent, StartComponent, Status, StopComponent, Supervisor,
};

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
pub(crate) struct Limits {
    pub(crate) max_line: usize,
    pub(crate) idle: Duration,
    pub(crate) max_connections: usize,
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
#[derive(Debug, Clone)]
pub struct ControlState {
    pub(crate) supervisor: Addr<Supervisor>,
    pub(crate) router: Arc<Router>,
    pub(crate) info: RuntimeInfo,
    /// Who the runtime runs as, for [`peer_allowed`].
    pub(crate) owner: Ids,
    pub(crate) limits: Limits,
    /// `/proc`; a parameter so tests can point it elsewhere.
    pub(crate) proc_root: PathBuf,
    /// Performs `deploy`, `redeploy` and `reset`.
    pub deployer: Option<Rc<Deployer>>,
    /// The status page's URL with its token, when it is served.
    pub status_page_url: Option<crate::statuspage::PageUrl>,
}

impl ControlState {
    /// The runtime's status document, as `evergreen status` shows it (the fleet's health
    /// messages carry it too), or why the supervisor did not answer.
    pub async fn status(&self) -> Result<RuntimeStatus, String> {
        self.status_or_refusal().await.map_err(|r| r.to_string())
    }

    async fn status_or_refusal(&self) -> Result<RuntimeStatus, Refusal> {
        let components =
            match tokio::time::timeout(SUPERVISOR_TIMEOUT, self.supervisor.send(Status)).await {
                Ok(Ok(components)) => components,
                Ok(Err(_)) => return Err(Refusal::SupervisorGone),
                Err(_) => return Err(Refusal::SupervisorSlow(SUPERVISOR_TIMEOUT)),
            };
        // What runs changes with each deployment.
        let mut info = self.info.clone();
        if let Some(label) = self.deployer.as_ref().and_then(|d| d.current_label()) {
            info.group = label;
        }
        Ok(build_status(
            &info,
            components,
            &self.router.stats(),
            &self.router.queue_depths(),
            self.router.table().len(),
            &self.proc_root,
        ))
    }

    pub fn new(supervisor: Addr<Supervisor>, router: Arc<Router>, info: RuntimeInfo) -> Self {
        ControlState {
            supervisor,
            router,
            info,
            owner: Ids::of_process(),
            limits: Limits::default(),
            proc_root: PathBuf::from("/proc"),
            deployer: None,
            status_page_url: None,
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
                tracing::warn!(
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
            tracing::info!(
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
    tracing::info!(
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
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    drop(listener);
    drop(file);
    tracing::debug!("control socket closed");
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
            tracing::warn!("control socket: cannot read a peer's credentials, closing: {e}");
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
        tracing::warn!(
            "control socket: refused pid {pid} (uid {}, gid {}): only root, uid {} or gid {} may connect",
            peer.uid,
            peer.gid,
            state.owner.uid,
            state.owner.gid
        );
        let error = Refusal::PermissionDenied { uid: peer.uid };
        let _ = write_response(&mut stream, &Err(error), limits.idle).await;
        return;
    }
    let Some(_slot) = slot else {
        tracing::warn!(
            "control socket: refused pid {pid}: {} connections are already open",
            limits.max_connections
        );
        let error = Refusal::TooManyConnections(limits.max_connections);
        let _ = write_response(&mut stream, &Err(error), limits.idle).await;
        return;
    };
    tracing::debug!(
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
                let error = Refusal::Idle(limits.idle);
                let _ = write_response(&mut write, &Err(error), limits.idle).await;
                return;
            }
            Ok(Err(_)) | Ok(Ok(LineRead::End)) => return,
            Ok(Ok(LineRead::TooLong)) => {
                let error = Refusal::LineTooLong(limits.max_line);
                let _ = write_response(&mut write, &Err(error), limits.idle).await;
                return;
            }
            Ok(Ok(LineRead::Line)) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match parse_request(&line) {
                    Ok(request) => handle(request, &state).await,
                    Err(error) => Err(error.into()),
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

/// Why a request, or a whole connection, was refused. The message is the
/// `error` of the response line, so its wording is what the CLI shows.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error(transparent)]
    BadRequest(#[from] RequestError),
    #[error("permission denied: uid {uid} is not allowed on this socket")]
    PermissionDenied { uid: u32 },
    #[error("too many connections: at most {0} at once; try again later")]
    TooManyConnections(usize),
    #[error("idle for {} s: closing the connection", .0.as_secs_f32())]
    Idle(Duration),
    #[error("request line longer than {0} bytes: closing the connection")]
    LineTooLong(usize),
    #[error("this runtime accepts no deployments")]
    NoDeployments,
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// The supervisor's own answer to `restart`, `stop` or `start` (e.g. no such component).
    #[error(transparent)]
    Restart(#[from] evergreen_runtime::supervisor::RestartError),
    #[error("the supervisor is not running")]
    SupervisorGone,
    #[error("the supervisor is not running: {0}")]
    SupervisorMailbox(actix::MailboxError),
    #[error("the supervisor did not answer within {} s", .0.as_secs())]
    SupervisorSlow(Duration),
}

/// A response: a reply, or why the request was refused.
type Response = Result<Reply, Refusal>;

async fn handle(request: Request, state: &ControlState) -> Response {
    let deployer = || state.deployer.clone().ok_or(Refusal::NoDeployments);
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
                Ok(Err(e)) => Err(Refusal::Restart(e)),
                Err(e) => Err(Refusal::SupervisorMailbox(e)),
            }
        }
        Request::Stop { component } => {
            match state.supervisor.send(StopComponent(component)).await {
                Ok(Ok((arn, message))) => Ok(Reply::Stop { arn, message }),
                Ok(Err(e)) => Err(Refusal::Restart(e)),
                Err(e) => Err(Refusal::SupervisorMailbox(e)),
            }
        }
        Request::Start { component } => {
            match state.supervisor.send(StartComponent(component)).await {
                Ok(Ok((arn, message))) => Ok(Reply::Start { arn, message }),
                Ok(Err(e)) => Err(Refusal::Restart(e)),
                Err(e) => Err(Refusal::SupervisorMailbox(e)),
            }
        }
        Request::Deployments => Ok(Reply::Deployments {
            deployments: deployer()?.history()?,
        }),
        Request::Ping => Ok(Reply::Ping {
            version: crate::release::version().to_string(),
        }),
        Request::StatusPage => Ok(Reply::StatusPage {
            url: state
                .status_page_url
                .as_ref()
                .map(|u| u.as_str().to_string()),
        }),
        Request::Status => Ok(Reply::Status {
            status: Box::new(state.status_or_refusal().await?),
        }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix::Actor;
    use evergreen_runtime::component::RestartPolicy;

    use evergreen_ipc::LogLevel;
    use evergreen_runtime::component::{RestartSettings, RuntimeSettings};
    use evergreen_runtime::router::SubscriptionTable;
    use evergreen_runtime::sandbox::Sandboxes;
    use serde_json::Value;
    use std::collections::BTreeMap;
    use std::io::{BufRead as _, Read as _};
    use std::os::unix::net::UnixStream as StdStream;
    use std::time::Instant;

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

    /// No AWS access: no component of these tests asks for credentials.
    #[derive(Debug)]
    struct NoCredentials;

    impl evergreen_runtime::services::CredentialSource for NoCredentials {
        fn credentials(&self) -> evergreen_runtime::services::CredentialsAnswer {
            Box::pin(async { Err("no AWS credentials in this test".to_string()) })
        }

        fn endpoints(&self) -> BTreeMap<String, String> {
            BTreeMap::new()
        }
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
            max_workers_per_function: 25,
            max_workers_overrides: std::collections::BTreeMap::new(),
            restart,
            restart_overrides: BTreeMap::new(),
            log_root: PathBuf::from("/nonexistent"),
            resource_root: PathBuf::from("/nonexistent"),
            self_exe: PathBuf::from("/proc/self/exe"),
            core_thing_name: "core".into(),
            core_thing_arn: "arn:aws:iot:us-east-1:123456789012:thing/core".into(),
            region: "us-east-1".into(),
            aws: Arc::new(NoCredentials),
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
}
