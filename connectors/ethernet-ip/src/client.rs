//! One EtherNet/IP session over TCP: connect, RegisterSession, then Read Tag
//! requests one at a time, each bounded by a timeout.
//!
//! Transport failures are kept apart from device answers: `read_tag`
//! returns `Err(ClientError)` when the connection can no longer be trusted
//! (the caller drops it and reconnects with backoff), and `Ok(Err(TagError))`
//! for a tag the device answered about (the connection stays). Never panics
//! on what a device sends.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cip::{self, CipStatus, CipValue, DecodeError, Header, TagPath, HEADER_LEN};

/// The Message Router's own timeout for an unconnected request (seconds),
/// carried in SendRRData; the client's timeout bounds the wait regardless.
const ROUTER_TIMEOUT_SECS: u16 = 5;

/// The connection is unusable: reconnect.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the device closed the connection")]
    Closed,
    #[error("RegisterSession refused: encapsulation status 0x{0:08X}")]
    Register(u32),
    #[error("{0}")]
    Protocol(String),
}

/// The device answered about this tag: a normal answer, published as `BAD`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TagError {
    #[error("{0}")]
    Cip(#[from] CipStatus),
    /// An encapsulation-level refusal of the request (cpppo's simulator
    /// answers an unknown tag so, then ends the session).
    #[error("encapsulation status 0x{code:08X} ({text})", code = .0, text = encapsulation_status_text(*.0))]
    Encapsulation(u32),
    #[error("{0}")]
    Reply(DecodeError),
}

/// The EtherNet/IP specification's names for encapsulation status codes.
pub fn encapsulation_status_text(status: u32) -> &'static str {
    match status {
        0x0001 => "invalid or unsupported command",
        0x0002 => "insufficient memory",
        0x0003 => "poorly formed or incorrect data",
        0x0064 => "invalid session handle",
        0x0065 => "invalid length",
        0x0069 => "unsupported protocol revision",
        // Not in the specification's list; cpppo uses it for a request
        // it could not process (such as an unknown tag).
        0x0008 => "request not processed",
        _ => "other error",
    }
}

/// An open, registered session.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    session: u32,
    next_context: u64,
    timeout: Duration,
    /// The device ended the session after its last answer: the next request
    /// needs a new connection.
    spent: bool,
}

impl Client {
    /// Connects to `host:port` and registers a session, within `timeout`.
    pub async fn connect(host: &str, port: u16, timeout: Duration) -> Result<Client, ClientError> {
        let addr = format!("{host}:{port}");
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(ClientError::Connect {
                    addr,
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(ClientError::Connect {
                    addr,
                    reason: format!("no connection within {timeout:?}"),
                })
            }
        };
        // One small request at a time: Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let mut client = Client {
            stream,
            session: 0,
            next_context: 1,
            timeout,
            spent: false,
        };
        let (header, _) = client
            .exchange(cip::REGISTER_SESSION, &cip::register_session_payload())
            .await?;
        if header.status != 0 {
            return Err(ClientError::Register(header.status));
        }
        client.session = header.session;
        Ok(client)
    }

    /// Bounds each later request by `timeout` instead of the connect timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Whether the device ended the session: reconnect before the next read.
    pub fn is_spent(&self) -> bool {
        self.spent
    }

    /// Reads one element of `path`.
    pub async fn read_tag(
        &mut self,
        path: &TagPath,
    ) -> Result<Result<CipValue, TagError>, ClientError> {
        let request = cip::read_tag_request(path);
        let payload = cip::send_rr_data_payload(&request, ROUTER_TIMEOUT_SECS);
        let (header, reply) = self.exchange(cip::SEND_RR_DATA, &payload).await?;
        if header.status != 0 {
            self.spent = true;
            return Ok(Err(TagError::Encapsulation(header.status)));
        }
        let data = match cip::unconnected_data(&reply) {
            Ok(d) => d,
            Err(e) => return Ok(Err(TagError::Reply(e))),
        };
        Ok(match cip::read_tag_reply(data) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(status)) => Err(TagError::Cip(status)),
            Err(e) => Err(TagError::Reply(e)),
        })
    }

    /// Ends the session politely (best effort; the socket closes anyway).
    pub async fn close(mut self) {
        let f = cip::frame(cip::UNREGISTER_SESSION, self.session, [0; 8], &[]);
        let _ = tokio::time::timeout(self.timeout, self.stream.write_all(&f)).await;
    }

    /// Sends one request and waits for its reply, matched by sender context.
    async fn exchange(
        &mut self,
        command: u16,
        payload: &[u8],
    ) -> Result<(Header, Vec<u8>), ClientError> {
        let context = self.next_context.to_le_bytes();
        self.next_context = self.next_context.wrapping_add(1);
        let frame = cip::frame(command, self.session, context, payload);
        let timeout = self.timeout;
        let result = tokio::time::timeout(timeout, async {
            self.stream.write_all(&frame).await?;
            read_frame(&mut self.stream).await
        })
        .await;
        let (header, reply) = match result {
            Ok(r) => r?,
            Err(_) => return Err(ClientError::Timeout(timeout)),
        };
        if header.command != command || header.context != context {
            return Err(ClientError::Protocol(format!(
                "reply out of step: command 0x{:04X} context {:02X?}, expected 0x{command:04X} {context:02X?}",
                header.command, header.context
            )));
        }
        Ok((header, reply))
    }
}

/// Reads one encapsulation message. The length field is 16 bits, so the
/// allocation is bounded by the protocol itself.
async fn read_frame(stream: &mut TcpStream) -> Result<(Header, Vec<u8>), ClientError> {
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match stream.read(&mut h[got..]).await? {
            0 => return Err(ClientError::Closed),
            n => got += n,
        }
    }
    let header = Header::decode(&h);
    let mut payload = vec![0u8; usize::from(header.length)];
    match stream.read_exact(&mut payload).await {
        Ok(_) => Ok((header, payload)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(ClientError::Protocol(format!(
                "the connection ended inside a reply ({} byte(s) announced)",
                header.length
            )))
        }
        Err(e) => Err(e.into()),
    }
}
