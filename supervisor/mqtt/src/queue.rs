//! The queue between a connected device's session (the router's side, any thread) and its
//! connection's writer (the MQTT server's thread): bounded, one sender, one receiver.
//!
//! It replaces a `tokio::sync::mpsc` channel, which allocates its first block of 32 slots when
//! it is made: 32 × 120 bytes of `Outgoing` plus its cache-padded header, about 4.4 KB for
//! every connection, busy or idle (heaptrack of eg-mqtt-bench's idle section: 4.4 of the
//! 17 KB of heap per idle connection). Here the messages wait in a `VecDeque` that allocates
//! with its first message and is given back once a burst has drained, so an idle connection
//! holds the queue's header only.
//!
//! Semantics are the channel's: a message is refused when `capacity` are waiting (`Full`) or
//! the receiver is gone (`Closed`); once the sender is dropped, the receiver still gets what
//! was queued before it is told the queue closed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::Outgoing;

/// Slots above which a queue that drained gives its buffer back: a usual queue stays below
/// the hub's `HIGH_WATER` (16) and keeps its buffer; a burst's larger one is freed.
const KEEP_SLOTS: usize = 32;

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Outgoing>,
    sender_gone: bool,
    receiver_gone: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the receiver: a message, or the sender gone. `notify_one` keeps a permit when the
    /// receiver is not waiting, so a wake between its check and its wait is not lost.
    ready: Notify,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is a single push, pop or flag: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why [`QueueTx::try_send`] refused a message (dropped).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError {
    /// `capacity` messages are waiting.
    Full,
    /// The receiver is gone (its connection ended).
    Closed,
}

/// Why [`QueueRx::try_recv`] returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TryRecvError {
    Empty,
    /// Empty, and the sender is gone.
    Disconnected,
}

/// A queue of at most `capacity` messages (at least 1).
pub(crate) fn channel(capacity: usize) -> (QueueTx, QueueRx) {
    let shared = Arc::new(Shared {
        state: Mutex::default(),
        ready: Notify::new(),
        capacity: capacity.max(1),
    });
    (QueueTx(shared.clone()), QueueRx(shared))
}

/// The sending side, kept by the session while its device is connected.
#[derive(Debug)]
pub(crate) struct QueueTx(Arc<Shared>);

impl QueueTx {
    pub(crate) fn try_send(&self, out: Outgoing) -> Result<(), TrySendError> {
        {
            let mut state = self.0.lock();
            if state.receiver_gone {
                return Err(TrySendError::Closed);
            }
            if state.items.len() >= self.0.capacity {
                return Err(TrySendError::Full);
            }
            state.items.push_back(out);
        }
        self.0.ready.notify_one();
        Ok(())
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().items.len()
    }
}

impl Drop for QueueTx {
    fn drop(&mut self) {
        self.0.lock().sender_gone = true;
        self.0.ready.notify_one();
    }
}

/// The receiving side, drained by the connection's writer.
#[derive(Debug)]
pub(crate) struct QueueRx(Arc<Shared>);

impl QueueRx {
    /// The next message; `None` once the sender is gone and everything queued was taken.
    pub(crate) async fn recv(&mut self) -> Option<Outgoing> {
        loop {
            match self.try_recv() {
                Ok(out) => return Some(out),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => self.0.ready.notified().await,
            }
        }
    }

    pub(crate) fn try_recv(&mut self) -> Result<Outgoing, TryRecvError> {
        let mut state = self.0.lock();
        match state.items.pop_front() {
            Some(out) => {
                if state.items.is_empty() && state.items.capacity() > KEEP_SLOTS {
                    state.items = VecDeque::new();
                }
                Ok(out)
            }
            None if state.sender_gone => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().items.len()
    }

    /// Refuses further messages; those queued can still be taken.
    pub(crate) fn close(&mut self) {
        self.0.lock().receiver_gone = true;
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        let items = {
            let mut state = self.0.lock();
            state.receiver_gone = true;
            std::mem::take(&mut state.items)
        };
        // Dropped outside the lock (a message's last reference may free a payload).
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_runtime::router::Message;

    fn out(n: u8) -> Outgoing {
        Outgoing {
            msg: Message {
                topic: Arc::from("t"),
                payload: Arc::from(&[n][..]),
                source: Arc::from("s"),
                meta: Default::default(),
                route: 0,
            },
            qos1: true,
            qos2: false,
            stored: None,
            dup: false,
            retain: false,
            sub_ids: Vec::new(),
        }
    }

    fn first_byte(o: &Outgoing) -> u8 {
        o.msg.payload[0]
    }

    #[test]
    fn messages_come_out_in_order_up_to_the_capacity() {
        let (tx, mut rx) = channel(2);
        assert!(tx.try_send(out(1)).is_ok());
        assert!(tx.try_send(out(2)).is_ok());
        assert_eq!(tx.try_send(out(3)), Err(TrySendError::Full));
        assert_eq!(tx.len(), 2);
        assert_eq!(rx.try_recv().map(|o| first_byte(&o)), Ok(1));
        assert!(tx.try_send(out(3)).is_ok());
        assert_eq!(rx.try_recv().map(|o| first_byte(&o)), Ok(2));
        assert_eq!(rx.try_recv().map(|o| first_byte(&o)), Ok(3));
        assert_eq!(rx.try_recv().err(), Some(TryRecvError::Empty));
    }

    #[test]
    fn what_was_queued_is_received_after_the_sender_is_gone() {
        let (tx, mut rx) = channel(4);
        assert!(tx.try_send(out(1)).is_ok());
        drop(tx);
        assert_eq!(rx.try_recv().map(|o| first_byte(&o)), Ok(1));
        assert_eq!(rx.try_recv().err(), Some(TryRecvError::Disconnected));
    }

    #[test]
    fn a_closed_or_dropped_receiver_refuses_messages() {
        let (tx, mut rx) = channel(4);
        assert!(tx.try_send(out(1)).is_ok());
        rx.close();
        assert_eq!(tx.try_send(out(2)), Err(TrySendError::Closed));
        assert_eq!(rx.try_recv().map(|o| first_byte(&o)), Ok(1));
        drop(rx);
        assert_eq!(tx.try_send(out(3)), Err(TrySendError::Closed));
    }

    #[test]
    fn a_drained_burst_gives_its_buffer_back() {
        let (tx, mut rx) = channel(1000);
        for n in 0..100 {
            assert!(tx.try_send(out(n)).is_ok());
        }
        while rx.try_recv().is_ok() {}
        assert_eq!(rx.0.lock().items.capacity(), 0);
    }

    #[tokio::test]
    async fn recv_waits_for_a_message_from_another_thread_and_ends_with_the_sender() {
        let (tx, mut rx) = channel(4);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(tx.try_send(out(7)).is_ok());
        });
        assert_eq!(rx.recv().await.map(|o| first_byte(&o)), Some(7));
        sender.join().expect("sender thread");
        assert!(rx.recv().await.is_none());
    }
}
