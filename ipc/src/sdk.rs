//! The child-side SDK: what makes a connector or function a short async program.
//!
//! ```no_run
//! use evergreen_ipc::sdk::{Component, Event};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), evergreen_ipc::sdk::SdkError> {
//!     let mut component = Component::connect().await?;
//!     let handle = component.handle();
//!     component.ready().await?;
//!     while let Some(event) = component.next_event().await {
//!         match event {
//!             Event::Message(m) => handle.publish(format!("echo/{}", m.topic), m.payload).await?,
//!             Event::Shutdown { .. } => break,
//!             Event::Refused { topic, reason } => handle.warn(format!("{topic}: {reason}")),
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Stdout belongs to the protocol: a component must never print to it
//! (anything that is not a frame gets the child killed and restarted).
//! Stderr is free text that lands in the component's log.
//!
//! Two background tasks own the pipes: a reader that turns frames into
//! [`Event`]s and secret answers, and a writer that drains a bounded queue
//! and flushes once the queue is empty, so bursts of publishes share a
//! write. The queue bound gives backpressure: `publish` waits when the
//! supervisor is not reading.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use crate::codec::{FrameError, FrameReader, DEFAULT_MAX_FRAME};
use crate::link::{child_handshake, ChildLink, HandshakeError};
use crate::message::{
    AwsCredentials, ComponentConfig, Delivery, FromChild, LogLevel, SecretValue, ToChild,
};
use crate::topic::{validate_topic, TopicError};

/// Frames that may wait for the writer before `publish` waits too.
const OUTBOX: usize = 1024;
/// Deliveries that may wait for the component before the reader stops
/// reading (and the supervisor's per-target queue starts to fill).
const INBOX: usize = 1024;

/// What went wrong in the SDK.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    #[error("handshake with the supervisor failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("invalid topic {topic:?}: {source}")]
    Topic { topic: String, source: TopicError },
    #[error("the link to the supervisor is closed")]
    Closed,
    #[error("cannot set up stdio: {0}")]
    Stdio(#[from] std::io::Error),
    #[error("secret request refused: {0}")]
    Secret(String),
    #[error("no AWS credentials: {0}")]
    Credentials(String),
}

/// Something for the component to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A routed message.
    Message(Delivery),
    /// Stop within `deadline`, after which the supervisor sends SIGTERM.
    Shutdown { deadline: Duration },
    /// The supervisor refused one of our publishes.
    Refused { topic: String, reason: String },
}

/// An answer the supervisor sends to one of our requests.
#[derive(Debug)]
enum Answer {
    Secret(Result<SecretValue, String>),
    Credentials(Result<AwsCredentials, String>),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>;

/// A cheap, cloneable handle for publishing and logging from any task.
#[derive(Debug, Clone)]
pub struct Handle {
    out: mpsc::Sender<FromChild>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    level: LogLevel,
    max_frame: usize,
}

impl Handle {
    /// Publishes `payload` on `topic`. The topic must not contain wildcards.
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Result<(), SdkError> {
        let topic = topic.into();
        if let Err(source) = validate_topic(&topic) {
            return Err(SdkError::Topic { topic, source });
        }
        let payload = payload.into();
        if payload.len() + topic.len() > self.max_frame {
            return Err(SdkError::Frame(FrameError::TooLarge {
                len: payload.len() + topic.len(),
                max: self.max_frame,
            }));
        }
        self.out
            .send(FromChild::Publish { topic, payload })
            .await
            .map_err(|_| SdkError::Closed)
    }

