//! The Lambda IPC endpoint: the HTTP/1.1 service on `localhost` that
//! Greengrass V1 Python functions and the `greengrasssdk` package talk to
//! (`/2016-11-01/functions/…`, `…/work`, `…/initialized`,
//! `/2016-11-01/cloudwatch/logs/`), as described in
//! `shared/reference/lambda-ipc.md`.
//!
//! It owns the per-function state of the *lambda link*, the alternative to
//! the stdio frame link for functions whose `Executable` is
//! `module.function`: each registered function has a work queue (router
//! deliveries come from the component's own bounded inbox, direct
//! Lambda-to-Lambda invokes from a second bounded queue), one worker (the
//! current child, with its random token) and the results that callers are
//! waiting for. The component actor still owns the child: it registers the
//! function, attaches each worker it spawns and detaches it when it exits;
//! `Timeout`, on-demand starts, idle stops and restarts stay the actor's.
//!
//! Rules (the contract's, plus Evergreen's choices):
//! * Every request carries the worker's token in `Authorization`; a
//!   missing or unknown token is 403 and nothing is routed. Tokens are
//!   random per child, so a killed worker's token dies with it.
//! * A worker may only take (`GET …/work`) and answer (`POST …/work`) its
//!   own function's work, and only the invocation it was handed.
//! * Publishes are Event invokes of `GGRouter` with `custom.subject`; they
//!   enter the router with the caller's ARN as source. `AllOrError` turns
//!   a drop on a full queue into a 429.
//! * Result fetches always carry `X-Amz-Function-Error` (empty when none).
//!   Errors the runtime detects itself (timeouts, crashes) are `Unhandled`.
//! * Shadow invokes (`GGShadowService`, `custom.subject` = the request
//!   topic) are answered by the local shadow service (`evergreen_shadow`) with
//!   the `/accepted` or `/rejected` payload.
//! * Secret invokes (`GGSecretManager`, body `{"SecretId", "VersionStage"?}`)
//!   are answered by the secret store (`evergreen_secrets`) from the secrets
//!   granted to the caller, in the `GetSecretValue` shape (`CreatedDate` in
//!   epoch milliseconds, `SecretBinary` base64); a refusal is the
//!   `{"Status","Message"}` payload the SDK raises as `SecretsManagerError`,
//!   and is logged in the caller's log and the runtime log.
//! * Everything runs on the actor system's thread: no locks, no `Send`.

pub mod http;
pub mod python;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use evergreen_ipc::LogLevel;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};

use crate::component::{SharedInFlight, SharedLog};
use crate::router::{Message, QueueReceiver, Router};
use http::{base64_decode, base64_encode, percent_decode, read_request, Request, Response};

/// The router as the SDK addresses it (`ROUTER_FUNCTION_ARN`).
pub const ROUTER_ARN: &str = "arn:aws:lambda:::function:GGRouter";
/// The local shadow service (`SHADOW_FUNCTION_ARN`).
pub const SHADOW_ARN: &str = "arn:aws:lambda:::function:GGShadowService";
/// The secret service (`SECRETS_MANAGER_FUNCTION_ARN`), qualified as Greengrass sets it.
pub const SECRETS_ARN: &str = "arn:aws:lambda:::function:GGSecretManager:1";
/// The interface version Greengrass 1.9+ cores announce.
pub const MAX_INTERFACE_VERSION: &str = "1.5";

const API_PREFIX: &str = "/2016-11-01/";
/// Largest request body: Lambda's synchronous payload limit.
pub const MAX_BODY: usize = 6 << 20;
/// How long a worker's `GET …/work` waits before an empty 204; the runtime
/// polls again. Bounded so a vanished worker's poll cannot linger.
const LONG_POLL: Duration = Duration::from_secs(20);
/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 512;
/// Results (RequestResponse invokes) kept at once, fetched or not.
const MAX_RESULTS: usize = 4096;
/// An unfetched result is forgotten after this.
const RESULT_TTL: Duration = Duration::from_secs(300);
/// A caller waits for a result up to the target's `Timeout` plus this.
const RESULT_WAIT_MARGIN: Duration = Duration::from_secs(5);
/// Longest log message accepted from the log endpoint.
const MAX_LOG_MESSAGE: usize = 16 << 10;

