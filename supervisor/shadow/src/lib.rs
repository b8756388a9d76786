//! The local shadow service, `GGShadowService`: device shadows for the core and client devices
//! (and for any thing a subscription lets reach it), served on the AWS IoT shadow topics, stored
//! durably under the runtime root, and mirrored to the cloud for things with `SyncShadow`.
//!
//! It owns the shadow files (`<root>/shadow/`), the service thread that takes requests from the
//! router, and the sync rules. The document rules (merge, delta, versions, payload shapes) live
//! in `document`.
//!
//! Requests: `$aws/things/<thing>/shadow[/name/<shadow>]/{get,update,delete}` routed to the
//! endpoint `GGShadowService` by the group's subscriptions (or invoked by a Python function
//! through the Lambda IPC endpoint, see [`ShadowHandle::request`]). Answers are published with
//! `GGShadowService` as source on `…/accepted`, `…/rejected`, `…/update/delta` and
//! `…/update/documents`, so the group's subscriptions decide who hears them, as in Greengrass.
//! Topics under the shadow prefix that are not requests (a subscription with `#` also delivers
//! the service's own answer topics) are ignored. Named shadows are served too.
//!
//! Storage: one file per shadow, `<thing>.json` for the classic shadow and
//! `<thing>~<shadow>.json` for a named one (`~` cannot occur in either name), written to a
//! temporary file, fsynced, renamed over the old one and the directory fsynced: a shadow update
//! answered `accepted` survives power loss. A deleted shadow leaves a tombstone with its version
//! for 48 hours, so a shadow created again continues the numbering as AWS IoT does. Nothing is
//! cached in memory, so the number of shadows costs disk only.
//!
//! Cloud sync (things whose Core/Device definition says `SyncShadow: true`; named shadows of
//! those things too): the service never talks MQTT itself. The cloud bridge hands it a sink with
//! [`ShadowHandle::connect_cloud`] (the same sink it attaches for the `cloud` endpoint). What
//! the bridge must do:
//! * deliver what the service offers on that sink (source `GGShadowService`) upstream, in order,
//!   through its spooler: `…/shadow/update` with the accepted request's `state`, `…/shadow/delete`
//!   with `{}`, and `…/shadow/get` with `{}`;
//! * subscribe upstream to `…/shadow/update/documents`, `…/shadow/get/accepted`,
//!   `…/shadow/get/rejected` and `…/shadow/delete/accepted` of every thing in
//!   [`ShadowHandle::synced_things`] (classic, and `…/shadow/name/+/…` for named ones) and hand
//!   what arrives to [`ShadowHandle::cloud_message`];
//! * call [`ShadowHandle::resync`] after each (re)connection: the service then asks the cloud for
//!   every synced shadow (`get`), after whatever local changes are still spooled.
//!
//! Rules: a local change (any source but `cloud`) to a synced shadow is sent up as it was
//! accepted; the cloud's document replaces the local state when it differs (then the local
//! subscribers get `/update/documents` and `/update/delta` as for any change, and nothing is sent
//! back up, so there is no echo loop); a cloud `get` answered 404 while a local shadow exists
//! sends the whole local state up. Local and cloud version numbers are independent (each side
//! counts its own changes), so the sync never sends a `version`. Two sides changing one key at
//! the same time converge on the order the cloud applied them: last writer wins.

mod document;
#[doc(hidden)]
pub mod fuzzing;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use document::{Rejection, Shadow};
use evergreen_group::plan::GroupPlan;
use evergreen_runtime::router::{DeliverySink, Message, OfferError, Router};

/// The router endpoint (source and target) of the service.
pub(crate) const ENDPOINT: &str = "GGShadowService";
/// The source the cloud bridge publishes with.
pub(crate) const CLOUD: &str = "cloud";
/// Requests waiting for the service thread; past this they are dropped and counted by the
/// router, like any target's.
const QUEUE_CAPACITY: usize = 1024;
/// AWS IoT's limits on names.
const MAX_THING_NAME: usize = 128;
const MAX_SHADOW_NAME: usize = 64;

/// A shadow operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Update,
    Delete,
}

