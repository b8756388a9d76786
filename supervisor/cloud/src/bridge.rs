//! The cloud bridge: Evergreen's MQTT 3.1.1 client to the upstream broker (`coreThing.iotHost`).
//!
//! Owns the one upstream connection, what it subscribes to, and the drain of the cloud spool
//! (`crate::spool`). `cloud` as a *target*: the router hands messages to the spool's sink
//! (attached for endpoint `"cloud"`); this client publishes spooled messages in order with
//! QoS 1, at most `IN_FLIGHT` unacknowledged at a time, and removes each from the spool on
//! its PUBACK. Greengrass sent the next message only after the previous PUBACK, which caps the
//! rate at one message per round trip (20 msg/s at 50 ms); the bounded window keeps the order
//! and lifts that cap. `cloud` as a *source*: the client
//! subscribes upstream to exactly the subjects of the subscriptions whose source is `cloud`
//! (updated on every deployment through [`BridgeHandle::follow`]) and routes what arrives with
//! `router.publish("cloud", …)`.
//!
//! # Choices
//!
//! * ntex-mqtt 8.2's v3 client on ntex's tokio backend, run by its own ntex `System` on a thread
//!   named `mqtt-bridge` (ntex tasks cannot run on the actix system). The router and the spool
//!   are thread-safe, so nothing here talks to actors.
//! * TLS: with `evergreen.cloudTls = true` (the default) the connection is mutual TLS (rustls)
//!   with `coreThing.caPath` as the only trust root and `certPath`/`keyPath` as the client
//!   identity, as AWS IoT Core requires; on port 443 the ALPN protocol `x-amzn-mqtt-ca` is
//!   offered, as AWS IoT requires there. `cloudTls = false` connects over plain TCP (tests, a
//!   broker inside a trusted network).
//! * Client id = the core's thing name (the group's core, else `coreThing.thingArn`); clean
//!   session; keep-alive
//!   `coreThing.keepAlive`. Subscriptions are QoS 1 upstream; onward delivery is local, QoS 0.
//!   Messages the cloud sends while the bridge is disconnected are not received (clean session),
//!   as with Greengrass's default.
//! * A PUBACK that does not arrive within `coreThing.mqttOperationTimeout` closes the
//!   connection; unacknowledged messages stay in the spool and are sent again, in order, after
//!   the reconnect (QoS 1 allows the duplicates).
//! * Reconnect: exponential backoff from 1 s, doubling, capped by
//!   `mqttMaxConnectionRetryInterval`; reset after a successful connection.
//! * State: the client thread records whether it is connecting, connected or disconnected and
//!   why the last attempt or connection ended ([`BridgeHandle::link`]), for `evergreen status`.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ntex::service::fn_service;
use ntex::time::Seconds;
use ntex::util::{ByteString, Bytes};
use ntex::{ServiceFactory, SharedCfg};
use ntex_mqtt::v3;
use ntex_mqtt::v3::client::{ProtocolMessage, ProtocolMessageAck};
use tokio::sync::watch;

use crate::spool::{spool_sink, Spool};
use evergreen_config::{CoreConfig, StorageType};
use evergreen_group::plan::GroupPlan;
use evergreen_runtime::router::Router;
use evergreen_shadow::ShadowHandle;

/// The endpoint name of the cloud in subscriptions.
pub const CLOUD: &str = "cloud";

/// AWS IoT accepts at most 8 filters in one SUBSCRIBE.
const FILTERS_PER_SUBSCRIBE: usize = 8;

/// Messages sent upstream and not yet acknowledged, at most. Strict order is kept (the broker
/// sees them in spool order; a reconnect resends from the oldest unacknowledged), while a
/// round trip no longer caps the rate at one message per RTT as in Greengrass.
pub(crate) const IN_FLIGHT: usize = 16;

/// A sent message awaiting its PUBACK: sequence number, topic (for messages), the ack.
type InFlight = (
    u64,
    Arc<str>,
    Pin<Box<dyn Future<Output = Result<(), ntex_mqtt::error::SendPacketError>>>>,
);

/// First reconnect delay.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// The core's identity files for mutual TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How to reach the upstream broker.
#[derive(Debug, Clone)]
pub(crate) struct BridgeSettings {
    pub host: String,
    pub port: u16,
    /// `None` = plain TCP.
    pub tls: Option<TlsFiles>,
    pub client_id: String,
    pub keep_alive: u16,
    pub operation_timeout: Duration,
    pub max_retry: Duration,
}