/// What a result fetch returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `""`, `Handled` or `Unhandled`.
    pub function_error: String,
    pub payload: Vec<u8>,
}

impl Outcome {
    fn unhandled(message: &str) -> Self {
        Outcome {
            function_error: "Unhandled".into(),
            payload: json!({ "errorMessage": message, "errorType": "Unhandled" })
                .to_string()
                .into_bytes(),
        }
    }
}

/// One piece of work for a function.
#[derive(Debug)]
struct WorkItem {
    id: String,
    payload: Arc<[u8]>,
    /// Base64 JSON, passed on verbatim to the worker.
    client_context: String,
}

#[derive(Debug)]
struct Pending {
    /// Only the function that invoked may fetch the result.
    caller: String,
    outcome: Option<Outcome>,
    waiters: Vec<oneshot::Sender<Outcome>>,
    created: Instant,
    /// How long a fetch may wait for it.
    limit: Duration,
}

/// The current child of a registered function.
struct Worker {
    token: String,
    generation: u64,
    inflight: SharedInFlight,
    on_ready: Box<dyn Fn()>,
    ready: bool,
    /// The invocation handed out and not yet answered.
    handling: Option<String>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("generation", &self.generation)
            .field("ready", &self.ready)
            .field("handling", &self.handling)
            .finish_non_exhaustive()
    }
}

/// One registered Python function.
#[derive(Debug)]
pub struct FunctionLink {
    serial: u64,
    arn: String,
    /// The ARN without its qualifier, for unqualified invokes.
    unqualified: String,
    timeout: Duration,
    log: SharedLog,
    inbox: Arc<tokio::sync::Mutex<QueueReceiver>>,
    direct: RefCell<VecDeque<WorkItem>>,
    direct_ready: Notify,
    direct_capacity: usize,
    /// On-demand functions: starts a child when work arrives.
    wake: Option<Arc<Notify>>,
    worker: RefCell<Option<Worker>>,
}

/// Everything the endpoint knows; shared by the server and the component
/// actors on the actor system's thread.
#[derive(Debug)]
pub struct LambdaHub {
    router: Arc<Router>,
    port: u16,
    runtime_dir: std::path::PathBuf,
    functions: RefCell<HashMap<String, Rc<FunctionLink>>>,
    tokens: RefCell<HashMap<String, Rc<FunctionLink>>>,
    results: RefCell<HashMap<String, Pending>>,
    serial: Cell<u64>,
    connections: Cell<usize>,
    /// Where `GGShadowService` invokes go, once set.
    shadow: RefCell<Option<Arc<dyn crate::services::ShadowService>>>,
    /// Where `GGSecretManager` invokes are answered from, once set.
    secrets: RefCell<Option<Arc<dyn crate::services::SecretSource>>>,
}

/// Sixteen random bytes as hex, from the kernel.
fn random_hex() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !ok {
        // No /dev/urandom (a broken chroot): fall back to the clock and a
        // counter. Tokens stay unique, if guessable; this is logged.
        static FALLBACK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        log::warn!("cannot read /dev/urandom: Lambda IPC tokens are not random");
        let n = FALLBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        bytes[8..].copy_from_slice(&(t as u64).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An invocation id in the UUID layout Lambda uses.
fn invocation_id() -> String {
    let h = random_hex();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The parts of a function ARN: `(region, account, name, qualifier)`.
fn arn_parts(arn: &str) -> Option<(&str, &str, &str, Option<&str>)> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", region, account, "function", name] => {
            Some((region, account, name, None))
        }
        ["arn", _, "lambda", region, account, "function", name, q] => {
            Some((region, account, name, Some(q)))
        }
        _ => None,
    }
}

