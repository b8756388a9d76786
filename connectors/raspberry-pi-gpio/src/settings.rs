//! The connector's parameters, validated into [`Settings`] or into the list
//! of every problem found, each naming its parameter (V1 refused an invalid
//! pin configuration at start; so does this connector, with all problems at
//! once). Patterns are V1's; on top of them: pins are BCM 0–27 (the 40-pin
//! header), at least one of `InputGpios`/`OutputGpios`, no pin twice.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use evergreen_ipc::ComponentConfig;

use crate::chip::{LineConfig, Offset, Pull};

pub const INPUT_GPIOS: &str = "InputGpios";
pub const INPUT_POLL_PERIOD: &str = "InputPollPeriod";
pub const OUTPUT_GPIOS: &str = "OutputGpios";
pub const GPIO_MEM_RESOURCE: &str = "GpioMem-ResourceId";

/// The highest BCM number on the 40-pin header of every Pi this connector
/// maps (see [`crate::cdev`]).
pub const MAX_BCM: Offset = 27;
/// `InputPollPeriod` when not given (V1 documents no default; 50 ms is its
/// advice for a push button).
pub const DEFAULT_POLL_MS: u64 = 50;

/// What the connector runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub core: String,
    /// Inputs then outputs, each in the order given.
    pub lines: Vec<LineConfig>,
    pub poll_period: Duration,
    /// The granted path of `GpioMem-ResourceId` (`None` when not granted,
    /// e.g. the connector started by hand).
    pub device: Option<PathBuf>,
}

impl Settings {
    pub fn is_input(&self, pin: Offset) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(l, LineConfig::Input { offset, .. } if *offset == pin))
    }

    pub fn is_output(&self, pin: Offset) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(l, LineConfig::Output { offset, .. } if *offset == pin))
    }

    pub fn inputs(&self) -> impl Iterator<Item = Offset> + '_ {
        self.lines.iter().filter_map(|l| match l {
            LineConfig::Input { offset, .. } => Some(*offset),
            LineConfig::Output { .. } => None,
        })
    }
}

/// One problem with one parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {problem}")]
pub struct ParamError {
    pub parameter: &'static str,
    pub problem: String,
}

fn err(parameter: &'static str, problem: impl Into<String>) -> ParamError {
    ParamError {
        parameter,
        problem: problem.into(),
    }
}

/// Parses a comma list of `<bcm><suffix>`; `suffixes` are the letters
/// allowed after the number.
fn pins(
    name: &'static str,
    value: &str,
    suffixes: &[char],
    errors: &mut Vec<ParamError>,
) -> Vec<(Offset, Option<char>)> {
    let mut out = Vec::new();
    if value.is_empty() {
        return out;
    }
    for item in value.split(',') {
        let (digits, suffix) = match item.char_indices().last() {
            Some((i, c)) if suffixes.contains(&c) => (&item[..i], Some(c)),
            _ => (item, None),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            errors.push(err(
                name,
                format!(
                    "{item:?} is not a BCM GPIO number with an optional {} suffix",
                    suffixes.iter().collect::<String>()
                ),
            ));
            continue;
        }
        match digits.parse::<Offset>() {
            Ok(n) if n <= MAX_BCM => out.push((n, suffix)),
            _ => errors.push(err(
                name,
                format!("GPIO {digits} is not on the 40-pin header (BCM 0-{MAX_BCM})"),
            )),
        }
    }
    out
}

/// Validates the configuration: the settings, or every problem found.
pub fn parse(config: &ComponentConfig) -> Result<Settings, Vec<ParamError>> {
    let get = |n: &str| config.parameters.get(n).map(|v| v.trim()).unwrap_or("");
    let mut errors = Vec::new();
    let inputs = pins(INPUT_GPIOS, get(INPUT_GPIOS), &['U', 'D'], &mut errors);
    let outputs = pins(OUTPUT_GPIOS, get(OUTPUT_GPIOS), &['H', 'L'], &mut errors);
    if get(INPUT_GPIOS).is_empty() && get(OUTPUT_GPIOS).is_empty() {
        errors.push(err(
            INPUT_GPIOS,
            "at least one of InputGpios and OutputGpios must list a GPIO",
        ));
    }
    let mut seen: BTreeMap<Offset, &'static str> = BTreeMap::new();
    let mut lines = Vec::new();
    for (name, offset, line) in inputs
        .iter()
        .map(|&(offset, s)| {
            let pull = match s {
                Some('U') => Pull::Up,
                Some('D') => Pull::Down,
                _ => Pull::None,
            };
            (INPUT_GPIOS, offset, LineConfig::Input { offset, pull })
        })
        .chain(outputs.iter().map(|&(offset, s)| {
            let initial = s == Some('H');
            (OUTPUT_GPIOS, offset, LineConfig::Output { offset, initial })
        }))
    {
        match seen.insert(offset, name) {
            Some(first) if first == name => {
                errors.push(err(name, format!("GPIO {offset} is listed twice")))
            }
            Some(_) => errors.push(err(
                OUTPUT_GPIOS,
                format!("GPIO {offset} is both an input and an output"),
            )),
            None => lines.push(line),
        }
    }
    let poll = get(INPUT_POLL_PERIOD);
    let poll_period = if poll.is_empty() {
        Duration::from_millis(DEFAULT_POLL_MS)
    } else {
        match poll.parse::<u64>() {
            Ok(ms) if ms >= 1 && !poll.starts_with('0') => Duration::from_millis(ms),
            _ => {
                errors.push(err(
                    INPUT_POLL_PERIOD,
                    format!("{poll:?} is not a whole number of milliseconds from 1"),
                ));
                Duration::from_millis(DEFAULT_POLL_MS)
            }
        }
    };
    let resource = get(GPIO_MEM_RESOURCE);
    if resource.is_empty() {
        errors.push(err(
            GPIO_MEM_RESOURCE,
            "required: the id of the device resource granting the GPIO chip",
        ));
    }
    let device = config
        .resources
        .get(resource)
        .map(|g| PathBuf::from(&g.path));
    if errors.is_empty() {
        Ok(Settings {
            core: config.core_thing_name.clone(),
            lines,
            poll_period,
            device,
        })
    } else {
        Err(errors)
    }
}