/// The bridge, configured and with its spool open, not yet running.
#[derive(Debug)]
pub struct Cloud {
    settings: BridgeSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    spool: Arc<Spool>,
}

/// Where the upstream connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// The first connection is being made, or the next one after a failure.
    Connecting,
    Connected,
    /// Between attempts: the last one failed or the connection ended.
    Disconnected,
}

/// The upstream connection as the bridge knows it, for status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReport {
    pub state: LinkState,
    /// `host:port` of the broker.
    pub endpoint: String,
    /// Why the last attempt failed or the last connection ended; cleared on connecting.
    pub last_error: Option<String>,
    /// What waits in the spool.
    pub spooled: crate::SpoolDepth,
    /// Messages lost on their way to the cloud, by where.
    pub drops: crate::SpoolDrops,
}

/// What the client thread writes and the status reads: a few words, behind a lock held for
/// no longer than a copy.
#[derive(Debug)]
struct Link {
    state: LinkState,
    last_error: Option<String>,
}

type SharedLink = Arc<Mutex<Link>>;

fn set_link(link: &SharedLink, state: LinkState, error: Option<String>) {
    let mut l = link.lock().unwrap_or_else(PoisonError::into_inner);
    l.state = state;
    // A new attempt keeps the reason of the previous failure until it succeeds.
    if error.is_some() || state == LinkState::Connected {
        l.last_error = error;
    }
}

/// Follows deployments: hands the bridge the subjects it must subscribe to.
#[derive(Debug, Clone)]
pub struct BridgeHandle {
    subjects: watch::Sender<BTreeSet<String>>,
    spool: Arc<Spool>,
    link: SharedLink,
    endpoint: String,
    internal: Arc<Internal>,
}

/// What the client thread shares with the handle: the link's state and the runtime's own
/// traffic.
struct Shared {
    link: SharedLink,
    internal: Arc<Internal>,
}

/// What the bridge tells a service that [`BridgeHandle::serve_topics`] registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A connection to the broker is up, with the service's topics subscribed (every time:
    /// what the broker sent meanwhile without retaining it was missed).
    Connected,
    /// A message on one of its topics.
    Message { topic: String, payload: Vec<u8> },
}

type ServiceTx = tokio::sync::mpsc::UnboundedSender<Inbound>;

/// A service's topics and where their messages go.
type Served = (BTreeSet<String>, ServiceTx);

/// The runtime's own traffic on the upstream connection (the fleet agent's): topics whose
/// messages go to a service instead of the router, and retained messages to publish.
#[derive(Debug, Default)]
struct Internal {
    inbound: Mutex<Option<Served>>,
    /// Topic -> newest payload (and whether it is retained) not yet acknowledged by the broker.
    outbox: Mutex<std::collections::BTreeMap<String, (Vec<u8>, bool)>>,
    wake: tokio::sync::Notify,
    /// The subjects of the deployed plan, which the internal topics are added to.
    plan_subjects: Mutex<BTreeSet<String>>,
}

impl Internal {
    /// The topics served to a service, if `topic` is one of them: where to send it.
    fn route(&self, topic: &str) -> Option<ServiceTx> {
        let inbound = self.inbound.lock().unwrap_or_else(PoisonError::into_inner);
        inbound
            .as_ref()
            .filter(|(topics, _)| topics.contains(topic))
            .map(|(_, tx)| tx.clone())
    }

    /// The topics a service registered, if one did.
    fn served_topics(&self) -> Option<BTreeSet<String>> {
        self.inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(topics, _)| topics.clone())
    }

    /// Tells the service a connection is up.
    fn connected(&self) {
        if let Some((_, tx)) = &*self.inbound.lock().unwrap_or_else(PoisonError::into_inner) {
            let _ = tx.send(Inbound::Connected);
        }
    }

    fn wanted(&self) -> BTreeSet<String> {
        let mut all = self
            .plan_subjects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((topics, _)) = &*self.inbound.lock().unwrap_or_else(PoisonError::into_inner) {
            all.extend(topics.iter().cloned());
        }
        all
    }
}

impl BridgeHandle {
    /// Subscribes upstream to the `cloud`-sourced subjects of `plan` (and unsubscribes from the
    /// ones it no longer has).
    pub fn follow(&self, plan: &GroupPlan) {
        *self
            .internal
            .plan_subjects
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = cloud_subjects(plan);
        self.resubscribe();
    }