fn unqualified(arn: &str) -> String {
    match arn_parts(arn) {
        Some((_, _, _, Some(q))) => arn[..arn.len() - q.len() - 1].to_string(),
        _ => arn.to_string(),
    }
}

/// Where an invoke goes.
#[derive(Debug)]
enum Target {
    Router,
    Shadow,
    Secrets,
    Function(Rc<FunctionLink>),
}

impl LambdaHub {
    pub fn new(router: Arc<Router>, port: u16, runtime_dir: std::path::PathBuf) -> Rc<Self> {
        Rc::new(LambdaHub {
            router,
            port,
            runtime_dir,
            functions: RefCell::new(HashMap::new()),
            tokens: RefCell::new(HashMap::new()),
            results: RefCell::new(HashMap::new()),
            serial: Cell::new(0),
            connections: Cell::new(0),
            shadow: RefCell::new(None),
            secrets: RefCell::new(None),
        })
    }

    /// Serves `GGShadowService` invokes with this shadow service.
    pub fn set_shadow(&self, shadow: Arc<dyn crate::services::ShadowService>) {
        *self.shadow.borrow_mut() = Some(shadow);
    }

    /// Serves `GGSecretManager` invokes from this secret store.
    pub fn set_secrets(&self, secrets: Arc<dyn crate::services::SecretSource>) {
        *self.secrets.borrow_mut() = Some(secrets);
    }

    /// The port functions are told (`GG_DAEMON_PORT`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the Python support files were written.
    pub fn runtime_dir(&self) -> &std::path::Path {
        &self.runtime_dir
    }

    /// Registers a function (its component actor started). A later
    /// registration of the same ARN (a redeployment) takes over invokes.
    pub(crate) fn register(
        &self,
        arn: &str,
        timeout: Duration,
        log: SharedLog,
        inbox: Arc<tokio::sync::Mutex<QueueReceiver>>,
        wake: Option<Arc<Notify>>,
        direct_capacity: usize,
    ) -> Rc<FunctionLink> {
        let serial = self.serial.get() + 1;
        self.serial.set(serial);
        let link = Rc::new(FunctionLink {
            serial,
            arn: arn.to_string(),
            unqualified: unqualified(arn),
            timeout,
            log,
            inbox,
            direct: RefCell::new(VecDeque::new()),
            direct_ready: Notify::new(),
            direct_capacity: direct_capacity.max(1),
            wake,
            worker: RefCell::new(None),
        });
        self.functions
            .borrow_mut()
            .insert(arn.to_string(), link.clone());
        link
    }

    /// The function's actor stopped: invokes of it are refused from now on
    /// and whoever waits for one of its results gets an Unhandled error.
    pub(crate) fn unregister(&self, link: &Rc<FunctionLink>) {
        {
            let mut functions = self.functions.borrow_mut();
            if functions
                .get(&link.arn)
                .is_some_and(|l| l.serial == link.serial)
            {
                functions.remove(&link.arn);
            }
        }
        if let Some(worker) = link.worker.borrow_mut().take() {
            self.tokens.borrow_mut().remove(&worker.token);
        }
        let queued: Vec<WorkItem> = link.direct.borrow_mut().drain(..).collect();
        for item in queued {
            self.complete(&item.id, Outcome::unhandled("the function was stopped"));
        }
    }

    /// A fresh token for the next child.
    pub(crate) fn new_token(&self) -> String {
        random_hex()
    }

