//! What the connector does with a request, an edge or a poll, as plain
//! functions over a [`GpioChip`]: each returns the messages to publish, so
//! the topics and payloads are tested without a supervisor. Never talks to
//! the IPC link itself and never fails: a chip error becomes an error
//! message on `gpio/<core>/error`.

use std::collections::BTreeMap;

use serde_json::json;

use crate::chip::{Edge, GpioChip, Offset};
use crate::settings::Settings;

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// V1's `error` for an operation the pin's configuration forbids.
pub const INVALID_OPERATION: &str = "Invalid GPIO operation";
/// `error` for a write whose payload is not 0 or 1 (V1's wording is not
/// documented).
pub const INVALID_PAYLOAD: &str = "Invalid GPIO payload";
/// `error` when the chip itself fails.
pub const OPERATION_FAILED: &str = "GPIO operation failed";

/// The connector's state: settings and the last level published per input.
#[derive(Debug)]
pub struct Gpio {
    settings: Settings,
    last: BTreeMap<Offset, bool>,
}

enum Op {
    Read,
    Write,
}

impl Gpio {
    pub fn new(settings: Settings) -> Self {
        Gpio {
            settings,
            last: BTreeMap::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn state(&self, pin: Offset, high: bool) -> Outgoing {
        Outgoing {
            topic: format!("gpio/{}/{pin}/state", self.settings.core),
            payload: if high { b"1".to_vec() } else { b"0".to_vec() },
        }
    }

    fn error(&self, topic: &str, error: &str, long: String) -> Outgoing {
        Outgoing {
            topic: format!("gpio/{}/error", self.settings.core),
            payload: json!({"topic": topic, "error": error, "long_description": long})
                .to_string()
                .into_bytes(),
        }
    }

    /// Records the levels of the inputs at start (publishing nothing: V1
    /// published on changes and on requests only).
    pub fn prime(&mut self, chip: &mut dyn GpioChip) {
        let inputs: Vec<Offset> = self.settings.inputs().collect();
        for pin in inputs {
            if let Ok(level) = chip.get(pin) {
                self.last.insert(pin, level);
            }
        }
    }

    /// A request on `gpio/<core>/<pin>/read|write`. `None` when the topic is
    /// not one (another core's, or not a GPIO request at all): the caller
    /// logs it, as there is no error topic of ours that it belongs to.
    pub fn request(
        &mut self,
        chip: &mut dyn GpioChip,
        topic: &str,
        payload: &[u8],
    ) -> Option<Vec<Outgoing>> {
        let mut levels = topic.split('/');
        let (Some("gpio"), Some(core), Some(pin), Some(op), None) = (
            levels.next(),
            levels.next(),
            levels.next(),
            levels.next(),
            levels.next(),
        ) else {
            return None;
        };
        if core != self.settings.core {
            return None;
        }
        let op = match op {
            "read" => Op::Read,
            "write" => Op::Write,
            _ => return None,
        };
        let Some(pin) = pin
            .parse::<Offset>()
            .ok()
            .filter(|_| pin.bytes().all(|b| b.is_ascii_digit()))
        else {
            return Some(vec![self.error(
                topic,
                INVALID_OPERATION,
                format!("{pin:?} is not a GPIO number."),
            )]);
        };
        let (input, output) = (self.settings.is_input(pin), self.settings.is_output(pin));
        if !input && !output {
            return Some(vec![self.error(
                topic,
                INVALID_OPERATION,
                format!("GPIO {pin} is not configured as an INPUT or OUTPUT GPIO."),
            )]);
        }
        Some(match op {
            Op::Read => match chip.get(pin) {
                Ok(high) => {
                    if input {
                        self.last.insert(pin, high);
                    }
                    vec![self.state(pin, high)]
                }
                Err(e) => vec![self.error(topic, OPERATION_FAILED, e.to_string())],
            },
            Op::Write if input => vec![self.error(
                topic,
                INVALID_OPERATION,
                format!(
                    "GPIO {pin} is configured as an INPUT GPIO. Write operations are not permitted."
                ),
            )],
            Op::Write => match write_level(payload) {
                None => vec![self.error(
                    topic,
                    INVALID_PAYLOAD,
                    format!(
                        "The payload of a write to GPIO {pin} must be 0 or 1, not {:?}.",
                        String::from_utf8_lossy(payload)
                    ),
                )],
                Some(high) => match chip.set(pin, high).and_then(|()| chip.get(pin)) {
                    Ok(now) => vec![self.state(pin, now)],
                    Err(e) => vec![self.error(topic, OPERATION_FAILED, e.to_string())],
                },
            },
        })
    }

    /// An edge event: a `state` message when the input's level differs
    /// from the last one published (a bounce can report the same level
    /// twice).
    pub fn edge(&mut self, edge: Edge) -> Option<Outgoing> {
        if !self.settings.is_input(edge.offset) {
            return None;
        }
        self.changed(edge.offset, edge.high)
    }

    fn changed(&mut self, pin: Offset, high: bool) -> Option<Outgoing> {
        (self.last.insert(pin, high) != Some(high)).then(|| self.state(pin, high))
    }

    /// One poll of every input: `state` for each that changed. A line that
    /// cannot be read is skipped (and reported once per poll by the
    /// caller's log, through the returned count).
    pub fn poll(&mut self, chip: &mut dyn GpioChip) -> (Vec<Outgoing>, usize) {
        let inputs: Vec<Offset> = self.settings.inputs().collect();
        let mut out = Vec::new();
        let mut failed = 0;
        for pin in inputs {
            match chip.get(pin) {
                Ok(high) => out.extend(self.changed(pin, high)),
                Err(_) => failed += 1,
            }
        }
        (out, failed)
    }
}

/// A write's level: `0`/`1` as a JSON number or string (V1 took both),
/// surrounding blanks ignored.
pub fn write_level(payload: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .map(str::trim)
        .unwrap_or(text);
    match text {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::write_level;

    #[test]
    fn write_levels_are_0_or_1_as_number_or_string() {
        for (payload, want) in [
            (&b"0"[..], Some(false)),
            (b"1", Some(true)),
            (b"\"1\"", Some(true)),
            (b" \" 0 \" \n", Some(false)),
            (b"01", None),
            (b"true", None),
            (b"\"\"", None),
            (b"\"1", None),
            (b"\xff", None),
        ] {
            assert_eq!(write_level(payload), want, "{payload:?}");
        }
    }
}
