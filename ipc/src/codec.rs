//! The frame codec: a little-endian `u32` body length followed by a bincode 2 body.
//!
//! This is the only module that knows the body encoding, so it can be swapped
//! without touching the rest. It never trusts a length it reads: the length is
//! checked against the maximum before a byte of the body is allocated, and a
//! body must decode to exactly one message with nothing left over.
//! A clean end of stream *between* frames is `Ok(None)`; an end of stream
//! *inside* a frame is [`FrameError::Truncated`] (as in mini-redis).

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};

/// Default maximum body size: 1 MiB. Greengrass documents no local message
/// limit; AWS IoT Core caps cloud payloads at 128 KiB, so 1 MiB leaves room for
/// local traffic while bounding what one misbehaving child can make us buffer.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// The largest maximum anyone may configure (64 MiB). It is also bincode's
/// allocation limit, so a hostile length *inside* a body cannot make the
/// decoder reserve more than this either.
pub const MAX_FRAME_LIMIT: usize = 64 << 20;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Read buffer for the stdio pipes. Linux pipes hold 64 KiB, so one read can
/// drain a full pipe.
const IO_BUFFER: usize = 64 << 10;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LIMIT>()
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("stream ended inside a frame: {got} of {expected} bytes")]
    Truncated { got: usize, expected: usize },
    #[error("frame body is not a valid message: {0}")]
    Malformed(String),
    #[error("could not encode message: {0}")]
    Encode(String),
    #[error("i/o error on the frame stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Appends one frame holding `msg` to `out`.
///
/// Fails with [`FrameError::TooLarge`] (leaving `out` as it was) when the
/// encoded body is larger than `max`, so an oversized publish is refused at
/// the sender rather than killing the receiver.
pub fn encode_frame<T: Serialize>(
    msg: &T,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    if let Err(e) = bincode::serde::encode_into_std_write(msg, out, config()) {
        out.truncate(start);
        return Err(FrameError::Encode(e.to_string()));
    }
    let len = out.len() - start - HEADER_LEN;
    if len > max {
        out.truncate(start);
        return Err(FrameError::TooLarge { len, max });
    }
    // `len <= max <= MAX_FRAME_LIMIT < u32::MAX`, so the cast is exact.
    out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Decodes one body; the whole body must be one message.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (msg, used) = bincode::serde::decode_from_slice::<T, _>(body, config())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the message",
            body.len() - used
        )));
    }
    Ok(msg)
}

/// Decodes the first frame in `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame, or the
/// message and the number of bytes it took. The length is checked before the
/// body is looked at.
pub fn decode_frame<T: DeserializeOwned>(
    buf: &[u8],
    max: usize,
) -> Result<Option<(T, usize)>, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = body_len(header, max)?;
    let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((decode_body(body)?, HEADER_LEN + len)))
}