    /// The child with `token` was spawned; `on_ready` is called on its
    /// first request.
    pub(crate) fn attach_worker(
        &self,
        link: &Rc<FunctionLink>,
        token: String,
        generation: u64,
        inflight: SharedInFlight,
        on_ready: Box<dyn Fn()>,
    ) {
        self.tokens.borrow_mut().insert(token.clone(), link.clone());
        let old = link.worker.borrow_mut().replace(Worker {
            token,
            generation,
            inflight,
            on_ready,
            ready: false,
            handling: None,
        });
        if let Some(old) = old {
            self.tokens.borrow_mut().remove(&old.token);
        }
    }

    /// The child of `generation` is gone (`why`): its token dies and the
    /// invocation it was handling ends as an Unhandled error.
    pub(crate) fn detach_worker(&self, link: &Rc<FunctionLink>, generation: u64, why: &str) {
        let worker = {
            let mut slot = link.worker.borrow_mut();
            if slot.as_ref().is_some_and(|w| w.generation == generation) {
                slot.take()
            } else {
                None
            }
        };
        let Some(worker) = worker else { return };
        self.tokens.borrow_mut().remove(&worker.token);
        if let Some(id) = worker.handling {
            self.complete(
                &id,
                Outcome::unhandled(&format!("{}: the worker {why}", link.arn)),
            );
        }
    }

    /// Stores or hands over the result of invocation `id` (if anyone asked
    /// for it: Event invokes and subscription deliveries have no entry).
    fn complete(&self, id: &str, outcome: Outcome) {
        let mut results = self.results.borrow_mut();
        let Some(pending) = results.get_mut(id) else {
            return;
        };
        if pending.waiters.is_empty() {
            pending.outcome = Some(outcome);
            return;
        }
        for waiter in pending.waiters.drain(..) {
            let _ = waiter.send(outcome.clone());
        }
        results.remove(id);
    }

    /// Makes room for and records a result entry; `false` when full.
    fn expect_result(
        &self,
        id: &str,
        caller: &str,
        outcome: Option<Outcome>,
        limit: Duration,
    ) -> bool {
        let mut results = self.results.borrow_mut();
        if results.len() >= MAX_RESULTS {
            let now = Instant::now();
            results.retain(|_, p| now.duration_since(p.created) < RESULT_TTL);
            if results.len() >= MAX_RESULTS {
                return false;
            }
        }
        results.insert(
            id.to_string(),
            Pending {
                caller: caller.to_string(),
                outcome,
                waiters: Vec::new(),
                created: Instant::now(),
                limit,
            },
        );
        true
    }

    fn resolve(&self, arn: &str) -> Option<Target> {
        let (region, account, name, _) = arn_parts(arn)?;
        if region.is_empty() && account.is_empty() {
            return match name {
                "GGRouter" => Some(Target::Router),
                "GGShadowService" => Some(Target::Shadow),
                "GGSecretManager" => Some(Target::Secrets),
                _ => None,
            };
        }
        let functions = self.functions.borrow();
        if let Some(link) = functions.get(arn) {
            return Some(Target::Function(link.clone()));
        }
        // An unqualified ARN names the one deployed version, if only one is.
        let mut matches = functions.values().filter(|l| l.unqualified == arn);
        match (matches.next(), matches.next()) {
            (Some(link), None) => Some(Target::Function(link.clone())),
            _ => None,
        }
    }
}

/// Binds the endpoint on `localhost`: 127.0.0.1 and, where the host has
/// IPv6, ::1 (the SDK connects to the name `localhost`, which may resolve
/// to either). Fails only if 127.0.0.1 cannot be bound.
pub async fn bind(port: u16) -> std::io::Result<Vec<TcpListener>> {
    let v4 = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let mut listeners = vec![v4];
    match TcpListener::bind(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))).await {
        Ok(v6) => listeners.push(v6),
        Err(e) => log::info!("Lambda IPC endpoint: not listening on [::1]:{port}: {e}"),
    }
    Ok(listeners)
}

