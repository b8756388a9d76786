//! The Lambda IPC endpoint: the HTTP/1.1 service on `localhost` that
//! Greengrass V1 Python functions and the `greengrasssdk` package talk to
//! (`/2016-11-01/functions/…`, `…/work`, `…/initialized`,
//! `/2016-11-01/cloudwatch/logs/`), as described in
//! `shared/reference/lambda-ipc.md`.
//!
//! It owns the per-function state of the *lambda link*, the alternative to
//! the stdio frame link for functions whose `Executable` is
//! `module.function` and for native functions (`Runtime` `executable`, on
//! Evergreen's C SDK library, see [`native`]): each registered function has a work queue (router
//! deliveries come from the component's own bounded inbox, direct
//! Lambda-to-Lambda invokes from a second bounded queue), its workers (the
//! running children, each with its own random token) and the results that
//! callers are waiting for. The component actor still owns the children: it
//! registers the function, attaches each worker it spawns and detaches it
//! when it exits; `Timeout`, on-demand starts, extra workers, idle stops and
//! restarts stay the actor's. It asks [`LambdaHub::demand`] whether work is
//! waiting that no worker is free to take.
//!
//! Workers, as Greengrass V1 ran them: a `Pinned` function has exactly one
//! worker, which handles its invocations one after another. An on-demand
//! function gets another worker whenever work waits and every worker it has
//! is busy, up to `evergreen.maxWorkersPerFunction` (or the component's
//! `maxWorkers`) and within the on-demand slots shared by all functions
//! (`runtime.maxConcurrentLimit`); each worker takes one invocation at a
//! time from the same queues, so a Lambda-to-Lambda invoke is served by a
//! free or new worker instead of waiting behind the messages the busy ones
//! handle. Module-level state is per worker, as it was in V1.
//!
//! Rules (the contract's, plus Evergreen's choices):
//! * Every request carries the worker's token in `Authorization`; a
//!   missing or unknown token is 403 and nothing is routed. Tokens are
//!   random per child (per worker: two workers of one function never share
//!   one), so a killed worker's token dies with it.
//! * A worker may only take (`GET …/work`) and answer (`POST …/work`) its
//!   own function's work, and only the invocation it was handed; another
//!   worker of the same function cannot answer it.
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
//! * Credential requests (`GET /2016-11-01/credentialprovider/`, the URL in
//!   `AWS_CONTAINER_CREDENTIALS_FULL_URI`) are answered from the core's
//!   credentials chain in the container-credentials format boto3 reads
//!   (Greengrass V1's token exchange service, see [`credentials`]).
//! * Invokes of `arn:aws:lambda:<region>:aws:function:<name>` go to the
//!   component serving `<name>` (V1's ML connectors), see [`local`].
//! * Everything runs on the actor system's thread: no locks, no `Send`.

mod credentials;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
mod invoke;
mod local;
pub mod native;
pub mod node;
pub mod python;
mod server;
mod work;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use evergreen_ipc::LogLevel;
use serde_json::json;
use tokio::sync::{oneshot, Notify};

use crate::inflight::SharedInFlight;
use crate::logs::ComponentLog;
use crate::router::{QueueReceiver, Router};
pub(crate) use local::{Handoff, ServiceLink};
pub use server::EndpointLimits;

/// The router as the SDK addresses it (`ROUTER_FUNCTION_ARN`).
pub(crate) const ROUTER_ARN: &str = "arn:aws:lambda:::function:GGRouter";
/// The local shadow service (`SHADOW_FUNCTION_ARN`).
pub(crate) const SHADOW_ARN: &str = "arn:aws:lambda:::function:GGShadowService";
/// The secret service (`SECRETS_MANAGER_FUNCTION_ARN`), qualified as Greengrass sets it.
pub(crate) const SECRETS_ARN: &str = "arn:aws:lambda:::function:GGSecretManager:1";
/// The interface version Greengrass 1.9+ cores announce.
pub(crate) const MAX_INTERFACE_VERSION: &str = "1.5";

/// Largest request body: Lambda's synchronous payload limit.
pub(crate) const MAX_BODY: usize = 6 << 20;
/// Results (RequestResponse invokes) kept at once, fetched or not.
const MAX_RESULTS: usize = 4096;
/// An unfetched result is forgotten after this.
const RESULT_TTL: Duration = Duration::from_secs(300);

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

/// One running child of a registered function.
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

