//! The real backend: the kernel's GPIO character device, v2 uAPI, through
//! `gpiocdev` (no libgpiod). Also finds the Pi's GPIO chip by its label.
//!
//! **BCM numbers and line offsets.** V1 numbered pins the SoC's way (BCM).
//! On each Pi below, the 40-pin header's GPIO 0–27 are lines 0–27 of one
//! chip, found by its label; the connector uses the BCM number as the line
//! offset on that chip:
//!
//! | Board | Chip label | Lines | Usual node | Offsets for BCM 0–27 |
//! |---|---|---|---|---|
//! | Pi 3 B/B+ (BCM2837) | `pinctrl-bcm2835` | 54 | `/dev/gpiochip0` | 0–27 |
//! | Pi 4 B (BCM2711) | `pinctrl-bcm2711` | 58 | `/dev/gpiochip0` | 0–27 |
//! | Pi 5 (RP1) | `pinctrl-rp1` | 54 | `/dev/gpiochip4` before Raspberry Pi kernel 6.6.45, `/dev/gpiochip0` from it | 0–27 |
//!
//! Sources: the kernel driver `drivers/pinctrl/bcm/pinctrl-bcm2835.c`
//! registers one gpio_chip labelled with its driver name, lines numbered as
//! the SoC's GPIOs (54; 58 on BCM2711, whose chip says `pinctrl-bcm2711`);
//! the Raspberry Pi kernel's `drivers/pinctrl/pinctrl-rp1.c` (`MODULE_NAME
//! "pinctrl-rp1"`, `RP1_NUM_GPIOS 54` in 3 banks, bank 0 being GPIO 0–27
//! of the header). `gpiodetect` output on real boards: Pi 4 on 6.6.47
//! `gpiochip0 [pinctrl-bcm2711] (58 lines)`, Pi 5 `gpiochip4 [pinctrl-rp1]
//! (54 lines)` before and `gpiochip0 [pinctrl-rp1] (54 lines)` after
//! raspberrypi/linux pull request 6144 ("Use gpiochip0 for the user-facing
//! GPIOs on Pi 5", 2024, which also moved the SoC's own chips to 10 and
//! up), as reported in WiringPi issue 280 and gpiozero issue 1166; rppal
//! issue 71 shows the Pi 4's label change from `pinctrl-bcm2835` to
//! `pinctrl-bcm2711` (kernel 5.10). Numbers moved twice; labels did not,
//! which is why the chip is found by label.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gpiocdev::line::{Bias, EdgeDetection, EdgeKind, Value};
use gpiocdev::Request;

use crate::chip::{Edge, GpioChip, GpioError, LineConfig, Offset, Pull, Watch};

/// The labels of the Pi GPIO chips whose offsets are BCM numbers.
pub const PI_CHIP_LABELS: &[&str] = &["pinctrl-bcm2711", "pinctrl-bcm2835", "pinctrl-rp1"];
const CONSUMER: &str = "evergreen-gpio";

