//! The RTU connector: settings, the serial bus worker (one transaction at a time), port recovery.
//!
//! **Parameters.** `ModbusSerialPort-ResourceId` names the group's
//! `LocalDeviceResourceData` for the serial port (read-write);
//! `ModbusSerialPort` repeats its path. As in Greengrass the connector runs
//! only in a container (`GreengrassContainer`), where the device is bound at
//! that path; the connector opens the grant's path from
//! `ComponentConfig::resources` when there is one, else `ModbusSerialPort`.
//!
//! **Evergreen extensions** (the guide documents no line settings; the
//! Python connector used pyserial's defaults, 9600 baud 8N1): optional
//! `ModbusBaudRate` (default `9600`), `ModbusParity` (`N`, `E` or `O`;
//! default `N`), `ModbusStopBits` (`1` or `2`; default `1`), always 8 data
//! bits, and `ModbusTimeoutMs` (10–60000, default `1000`: the longest RTU
//! frame takes under 300 ms at 9600 baud, so a second is ample for a live
//! slave and short enough that a dead one does not hold the bus long).
//!
//! **One bus, one transaction at a time.** Valid requests wait in a bounded
//! queue of [`QUEUE_CAPACITY`] and run in arrival order. When the queue is
//! full a request is not queued: it is answered at once with "No Response"
//! and a message saying the queue is full, so a flood cannot grow memory or
//! delay later requests without bound. Invalid requests are answered at
//! once, without queueing (so their answers may overtake queued ones; every
//! answer carries its `id`). Each transaction waits at most the timeout; then
//! the line rests 3.5 character times (1.75 ms above 19200 baud), the RTU
//! inter-frame silence, before the next request goes out.
//!
//! **Port recovery.** If the port cannot be opened, or a transaction fails
//! with an I/O error (device unplugged, pty closed), or after a timeout the
//! path no longer names the device that was opened, the port is closed and
//! reopened with exponential backoff (100 ms doubling to 5 s). Meanwhile
//! each request is answered at once with "No Response" saying the port is
//! unavailable; nothing stalls and the connector keeps running. The path is
//! opened anew each time, so a stable name (a udev `/dev/serial/by-id/…`
//! link) survives a device that comes back under another `ttyUSBn` — outside
//! a container. In the container the device is bound when the container
//! starts: a device that comes back with the same device number is
//! reopened in place (and so is a re-created pty with the same number, on
//! cgroup v1; see docs/containers.md), one that comes back as
//! another node is seen only after the connector restarts.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use evergreen_connector_kit::manifest;
use evergreen_connector_kit::params::resource_path;
use evergreen_connector_kit::Backoff;
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec, ResourceKind};
use evergreen_ipc::sdk::{Component, Event, Handle, SdkError};
use evergreen_ipc::{ComponentConfig, LogLevel};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_modbus::client::Context;

use crate::exec::{execute_with_outcome, Outcome};
use crate::request::{parse_request, Request};
use crate::response::{Response, NO_RESPONSE_MESSAGE};

/// The topic requests arrive on.
pub const INPUT_TOPIC: &str = "modbus/adapter/request";
/// The topic responses are published on.
pub const OUTPUT_TOPIC: &str = "modbus/adapter/response";
/// Requests waiting for the bus, at most.
pub const QUEUE_CAPACITY: usize = 100;
/// First and longest wait between attempts to reopen the port.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

const PORT_RESOURCE_ID: &str = "ModbusSerialPort-ResourceId";
const PORT: &str = "ModbusSerialPort";
const BAUD: &str = "ModbusBaudRate";
const PARITY: &str = "ModbusParity";
const STOP_BITS: &str = "ModbusStopBits";
const TIMEOUT: &str = "ModbusTimeoutMs";

const DEFAULT_BAUD: u32 = 9600;
const DEFAULT_TIMEOUT_MS: u64 = 1000;
const MAX_TIMEOUT_MS: u64 = 60_000;

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "ModbusRTUProtocolAdapter",
    versions: &[1, 2, 3],
    description: "Sends Modbus RTU requests from modbus/adapter/request to devices on a serial line \
                  and publishes their answers on modbus/adapter/response.",
    parameters: &[
        ParameterSpec::new(
            PORT_RESOURCE_ID,
            "Id of the LocalDeviceResourceData resource for the serial port (granted read-write).",
        )
        .required()
        .pattern(".+")
        .resource(ResourceKind::LocalDevice),
        ParameterSpec::new(
            PORT,
            "Absolute path of the serial port: the source path of that device resource.",
        )
        .required()
        .pattern(".+"),
        ParameterSpec::new(
            BAUD,
            "Evergreen extension: the line's baud rate (default 9600).",
        )
        .pattern("^[1-9][0-9]{2,6}$")
        .default_value("9600"),
        ParameterSpec::new(
            PARITY,
            "Evergreen extension: parity, N (none), E (even) or O (odd) (default N).",
        )
        .pattern("^[NEO]$")
        .default_value("N"),
        ParameterSpec::new(
            STOP_BITS,
            "Evergreen extension: stop bits, 1 or 2 (default 1).",
        )
        .pattern("^[12]$")
        .default_value("1"),
        ParameterSpec::new(
            TIMEOUT,
            "Evergreen extension: milliseconds to wait for a device's answer, 10-60000 (default 1000).",
        )
        .pattern("^[1-9][0-9]{1,4}$")
        .default_value("1000"),
    ],
    inputs: &[INPUT_TOPIC],
    outputs: &[OUTPUT_TOPIC],
    // Greengrass: container only.
    isolation: manifest::CONTAINER_ONLY,
    pinned: true,
    aws: false,
};

