//! The endpoint's HTTP side: binding `localhost`, accepting connections
//! (one request each), checking the caller's token and dispatching the
//! path to the log, initialisation, work and invoke handlers.
//!
//! Every peer is bounded before it is trusted ([`EndpointLimits`]): a new
//! connection has `headTimeoutMs` to send its request head, at most
//! `maxPendingConnections` connections may be waiting for theirs (a new
//! one closes the oldest, so idle sockets cannot lock the functions' own
//! requests out), the token is checked on the head before a byte of the
//! body is read, one function may hold at most `maxConnectionsPerFunction`
//! connections, and an accepted body must arrive within `bodyTimeoutMs`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evergreen_ipc::LogLevel;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::credentials;
use super::http::{percent_decode, read_body, read_head, Request, Response, MAX_HEAD};
use super::invoke::{fetch, invoke};
use super::work::{next_work, work_result};
use super::{note, FunctionLink, LambdaHub, MAX_BODY};

const API_PREFIX: &str = "/2016-11-01/";
/// Longest log message accepted from the log endpoint.
const MAX_LOG_MESSAGE: usize = 16 << 10;
/// How often a refusal or eviction is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The bounds on the endpoint's peers (`evergreen.lambdaEndpoint`, mapped
/// by the CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointLimits {
    /// From accept to a complete request head.
    pub head_timeout: Duration,
    /// From the head to a complete body, for an authenticated request.
    pub body_timeout: Duration,
    pub max_head_bytes: usize,
    pub max_body_bytes: usize,
    /// Connections whose head (and so token) is not read yet.
    pub max_pending_connections: usize,
    /// Connections one function may hold at once.
    pub max_connections_per_function: usize,
}

impl Default for EndpointLimits {
    /// The configuration's defaults (`evergreen_config::LambdaEndpoint`).
    fn default() -> Self {
        EndpointLimits {
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_head_bytes: MAX_HEAD,
            max_body_bytes: MAX_BODY,
            max_pending_connections: 256,
            max_connections_per_function: 64,
        }
    }
}

/// The endpoint's listening side: its limits, and while it listens the
/// accept loops, whose abort closes the listeners (connections already
/// accepted run to their end).
#[derive(Debug)]
pub(super) struct Endpoint {
    limits: EndpointLimits,
    accepting: Vec<actix_rt::task::JoinHandle<()>>,
}

impl Endpoint {
    pub(super) fn new(limits: EndpointLimits) -> Endpoint {
        Endpoint {
            limits,
            accepting: Vec::new(),
        }
    }
}

impl LambdaHub {
    /// Listens on `localhost` (`coreThing.ggDaemonPort`) unless it already
    /// does. The supervisor calls it before it deploys a plan with a
    /// function, so a runtime without functions holds no port 8000 that
    /// another program might want, and a busy port refuses the deployment
    /// that needs it with the reason. Returns whether it bound just now.
    pub fn listen(self: &Rc<Self>) -> std::io::Result<bool> {
        let mut endpoint = self.endpoint.borrow_mut();
        if !endpoint.accepting.is_empty() {
            return Ok(false);
        }
        let listeners = bind(self.port)?;
        let peers = Rc::new(Peers {
            limits: endpoint.limits.clone(),
            pending: RefCell::default(),
            next: Cell::new(0),
            per_function: RefCell::default(),
            last_log: Cell::new(None),
            unlogged: Cell::new(0),
        });
        endpoint.accepting = listeners
            .into_iter()
            .map(|listener| accept(self.clone(), listener, peers.clone()))
            .collect();
        Ok(true)
    }

    /// Stops listening (a deployment left no function). Returns whether it
    /// was listening.
    pub fn close(&self) -> bool {
        let accepting = std::mem::take(&mut self.endpoint.borrow_mut().accepting);
        let was = !accepting.is_empty();
        for task in accepting {
            task.abort();
        }
        was
    }
}

