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
//!             Event::Invoke(_) => {} // only for components that serve a function name
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
//! [`Event`]s and answers, and a writer that drains a bounded queue
//! and flushes once the queue is empty, so bursts of publishes share a
//! write. The queue bound gives backpressure: `publish` waits when the
//! supervisor is not reading.
//!
//! Requests (secrets, AWS credentials, the local shadow service) carry a
//! `request_id`; the reader hands each answer to the request waiting for
//! that id, so answers may come back in any order and several tasks may
//! ask at once. Once the reader stops (the supervisor closed the link),
//! every waiting request and every later one fails with
//! [`SdkError::Closed`] instead of waiting for an answer that cannot come.
//!
//! The local shadow service ([`Handle::shadow`], or
//! [`Handle::get_thing_shadow`], [`Handle::update_thing_shadow`] and
//! [`Handle::delete_thing_shadow`], named after greengrasssdk's calls):
//! the supervisor turns a request into the shadow topic
//! `$aws/things/<thing>/shadow/<op>` and answers with the `/accepted`
//! document or the rejection (`{"code","message"}`), as a
//! [`ShadowReply`]. A rejection is a normal answer, not an error: errors are
//! for transport failures (a closed link, no answer within the timeout).
//! The service also publishes its answers on the shadow topics as for any
//! request, so the group's subscriptions from `GGShadowService` hear them.
//!
//! Local services (V1's ML connectors): a component that calls
//! [`Handle::serve`] receives the group's functions' invokes of
//! `arn:aws:lambda:<region>:aws:function:<name>` as [`Event::Invoke`] and
//! answers each with [`Handle::answer`]; the caller gets the payload (and
//! `FunctionError`) as from any function. [`Handle::invoke`] is the other
//! direction: a component calls a function or another component's service.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use crate::codec::{FrameError, FrameReader, DEFAULT_MAX_FRAME};
use crate::link::{child_handshake, ChildLink, HandshakeError};
use crate::message::{
    AwsCredentials, ComponentConfig, Delivery, FromChild, Invocation, InvokeOutcome, LogLevel,
    SecretValue, ShadowOp, ToChild,
};
use crate::topic::{validate_topic, TopicError};

/// Frames that may wait for the writer before `publish` waits too.
const OUTBOX: usize = 1024;
/// Deliveries that may wait for the component before the reader stops
/// reading (and the supervisor's per-target queue starts to fill).
const INBOX: usize = 1024;
/// How long [`Handle::shadow`] waits for its answer. A request costs the
/// supervisor one small file read and, for a change, an fsync; ten seconds
/// leaves room for a slow SD card under load while a lost answer still
/// ends in an error.
pub const SHADOW_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes a `Publish` or `Shadow` frame adds to its strings and payload
/// (variant, request id, op and two lengths, each at most a 9-byte varint),
/// so a message that cannot be framed is refused when it is made instead of
/// failing in the writer, which would end the link.
const FRAME_OVERHEAD: usize = 32;

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
    #[error("no answer to the shadow {op} request for {thing_name:?} within {after:?}")]
    ShadowTimeout {
        thing_name: String,
        op: ShadowOp,
        after: Duration,
    },
    #[error("invoke of {function_arn} failed: {message}")]
    Invoke {
        function_arn: String,
        message: String,
    },
    #[error("no result from {function_arn} within {after:?}")]
    InvokeTimeout {
        function_arn: String,
        after: Duration,
    },
    #[error("the supervisor answered request {request_id} with {got}, expected {expected}")]
    Mismatched {
        request_id: u64,
        expected: &'static str,
        got: &'static str,
    },
}

/// The local shadow service's answer to [`Handle::shadow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowReply {
    /// `true` when the payload is the `/accepted` document, `false` when it
    /// is the rejection (`{"code":…,"message":…}`, with the request's
    /// `clientToken` when it had a valid one).
    pub accepted: bool,
    /// JSON text, exactly as published on `…/accepted` or `…/rejected`.
    pub payload: Vec<u8>,
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
    /// A function invoked a name this component serves ([`Handle::serve`]);
    /// answer it with [`Handle::answer`].
    Invoke(Invocation),
}