/// Serves the endpoint on the current (actor system) thread until the
/// listeners fail.
pub fn serve(hub: Rc<LambdaHub>, listeners: Vec<TcpListener>) {
    for listener in listeners {
        let hub = hub.clone();
        actix_rt::spawn(async move {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, usually: wait a little rather
                        // than spin.
                        log::warn!("Lambda IPC endpoint: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if hub.connections.get() >= MAX_CONNECTIONS {
                    drop(stream);
                    continue;
                }
                hub.connections.set(hub.connections.get() + 1);
                let hub = hub.clone();
                actix_rt::spawn(async move {
                    connection(&hub, stream).await;
                    hub.connections.set(hub.connections.get().saturating_sub(1));
                });
            }
        });
    }
}

async fn connection(hub: &Rc<LambdaHub>, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.split();
    let req = match read_request(&mut rd, MAX_BODY).await {
        Ok(req) => req,
        Err(e) => {
            if let Some(status) = e.status() {
                let _ = Response::error(status, &e.to_string()).write(&mut wr).await;
            }
            return;
        }
    };
    let response = tokio::select! {
        r = handle(hub, &req) => r,
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

/// Answers one request.
async fn handle(hub: &Rc<LambdaHub>, req: &Request) -> Response {
    let Some(token) = req.header("authorization").filter(|t| !t.is_empty()) else {
        return Response::error(403, "missing Authorization token");
    };
    let Some(caller) = hub.tokens.borrow().get(token).cloned() else {
        return Response::error(403, "unknown Authorization token");
    };
    let path = match percent_decode(&req.path) {
        Ok(p) => p,
        Err(e) => return Response::error(400, &e),
    };
    let Some(rest) = path.strip_prefix(API_PREFIX) else {
        return Response::error(404, &format!("no such resource: {path}"));
    };
    let rest = rest.split('?').next().unwrap_or_default();
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
    let mut slot = link.worker.borrow_mut();
    if let Some(worker) = slot.as_mut().filter(|w| w.token == token && !w.ready) {
        worker.ready = true;
        (worker.on_ready)();
    }
}

fn note(link: &FunctionLink, level: LogLevel, message: &str) {
    let _ = link.log.borrow_mut().write(level, message);
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

async fn invoke(hub: &LambdaHub, caller: &FunctionLink, arn: &str, req: &Request) -> Response {
    let wants_result = match req
        .header("x-amz-invocation-type")
        .unwrap_or("RequestResponse")
    {
        "RequestResponse" => true,
        "Event" => false,
        other => {
            return Response::error(
                400,
                &format!("X-Amz-Invocation-Type {other:?}: use RequestResponse or Event"),
            )
        }
    };
    let context = req.header("x-amz-client-context").unwrap_or("");
    let Some(target) = hub.resolve(arn) else {
        return Response::error(
            404,
            &format!("{arn} is not a Python function of this group, nor a Greengrass service"),
        );
    };
    let id = invocation_id();
    // A target's Timeout kills its worker, which completes the result with
    // an Unhandled error; the margin covers the kill.
    let limit = match &target {
        Target::Function(link) => link.timeout + RESULT_WAIT_MARGIN,
        _ => RESULT_WAIT_MARGIN,
    };
    let accepted = |outcome: Option<Outcome>| {
        if wants_result && !hub.expect_result(&id, &caller.arn, outcome, limit) {
            return Response::error(429, "too many results waiting to be fetched");
        }
        Response::new(if wants_result { 200 } else { 202 }).header("X-Amz-InvocationId", &id)
    };
    match target {
        Target::Router => {
            let custom = match custom_context(context) {
                Ok(c) => c,
                Err(e) => return Response::error(400, &e),
            };
            let Some(topic) = custom.get("subject").and_then(Value::as_str) else {
                return Response::error(
                    400,
                    "X-Amz-Client-Context: custom.subject (the topic) is missing or not a string",
                );
            };
            let all_or_error =
                custom.get("queueFullPolicy").and_then(Value::as_str) == Some("AllOrError");
            match hub.router.publish(&caller.arn, topic, Arc::from(req.body.as_slice())) {
                Err(e) => Response::error(400, &format!("publish on {topic:?} refused: {e}")),
                Ok(outcome) if all_or_error && outcome.dropped_full > 0 => Response::error(
                    429,
                    &format!(
                        "publish on {topic:?}: {} target queues were full (queueFullPolicy AllOrError)",
                        outcome.dropped_full
                    ),
                ),
                Ok(_) => accepted(Some(Outcome {
                    function_error: String::new(),
                    payload: Vec::new(),
                })),
            }
        }
        Target::Shadow => {
            let shadow = hub.shadow.borrow().clone();
            if let Some(shadow) = shadow {
                let custom = match custom_context(context) {
                    Ok(c) => c,
                    Err(e) => return Response::error(400, &e),
                };
                let Some(topic) = custom.get("subject").and_then(Value::as_str) else {
                    return Response::error(
                        400,
                        "X-Amz-Client-Context: custom.subject (the shadow topic) is missing or not a string",
                    );
                };
                // One small file read and, for a change, one fsync: on the
                // blocking pool, so the actors' thread never waits for the
                // disk (a component's IPC requests go the same way). A
                // rejection is the `{"code","message"}` body the SDK turns
                // into a ShadowError.
                let (source, request, body) =
                    (caller.arn.clone(), topic.to_owned(), req.body.clone());
                let answer =
                    tokio::task::spawn_blocking(move || shadow.request(&source, &request, &body))
                        .await;
                let answer = match answer {
                    Ok(answer) => answer,
                    Err(e) => {
                        return Response::error(500, &format!("the shadow request failed: {e}"))
                    }
                };
                let Some((_, payload)) = answer else {
                    return Response::error(
                        400,
                        &format!("{topic:?} is not a shadow request topic ($aws/things/<thing>/shadow[/name/<name>]/get|update|delete)"),
                    );
                };
                return accepted(Some(Outcome {
                    function_error: String::new(),
                    payload,
                }));
            }
            accepted(Some(Outcome {
                function_error: String::new(),
                payload: json!({
                    "code": 503,
                    "message": "the local shadow service is not running (see the runtime's log)"
                })
                .to_string()
                .into_bytes(),
            }))
        }
        Target::Secrets => {
            let secrets = hub.secrets.borrow().clone();
            accepted(Some(Outcome {
                function_error: String::new(),
                payload: secret_answer(secrets.as_deref(), caller, &req.body),
            }))
        }
        Target::Function(link) => {
            if link.direct.borrow().len() >= link.direct_capacity {
                return Response::error(429, &format!("{}: its invoke queue is full", link.arn));
            }
            let response = accepted(None);
            if response.status >= 400 {
                return response;
            }
            link.direct.borrow_mut().push_back(WorkItem {
                id: id.clone(),
                payload: Arc::from(req.body.as_slice()),
                client_context: context.to_string(),
            });
            link.direct_ready.notify_one();
            if let Some(wake) = &link.wake {
                wake.notify_one();
            }
            response
        }
    }
}

/// The payload answering a `GGSecretManager` invoke: the `GetSecretValue`
/// shape, or `{"Status","Message"}` (logged; never with a value).
fn secret_answer(
    secrets: Option<&dyn crate::services::SecretSource>,
    caller: &FunctionLink,
    body: &[u8],
) -> Vec<u8> {
    let refuse = |status: u16, message: String| {
        let line = format!("secret request refused: {message}");
        note(caller, LogLevel::Warn, &line);
        log::warn!("{}: {line}", caller.arn);
        json!({ "Status": status, "Message": message })
            .to_string()
            .into_bytes()
    };
    let Some(secrets) = secrets else {
        return refuse(503, "the secret store is not running".into());
    };
    let request: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return refuse(400, "the request is not a JSON object".into()),
    };
    let Some(secret_id) = request.get("SecretId").and_then(Value::as_str) else {
        return refuse(400, "SecretId is missing or not a string".into());
    };
    if request.get("VersionId").is_some_and(|v| !v.is_null()) {
        return refuse(400, "VersionId is not supported; use VersionStage".into());
    }
    let stage = match request.get("VersionStage") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return refuse(400, "VersionStage is not a string".into()),
    };
    match secrets.get(&caller.arn, secret_id, stage) {
        Err(r) => refuse(r.status, r.message),
        Ok(v) => {
            note(
                caller,
                LogLevel::Debug,
                &format!(
                    "secret {} read (version {}, stages {})",
                    v.arn,
                    v.version_id,
                    v.version_stages.join(",")
                ),
            );
            let mut answer = json!({
                "ARN": v.arn,
                "Name": v.name,
                "VersionId": v.version_id,
                "VersionStages": v.version_stages,
                "CreatedDate": v.created_date_ms,
            });
            if let Some(s) = &v.secret_string {
                answer["SecretString"] = Value::String(s.clone());
            }
            if let Some(b) = &v.secret_binary {
                answer["SecretBinary"] = Value::String(base64_encode(b));
            }
            answer.to_string().into_bytes()
        }
    }
}

/// The `custom` object of a base64 JSON client context.
fn custom_context(context: &str) -> Result<serde_json::Map<String, Value>, String> {
    let bytes = base64_decode(context.trim()).ok_or("X-Amz-Client-Context is not base64")?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("X-Amz-Client-Context is not JSON: {e}"))?;
    match doc.get("custom") {
        Some(Value::Object(custom)) => Ok(custom.clone()),
        _ => Err("X-Amz-Client-Context has no custom object".to_string()),
    }
}