    /// [`Handle::publish`] for a connector's status and answer messages: a
    /// refused publish (a bad topic, an oversized payload) is logged at error
    /// level and dropped, so one bad message never stops the connector; only
    /// a closed link is returned, since nothing more can be sent.
    pub async fn publish_or_log(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Result<(), SdkError> {
        let topic = topic.into();
        match self.publish(topic.clone(), payload).await {
            Err(SdkError::Closed) => Err(SdkError::Closed),
            Err(e) => {
                self.error(format!("not published on {topic}: {e}"));
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Sends a structured log line if `level` is at or above the configured
    /// level. Never waits: when the outbox is full the line goes to stderr,
    /// which also ends up in the component's log.
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        if level < self.level {
            return;
        }
        let message = message.into();
        if let Err(e) = self.out.try_send(FromChild::Log { level, message }) {
            if let FromChild::Log { message, .. } = e.into_inner() {
                eprintln!("{level}: {message}");
            }
        }
    }

    pub fn debug(&self, message: impl Into<String>) {
        self.log(LogLevel::Debug, message)
    }
    pub fn info(&self, message: impl Into<String>) {
        self.log(LogLevel::Info, message)
    }
    pub fn warn(&self, message: impl Into<String>) {
        self.log(LogLevel::Warn, message)
    }
    pub fn error(&self, message: impl Into<String>) {
        self.log(LogLevel::Error, message)
    }

    /// Asks for a secret this component was granted.
    pub async fn get_secret(
        &self,
        secret_id: impl Into<String>,
        version_stage: Option<String>,
    ) -> Result<SecretValue, SdkError> {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(request_id, tx);
        self.out
            .send(FromChild::GetSecret {
                request_id,
                secret_id: secret_id.into(),
                version_stage,
            })
            .await
            .map_err(|_| SdkError::Closed)?;
        match rx.await {
            Ok(Answer::Secret(Ok(value))) => Ok(value),
            Ok(Answer::Secret(Err(message))) => Err(SdkError::Secret(message)),
            Ok(Answer::Credentials(_)) => Err(SdkError::Closed),
            Err(_) => Err(SdkError::Closed),
        }
    }

    /// Asks the supervisor for AWS credentials (only connectors whose
    /// manifest sets `aws` get them). They are temporary: ask again once
    /// `expiration_ms` is near; the supervisor refreshes them before then.
    pub async fn aws_credentials(&self) -> Result<AwsCredentials, SdkError> {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(request_id, tx);
        self.out
            .send(FromChild::GetCredentials { request_id })
            .await
            .map_err(|_| SdkError::Closed)?;
        match rx.await {
            Ok(Answer::Credentials(Ok(value))) => Ok(value),
            Ok(Answer::Credentials(Err(message))) => Err(SdkError::Credentials(message)),
            Ok(Answer::Secret(_)) => Err(SdkError::Closed),
            Err(_) => Err(SdkError::Closed),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent
    // (single inserts and removes), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connected component: its configuration and its stream of events.
#[derive(Debug)]
pub struct Component {
    config: ComponentConfig,
    handle: Handle,
    events: mpsc::Receiver<Event>,
    ready_sent: bool,
    /// The last event returned was a delivery not yet acknowledged.
    unacknowledged: bool,
}

impl Component {
    /// Connects over this process's stdin and stdout.
    pub async fn connect() -> Result<Component, SdkError> {
        Self::connect_with(
            crate::pipe::stdin()?,
            crate::pipe::stdout()?,
            DEFAULT_MAX_FRAME,
        )
        .await
    }

    /// Connects over any pair of streams (tests use in-memory pipes).
    pub async fn connect_with<R, W>(
        reader: R,
        writer: W,
        max_frame: usize,
    ) -> Result<Component, SdkError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut reader = FrameReader::new(reader, max_frame);
        let mut link = ChildLink::new(writer, max_frame);
        let config = child_handshake(&mut reader, &mut link).await?;
        let (out_tx, out_rx) = mpsc::channel(OUTBOX);
        let (ev_tx, ev_rx) = mpsc::channel(INBOX);
        let pending: Pending = Arc::default();
        tokio::spawn(write_loop(link, out_rx));
        tokio::spawn(read_loop(reader, ev_tx, pending.clone()));
        Ok(Component {
            handle: Handle {
                out: out_tx,
                pending,
                next_id: Arc::new(AtomicU64::new(1)),
                level: config.log_level,
                max_frame,
            },
            config,
            events: ev_rx,
            ready_sent: false,
            unacknowledged: false,
        })
    }

    /// The configuration the supervisor sent.
    pub fn config(&self) -> &ComponentConfig {
        &self.config
    }

    /// A parameter's value (connector `Parameters` or function variables).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.config.parameters.get(name).map(String::as_str)
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Tells the supervisor the component is ready for deliveries. Call it
    /// once set-up (opening ports, reading secrets) is done; the supervisor
    /// gives up on a component that is not ready within its readiness timeout.
    pub async fn ready(&mut self) -> Result<(), SdkError> {
        if !self.ready_sent {
            self.handle
                .out
                .send(FromChild::Ready)
                .await
                .map_err(|_| SdkError::Closed)?;
            self.ready_sent = true;
        }
        Ok(())
    }

    /// The start every connector makes: connects, reads its settings from
    /// the configuration with `settings` (which also says what to log about
    /// them), says `Ready`, then logs those notes to the component's log.
    pub async fn start<S>(
        settings: impl FnOnce(&ComponentConfig) -> (S, Vec<(LogLevel, String)>),
    ) -> Result<(Component, Handle, S), SdkError> {
        let mut component = Component::connect().await?;
        let handle = component.handle();
        let (settings, notes) = settings(component.config());
        component.ready().await?;
        for (level, note) in notes {
            handle.log(level, note);
        }
        Ok((component, handle, settings))
    }

    /// The next event, or `None` once the supervisor has closed the link.
    ///
    /// Asking for the next event acknowledges the previous delivery as
    /// handled (`Done`): a function's `Timeout` runs from the moment it
    /// receives a delivery until it asks for the next event.
    pub async fn next_event(&mut self) -> Option<Event> {
        if self.unacknowledged {
            self.unacknowledged = false;
            if self.handle.out.send(FromChild::Done).await.is_err() {
                return None;
            }
        }
        let event = self.events.recv().await;
        self.unacknowledged = matches!(event, Some(Event::Message(_)));
        event
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut link: ChildLink<W>,
    mut rx: mpsc::Receiver<FromChild>,
) {
    while let Some(msg) = rx.recv().await {
        if let Err(e) = write_one(&mut link, msg).await {
            eprintln!("evergreen-ipc: cannot write to the supervisor: {e}");
            return;
        }
        // Batch: keep writing while more is queued, flush once it is empty.
        while let Ok(msg) = rx.try_recv() {
            if let Err(e) = write_one(&mut link, msg).await {
                eprintln!("evergreen-ipc: cannot write to the supervisor: {e}");
                return;
            }
        }
        if let Err(e) = link.flush().await {
            eprintln!("evergreen-ipc: cannot write to the supervisor: {e}");
            return;
        }
    }
}

async fn write_one<W: AsyncWrite + Unpin>(
    link: &mut ChildLink<W>,
    msg: FromChild,
) -> Result<(), FrameError> {
    match msg {
        FromChild::Publish { topic, payload } => link.publish(topic, payload).await,
        FromChild::Log { level, message } => link.log(level, message).await,
        FromChild::Ready => link.ready().await,
        FromChild::Done => link.done().await,
        FromChild::Hello { .. } => link.hello().await,
        FromChild::GetSecret {
            request_id,
            secret_id,
            version_stage,
        } => link.get_secret(request_id, secret_id, version_stage).await,
        FromChild::Shadow {
            request_id,
            thing_name,
            op,
            payload,
        } => link.shadow(request_id, thing_name, op, payload).await,
        FromChild::GetCredentials { request_id } => link.get_credentials(request_id).await,
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    events: mpsc::Sender<Event>,
    pending: Pending,
) {
    loop {
        let event = match reader.read_frame::<ToChild>().await {
            Ok(None) => break,
            Err(e) => {
                eprintln!("evergreen-ipc: bad frame from the supervisor: {e}");
                break;
            }
            Ok(Some(ToChild::Deliver(d))) => Event::Message(d),
            Ok(Some(ToChild::Shutdown { deadline_ms })) => Event::Shutdown {
                deadline: Duration::from_millis(deadline_ms),
            },
            Ok(Some(ToChild::Refused { topic, reason })) => Event::Refused { topic, reason },
            Ok(Some(ToChild::Secret { request_id, result })) => {
                if let Some(tx) = lock(&pending).remove(&request_id) {
                    let _ = tx.send(Answer::Secret(result));
                }
                continue;
            }
            Ok(Some(ToChild::Credentials { request_id, result })) => {
                if let Some(tx) = lock(&pending).remove(&request_id) {
                    let _ = tx.send(Answer::Credentials(result));
                }
                continue;
            }
            Ok(Some(ToChild::ShadowResult { .. })) => continue,
            Ok(Some(ToChild::Hello { .. } | ToChild::Configure(_))) => {
                eprintln!("evergreen-ipc: unexpected handshake frame after the handshake");
                break;
            }
        };
        if events.send(event).await.is_err() {
            break;
        }
    }
    // Dropping `events` ends `next_event`; dropping pending senders fails
    // outstanding secret requests with `Closed`.
    lock(&pending).clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{expect_child_hello, SupervisorLink};
    use crate::message::{ComponentKind, ResourceGrant};
    use std::collections::BTreeMap;

    fn config() -> ComponentConfig {
        ComponentConfig {
            arn: "arn:aws:greengrass:us-east-1::/connectors/Heartbeat/versions/1".into(),
            kind: ComponentKind::Connector,
            id: "hb".into(),
            parameters: BTreeMap::from([("IntervalSeconds".into(), "5".into())]),
            resources: BTreeMap::from([(
                "r".into(),
                ResourceGrant {
                    path: "/dev/null".into(),
                    read_write: false,
                },
            )]),
            secrets: vec![],
            log_level: LogLevel::Info,
            core_thing_name: "core".into(),
            region: "us-east-1".into(),
            endpoints: Default::default(),
        }
    }

    #[tokio::test]
    async fn component_receives_deliveries_and_publishes() {
        let (sup_w, child_r) = tokio::io::duplex(1 << 16);
        let (child_w, sup_r) = tokio::io::duplex(1 << 16);
        let mut sup = SupervisorLink::new(sup_w, DEFAULT_MAX_FRAME);
        sup.start(&config()).await.expect("start");
        let mut component = Component::connect_with(child_r, child_w, DEFAULT_MAX_FRAME)
            .await
            .expect("connect");
        assert_eq!(component.parameter("IntervalSeconds"), Some("5"));
        let mut sup_reader = FrameReader::new(sup_r, DEFAULT_MAX_FRAME);
        expect_child_hello(&mut sup_reader).await.expect("hello");

        let handle = component.handle();
        component.ready().await.expect("ready");
        handle.debug("not sent: below the level");
        handle.info("sent");
        let err = handle
            .publish("a/+", b"x".to_vec())
            .await
            .expect_err("wildcard");
        assert!(matches!(err, SdkError::Topic { .. }));
        handle.publish("a/b", b"x".to_vec()).await.expect("publish");

        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(
                sup_reader
                    .read_frame::<FromChild>()
                    .await
                    .expect("frame")
                    .expect("some"),
            );
        }
        assert_eq!(
            got,
            vec![
                FromChild::Ready,
                FromChild::Log {
                    level: LogLevel::Info,
                    message: "sent".into()
                },
                FromChild::Publish {
                    topic: "a/b".into(),
                    payload: b"x".to_vec()
                },
            ]
        );

        let d = Delivery {
            topic: "t".into(),
            payload: vec![1, 2],
            source: "cloud".into(),
        };
        sup.deliver(d.clone()).await.expect("deliver");
        sup.shutdown(500).await.expect("shutdown");
        assert_eq!(component.next_event().await, Some(Event::Message(d)));
        assert_eq!(
            component.next_event().await,
            Some(Event::Shutdown {
                deadline: Duration::from_millis(500)
            })
        );
        drop(sup);
        assert_eq!(
            component.next_event().await,
            None,
            "closed link ends the events"
        );
    }
}
