//! The reader task: frames from the child's stdout (`Ready`, `Publish`,
//! `Done`, `Log`, and the secret, credential and shadow requests), routed
//! or answered without ever blocking the actors' thread.

mod shadow;

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use evergreen_ipc::link::{expect_child_hello, variant_name, HandshakeError};
use evergreen_ipc::{FrameReader, FromChild, LogLevel};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use super::events::{InstanceEvent, InstanceEventKind};
use super::writer::WriterCmd;
use crate::inflight::SharedInFlight;
use crate::logs::ComponentLog;
use crate::router::Router;
use shadow::{shadow_request, ShadowJob};

/// Frames a reader routes before letting other tasks run.
const READER_YIELD_EVERY: usize = 32;

/// What the reader needs to route and answer the child's frames.
pub(super) struct ReaderEnv {
    pub(super) arn: Arc<str>,
    pub(super) router: Arc<Router>,
    pub(super) log: ComponentLog,
    pub(super) cmds: mpsc::WeakUnboundedSender<WriterCmd>,
    pub(super) max_frame: usize,
    pub(super) inflight: SharedInFlight,
    /// `Some` for a connector whose manifest sets `aws`.
    pub(super) aws: Option<Arc<dyn crate::services::CredentialSource>>,
    /// Answers `GetSecret` from the secrets granted to this component.
    pub(super) secrets: Arc<dyn crate::services::SecretSource>,
    /// Answers `Shadow`; `None` when the runtime has no shadow service.
    pub(super) shadow: Option<Arc<dyn crate::services::ShadowService>>,
}

impl ReaderEnv {
    /// Hands `cmd` to the writer, unless the child's writer is gone.
    fn reply(&self, cmd: WriterCmd) {
        if let Some(tx) = self.cmds.upgrade() {
            let _ = tx.send(cmd);
        }
    }
}

/// Reads the child's stdout until it closes or breaks the protocol.
pub(super) async fn reader_task<R: AsyncRead + Unpin>(
    stdout: R,
    addr: Recipient<InstanceEvent>,
    generation: u64,
    env: ReaderEnv,
) {
    let violation = |why: String| {
        addr.do_send(InstanceEvent {
            generation,
            kind: InstanceEventKind::Violation(why),
        })
    };
    let mut reader = FrameReader::new(stdout, env.max_frame);
    let mut since_yield = 0usize;
    // The child's shadow task, started at its first shadow request.
    let mut shadow_jobs: Option<mpsc::Sender<ShadowJob>> = None;
    match expect_child_hello(&mut reader).await {
        Ok(()) => {}
        // The child exited before saying anything; the waiter reports it.
        Err(HandshakeError::Closed) => return,
        Err(e) => return violation(format!("handshake failed: {e}")),
    }
    loop {
        // One pipe read can hold hundreds of small frames, and routing them
        // never waits; yield now and then so the targets' writer tasks (on
        // this same thread) drain their queues during a burst instead of
        // after it, when the queues may already have overflowed.
        since_yield += 1;
        if since_yield >= READER_YIELD_EVERY {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
        let msg = match reader.read_frame::<FromChild>().await {
            Ok(Some(msg)) => msg,
            Ok(None) => return,
            Err(e) => return violation(format!("bad frame on stdout: {e}")),
        };
        match msg {
            FromChild::Ready => {
                env.reply(WriterCmd::Ready);
                addr.do_send(InstanceEvent {
                    generation,
                    kind: InstanceEventKind::Ready,
                });
            }
            FromChild::Publish { topic, payload } => {
                if let Err(e) = env.router.publish(&env.arn, &topic, Arc::from(payload)) {
                    let reason = e.to_string();
                    env.log.write(
                        LogLevel::Warn,
                        &format!("publish on {topic:?} refused: {reason}"),
                    );
                    env.reply(WriterCmd::Refused { topic, reason });
                }
            }
            // A `Done` with nothing outstanding is harmless; `finish` ignores it.
            FromChild::Done => env.inflight.borrow_mut().finish(Instant::now()),
            FromChild::Log { level, message } => {
                env.log.write(level, &message);
            }
            FromChild::GetSecret {
                request_id,
                secret_id,
                version_stage,
            } => {
                // Answered at once from memory (one AES-GCM open); a refusal
                // is logged here and in the runtime log, naming the id only.
                let result = env
                    .secrets
                    .get(&env.arn, &secret_id, version_stage.as_deref())
                    .map_err(|refusal| {
                        let line = format!("secret request refused: {}", refusal.message);
                        env.log.write(LogLevel::Warn, &line);
                        tracing::warn!("{}: {line}", env.arn);
                        // With the error code first, as Secrets Manager names the case.
                        refusal.to_string()
                    });
                if let Ok(value) = &result {
                    env.log.write(
                        LogLevel::Debug,
                        &format!(
                            "secret {} read (version {}, stages {})",
                            value.arn,
                            value.version_id,
                            value.version_stages.join(",")
                        ),
                    );
                }
                env.reply(WriterCmd::Secret { request_id, result });
            }
            FromChild::GetCredentials { request_id } => match env.aws.clone() {
                None => {
                    env.log.write(
                        LogLevel::Warn,
                        "AWS credentials requested, refused: this component's manifest does not declare AWS access",
                    );
                    env.reply(WriterCmd::Credentials {
                        request_id,
                        result: Err("this component may not use the core's AWS credentials".into()),
                    });
                }
                Some(aws) => {
                    // The chain may have to call out (the IoT credentials
                    // provider); answer from a task so the reader keeps going.
                    let cmds = env.cmds.clone();
                    let answer = aws.credentials();
                    actix_rt::spawn(async move {
                        let result = answer.await;
                        if let Some(tx) = cmds.upgrade() {
                            let _ = tx.send(WriterCmd::Credentials { request_id, result });
                        }
                    });
                }
            },
            FromChild::Shadow {
                request_id,
                thing_name,
                op,
                payload,
            } => shadow_request(&env, &mut shadow_jobs, request_id, &thing_name, op, payload),
            other @ FromChild::Hello { .. } => {
                return violation(format!(
                    "unexpected {} after the handshake",
                    variant_name(&other)
                ))
            }
        }
    }
}