async fn fetch(hub: &LambdaHub, caller: &FunctionLink, req: &Request) -> Response {
    let Some(id) = req.header("x-amz-invocationid") else {
        return Response::error(400, "X-Amz-InvocationId is required to fetch a result");
    };
    let (rx, limit) = {
        let mut results = hub.results.borrow_mut();
        let Some(pending) = results.get_mut(id).filter(|p| p.caller == caller.arn) else {
            return Response::error(404, &format!("no result {id} for this function"));
        };
        if pending.outcome.is_some() {
            let outcome = results.remove(id).and_then(|p| p.outcome);
            return result_response(outcome.unwrap_or_else(|| Outcome::unhandled("lost result")));
        }
        let (tx, rx) = oneshot::channel();
        pending.waiters.push(tx);
        (rx, pending.limit)
    };
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(outcome)) => result_response(outcome),
        _ => {
            hub.results.borrow_mut().remove(id);
            result_response(Outcome::unhandled(&format!(
                "no result within {} s",
                limit.as_secs()
            )))
        }
    }
}

fn result_response(outcome: Outcome) -> Response {
    Response::new(200)
        .header("X-Amz-Function-Error", outcome.function_error)
        .body(outcome.payload)
}

async fn next_work(link: &Rc<FunctionLink>, token: &str) -> Response {
    let mut ended: Option<String> = None;
    {
        let mut slot = link.worker.borrow_mut();
        let Some(worker) = slot.as_mut().filter(|w| w.token == token) else {
            return Response::error(403, "not the current worker of this function");
        };
        // Polling again without answering gives the invocation up.
        if let Some(id) = worker.handling.take() {
            worker.inflight.borrow_mut().finish(Instant::now());
            ended = Some(id);
        }
    }
    if let Some(id) = ended {
        note(
            link,
            LogLevel::Warn,
            &format!("invocation {id} was not answered"),
        );
    }
    let item = tokio::select! {
        item = take_work(link) => item,
        _ = tokio::time::sleep(LONG_POLL) => None,
    };
    let Some(item) = item else {
        return Response::new(204);
    };
    {
        let mut slot = link.worker.borrow_mut();
        match slot.as_mut().filter(|w| w.token == token) {
            Some(worker) => {
                worker.inflight.borrow_mut().begin(Instant::now());
                worker.handling = Some(item.id.clone());
            }
            None => return Response::error(403, "this worker was replaced"),
        }
    }
    let deadline = epoch_ms() + link.timeout.as_millis();
    Response::new(200)
        .header("X-Amz-InvocationId", item.id)
        .header("X-Amz-Client-Context", item.client_context)
        .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
        .body(item.payload.to_vec())
}

