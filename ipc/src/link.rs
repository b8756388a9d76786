//! Role-specific senders and the version handshake.
//!
//! The supervisor writes only [`ToChild`] frames and a child writes only
//! [`FromChild`] frames; each side gets a sender whose methods name what it
//! may say (`link.ready()`, `link.publish(..)`) instead of a raw
//! `send(message)`. The handshake is: the supervisor sends `Hello` and
//! `Configure` at once; the child answers `Hello` (always, even when the
//! versions differ, so the supervisor can report the mismatch), then `Ready`.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::codec::{FrameError, FrameReader, FrameWriter};
use crate::message::{
    AwsCredentials, ComponentConfig, Delivery, DeliveryRef, FromChild, Invocation, InvokeOutcome,
    LogLevel, SecretValue, ShadowOp, ToChild, ToChildRef, PROTOCOL_VERSION,
};

/// Why the handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("protocol version mismatch: we speak {ours}, the peer speaks {theirs}")]
    VersionMismatch { ours: u32, theirs: u32 },
    #[error("expected {expected} but received {got}")]
    Unexpected { expected: &'static str, got: String },
    #[error("the peer closed the stream during the handshake")]
    Closed,
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// What the supervisor may say to a child.
#[derive(Debug)]
pub struct SupervisorLink<W: AsyncWrite> {
    writer: FrameWriter<W>,
}

impl<W: AsyncWrite + Unpin> SupervisorLink<W> {
    pub fn new(writer: W, max_frame: usize) -> Self {
        SupervisorLink {
            writer: FrameWriter::new(writer, max_frame),
        }
    }

    /// Sends `Hello` and the configuration, flushed.
    pub async fn start(&mut self, config: &ComponentConfig) -> Result<(), FrameError> {
        self.writer
            .write_frame(&ToChild::Hello {
                protocol: PROTOCOL_VERSION,
            })
            .await?;
        self.writer
            .write_frame(&ToChild::Configure(config.clone()))
            .await?;
        self.writer.flush().await
    }

    /// Buffers a delivery; call [`SupervisorLink::flush`] after a burst.
    pub async fn deliver(&mut self, delivery: Delivery) -> Result<(), FrameError> {
        self.writer.write_frame(&ToChild::Deliver(delivery)).await
    }

    /// Buffers a delivery from borrowed parts: the same frame as
    /// [`SupervisorLink::deliver`] without first copying the message into an
    /// owned [`Delivery`] (the router shares one payload among its targets).
    pub async fn deliver_parts(
        &mut self,
        topic: &str,
        payload: &[u8],
        source: &str,
    ) -> Result<(), FrameError> {
        self.writer
            .write_frame(&ToChildRef::Deliver(DeliveryRef {
                topic,
                payload,
                source,
            }))
            .await
    }

    pub async fn shutdown(&mut self, deadline_ms: u64) -> Result<(), FrameError> {
        self.writer.send(&ToChild::Shutdown { deadline_ms }).await
    }

    pub async fn secret(
        &mut self,
        request_id: u64,
        result: Result<SecretValue, String>,
    ) -> Result<(), FrameError> {
        self.writer
            .send(&ToChild::Secret { request_id, result })
            .await
    }

    pub async fn credentials(
        &mut self,
        request_id: u64,
        result: Result<AwsCredentials, String>,
    ) -> Result<(), FrameError> {
        self.writer
            .send(&ToChild::Credentials { request_id, result })
            .await
    }

    pub async fn shadow_result(
        &mut self,
        request_id: u64,
        accepted: bool,
        payload: Vec<u8>,
    ) -> Result<(), FrameError> {
        self.writer
            .send(&ToChild::ShadowResult {
                request_id,
                accepted,
                payload,
            })
            .await
    }

    /// Sends a function's invoke of a service the child serves.
    pub async fn invoke(&mut self, invocation: Invocation) -> Result<(), FrameError> {
        self.writer.send(&ToChild::Invoke(invocation)).await
    }

    /// Answers the child's own invoke.
    pub async fn invoke_result(
        &mut self,
        request_id: u64,
        result: Result<InvokeOutcome, String>,
    ) -> Result<(), FrameError> {
        self.writer
            .send(&ToChild::InvokeResult { request_id, result })
            .await
    }

    /// Tells the child a publish was refused (a wildcard in the topic, an
    /// oversize payload).
    pub async fn refused(&mut self, topic: String, reason: String) -> Result<(), FrameError> {
        self.writer.send(&ToChild::Refused { topic, reason }).await
    }

    pub async fn flush(&mut self) -> Result<(), FrameError> {
        self.writer.flush().await
    }

    /// The underlying writer (tests compare what was written).
    pub fn into_inner(self) -> W {
        self.writer.into_inner()
    }
}

/// Reads the child's `Hello` and checks its version. The supervisor calls
/// this right after [`SupervisorLink::start`].
pub async fn expect_child_hello<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
) -> Result<(), HandshakeError> {
    match reader.read_frame::<FromChild>().await? {
        None => Err(HandshakeError::Closed),
        Some(FromChild::Hello { protocol }) if protocol == PROTOCOL_VERSION => Ok(()),
        Some(FromChild::Hello { protocol }) => Err(HandshakeError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: protocol,
        }),
        Some(other) => Err(HandshakeError::Unexpected {
            expected: "Hello",
            got: variant_name(&other).to_string(),
        }),
    }
}

