//! A Rust client of the stream manager, for connectors: the same
//! handshake and requests as the `greengrasssdk` 1.6.1
//! `StreamManagerClient` (connect version 1, a `ConnectRequest` with
//! protocol version 1.1.0 and the container authorization token), over one
//! TCP connection to `127.0.0.1:STREAM_MANAGER_SERVER_PORT`.
//!
//! One reader task per connection hands each response to the request with
//! its `requestId`, so requests may be pipelined: [`StreamClient`] takes
//! `&self` and may be shared (`Arc`) between tasks. Requests are written in
//! the order their callers take the connection's writer (a fair lock), and
//! the server applies one connection's appends in the order they arrive, so
//! [`StreamClient::append_messages`] gets its sequence numbers in order.
//!
//! Failures are typed ([`ClientError`]). A connection that breaks fails the
//! requests open on it (`Closed`/`Io`) and is replaced on the next call;
//! nothing is retried here (an append is not idempotent), callers decide.
//! Every request is bounded by the client's request timeout (60 s like the
//! SDK's, or [`StreamClient::with_request_timeout`]); a `read_messages`
//! that asks the server to wait longer gets that wait plus the timeout. A
//! timeout abandons the connection (a frame may be half written, and the
//! server is not answering anyway): requests open on it fail `Closed`.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Mutex};
use tokio::task::JoinHandle;

use crate::model::*;
use crate::wire::{self, read_frame, read_u8, WireError, CONNECT_VERSION};

