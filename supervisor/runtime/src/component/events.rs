//! What a child's tasks tell the actor, and the waiter task that reaps the
//! child. Every event carries the child's generation, so a late event from
//! a previous child is ignored.

use std::process::ExitStatus;

use actix::prelude::*;
use tokio::process::Child;

/// What a child's tasks tell the actor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(super) struct InstanceEvent {
    pub(super) generation: u64,
    pub(super) kind: InstanceEventKind,
}

#[derive(Debug)]
pub(super) enum InstanceEventKind {
    /// The child said `Ready` (or, on the lambda link, made its first request).
    Ready,
    /// The child broke the protocol: it is killed.
    Violation(String),
    /// The child was reaped.
    Exited(std::io::Result<ExitStatus>),
}

/// Reaps the child and reports how it ended.
pub(super) async fn waiter_task(mut child: Child, addr: Recipient<InstanceEvent>, generation: u64) {
    let status = child.wait().await;
    addr.do_send(InstanceEvent {
        generation,
        kind: InstanceEventKind::Exited(status),
    });
}