fn chip_err(path: &Path, e: impl std::fmt::Display) -> GpioError {
    GpioError::Chip {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The label of the chip at `path`.
pub fn label(path: &Path) -> Result<String, GpioError> {
    let chip = gpiocdev::Chip::from_path(path).map_err(|e| chip_err(path, e))?;
    Ok(chip.info().map_err(|e| chip_err(path, e))?.label)
}

/// The Pi's GPIO chip: `granted` when it is one (the device resource's
/// path), else the first `gpiochip*` under `dev` with a Pi label (a grant
/// still naming V1's `/dev/gpiomem` is not a chip). Returns its path and
/// label, or why none was found.
pub fn find_pi_chip(dev: &Path, granted: Option<&Path>) -> Result<(PathBuf, String), GpioError> {
    if let Some(p) = granted {
        if let Ok(l) = label(p) {
            if PI_CHIP_LABELS.contains(&l.as_str()) {
                return Ok((p.to_path_buf(), l));
            }
        }
    }
    let mut nodes: Vec<PathBuf> = std::fs::read_dir(dev)
        .map_err(|e| chip_err(dev, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("gpiochip"))
        })
        .collect();
    nodes.sort();
    for p in nodes {
        if let Ok(l) = label(&p) {
            if PI_CHIP_LABELS.contains(&l.as_str()) {
                return Ok((p, l));
            }
        }
    }
    Err(GpioError::Chip {
        path: granted.unwrap_or(dev).display().to_string(),
        reason: format!(
            "no GPIO character device labelled {} (grant /dev/gpiochip0, or /dev/gpiochip4 on a Pi 5 \
             with an older kernel, instead of V1's /dev/gpiomem)",
            PI_CHIP_LABELS.join(" or ")
        ),
    })
}

/// A GPIO chip through the character device.
#[derive(Debug)]
pub struct CdevChip {
    path: PathBuf,
    inputs: Option<Request>,
    outputs: Option<Request>,
    input_offsets: Vec<Offset>,
}

impl CdevChip {
    /// The chip at `path`, any label (tests open a gpio-sim chip).
    pub fn open(path: &Path) -> Result<CdevChip, GpioError> {
        label(path)?;
        Ok(CdevChip {
            path: path.to_path_buf(),
            inputs: None,
            outputs: None,
            input_offsets: Vec::new(),
        })
    }

    fn request_inputs(&self, lines: &[(Offset, Pull)], edges: bool) -> Result<Request, GpioError> {
        let mut b = Request::builder();
        b.on_chip(&self.path).with_consumer(CONSUMER);
        for &(offset, pull) in lines {
            b.with_line(offset).as_input().with_bias(match pull {
                Pull::Up => Bias::PullUp,
                Pull::Down => Bias::PullDown,
                // RPi.GPIO's PUD_OFF: no pull resistor.
                Pull::None => Bias::Disabled,
            });
            if edges {
                b.with_edge_detection(EdgeDetection::BothEdges);
            }
        }
        b.request().map_err(|e| GpioError::Request {
            offsets: lines.iter().map(|l| l.0).collect(),
            reason: e.to_string(),
        })
    }

    fn holder(&self, offset: Offset) -> Option<&Request> {
        if self.input_offsets.contains(&offset) {
            self.inputs.as_ref()
        } else {
            self.outputs.as_ref()
        }
    }
}

impl GpioChip for CdevChip {
    fn request(&mut self, lines: &[LineConfig]) -> Result<Watch, GpioError> {
        let inputs: Vec<(Offset, Pull)> = lines
            .iter()
            .filter_map(|l| match *l {
                LineConfig::Input { offset, pull } => Some((offset, pull)),
                LineConfig::Output { .. } => None,
            })
            .collect();
        let mut watch = Watch::Events;
        if !inputs.is_empty() {
            // Edge detection needs an interrupt per line; a chip without
            // one refuses the request, and the inputs are polled instead.
            let req = match self.request_inputs(&inputs, true) {
                Ok(r) => r,
                Err(_) => {
                    watch = Watch::Polling;
                    self.request_inputs(&inputs, false)?
                }
            };
            self.inputs = Some(req);
            self.input_offsets = inputs.iter().map(|l| l.0).collect();
        }
        let outputs: Vec<(Offset, bool)> = lines
            .iter()
            .filter_map(|l| match *l {
                LineConfig::Output { offset, initial } => Some((offset, initial)),
                LineConfig::Input { .. } => None,
            })
            .collect();
        if !outputs.is_empty() {
            let mut b = Request::builder();
            b.on_chip(&self.path).with_consumer(CONSUMER);
            for &(offset, high) in &outputs {
                b.with_line(offset)
                    .as_output(if high { Value::Active } else { Value::Inactive });
            }
            self.outputs = Some(b.request().map_err(|e| GpioError::Request {
                offsets: outputs.iter().map(|l| l.0).collect(),
                reason: e.to_string(),
            })?);
        }
        Ok(watch)
    }

    fn get(&mut self, offset: Offset) -> Result<bool, GpioError> {
        let err = |reason: String| GpioError::Line {
            offset,
            op: "get",
            reason,
        };
        let req = self
            .holder(offset)
            .ok_or_else(|| err("not requested".into()))?;
        req.value(offset)
            .map(|v| v == Value::Active)
            .map_err(|e| err(e.to_string()))
    }

    fn set(&mut self, offset: Offset, high: bool) -> Result<(), GpioError> {
        let err = |reason: String| GpioError::Line {
            offset,
            op: "set",
            reason,
        };
        let req = self
            .outputs
            .as_ref()
            .ok_or_else(|| err("not an output".into()))?;
        req.set_value(offset, if high { Value::Active } else { Value::Inactive })
            .map_err(|e| err(e.to_string()))
    }

    fn wait_edge(&mut self, timeout: Duration) -> Result<Option<Edge>, GpioError> {
        let Some(req) = self.inputs.as_ref() else {
            std::thread::sleep(timeout);
            return Ok(None);
        };
        let ready = req
            .wait_edge_event(timeout)
            .map_err(|e| GpioError::Events(e.to_string()))?;
        if !ready {
            return Ok(None);
        }
        let ev = req
            .read_edge_event()
            .map_err(|e| GpioError::Events(e.to_string()))?;
        Ok(Some(Edge {
            offset: ev.offset,
            high: ev.kind == EdgeKind::Rising,
        }))
    }
}