    /// Subscribes to `topics` (exact topic names, QoS 1) for the runtime itself: what arrives on
    /// them is sent to the returned channel, never routed, and so is each new connection.
    /// Replaces an earlier call's topics.
    pub fn serve_topics(
        &self,
        topics: impl IntoIterator<Item = String>,
    ) -> tokio::sync::mpsc::UnboundedReceiver<Inbound> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *self
            .internal
            .inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((topics.into_iter().collect(), tx));
        self.resubscribe();
        rx
    }

    /// Publishes `payload` on `topic` retained with QoS 1, for the runtime itself (not spooled:
    /// only the newest payload of a topic is kept until the broker acknowledges it, across
    /// reconnects but not across a restart).
    pub fn publish_retained(&self, topic: &str, payload: Vec<u8>) {
        self.publish_own(topic, payload, true);
    }

    /// Publishes `payload` on `topic` with QoS 1, not retained; otherwise as
    /// [`BridgeHandle::publish_retained`] (the newest per topic).
    pub fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.publish_own(topic, payload, false);
    }

    fn publish_own(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.internal
            .outbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.to_string(), (payload, retain));
        self.internal.wake.notify_one();
    }

    fn resubscribe(&self) {
        let wanted = self.internal.wanted();
        self.subjects.send_if_modified(|current| {
            if *current == wanted {
                return false;
            }
            *current = wanted;
            true
        });
    }

    /// The spool the bridge drains.
    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    /// The upstream connection now.
    pub fn link(&self) -> LinkReport {
        let (state, last_error) = {
            let l = self.link.lock().unwrap_or_else(PoisonError::into_inner);
            (l.state, l.last_error.clone())
        };
        LinkReport {
            state,
            endpoint: self.endpoint.clone(),
            last_error,
            spooled: self.spool.depth(),
            drops: self.spool.drops(),
        }
    }
}

/// The subjects of the subscriptions whose source is `cloud`, plus the cloud
/// shadow service's answers for every thing whose shadow is synced
/// (`SyncShadow`: the core and devices), which go to the local shadow service.
pub(crate) fn cloud_subjects(plan: &GroupPlan) -> BTreeSet<String> {
    let mut subjects: BTreeSet<String> = plan
        .subscriptions
        .iter()
        .filter(|s| s.source == CLOUD)
        .map(|s| s.subject.clone())
        .collect();
    for thing in synced_things(plan) {
        for shadow in ["shadow", "shadow/name/+"] {
            for answer in SHADOW_ANSWERS {
                subjects.insert(format!("$aws/things/{thing}/{shadow}/{answer}"));
            }
        }
    }
    subjects
}

/// The cloud shadow answers the local shadow service needs to stay in sync.
const SHADOW_ANSWERS: [&str; 4] = [
    "update/documents",
    "get/accepted",
    "get/rejected",
    "delete/accepted",
];

/// Things whose shadows are synced with the cloud, as the shadow service
/// decides them (the core when its `SyncShadow` is set, and such devices).
fn synced_things(plan: &GroupPlan) -> BTreeSet<String> {
    let mut things: BTreeSet<String> = plan
        .devices
        .values()
        .filter(|d| d.sync_shadow)
        .map(|d| d.thing_name.clone())
        .collect();
    if plan.core.sync_shadow {
        things.insert(plan.core.thing_name.clone());
    }
    things
}

/// Whether a message from the cloud is a shadow answer for the local
/// shadow service rather than for the router.
fn is_shadow_answer(topic: &str) -> bool {
    topic.starts_with("$aws/things/")
        && topic.contains("/shadow/")
        && SHADOW_ANSWERS
            .iter()
            .any(|a| topic.ends_with(&format!("/{a}")))
}

/// Why the bridge cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("coreThing.{key} is required for a TLS connection to coreThing.iotHost (or set evergreen.cloudTls to false)")]
    MissingTlsFile { key: &'static str },
    #[error("cannot read {what} {}: {reason}", path.display())]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error("cannot start the cloud bridge thread: {0}")]
    Thread(std::io::Error),
}