/// Serial line parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// What the connector runs with, from its `ComponentConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The serial device to open.
    pub port: PathBuf,
    pub baud: u32,
    pub parity: Parity,
    pub stop_bits: u8,
    /// Longest wait for an answer.
    pub timeout: Duration,
}

impl Settings {
    /// The settings, and what to log about them once the link is up.
    pub fn from_config(config: &ComponentConfig) -> (Settings, Vec<(LogLevel, String)>) {
        let mut notes = Vec::new();
        let parameter = |name: &str| config.parameters.get(name).map(String::as_str);

        let port = resource_path(config, &mut notes, PORT_RESOURCE_ID, PORT, |path, from| {
            format!("serial port {} {from}", path.display())
        })
        .unwrap_or_else(|| {
            notes.push((
                LogLevel::Error,
                format!("neither a granted {PORT_RESOURCE_ID} nor {PORT}: every request will fail"),
            ));
            PathBuf::new()
        });

        let mut number = |name: &str, default: u64, min: u64, max: u64| -> u64 {
            match parameter(name).map(str::parse::<u64>) {
                None => default,
                Some(Ok(v)) if (min..=max).contains(&v) => v,
                Some(_) => {
                    notes.push((
                        LogLevel::Warn,
                        format!(
                            "{name} {:?} is not a number in {min}-{max}; using {default}",
                            parameter(name).unwrap_or_default()
                        ),
                    ));
                    default
                }
            }
        };
        let baud = number(BAUD, u64::from(DEFAULT_BAUD), 50, 4_000_000) as u32;
        let stop_bits = number(STOP_BITS, 1, 1, 2) as u8;
        let timeout = number(TIMEOUT, DEFAULT_TIMEOUT_MS, 10, MAX_TIMEOUT_MS);
        let parity = match parameter(PARITY) {
            None | Some("N") => Parity::None,
            Some("E") => Parity::Even,
            Some("O") => Parity::Odd,
            Some(other) => {
                notes.push((
                    LogLevel::Warn,
                    format!("{PARITY} {other:?} is not N, E or O; using N"),
                ));
                Parity::None
            }
        };
        (
            Settings {
                port,
                baud,
                parity,
                stop_bits,
                timeout: Duration::from_millis(timeout),
            },
            notes,
        )
    }

    /// Bits on the wire per character: start, 8 data, parity, stop.
    pub fn bits_per_char(&self) -> u32 {
        1 + 8 + u32::from(self.parity != Parity::None) + u32::from(self.stop_bits)
    }

    /// The RTU inter-frame silence: 3.5 character times, fixed at 1.75 ms
    /// above 19200 baud (Modbus over serial line V1.02, 2.5.1.1).
    pub fn frame_gap(&self) -> Duration {
        if self.baud > 19200 {
            Duration::from_micros(1750)
        } else {
            Duration::from_secs_f64(3.5 * f64::from(self.bits_per_char()) / f64::from(self.baud))
        }
    }

    fn describe(&self) -> String {
        let parity = match self.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        format!(
            "{} at {} baud 8{parity}{}, timeout {} ms",
            self.port.display(),
            self.baud,
            self.stop_bits,
            self.timeout.as_millis()
        )
    }
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    handle.info(format!("Modbus RTU on {}", settings.describe()));