impl Op {
    fn word(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// A shadow topic taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShadowTopic<'a> {
    pub thing: &'a str,
    /// `None` for the classic shadow.
    pub name: Option<&'a str>,
    pub op: Op,
    /// What follows the operation: `""` for a request, else e.g. `"accepted"`, `"documents"`.
    pub suffix: &'a str,
}

impl ShadowTopic<'_> {
    /// `$aws/things/<thing>/shadow[/name/<name>]`.
    fn prefix(&self) -> String {
        match self.name {
            Some(n) => format!("$aws/things/{}/shadow/name/{n}", self.thing),
            None => format!("$aws/things/{}/shadow", self.thing),
        }
    }

    fn topic(&self, op: Op, suffix: &str) -> String {
        if suffix.is_empty() {
            format!("{}/{}", self.prefix(), op.word())
        } else {
            format!("{}/{}/{suffix}", self.prefix(), op.word())
        }
    }

    /// The name `404` messages quote: the shadow's name, or the thing's for the classic one.
    fn display_name(&self) -> &str {
        self.name.unwrap_or(self.thing)
    }

    fn file_name(&self) -> String {
        match self.name {
            Some(n) => format!("{}~{n}.json", self.thing),
            None => format!("{}.json", self.thing),
        }
    }
}

/// Parses `$aws/things/<thing>/shadow[/name/<name>]/<op>[/<suffix>]`; `None` for any other topic.
pub(crate) fn parse_topic(topic: &str) -> Option<ShadowTopic<'_>> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let (thing, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("shadow/")?;
    let (name, rest) = match rest.strip_prefix("name/") {
        Some(named) => {
            let (name, rest) = named.split_once('/')?;
            (Some(name), rest)
        }
        None => (None, rest),
    };
    let (op, suffix) = rest.split_once('/').unwrap_or((rest, ""));
    let op = match op {
        "get" => Op::Get,
        "update" => Op::Update,
        "delete" => Op::Delete,
        _ => return None,
    };
    Some(ShadowTopic {
        thing,
        name,
        op,
        suffix,
    })
}

fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// What handling one message produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Handled {
    /// Published locally with `GGShadowService` as source, in order.
    pub local: Vec<(String, Value)>,
    /// Offered to the cloud bridge, in order.
    pub cloud: Vec<(String, Value)>,
    /// For a request: accepted or not, and the `/accepted` or `/rejected` payload.
    pub answer: Option<(bool, Value)>,
}

/// The shadow files.
#[derive(Debug)]
struct Store {
    dir: PathBuf,
}

/// Why a stored shadow could not be read; logged, never sent to a component
/// (which gets only "Internal service failure").
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a shadow document", path.display())]
    NotAShadow { path: PathBuf },
}

impl Store {
    fn load(&self, t: &ShadowTopic<'_>) -> Result<Option<Shadow>, LoadError> {
        let path = self.dir.join(t.file_name());
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LoadError::Read { path, source }),
        };
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| Shadow::from_disk(&v))
            .map(Some)
            .ok_or(LoadError::NotAShadow { path })
    }

    /// Writes atomically and durably: temporary file, fsync, rename, fsync of the directory.
    fn save(&self, t: &ShadowTopic<'_>, shadow: &Shadow) -> std::io::Result<()> {
        let path = self.dir.join(t.file_name());
        let bytes = serde_json::to_vec(&shadow.to_disk()).map_err(std::io::Error::other)?;
        evergreen_durable::write_atomic(&path, &bytes, evergreen_durable::Mode::Default)
    }
}

/// The service's state: the store and the synced things. Pure of routing, so it is tested
/// without a router.
#[derive(Debug)]
pub(crate) struct Core {
    store: Store,
    synced: BTreeSet<String>,
}

fn internal(e: &dyn std::fmt::Display) -> Rejection {
    tracing::error!("{ENDPOINT}: {e}");
    Rejection::new(500, "Internal service failure")
}

impl Core {
    /// Opens (creating it) the shadow directory.
    pub(crate) fn open(dir: &Path) -> std::io::Result<Core> {
        std::fs::create_dir_all(dir)?;
        Ok(Core {
            store: Store {
                dir: dir.to_path_buf(),
            },
            synced: BTreeSet::new(),
        })
    }

    /// Sets the things whose shadows are synced; answers the newly synced ones.
    pub(crate) fn set_synced(&mut self, synced: BTreeSet<String>) -> Vec<String> {
        let new = synced.difference(&self.synced).cloned().collect();
        self.synced = synced;
        new
    }

