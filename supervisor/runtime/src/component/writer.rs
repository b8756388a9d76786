//! The writer task: the handshake, then deliveries from the component's
//! bounded inbox, the answers to the child's requests, and `Shutdown`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use evergreen_ipc::link::SupervisorLink;
use evergreen_ipc::{ComponentConfig, LogLevel};
use tokio::process::ChildStdin;
use tokio::sync::mpsc;

use crate::inflight::SharedInFlight;
use crate::logs::ComponentLog;
use crate::router::QueueReceiver;

/// Deliveries written before a flush, so a busy target still sees its
/// messages promptly.
const DELIVERY_BATCH: usize = 64;

/// Orders for a child's writer task.
#[derive(Debug)]
pub(super) enum WriterCmd {
    /// The child said `Ready`: start delivering.
    Ready,
    /// Send `Shutdown` with this deadline, then close stdin.
    Shutdown(Duration),
    /// Tell the child a publish was refused.
    Refused { topic: String, reason: String },
    /// Answer a secret request.
    Secret {
        request_id: u64,
        result: Result<evergreen_ipc::SecretValue, String>,
    },
    /// Answer a credentials request.
    Credentials {
        request_id: u64,
        result: Result<evergreen_ipc::AwsCredentials, String>,
    },
    /// Answer a shadow request.
    Shadow {
        request_id: u64,
        accepted: bool,
        payload: Vec<u8>,
    },
    /// A function invoked a service the child serves.
    Invoke(evergreen_ipc::Invocation),
    /// Answer the child's own invoke.
    InvokeResult {
        request_id: u64,
        result: Result<evergreen_ipc::InvokeOutcome, String>,
    },
}

/// Writes to the child's stdin until it is told to stop or the child is gone.
pub(super) async fn writer_task(
    stdin: ChildStdin,
    mut cmds: mpsc::UnboundedReceiver<WriterCmd>,
    inbox: Arc<tokio::sync::Mutex<QueueReceiver>>,
    config: ComponentConfig,
    max_frame: usize,
    log: ComponentLog,
    inflight: SharedInFlight,
) {
    let mut link = SupervisorLink::new(stdin, max_frame);
    if link.start(&config).await.is_err() {
        return; // the child is already gone; its exit is reported by the waiter
    }
    // Until the child is ready, only answer commands; deliveries wait in the
    // inbox (bounded, counted when full).
    loop {
        match cmds.recv().await {
            None => return,
            Some(WriterCmd::Ready) => break,
            Some(cmd) => {
                if !command(&mut link, cmd).await {
                    return;
                }
            }
        }
    }
    // A previous child's writer holds the inbox until its instance is
    // dropped; keep answering commands while waiting for it.
    let mut inbox = loop {
        tokio::select! {
            guard = inbox.lock() => break guard,
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(cmd) => if !command(&mut link, cmd).await { return },
            },
        }
    };
    loop {
        tokio::select! {
            biased;
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(cmd) => if !command(&mut link, cmd).await { return },
            },
            msg = inbox.recv() => {
                let Some(mut msg) = msg else { return };
                let mut written = 0;
                loop {
                    inflight.borrow_mut().begin(Instant::now());
                    if let Err(e) = link.deliver_parts(&msg.topic, &msg.payload, &msg.source).await {
                        log.write(LogLevel::Debug, &format!("delivery lost, stdin closed: {e}"));
                        return;
                    }
                    written += 1;
                    if written >= DELIVERY_BATCH {
                        break;
                    }
                    match inbox.try_recv() {
                        Ok(next) => msg = next,
                        Err(_) => break,
                    }
                }
                if link.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Performs one writer command; `false` ends the writer.
async fn command<W: tokio::io::AsyncWrite + Unpin>(
    link: &mut SupervisorLink<W>,
    cmd: WriterCmd,
) -> bool {
    let result = match cmd {
        WriterCmd::Ready => Ok(()),
        WriterCmd::Shutdown(deadline) => {
            let _ = link.shutdown(deadline.as_millis() as u64).await;
            // Closing stdin after Shutdown gives the child an EOF too.
            return false;
        }
        WriterCmd::Refused { topic, reason } => link.refused(topic, reason).await,
        WriterCmd::Secret { request_id, result } => link.secret(request_id, result).await,
        WriterCmd::Shadow {
            request_id,
            accepted,
            payload,
        } => link.shadow_result(request_id, accepted, payload).await,
        WriterCmd::Credentials { request_id, result } => link.credentials(request_id, result).await,
        WriterCmd::Invoke(invocation) => link.invoke(invocation).await,
        WriterCmd::InvokeResult { request_id, result } => {
            link.invoke_result(request_id, result).await
        }
    };
    result.is_ok()
}
