//! One OPC UA source: connect (security policy, mode, identity, trust),
//! browse the address space under its root paths, subscribe to or poll the
//! variables found, and hand every value on as a SiteWise entry.
//!
//! A connection's whole life is one [`connect_and_collect`]; [`run_source`]
//! repeats it with backoff (1 s doubling to 60 s) forever, so a server that
//! is down, restarts, or refuses the user is retried, each failure logged
//! once with its OPC UA status code and kept in [`SourceStatus`]. The
//! address space is browsed again on each connection (a restarted server
//! may have different node ids). Nothing the server sends can panic this
//! code: browse results are bounded ([`MAX_NODES`], [`crate::filter::MAX_DEPTH`],
//! loops cut by a visited set) and values go through [`crate::values`].
//!
//! PKI: each source has its own directory `<SiteWiseLocalStoragePath>/pki/<source>/`
//! in async-opcua's layout: `own/cert.der` + `private/private.pem` (the
//! client's application instance certificate, generated on first use; give
//! `own/cert.der` to servers that must trust the gateway), `trusted/`,
//! `rejected/`. `TrustAny` trusts whatever certificate the server shows;
//! `X509` trusts exactly `certificateBody` (and `certificateChain`), which
//! is written to `trusted/` at each connection after `trusted/` and
//! `rejected/` are emptied, so the directory always says what the
//! configuration says. The pinned certificate is compared byte for byte;
//! its dates and host names are not checked further.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evergreen_connector_kit::Backoff;
use evergreen_ipc::LogLevel;
use evergreen_streams::model::PutAssetPropertyValueEntry;
use opcua::client::{ClientBuilder, DataChangeCallback, IdentityToken, Password, Session};
use opcua::crypto::{CertificateStore, X509};
use opcua::types::{
    BrowseDescription, BrowseDirection, BrowseResultMask, DataValue, MessageSecurityMode,
    MonitoredItemCreateRequest, MonitoringMode, MonitoringParameters, NodeClass, NodeId, ObjectId,
    ReadValueId, ReferenceTypeId, StatusCode, TimestampsToReturn,
};
use tokio::sync::mpsc;

use crate::config::{Identity, Scan, SecurityMode, Source, Trust, DEFAULT_RATE_MS};
use crate::filter::MAX_DEPTH;
use crate::values::{pass, LastSent, Sample};

/// Most variables one source collects (a runaway address space is cut).
pub const MAX_NODES: usize = 100_000;
/// Values waiting between the OPC UA callbacks and the batching task.
const VALUE_QUEUE: usize = 10_000;
/// Values per batch handed on, and how long a batch may wait.
const BATCH_MAX: usize = 500;
const BATCH_WAIT: Duration = Duration::from_millis(50);
/// Nodes per Read / CreateMonitoredItems / Browse request.
const CHUNK: usize = 500;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// `username` and `password` from the source's secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, not even in a debug print.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Entries for one stream, as the source produced them.
#[derive(Debug, Clone)]
pub struct Batch {
    pub stream_name: String,
    pub buffer_mib: Option<u64>,
    pub entries: Vec<PutAssetPropertyValueEntry>,
}

/// A log sink (the connector's log in production, a recorder in tests).
pub type Log = Arc<dyn Fn(LogLevel, String) + Send + Sync>;

/// What a source is doing, for the status document and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StatusSnapshot {
    pub connected: bool,
    /// Variables collected on the current connection.
    pub nodes: usize,
    pub connections: u64,
    pub values: u64,
    /// Values the server sent that SiteWise cannot hold, or that the queue
    /// had no room for.
    pub dropped: u64,
    pub last_error: Option<String>,
}

/// Shared counters of one source.
#[derive(Debug, Default)]
pub struct SourceStatus(Mutex<StatusSnapshot>);