/// One registered Python or native function.
#[derive(Debug)]
pub(crate) struct FunctionLink {
    serial: u64,
    arn: String,
    /// The ARN without its qualifier, for unqualified invokes.
    unqualified: String,
    timeout: Duration,
    log: ComponentLog,
    inbox: Arc<tokio::sync::Mutex<QueueReceiver>>,
    direct: RefCell<VecDeque<WorkItem>>,
    direct_ready: Notify,
    direct_capacity: usize,
    /// On-demand functions: starts a child when work arrives.
    wake: Option<Arc<Notify>>,
    /// Its running children: one for a pinned function, up to its limit
    /// for an on-demand one.
    workers: RefCell<Vec<Worker>>,
}

impl FunctionLink {
    /// Queues a direct invoke and wakes a waiting worker (or, for an
    /// on-demand function, the actor that starts one). The caller has
    /// checked `direct_capacity`.
    fn enqueue(&self, item: WorkItem) {
        self.direct.borrow_mut().push_back(item);
        self.direct_ready.notify_one();
        if let Some(wake) = &self.wake {
            wake.notify_one();
        }
    }

    /// Runs `f` on the worker holding `token`, if it is still attached.
    fn with_worker<R>(&self, token: &str, f: impl FnOnce(&mut Worker) -> R) -> Option<R> {
        self.workers
            .borrow_mut()
            .iter_mut()
            .find(|w| w.token == token)
            .map(f)
    }
}

/// What a function's workers are doing, for the actor's decision to start
/// another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Demand {
    /// Work is queued that no worker is waiting for.
    pub waiting: bool,
    /// Workers spawned that have not asked for work yet.
    pub starting: usize,
    /// Workers that are up and not handling an invocation.
    pub idle: usize,
}

impl Demand {
    /// Another worker would take work now: something waits, nobody free or
    /// about to be.
    pub(crate) fn wants_worker(&self) -> bool {
        self.waiting && self.starting == 0 && self.idle == 0
    }
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
    /// The live tokens again, readable from other threads (the stream
    /// manager checks its clients' tokens against it).
    directory: crate::services::TokenDirectory,
    results: RefCell<HashMap<String, Pending>>,
    serial: Cell<u64>,
    /// Where `GGShadowService` invokes go, once set.
    shadow: RefCell<Option<Arc<dyn crate::services::ShadowService>>>,
    /// Where `GGSecretManager` invokes are answered from, once set.
    secrets: RefCell<Option<Arc<dyn crate::services::SecretSource>>>,
    /// Where credential requests (the token exchange) are answered from, once set.
    credentials: RefCell<Option<Arc<dyn crate::services::CredentialSource>>>,
    /// Whether the runtime log already says why functions get no credentials.
    credential_outage: credentials::Outage,
    /// The endpoint's listeners: bound by the first deployment with a
    /// function and closed by one without (see [`LambdaHub::listen`]).
    endpoint: RefCell<server::Endpoint>,
    /// The directory holding `libaws-greengrass-core-sdk-c.so` for native
    /// functions, once installed (see [`native`]).
    native_library: RefCell<Option<std::path::PathBuf>>,
    /// The stream manager's port while the deployed group has one
    /// (`STREAM_MANAGER_SERVER_PORT` for the functions' SDK clients).
    stream_manager_port: Cell<Option<u16>>,
    /// Local services components serve, by function name (see [`local`]).
    local: RefCell<HashMap<String, Rc<local::ServiceLink>>>,
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
        tracing::warn!("cannot read /dev/urandom: Lambda IPC tokens are not random");
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
    /// A name a component serves.
    Service(Rc<local::ServiceLink>),
}

