//! The `RaspberryPiGPIO` connector (Greengrass versions 1, 2 and 3): reads
//! and writes the Raspberry Pi's GPIO lines (BCM numbers) for the group.
//!
//! **Topics** (V1's): a message on `gpio/<core>/<pin>/read` (payload
//! ignored) or `gpio/<core>/<pin>/write` (payload `0` or `1`, a JSON number
//! or string) is answered on `gpio/<core>/<pin>/state` with `"0"` or `"1"`;
//! each change of an input is published there too. Invalid requests are
//! answered on `gpio/<core>/error` with V1's shape
//! `{"topic": …, "error": "Invalid GPIO operation", "long_description": …}`
//! (a write to an input, a pin not configured); a write payload other than
//! 0/1 gets `"error": "Invalid GPIO payload"`, and a failing chip `"GPIO
//! operation failed"`. Messages for another core thing are logged and
//! dropped.
//!
//! **Hardware.** Not RPi.GPIO and `/dev/gpiomem`: the kernel's GPIO
//! character device (v2 uAPI), on the chip found by label ([`cdev`]). The
//! parameter keeps V1's name `GpioMem-ResourceId`, but the device resource
//! it names must grant `/dev/gpiochip0` (or `/dev/gpiochip4` on a Pi 5 with
//! a kernel before 6.6.45) instead of `/dev/gpiomem`. Inputs get their pull
//! from the kernel (`U`/`D`), outputs are requested at their initial level
//! (`H`/`L`, low by default). Inputs are watched by edge events on both
//! edges when the chip gives them, else polled every `InputPollPeriod` ms
//! (V1 always polled; events miss fewer short pulses).
//!
//! **Isolation.** Greengrass container only, as in V1.
//!
//! The connector logic ([`logic`]) runs on a thread ([`worker`]) that owns a
//! [`chip::GpioChip`]: the real one ([`cdev`]) or a simulated one ([`sim`])
//! in tests.

pub mod cdev;
pub mod chip;
pub mod logic;
pub mod settings;
pub mod sim;
pub mod worker;

use std::path::Path;

use evergreen_connector_kit::manifest;
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec, ResourceKind};
use evergreen_ipc::sdk::{Component, Event, SdkError};
use evergreen_ipc::LogLevel;

use crate::chip::GpioChip;
use crate::settings::*;
use crate::worker::{Output, Request};

pub const READ_FILTER: &str = "gpio/+/+/read";
pub const WRITE_FILTER: &str = "gpio/+/+/write";
pub const STATE_FILTER: &str = "gpio/+/+/state";
pub const ERROR_FILTER: &str = "gpio/+/error";

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "RaspberryPiGPIO",
    versions: &[1, 2, 3],
    description: "Reads and writes Raspberry Pi GPIO lines (BCM numbers) through the GPIO character device: \
                  requests on gpio/<core>/<pin>/read|write, levels on gpio/<core>/<pin>/state (also on every \
                  input change), errors on gpio/<core>/error.",
    parameters: &[
        ParameterSpec::new(INPUT_GPIOS, "Input GPIOs, e.g. 5,6U,7D (U pull-up, D pull-down).")
            .pattern("^$|^[0-9]+[UD]?(,[0-9]+[UD]?)*$"),
        ParameterSpec::new(INPUT_POLL_PERIOD, "Milliseconds between polls of the inputs when the chip has no edge events (default 50).")
            .pattern("^$|^[1-9][0-9]*$"),
        ParameterSpec::new(OUTPUT_GPIOS, "Output GPIOs, e.g. 8H,9,27L (H starts high, L or none low).")
            .pattern("^$|^[0-9]+[HL]?(,[0-9]+[HL]?)*$"),
        ParameterSpec::new(GPIO_MEM_RESOURCE, "Id of the device resource granting the GPIO character device (/dev/gpiochip0; V1 granted /dev/gpiomem).")
            .required()
            .pattern(".+")
            .resource(ResourceKind::LocalDevice),
    ],
    inputs: &[READ_FILTER, WRITE_FILTER],
    outputs: &[STATE_FILTER, ERROR_FILTER],
    isolation: manifest::CONTAINER_ONLY,
    pinned: true,
    aws: false,
};

