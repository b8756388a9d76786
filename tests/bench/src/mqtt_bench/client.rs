//! One bench client connection on tokio, MQTT 3.1.1 or 5: connect and wait for the CONNACK,
//! subscribe and wait for the SUBACK, write bytes, read whatever packets have arrived. The same
//! client for every broker, so what differs between columns is the broker. It owns a socket and
//! its framing, not what the bytes mean to a case.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::mqtt::{self, FrameError, Frames, Incoming, Version};

/// How long a CONNACK or SUBACK may take: far above any broker's answer on loopback, so it only
/// ends a wait on a broker that stopped answering.
const HANDSHAKE: Duration = Duration::from_secs(30);

/// Bytes read at once: a subscriber under a flood drains many packets per read.
const READ_BUF: usize = 64 * 1024;

/// Why a bench connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the broker's bytes are not MQTT: {0}")]
    Frame(#[from] FrameError),
    #[error("{client}: {what} refused with code {code:#04x}")]
    Refused {
        client: String,
        what: &'static str,
        code: u8,
    },
    #[error("{client}: the broker closed the connection before the {what}")]
    Closed { client: String, what: &'static str },
    #[error("{client}: no {what} within {HANDSHAKE:?}")]
    Timeout { client: String, what: &'static str },
}

/// A connected client.
#[derive(Debug)]
pub struct Conn {
    id: String,
    version: Version,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    frames: Frames,
    buf: Vec<u8>,
    pending: VecDeque<Incoming>,
    /// The server's Receive Maximum (v5 CONNACK); 65535 for v3, which has none.
    pub receive_maximum: u16,
}

impl Conn {
    /// Connects `client_id` at `version` with a clean session and waits for an accepting
    /// CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        client_id: &str,
        version: Version,
        keep_alive_secs: u16,
    ) -> Result<Conn, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        // Small packets one by one: without this, Nagle's algorithm adds the peer's delayed-ACK
        // time to latencies, for every broker alike but to none of them.
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        let mut conn = Conn {
            id: client_id.to_string(),
            version,
            reader,
            writer,
            frames: Frames::default(),
            buf: vec![0; READ_BUF],
            pending: VecDeque::new(),
            receive_maximum: u16::MAX,
        };
        conn.write(&version.connect(client_id, true, keep_alive_secs))
            .await?;
        // The CONNACK is read raw: its properties (v5) carry the Receive Maximum.
        let (first, body) = conn.next_raw("CONNACK").await?;
        match version.decode(first, &body)? {
            Incoming::ConnAck { code: 0, .. } => {}
            Incoming::ConnAck { code, .. } => return Err(conn.refused("CONNECT", code)),
            _ => return Err(conn.refused("CONNECT", first)),
        }
        if version == Version::V5 {
            conn.receive_maximum = mqtt::v5::connack_receive_maximum(&body);
        }
        Ok(conn)
    }

    fn refused(&self, what: &'static str, code: u8) -> ClientError {
        ClientError::Refused {
            client: self.id.clone(),
            what,
            code,
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Subscribes to `filter` at `qos` and waits for a SUBACK that grants it.
    pub async fn subscribe(&mut self, filter: &str, qos: u8) -> Result<(), ClientError> {
        self.write(&self.version.subscribe(1, filter, qos)).await?;
        loop {
            let (first, body) = self.next_raw("SUBACK").await?;
            match self.version.decode(first, &body)? {
                Incoming::SubAck { codes, .. } => {
                    return match codes.first() {
                        Some(code) if *code < 0x80 => Ok(()),
                        Some(code) => Err(self.refused("SUBSCRIBE", *code)),
                        None => Err(self.refused("SUBSCRIBE", 0xff)),
                    }
                }
                // A message may overtake the SUBACK; it is the case's, not the handshake's.
                other => self.pending.push_back(other),
            }
        }
    }

    /// The next whole packet, undecoded, within [`HANDSHAKE`].
    async fn next_raw(&mut self, what: &'static str) -> Result<(u8, Vec<u8>), ClientError> {
        let deadline = tokio::time::Instant::now() + HANDSHAKE;
        loop {
            if let Some(packet) = self.frames.next_packet()? {
                return Ok(packet);
            }
            let read = tokio::time::timeout_at(deadline, self.reader.read(&mut self.buf)).await;
            match read {
                Err(_) => {
                    return Err(ClientError::Timeout {
                        client: self.id.clone(),
                        what,
                    })
                }
                Ok(Ok(0)) => {
                    return Err(ClientError::Closed {
                        client: self.id.clone(),
                        what,
                    })
                }
                Ok(Ok(n)) => self.frames.push(&self.buf[..n]),
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// Waits for at least one packet and moves every whole packet that has arrived into `out`.
    /// `Ok(false)`: the broker closed the connection (nothing more will come).
    pub async fn read_some(&mut self, out: &mut Vec<Incoming>) -> Result<bool, ClientError> {
        out.extend(self.pending.drain(..));
        while out.is_empty() {
            let n = self.reader.read(&mut self.buf).await?;
            if n == 0 {
                return Ok(false);
            }
            self.frames.push(&self.buf[..n]);
            while let Some((first, body)) = self.frames.next_packet()? {
                out.push(self.version.decode(first, &body)?);
            }
        }
        Ok(true)
    }

    /// DISCONNECT, then the end of our side of the stream; the socket closes when this returns.
    /// Nothing is read after the DISCONNECT, as a client that leaves right away does not (what
    /// a broker still had for it is not waited for).
    pub async fn disconnect(mut self) -> std::io::Result<()> {
        self.writer.write_all(&mqtt::DISCONNECT).await?;
        self.writer.shutdown().await
    }

    /// DISCONNECT and the end of our side of the stream, as [`Conn::disconnect`], then waits
    /// (within `limit`) for the broker to close its side: it has read everything before the
    /// DISCONNECT. Whatever it still sends meanwhile is read and ignored.
    pub async fn disconnect_and_wait(mut self, limit: Duration) -> std::io::Result<()> {
        self.writer.write_all(&mqtt::DISCONNECT).await?;
        self.writer.shutdown().await?;
        let closed = tokio::time::timeout(limit, async {
            loop {
                match self.reader.read(&mut self.buf).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    // A reset after a DISCONNECT is a close too.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        closed.unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{}: the broker did not close the connection within {limit:?} of the DISCONNECT", self.id),
            ))
        })
    }
}