impl LambdaHub {
    /// A hub serving functions on `port` within `limits`; nothing listens
    /// until [`LambdaHub::listen`].
    pub fn new(
        router: Arc<Router>,
        port: u16,
        runtime_dir: std::path::PathBuf,
        limits: EndpointLimits,
    ) -> Rc<Self> {
        Rc::new(LambdaHub {
            router,
            port,
            runtime_dir,
            functions: RefCell::new(HashMap::new()),
            tokens: RefCell::new(HashMap::new()),
            directory: crate::services::TokenDirectory::default(),
            stream_manager_port: Cell::new(None),
            results: RefCell::new(HashMap::new()),
            serial: Cell::new(0),
            shadow: RefCell::new(None),
            secrets: RefCell::new(None),
            credentials: RefCell::new(None),
            credential_outage: credentials::Outage::default(),
            endpoint: RefCell::new(server::Endpoint::new(limits)),
            native_library: RefCell::new(None),
            local: RefCell::new(HashMap::new()),
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

    /// Native functions load the C SDK library from `dir` (it holds
    /// [`native::LIBRARY`]).
    pub fn set_native_library(&self, dir: std::path::PathBuf) {
        *self.native_library.borrow_mut() = Some(dir);
    }

    /// Where native functions load the C SDK library from, if it was installed.
    pub(crate) fn native_library(&self) -> Option<std::path::PathBuf> {
        self.native_library.borrow().clone()
    }

    /// Answers functions' credential requests (the token exchange) from this source.
    pub fn set_credentials(&self, credentials: Arc<dyn crate::services::CredentialSource>) {
        *self.credentials.borrow_mut() = Some(credentials);
    }

    /// The port functions are told (`GG_DAEMON_PORT`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the Python support files were written.
    pub(crate) fn runtime_dir(&self) -> &std::path::Path {
        &self.runtime_dir
    }

    /// Registers a function (its component actor started). A later
    /// registration of the same ARN (a redeployment) takes over invokes.
    pub(crate) fn register(
        &self,
        arn: &str,
        timeout: Duration,
        log: ComponentLog,
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
            workers: RefCell::new(Vec::new()),
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
        for worker in link.workers.borrow_mut().drain(..) {
            self.forget_token(&worker.token);
        }
        let queued: Vec<WorkItem> = link.direct.borrow_mut().drain(..).collect();
        for item in queued {
            self.complete(&item.id, Outcome::unhandled("the function was stopped"));
        }
    }

    /// Whether `link` has work waiting that none of its workers is free to
    /// take (see [`Demand`]).
    pub(crate) fn demand(&self, link: &FunctionLink) -> Demand {
        // A worker waiting in `GET …/work` holds the inbox's lock: then it
        // takes whatever is queued, direct invokes first.
        let polled = link.inbox.try_lock().is_err();
        let queued = !link.direct.borrow().is_empty()
            || link.inbox.try_lock().is_ok_and(|inbox| !inbox.is_empty());
        let workers = link.workers.borrow();
        Demand {
            waiting: queued && !polled,
            starting: workers.iter().filter(|w| !w.ready).count(),
            idle: workers
                .iter()
                .filter(|w| w.ready && w.handling.is_none())
                .count(),
        }
    }

    fn forget_token(&self, token: &str) {
        self.tokens.borrow_mut().remove(token);
        self.directory.remove(token);
    }

    /// The stream manager's port for the functions started from now on.
    pub fn set_stream_manager_port(&self, port: Option<u16>) {
        self.stream_manager_port.set(port);
    }

    pub(crate) fn stream_manager_port(&self) -> Option<u16> {
        self.stream_manager_port.get()
    }

    /// The live tokens, for services on other threads.
    pub fn token_directory(&self) -> crate::services::TokenDirectory {
        self.directory.clone()
    }

    /// A fresh token for the next child.
    pub(crate) fn new_token(&self) -> String {
        random_hex()
    }

    /// The child with `token` was spawned (another worker of the function);
    /// `on_ready` is called on its first request.
    pub(crate) fn attach_worker(
        &self,
        link: &Rc<FunctionLink>,
        token: String,
        generation: u64,
        inflight: SharedInFlight,
        on_ready: Box<dyn Fn()>,
    ) {
        self.tokens.borrow_mut().insert(token.clone(), link.clone());
        self.directory.insert(&token, &link.arn);
        let mut workers = link.workers.borrow_mut();
        // A generation is attached once; a second attach replaces it.
        if let Some(i) = workers.iter().position(|w| w.generation == generation) {
            let old = workers.swap_remove(i);
            self.forget_token(&old.token);
        }
        workers.push(Worker {
            token,
            generation,
            inflight,
            on_ready,
            ready: false,
            handling: None,
        });
    }

    /// The child of `generation` is gone (`why`): its token dies and the
    /// invocation it was handling ends as an Unhandled error.
    pub(crate) fn detach_worker(&self, link: &Rc<FunctionLink>, generation: u64, why: &str) {
        let worker = {
            let mut workers = link.workers.borrow_mut();
            workers
                .iter()
                .position(|w| w.generation == generation)
                .map(|i| workers.swap_remove(i))
        };
        let Some(worker) = worker else { return };
        self.forget_token(&worker.token);
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
        if let Some(name) = local::service_name(arn) {
            if let Some(link) = self.local_service(name) {
                return Some(Target::Service(link));
            }
        }
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

/// Writes a line to the function's own log.
fn note(link: &FunctionLink, level: LogLevel, message: &str) {
    link.log.write(level, message);
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
    fn ids_are_random_and_shaped() {
        let a = invocation_id();
        assert_eq!(a.len(), 36);
        assert_ne!(a, invocation_id());
        assert_eq!(random_hex().len(), 32);
    }
}
