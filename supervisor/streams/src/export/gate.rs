//! The exports' shared use of the network: a bounded number of requests in
//! flight, handed to waiting exports lowest `priority` value first.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

#[derive(Debug, Default)]
struct State {
    in_use: usize,
    ticket: u64,
    /// (priority, arrival) → the waiter's wake-up.
    waiting: BTreeMap<(i64, u64), oneshot::Sender<()>>,
}

/// At most `concurrency` permits out at once; waiters served by priority.
#[derive(Debug)]
pub struct ExportGate {
    concurrency: usize,
    state: Mutex<State>,
}

/// A slot to send; dropping it hands the slot to the next waiter.
#[derive(Debug)]
pub struct GatePermit {
    gate: Arc<ExportGate>,
}

impl ExportGate {
    pub fn new(concurrency: usize) -> Arc<Self> {
        Arc::new(ExportGate {
            concurrency: concurrency.max(1),
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a slot. A cancelled wait (the export stopped) gives up its
    /// place: the slot goes to the next waiter.
    pub async fn acquire(self: &Arc<Self>, priority: i64) -> GatePermit {
        let rx = {
            let mut s = self.lock();
            if s.in_use < self.concurrency && s.waiting.is_empty() {
                s.in_use += 1;
                return GatePermit { gate: self.clone() };
            }
            let (tx, rx) = oneshot::channel();
            s.ticket += 1;
            let ticket = s.ticket;
            s.waiting.insert((priority, ticket), tx);
            rx
        };
        // The releasing side counted this slot as ours before it sent, so a
        // received wake-up is a permit. The sender is never dropped unsent
        // while we wait (the gate lives in our Arc), so Err cannot happen;
        // treat it as a permit anyway rather than hang.
        let mut waiting = Waiting {
            rx: Some(rx),
            gate: self.clone(),
        };
        if let Some(rx) = waiting.rx.as_mut() {
            let _ = rx.await;
        }
        waiting.rx = None;
        GatePermit { gate: self.clone() }
    }

    fn release(&self) {
        let mut s = self.lock();
        // Hand the slot over without freeing it; skip waiters that left.
        while let Some((_, tx)) = s.waiting.pop_first() {
            if tx.send(()).is_ok() {
                return;
            }
        }
        s.in_use = s.in_use.saturating_sub(1);
    }
}

/// A wait in progress: if it is cancelled after the slot was handed to it,
/// the slot goes back (else it would be lost for good).
struct Waiting {
    rx: Option<oneshot::Receiver<()>>,
    gate: Arc<ExportGate>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.gate.release();
            }
        }
    }
}

impl Drop for GatePermit {
    fn drop(&mut self) {
        self.gate.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_are_served_lowest_priority_value_first() {
        let gate = ExportGate::new(1);
        let first = gate.acquire(5).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for p in [9, 3, 7, 1] {
            let gate = gate.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire(p).await;
                order.lock().expect("should succeed").push(p);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            // Let each one queue before the next.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(first);
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("should succeed")
                .expect("should succeed");
        }
        assert_eq!(*order.lock().expect("should succeed"), vec![1, 3, 7, 9]);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_does_not_keep_the_slot() {
        let gate = ExportGate::new(1);
        let held = gate.acquire(1).await;
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _p = gate.acquire(1).await;
                std::future::pending::<()>().await;
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        waiter.abort();
        let _ = waiter.await;
        drop(held);
        tokio::time::timeout(Duration::from_secs(2), gate.acquire(2))
            .await
            .expect("should succeed");
    }
}