impl SourceStatus {
    pub fn snapshot(&self) -> StatusSnapshot {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut StatusSnapshot)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot set up the client: {0}")]
    Setup(String),
    #[error("cannot connect to {uri}: {status}")]
    Connect { uri: String, status: String },
    #[error("connection to {uri} lost: {status}")]
    Lost { uri: String, status: String },
    #[error("{what} failed: {status}")]
    Service { what: &'static str, status: String },
}

/// Everything one source needs.
#[derive(Clone)]
pub struct SourceRunner {
    pub source: Arc<Source>,
    /// This source's PKI directory.
    pub pki_dir: PathBuf,
    pub credentials: Option<Credentials>,
    pub log: Log,
    pub out: mpsc::Sender<Batch>,
    pub status: Arc<SourceStatus>,
}

impl std::fmt::Debug for SourceRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceRunner")
            .field("source", &self.source.name)
            .field("pki_dir", &self.pki_dir)
            .finish_non_exhaustive()
    }
}

/// The PKI directory of source `name` under `root`: the name with
/// anything but `[A-Za-z0-9_-]` replaced, so it is one safe path level.
pub fn pki_dir(root: &Path, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    root.join("pki").join(safe)
}

/// Runs the source until the task is dropped: connect, collect, and on
/// any failure wait and start again.
pub async fn run_source(runner: SourceRunner) {
    let mut backoff = Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX);
    let mut last_logged: Option<String> = None;
    loop {
        let connections = runner.status.snapshot().connections;
        let result = connect_and_collect(&runner, &mut backoff).await;
        if runner.status.snapshot().connections > connections {
            // It worked for a while: the next failure is news again.
            last_logged = None;
        }
        let why = match result {
            Ok(()) => "the session ended".to_string(),
            Err(e) => e.to_string(),
        };
        runner.status.update(|s| {
            s.connected = false;
            s.last_error = Some(why.clone());
        });
        // The same failure again and again is logged once, not every retry.
        if last_logged.as_deref() != Some(why.as_str()) {
            (runner.log)(
                LogLevel::Error,
                format!(
                    "source {:?}: {why}; retrying with backoff",
                    runner.source.name
                ),
            );
            last_logged = Some(why);
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

fn status_text(s: StatusCode) -> String {
    format!("{s} ({:#010X})", s.bits())
}

/// Prepares the PKI directory for the source's trust mode.
fn prepare_pki(dir: &Path, trust: &Trust) -> Result<(), String> {
    for sub in ["trusted", "rejected", "own", "private"] {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(|e| format!("cannot create {}: {e}", dir.join(sub).display()))?;
    }
    for sub in ["trusted", "rejected"] {
        let d = dir.join(sub);
        let entries =
            std::fs::read_dir(&d).map_err(|e| format!("cannot read {}: {e}", d.display()))?;
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Trust::X509 { body, chain } = trust {
        let mut pems = vec![body.as_str()];
        if let Some(c) = chain {
            pems.push(c.as_str());
        }
        for pem in pems {
            for block in pem.split_inclusive("-----END CERTIFICATE-----") {
                if !block.contains("-----BEGIN CERTIFICATE-----") {
                    continue;
                }
                let cert = X509::from_pem(block.trim().as_bytes())
                    .map_err(|e| format!("certificateTrust: not a readable certificate: {e}"))?;
                let der = cert
                    .to_der()
                    .map_err(|e| format!("certificateTrust: cannot encode the certificate: {e}"))?;
                let path = dir
                    .join("trusted")
                    .join(CertificateStore::cert_file_name(&cert));
                std::fs::write(&path, der)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// One connection: set up, browse, collect until it breaks.
async fn connect_and_collect(
    runner: &SourceRunner,
    backoff: &mut Backoff,
) -> Result<(), SourceError> {
    let source = &runner.source;
    let ep = &source.endpoint;
    let secure = ep.mode != SecurityMode::None;
    prepare_pki(&runner.pki_dir, &ep.trust).map_err(SourceError::Setup)?;
    let mut client = ClientBuilder::new()
        .application_name("Evergreen IoT SiteWise connector")
        .application_uri("urn:evergreen:sitewise")
        .product_uri("urn:evergreen:sitewise")
        .create_sample_keypair(secure)
        .pki_dir(runner.pki_dir.clone())
        .trust_server_certs(matches!(ep.trust, Trust::Any))
        .verify_server_certs(false)
        // Reconnection is this module's job (it browses again): the
        // library's event loop ends at the first failure.
        .session_retry_limit(0)
        .keep_alive_interval(Duration::from_secs(2))
        .max_failed_keep_alive_count(3)
        .request_timeout(Duration::from_secs(10))
        .session_timeout(60_000)
        .client()
        .map_err(|e| SourceError::Setup(e.join("; ")))?;
    let mode = match ep.mode {
        SecurityMode::None => MessageSecurityMode::None,
        SecurityMode::Sign => MessageSecurityMode::Sign,
        SecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
    };
    let identity = match (&ep.identity, &runner.credentials) {
        (Identity::Anonymous, _) => IdentityToken::Anonymous,
        (Identity::Username { .. }, Some(c)) => {
            IdentityToken::UserName(c.username.clone(), Password::new(c.password.clone()))
        }
        (Identity::Username { secret_arn }, None) => {
            return Err(SourceError::Setup(format!(
                "identityProvider Username: no credentials from secret {secret_arn}"
            )))
        }
    };
    let connect_err = |status: String| SourceError::Connect {
        uri: ep.uri.clone(),
        status,
    };
    let (session, event_loop) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        client.connect_to_matching_endpoint((ep.uri.as_str(), ep.policy.uri(), mode), identity),
    )
    .await
    .map_err(|_| connect_err("no answer to GetEndpoints".into()))?
    .map_err(|e| connect_err(format!("{e}")))?;
    let mut event_loop = event_loop.spawn();
    // Stops the session's task whatever way this function returns.
    let _guard = AbortOnDrop(event_loop.abort_handle());
    tokio::select! {
        connected = session.wait_for_connection() => {
            if !connected {
                return Err(connect_err("the session did not come up".into()));
            }
        }
        code = &mut event_loop => {
            let code = code.unwrap_or(StatusCode::BadUnexpectedError);
            return Err(connect_err(status_text(code)));
        }
        _ = tokio::time::sleep(CONNECT_TIMEOUT) => {
            return Err(connect_err("timed out".into()));
        }
    }
    let nodes = browse(&session, source).await?;
    runner.status.update(|s| {
        s.connected = true;
        s.nodes = nodes.len();
        s.connections += 1;
        s.last_error = None;
    });
    (runner.log)(
        LogLevel::Info,
        format!(
            "source {:?}: connected to {} ({:?}, {:?}); collecting {} variable(s)",
            source.name,
            ep.uri,
            ep.policy,
            ep.mode,
            nodes.len()
        ),
    );
    backoff.reset();

    let (tx, rx) = mpsc::channel::<(usize, DataValue)>(VALUE_QUEUE);
    let paths: Arc<Vec<String>> = Arc::new(nodes.iter().map(|(p, _)| p.clone()).collect());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(batcher(runner.clone(), paths.clone(), rx));
    // Nodes by scan settings: one subscription or one poll loop each.
    let mut by_scan: HashMap<(bool, u64), Vec<usize>> = HashMap::new();
    for (i, (path, _)) in nodes.iter().enumerate() {
        let scan = source
            .group_of(path)
            .map(|g| g.scan)
            .unwrap_or(Scan::Exception {
                rate_ms: DEFAULT_RATE_MS,
            });
        let key = match scan {
            Scan::Exception { rate_ms } => (false, rate_ms),
            Scan::Poll { rate_ms } => (true, rate_ms),
        };
        by_scan.entry(key).or_default().push(i);
    }
    for ((poll, rate_ms), indices) in by_scan {
        let ids: Vec<(usize, NodeId)> = indices.iter().map(|&i| (i, nodes[i].1.clone())).collect();
        if poll {
            tasks.spawn(poller(
                session.clone(),
                ids,
                rate_ms,
                tx.clone(),
                runner.status.clone(),
            ));
        } else {
            subscribe(&session, ids, rate_ms, tx.clone(), runner.status.clone()).await?;
        }
    }
    drop(tx);
    let code = tokio::select! {
        code = &mut event_loop => code.unwrap_or(StatusCode::BadUnexpectedError),
        Some(r) = tasks.join_next() => match r {
            Ok(Err(e)) => return Err(e),
            _ => StatusCode::BadUnexpectedError,
        },
    };
    Err(SourceError::Lost {
        uri: ep.uri.clone(),
        status: status_text(code),
    })
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The variables under the source's root paths: `(path, node id)`, path
/// being `/` + browse names from the Objects folder down.
async fn browse(session: &Session, source: &Source) -> Result<Vec<(String, NodeId)>, SourceError> {
    let mut found: Vec<(String, NodeId)> = Vec::new();
    let mut visited: HashSet<NodeId> = HashSet::new();
    let mut level: Vec<(String, NodeId)> = vec![(String::new(), ObjectId::ObjectsFolder.into())];
    let service = |status: StatusCode| SourceError::Service {
        what: "Browse",
        status: status_text(status),
    };
    for _depth in 0..MAX_DEPTH {
        if level.is_empty() || found.len() >= MAX_NODES {
            break;
        }
        let mut next: Vec<(String, NodeId)> = Vec::new();
        for chunk in level.chunks(CHUNK) {
            let descriptions: Vec<BrowseDescription> = chunk
                .iter()
                .map(|(_, id)| BrowseDescription {
                    node_id: id.clone(),
                    browse_direction: BrowseDirection::Forward,
                    reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
                    include_subtypes: true,
                    node_class_mask: NodeClass::Object as u32 | NodeClass::Variable as u32,
                    result_mask: BrowseResultMask::All as u32,
                })
                .collect();
            let mut results = session
                .browse(&descriptions, 1000, None)
                .await
                .map_err(|e| service(e.status()))?;
            // Follow continuation points, boundedly.
            let mut pending: Vec<(usize, opcua::types::ByteString)> = Vec::new();
            let mut refs: Vec<(usize, opcua::types::ReferenceDescription)> = Vec::new();
            for (i, r) in results.drain(..).enumerate() {
                refs.extend(r.references.unwrap_or_default().into_iter().map(|d| (i, d)));
                if !r.continuation_point.is_null() {
                    pending.push((i, r.continuation_point));
                }
            }
            let mut rounds = 0;
            while !pending.is_empty() && rounds < 100 && refs.len() < MAX_NODES {
                rounds += 1;
                let points: Vec<_> = pending.iter().map(|(_, c)| c.clone()).collect();
                let more = session
                    .browse_next(false, &points)
                    .await
                    .map_err(|e| service(e.status()))?;
                let owners: Vec<usize> = pending.iter().map(|(i, _)| *i).collect();
                pending.clear();
                for (k, r) in more.into_iter().enumerate() {
                    let Some(&i) = owners.get(k) else { break };
                    refs.extend(r.references.unwrap_or_default().into_iter().map(|d| (i, d)));
                    if !r.continuation_point.is_null() {
                        pending.push((i, r.continuation_point));
                    }
                }
            }
            for (i, d) in refs {
                let Some((parent, _)) = chunk.get(i) else {
                    continue;
                };
                // Only nodes of this server (no other server's nodes).
                if d.node_id.server_index != 0 {
                    continue;
                }
                let id = d.node_id.node_id;
                if !visited.insert(id.clone()) {
                    continue;
                }
                let path = format!("{parent}/{}", d.browse_name.name.as_ref());
                match d.node_class {
                    NodeClass::Variable if source.includes(&path) && found.len() < MAX_NODES => {
                        found.push((path, id));
                    }
                    NodeClass::Object if source.may_include_below(&path) => next.push((path, id)),
                    _ => {}
                }
            }
        }
        level = next;
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

async fn subscribe(
    session: &Arc<Session>,
    ids: Vec<(usize, NodeId)>,
    rate_ms: u64,
    tx: mpsc::Sender<(usize, DataValue)>,
    status: Arc<SourceStatus>,
) -> Result<(), SourceError> {
    let index: Arc<HashMap<NodeId, usize>> =
        Arc::new(ids.iter().map(|(i, id)| (id.clone(), *i)).collect());
    let callback_status = status.clone();
    let callback = DataChangeCallback::new(move |dv, item| {
        let Some(&i) = index.get(&item.item_to_monitor().node_id) else {
            return;
        };
        // A callback cannot wait: a full queue loses the value, counted.
        if tx.try_send((i, dv)).is_err() {
            callback_status.update(|s| s.dropped += 1);
        }
    });
    let rate = Duration::from_millis(rate_ms);
    let sub = session
        .create_subscription(rate, 60, 10, 0, 0, true, callback)
        .await
        .map_err(|e| SourceError::Service {
            what: "CreateSubscription",
            status: status_text(e.status()),
        })?;
    for chunk in ids.chunks(CHUNK) {
        let items: Vec<MonitoredItemCreateRequest> = chunk
            .iter()
            .map(|(_, id)| {
                MonitoredItemCreateRequest::new(
                    ReadValueId::from(id.clone()),
                    MonitoringMode::Reporting,
                    MonitoringParameters {
                        sampling_interval: rate_ms as f64,
                        queue_size: 10,
                        discard_oldest: true,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let results = session
            .create_monitored_items(sub, TimestampsToReturn::Both, items)
            .await
            .map_err(|e| SourceError::Service {
                what: "CreateMonitoredItems",
                status: status_text(e.status()),
            })?;
        let refused = results
            .iter()
            .filter(|r| !r.result.status_code.is_good())
            .count();
        if refused > 0 {
            status.update(|s| {
                s.last_error = Some(format!("{refused} monitored item(s) refused by the server"))
            });
        }
    }
    Ok(())
}

async fn poller(
    session: Arc<Session>,
    ids: Vec<(usize, NodeId)>,
    rate_ms: u64,
    tx: mpsc::Sender<(usize, DataValue)>,
    _status: Arc<SourceStatus>,
) -> Result<(), SourceError> {
    let mut tick = tokio::time::interval(Duration::from_millis(rate_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for chunk in ids.chunks(CHUNK) {
            let read: Vec<ReadValueId> = chunk
                .iter()
                .map(|(_, id)| ReadValueId::from(id.clone()))
                .collect();
            let values = session
                .read(&read, TimestampsToReturn::Both, 0.0)
                .await
                .map_err(|e| SourceError::Service {
                    what: "Read",
                    status: status_text(e.status()),
                })?;
            for ((i, _), dv) in chunk.iter().zip(values) {
                if tx.send((*i, dv)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// Turns values into entries (deadband applied) and hands them on in
/// batches of at most [`BATCH_MAX`], at least every [`BATCH_WAIT`].
async fn batcher(
    runner: SourceRunner,
    paths: Arc<Vec<String>>,
    mut rx: mpsc::Receiver<(usize, DataValue)>,
) -> Result<(), SourceError> {
    let source = runner.source.clone();
    let deadbands: Vec<_> = paths
        .iter()
        .map(|p| source.group_of(p).and_then(|g| g.deadband))
        .collect();
    let aliases: Vec<String> = paths
        .iter()
        .map(|p| format!("{}{p}", source.prefix))
        .collect();
    let mut last: Vec<Option<LastSent>> = vec![None; paths.len()];
    let mut entries = Vec::new();
    let mut skipped = 0u64;
    loop {
        let first = rx.recv().await;
        let Some(first) = first else { return Ok(()) };
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        let mut item = Some(first);
        while let Some((i, dv)) = item.take() {
            if let (Some(alias), Some(last)) = (aliases.get(i), last.get_mut(i)) {
                match Sample::from_data_value(&dv) {
                    Some(s) => {
                        if pass(deadbands.get(i).copied().flatten().as_ref(), last, &s) {
                            entries.push(s.entry(alias));
                        }
                    }
                    None => skipped += 1,
                }
            }
            if entries.len() >= BATCH_MAX {
                break;
            }
            item = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(next)) => Some(next),
                _ => None,
            };
        }
        let n = entries.len() as u64;
        runner.status.update(|s| {
            s.values += n;
            s.dropped += skipped;
        });
        skipped = 0;
        if entries.is_empty() {
            continue;
        }
        let batch = Batch {
            stream_name: source.stream_name.clone(),
            buffer_mib: source.stream_buffer_mib,
            entries: std::mem::take(&mut entries),
        };
        if runner.out.send(batch).await.is_err() {
            return Ok(());
        }
    }
}