    let (queue, waiting) = mpsc::channel::<Request>(QUEUE_CAPACITY);
    let bus = tokio::spawn(Bus::new(settings, handle.clone()).serve(waiting));
    loop {
        match component.next_event().await {
            None | Some(Event::Shutdown { .. }) => break,
            // Only a component that serves a function name gets invokes.
            Some(Event::Invoke(_)) => {}
            Some(Event::Refused { topic, reason }) => {
                handle.warn(format!("publish on {topic} refused: {reason}"))
            }
            Some(Event::Message(m)) => {
                let answer = match parse_request(&m.payload) {
                    Err(invalid) => {
                        let invalid = Response::from(*invalid);
                        handle.warn(format!(
                            "invalid request from {}: {}",
                            m.source,
                            invalid.error_message().unwrap_or_default()
                        ));
                        invalid
                    }
                    Ok(request) => match queue.try_send(request) {
                        Ok(()) => continue,
                        Err(mpsc::error::TrySendError::Full(request)) => {
                            handle.warn(format!(
                                "request {} refused: {QUEUE_CAPACITY} requests already wait for the bus",
                                request.id
                            ));
                            Response::no_response(
                                &request,
                                format!(
                                    "Request not sent: the serial bus queue is full ({QUEUE_CAPACITY} requests waiting)"
                                ),
                            )
                        }
                        Err(mpsc::error::TrySendError::Closed(request)) => Response::no_response(
                            &request,
                            "Request not sent: the bus worker stopped",
                        ),
                    },
                };
                publish(&handle, &answer).await?;
            }
        }
    }
    // Queued requests are dropped: the supervisor wants us gone within its
    // deadline, and a queue of dead slaves could take minutes.
    bus.abort();
    handle.info("stopping");
    Ok(())
}

