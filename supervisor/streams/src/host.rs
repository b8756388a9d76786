//! The stream manager inside the runtime: started by a deployment whose
//! group configures Greengrass's `GGStreamManager` system function,
//! stopped by one without it, restarted when its settings change. It runs
//! on a thread of its own with its own two-worker tokio runtime, so a slow
//! disk (an `fdatasync` per append with `flushOnWrite`) never stalls the
//! actor system or the MQTT side.
//!
//! Clients are checked against the runtime's live tokens
//! ([`TokenDirectory`]): the `AWS_CONTAINER_AUTHORIZATION_TOKEN` every
//! function worker is given. The port is bound while the deployment is
//! checked, so a busy port refuses the deployment with the reason and
//! changes nothing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use evergreen_group::plan::{GroupPlan, StreamManagerSpec};
use evergreen_runtime::services::{PlanListener, TokenDirectory};

use crate::export::{spawn_export, specs_for, ExportEnv, ExportGate, ExportHandle};
use crate::model::ExportStatus;
use crate::server::{Authorizer, ServerLimits, Service};
use crate::store::{ExportStarter, RunningExport, Store, StoreLimits, StoreSource};

/// How many export requests may be in flight at once, across streams
/// (handed out by priority, see [`ExportGate`]).
const EXPORT_CONCURRENCY: usize = 4;

impl RunningExport for ExportHandle {
    fn status(&self) -> ExportStatus {
        ExportHandle::status(self)
    }
}

/// What starts a stream's exports: a driver task per enabled export,
/// sharing one AWS client and one gate.
fn exporter(
    store: &Arc<Store>,
    access: Arc<evergreen_aws::credentials::AwsAccess>,
    spec: &StreamManagerSpec,
) -> Arc<ExportStarter> {
    let env = ExportEnv {
        source: Arc::new(StoreSource(Arc::downgrade(store))),
        aws: evergreen_aws::AwsClient::with_access(access),
        gate: ExportGate::new(EXPORT_CONCURRENCY),
        s3_min_part_size: spec.s3_min_part_size,
    };
    Arc::new(
        move |stream, definition, dir| match specs_for(stream, definition, dir) {
            Ok(specs) => specs
                .into_iter()
                .map(|spec| Box::new(spawn_export(spec, &env)) as Box<dyn RunningExport>)
                .collect(),
            Err(e) => {
                tracing::error!("stream manager: stream {stream:?}: {e}");
                Vec::new()
            }
        },
    )
}

/// Checks a client's token against the runtime's live ones.
#[derive(Debug, Clone)]
pub struct TokenAuthorizer(pub TokenDirectory);

impl Authorizer for TokenAuthorizer {
    fn authorize(&self, token: Option<&str>) -> Result<String, String> {
        match token {
            None | Some("") => Err(
                "the client sent no authorization token: the stream manager serves the group's functions, \
                 which find theirs in AWS_CONTAINER_AUTHORIZATION_TOKEN"
                    .into(),
            ),
            Some(t) => self.0.lookup(t).ok_or_else(|| {
                "the client's token is not one of a running function of the group".to_string()
            }),
        }
    }
}

/// The stream manager as a plan listener of the supervisor.
pub struct StreamManagerHost {
    default_root: PathBuf,
    tokens: TokenDirectory,
    store_limits: StoreLimits,
    server_limits: ServerLimits,
    aws: Option<Arc<evergreen_aws::credentials::AwsAccess>>,
    state: Mutex<HostState>,
}

impl std::fmt::Debug for StreamManagerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamManagerHost")
            .field("default_root", &self.default_root)
            .finish()
    }
}

#[derive(Default)]
struct HostState {
    /// A listener bound while the plan was checked, by port.
    prepared: Option<(u16, std::net::TcpListener)>,
    running: Option<Running>,
}