/// What a child may say to the supervisor.
#[derive(Debug)]
pub struct ChildLink<W: AsyncWrite> {
    writer: FrameWriter<W>,
}

impl<W: AsyncWrite + Unpin> ChildLink<W> {
    pub fn new(writer: W, max_frame: usize) -> Self {
        ChildLink {
            writer: FrameWriter::new(writer, max_frame),
        }
    }

    pub async fn hello(&mut self) -> Result<(), FrameError> {
        self.writer
            .send(&FromChild::Hello {
                protocol: PROTOCOL_VERSION,
            })
            .await
    }

    pub async fn ready(&mut self) -> Result<(), FrameError> {
        self.writer.send(&FromChild::Ready).await
    }

    /// Buffers a publish; flush after a burst.
    pub async fn publish(&mut self, topic: String, payload: Vec<u8>) -> Result<(), FrameError> {
        self.writer
            .write_frame(&FromChild::Publish { topic, payload })
            .await
    }

    /// Buffers `Done`: the oldest unacknowledged delivery is handled.
    pub async fn done(&mut self) -> Result<(), FrameError> {
        self.writer.write_frame(&FromChild::Done).await
    }

    pub async fn log(&mut self, level: LogLevel, message: String) -> Result<(), FrameError> {
        self.writer
            .write_frame(&FromChild::Log { level, message })
            .await
    }

    pub async fn get_secret(
        &mut self,
        request_id: u64,
        secret_id: String,
        version_stage: Option<String>,
    ) -> Result<(), FrameError> {
        self.writer
            .send(&FromChild::GetSecret {
                request_id,
                secret_id,
                version_stage,
            })
            .await
    }

    pub async fn get_credentials(&mut self, request_id: u64) -> Result<(), FrameError> {
        self.writer
            .send(&FromChild::GetCredentials { request_id })
            .await
    }

    pub async fn shadow(
        &mut self,
        request_id: u64,
        thing_name: String,
        op: ShadowOp,
        payload: Vec<u8>,
    ) -> Result<(), FrameError> {
        self.writer
            .send(&FromChild::Shadow {
                request_id,
                thing_name,
                op,
                payload,
            })
            .await
    }

    /// Sends one of the frames that need no dedicated method (the service
    /// frames: `Serve`, `InvokeResult`, `Invoke`).
    pub async fn send(&mut self, msg: &FromChild) -> Result<(), FrameError> {
        self.writer.send(msg).await
    }

    pub async fn flush(&mut self) -> Result<(), FrameError> {
        self.writer.flush().await
    }
}

/// The child's half of the handshake: reads `Hello`, answers `Hello`, and
/// returns the configuration. On a version mismatch it still answers, so
/// the supervisor logs both versions, then fails.
pub async fn child_handshake<R, W>(
    reader: &mut FrameReader<R>,
    link: &mut ChildLink<W>,
) -> Result<ComponentConfig, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let theirs = match reader.read_frame::<ToChild>().await? {
        None => return Err(HandshakeError::Closed),
        Some(ToChild::Hello { protocol }) => protocol,
        Some(other) => {
            return Err(HandshakeError::Unexpected {
                expected: "Hello",
                got: to_child_name(&other).to_string(),
            })
        }
    };
    link.hello().await?;
    if theirs != PROTOCOL_VERSION {
        return Err(HandshakeError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs,
        });
    }
    match reader.read_frame::<ToChild>().await? {
        None => Err(HandshakeError::Closed),
        Some(ToChild::Configure(config)) => Ok(config),
        Some(other) => Err(HandshakeError::Unexpected {
            expected: "Configure",
            got: to_child_name(&other).to_string(),
        }),
    }
}

/// The variant's name, for error messages that must not echo payloads.
pub fn variant_name(msg: &FromChild) -> &'static str {
    match msg {
        FromChild::Hello { .. } => "Hello",
        FromChild::Ready => "Ready",
        FromChild::Publish { .. } => "Publish",
        FromChild::Log { .. } => "Log",
        FromChild::GetSecret { .. } => "GetSecret",
        FromChild::Shadow { .. } => "Shadow",
        FromChild::Done => "Done",
        FromChild::GetCredentials { .. } => "GetCredentials",
        FromChild::Serve { .. } => "Serve",
        FromChild::InvokeResult { .. } => "InvokeResult",
        FromChild::Invoke { .. } => "Invoke",
    }
}