impl Cloud {
    /// Reads the bridge's settings and opens its spool. `None` without `coreThing.iotHost`.
    pub fn prepare(cfg: &CoreConfig, client_id: &str) -> Result<Option<Cloud>, BridgeError> {
        let Some(host) = cfg.core_thing.iot_host.clone() else {
            return Ok(None);
        };
        let tls = if cfg.evergreen.cloud_tls {
            let need = |p: Option<PathBuf>, key| p.ok_or(BridgeError::MissingTlsFile { key });
            Some(TlsFiles {
                ca: need(cfg.ca_path(), "caPath")?,
                cert: need(cfg.cert_path(), "certPath")?,
                key: need(cfg.key_path(), "keyPath")?,
            })
        } else {
            None
        };
        let settings = BridgeSettings {
            host,
            port: cfg.core_thing.iot_mqtt_port,
            tls,
            client_id: client_id.to_string(),
            keep_alive: u16::try_from(cfg.core_thing.keep_alive).unwrap_or(u16::MAX),
            operation_timeout: Duration::from_secs(cfg.core_thing.mqtt_operation_timeout),
            max_retry: Duration::from_secs(cfg.mqtt_max_connection_retry_interval),
        };
        let tls = settings
            .tls
            .as_ref()
            .map(|files| tls_config(files, settings.port))
            .transpose()?
            .map(Arc::new);
        let spooler = &cfg.evergreen.spooler;
        let spool = match spooler.storage_type {
            StorageType::Memory => Spool::memory(spooler.max_size_bytes),
            StorageType::FileSystem => Spool::open(
                &cfg.write_dir().join("spool/cloud.redb"),
                spooler.max_size_bytes,
            )?,
        };
        Ok(Some(Cloud {
            settings,
            tls,
            spool: Arc::new(spool),
        }))
    }

    /// Attaches the spool as the router's `cloud` target and starts the client thread.
    ///
    /// With a local shadow service, its sync messages go up through the same
    /// spool, and the cloud's shadow answers come back to it.
    pub fn start(
        self,
        router: Arc<Router>,
        queue: usize,
        shadow: Option<ShadowHandle>,
    ) -> Result<BridgeHandle, BridgeError> {
        let sink: Arc<dyn evergreen_runtime::router::DeliverySink> =
            Arc::new(spool_sink(self.spool.clone(), queue).map_err(BridgeError::Thread)?);
        router.attach(CLOUD, sink.clone());
        if let Some(shadow) = &shadow {
            shadow.connect_cloud(sink);
        }
        let (tx, rx) = watch::channel(BTreeSet::new());
        let spool = self.spool.clone();
        let Cloud { settings, tls, .. } = self;
        let thread_spool = spool.clone();
        let endpoint = format!("{}:{}", settings.host, settings.port);
        let link: SharedLink = Arc::new(Mutex::new(Link {
            state: LinkState::Connecting,
            last_error: None,
        }));
        let thread_link = link.clone();
        let internal = Arc::new(Internal::default());
        let thread_internal = internal.clone();
        std::thread::Builder::new()
            .name("mqtt-bridge".into())
            .spawn(move || {
                let system = ntex::rt::System::build()
                    .name("mqtt-bridge")
                    .disable_signals()
                    .build(ntex::rt::DefaultRuntime);
                system.block_on(run(
                    settings,
                    tls,
                    router,
                    thread_spool,
                    rx,
                    shadow,
                    Shared {
                        link: thread_link,
                        internal: thread_internal,
                    },
                ));
            })
            .map_err(BridgeError::Thread)?;
        Ok(BridgeHandle {
            subjects: tx,
            spool,
            link,
            endpoint,
            internal,
        })
    }
}