fn body_len(header: &[u8], max: usize) -> Result<usize, FrameError> {
    let mut bytes = [0u8; HEADER_LEN];
    bytes.copy_from_slice(header);
    let len = u32::from_le_bytes(bytes) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Reads frames from a byte stream (a child's stdout, or the child's stdin).
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: BufReader<R>,
    max: usize,
    body: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`; frames longer than `max` bytes are refused.
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner: BufReader::with_capacity(IO_BUFFER, inner),
            max: max.min(MAX_FRAME_LIMIT),
            body: Vec::new(),
        }
    }

    /// Reads the next message; `Ok(None)` on a clean end of stream.
    pub async fn read_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let mut header = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            let n = self.inner.read(&mut header[got..]).await?;
            if n == 0 {
                return if got == 0 {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated {
                        got,
                        expected: HEADER_LEN,
                    })
                };
            }
            got += n;
        }
        let len = body_len(&header, self.max)?;
        self.body.clear();
        self.body.resize(len, 0);
        let mut got = 0;
        while got < len {
            let n = self.inner.read(&mut self.body[got..]).await?;
            if n == 0 {
                return Err(FrameError::Truncated {
                    got: HEADER_LEN + got,
                    expected: HEADER_LEN + len,
                });
            }
            got += n;
        }
        let msg = decode_body(&self.body);
        // Do not keep a large buffer alive because of one large frame.
        if self.body.capacity() > IO_BUFFER {
            self.body = Vec::new();
        }
        msg.map(Some)
    }
}

/// Writes frames to a byte stream. Frames are buffered; call
/// [`FrameWriter::flush`] once a burst is written.
#[derive(Debug)]
pub struct FrameWriter<W: AsyncWrite> {
    inner: BufWriter<W>,
    max: usize,
    scratch: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps `inner`; messages whose body is longer than `max` are refused.
    pub fn new(inner: W, max: usize) -> Self {
        FrameWriter {
            inner: BufWriter::with_capacity(IO_BUFFER, inner),
            max: max.min(MAX_FRAME_LIMIT),
            scratch: Vec::new(),
        }
    }

    /// Encodes and buffers one frame.
    pub async fn write_frame<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        self.scratch.clear();
        encode_frame(msg, self.max, &mut self.scratch)?;
        self.inner.write_all(&self.scratch).await?;
        if self.scratch.capacity() > IO_BUFFER {
            self.scratch = Vec::new();
        }
        Ok(())
    }

    /// Sends everything buffered.
    pub async fn flush(&mut self) -> Result<(), FrameError> {
        self.inner.flush().await?;
        Ok(())
    }

    /// The underlying writer; anything still buffered is lost, so flush first.
    pub fn into_inner(self) -> W {
        self.inner.into_inner()
    }

    /// Writes one frame and flushes it.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        self.write_frame(msg).await?;
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Delivery, FromChild, ToChild, PROTOCOL_VERSION};

    fn deliver(n: usize) -> ToChild {
        ToChild::Deliver(Delivery {
            topic: "sensor/a".into(),
            payload: vec![7; n],
            source: "cloud".into(),
        })
    }

    #[tokio::test]
    async fn round_trip_several_frames_then_clean_eof() {
        let mut bytes = Vec::new();
        for n in [0, 1, 300, 70_000] {
            encode_frame(&deliver(n), DEFAULT_MAX_FRAME, &mut bytes).expect("encode");
        }
        let mut reader = FrameReader::new(&bytes[..], DEFAULT_MAX_FRAME);
        for n in [0, 1, 300, 70_000] {
            let got: Option<ToChild> = reader.read_frame().await.expect("read");
            assert_eq!(got, Some(deliver(n)));
        }
        let end: Option<ToChild> = reader.read_frame().await.expect("clean eof");
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn eof_inside_header_is_truncated() {
        let bytes = [5u8, 0];
        let mut reader = FrameReader::new(&bytes[..], DEFAULT_MAX_FRAME);
        let err = reader.read_frame::<ToChild>().await.expect_err("truncated");
        assert!(
            matches!(
                err,
                FrameError::Truncated {
                    got: 2,
                    expected: 4
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn eof_inside_body_is_truncated() {
        let mut bytes = Vec::new();
        encode_frame(&deliver(100), DEFAULT_MAX_FRAME, &mut bytes).expect("encode");
        bytes.truncate(bytes.len() - 10);
        let mut reader = FrameReader::new(&bytes[..], DEFAULT_MAX_FRAME);
        let err = reader.read_frame::<ToChild>().await.expect_err("truncated");
        assert!(matches!(err, FrameError::Truncated { .. }), "{err}");
    }

    #[tokio::test]
    async fn oversize_length_is_refused_before_reading_the_body() {
        // A length of 4 GiB - 1 with no body at all: if the reader allocated
        // or waited for the body, this would fail differently.
        let bytes = u32::MAX.to_le_bytes();
        let mut reader = FrameReader::new(&bytes[..], DEFAULT_MAX_FRAME);
        let err = reader.read_frame::<ToChild>().await.expect_err("too large");
        assert!(
            matches!(err, FrameError::TooLarge { len, max } if len == u32::MAX as usize && max == DEFAULT_MAX_FRAME),
            "{err}"
        );
    }

    #[test]
    fn oversize_message_is_refused_at_the_sender() {
        let mut out = vec![1, 2, 3];
        let err = encode_frame(&deliver(2000), 1000, &mut out).expect_err("too large");
        assert!(
            matches!(err, FrameError::TooLarge { max: 1000, .. }),
            "{err}"
        );
        assert_eq!(
            out,
            vec![1, 2, 3],
            "a refused frame leaves the buffer as it was"
        );
    }

    #[tokio::test]
    async fn garbage_body_is_malformed() {
        let mut bytes = 6u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa]);
        let mut reader = FrameReader::new(&bytes[..], DEFAULT_MAX_FRAME);
        let err = reader
            .read_frame::<FromChild>()
            .await
            .expect_err("malformed");
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut bytes = Vec::new();
        encode_frame(&FromChild::Ready, DEFAULT_MAX_FRAME, &mut bytes).expect("encode");
        bytes.push(0);
        bytes[0] += 1; // the length now covers the extra byte
        let err = decode_frame::<FromChild>(&bytes, DEFAULT_MAX_FRAME).expect_err("malformed");
        assert!(
            matches!(err, FrameError::Malformed(ref m) if m.contains("trailing")),
            "{err}"
        );
    }

    #[test]
    fn hostile_inner_length_does_not_allocate() {
        // A Publish whose topic claims 2^62 bytes: bincode's limit rejects it
        // instead of reserving memory.
        let mut body = vec![2u8]; // variant index of Publish
        body.push(253); // varint tag for u64
        body.extend_from_slice(&(1u64 << 62).to_le_bytes());
        let err = decode_body::<FromChild>(&body).expect_err("malformed");
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
    }

    #[test]
    fn partial_buffer_decodes_to_none() {
        let mut bytes = Vec::new();
        encode_frame(
            &ToChild::Hello {
                protocol: PROTOCOL_VERSION,
            },
            DEFAULT_MAX_FRAME,
            &mut bytes,
        )
        .expect("encode");
        for cut in 0..bytes.len() {
            let got = decode_frame::<ToChild>(&bytes[..cut], DEFAULT_MAX_FRAME)
                .expect("no error on a prefix");
            assert!(got.is_none());
        }
        let (msg, used) = decode_frame::<ToChild>(&bytes, DEFAULT_MAX_FRAME)
            .expect("whole")
            .expect("complete");
        assert_eq!(
            msg,
            ToChild::Hello {
                protocol: PROTOCOL_VERSION
            }
        );
        assert_eq!(used, bytes.len());
    }

    mod robustness {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            // Whatever a child writes, decoding returns a value or an error:
            // it never panics and never claims more bytes than it was given.
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                for max in [0usize, 16, DEFAULT_MAX_FRAME] {
                    if let Ok(Some((_, used))) = decode_frame::<FromChild>(&bytes, max) {
                        prop_assert!(used <= bytes.len());
                    }
                    let _ = decode_frame::<ToChild>(&bytes, max);
                }
            }

            // A valid frame with its body bytes flipped either still decodes
            // or is reported as malformed.
            #[test]
            fn corrupted_frames_are_errors_not_panics(
                topic in "[a-z/]{0,40}",
                payload in proptest::collection::vec(any::<u8>(), 0..200),
                flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            ) {
                let mut bytes = Vec::new();
                encode_frame(&FromChild::Publish { topic, payload }, DEFAULT_MAX_FRAME, &mut bytes).expect("encode");
                for (at, bits) in flips {
                    let i = HEADER_LEN + at % (bytes.len() - HEADER_LEN);
                    bytes[i] ^= bits;
                }
                match decode_frame::<FromChild>(&bytes, DEFAULT_MAX_FRAME) {
                    Ok(Some((_, used))) => prop_assert_eq!(used, bytes.len()),
                    Ok(None) => prop_assert!(false, "a whole frame is never incomplete"),
                    Err(FrameError::Malformed(_)) => {}
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
            }
        }
    }
}
