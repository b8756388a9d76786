//! Receipts: how a publisher that may acknowledge only what is stored learns that its message
//! was.
//!
//! A publisher that promises durability (a device's QoS 1 PUBACK, a Python function's
//! `AllOrError` publish) makes a [`Receipt`] and routes its message with it
//! ([`super::Router::publish_acked`]). A sink that stores messages durably (the cloud spool) keeps
//! a clone of the receipt with the message until its commit, then settles that clone with
//! [`Receipt::stored`]. Any clone dropped unsettled counts as *not stored*: a message lost with a
//! queue, a writer thread that died or a failed commit can never pass for stored. The publisher's
//! [`Stored`] resolves once every clone is gone, `true` only if every one was settled as stored.
//!
//! Sinks that store nothing durably ignore receipts ([`super::DeliverySink::offer_acked`]'s
//! default), so a receipt changes nothing about what they promise, and a message that reaches no
//! durable sink resolves at once.
//!
//! It never blocks: settling is a flag and a drop, waiting is a oneshot channel, and neither
//! names a runtime, so the MQTT server's ntex thread, the actors' thread and the spool's writer
//! thread can each hold one end.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

/// What every clone of one receipt shares; its drop (the last clone's) answers the publisher.
#[derive(Debug)]
struct Shared {
    /// Set by any clone dropped without [`Receipt::stored`]. Read only in `drop`, after every
    /// clone is gone: the `Arc`'s own release/acquire on its count orders the stores before it,
    /// so `Relaxed` is enough.
    lost: AtomicBool,
    done: Option<oneshot::Sender<bool>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            // The publisher may have stopped waiting (its connection closed): nobody to tell.
            let _ = done.send(!self.lost.load(Ordering::Relaxed));
        }
    }
}

/// One holder's part of a publisher's wait for its message to be stored. Clone it to hold the
/// message somewhere durable; settle the clone with [`Receipt::stored`] once it is committed, or
/// drop it (or call [`Receipt::lost`]) if it will not be.
#[derive(Debug)]
pub struct Receipt {
    shared: Arc<Shared>,
    settled: bool,
}

impl Receipt {
    /// A receipt and the future its publisher waits on.
    pub fn new() -> (Receipt, Stored) {
        let (tx, rx) = oneshot::channel();
        let receipt = Receipt {
            shared: Arc::new(Shared {
                lost: AtomicBool::new(false),
                done: Some(tx),
            }),
            settled: false,
        };
        (receipt, Stored(rx))
    }

    /// This holder committed the message to stable storage.
    pub fn stored(mut self) {
        self.settled = true;
    }

    /// This holder did not store the message; the publisher must not acknowledge it. (Dropping
    /// the receipt unsettled says the same; this names it where the code decides it.)
    pub fn lost(self) {}
}

impl Clone for Receipt {
    /// A new holder's part, unsettled whatever this one's state.
    fn clone(&self) -> Self {
        Receipt {
            shared: self.shared.clone(),
            settled: false,
        }
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.lost.store(true, Ordering::Relaxed);
        }
    }
}

/// Resolves once every holder of the receipt is done: `true` if every durable holder stored the
/// message (or none held it), `false` if any did not.
#[derive(Debug)]
pub struct Stored(oneshot::Receiver<bool>);

impl Future for Stored {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        // The sender is dropped without sending only if `Shared` never ran its drop, which a
        // leaked clone would cause: not stored, as far as anyone can tell.
        Pin::new(&mut self.0).poll(cx).map(|r| r.unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(stored: Stored) -> Option<bool> {
        let mut stored = stored;
        let waker = std::task::Waker::noop();
        match Pin::new(&mut stored).poll(&mut Context::from_waker(waker)) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    #[test]
    fn a_receipt_no_durable_sink_held_resolves_stored() {
        let (receipt, stored) = Receipt::new();
        receipt.stored();
        assert_eq!(now(stored), Some(true));
    }

    #[test]
    fn the_publisher_waits_until_every_holder_has_stored() {
        let (receipt, mut stored) = Receipt::new();
        let a = receipt.clone();
        let b = receipt.clone();
        receipt.stored();
        a.stored();
        let waker = std::task::Waker::noop();
        assert!(Pin::new(&mut stored)
            .poll(&mut Context::from_waker(waker))
            .is_pending());
        b.stored();
        assert_eq!(now(stored), Some(true));
    }

    #[test]
    fn one_holder_dropping_the_message_makes_it_not_stored() {
        let (receipt, stored) = Receipt::new();
        let a = receipt.clone();
        let b = receipt.clone();
        receipt.stored();
        a.stored();
        drop(b);
        assert_eq!(now(stored), Some(false));
    }

    #[test]
    fn a_lost_receipt_on_another_thread_reaches_the_publisher() {
        let (receipt, stored) = Receipt::new();
        let held = receipt.clone();
        receipt.stored();
        std::thread::spawn(move || held.lost())
            .join()
            .expect("thread");
        assert_eq!(now(stored), Some(false));
    }
}