/// The bridge's TLS client settings: `caPath` as the only roots, the core's certificate and key
/// for client authentication, and AWS IoT's ALPN on port 443. Also what `evergreen check` uses
/// for its handshake with the upstream endpoint, so it tests what the bridge will do.
pub fn tls_config(files: &TlsFiles, port: u16) -> Result<rustls::ClientConfig, BridgeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let read_err = |what, path: &PathBuf, e: &dyn std::fmt::Display| BridgeError::TlsFile {
        what,
        path: path.clone(),
        reason: e.to_string(),
    };
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&files.ca)
        .map_err(|e| read_err("coreThing.caPath", &files.ca, &e))?;
    for ca in cas {
        let ca = ca.map_err(|e| read_err("coreThing.caPath", &files.ca, &e))?;
        roots
            .add(ca)
            .map_err(|e| read_err("coreThing.caPath", &files.ca, &e))?;
    }
    if roots.is_empty() {
        return Err(read_err(
            "coreThing.caPath",
            &files.ca,
            &"no certificate in the file",
        ));
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| read_err("coreThing.certPath", &files.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err("coreThing.certPath", &files.cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| read_err("coreThing.keyPath", &files.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BridgeError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| BridgeError::Tls(e.to_string()))?;
    if port == 443 {
        // AWS IoT Core serves MQTT on 443 only to clients that ask for it by ALPN.
        config.alpn_protocols = vec![b"x-amzn-mqtt-ca".to_vec()];
    }
    Ok(config)
}

/// Why one connection to the broker failed or ended; logged, and the bridge
/// tries again after its backoff. ntex's errors are kept as they print.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("{0}")]
    Connect(String),
    #[error("no CONNACK in time")]
    NoConnack,
    #[error("SUBSCRIBE: {0}")]
    Subscribe(String),
    #[error("UNSUBSCRIBE: {0}")]
    Unsubscribe(String),
}

async fn connect(
    s: &BridgeSettings,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<v3::client::Client, LinkError> {
    dial(
        &s.host,
        s.port,
        &s.client_id,
        s.keep_alive,
        tls,
        s.operation_timeout.max(Duration::from_secs(5)),
    )
    .await
}

/// One MQTT 3.1.1 connection with a clean session to `host:port`, TLS when `tls` is given; the
/// CONNACK must come within `timeout`.
pub(crate) async fn dial(
    host: &str,
    port: u16,
    client_id: &str,
    keep_alive: u16,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<v3::client::Client, LinkError> {
    let request = v3::client::Connect::new(format!("{host}:{port}"))
        .client_id(client_id)
        .clean_session()
        .keep_alive(Seconds(keep_alive));
    let attempt = async {
        match tls {
            Some(config) => {
                let connector = v3::client::MqttConnector::new()
                    .connector(ntex::connect::rustls::TlsConnector::from(config));
                let service = connector
                    .pipeline(SharedCfg::default())
                    .await
                    .map_err(|e| LinkError::Connect(format!("{e:?}")))?;
                service
                    .call(request)
                    .await
                    .map_err(|e| LinkError::Connect(e.to_string()))
            }
            None => {
                let service = v3::client::MqttConnector::new()
                    .pipeline(SharedCfg::default())
                    .await
                    .map_err(|e| LinkError::Connect(format!("{e:?}")))?;
                service
                    .call(request)
                    .await
                    .map_err(|e| LinkError::Connect(e.to_string()))
            }
        }
    };
    ntex::time::timeout(timeout, attempt)
        .await
        .map_err(|_| LinkError::NoConnack)?
}

async fn run(
    settings: BridgeSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    router: Arc<Router>,
    spool: Arc<Spool>,
    mut subjects: watch::Receiver<BTreeSet<String>>,
    shadow: Option<ShadowHandle>,
    shared: Shared,
) {
    let Shared { link, internal } = shared;
    let max = settings.max_retry.max(Duration::from_secs(1));
    let mut backoff = INITIAL_BACKOFF.min(max);
    let target = format!("{}:{}", settings.host, settings.port);
    loop {
        set_link(&link, LinkState::Connecting, None);
        match connect(&settings, tls.as_ref()).await {
            Ok(client) => {
                set_link(&link, LinkState::Connected, None);
                backoff = INITIAL_BACKOFF.min(max);
                tracing::info!(
                    "cloud bridge connected to {target} as {:?}; {} messages spooled",
                    settings.client_id,
                    spool.len()
                );
                if let Some(shadow) = &shadow {
                    // What changed on either side while apart is reconciled.
                    shadow.resync();
                }
                let why = session(
                    client,
                    &settings,
                    &router,
                    &spool,
                    &mut subjects,
                    shadow.as_ref(),
                    &internal,
                )
                .await;
                tracing::warn!("cloud bridge: connection to {target} ended: {why}");
                set_link(
                    &link,
                    LinkState::Disconnected,
                    Some(format!("the connection ended: {why}")),
                );
                if subjects.has_changed().is_err() {
                    // The runtime dropped the handle: it is shutting down.
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(
                    "cloud bridge: cannot connect to {target}: {e}; next try in {} s ({} messages spooled)",
                    backoff.as_secs(),
                    spool.len()
                );
                set_link(
                    &link,
                    LinkState::Disconnected,
                    Some(format!("cannot connect: {e}")),
                );
            }
        }
        ntex::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max);
    }
}

/// Subscribes to every filter of `filters`, in SUBSCRIBE packets of at most
/// [`FILTERS_PER_SUBSCRIBE`]; logs the refused ones.
async fn subscribe(sink: &v3::MqttSink, filters: &[&String]) -> Result<(), LinkError> {
    for chunk in filters.chunks(FILTERS_PER_SUBSCRIBE) {
        let mut builder = sink.subscribe();
        for f in chunk {
            builder = builder.topic_filter(ByteString::from(f.as_str()), v3::QoS::AtLeastOnce);
        }
        let codes = builder
            .send()
            .await
            .map_err(|e| LinkError::Subscribe(format!("{e:?}")))?;
        for (f, code) in chunk.iter().zip(codes) {
            if matches!(code, v3::codec::SubscribeReturnCode::Failure) {
                tracing::error!("cloud bridge: the broker refused the subscription to {f:?}");
            } else {
                tracing::info!("cloud bridge: subscribed to {f:?}");
            }
        }
    }
    Ok(())
}

async fn unsubscribe(sink: &v3::MqttSink, filters: &[&String]) -> Result<(), LinkError> {
    if filters.is_empty() {
        return Ok(());
    }
    let mut builder = sink.unsubscribe();
    for f in filters {
        builder = builder.topic_filter(ByteString::from(f.as_str()));
    }
    builder
        .send()
        .await
        .map_err(|e| LinkError::Unsubscribe(format!("{e:?}")))
}

/// Runs one connection until it ends; returns why it ended.
async fn session(
    client: v3::client::Client,
    settings: &BridgeSettings,
    router: &Arc<Router>,
    spool: &Arc<Spool>,
    subjects: &mut watch::Receiver<BTreeSet<String>>,
    shadow: Option<&ShadowHandle>,
    internal: &Arc<Internal>,
) -> String {
    let sink = client.sink();
    let (done_tx, mut done) = tokio::sync::oneshot::channel::<String>();
    let inbound = router.clone();
    let shadow = shadow.cloned();
    let served = internal.clone();
    let _dispatcher = ntex::rt::spawn(async move {
        let handler = fn_service(move |msg: ProtocolMessage| {
            let router = inbound.clone();
            let shadow = shadow.clone();
            let served = served.clone();
            async move {
                if let ProtocolMessage::Publish(p) = &msg {
                    let topic = p.packet().topic.to_string();
                    match p.read_all().await {
                        Ok(payload) => {
                            if let Some(service) = served.route(&topic) {
                                let message = Inbound::Message {
                                    topic,
                                    payload: payload.to_vec(),
                                };
                                if service.send(message).is_err() {
                                    tracing::warn!(
                                        "cloud bridge: the service of a runtime topic has stopped"
                                    );
                                }
                                return Ok(msg.ack());
                            }
                            match &shadow {
                                Some(shadow) if is_shadow_answer(&topic) => {
                                    if let Err(e) =
                                        shadow.cloud_message(&topic, Arc::from(payload.as_ref()))
                                    {
                                        tracing::warn!("cloud bridge: shadow answer on {topic:?} not taken: {e}");
                                    }
                                }
                                _ => {
                                    if let Err(e) =
                                        router.publish(CLOUD, &topic, Arc::from(payload.as_ref()))
                                    {
                                        tracing::warn!(
                                            "cloud bridge: message on {topic:?} not routed: {e}"
                                        );
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(
                                "cloud bridge: cannot read a message on {topic:?}: {e:?}"
                            )
                        }
                    }
                }
                Ok::<ProtocolMessageAck, ()>(msg.ack())
            }
        });
        let why = match client.start(handler).await {
            Ok(()) => "closed".to_string(),
            Err(e) => format!("{e:?}"),
        };
        let _ = done_tx.send(why);
    });

    let mut subscribed: BTreeSet<String> = BTreeSet::new();
    // The service topics whose service was told of this connection.
    let mut announced: Option<BTreeSet<String>> = None;
    // Sent and not yet acknowledged, oldest first; a new connection starts again from the
    // oldest message still in the spool.
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    let mut last_sent: Option<u64> = None;
    loop {
        // Keep the upstream subscriptions equal to the deployed ones.
        let wanted = subjects.borrow_and_update().clone();
        if wanted != subscribed {
            let add: Vec<&String> = wanted.difference(&subscribed).collect();
            let remove: Vec<&String> = subscribed.difference(&wanted).collect();
            if let Err(e) = unsubscribe(&sink, &remove).await {
                sink.force_close();
                return e.to_string();
            }
            if let Err(e) = subscribe(&sink, &add).await {
                sink.force_close();
                return e.to_string();
            }
            subscribed = wanted;
        }
        // A service hears of the connection once its topics are subscribed on it.
        let served = internal.served_topics();
        if served.is_some()
            && served != announced
            && served.as_ref().is_some_and(|t| t.is_subset(&subscribed))
        {
            internal.connected();
            announced = served;
        }

        // Up to IN_FLIGHT messages sent, in spool order, before the oldest one's PUBACK.
        // A PUBLISH is written when `send_at_least_once` is called while the sink is ready,
        // so the order on the wire is the order of the calls.
        while inflight.len() < IN_FLIGHT && sink.is_ready() {
            let Some(m) = spool.next_after(last_sent, 1).pop() else {
                break;
            };
            last_sent = Some(m.seq);
            let send = sink
                .publish(ByteString::from(&*m.topic))
                .send_at_least_once(Bytes::copy_from_slice(&m.payload));
            inflight.push_back((m.seq, m.topic, Box::pin(send)));
        }
        // The runtime's own retained messages (newest per topic), between the spool's.
        if let Err(why) = send_outbox(&sink, internal, settings.operation_timeout).await {
            sink.force_close();
            return why;
        }
        if let Some((seq, topic, send)) = inflight.front_mut() {
            match ntex::time::timeout(settings.operation_timeout, send).await {
                Ok(Ok(())) => {
                    if let Err(e) = spool.remove(*seq) {
                        tracing::error!("cloud bridge: delivered message not removed from the spool (it will be sent again): {e}");
                    }
                    inflight.pop_front();
                    continue;
                }
                Ok(Err(e)) => {
                    sink.force_close();
                    return format!("publish to {topic:?} failed: {e:?}");
                }
                Err(_) => {
                    sink.force_close();
                    return format!(
                        "no PUBACK for a message to {topic:?} within {} s",
                        settings.operation_timeout.as_secs()
                    );
                }
            }
        }

        tokio::select! {
            why = &mut done => return why.unwrap_or_else(|_| "dispatcher stopped".into()),
            changed = subjects.changed() => {
                if changed.is_err() {
                    sink.close();
                    return "the runtime is stopping".into();
                }
            }
            () = spool.ready() => {}
            () = internal.wake.notified() => {}
            // Nothing in flight and the sink refused more (write buffer full): wait for it.
            open = sink.ready(), if !sink.is_ready() => {
                if !open {
                    return "the connection closed".into();
                }
            }
        }
    }
}

/// Publishes each pending message of the runtime's own and waits for its PUBACK; one that was replaced
/// meanwhile stays pending with its newer payload. Returns why the connection must close.
async fn send_outbox(
    sink: &v3::MqttSink,
    internal: &Internal,
    timeout: Duration,
) -> Result<(), String> {
    loop {
        let next = internal
            .outbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .next()
            .map(|(t, p)| (t.clone(), p.clone()));
        let Some((topic, (payload, retain))) = next else {
            return Ok(());
        };
        let mut builder = sink.publish(ByteString::from(topic.as_str()));
        if retain {
            builder = builder.retain();
        }
        let send = builder.send_at_least_once(Bytes::from(payload.clone()));
        match ntex::time::timeout(timeout, send).await {
            Ok(Ok(())) => {
                let mut outbox = internal
                    .outbox
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if outbox.get(&topic).is_some_and(|(p, _)| *p == payload) {
                    outbox.remove(&topic);
                }
            }
            Ok(Err(e)) => return Err(format!("publish to {topic:?} failed: {e:?}")),
            Err(_) => {
                return Err(format!(
                    "no PUBACK for a message to {topic:?} within {} s",
                    timeout.as_secs()
                ))
            }
        }
    }
}

/// Each deployed plan says which subscriptions reach the cloud and come from it.
impl evergreen_runtime::services::PlanListener for BridgeHandle {
    fn deployed(&self, plan: &GroupPlan) {
        self.follow(plan);
    }
}