    pub(crate) fn synced(&self) -> &BTreeSet<String> {
        &self.synced
    }

    /// Handles one message from `source`.
    pub(crate) fn handle(
        &mut self,
        source: &str,
        topic: &str,
        payload: &[u8],
        now: u64,
    ) -> Handled {
        let Some(t) = parse_topic(topic) else {
            tracing::debug!("{ENDPOINT}: ignoring {topic:?} from {source}: not a shadow topic");
            return Handled::default();
        };
        if t.suffix.is_empty() {
            return self.request(source, &t, payload, now);
        }
        let names_ok = valid_name(t.thing, MAX_THING_NAME)
            && t.name.is_none_or(|n| valid_name(n, MAX_SHADOW_NAME));
        if source == CLOUD && names_ok && self.synced.contains(t.thing) {
            return self.cloud_answer(&t, payload, now);
        }
        tracing::debug!("{ENDPOINT}: ignoring {topic:?} from {source}: not a request");
        Handled::default()
    }

    fn request(&mut self, source: &str, t: &ShadowTopic<'_>, payload: &[u8], now: u64) -> Handled {
        let mut out = Handled::default();
        let body = document::parse_body(payload);
        let token = body.as_ref().ok().and_then(document::client_token_of);
        match self.request_inner(t, body, now, &mut out) {
            Ok(accepted) => {
                out.local
                    .insert(0, (t.topic(t.op, "accepted"), accepted.clone()));
                out.answer = Some((true, accepted));
                let synced = source != CLOUD && self.synced.contains(t.thing);
                if synced {
                    self.send_up(t, &mut out);
                }
            }
            Err(rejection) => {
                tracing::debug!(
                    "{ENDPOINT}: {} from {source} rejected: {} {}",
                    t.topic(t.op, ""),
                    rejection.code,
                    rejection.message
                );
                let payload = rejection.payload(token.as_deref(), now);
                out.local = vec![(t.topic(t.op, "rejected"), payload.clone())];
                out.cloud.clear();
                out.answer = Some((false, payload));
            }
        }
        out
    }

    /// The `/accepted` payload; other messages go into `out.local`.
    fn request_inner(
        &mut self,
        t: &ShadowTopic<'_>,
        body: Result<Map<String, Value>, Rejection>,
        now: u64,
        out: &mut Handled,
    ) -> Result<Value, Rejection> {
        if !valid_name(t.thing, MAX_THING_NAME) {
            return Err(Rejection::new(
                400,
                format!(
                    "Invalid thing name: {:?} (1 to {MAX_THING_NAME} of a-z A-Z 0-9 : _ -)",
                    t.thing
                ),
            ));
        }
        if let Some(name) = t.name {
            if !valid_name(name, MAX_SHADOW_NAME) {
                return Err(Rejection::new(
                    400,
                    format!("Invalid shadow name: {name:?} (1 to {MAX_SHADOW_NAME} of a-z A-Z 0-9 : _ -)"),
                ));
            }
        }
        let body = body?;
        let current = document::effective(self.store.load(t).map_err(|e| internal(&e))?, now);
        match t.op {
            Op::Get => {
                let common = document::parse_common(&body)?;
                let live = current
                    .filter(|s| !s.deleted)
                    .ok_or_else(|| document::not_found(t.display_name()))?;
                Ok(live.get_accepted(common.client_token.as_deref(), now))
            }
            Op::Update => {
                let update = document::parse_update(&body)?;
                let updated = document::apply_update(current.as_ref(), &update, now)?;
                self.store
                    .save(t, &updated.shadow)
                    .map_err(|e| internal(&format!("cannot store {}: {e}", t.file_name())))?;
                out.local
                    .push((t.topic(Op::Update, "documents"), updated.documents));
                if let Some(delta) = updated.delta {
                    out.local.push((t.topic(Op::Update, "delta"), delta));
                }
                Ok(updated.accepted)
            }
            Op::Delete => {
                let common = document::parse_common(&body)?;
                let (tomb, accepted) =
                    document::apply_delete(current.as_ref(), &common, t.display_name(), now)?;
                self.store
                    .save(t, &tomb)
                    .map_err(|e| internal(&format!("cannot store {}: {e}", t.file_name())))?;
                Ok(accepted)
            }
        }
    }

