//! The one uploader loop of the connectors that send queued input to a
//! service: deliveries in, completed calls back, a publish-interval tick,
//! a wake-up when a backoff ends, and a bounded drain on `Shutdown`. The
//! connector supplies what each step does ([`Uploader`]); the loop owns
//! only the ordering and the timers, never a client or a queue.

use std::future::Future;
use std::time::Duration;

use evergreen_ipc::sdk::{Component, Event, Handle, SdkError};
use evergreen_ipc::Delivery;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

/// How far the loop looks ahead when nothing is waiting: a timer still
/// needs a deadline.
const FAR: Duration = Duration::from_secs(3600);

/// What a connector does at each step of the loop.
///
/// Connectors run on a current-thread runtime and drive their uploader
/// from one task, so these futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Uploader {
    /// What a finished call hands back.
    type Done: Send + 'static;

    /// A delivery on one of the input topics.
    async fn on_message(&mut self, message: Delivery) -> Result<(), SdkError>;

    /// A call started through [`Calls::spawn`] is over.
    async fn on_done(&mut self, done: Self::Done) -> Result<(), SdkError>;

    /// A call's task ended without an answer (it panicked). Nothing can say
    /// which call it was, so by default nothing changes (the call stays
    /// out); a connector with one call at a time logs it and starts the next.
    fn on_lost(&mut self) {}

    /// Starts every call that is ready now. Called after each step.
    async fn send_ready(&mut self, calls: &Calls<Self::Done>) -> Result<(), SdkError>;

    /// The publish interval elapsed (and, at shutdown, the last flush).
    fn on_tick(&mut self);

    /// When `send_ready` should run again without an event: the end of a
    /// backoff or of an interval the connector keeps itself.
    fn next_wake(&self) -> Option<Instant>;

    /// Whether a call is out, which the drain waits for.
    fn calling(&self) -> bool;
}

/// Where calls report back to the loop: their answer, or `None` when the
/// call's task panicked.
#[derive(Debug)]
pub struct Calls<D> {
    tx: mpsc::UnboundedSender<Option<D>>,
}

impl<D: Send + 'static> Calls<D> {
    /// Runs one call on its own task; its result comes back to
    /// [`Uploader::on_done`]. Calls run concurrently with the loop so a slow
    /// service never holds up deliveries.
    pub fn spawn(&self, call: impl Future<Output = D> + Send + 'static) {
        let tx = self.tx.clone();
        // The call on a task of its own, so that a panic in it still
        // reports back (as `None`) instead of leaving the call out forever.
        let task = tokio::spawn(call);
        tokio::spawn(async move {
            // The loop has stopped only when the connector is exiting.
            let _ = tx.send(task.await.ok());
        });
    }
}

/// The loop's channel of completed calls.
#[derive(Debug)]
pub struct Uploads<D> {
    calls: Calls<D>,
    done: mpsc::UnboundedReceiver<Option<D>>,
}

impl<D: Send + 'static> Default for Uploads<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: Send + 'static> Uploads<D> {
    pub fn new() -> Self {
        let (tx, done) = mpsc::unbounded_channel();
        Uploads {
            calls: Calls { tx },
            done,
        }
    }

    /// Runs `uploader` until the supervisor says stop or closes the link.
    /// `interval` is the publish interval (`None`: no tick). Returns the
    /// shutdown deadline, `None` when the link closed.
    pub async fn run<U: Uploader<Done = D>>(
        &mut self,
        component: &mut Component,
        handle: &Handle,
        uploader: &mut U,
        interval: Option<Duration>,
    ) -> Result<Option<Duration>, SdkError> {
        // With no interval the ticker is never polled; it still needs a period.
        let period = interval.unwrap_or(FAR);
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            uploader.send_ready(&self.calls).await?;
            let wake = uploader.next_wake().unwrap_or_else(|| Instant::now() + FAR);
            tokio::select! {
                event = component.next_event() => match event {
                    None => return Ok(None),
                    Some(Event::Shutdown { deadline }) => return Ok(Some(deadline)),
                    // Only a component that serves a function name gets invokes.
                    Some(Event::Invoke(_)) => {}
                    Some(Event::Refused { topic, reason }) => {
                        handle.warn(format!("publish on {topic} refused: {reason}"));
                    }
                    Some(Event::Message(m)) => uploader.on_message(m).await?,
                },
                Some(done) = self.done.recv() => match done {
                    Some(done) => uploader.on_done(done).await?,
                    None => uploader.on_lost(),
                },
                _ = ticker.tick(), if interval.is_some() => uploader.on_tick(),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// A last send of what is queued, waiting for the calls out until
    /// `until`. Retries stay queued: no new calls start once it began.
    pub async fn drain<U: Uploader<Done = D>>(&mut self, uploader: &mut U, until: Instant) {
        uploader.on_tick();
        if uploader.send_ready(&self.calls).await.is_err() {
            return;
        }
        while uploader.calling() {
            match tokio::time::timeout_at(until, self.done.recv()).await {
                Ok(Some(Some(done))) => {
                    if uploader.on_done(done).await.is_err() {
                        break;
                    }
                }
                Ok(Some(None)) => uploader.on_lost(),
                _ => break,
            }
        }
    }
}

/// Runs `uploader` until the supervisor says stop, then makes the last
/// send ([`Uploads::drain`]) within half of the shutdown grace period, so
/// the other half is left for the connector's own goodbye and exit.
pub async fn run<U: Uploader>(
    component: &mut Component,
    handle: &Handle,
    uploader: &mut U,
    interval: Option<Duration>,
) -> Result<(), SdkError> {
    let mut uploads = Uploads::new();
    let shutdown = uploads.run(component, handle, uploader, interval).await?;
    if let Some(deadline) = shutdown {
        uploads.drain(uploader, Instant::now() + deadline / 2).await;
    }
    Ok(())
}
