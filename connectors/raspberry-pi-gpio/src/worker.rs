//! The thread that owns the chip: it takes requests from the async side,
//! waits for edge events (or polls), and sends back what to publish and
//! log. A thread, not a task, because the chip's waits block; it stops
//! when the request channel closes.

use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use evergreen_ipc::LogLevel;
use tokio::sync::mpsc::Sender;

use crate::chip::{GpioChip, Watch};
use crate::logic::{Gpio, Outgoing};

/// How long one wait for an edge lasts before pending requests are
/// looked at again: the most a read or write waits in event mode.
pub const TICK: Duration = Duration::from_millis(5);
/// Edges handled in one go before requests get a turn.
const EDGE_BATCH: usize = 256;

/// A request routed to the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// What the worker hands to the async side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Publish(Outgoing),
    Log(LogLevel, String),
}

/// Runs until `requests` closes or `out` is dropped. The chip must have its
/// lines requested and `gpio` primed already (`watch` is what the request gave).
pub fn run(
    chip: &mut dyn GpioChip,
    gpio: &mut Gpio,
    watch: Watch,
    requests: &Receiver<Request>,
    out: &Sender<Output>,
) {
    let period = gpio.settings().poll_period;
    let has_inputs = gpio.settings().inputs().next().is_some();
    let mut next_poll = Instant::now() + period;
    let send = |o: Output| out.blocking_send(o).is_ok();
    loop {
        // Requests first, in arrival order.
        loop {
            match requests.try_recv() {
                Ok(r) => {
                    if !handle(chip, gpio, &r, &send) {
                        return;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        match watch {
            Watch::Events if has_inputs => {
                let mut wait = TICK;
                for _ in 0..EDGE_BATCH {
                    match chip.wait_edge(wait) {
                        Ok(Some(edge)) => {
                            if let Some(m) = gpio.edge(edge) {
                                if !send(Output::Publish(m)) {
                                    return;
                                }
                            }
                            wait = Duration::ZERO;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            if !send(Output::Log(LogLevel::Error, e.to_string())) {
                                return;
                            }
                            // A failing chip must not spin the loop.
                            std::thread::sleep(TICK);
                            break;
                        }
                    }
                }
            }
            _ => {
                let now = Instant::now();
                if has_inputs && now >= next_poll {
                    let (messages, failed) = gpio.poll(chip);
                    for m in messages {
                        if !send(Output::Publish(m)) {
                            return;
                        }
                    }
                    if failed > 0
                        && !send(Output::Log(
                            LogLevel::Warn,
                            format!("{failed} input(s) could not be read"),
                        ))
                    {
                        return;
                    }
                    // A late poll does not cause a burst of catch-up polls.
                    next_poll = (next_poll + period).max(now);
                }
                let wait = if has_inputs {
                    next_poll.saturating_duration_since(Instant::now())
                } else {
                    Duration::from_secs(3600)
                };
                match requests.recv_timeout(wait) {
                    Ok(r) => {
                        if !handle(chip, gpio, &r, &send) {
                            return;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        }
    }
}

fn handle(
    chip: &mut dyn GpioChip,
    gpio: &mut Gpio,
    r: &Request,
    send: &impl Fn(Output) -> bool,
) -> bool {
    match gpio.request(chip, &r.topic, &r.payload) {
        Some(messages) => messages.into_iter().all(|m| send(Output::Publish(m))),
        None => send(Output::Log(
            LogLevel::Warn,
            format!(
                "ignoring a message on {}: not gpio/{}/<pin>/read|write",
                r.topic,
                gpio.settings().core
            ),
        )),
    }
}