    /// The cloud copy of an accepted local request (the accepted payload is `out.local[0]`).
    fn send_up(&self, t: &ShadowTopic<'_>, out: &mut Handled) {
        match t.op {
            Op::Get => {}
            Op::Update => {
                if let Some((_, accepted)) = out.local.first() {
                    let state = accepted.get("state").cloned().unwrap_or(Value::Null);
                    out.cloud
                        .push((t.topic(Op::Update, ""), json!({ "state": state })));
                }
            }
            Op::Delete => out.cloud.push((t.topic(Op::Delete, ""), json!({}))),
        }
    }

    /// The cloud's answer topics for a synced thing.
    fn cloud_answer(&mut self, t: &ShadowTopic<'_>, payload: &[u8], now: u64) -> Handled {
        let mut out = Handled::default();
        let doc = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(doc)) => doc,
            _ => {
                tracing::warn!(
                    "{ENDPOINT}: ignoring {} from the cloud: not a JSON object",
                    t.topic(t.op, t.suffix)
                );
                return out;
            }
        };
        let current = match self.store.load(t) {
            Ok(c) => document::effective(c, now),
            Err(e) => {
                tracing::error!("{ENDPOINT}: {e}");
                return out;
            }
        };
        let live = current.as_ref().filter(|s| !s.deleted);
        let cloud_state = match (t.op, t.suffix) {
            (Op::Update, "documents") => doc.get("current").and_then(|c| c.get("state")).cloned(),
            (Op::Get, "accepted") => doc.get("state").cloned(),
            (Op::Get, "rejected") => {
                // The cloud has no such shadow: give it ours.
                if doc.get("code").and_then(Value::as_u64) == Some(404) {
                    if let Some(live) = live {
                        out.cloud.push((
                            t.topic(Op::Update, ""),
                            json!({ "state": live.document()["state"].clone() }),
                        ));
                    }
                }
                return out;
            }
            (Op::Delete, "accepted") => {
                let Some(live) = live else { return out };
                let tomb = Shadow {
                    version: live.version,
                    timestamp: now,
                    deleted: true,
                    ..Shadow::default()
                };
                if let Err(e) = self.store.save(t, &tomb) {
                    tracing::error!("{ENDPOINT}: cannot store {}: {e}", t.file_name());
                    return out;
                }
                out.local.push((
                    t.topic(Op::Delete, "accepted"),
                    json!({ "version": live.version, "timestamp": now }),
                ));
                return out;
            }
            _ => return out,
        };
        let Some(Value::Object(state)) = cloud_state else {
            tracing::warn!(
                "{ENDPOINT}: ignoring {} from the cloud: no state object",
                t.topic(t.op, t.suffix)
            );
            return out;
        };
        let section = |name: &str| state.get(name).and_then(Value::as_object);
        let patch_for =
            |old: Option<&Map<String, Value>>, new: Option<&Map<String, Value>>| match (old, new) {
                (None, None) => None,
                (Some(_), None) => Some(Value::Null),
                (old, Some(new)) => {
                    let p = replace_patch(old.unwrap_or(&Map::new()), new);
                    (!p.is_empty() || old.is_none()).then_some(Value::Object(p))
                }
            };
        let mut patch = Map::new();
        if let Some(p) = patch_for(live.and_then(|s| s.desired.as_ref()), section("desired")) {
            patch.insert("desired".into(), p);
        }
        if let Some(p) = patch_for(live.and_then(|s| s.reported.as_ref()), section("reported")) {
            patch.insert("reported".into(), p);
        }
        if patch.is_empty() {
            return out; // Already the same: an echo of a local change, or nothing new.
        }
        let request = Map::from_iter([("state".to_string(), Value::Object(patch))]);
        let result = document::parse_update(&request)
            .and_then(|u| document::apply_update(current.as_ref(), &u, now));
        match result {
            Ok(updated) => {
                if let Err(e) = self.store.save(t, &updated.shadow) {
                    tracing::error!("{ENDPOINT}: cannot store {}: {e}", t.file_name());
                    return out;
                }
                out.local
                    .push((t.topic(Op::Update, "documents"), updated.documents));
                if let Some(delta) = updated.delta {
                    out.local.push((t.topic(Op::Update, "delta"), delta));
                }
            }
            Err(r) => tracing::warn!(
                "{ENDPOINT}: the cloud's {} cannot be applied locally: {} {}",
                t.prefix(),
                r.code,
                r.message
            ),
        }
        out
    }
}