/// Requests that may wait for the GPIO thread before the IPC side waits.
const QUEUE: usize = 256;

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, parsed) = Component::start(|c| (parse(c), Vec::new())).await?;
    let settings = match parsed {
        Ok(s) => s,
        Err(errors) => {
            // V1 refused an invalid pin configuration at start; stay up
            // (a pinned connector would be restarted in a loop) and say why.
            for e in &errors {
                handle.error(format!("invalid parameter {e}"));
            }
            return idle(&mut component, &handle).await;
        }
    };
    let chip = match cdev::find_pi_chip(Path::new("/dev"), settings.device.as_deref()).and_then(
        |(path, label)| {
            handle.info(format!("GPIO chip {} ({label})", path.display()));
            cdev::CdevChip::open(&path)
        },
    ) {
        Ok(c) => c,
        Err(e) => {
            handle.error(e.to_string());
            return idle(&mut component, &handle).await;
        }
    };
    let (req_tx, mut out_rx, thread) = match spawn(Box::new(chip), logic::Gpio::new(settings)) {
        Ok(parts) => parts,
        Err(e) => {
            handle.error(e.to_string());
            return idle(&mut component, &handle).await;
        }
    };
    loop {
        tokio::select! {
            out = out_rx.recv() => match out {
                Some(Output::Publish(m)) => handle.publish_or_log(m.topic, m.payload).await?,
                Some(Output::Log(level, text)) => handle.log(level, text),
                None => break,
            },
            event = component.next_event() => match event {
                None | Some(Event::Shutdown { .. }) => break,
                // Only a component that serves a function name gets invokes.
                Some(Event::Invoke(_)) => {}
                Some(Event::Refused { topic, reason }) => handle.warn(format!("publish on {topic} refused: {reason}")),
                Some(Event::Message(m)) => {
                    if req_tx.send(Request { topic: m.topic, payload: m.payload }).is_err() {
                        break;
                    }
                }
            }
        }
    }
    drop(req_tx);
    drop(out_rx);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    handle.info("stopping");
    Ok(())
}

/// The channels of a running GPIO thread and its handle.
pub type Running = (
    std::sync::mpsc::Sender<Request>,
    tokio::sync::mpsc::Receiver<Output>,
    std::thread::JoinHandle<()>,
);

/// Requests the lines on `chip` and starts the GPIO thread over it; it
/// stops when the request sender is dropped.
pub fn spawn(
    mut chip: Box<dyn GpioChip>,
    mut gpio: logic::Gpio,
) -> Result<Running, chip::GpioError> {
    let watch = chip.request(&gpio.settings().lines)?;
    // Before the thread starts: a change after `spawn` returns must be a change.
    gpio.prime(chip.as_mut());
    let (req_tx, req_rx) = std::sync::mpsc::channel();
    let (out_tx, out_rx) = tokio::sync::mpsc::channel(QUEUE);
    let _ = out_tx.try_send(Output::Log(
        LogLevel::Info,
        match watch {
            chip::Watch::Events => "inputs watched by edge events".to_string(),
            chip::Watch::Polling => format!(
                "no edge events on this chip: polling inputs every {} ms",
                gpio.settings().poll_period.as_millis()
            ),
        },
    ));
    let thread = std::thread::Builder::new()
        .name("gpio".into())
        .spawn(move || worker::run(chip.as_mut(), &mut gpio, watch, &req_rx, &out_tx))
        .map_err(|e| chip::GpioError::Events(format!("starting the GPIO thread: {e}")))?;
    Ok((req_tx, out_rx, thread))
}

/// Waits for the end of the link, logging what arrives, after a start
/// that cannot serve requests.
async fn idle(
    component: &mut Component,
    handle: &evergreen_ipc::sdk::Handle,
) -> Result<(), SdkError> {
    while let Some(event) = component.next_event().await {
        match event {
            Event::Shutdown { .. } => break,
            Event::Message(m) => handle.warn(format!(
                "not configured: dropping the message on {}",
                m.topic
            )),
            // Only a component that serves a function name gets invokes.
            Event::Invoke(_) => {}
            Event::Refused { .. } => {}
        }
    }
    Ok(())
}