/// An answer the supervisor sends to one of our requests.
#[derive(Debug)]
enum Answer {
    Secret(Result<SecretValue, String>),
    Credentials(Result<AwsCredentials, String>),
    Shadow(ShadowReply),
    Invoke(Result<InvokeOutcome, String>),
}

impl Answer {
    fn name(&self) -> &'static str {
        match self {
            Answer::Secret(_) => "Secret",
            Answer::Credentials(_) => "Credentials",
            Answer::Shadow(_) => "ShadowResult",
            Answer::Invoke(_) => "InvokeResult",
        }
    }
}

/// Requests waiting for their answer, by request id. `None` once the reader
/// has stopped: the link is closed and no answer can come.
type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Answer>>>>>;

/// One request waiting for its answer. Dropping it (an answer, a timeout, a
/// caller that gave up) takes its id out of the pending map, so abandoned
/// requests do not pile up there.
struct Waiting {
    pending: Pending,
    request_id: u64,
    rx: oneshot::Receiver<Answer>,
}

impl Waiting {
    /// The answer, or `None` when the link closed first.
    async fn answer(&mut self) -> Option<Answer> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(map) = lock(&self.pending).as_mut() {
            map.remove(&self.request_id);
        }
    }
}

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
        if payload.len() + topic.len() + FRAME_OVERHEAD > self.max_frame {
            return Err(SdkError::Frame(FrameError::TooLarge {
                len: payload.len() + topic.len() + FRAME_OVERHEAD,
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

    /// Registers a request under a fresh id and sends the frame `make`
    /// builds for that id.
    async fn request(&self, make: impl FnOnce(u64) -> FromChild) -> Result<Waiting, SdkError> {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match lock(&self.pending).as_mut() {
            Some(map) => map.insert(request_id, tx),
            None => return Err(SdkError::Closed),
        };
        // From here on, dropping `waiting` unregisters the request.
        let waiting = Waiting {
            pending: self.pending.clone(),
            request_id,
            rx,
        };
        self.out
            .send(make(request_id))
            .await
            .map_err(|_| SdkError::Closed)?;
        Ok(waiting)
    }

    /// Asks for a secret this component was granted.
    pub async fn get_secret(
        &self,
        secret_id: impl Into<String>,
        version_stage: Option<String>,
    ) -> Result<SecretValue, SdkError> {
        let secret_id = secret_id.into();
        let mut waiting = self
            .request(|request_id| FromChild::GetSecret {
                request_id,
                secret_id,
                version_stage,
            })
            .await?;
        match waiting.answer().await {
            Some(Answer::Secret(Ok(value))) => Ok(value),
            Some(Answer::Secret(Err(message))) => Err(SdkError::Secret(message)),
            Some(other) => Err(mismatched(waiting.request_id, "Secret", &other)),
            None => Err(SdkError::Closed),
        }
    }

    /// Asks the supervisor for AWS credentials (only connectors whose
    /// manifest sets `aws` get them). They are temporary: ask again once
    /// `expiration_ms` is near; the supervisor refreshes them before then.
    pub async fn aws_credentials(&self) -> Result<AwsCredentials, SdkError> {
        let mut waiting = self
            .request(|request_id| FromChild::GetCredentials { request_id })
            .await?;
        match waiting.answer().await {
            Some(Answer::Credentials(Ok(value))) => Ok(value),
            Some(Answer::Credentials(Err(message))) => Err(SdkError::Credentials(message)),
            Some(other) => Err(mismatched(waiting.request_id, "Credentials", &other)),
            None => Err(SdkError::Closed),
        }
    }

    /// Asks the local shadow service for `op` on the classic shadow of
    /// `thing_name`, with `payload` as the request document (the JSON an
    /// MQTT client would publish on `$aws/things/<thing>/shadow/<op>`; empty
    /// means `{}`). Waits at most [`SHADOW_TIMEOUT`].
    ///
    /// The service's rejection (400 for a bad document or thing name, 404
    /// for a missing shadow, 409 for a version conflict, 503 when the core
    /// runs no shadow service, …) is an `Ok` reply with `accepted: false`;
    /// `Err` is for the link: closed, an oversize request, or no answer in
    /// time.
    pub async fn shadow(
        &self,
        thing_name: impl Into<String>,
        op: ShadowOp,
        payload: impl Into<Vec<u8>>,
    ) -> Result<ShadowReply, SdkError> {
        self.shadow_with_timeout(thing_name, op, payload, SHADOW_TIMEOUT)
            .await
    }

    /// [`Handle::shadow`] with its own bound on the wait.
    pub async fn shadow_with_timeout(
        &self,
        thing_name: impl Into<String>,
        op: ShadowOp,
        payload: impl Into<Vec<u8>>,
        timeout: Duration,
    ) -> Result<ShadowReply, SdkError> {
        let thing_name = thing_name.into();
        let payload = payload.into();
        let len = thing_name.len() + payload.len() + FRAME_OVERHEAD;
        if len > self.max_frame {
            return Err(SdkError::Frame(FrameError::TooLarge {
                len,
                max: self.max_frame,
            }));
        }
        let name = thing_name.clone();
        let mut waiting = self
            .request(|request_id| FromChild::Shadow {
                request_id,
                thing_name: name,
                op,
                payload,
            })
            .await?;
        match tokio::time::timeout(timeout, waiting.answer()).await {
            Ok(Some(Answer::Shadow(reply))) => Ok(reply),
            Ok(Some(other)) => Err(mismatched(waiting.request_id, "ShadowResult", &other)),
            Ok(None) => Err(SdkError::Closed),
            Err(_) => Err(SdkError::ShadowTimeout {
                thing_name,
                op,
                after: timeout,
            }),
        }
    }

    /// Serves invokes of `arn:aws:lambda:<region>:aws:function:<function_name>`
    /// (any region, account `aws`, as V1's ML SDK addresses its services):
    /// each arrives as [`Event::Invoke`]. A caller waits up to `timeout` for
    /// [`Handle::answer`]; after that it gets an error and a late answer is
    /// dropped. Serving a name another component serves is refused in the
    /// component's log.
    pub async fn serve(&self, function_name: &str, timeout: Duration) -> Result<(), SdkError> {
        self.out
            .send(FromChild::Serve {
                function_name: function_name.to_string(),
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })
            .await
            .map_err(|_| SdkError::Closed)
    }

    /// Answers the invoke `invocation_id` ([`Event::Invoke`]).
    pub async fn answer(
        &self,
        invocation_id: &str,
        outcome: InvokeOutcome,
    ) -> Result<(), SdkError> {
        let len = invocation_id.len() + outcome.function_error.len() + outcome.payload.len();
        if len + FRAME_OVERHEAD > self.max_frame {
            return Err(SdkError::Frame(FrameError::TooLarge {
                len: len + FRAME_OVERHEAD,
                max: self.max_frame,
            }));
        }
        self.out
            .send(FromChild::InvokeResult {
                invocation_id: invocation_id.to_string(),
                outcome,
            })
            .await
            .map_err(|_| SdkError::Closed)
    }

    /// Invokes `function_arn` (a function of the group, or a service another
    /// component serves) with `client_context` (JSON text, or empty) and
    /// `payload`, and waits up to `timeout` for its result. A function error
    /// is an `Ok` outcome with `function_error` set; `Err` is for no result.
    pub async fn invoke(
        &self,
        function_arn: &str,
        client_context: Vec<u8>,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<InvokeOutcome, SdkError> {
        let len = function_arn.len() + client_context.len() + payload.len() + FRAME_OVERHEAD;
        if len > self.max_frame {
            return Err(SdkError::Frame(FrameError::TooLarge {
                len,
                max: self.max_frame,
            }));
        }
        let arn = function_arn.to_string();
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let mut waiting = self
            .request(|request_id| FromChild::Invoke {
                request_id,
                function_arn: arn,
                client_context,
                payload,
                timeout_ms,
            })
            .await?;
        // The supervisor answers by the timeout itself; the margin only
        // covers a supervisor that never answers.
        match tokio::time::timeout(timeout + Duration::from_secs(5), waiting.answer()).await {
            Ok(Some(Answer::Invoke(Ok(outcome)))) => Ok(outcome),
            Ok(Some(Answer::Invoke(Err(message)))) => Err(SdkError::Invoke {
                function_arn: function_arn.to_string(),
                message,
            }),
            Ok(Some(other)) => Err(mismatched(waiting.request_id, "InvokeResult", &other)),
            Ok(None) => Err(SdkError::Closed),
            Err(_) => Err(SdkError::InvokeTimeout {
                function_arn: function_arn.to_string(),
                after: timeout,
            }),
        }
    }

    /// greengrasssdk's `get_thing_shadow`: the shadow of `thing_name`.
    pub async fn get_thing_shadow(
        &self,
        thing_name: impl Into<String>,
    ) -> Result<ShadowReply, SdkError> {
        self.shadow(thing_name, ShadowOp::Get, Vec::new()).await
    }

    /// greengrasssdk's `update_thing_shadow`: `payload` is the update
    /// document (`{"state":{"desired":…,"reported":…},"clientToken":…,"version":…}`).
    pub async fn update_thing_shadow(
        &self,
        thing_name: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Result<ShadowReply, SdkError> {
        self.shadow(thing_name, ShadowOp::Update, payload).await
    }

    /// greengrasssdk's `delete_thing_shadow`.
    pub async fn delete_thing_shadow(
        &self,
        thing_name: impl Into<String>,
    ) -> Result<ShadowReply, SdkError> {
        self.shadow(thing_name, ShadowOp::Delete, Vec::new()).await
    }
}

fn mismatched(request_id: u64, expected: &'static str, got: &Answer) -> SdkError {
    SdkError::Mismatched {
        request_id,
        expected,
        got: got.name(),
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
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
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
        other @ (FromChild::Serve { .. }
        | FromChild::InvokeResult { .. }
        | FromChild::Invoke { .. }) => link.send(&other).await,
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
            Ok(Some(ToChild::Invoke(invocation))) => Event::Invoke(invocation),
            Ok(Some(ToChild::InvokeResult { request_id, result })) => {
                answer(&pending, request_id, Answer::Invoke(result));
                continue;
            }
            Ok(Some(ToChild::Secret { request_id, result })) => {
                answer(&pending, request_id, Answer::Secret(result));
                continue;
            }
            Ok(Some(ToChild::Credentials { request_id, result })) => {
                answer(&pending, request_id, Answer::Credentials(result));
                continue;
            }
            Ok(Some(ToChild::ShadowResult {
                request_id,
                accepted,
                payload,
            })) => {
                let reply = ShadowReply { accepted, payload };
                answer(&pending, request_id, Answer::Shadow(reply));
                continue;
            }
            Ok(Some(ToChild::Hello { .. } | ToChild::Configure(_))) => {
                eprintln!("evergreen-ipc: unexpected handshake frame after the handshake");
                break;
            }
        };
        if events.send(event).await.is_err() {
            break;
        }
    }
    // Dropping `events` ends `next_event`; dropping the pending senders
    // fails outstanding requests with `Closed`, and `None` fails later ones
    // at once.
    *lock(&pending) = None;
}

/// Hands `answer` to the request waiting for `request_id`. An answer nobody
/// waits for (the request timed out or was given up) is dropped.
fn answer(pending: &Pending, request_id: u64, answer: Answer) {
    let waiter = lock(pending)
        .as_mut()
        .and_then(|map| map.remove(&request_id));
    if let Some(tx) = waiter {
        let _ = tx.send(answer);
    }
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

    type SupLink = SupervisorLink<tokio::io::DuplexStream>;
    type SupReader = FrameReader<tokio::io::DuplexStream>;

    /// A component connected to an in-memory supervisor, past the handshake.
    async fn connected(max_frame: usize) -> (Component, SupLink, SupReader) {
        let (sup_w, child_r) = tokio::io::duplex(1 << 16);
        let (child_w, sup_r) = tokio::io::duplex(1 << 16);
        let mut sup = SupervisorLink::new(sup_w, max_frame);
        sup.start(&config()).await.expect("start");
        let component = Component::connect_with(child_r, child_w, max_frame)
            .await
            .expect("connect");
        let mut sup_reader = FrameReader::new(sup_r, max_frame);
        expect_child_hello(&mut sup_reader).await.expect("hello");
        (component, sup, sup_reader)
    }

    /// The next `Shadow` frame the component sent.
    async fn shadow_frame(reader: &mut SupReader) -> (u64, String, ShadowOp, Vec<u8>) {
        let frame = tokio::time::timeout(Duration::from_secs(5), reader.read_frame::<FromChild>())
            .await
            .expect("a frame in time")
            .expect("frame")
            .expect("some");
        match frame {
            FromChild::Shadow {
                request_id,
                thing_name,
                op,
                payload,
            } => (request_id, thing_name, op, payload),
            other => panic!("expected Shadow, got {other:?}"),
        }
    }

    fn pending_len(handle: &Handle) -> Option<usize> {
        lock(&handle.pending).as_ref().map(HashMap::len)
    }

    #[tokio::test]
    async fn shadow_answers_go_to_the_request_with_their_id() {
        let (component, mut sup, mut sup_reader) = connected(DEFAULT_MAX_FRAME).await;
        let handle = component.handle();
        let (a, b) = (handle.clone(), handle.clone());
        let first =
            tokio::spawn(async move { a.update_thing_shadow("lamp", br#"{"state":{}}"#).await });
        let (id1, thing1, op1, payload1) = shadow_frame(&mut sup_reader).await;
        let second = tokio::spawn(async move { b.get_thing_shadow("fan").await });
        let (id2, thing2, op2, payload2) = shadow_frame(&mut sup_reader).await;
        assert_ne!(id1, id2, "each request has its own id");
        assert_eq!(
            (thing1.as_str(), op1, payload1.as_slice()),
            ("lamp", ShadowOp::Update, &br#"{"state":{}}"#[..])
        );
        assert_eq!(
            (thing2.as_str(), op2, payload2.as_slice()),
            ("fan", ShadowOp::Get, &b""[..])
        );
        assert_eq!(pending_len(&handle), Some(2));

        // Answered in the other order: each still gets its own.
        sup.shadow_result(id2, false, br#"{"code":404}"#.to_vec())
            .await
            .expect("answer 2");
        sup.shadow_result(id1, true, br#"{"version":1}"#.to_vec())
            .await
            .expect("answer 1");
        let second = second.await.expect("task").expect("reply");
        let first = first.await.expect("task").expect("reply");
        assert_eq!(
            second,
            ShadowReply {
                accepted: false,
                payload: br#"{"code":404}"#.to_vec()
            }
        );
        assert_eq!(
            first,
            ShadowReply {
                accepted: true,
                payload: br#"{"version":1}"#.to_vec()
            }
        );
        assert_eq!(pending_len(&handle), Some(0), "answered requests are gone");
        drop(component);
    }

    #[tokio::test]
    async fn an_unanswered_shadow_request_times_out_and_is_forgotten() {
        let (component, mut sup, mut sup_reader) = connected(DEFAULT_MAX_FRAME).await;
        let handle = component.handle();
        let err = handle
            .shadow_with_timeout(
                "lamp",
                ShadowOp::Delete,
                Vec::new(),
                Duration::from_millis(50),
            )
            .await
            .expect_err("no answer");
        assert!(
            matches!(
                &err,
                SdkError::ShadowTimeout { thing_name, op: ShadowOp::Delete, .. } if thing_name == "lamp"
            ),
            "{err}"
        );
        assert!(err.to_string().contains("delete"), "{err}");
        assert_eq!(
            pending_len(&handle),
            Some(0),
            "the timed-out request is gone"
        );

        // Its late answer is dropped; the next request still gets its own.
        let (late, ..) = shadow_frame(&mut sup_reader).await;
        sup.shadow_result(late, true, b"late".to_vec())
            .await
            .expect("late answer");
        let asker = handle.clone();
        let next = tokio::spawn(async move { asker.get_thing_shadow("lamp").await });
        let (id, ..) = shadow_frame(&mut sup_reader).await;
        assert_ne!(id, late);
        sup.shadow_result(id, true, b"fresh".to_vec())
            .await
            .expect("answer");
        let reply = next.await.expect("task").expect("reply");
        assert_eq!(reply.payload, b"fresh".to_vec());
        drop(component);
    }

    #[tokio::test]
    async fn a_closed_link_fails_shadow_requests_instead_of_hanging() {
        let (component, sup, mut sup_reader) = connected(DEFAULT_MAX_FRAME).await;
        let handle = component.handle();
        let asker = handle.clone();
        let waiting = tokio::spawn(async move {
            asker
                .shadow_with_timeout("lamp", ShadowOp::Get, Vec::new(), Duration::from_secs(30))
                .await
        });
        shadow_frame(&mut sup_reader).await;
        drop(sup); // the supervisor goes away without answering
        let result = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("failed at once, not after the 30 s timeout")
            .expect("task");
        assert!(matches!(result, Err(SdkError::Closed)), "{result:?}");
        // A request made after the link closed fails at once too.
        let later = tokio::time::timeout(
            Duration::from_secs(5),
            handle.shadow_with_timeout("lamp", ShadowOp::Get, Vec::new(), Duration::from_secs(30)),
        )
        .await
        .expect("no wait");
        assert!(matches!(later, Err(SdkError::Closed)), "{later:?}");
        assert_eq!(pending_len(&handle), None);
        drop(component);
    }

    #[tokio::test]
    async fn a_publish_at_the_frame_limit_is_refused_and_the_link_lives_on() {
        let max = 4096;
        let (component, _sup, mut sup_reader) = connected(max).await;
        let handle = component.handle();
        // Payload and topic alone fit, the frame around them does not: refused here (an
        // earlier check let it through to the writer, which then ended the link).
        let err = handle
            .publish("t/x", vec![b'a'; max - "t/x".len()])
            .await
            .expect_err("too large once framed");
        assert!(
            matches!(err, SdkError::Frame(FrameError::TooLarge { .. })),
            "{err}"
        );
        let fits = vec![b'a'; max - "t/x".len() - FRAME_OVERHEAD];
        handle
            .publish("t/x", fits)
            .await
            .expect("the largest that fits");
        let frame =
            tokio::time::timeout(Duration::from_secs(5), sup_reader.read_frame::<FromChild>())
                .await
                .expect("a frame in time")
                .expect("frame")
                .expect("some");
        assert!(
            matches!(&frame, FromChild::Publish { payload, .. } if payload.len() == max - 3 - FRAME_OVERHEAD),
            "{frame:?}"
        );
        drop(component);
    }

    #[tokio::test]
    async fn an_oversize_shadow_request_is_refused_and_the_link_lives_on() {
        let max = 4096;
        let (component, mut sup, mut sup_reader) = connected(max).await;
        let handle = component.handle();
        let err = handle
            .update_thing_shadow("lamp", vec![b' '; max])
            .await
            .expect_err("too large");
        assert!(
            matches!(err, SdkError::Frame(FrameError::TooLarge { max: 4096, .. })),
            "{err}"
        );
        assert_eq!(pending_len(&handle), Some(0));
        // The link still works: the largest request that fits goes through.
        let fits = vec![b' '; max - "lamp".len() - FRAME_OVERHEAD];
        let asker = handle.clone();
        let request = tokio::spawn(async move { asker.update_thing_shadow("lamp", fits).await });
        let (id, thing, _, payload) = shadow_frame(&mut sup_reader).await;
        assert_eq!((thing.as_str(), payload.len()), ("lamp", max - 4 - 32));
        sup.shadow_result(id, false, b"{}".to_vec())
            .await
            .expect("answer");
        assert!(!request.await.expect("task").expect("reply").accepted);
        drop(component);
    }
}