/// The SDK's default request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The SDK's connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest response accepted (the server's default `maxResponseBytes`
/// is 32 MiB; a frame above this is skipped and its request fails).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// What the client says it is in its connect request.
pub const CLIENT_SDK_VERSION: &str = concat!("evergreen-rust ", env!("CARGO_PKG_VERSION"));

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a status other than `Success` (the SDK
    /// raises one exception per code; here it is the code).
    #[error("stream manager answered {code:?}: {message}")]
    Status {
        code: ResponseStatusCode,
        message: String,
    },
    #[error("stream manager connection: {0}")]
    Io(#[from] std::io::Error),
    /// The connection ended before the response came; the next call
    /// reconnects.
    #[error("the stream manager connection closed before the response")]
    Closed,
    #[error("no response from the stream manager within {0:?}")]
    Timeout(Duration),
    /// The server sent something this client cannot read.
    #[error("stream manager protocol error: {0}")]
    Protocol(String),
    /// `from_env` without the variables the runtime sets for connectors.
    #[error("{0}")]
    Env(String),
}

impl ClientError {
    /// The server's status code, if the server refused the request.
    pub fn code(&self) -> Option<ResponseStatusCode> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A client of one stream manager.
pub struct StreamClient {
    port: u16,
    token: Option<String>,
    request_timeout: Duration,
    ids: RequestIds,
    conn: Mutex<Option<Arc<Connection>>>,
}

impl std::fmt::Debug for StreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamClient")
            .field("port", &self.port)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

type Pending = HashMap<String, oneshot::Sender<Vec<u8>>>;
/// A request written and awaiting its answer (or why it was not sent).
type Waiting = Result<(String, oneshot::Receiver<Vec<u8>>), ClientError>;

/// One live connection: its write half and the requests awaiting answers.
struct Connection {
    writer: Mutex<OwnedWriteHalf>,
    /// `None` once the reader has ended: nothing more will be answered.
    pending: Arc<StdMutex<Option<Pending>>>,
    reader: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    fn alive(&self) -> bool {
        lock(&self.pending).is_some()
    }

    /// Registers a request; `None` if the connection already ended.
    fn register(&self, id: &str) -> Option<oneshot::Receiver<Vec<u8>>> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).as_mut()?.insert(id.to_string(), tx);
        Some(rx)
    }

    /// Ends the connection: after a timeout a frame may be half written,
    /// so nothing more may be sent on it; the next call reconnects.
    fn abandon(&self) {
        lock(&self.pending).take();
        self.reader.abort();
    }

    fn forget(&self, id: &str) {
        if let Some(p) = lock(&self.pending).as_mut() {
            p.remove(id);
        }
    }
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock leaves a map that is still valid.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Request ids: a random 128-bit base per client plus a counter, shown as
/// a UUID (the SDK's `uuid4()` shape), unique without a syscall per call.
struct RequestIds {
    base: u128,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> RequestIds {
        let mut bytes = [0u8; 16];
        let random = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .is_ok();
        if !random {
            // Without /dev/urandom: time and pid still keep clients apart.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            bytes = (t ^ ((std::process::id() as u128) << 96)).to_be_bytes();
        }
        RequestIds {
            base: u128::from_be_bytes(bytes),
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let v = self.base.wrapping_add(n as u128);
        let h = format!("{v:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

/// The status part every response has.
trait Reply: serde::de::DeserializeOwned {
    fn status(&self) -> (ResponseStatusCode, Option<&str>);
}

macro_rules! reply {
    ($($t:ty),*) => {$(
        impl Reply for $t {
            fn status(&self) -> (ResponseStatusCode, Option<&str>) {
                (self.status, self.error_message.as_deref())
            }
        }
    )*};
}
reply!(
    StatusResponse,
    AppendMessageResponse,
    ReadMessagesResponse,
    ListStreamsResponse,
    DescribeMessageStreamResponse
);

impl StreamClient {
    /// Connects to the stream manager on `127.0.0.1:port` with `token`
    /// (`AWS_CONTAINER_AUTHORIZATION_TOKEN`); a refusal is
    /// [`ClientError::Status`] with the server's code (e.g. `Unauthorized`).
    pub async fn connect(port: u16, token: Option<String>) -> Result<StreamClient, ClientError> {
        let client = StreamClient {
            port,
            token,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            ids: RequestIds::new(),
            conn: Mutex::new(None),
        };
        client.connection().await?;
        Ok(client)
    }

    /// Connects with the port and token the runtime gives connectors
    /// (`STREAM_MANAGER_SERVER_PORT`, `AWS_CONTAINER_AUTHORIZATION_TOKEN`).
    pub async fn from_env() -> Result<StreamClient, ClientError> {
        let (port, token) = env_settings()?;
        StreamClient::connect(port, token).await
    }

    /// Bounds every request (connect included) by `timeout`.
    pub fn with_request_timeout(mut self, timeout: Duration) -> StreamClient {
        self.request_timeout = timeout;
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn create_message_stream(
        &self,
        definition: &MessageStreamDefinition,
    ) -> Result<(), ClientError> {
        self.definition_call(Operation::CreateMessageStream, definition)
            .await
    }

    pub async fn update_message_stream(
        &self,
        definition: &MessageStreamDefinition,
    ) -> Result<(), ClientError> {
        self.definition_call(Operation::UpdateMessageStream, definition)
            .await
    }

    /// Create and update: the same request body, each its own operation.
    async fn definition_call(
        &self,
        operation: Operation,
        definition: &MessageStreamDefinition,
    ) -> Result<(), ClientError> {
        let id = self.ids.next();
        let body = DefinitionRequest {
            request_id: id.clone(),
            definition: definition.clone(),
        };
        self.call::<_, StatusResponse>(operation, id, &body, None)
            .await
            .map(drop)
    }

    pub async fn delete_message_stream(&self, name: &str) -> Result<(), ClientError> {
        let id = self.ids.next();
        let body = NameRequest {
            request_id: id.clone(),
            name: name.to_string(),
        };
        self.call::<_, StatusResponse>(Operation::DeleteMessageStream, id, &body, None)
            .await
            .map(drop)
    }

    pub async fn describe_message_stream(
        &self,
        name: &str,
    ) -> Result<MessageStreamInfo, ClientError> {
        let id = self.ids.next();
        let body = NameRequest {
            request_id: id.clone(),
            name: name.to_string(),
        };
        let r: DescribeMessageStreamResponse = self
            .call(Operation::DescribeMessageStream, id, &body, None)
            .await?;
        r.message_stream_info
            .ok_or_else(|| ClientError::Protocol("a describe response without the stream".into()))
    }

    pub async fn list_streams(&self) -> Result<Vec<String>, ClientError> {
        let id = self.ids.next();
        let body = ListStreamsRequest {
            request_id: id.clone(),
        };
        let r: ListStreamsResponse = self.call(Operation::ListStreams, id, &body, None).await?;
        Ok(r.streams)
    }

    /// Appends one message; its sequence number.
    pub async fn append_message(&self, name: &str, data: &[u8]) -> Result<i64, ClientError> {
        let id = self.ids.next();
        let body = AppendMessageRequest {
            request_id: id.clone(),
            name: name.to_string(),
            payload: data.to_vec(),
        };
        let r: AppendMessageResponse = self.call(Operation::AppendMessage, id, &body, None).await?;
        r.sequence_number.ok_or_else(|| {
            ClientError::Protocol("an append response without a sequence number".into())
        })
    }

    /// Appends `messages` pipelined (all written, then all answers awaited):
    /// one result per message, in order; successes have increasing sequence
    /// numbers. A broken connection fails the rest.
    pub async fn append_messages(
        &self,
        name: &str,
        messages: &[Vec<u8>],
    ) -> Vec<Result<i64, ClientError>> {
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => {
                let mut out = vec![Err(e)];
                out.extend((1..messages.len()).map(|_| Err(ClientError::Closed)));
                out.truncate(messages.len());
                return out;
            }
        };
        let mut waits = Vec::with_capacity(messages.len());
        let mut buf = Vec::new();
        {
            let mut writer = conn.writer.lock().await;
            for data in messages {
                let id = self.ids.next();
                let Some(rx) = conn.register(&id) else {
                    waits.push(Err(ClientError::Closed));
                    continue;
                };
                buf.extend(wire::encode(
                    Operation::AppendMessage,
                    &AppendMessageRequest {
                        request_id: id.clone(),
                        name: name.to_string(),
                        payload: data.clone(),
                    },
                ));
                waits.push(Ok((id, rx)));
                if buf.len() >= 256 << 10 {
                    if let Err(e) = self.write(&mut writer, &buf).await {
                        conn.abandon();
                        return fail_all(&conn, waits, e, messages.len());
                    }
                    buf.clear();
                }
            }
            if !buf.is_empty() {
                if let Err(e) = self.write(&mut writer, &buf).await {
                    conn.abandon();
                    return fail_all(&conn, waits, e, messages.len());
                }
            }
        }
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut out = Vec::with_capacity(messages.len());
        for w in waits {
            out.push(match w {
                Err(e) => Err(e),
                Ok((_, rx)) => match tokio::time::timeout_at(deadline, rx).await {
                    Err(_) => {
                        // The server stopped answering: start afresh.
                        conn.abandon();
                        Err(ClientError::Timeout(self.request_timeout))
                    }
                    Ok(Err(_)) => Err(ClientError::Closed),
                    Ok(Ok(payload)) => {
                        decode_reply::<AppendMessageResponse>(&payload).and_then(|r| {
                            r.sequence_number.ok_or_else(|| {
                                ClientError::Protocol(
                                    "an append response without a sequence number".into(),
                                )
                            })
                        })
                    }
                },
            });
        }
        out
    }

    /// Reads messages (the SDK's `read_messages`; `None` options read one
    /// message from sequence number 0 without waiting).
    pub async fn read_messages(
        &self,
        name: &str,
        options: Option<ReadMessagesOptions>,
    ) -> Result<Vec<Message>, ClientError> {
        let wait = options
            .as_ref()
            .and_then(|o| o.read_timeout_millis)
            .map(|ms| Duration::from_millis(ms.max(0) as u64));
        let id = self.ids.next();
        let body = ReadMessagesRequest {
            request_id: id.clone(),
            stream_name: name.to_string(),
            read_messages_options: options,
        };
        let r: ReadMessagesResponse = self.call(Operation::ReadMessages, id, &body, wait).await?;
        Ok(r.messages)
    }

    /// The live connection, made anew if there is none or it ended.
    async fn connection(&self) -> Result<Arc<Connection>, ClientError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            if c.alive() {
                return Ok(c.clone());
            }
        }
        *slot = None;
        let c = Arc::new(self.handshake().await?);
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn handshake(&self) -> Result<Connection, ClientError> {
        let limit = CONNECT_TIMEOUT.min(self.request_timeout);
        let socket = tokio::time::timeout(limit, TcpStream::connect(("127.0.0.1", self.port)))
            .await
            .map_err(|_| ClientError::Timeout(limit))??;
        socket.set_nodelay(true)?;
        let (read, mut write) = socket.into_split();
        let mut read = BufReader::new(read);
        let request = ConnectRequest {
            request_id: Some(self.ids.next()),
            protocol_version: Some(PROTOCOL_VERSION.to_string()),
            other_supported_protocol_versions: Some(
                OLD_PROTOCOL_VERSIONS
                    .iter()
                    .map(|v| v.to_string())
                    .collect(),
            ),
            sdk_version: Some(CLIENT_SDK_VERSION.to_string()),
            auth_token: self.token.clone(),
        };
        let exchange = async {
            let mut head = vec![CONNECT_VERSION];
            head.extend(wire::encode(Operation::Connect, &request));
            write.write_all(&head).await?;
            let version = read_u8(&mut read).await.map_err(wire_error)?;
            if version != CONNECT_VERSION {
                return Err(ClientError::Protocol(format!(
                    "the server answered connect version {version}, not {CONNECT_VERSION}"
                )));
            }
            let frame = read_frame(&mut read, 64 << 10)
                .await
                .map_err(wire_error)?
                .ok_or(ClientError::Closed)?;
            if frame.operation != Operation::ConnectResponse {
                return Err(ClientError::Protocol(format!(
                    "the server answered the connect request with operation {}",
                    frame.op_byte
                )));
            }
            let response: ConnectResponse =
                wire::decode(&frame.payload).map_err(ClientError::Protocol)?;
            if response.status != ResponseStatusCode::Success {
                return Err(ClientError::Status {
                    code: response.status,
                    message: response.error_message.unwrap_or_default(),
                });
            }
            Ok(())
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(self.request_timeout))??;

        let pending = Arc::new(StdMutex::new(Some(Pending::new())));
        let reader = tokio::spawn(read_loop(read, pending.clone()));
        Ok(Connection {
            writer: Mutex::new(write),
            pending,
            reader,
        })
    }

    async fn write(&self, writer: &mut OwnedWriteHalf, bytes: &[u8]) -> Result<(), ClientError> {
        tokio::time::timeout(self.request_timeout, writer.write_all(bytes))
            .await
            .map_err(|_| ClientError::Timeout(self.request_timeout))??;
        Ok(())
    }

    /// Sends one request and awaits its answer; `extra` lengthens the
    /// timeout for a read the server is asked to hold.
    async fn call<B: Serialize, R: Reply>(
        &self,
        op: Operation,
        id: String,
        body: &B,
        extra: Option<Duration>,
    ) -> Result<R, ClientError> {
        let limit = self.request_timeout + extra.unwrap_or_default();
        let conn = self.connection().await?;
        let bytes = wire::encode(op, body);
        let work = async {
            let rx = conn.register(&id).ok_or(ClientError::Closed)?;
            {
                let mut writer = conn.writer.lock().await;
                if let Err(e) = writer.write_all(&bytes).await {
                    // The reader ends on its own; make sure the next call
                    // does not reuse this connection meanwhile.
                    let _ = writer.shutdown().await;
                    return Err(ClientError::Io(e));
                }
            }
            rx.await.map_err(|_| ClientError::Closed)
        };
        let payload = match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_) => {
                conn.abandon();
                Err(ClientError::Timeout(limit))
            }
        }?;
        decode_reply(&payload)
    }
}

fn fail_all(
    conn: &Connection,
    waits: Vec<Waiting>,
    e: ClientError,
    total: usize,
) -> Vec<Result<i64, ClientError>> {
    let mut out = Vec::with_capacity(total);
    let mut first = Some(e);
    for w in waits {
        if let Ok((id, _)) = &w {
            conn.forget(id);
        }
        out.push(Err(first.take().unwrap_or(ClientError::Closed)));
    }
    while out.len() < total {
        out.push(Err(ClientError::Closed));
    }
    out
}

fn decode_reply<R: Reply>(payload: &[u8]) -> Result<R, ClientError> {
    let r: R = wire::decode(payload).map_err(ClientError::Protocol)?;
    let (code, message) = r.status();
    if code != ResponseStatusCode::Success {
        return Err(ClientError::Status {
            code,
            message: message.unwrap_or_default().to_string(),
        });
    }
    Ok(r)
}

fn wire_error(e: WireError) -> ClientError {
    match e {
        WireError::Io(e) => ClientError::Io(e),
        WireError::Truncated => ClientError::Closed,
        other => ClientError::Protocol(other.to_string()),
    }
}

/// Hands every response to its request until the connection ends, then
/// fails the requests still open (their senders are dropped).
async fn read_loop(
    mut read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    pending: Arc<StdMutex<Option<Pending>>>,
) {
    loop {
        match read_frame(&mut read, MAX_RESPONSE_BYTES).await {
            Ok(Some(frame)) => {
                let Some(id) = wire::request_id_of(&frame.payload) else {
                    tracing::warn!(
                        "stream manager client: a response (operation {}) without a request id",
                        frame.op_byte
                    );
                    continue;
                };
                let tx = lock(&pending).as_mut().and_then(|p| p.remove(&id));
                if let Some(tx) = tx {
                    let _ = tx.send(frame.payload);
                }
            }
            Ok(None) => break,
            Err(WireError::TooLarge {
                request_id, len, ..
            }) => {
                tracing::warn!("stream manager client: a {len}-byte response was skipped");
                // Dropping the sender fails that request with `Closed`.
                if let Some(id) = request_id {
                    lock(&pending).as_mut().and_then(|p| p.remove(&id));
                }
            }
            Err(e) => {
                tracing::debug!("stream manager client: connection ended: {e}");
                break;
            }
        }
    }
    lock(&pending).take();
}

/// The port and token from the environment the runtime gives connectors.
pub fn env_settings() -> Result<(u16, Option<String>), ClientError> {
    let port = std::env::var("STREAM_MANAGER_SERVER_PORT").map_err(|_| {
        ClientError::Env(
            "STREAM_MANAGER_SERVER_PORT is not set: the group has no stream manager (GGStreamManager)"
                .into(),
        )
    })?;
    let port = port.trim().parse::<u16>().map_err(|_| {
        ClientError::Env(format!("STREAM_MANAGER_SERVER_PORT {port:?} is not a port"))
    })?;
    let token = std::env::var("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    Ok((port, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_shaped_and_distinct() {
        let ids = RequestIds::new();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_ne!(RequestIds::new().next(), RequestIds::new().next());
    }
}
