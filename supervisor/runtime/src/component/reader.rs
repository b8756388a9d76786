//! The reader task: frames from the child's stdout (`Ready`, `Publish`,
//! `Done`, `Log`, the secret, credential and shadow requests, and the local
//! service frames `Serve`, `InvokeResult` and `Invoke`), routed or answered
//! without ever blocking the actors' thread.

mod shadow;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use evergreen_ipc::link::{expect_child_hello, variant_name, HandshakeError};
use evergreen_ipc::{FrameReader, FromChild, LogLevel};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use super::events::{InstanceEvent, InstanceEventKind};
use super::writer::WriterCmd;
use crate::inflight::SharedInFlight;
use crate::lambda::{Handoff, LambdaHub, ServiceLink};
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
    /// Local services and invokes (`Serve`, `Invoke`); `None` when the
    /// runtime has no Lambda endpoint.
    pub(super) lambda: Option<Rc<LambdaHub>>,
}

/// The names this child serves; dropped when the reader ends (the child's
/// stdout closed or it broke the protocol), which frees them and fails
/// what they were handed.
struct Served {
    hub: Option<Rc<LambdaHub>>,
    links: Vec<Rc<ServiceLink>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(hub) = &self.hub {
            for link in self.links.drain(..) {
                hub.unserve(&link);
            }
        }
    }
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
    let mut served = Served {
        hub: env.lambda.clone(),
        links: Vec::new(),
    };
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
            FromChild::Serve {
                function_name,
                timeout_ms,
            } => serve(&env, &mut served, &function_name, timeout_ms),
            FromChild::InvokeResult {
                invocation_id,
                outcome,
            } => match (
                &env.lambda,
                served.links.iter().find(|l| l.was_handed(&invocation_id)),
            ) {
                (Some(hub), Some(link)) => hub.service_answer(link, &invocation_id, outcome),
                _ => env.log.write(
                    LogLevel::Warn,
                    &format!(
                        "answer to invocation {invocation_id:?} dropped: no invoke of a service of                          this component is waiting for it"
                    ),
                ),
            },
            FromChild::Invoke {
                request_id,
                function_arn,
                client_context,
                payload,
                timeout_ms,
            } => invoke(&env, request_id, &function_arn, client_context, payload, timeout_ms),
            other @ FromChild::Hello { .. } => {
                return violation(format!(
                    "unexpected {} after the handshake",
                    variant_name(&other)
                ))
            }
        }
    }
}

/// `Serve`: registers the name with the hub, or logs why not.
fn serve(env: &ReaderEnv, served: &mut Served, name: &str, timeout_ms: u64) {
    let Some(hub) = &env.lambda else {
        env.log.write(
            LogLevel::Error,
            &format!("cannot serve {name}: this runtime has no Lambda endpoint"),
        );
        return;
    };
    let cmds = env.cmds.clone();
    let handoff: Handoff = Rc::new(move |invocation| match cmds.upgrade() {
        Some(tx) => tx.send(WriterCmd::Invoke(invocation)).is_ok(),
        None => false,
    });
    let timeout = Duration::from_millis(timeout_ms.max(1));
    match hub.serve(name, &env.arn, timeout, env.log.clone(), handoff) {
        Ok(link) => {
            env.log.write(
                LogLevel::Info,
                &format!(
                    "serving invokes of arn:aws:lambda:<region>:aws:function:{name} (timeout {} ms)",
                    timeout.as_millis()
                ),
            );
            tracing::info!("{} serves the local service {name}", env.arn);
            served.links.retain(|l| l.name != name);
            served.links.push(link);
        }
        Err(why) => {
            let line = format!("cannot serve {name}: {why}");
            env.log.write(LogLevel::Error, &line);
            tracing::warn!("{}: {line}", env.arn);
        }
    }
}

/// `Invoke`: the child's own invoke, answered from a task when the result
/// comes (or the time is up).
fn invoke(
    env: &ReaderEnv,
    request_id: u64,
    function_arn: &str,
    client_context: Vec<u8>,
    payload: Vec<u8>,
    timeout_ms: u64,
) {
    let cmds = env.cmds.clone();
    let answer = move |result: Result<evergreen_ipc::InvokeOutcome, String>| {
        if let Some(tx) = cmds.upgrade() {
            let _ = tx.send(WriterCmd::InvokeResult { request_id, result });
        }
    };
    let Some(hub) = env.lambda.clone() else {
        return answer(Err("this runtime has no Lambda endpoint".into()));
    };
    let timeout = Duration::from_millis(timeout_ms.max(1));
    match hub.component_invoke(&env.arn, function_arn, client_context, payload, timeout) {
        Err(why) => {
            env.log.write(
                LogLevel::Warn,
                &format!("invoke of {function_arn} refused: {why}"),
            );
            answer(Err(why));
        }
        Ok((id, rx)) => {
            let arn = function_arn.to_string();
            actix_rt::spawn(async move {
                let result = match tokio::time::timeout(timeout, rx).await {
                    Ok(Ok(outcome)) => Ok(evergreen_ipc::InvokeOutcome {
                        function_error: outcome.function_error,
                        payload: outcome.payload,
                    }),
                    Ok(Err(_)) => Err(format!("{arn}: the result was lost")),
                    Err(_) => {
                        hub.forget_result(&id);
                        Err(format!(
                            "{arn}: no result within {} ms",
                            timeout.as_millis()
                        ))
                    }
                };
                answer(result);
            });
        }
    }
}
