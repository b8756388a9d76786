//! The device listener's TLS layer: rustls under ntex's filter trait, so that a refused handshake
//! reaches the device as a TLS alert and the log as its reason.
//!
//! ntex-tls's server filter (3.8) returns rustls's error from the read path while the handshake
//! runs; ntex then closes the socket at once, so the alert rustls queued (`unknown_ca`,
//! `certificate_required`, `bad_certificate`, …) was never written and the handshake helper saw
//! only "disconnected" (issue 19, defect 10). Here a failed handshake keeps its error, writes the
//! alert into the connection's write buffer, and [`accept`] flushes it before it reports the
//! error and the connection closes, as mosquitto (OpenSSL) does.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::task::Poll;

use ntex::io::{Filter, FilterBuf, FilterLayer, Io, Layer};
use ntex::server::rustls::PeerCert;
use ntex::util::{Buf, BufMut, BytePages, BytesMut};
use rustls::{ServerConfig, ServerConnection};

/// One device connection's TLS state.
#[derive(Debug)]
pub(super) struct DeviceTls {
    conn: RefCell<ServerConnection>,
    /// The error that ended the handshake, once rustls has refused it (its alert is already in
    /// the write buffer).
    failed: RefCell<Option<rustls::Error>>,
}

/// Why a device's TLS handshake did not complete.
#[derive(Debug)]
pub(super) enum HandshakeFailure {
    /// rustls refused it; the device was sent the matching alert.
    Refused(rustls::Error),
    /// The connection closed or failed before the handshake ended.
    Io(io::Error),
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeFailure::Refused(e) => write!(f, "{e} (TLS alert sent)"),
            HandshakeFailure::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Reads TLS records from the bytes the socket delivered.
struct Source<'a>(&'a mut BytesMut);

impl Read for Source<'_> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            // Not end of stream (rustls would take 0 as the peer's close): just nothing yet.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = dst.len().min(self.0.len());
        dst[..n].copy_from_slice(&self.0[..n]);
        self.0.advance(n);
        Ok(n)
    }
}

/// Writes TLS records into the connection's outgoing pages.
struct Sink<'a>(&'a mut BytePages);

impl Write for Sink<'_> {
    fn write(&mut self, src: &[u8]) -> io::Result<usize> {
        self.0.put_slice(src);
        Ok(src.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl DeviceTls {
    /// Moves every TLS record rustls has to send into the outgoing pages.
    fn write_records(conn: &mut ServerConnection, out: &mut BytePages) -> io::Result<()> {
        while conn.wants_write() {
            conn.write_tls(&mut Sink(out))?;
        }
        Ok(())
    }
}

impl FilterLayer for DeviceTls {
    fn query(&self, id: TypeId) -> Option<Box<dyn Any>> {
        if id != TypeId::of::<PeerCert<'static>>() {
            return None;
        }
        let conn = self.conn.borrow();
        let cert = conn.peer_certificates()?.first()?.clone().into_owned();
        Some(Box::new(PeerCert(cert)))
    }

    fn process_read_buf(&self, buf: &FilterBuf<'_>) -> io::Result<()> {
        let mut conn = self.conn.borrow_mut();
        if self.failed.borrow().is_some() {
            // Refused: what else arrives is not read (the connection is about to close).
            return buf.with_read_buffers(|src, _| {
                if let Some(src) = src {
                    src.clear();
                }
                Ok(())
            });
        }
        let mut closed = false;
        let result = buf.with_read_buffers(|src, dst| -> io::Result<()> {
            let Some(src) = src else { return Ok(()) };
            while !src.is_empty() {
                conn.read_tls(&mut Source(src))?;
                let state = match conn.process_new_packets() {
                    Ok(state) => state,
                    Err(e) => {
                        *self.failed.borrow_mut() = Some(e);
                        src.clear();
                        return Ok(());
                    }
                };
                let mut left = state.plaintext_bytes_to_read();
                closed |= state.peer_has_closed();
                let mut chunk = [0u8; 4096];
                while left > 0 {
                    let n = conn.reader().read(&mut chunk)?;
                    if n == 0 {
                        break;
                    }
                    dst.extend_from_slice(&chunk[..n]);
                    left = left.saturating_sub(n);
                }
            }
            Ok(())
        });
        // Handshake messages, a KeyUpdate answer, or the alert of a refusal.
        let written = buf.with_write_buffers(|_, out| Self::write_records(&mut conn, out));
        if closed {
            // close_notify: the device ends the connection.
            buf.io().close();
        }
        result.and(written)
    }

    fn process_write_buf(&self, buf: &FilterBuf<'_>) -> io::Result<()> {
        let mut conn = self.conn.borrow_mut();
        buf.with_write_buffers(|plain, out| {
            // The connection has no buffer limit: each page is taken whole and leaves at once
            // as records, so nothing accumulates inside rustls.
            while let Some(page) = plain.take() {
                conn.writer().write_all(&page)?;
            }
            Self::write_records(&mut conn, out)
        })
    }

    fn shutdown(&self, buf: &FilterBuf<'_>) -> io::Result<Poll<()>> {
        self.process_write_buf(buf)?;
        let mut conn = self.conn.borrow_mut();
        conn.send_close_notify();
        buf.with_write_buffers(|_, out| Self::write_records(&mut conn, out))?;
        Ok(Poll::Ready(()))
    }
}

/// Runs the server side of a device's TLS handshake over `io`. A refusal is flushed to the
/// device (its alert) before it is returned; the caller's deadline bounds the whole.
pub(super) async fn accept<F: Filter>(
    io: Io<F>,
    config: Arc<ServerConfig>,
) -> Result<Io<Layer<DeviceTls, F>>, HandshakeFailure> {
    let mut conn =
        ServerConnection::new(config).map_err(|e| HandshakeFailure::Io(io::Error::other(e)))?;
    conn.set_buffer_limit(None);
    let io = io.add_filter(DeviceTls {
        conn: RefCell::new(conn),
        failed: RefCell::new(None),
    });
    loop {
        let failed = io.filter().failed.borrow_mut().take();
        if let Some(e) = failed {
            // Best effort: a device that already went away gets no alert.
            let _ = io.flush(true).await;
            return Err(HandshakeFailure::Refused(e));
        }
        io.flush(false).await.map_err(HandshakeFailure::Io)?;
        let handshaking = io.filter().conn.borrow().is_handshaking();
        if !handshaking {
            return Ok(io);
        }
        match io.read_notify().await {
            Ok(Some(())) => {}
            Ok(None) => {
                return Err(HandshakeFailure::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed the connection during the TLS handshake",
                )))
            }
            Err(e) => return Err(HandshakeFailure::Io(e)),
        }
    }
}
