//! The stream manager's TCP service on `127.0.0.1` (Greengrass V1's
//! port 8088, `STREAM_MANAGER_SERVER_PORT`): the handshake the SDK client
//! opens with, the client's authorization token checked against the
//! runtime's live function and connector tokens, then requests answered by
//! request id, each operation with the SDK's status codes.
//!
//! Per connection: appends are handled one after another in the order they
//! arrive (a client that pipelines appends gets its sequence numbers in
//! that order); other requests run concurrently, so a `read_messages`
//! waiting for messages does not hold up the appends behind it. At most
//! `maxInflightPerConnection` requests of one connection are open at once;
//! the connection is not read further until one completes.
//!
//! Bounded peers: the handshake must be complete within
//! [`HANDSHAKE_TIMEOUT`]; at most `maxConnections` clients are connected
//! (one more is answered `FailedToConnect` with the reason); a request
//! above `maxRequestBytes` is read past and answered
//! `RequestPayloadTooLarge`; a read whose `minMessageCount` messages do not
//! fit `maxResponseBytes` is answered `ResponsePayloadTooLarge`. A payload
//! that does not decode is `InvalidRequest`, an unknown operation
//! `UnknownOperation`, and neither closes the connection.
//!
//! Choices where the SDK leaves the server's behaviour open:
//! * `read_messages` without `maxMessageCount` returns at most
//!   `minMessageCount` messages (1 by default): exactly what was asked for.
//! * A full `RejectNewData` stream refuses an append with `InvalidRequest`
//!   (the SDK has no status of its own for it) and says why.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

use crate::model::*;
use crate::store::{Store, StoreError};
use crate::wire::{self, read_frame, read_u8, Frame, WireError, CONNECT_VERSION};

/// From accept to a complete connect request.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may connect: the runtime answers with the identity (a function's or
/// connector's ARN) the token belongs to.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(&self, token: Option<&str>) -> Result<String, String>;
}

/// The service's bounds (`evergreen.streamManager`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    pub max_inflight_per_connection: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 64,
            max_request_bytes: 17 << 20,
            max_response_bytes: 32 << 20,
            max_inflight_per_connection: 64,
        }
    }
}

/// What serves connections: the store, who may connect, the bounds.
pub struct Service {
    pub store: Arc<Store>,
    pub auth: Arc<dyn Authorizer>,
    pub limits: ServerLimits,
    connections: Arc<Semaphore>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Service {
    pub fn new(store: Arc<Store>, auth: Arc<dyn Authorizer>, limits: ServerLimits) -> Arc<Service> {
        let connections = Arc::new(Semaphore::new(limits.max_connections));
        Arc::new(Service {
            store,
            auth,
            limits,
            connections,
        })
    }

    /// Accepts connections until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((socket, _)) => {
                    let service = self.clone();
                    tokio::spawn(async move { service.connection(socket).await });
                }
                Err(e) => {
                    tracing::warn!("stream manager: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn connection(self: Arc<Self>, socket: TcpStream) {
        let _ = socket.set_nodelay(true);
        let (read, mut write) = socket.into_split();
        let mut read = BufReader::new(read);
        let permit = self.connections.clone().try_acquire_owned().ok();
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let version = read_u8(&mut read).await?;
            let frame = read_frame(&mut read, 64 << 10).await?;
            Ok::<_, WireError>((version, frame))
        })
        .await;
        let (version, frame) = match handshake {
            Ok(Ok((v, Some(f)))) => (v, f),
            Ok(Ok((_, None))) => return,
            Ok(Err(e)) => {
                tracing::info!("stream manager: a client's handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::info!(
                    "stream manager: a client sent no connect request within {HANDSHAKE_TIMEOUT:?}; closed"
                );
                return;
            }
        };
        let request: ConnectRequest = wire::decode(&frame.payload).unwrap_or_default();
        let refuse = |status, message: String| ConnectResponse {
            request_id: request.request_id.clone(),
            status,
            error_message: Some(message),
            protocol_version: Some(PROTOCOL_VERSION.to_string()),
            supported_protocol_versions: Some(supported()),
            server_version: Some(server_version()),
            client_identifier: None,
        };
        let outcome = if version != CONNECT_VERSION {
            Err(refuse(
                ResponseStatusCode::UnsupportedConnectVersion,
                format!("connect version {version} is not supported; this server speaks {CONNECT_VERSION}"),
            ))
        } else if frame.operation != Operation::Connect {
            Err(refuse(
                ResponseStatusCode::UnexpectedOperation,
                format!(
                    "the first request must be Connect, not operation {}",
                    frame.op_byte
                ),
            ))
        } else if permit.is_none() {
            tracing::warn!(
                "stream manager: a client was refused: {} clients are connected (maxConnections)",
                self.limits.max_connections
            );
            Err(refuse(
                ResponseStatusCode::FailedToConnect,
                format!(
                    "the stream manager serves at most {} connections (evergreen.streamManager.maxConnections)",
                    self.limits.max_connections
                ),
            ))
        } else {
            match choose_protocol(&request) {
                None => Err(refuse(
                    ResponseStatusCode::UnsupportedProtocolVersion,
                    format!(
                        "protocol version {:?} is not supported; this server speaks {}",
                        request.protocol_version.as_deref().unwrap_or(""),
                        supported().join(", ")
                    ),
                )),
                Some(protocol) => match self.auth.authorize(request.auth_token.as_deref()) {
                    Err(why) => {
                        tracing::warn!("stream manager: a client was refused: {why}");
                        Err(refuse(ResponseStatusCode::Unauthorized, why))
                    }
                    Ok(identity) => Ok((protocol, identity)),
                },
            }
        };
        let mut head = vec![CONNECT_VERSION];
        let identity = match outcome {
            Err(response) => {
                head.extend(wire::encode(Operation::ConnectResponse, &response));
                let _ = write.write_all(&head).await;
                let _ = write.shutdown().await;
                return;
            }
            Ok((protocol, identity)) => {
                let response = ConnectResponse {
                    request_id: request.request_id.clone(),
                    status: ResponseStatusCode::Success,
                    error_message: None,
                    protocol_version: Some(protocol),
                    supported_protocol_versions: Some(supported()),
                    server_version: Some(server_version()),
                    client_identifier: Some(identity.clone()),
                };
                head.extend(wire::encode(Operation::ConnectResponse, &response));
                if write.write_all(&head).await.is_err() {
                    return;
                }
                identity
            }
        };
        tracing::debug!("stream manager: {identity} connected");