/// The next work item: a direct invoke first, else a routed message.
async fn take_work(link: &FunctionLink) -> Option<WorkItem> {
    let mut inbox = link.inbox.lock().await;
    loop {
        if let Some(item) = link.direct.borrow_mut().pop_front() {
            return Some(item);
        }
        tokio::select! {
            biased;
            _ = link.direct_ready.notified() => continue,
            msg = inbox.recv() => return msg.map(|m| routed(&m)),
        }
    }
}

/// A subscription delivery as work: the topic travels in `custom.subject`.
fn routed(msg: &Message) -> WorkItem {
    let context = json!({ "custom": { "subject": &*msg.topic, "source": &*msg.source } });
    WorkItem {
        id: invocation_id(),
        payload: msg.payload.clone(),
        client_context: base64_encode(context.to_string().as_bytes()),
    }
}

fn work_result(hub: &LambdaHub, link: &FunctionLink, token: &str, req: &Request) -> Response {
    let Some(id) = req.header("x-amz-invocationid") else {
        return Response::error(400, "X-Amz-InvocationId is required to post a result");
    };
    {
        let mut slot = link.worker.borrow_mut();
        let Some(worker) = slot.as_mut().filter(|w| w.token == token) else {
            return Response::error(403, "not the current worker of this function");
        };
        if worker.handling.as_deref() != Some(id) {
            return Response::error(
                409,
                &format!("invocation {id} is not the one this worker is handling"),
            );
        }
        worker.handling = None;
        worker.inflight.borrow_mut().finish(Instant::now());
    }
    let function_error = req.header("x-amz-function-error").unwrap_or("").to_string();
    if !function_error.is_empty() {
        let message = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&req.body).into_owned());
        note(
            link,
            LogLevel::Error,
            &format!("invocation {id}: {function_error} error: {message}"),
        );
    }
    hub.complete(
        id,
        Outcome {
            function_error,
            payload: req.body.clone(),
        },
    );
    Response::new(202)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_are_split_and_unqualified() {
        assert_eq!(
            arn_parts("arn:aws:lambda:us-east-1:1:function:f:3"),
            Some(("us-east-1", "1", "f", Some("3")))
        );
        assert_eq!(arn_parts(ROUTER_ARN), Some(("", "", "GGRouter", None)));
        assert_eq!(arn_parts("arn:aws:iot:x"), None);
        assert_eq!(
            unqualified("arn:aws:lambda:us-east-1:1:function:f:3"),
            "arn:aws:lambda:us-east-1:1:function:f"
        );
    }

    #[test]
    fn client_contexts_are_checked() {
        let good = base64_encode(br#"{"custom":{"subject":"a/b"}}"#);
        assert_eq!(
            custom_context(&good).expect("good")["subject"],
            json!("a/b")
        );
        assert!(custom_context("%%%")
            .expect_err("refused")
            .contains("base64"));
        assert!(custom_context(&base64_encode(b"nope"))
            .expect_err("refused")
            .contains("JSON"));
        assert!(custom_context(&base64_encode(b"{}"))
            .expect_err("refused")
            .contains("custom"));
    }

    #[test]
    fn ids_are_random_and_shaped() {
        let a = invocation_id();
        assert_eq!(a.len(), 36);
        assert_ne!(a, invocation_id());
        assert_eq!(random_hex().len(), 32);
    }
}