fn to_child_name(msg: &ToChild) -> &'static str {
    match msg {
        ToChild::Hello { .. } => "Hello",
        ToChild::Configure(_) => "Configure",
        ToChild::Deliver(_) => "Deliver",
        ToChild::Shutdown { .. } => "Shutdown",
        ToChild::Secret { .. } => "Secret",
        ToChild::ShadowResult { .. } => "ShadowResult",
        ToChild::Refused { .. } => "Refused",
        ToChild::Credentials { .. } => "Credentials",
        ToChild::Invoke(_) => "Invoke",
        ToChild::InvokeResult { .. } => "InvokeResult",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_frame, DEFAULT_MAX_FRAME};
    use crate::message::ComponentKind;
    use std::collections::BTreeMap;

    fn config() -> ComponentConfig {
        ComponentConfig {
            arn: "arn:aws:lambda:us-east-1:123456789012:function:f:1".into(),
            kind: ComponentKind::Function,
            id: "f".into(),
            parameters: BTreeMap::new(),
            resources: BTreeMap::new(),
            secrets: vec![],
            log_level: LogLevel::Info,
            core_thing_name: "core".into(),
            region: "us-east-1".into(),
            endpoints: Default::default(),
        }
    }

    #[tokio::test]
    async fn handshake_round_trip() {
        let (sup_w, child_r) = tokio::io::duplex(4096);
        let (child_w, sup_r) = tokio::io::duplex(4096);
        let mut sup = SupervisorLink::new(sup_w, DEFAULT_MAX_FRAME);
        sup.start(&config()).await.expect("start");
        let mut child_reader = FrameReader::new(child_r, DEFAULT_MAX_FRAME);
        let mut child = ChildLink::new(child_w, DEFAULT_MAX_FRAME);
        let got = child_handshake(&mut child_reader, &mut child)
            .await
            .expect("child side");
        assert_eq!(got, config());
        let mut sup_reader = FrameReader::new(sup_r, DEFAULT_MAX_FRAME);
        expect_child_hello(&mut sup_reader)
            .await
            .expect("supervisor side");
    }

    #[tokio::test]
    async fn wrong_protocol_version_is_refused_on_both_sides() {
        let mut bytes = Vec::new();
        encode_frame(
            &ToChild::Hello { protocol: 99 },
            DEFAULT_MAX_FRAME,
            &mut bytes,
        )
        .expect("encode");
        let mut reader = FrameReader::new(&bytes[..], DEFAULT_MAX_FRAME);
        let (w, r) = tokio::io::duplex(4096);
        let mut link = ChildLink::new(w, DEFAULT_MAX_FRAME);
        let err = child_handshake(&mut reader, &mut link)
            .await
            .expect_err("mismatch");
        assert!(
            matches!(
                err,
                HandshakeError::VersionMismatch {
                    ours: PROTOCOL_VERSION,
                    theirs: 99
                }
            ),
            "{err}"
        );
        // The child still told the supervisor its own version.
        drop(link);
        let mut sup_reader = FrameReader::new(r, DEFAULT_MAX_FRAME);
        expect_child_hello(&mut sup_reader)
            .await
            .expect("child hello was sent");

        let mut bytes = Vec::new();
        encode_frame(
            &FromChild::Hello { protocol: 7 },
            DEFAULT_MAX_FRAME,
            &mut bytes,
        )
        .expect("encode");
        let mut reader = FrameReader::new(&bytes[..], DEFAULT_MAX_FRAME);
        let err = expect_child_hello(&mut reader).await.expect_err("mismatch");
        assert!(
            matches!(err, HandshakeError::VersionMismatch { theirs: 7, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn borrowed_delivery_is_the_same_frame_as_the_owned_one() {
        for n in [0usize, 1, 127, 128, 300, 70_000] {
            let d = Delivery {
                topic: "sensor/a".into(),
                payload: (0..n).map(|i| i as u8).collect(),
                source: "arn:aws:lambda:r:1:function:f:1".into(),
            };
            let mut owned = SupervisorLink::new(Vec::new(), DEFAULT_MAX_FRAME);
            owned.deliver(d.clone()).await.expect("owned");
            owned.flush().await.expect("flush");
            let mut borrowed = SupervisorLink::new(Vec::new(), DEFAULT_MAX_FRAME);
            borrowed
                .deliver_parts(&d.topic, &d.payload, &d.source)
                .await
                .expect("borrowed");
            borrowed.flush().await.expect("flush");
            let (a, b) = (owned.into_inner(), borrowed.into_inner());
            assert_eq!(a, b, "payload of {n} bytes");
            let (msg, _) = crate::codec::decode_frame::<ToChild>(&b, DEFAULT_MAX_FRAME)
                .expect("decodes")
                .expect("whole");
            assert_eq!(msg, ToChild::Deliver(d));
        }
    }

    #[tokio::test]
    async fn first_frame_must_be_hello() {
        let mut bytes = Vec::new();
        encode_frame(&FromChild::Ready, DEFAULT_MAX_FRAME, &mut bytes).expect("encode");
        let mut reader = FrameReader::new(&bytes[..], DEFAULT_MAX_FRAME);
        let err = expect_child_hello(&mut reader)
            .await
            .expect_err("unexpected");
        assert!(
            matches!(
                err,
                HandshakeError::Unexpected {
                    expected: "Hello",
                    ..
                }
            ),
            "{err}"
        );
        let mut reader = FrameReader::new(&[][..], DEFAULT_MAX_FRAME);
        let err = expect_child_hello(&mut reader).await.expect_err("closed");
        assert!(matches!(err, HandshakeError::Closed), "{err}");
    }
}