        // Responses go out through one writer task, in completion order.
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(self.limits.max_inflight_per_connection);
        let writer = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if write.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        let inflight = Arc::new(Semaphore::new(self.limits.max_inflight_per_connection));
        loop {
            let frame = match read_frame(&mut read, self.limits.max_request_bytes).await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(WireError::TooLarge {
                    len,
                    max,
                    request_id,
                }) => {
                    let message = format!(
                        "a request of {len} bytes is larger than the {max}-byte limit (evergreen.streamManager.maxRequestBytes)"
                    );
                    tracing::info!("stream manager: {identity}: {message}");
                    if let Some(request_id) = request_id {
                        // The operation is unknown here: every SDK request op
                        // maps to a response that has these three fields, and
                        // the SDK only reads the status from them.
                        let _ = tx
                            .send(wire::encode(
                                Operation::AppendMessageResponse,
                                &status(
                                    request_id,
                                    ResponseStatusCode::RequestPayloadTooLarge,
                                    message,
                                ),
                            ))
                            .await;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::info!("stream manager: {identity}: connection dropped: {e}");
                    break;
                }
            };
            let Ok(permit) = inflight.clone().acquire_owned().await else {
                break;
            };
            if frame.operation == Operation::AppendMessage {
                let bytes = self.append(&frame).await;
                drop(permit);
                if tx.send(bytes).await.is_err() {
                    break;
                }
                continue;
            }
            let service = self.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let bytes = service.handle(frame).await;
                drop(permit);
                let _ = tx.send(bytes).await;
            });
        }
        drop(tx);
        let _ = writer.await;
        tracing::debug!("stream manager: {identity} disconnected");
        drop(permit);
    }

    async fn append(&self, frame: &Frame) -> Vec<u8> {
        let request: AppendMessageRequest = match wire::decode(&frame.payload) {
            Ok(r) => r,
            Err(e) => return invalid(Operation::AppendMessageResponse, &frame.payload, e),
        };
        let store = self.store.clone();
        let name = request.name;
        let payload = request.payload;
        let result = tokio::task::spawn_blocking(move || store.append(&name, &payload))
            .await
            .unwrap_or_else(|e| Err(StoreError::Failure(format!("append failed: {e}"))));
        let (status_code, error_message) = outcome(result.as_ref().map(|_| ()));
        wire::encode(
            Operation::AppendMessageResponse,
            &AppendMessageResponse {
                request_id: request.request_id,
                status: status_code,
                error_message,
                sequence_number: result.ok(),
            },
        )
    }

    async fn handle(&self, frame: Frame) -> Vec<u8> {
        use Operation::*;
        let payload = &frame.payload;
        match frame.operation {
            CreateMessageStream | UpdateMessageStream => {
                let reply = if frame.operation == CreateMessageStream {
                    CreateMessageStreamResponse
                } else {
                    UpdateMessageStreamResponse
                };
                let request: DefinitionRequest = match wire::decode(payload) {
                    Ok(r) => r,
                    Err(e) => return invalid(reply, payload, e),
                };
                let store = self.store.clone();
                let create = frame.operation == CreateMessageStream;
                let definition = request.definition;
                let result = tokio::task::spawn_blocking(move || {
                    if create {
                        store.create(definition)
                    } else {
                        store.update(definition)
                    }
                })
                .await
                .unwrap_or_else(|e| Err(StoreError::Failure(e.to_string())));
                encode_status(reply, request.request_id, result)
            }
            DeleteMessageStream => {
                let request: NameRequest = match wire::decode(payload) {
                    Ok(r) => r,
                    Err(e) => return invalid(DeleteMessageStreamResponse, payload, e),
                };
                let store = self.store.clone();
                let name = request.name;
                let result = tokio::task::spawn_blocking(move || store.delete(&name))
                    .await
                    .unwrap_or_else(|e| Err(StoreError::Failure(e.to_string())));
                encode_status(DeleteMessageStreamResponse, request.request_id, result)
            }
            DescribeMessageStream => {
                let request: NameRequest = match wire::decode(payload) {
                    Ok(r) => r,
                    Err(e) => return invalid(DescribeMessageStreamResponse, payload, e),
                };
                let result = self.store.describe(&request.name);
                let (status_code, error_message) = outcome(result.as_ref().map(|_| ()));
                wire::encode(
                    DescribeMessageStreamResponse,
                    &crate::model::DescribeMessageStreamResponse {
                        request_id: request.request_id,
                        status: status_code,
                        error_message,
                        message_stream_info: result.ok(),
                    },
                )
            }
            ListStreams => {
                let request: ListStreamsRequest = match wire::decode(payload) {
                    Ok(r) => r,
                    Err(e) => return invalid(ListStreamsResponse, payload, e),
                };
                wire::encode(
                    ListStreamsResponse,
                    &crate::model::ListStreamsResponse {
                        request_id: request.request_id,
                        status: ResponseStatusCode::Success,
                        error_message: None,
                        streams: self.store.list(),
                    },
                )
            }
            ReadMessages => {
                let request: ReadMessagesRequest = match wire::decode(payload) {
                    Ok(r) => r,
                    Err(e) => return invalid(ReadMessagesResponse, payload, e),
                };
                let request_id = request.request_id.clone();
                let (status_code, error_message, messages) = match self.read(request).await {
                    Ok(messages) => (ResponseStatusCode::Success, None, messages),
                    Err((code, message)) => (code, Some(message), Vec::new()),
                };
                wire::encode(
                    ReadMessagesResponse,
                    &crate::model::ReadMessagesResponse {
                        request_id,
                        messages,
                        status: status_code,
                        error_message,
                    },
                )
            }
            _ => {
                let message = format!("operation {} is not one this server serves", frame.op_byte);
                tracing::info!("stream manager: {message}");
                wire::encode(
                    UnknownOperationError,
                    &status(
                        wire::request_id_of(payload).unwrap_or_default(),
                        ResponseStatusCode::UnknownOperation,
                        message,
                    ),
                )
            }
        }
    }

    /// `read_messages`: waits up to `readTimeoutMillis` for
    /// `minMessageCount` messages from the start sequence number.
    async fn read(
        &self,
        request: ReadMessagesRequest,
    ) -> Result<Vec<Message>, (ResponseStatusCode, String)> {
        let o = request.read_messages_options.unwrap_or_default();
        let bad = |m: String| (ResponseStatusCode::InvalidRequest, m);
        let start = o.desired_start_sequence_number.unwrap_or(0);
        let min = o.min_message_count.unwrap_or(1);
        let max = o.max_message_count.unwrap_or(min);
        let timeout = o.read_timeout_millis.unwrap_or(0);
        if start < 0 {
            return Err(bad(format!(
                "desiredStartSequenceNumber must be at least 0, not {start}"
            )));
        }
        if !(1..=i32::MAX as i64).contains(&min) || !(1..=i32::MAX as i64).contains(&max) {
            return Err(bad(
                "minMessageCount and maxMessageCount must be 1 to 2147483647".into(),
            ));
        }
        if min > max {
            return Err(bad(format!(
                "minMessageCount ({min}) must not exceed maxMessageCount ({max})"
            )));
        }
        if !(0..=9_223_372_036_854).contains(&timeout) {
            return Err(bad(format!("readTimeoutMillis {timeout} is out of range")));
        }
        let deadline = Instant::now() + Duration::from_millis(timeout as u64);
        let name = request.stream_name;
        loop {
            let mut watch = self.store.watch(&name).map_err(store_status)?;
            // The newest sequence number before the read: every message up
            // to it is readable, so a read that stops short of it was cut
            // by the byte budget. (Compared with the value after the read,
            // an append landing meanwhile looked like a budget cut.)
            let newest_before = *watch.borrow_and_update();
            let store = self.store.clone();
            let n = name.clone();
            let budget = self.limits.max_response_bytes;
            let messages =
                tokio::task::spawn_blocking(move || store.read(&n, start, max as usize, budget))
                    .await
                    .map_err(|e| (ResponseStatusCode::UnknownFailure, e.to_string()))?
                    .map_err(store_status)?;
            if messages.len() as i64 >= min {
                return Ok(messages);
            }
            let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
            let more_waiting = messages
                .last()
                .is_some_and(|m| m.sequence_number < newest_before);
            if more_waiting && bytes > 0 {
                return Err((
                    ResponseStatusCode::ResponsePayloadTooLarge,
                    format!(
                        "{min} messages do not fit in one response of at most {budget} bytes (evergreen.streamManager.maxResponseBytes): ask for fewer"
                    ),
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err((
                    ResponseStatusCode::NotEnoughMessages,
                    format!(
                        "stream {name:?} has {} of the {min} messages asked for from sequence number {start}",
                        messages.len()
                    ),
                ));
            }
            if tokio::time::timeout(deadline - now, watch.changed())
                .await
                .is_ok_and(|r| r.is_err())
            {
                // The stream's sender is gone: it was deleted.
                return Err((
                    ResponseStatusCode::ResourceNotFound,
                    format!("stream {name:?} was deleted"),
                ));
            }
        }
    }
}

fn supported() -> Vec<String> {
    std::iter::once(PROTOCOL_VERSION)
        .chain(OLD_PROTOCOL_VERSIONS.iter().copied())
        .map(String::from)
        .collect()
}

fn server_version() -> String {
    format!("evergreen {}", env!("CARGO_PKG_VERSION"))
}

/// The protocol version to speak: the client's own if this server knows
/// it, else the first of its others this server knows.
fn choose_protocol(request: &ConnectRequest) -> Option<String> {
    let known = supported();
    std::iter::once(request.protocol_version.clone()?)
        .chain(
            request
                .other_supported_protocol_versions
                .clone()
                .unwrap_or_default(),
        )
        .find(|v| known.contains(v))
}

fn status(request_id: String, status: ResponseStatusCode, message: String) -> StatusResponse {
    StatusResponse {
        request_id,
        status,
        error_message: Some(message),
    }
}

fn store_status(e: StoreError) -> (ResponseStatusCode, String) {
    let code = match &e {
        StoreError::Invalid(_) => ResponseStatusCode::InvalidRequest,
        StoreError::NotFound(_) => ResponseStatusCode::ResourceNotFound,
        StoreError::UpdateNotAllowed(_) => ResponseStatusCode::UpdateNotAllowed,
        StoreError::OutOfMemory(_) => ResponseStatusCode::OutOfMemoryError,
        StoreError::ReadError(_) => ResponseStatusCode::MessageStoreReadError,
        StoreError::Failure(_) => ResponseStatusCode::UnknownFailure,
    };
    (code, e.to_string())
}

fn outcome(result: Result<(), &StoreError>) -> (ResponseStatusCode, Option<String>) {
    match result {
        Ok(()) => (ResponseStatusCode::Success, None),
        Err(e) => {
            let (code, message) = store_status(e.clone());
            (code, Some(message))
        }
    }
}

fn encode_status(reply: Operation, request_id: String, result: Result<(), StoreError>) -> Vec<u8> {
    let (status_code, error_message) = outcome(result.as_ref().copied());
    wire::encode(
        reply,
        &StatusResponse {
            request_id,
            status: status_code,
            error_message,
        },
    )
}

/// The answer to a payload that does not decode as its operation's request.
fn invalid(reply: Operation, payload: &[u8], why: String) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Invalid {
        request_id: String,
        status: ResponseStatusCode,
        error_message: String,
    }
    wire::encode(
        reply,
        &Invalid {
            request_id: wire::request_id_of(payload).unwrap_or_default(),
            status: ResponseStatusCode::InvalidRequest,
            error_message: format!("the request does not decode: {why}"),
        },
    )
}
