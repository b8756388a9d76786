//! An in-memory GPIO chip for tests and the bench (the build machines have
//! no GPIO hardware): lines hold levels, a test drives inputs through a
//! [`SimControl`] and each change becomes an edge event when the chip is
//! built with events. It records what was requested (bias, initial levels)
//! so tests can check them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::chip::{Edge, GpioChip, GpioError, LineConfig, Offset, Watch};

#[derive(Debug, Default)]
struct State {
    requested: Vec<LineConfig>,
    levels: BTreeMap<Offset, bool>,
    events: VecDeque<Edge>,
    /// Output levels in the order they were set, for tests.
    writes: Vec<(Offset, bool)>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock already failed; the state
    // is still plain data.
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The chip the connector owns.
#[derive(Debug)]
pub struct SimChip {
    shared: Arc<Shared>,
    edges: bool,
    lines: u32,
}

/// The test's side of a [`SimChip`].
#[derive(Debug, Clone)]
pub struct SimControl {
    shared: Arc<Shared>,
    edges: bool,
}

impl SimChip {
    /// A chip of `lines` lines, with edge detection or without (polling).
    pub fn new(lines: u32, edges: bool) -> (SimChip, SimControl) {
        let shared = Arc::new(Shared::default());
        (
            SimChip {
                shared: shared.clone(),
                edges,
                lines,
            },
            SimControl { shared, edges },
        )
    }
}

impl SimControl {
    /// Drives input `offset` from outside to `high`; an edge event when it
    /// changes and the chip has events.
    pub fn drive(&self, offset: Offset, high: bool) {
        let mut s = lock(&self.shared);
        let old = s.levels.insert(offset, high);
        if self.edges && old != Some(high) {
            s.events.push_back(Edge { offset, high });
            self.shared.wake.notify_all();
        }
    }

    /// What the connector requested.
    pub fn requested(&self) -> Vec<LineConfig> {
        lock(&self.shared).requested.clone()
    }

    /// The level of a line now.
    pub fn level(&self, offset: Offset) -> Option<bool> {
        lock(&self.shared).levels.get(&offset).copied()
    }

    /// Every `set` so far.
    pub fn writes(&self) -> Vec<(Offset, bool)> {
        lock(&self.shared).writes.clone()
    }
}

impl GpioChip for SimChip {
    fn request(&mut self, lines: &[LineConfig]) -> Result<Watch, GpioError> {
        let mut s = lock(&self.shared);
        for line in lines {
            if line.offset() >= self.lines {
                return Err(GpioError::Request {
                    offsets: vec![line.offset()],
                    reason: format!("the chip has {} lines", self.lines),
                });
            }
            let level = match *line {
                // Floating inputs read low unless pulled up, as gpio-sim does.
                LineConfig::Input { pull, .. } => pull == crate::chip::Pull::Up,
                LineConfig::Output { initial, .. } => initial,
            };
            s.levels.entry(line.offset()).or_insert(level);
            if let LineConfig::Output { offset, initial } = *line {
                s.levels.insert(offset, initial);
            }
        }
        s.requested = lines.to_vec();
        Ok(if self.edges {
            Watch::Events
        } else {
            Watch::Polling
        })
    }

    fn get(&mut self, offset: Offset) -> Result<bool, GpioError> {
        lock(&self.shared)
            .levels
            .get(&offset)
            .copied()
            .ok_or_else(|| GpioError::Line {
                offset,
                op: "get",
                reason: "not requested".into(),
            })
    }

    fn set(&mut self, offset: Offset, high: bool) -> Result<(), GpioError> {
        let mut s = lock(&self.shared);
        s.levels.insert(offset, high);
        s.writes.push((offset, high));
        Ok(())
    }

    fn wait_edge(&mut self, timeout: Duration) -> Result<Option<Edge>, GpioError> {
        let deadline = Instant::now() + timeout;
        let mut s = lock(&self.shared);
        loop {
            if let Some(e) = s.events.pop_front() {
                return Ok(Some(e));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            s = self
                .shared
                .wake
                .wait_timeout(s, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}