struct Running {
    spec: StreamManagerSpec,
    store: Arc<Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl StreamManagerHost {
    /// `default_root`: where streams are kept unless the group sets
    /// `STREAM_MANAGER_STORE_ROOT_DIR`.
    pub fn new(default_root: PathBuf, tokens: TokenDirectory) -> StreamManagerHost {
        StreamManagerHost {
            default_root,
            tokens,
            store_limits: StoreLimits::default(),
            server_limits: ServerLimits::default(),
            aws: None,
            state: Mutex::new(HostState::default()),
        }
    }

    pub fn with_limits(mut self, store: StoreLimits, server: ServerLimits) -> Self {
        self.store_limits = store;
        self.server_limits = server;
        self
    }

    /// Exports call AWS with the core's credentials chain (and its endpoint
    /// overrides); without it streams are kept but not exported.
    pub fn with_aws(mut self, access: Arc<evergreen_aws::credentials::AwsAccess>) -> Self {
        self.aws = Some(access);
        self
    }

    /// The running store, if the deployed group has a stream manager.
    pub fn store(&self) -> Option<Arc<Store>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.running.as_ref().map(|r| r.store.clone())
    }

    fn bind(port: u16) -> std::io::Result<std::net::TcpListener> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    }

    fn start(
        &self,
        spec: &StreamManagerSpec,
        listener: std::net::TcpListener,
    ) -> Result<Running, String> {
        let root = spec
            .store_root
            .clone()
            .unwrap_or_else(|| self.default_root.clone());
        let store = Store::open(&root, self.store_limits.clone()).map_err(|e| e.to_string())?;
        let service = Service::new(
            store.clone(),
            Arc::new(TokenAuthorizer(self.tokens.clone())),
            self.server_limits.clone(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let exporter = self
            .aws
            .clone()
            .map(|access| exporter(&store, access, spec));
        let sync_store = store.clone();
        let thread = std::thread::Builder::new()
            .name("stream-manager".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("stream-manager")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("stream manager: cannot start its runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("stream manager: cannot listen: {e}");
                            return;
                        }
                    };
                    if let Some(exporter) = exporter {
                        sync_store.set_exporter(exporter);
                    }
                    let serving = tokio::spawn(service.serve(listener));
                    let syncing = tokio::spawn({
                        let store = sync_store.clone();
                        async move {
                            let mut tick = tokio::time::interval(crate::store::SYNC_EVERY);
                            loop {
                                tick.tick().await;
                                let store = store.clone();
                                let _ =
                                    tokio::task::spawn_blocking(move || store.sync_dirty()).await;
                            }
                        }
                    });
                    let _ = stopped.await;
                    serving.abort();
                    syncing.abort();
                    let store = sync_store.clone();
                    let _ = tokio::task::spawn_blocking(move || store.sync_dirty()).await;
                });
            })
            .map_err(|e| format!("cannot start the stream manager's thread: {e}"))?;
        tracing::info!(
            "stream manager on 127.0.0.1:{} with its streams in {}",
            spec.port,
            root.display()
        );
        Ok(Running {
            spec: spec.clone(),
            store,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl PlanListener for StreamManagerHost {
    fn prepare(&self, plan: &GroupPlan) -> Result<(), String> {
        let Some(spec) = &plan.stream_manager else {
            return Ok(());
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state
            .running
            .as_ref()
            .is_some_and(|r| r.spec.port == spec.port)
        {
            return Ok(());
        }
        if state
            .prepared
            .as_ref()
            .is_some_and(|(p, _)| *p == spec.port)
        {
            return Ok(());
        }
        match Self::bind(spec.port) {
            Ok(listener) => {
                state.prepared = Some((spec.port, listener));
                Ok(())
            }
            Err(e) => Err(format!(
                "cannot listen on 127.0.0.1:{} (GGStreamManager's STREAM_MANAGER_SERVER_PORT) for the stream manager: {e}",
                spec.port
            )),
        }
    }

    fn deployed(&self, plan: &GroupPlan) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let wanted = plan.stream_manager.as_ref();
        if state.running.as_ref().map(|r| &r.spec) == wanted {
            return;
        }
        if let Some(old) = state.running.take() {
            tracing::info!("stream manager on port {}: stopping", old.spec.port);
            drop(old);
        }
        let Some(spec) = wanted else {
            state.prepared = None;
            return;
        };
        let listener = match state.prepared.take() {
            Some((port, l)) if port == spec.port => Ok(l),
            _ => Self::bind(spec.port),
        };
        let started = listener
            .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", spec.port))
            .and_then(|l| self.start(spec, l));
        match started {
            Ok(running) => state.running = Some(running),
            Err(e) => tracing::error!("stream manager not started: {e}"),
        }
    }
}
