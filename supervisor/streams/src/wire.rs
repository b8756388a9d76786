//! The stream manager's framing, as the SDK client writes and reads it:
//! one connect-version byte each way at the start of a connection, then
//! frames of a 4-byte big-endian length (operation byte + payload), the
//! operation byte and a CBOR payload.
//!
//! Like mini-redis's `Connection`: a clean end between frames is
//! `Ok(None)`, an end inside one is an error, and a length above the
//! maximum is refused before anything is allocated for it.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::model::Operation;

/// The connect version the SDK (1.6.1, "SDK 1.1.1") sends and expects.
pub const CONNECT_VERSION: u8 = 1;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub operation: Operation,
    /// The operation byte as received (an unknown one is kept for the log).
    pub op_byte: u8,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed inside a frame")]
    Truncated,
    #[error("frame of {len} bytes is larger than the {max}-byte limit")]
    TooLarge {
        len: u64,
        max: usize,
        /// The request id read from the start of the refused payload, if it
        /// could be (the SDK writes `requestId` first), so the refusal can
        /// name the request it answers.
        request_id: Option<String>,
    },
    #[error("frame length {0} is not valid")]
    BadLength(i32),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame; `Ok(None)` at a clean end of the stream. A frame
/// above `max` bytes is read past (so the connection stays in step) but
/// not kept.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Frame>, WireError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(WireError::Truncated)
            };
        }
        got += n;
    }
    let len = i32::from_be_bytes(len);
    if len < 1 {
        return Err(WireError::BadLength(len));
    }
    let op_byte = read_u8(r).await?;
    let size = (len - 1) as usize;
    if size > max {
        // Keep the head to find the request id; skip the rest in chunks.
        let head_len = size.min(512);
        let mut head = vec![0u8; head_len];
        read_exact(r, &mut head).await?;
        let mut left = (size - head_len) as u64;
        let mut sink = vec![0u8; 64 << 10];
        while left > 0 {
            let n = left.min(sink.len() as u64) as usize;
            read_exact(r, &mut sink[..n]).await?;
            left -= n as u64;
        }
        return Err(WireError::TooLarge {
            len: size as u64,
            max,
            request_id: leading_request_id(&head),
        });
    }
    let mut payload = vec![0u8; size];
    read_exact(r, &mut payload).await?;
    Ok(Some(Frame {
        operation: Operation::from_byte(op_byte),
        op_byte,
        payload,
    }))
}

/// Reads one byte; an end of stream is [`WireError::Truncated`].
pub async fn read_u8<R: AsyncRead + Unpin>(r: &mut R) -> Result<u8, WireError> {
    let mut b = [0u8; 1];
    read_exact(r, &mut b).await?;
    Ok(b[0])
}

async fn read_exact<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), WireError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(WireError::Truncated),
        Err(e) => Err(e.into()),
    }
}

/// Encodes `body` as a frame of `operation`.
pub fn encode<T: Serialize>(operation: Operation, body: &T) -> Vec<u8> {
    let mut out = vec![0u8; 5];
    // Writing CBOR into a Vec fails only for values serde cannot express,
    // which the model has none of.
    if let Err(e) = ciborium::into_writer(body, &mut out) {
        tracing::error!("stream manager: cannot encode a {operation:?} frame: {e}");
    }
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out[4] = operation as u8;
    out
}

/// Writes `body` as one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    operation: Operation,
    body: &T,
) -> std::io::Result<()> {
    w.write_all(&encode(operation, body)).await
}

/// Decodes a frame's payload.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    ciborium::from_reader(payload).map_err(|e| e.to_string())
}

/// Any request's `requestId`, from a payload that otherwise does not
/// decode (a wrong shape, an unknown operation), so the error can still
/// be matched to the request by the client.
pub fn request_id_of(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Traceable {
        #[serde(rename = "requestId")]
        request_id: String,
    }
    decode::<Traceable>(payload)
        .ok()
        .map(|t| t.request_id)
        .or_else(|| leading_request_id(payload))
}

/// The `requestId` of a CBOR map whose first entry it is (the SDK's
/// `as_dict` order), read from the first bytes of a payload alone.
fn leading_request_id(head: &[u8]) -> Option<String> {
    let mut i = match *head.first()? {
        0xa1..=0xb7 => 1,
        0xb8 => 2,
        0xb9 => 3,
        0xba => 5,
        0xbf => 1,
        _ => return None,
    };
    let key = b"requestId";
    if *head.get(i)? != 0x60 + key.len() as u8 || head.get(i + 1..i + 1 + key.len())? != key {
        return None;
    }
    i += 1 + key.len();
    let (len, skip) = match *head.get(i)? {
        b @ 0x60..=0x77 => ((b - 0x60) as usize, 1),
        0x78 => (*head.get(i + 1)? as usize, 2),
        0x79 => (
            u16::from_be_bytes([*head.get(i + 1)?, *head.get(i + 2)?]) as usize,
            3,
        ),
        _ => return None,
    };
    let text = head.get(i + skip..i + skip + len)?;
    String::from_utf8(text.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppendMessageRequest, NameRequest};

    #[tokio::test]
    async fn a_frame_round_trips_and_a_clean_end_is_none() {
        let body = NameRequest {
            request_id: "r1".into(),
            name: "s".into(),
        };
        let bytes = encode(Operation::DescribeMessageStream, &body);
        let mut r = &bytes[..];
        let frame = read_frame(&mut r, 1 << 20)
            .await
            .expect("test")
            .expect("test");
        assert_eq!(frame.operation, Operation::DescribeMessageStream);
        let back: NameRequest = decode(&frame.payload).expect("test");
        assert_eq!(back.name, "s");
        assert!(read_frame(&mut r, 1 << 20).await.expect("test").is_none());
    }

    #[tokio::test]
    async fn an_end_inside_a_frame_is_an_error() {
        let bytes = encode(
            Operation::ListStreams,
            &NameRequest {
                request_id: "r".into(),
                name: "n".into(),
            },
        );
        let mut r = &bytes[..bytes.len() - 1];
        assert!(matches!(
            read_frame(&mut r, 1 << 20).await,
            Err(WireError::Truncated)
        ));
    }

    #[tokio::test]
    async fn an_oversized_frame_is_skipped_and_names_its_request() {
        let big = AppendMessageRequest {
            request_id: "req-7".into(),
            name: "s".into(),
            payload: vec![7; 10_000],
        };
        let mut bytes = encode(Operation::AppendMessage, &big);
        bytes.extend(encode(
            Operation::ListStreams,
            &NameRequest {
                request_id: "next".into(),
                name: "n".into(),
            },
        ));
        let mut r = &bytes[..];
        match read_frame(&mut r, 1000).await {
            Err(WireError::TooLarge { request_id, .. }) => {
                assert_eq!(request_id.as_deref(), Some("req-7"))
            }
            other => panic!("{other:?}"),
        }
        let next = read_frame(&mut r, 1000).await.expect("test").expect("test");
        assert_eq!(request_id_of(&next.payload).as_deref(), Some("next"));
    }

    #[tokio::test]
    async fn a_negative_length_is_refused() {
        let bytes = (-5i32).to_be_bytes();
        let mut r = &bytes[..];
        assert!(matches!(
            read_frame(&mut r, 10).await,
            Err(WireError::BadLength(-5))
        ));
    }
}