/// The merge patch that turns `old` into `new`: `null` for removed keys, objects recursively.
fn replace_patch(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        patch.insert(key.clone(), Value::Null);
    }
    for (key, value) in new {
        match (old.get(key), value) {
            (Some(Value::Object(o)), Value::Object(n)) => {
                let sub = replace_patch(o, n);
                if !sub.is_empty() {
                    patch.insert(key.clone(), Value::Object(sub));
                }
            }
            (Some(o), n) if o == n => {}
            (_, n) => {
                patch.insert(key.clone(), n.clone());
            }
        }
    }
    patch
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Inner {
    core: Mutex<Core>,
    router: Arc<Router>,
    cloud: Mutex<Option<Arc<dyn DeliverySink>>>,
    inbox: mpsc::SyncSender<Message>,
    /// Cloud-bound messages lost because no bridge was connected or its sink refused.
    cloud_dropped: AtomicU64,
}

/// The router's sink for `GGShadowService`: a bounded queue read by the service thread.
struct Inbox(mpsc::SyncSender<Message>);

impl DeliverySink for Inbox {
    fn offer(&self, msg: Message) -> Result<(), OfferError> {
        self.0.try_send(msg).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => OfferError::Full,
            mpsc::TrySendError::Disconnected(_) => OfferError::Closed,
        })
    }
}

/// The running service; cheap to clone.
#[derive(Clone)]
pub struct ShadowHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ShadowHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowHandle").finish_non_exhaustive()
    }
}

impl ShadowHandle {
    /// Opens the store in `dir`, starts the service thread and attaches it to the router as
    /// `GGShadowService`. Requests are handled one at a time, in arrival order, on that thread
    /// (each update costs an fsync, which must not stall the actors' thread).
    pub fn start(dir: &Path, router: Arc<Router>) -> std::io::Result<ShadowHandle> {
        let core = Core::open(dir)?;
        let (tx, rx) = mpsc::sync_channel::<Message>(QUEUE_CAPACITY);
        let handle = ShadowHandle {
            inner: Arc::new(Inner {
                core: Mutex::new(core),
                router: router.clone(),
                cloud: Mutex::new(None),
                inbox: tx.clone(),
                cloud_dropped: AtomicU64::new(0),
            }),
        };
        let worker = handle.clone();
        std::thread::Builder::new()
            .name("evergreen-shadow".into())
            .spawn(move || {
                while let Ok(msg) = rx.recv() {
                    worker.process(&msg.source, &msg.topic, &msg.payload);
                }
            })?;
        router.attach(ENDPOINT, Arc::new(Inbox(tx)));
        Ok(handle)
    }

    /// Handles one message and sends what it produced; answers the request's outcome.
    fn process(&self, source: &str, topic: &str, payload: &[u8]) -> Option<(bool, Value)> {
        // Held while publishing too, so answers leave in the order requests were handled even
        // when a Lambda request and a routed one race. Publishing never blocks.
        let mut core = self
            .inner
            .core
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let handled = core.handle(source, topic, payload, now_secs());
        self.send(handled)
    }

    fn send(&self, handled: Handled) -> Option<(bool, Value)> {
        for (topic, payload) in handled.local {
            let bytes: Arc<[u8]> = Arc::from(payload.to_string().into_bytes());
            if let Err(e) = self.inner.router.publish(ENDPOINT, &topic, bytes) {
                tracing::warn!("{ENDPOINT}: cannot publish on {topic:?}: {e}");
            }
        }
        self.offer_cloud(handled.cloud);
        handled.answer
    }