/// Binds the endpoint on `localhost`: 127.0.0.1 and, where the host has
/// IPv6, ::1 (the SDK connects to the name `localhost`, which may resolve
/// to either). Fails only if 127.0.0.1 cannot be bound. Synchronous: the
/// supervisor binds inside its deployment handler, on the actor system's
/// thread, whose runtime the listeners are registered with.
fn bind(port: u16) -> std::io::Result<Vec<TcpListener>> {
    let tokio_listener = |addr: SocketAddr| -> std::io::Result<TcpListener> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener)
    };
    let v4 = tokio_listener(SocketAddr::from(([127, 0, 0, 1], port)))?;
    let mut listeners = vec![v4];
    match tokio_listener(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))) {
        Ok(v6) => listeners.push(v6),
        Err(e) => tracing::info!("Lambda IPC endpoint: not listening on [::1]:{port}: {e}"),
    }
    Ok(listeners)
}

/// Who holds a connection, shared by the accept loops and connections (all
/// on the actor system's thread).
#[derive(Debug)]
struct Peers {
    limits: EndpointLimits,
    /// Connections still reading their head, oldest first, each with the
    /// signal that closes it.
    pending: RefCell<BTreeMap<u64, Rc<Notify>>>,
    next: Cell<u64>,
    /// Open authenticated connections per function (by its serial).
    per_function: RefCell<HashMap<u64, usize>>,
    /// When a refusal was last logged, and how many were not since.
    last_log: Cell<Option<Instant>>,
    unlogged: Cell<u64>,
}

impl Peers {
    /// Logs `what` unless something was logged in the last [`LOG_EVERY`];
    /// then it is counted and told with the next message.
    fn warn(&self, what: &str) {
        let now = Instant::now();
        if self
            .last_log
            .get()
            .is_some_and(|t| now.duration_since(t) < LOG_EVERY)
        {
            self.unlogged.set(self.unlogged.get() + 1);
            return;
        }
        self.last_log.set(Some(now));
        match self.unlogged.replace(0) {
            0 => tracing::warn!("Lambda IPC endpoint: {what}"),
            n => tracing::warn!(
                "Lambda IPC endpoint: {what}; {n} more connections refused or closed since the last message like this"
            ),
        }
    }

    /// A new connection waits for its head: returns its place and the
    /// signal that closes it, closing the oldest waiting one if there are
    /// too many.
    fn pending(self: &Rc<Self>) -> PendingGuard {
        let id = self.next.get();
        self.next.set(id + 1);
        let evict = Rc::new(Notify::new());
        let mut pending = self.pending.borrow_mut();
        if pending.len() >= self.limits.max_pending_connections {
            if let Some((_, oldest)) = pending.pop_first() {
                // A stored permit: the connection sees it even if it is not
                // waiting at this instant.
                oldest.notify_one();
                drop(pending);
                self.warn(&format!(
                    "{} connections were waiting for their request head (evergreen.lambdaEndpoint.maxPendingConnections); the oldest was closed",
                    self.limits.max_pending_connections
                ));
                pending = self.pending.borrow_mut();
            }
        }
        pending.insert(id, evict.clone());
        PendingGuard {
            peers: self.clone(),
            id,
            evict,
        }
    }

    /// A place for one more connection of `link`, or `None` at its cap.
    fn function(self: &Rc<Self>, link: &FunctionLink) -> Option<FunctionGuard> {
        let mut map = self.per_function.borrow_mut();
        let open = map.entry(link.serial).or_insert(0);
        if *open >= self.limits.max_connections_per_function {
            return None;
        }
        *open += 1;
        Some(FunctionGuard {
            peers: self.clone(),
            serial: link.serial,
        })
    }
}

/// A connection's place among those waiting for their head.
struct PendingGuard {
    peers: Rc<Peers>,
    id: u64,
    evict: Rc<Notify>,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.peers.pending.borrow_mut().remove(&self.id);
    }
}