async fn publish(handle: &Handle, response: &Response) -> Result<(), SdkError> {
    match handle.publish(OUTPUT_TOPIC, response.to_json()).await {
        Err(SdkError::Closed) => Err(SdkError::Closed),
        Err(e) => {
            handle.error(format!("response {} not published: {e}", response.id));
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// The serial bus: the open port, if any, and when to try opening it next.
struct Bus {
    settings: Settings,
    handle: Handle,
    ctx: Option<Context>,
    /// The device number of the open port, to notice the path now naming
    /// another device.
    opened: Option<u64>,
    backoff: Backoff,
    next_open: Instant,
    /// Why the port is closed, for the answers meanwhile.
    why_closed: String,
}

impl Bus {
    fn new(settings: Settings, handle: Handle) -> Bus {
        Bus {
            settings,
            handle,
            ctx: None,
            opened: None,
            backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
            next_open: Instant::now(),
            why_closed: "not opened yet".into(),
        }
    }

    async fn serve(mut self, mut waiting: mpsc::Receiver<Request>) {
        self.open();
        loop {
            tokio::select! {
                request = waiting.recv() => {
                    let Some(request) = request else { break };
                    let response = self.transact(&request).await;
                    if publish(&self.handle, &response).await.is_err() {
                        break;
                    }
                }
                // Reopen in the background, so the first request after the
                // port returns already finds it open.
                _ = tokio::time::sleep_until(self.next_open), if self.ctx.is_none() => self.open(),
            }
        }
    }

    /// Tries to open the port; on failure schedules the next attempt.
    fn open(&mut self) {
        let s = &self.settings;
        let parity = match s.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        };
        let stop_bits = if s.stop_bits == 2 {
            tokio_serial::StopBits::Two
        } else {
            tokio_serial::StopBits::One
        };
        let path = s.port.to_string_lossy();
        let opened = tokio_serial::SerialStream::open(
            &tokio_serial::new(path.as_ref(), s.baud)
                .data_bits(tokio_serial::DataBits::Eight)
                .parity(parity)
                .stop_bits(stop_bits)
                .flow_control(tokio_serial::FlowControl::None)
                // Not exclusive, as Greengrass's connector (pyserial) opened
                // it: serialport's default TIOCEXCL outlives a SIGKILLed
                // connector while anyone else holds the line, and a jailed
                // connector without CAP_SYS_ADMIN can never open it again
                // ("Device or resource busy").
                .exclusive(false),
        );
        match opened {
            Ok(stream) => {
                self.handle.info(format!("opened {}", s.describe()));
                self.opened = std::fs::metadata(&s.port).ok().map(|m| m.rdev());
                self.ctx = Some(tokio_modbus::client::rtu::attach(stream));
                self.backoff.reset();
            }
            Err(e) => {
                let why = format!("cannot open serial port {path}: {e}");
                // Log once per outage, not at every attempt.
                if why != self.why_closed {
                    self.handle.warn(format!(
                        "{why}; retrying with backoff up to {} s",
                        BACKOFF_MAX.as_secs()
                    ));
                }
                self.why_closed = why;
                self.next_open = Instant::now() + self.backoff.next_delay();
            }
        }
    }

    fn close(&mut self, why: String) {
        self.handle.warn(format!("closing serial port: {why}"));
        self.ctx = None;
        self.opened = None;
        self.why_closed = why;
        self.backoff.reset();
        self.next_open = Instant::now() + BACKOFF_MIN;
    }

    /// One request on the bus, always answered within about the timeout.
    async fn transact(&mut self, request: &Request) -> Response {
        if self.ctx.is_none() && Instant::now() >= self.next_open {
            self.open();
        }
        let Some(ctx) = self.ctx.as_mut() else {
            return Response::no_response(
                request,
                format!(
                    "{NO_RESPONSE_MESSAGE} (serial port unavailable: {})",
                    self.why_closed
                ),
            );
        };
        let (response, outcome) = execute_with_outcome(ctx, request, self.settings.timeout).await;
        match outcome {
            Outcome::Answered => {}
            Outcome::Mismatch(why) => self
                .handle
                .debug(format!("request {}: unusable answer: {why}", request.id)),
            Outcome::TimedOut => {
                self.handle.debug(format!(
                    "request {}: no answer from device {} within {} ms",
                    request.id,
                    request.device,
                    self.settings.timeout.as_millis()
                ));
                // A silent port can be one that was replaced underneath us.
                let now = std::fs::metadata(&self.settings.port)
                    .ok()
                    .map(|m| m.rdev());
                if now.is_none() || now != self.opened {
                    self.close(format!(
                        "{} no longer names the opened device",
                        self.settings.port.display()
                    ));
                }
            }
            Outcome::Transport(why) => self.close(why),
        }
        tokio::time::sleep(self.settings.frame_gap()).await;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_connector_kit::testing;
    use evergreen_connector_kit::testing::ManifestChecks;

    fn config(params: &[(&str, &str)], grant: Option<&str>) -> ComponentConfig {
        testing::config(&MANIFEST, 3, params)
            .id("modbus")
            .core("core")
            .maybe_grant("serial", grant, true)
            .build()
    }

    const BASE: [(&str, &str); 2] = [
        ("ModbusSerialPort-ResourceId", "serial"),
        ("ModbusSerialPort", "/dev/ttyS9"),
    ];

    #[test]
    fn defaults_are_9600_8n1_and_a_second() {
        let (s, notes) = Settings::from_config(&config(&BASE, None));
        assert_eq!(s.port, PathBuf::from("/dev/ttyS9"));
        assert_eq!((s.baud, s.parity, s.stop_bits), (9600, Parity::None, 1));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!(s.bits_per_char(), 10);
        assert!(notes.iter().all(|(l, _)| *l == LogLevel::Info), "{notes:?}");
        // 3.5 chars of 10 bits at 9600 baud.
        assert_eq!(s.frame_gap().as_micros(), 3645);
    }

    #[test]
    fn the_grant_wins_and_extensions_apply() {
        let mut params = BASE.to_vec();
        params.extend([
            ("ModbusBaudRate", "115200"),
            ("ModbusParity", "E"),
            ("ModbusStopBits", "2"),
            ("ModbusTimeoutMs", "250"),
        ]);
        let (s, _) = Settings::from_config(&config(&params, Some("/dev/pts/7")));
        assert_eq!(s.port, PathBuf::from("/dev/pts/7"));
        assert_eq!((s.baud, s.parity, s.stop_bits), (115200, Parity::Even, 2));
        assert_eq!(s.timeout, Duration::from_millis(250));
        assert_eq!(s.bits_per_char(), 12);
        assert_eq!(s.frame_gap(), Duration::from_micros(1750));
    }

    #[test]
    fn bad_extension_values_fall_back_with_a_warning() {
        let mut params = BASE.to_vec();
        params.extend([
            ("ModbusBaudRate", "fast"),
            ("ModbusParity", "X"),
            ("ModbusTimeoutMs", "99999"),
        ]);
        let (s, notes) = Settings::from_config(&config(&params, None));
        assert_eq!((s.baud, s.parity), (9600, Parity::None));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!(
            notes.iter().filter(|(l, _)| *l == LogLevel::Warn).count(),
            3,
            "{notes:?}"
        );
    }

    #[test]
    fn manifest_is_consistent() {
        for p in MANIFEST.parameters {
            if let Some(default) = p.default {
                assert!(MANIFEST.admits(p.name, default), "{}", p.name);
            }
        }
        assert!(MANIFEST.admits("ModbusBaudRate", "115200"));
        assert!(!MANIFEST.admits("ModbusBaudRate", "0"));
        assert!(MANIFEST.admits("ModbusTimeoutMs", "10"));
        assert!(!MANIFEST.admits("ModbusTimeoutMs", "5"));
        assert!(!MANIFEST.admits("ModbusParity", "n"));
        assert_eq!(
            MANIFEST
                .parameter(PORT_RESOURCE_ID)
                .and_then(|p| p.resource),
            Some(ResourceKind::LocalDevice)
        );
        MANIFEST.assert_filters_valid();
    }
}