    fn offer_cloud(&self, messages: Vec<(String, Value)>) {
        if messages.is_empty() {
            return;
        }
        let cloud = self
            .inner
            .cloud
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let source: Arc<str> = Arc::from(ENDPOINT);
        for (topic, payload) in messages {
            let sent = cloud.as_ref().map(|sink| {
                sink.offer(Message {
                    topic: Arc::from(topic.as_str()),
                    payload: Arc::from(payload.to_string().into_bytes()),
                    source: source.clone(),
                    meta: Default::default(),
                    route: 0,
                })
            });
            if !matches!(sent, Some(Ok(()))) {
                let n = self.inner.cloud_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let why = match sent {
                    None => "no cloud bridge is connected".to_string(),
                    Some(Err(e)) => e.to_string(),
                    Some(Ok(())) => String::new(),
                };
                // The first loss and then one line per hundred: a core without a bridge would
                // otherwise log every change of every synced shadow.
                if n == 1 || n.is_multiple_of(100) {
                    tracing::warn!("{ENDPOINT}: shadow sync message for {topic:?} lost ({why}); {n} lost so far");
                }
            }
        }
    }

    /// A request invoked directly (a Python function's `get/update/delete_thing_shadow`):
    /// handled on the caller's thread, its answers published as for a routed request, and its
    /// `/accepted` or `/rejected` payload returned. `None` if `topic` is not a request topic.
    pub fn request(&self, source: &str, topic: &str, payload: &[u8]) -> Option<(bool, Vec<u8>)> {
        if parse_topic(topic).is_none_or(|t| !t.suffix.is_empty()) {
            return None;
        }
        self.process(source, topic, payload)
            .map(|(ok, v)| (ok, v.to_string().into_bytes()))
    }

    /// Follows a deployment: the things whose shadows are synced. Newly synced ones are asked
    /// of the cloud.
    pub fn deploy(&self, plan: &GroupPlan) {
        let mut synced: BTreeSet<String> = plan
            .devices
            .values()
            .filter(|d| d.sync_shadow)
            .map(|d| d.thing_name.clone())
            .collect();
        if plan.core.sync_shadow {
            synced.insert(plan.core.thing_name.clone());
        }
        let new = {
            let mut core = self
                .inner
                .core
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            core.set_synced(synced)
        };
        if !new.is_empty() {
            tracing::info!(
                "{ENDPOINT}: syncing the shadows of {} with the cloud",
                new.join(", ")
            );
        }
        self.ask_cloud(&new);
    }

    fn ask_cloud(&self, things: &[String]) {
        if self
            .inner
            .cloud
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
        {
            return; // Asked again by `connect_cloud`.
        }
        let gets = things
            .iter()
            .map(|thing| (format!("$aws/things/{thing}/shadow/get"), json!({})))
            .collect();
        self.offer_cloud(gets);
    }

    /// The things whose shadows the bridge must subscribe to upstream.
    pub fn synced_things(&self) -> Vec<String> {
        let core = self
            .inner
            .core
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        core.synced().iter().cloned().collect()
    }

    /// Connects the cloud bridge: sync messages go to `sink` from now on. Asks the cloud for
    /// every synced shadow.
    pub fn connect_cloud(&self, sink: Arc<dyn DeliverySink>) {
        *self
            .inner
            .cloud
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(sink);
        self.resync();
    }

    /// Asks the cloud for every synced shadow (the bridge calls this after a reconnection).
    pub fn resync(&self) {
        self.ask_cloud(&self.synced_things());
    }

    /// A message from the cloud (the bridge's upstream subscriptions), queued for the service
    /// thread with `cloud` as source.
    pub fn cloud_message(&self, topic: &str, payload: Arc<[u8]>) -> Result<(), OfferError> {
        Inbox(self.inner.inbox.clone()).offer(Message {
            topic: Arc::from(topic),
            payload,
            source: Arc::from(CLOUD),
            meta: Default::default(),
            route: 0,
        })
    }

    /// Cloud-bound sync messages lost so far.
    // Read only by the tests; the runtime logs each drop instead.
    #[cfg(test)]
    pub(crate) fn cloud_dropped(&self) -> u64 {
        self.inner.cloud_dropped.load(Ordering::Relaxed)
    }
}

/// The core hands components' shadow requests (stdio link and Lambda endpoint) to this service.
impl evergreen_runtime::services::ShadowService for ShadowHandle {
    fn request(&self, source: &str, topic: &str, payload: &[u8]) -> Option<(bool, Vec<u8>)> {
        ShadowHandle::request(self, source, topic, payload)
    }
}

/// Each deployed plan says which things' shadows are synced with the cloud.
impl evergreen_runtime::services::PlanListener for ShadowHandle {
    fn deployed(&self, plan: &GroupPlan) {
        self.deploy(plan);
    }
}

#[cfg(test)]
mod tests;
