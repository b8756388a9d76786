//! The seam between the connector and a GPIO chip: the [`GpioChip`] trait
//! (request lines, get/set a line, wait for an edge event) and the types it
//! speaks. Two backends implement it: the kernel's character device
//! ([`crate::cdev`]) and an in-memory chip for tests ([`crate::sim`]).

use std::time::Duration;

/// A line offset on the chip (equal to the BCM number on a Pi, see
/// [`crate::cdev`]).
pub type Offset = u32;

/// The bias of an input line (`U`/`D` suffix of `InputGpios`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    None,
    Up,
    Down,
}

/// What one requested line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineConfig {
    Input {
        offset: Offset,
        pull: Pull,
    },
    /// An output driven to `initial` (`H` high, `L` or no suffix low) as it
    /// is requested, so it never glitches through another level.
    Output {
        offset: Offset,
        initial: bool,
    },
}

impl LineConfig {
    pub fn offset(&self) -> Offset {
        match *self {
            LineConfig::Input { offset, .. } | LineConfig::Output { offset, .. } => offset,
        }
    }
}

/// An edge seen on an input line; `high` is the level after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub offset: Offset,
    pub high: bool,
}

/// How inputs are watched once requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// The kernel reports both edges of every input.
    Events,
    /// No edge detection on this chip: inputs are polled.
    Polling,
}

/// A failure of the chip or of a line operation.
#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    #[error("GPIO chip {path}: {reason}")]
    Chip { path: String, reason: String },
    #[error("requesting GPIO lines {offsets:?}: {reason}")]
    Request {
        offsets: Vec<Offset>,
        reason: String,
    },
    #[error("GPIO {offset} {op}: {reason}")]
    Line {
        offset: Offset,
        op: &'static str,
        reason: String,
    },
    #[error("waiting for GPIO edge events: {0}")]
    Events(String),
}

/// A GPIO chip whose lines the connector requests once, at start.
pub trait GpioChip: Send {
    /// Requests `lines` (inputs with their bias, outputs with their initial
    /// level). Asks for edge events on the inputs and falls back to polling
    /// when the chip cannot give them; says which it got.
    fn request(&mut self, lines: &[LineConfig]) -> Result<Watch, GpioError>;
    /// The level of a requested line.
    fn get(&mut self, offset: Offset) -> Result<bool, GpioError>;
    /// Drives a requested output line.
    fn set(&mut self, offset: Offset, high: bool) -> Result<(), GpioError>;
    /// The next edge within `timeout`, `None` when none came (or in
    /// polling mode, after sleeping `timeout`).
    fn wait_edge(&mut self, timeout: Duration) -> Result<Option<Edge>, GpioError>;
}