/// A connection counted against its function's cap.
struct FunctionGuard {
    peers: Rc<Peers>,
    serial: u64,
}

impl Drop for FunctionGuard {
    fn drop(&mut self) {
        let mut map = self.peers.per_function.borrow_mut();
        if let Some(open) = map.get_mut(&self.serial) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                map.remove(&self.serial);
            }
        }
    }
}

/// Accepts on `listener` on the current (actor system) thread until the
/// task is aborted, each connection served by a task of its own.
fn accept(
    hub: Rc<LambdaHub>,
    listener: TcpListener,
    peers: Rc<Peers>,
) -> actix_rt::task::JoinHandle<()> {
    actix_rt::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, usually: wait a little rather
                    // than spin.
                    tracing::warn!("Lambda IPC endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let hub = hub.clone();
            let pending = peers.pending();
            actix_rt::spawn(async move {
                connection(&hub, stream, pending).await;
            });
        }
    })
}

/// Serves one connection: its head within the head timeout (unless a newer
/// connection evicts it first), the token, the function's cap, the body
/// within the body timeout, then the answer.
async fn connection(hub: &Rc<LambdaHub>, mut stream: TcpStream, pending: PendingGuard) {
    let _ = stream.set_nodelay(true);
    let peers = pending.peers.clone();
    let limits = &peers.limits;
    let (mut rd, mut wr) = stream.split();
    let evict = pending.evict.clone();
    let head = tokio::select! {
        head = tokio::time::timeout(
            limits.head_timeout,
            read_head(&mut rd, limits.max_head_bytes, limits.max_body_bytes),
        ) => head,
        () = evict.notified() => return,
    };
    drop(pending);
    let head = match head {
        Ok(Ok(head)) => head,
        Ok(Err(e)) => {
            if let Some(status) = e.status() {
                let _ = Response::error(status, &e.to_string()).write(&mut wr).await;
            }
            return;
        }
        // Nothing useful arrived in time: close without an answer.
        Err(_) => return,
    };
    // The token is checked before a byte of the body is read: an unknown
    // caller costs the head, never the body it announces.
    let token = match head
        .request
        .header("authorization")
        .filter(|t| !t.is_empty())
    {
        Some(token) => token.to_owned(),
        None => {
            let _ = Response::error(403, "missing Authorization token")
                .write(&mut wr)
                .await;
            return;
        }
    };
    let Some(caller) = hub.tokens.borrow().get(&token).cloned() else {
        let _ = Response::error(403, "unknown Authorization token")
            .write(&mut wr)
            .await;
        return;
    };
    let Some(_place) = peers.function(&caller) else {
        peers.warn(&format!(
            "{} has {} connections open (evergreen.lambdaEndpoint.maxConnectionsPerFunction); refused one more",
            caller.arn, limits.max_connections_per_function
        ));
        let _ = Response::error(429, "too many connections from this function")
            .write(&mut wr)
            .await;
        return;
    };
    let req = match tokio::time::timeout(limits.body_timeout, read_body(&mut rd, head)).await {
        Ok(Ok(req)) => req,
        Ok(Err(e)) => {
            if let Some(status) = e.status() {
                let _ = Response::error(status, &e.to_string()).write(&mut wr).await;
            }
            return;
        }
        Err(_) => {
            let _ = Response::error(408, "the request body did not arrive in time")
                .write(&mut wr)
                .await;
            return;
        }
    };
    let response = tokio::select! {
        r = handle(hub, &caller, &token, &req) => r,
        // One request per connection: anything readable now is the client
        // closing (or junk); either way nobody waits for the answer.
        _ = client_gone(&mut rd) => return,
    };
    let _ = response.write(&mut wr).await;
}

async fn client_gone<R: tokio::io::AsyncRead + Unpin>(rd: &mut R) {
    let mut byte = [0u8; 1];
    let _ = rd.read(&mut byte).await;
}

/// Answers one request of `caller`, authenticated by `token`.
async fn handle(
    hub: &Rc<LambdaHub>,
    caller: &Rc<FunctionLink>,
    token: &str,
    req: &Request,
) -> Response {
    let caller = caller.clone();
    let path = match percent_decode(&req.path) {
        Ok(p) => p,
        Err(e) => return Response::error(400, &e.to_string()),
    };
    let Some(rest) = path.strip_prefix(API_PREFIX) else {
        return Response::error(404, &format!("no such resource: {path}"));
    };
    let rest = rest.split('?').next().unwrap_or_default();
    // Before `ready`: boto3 may fetch credentials while the handler's module
    // is imported, before the runtime loop has said anything.
    if rest.trim_end_matches('/') == credentials::PATH {
        return match req.method.as_str() {
            "GET" => credentials::answer(hub, &caller.arn).await,
            _ => Response::error(405, "use GET for credentials"),
        };
    }
    let init_failed = rest.ends_with("/initialized")
        && serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| v.get("Success").and_then(Value::as_bool))
            == Some(false);
    if !init_failed {
        ready(&caller, token);
    }
    if rest.trim_end_matches('/') == "cloudwatch/logs" {
        return match req.method.as_str() {
            "POST" => logs(&caller, &req.body),
            _ => Response::error(405, "use POST for logs"),
        };
    }
    let Some(rest) = rest.strip_prefix("functions/") else {
        return Response::error(404, &format!("no such resource: {path}"));
    };
    if let Some(arn) = rest.strip_suffix("/work") {
        if !own(&caller, arn) {
            return Response::error(403, "a function can only take and answer its own work");
        }
        return match req.method.as_str() {
            "GET" => next_work(&caller, token).await,
            "POST" => work_result(hub, &caller, token, req),
            _ => Response::error(405, "use GET or POST on …/work"),
        };
    }
    if let Some(arn) = rest.strip_suffix("/initialized") {
        if !own(&caller, arn) {
            return Response::error(403, "a function can only initialise itself");
        }
        return initialized(&caller, &req.body);
    }
    match req.method.as_str() {
        "POST" => invoke(hub, &caller, rest, req).await,
        "GET" => fetch(hub, &caller, req).await,
        _ => Response::error(405, "use POST to invoke and GET to fetch a result"),
    }
}

fn own(caller: &FunctionLink, arn: &str) -> bool {
    arn == caller.arn || arn == caller.unqualified
}

/// The worker talked to us: it is up.
fn ready(link: &FunctionLink, token: &str) {
    link.with_worker(token, |worker| {
        if !worker.ready {
            worker.ready = true;
            (worker.on_ready)();
        }
    });
}

fn logs(caller: &FunctionLink, body: &[u8]) -> Response {
    let Ok(doc) = serde_json::from_slice::<Value>(body) else {
        return Response::error(400, "the log request body is not JSON");
    };
    let Some(events) = doc.get("logEvents").and_then(Value::as_array) else {
        return Response::error(400, "logEvents is missing or not a list");
    };
    for event in events {
        let Some(message) = event.get("message").and_then(Value::as_str) else {
            return Response::error(400, "a logEvents entry has no message string");
        };
        let mut end = message.len().min(MAX_LOG_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        note(caller, LogLevel::Info, message[..end].trim_end());
    }
    Response::new(200).body("{}")
}

fn initialized(caller: &FunctionLink, body: &[u8]) -> Response {
    let doc: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return Response::error(400, "the initialisation result is not JSON"),
    };
    match doc.get("Success").and_then(Value::as_bool) {
        Some(true) => Response::new(202),
        Some(false) => {
            let why = doc.get("Response").and_then(Value::as_str).unwrap_or("");
            note(
                caller,
                LogLevel::Error,
                &format!("initialisation failed: {why}"),
            );
            Response::new(202)
        }
        None => Response::error(400, "Success is missing or not a boolean"),
    }
}
