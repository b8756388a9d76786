//! The connector's parameters, read from its `ComponentConfig` into
//! [`Settings`], with a note for the log about every value that had to be
//! replaced or ignored. Never fails: group validation has already checked
//! the values against the manifest's patterns, and anything still wrong
//! (a connector started by hand) gets a logged fallback, not a panic.

use std::path::PathBuf;
use std::time::Duration;

use evergreen_connector_kit::params::resource_path;
use evergreen_ipc::{ComponentConfig, LogLevel};

use crate::request::Encoding;
use crate::{MAX_READ_LENGTH, PARITY};

pub(crate) const BAUD_RATE: &str = "BaudRate";
pub(crate) const TIMEOUT: &str = "Timeout";
pub(crate) const SERIAL_PORT: &str = "SerialPort";
pub(crate) const SERIAL_PORT_RESOURCE: &str = "SerialPort-ResourceId";
pub(crate) const POLLING_READ: &str = "PollingRead";
pub(crate) const POLLING_READ_LENGTH: &str = "PollingReadLength";
pub(crate) const POLLING_READ_INTERVAL: &str = "PollingReadInterval";
pub(crate) const POLLING_READ_TYPE: &str = "PollingReadType";
pub(crate) const RTS_CTS: &str = "RtsCts";
pub(crate) const XON_XOFF: &str = "XonXoff";

/// Used when `BaudRate` is missing or not a number (only outside validation).
const FALLBACK_BAUD: u32 = 9600;
/// Used when `Timeout` is missing or out of range (only outside validation).
const FALLBACK_TIMEOUT_S: u64 = 5;
/// The longest `Timeout` the pattern admits.
const MAX_TIMEOUT_S: u64 = 59;

/// Parity as the `Parity` parameter names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
    /// The parity bit is always 1. tokio-serial has no such setting; the
    /// port module sets `PARENB|CMSPAR|PARODD` itself.
    Mark,
    /// The parity bit is always 0 (`PARENB|CMSPAR`).
    Space,
}

/// How the port is configured when it is opened: 8 data bits and 1 stop
/// bit always (pyserial's defaults, which the Greengrass connector used
/// without a parameter to change them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortOptions {
    pub baud_rate: u32,
    pub parity: Parity,
    pub rts_cts: bool,
    pub xon_xoff: bool,
}

/// Polling-Read mode: what to read and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polling {
    pub length: usize,
    pub interval: Duration,
    pub encoding: Encoding,
}

/// What the connector runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The device node opened: the granted resource's path when there is a
    /// grant (NoContainer: the resource's `SourcePath`), else `SerialPort`.
    pub device: PathBuf,
    /// `SerialPort` without its leading `/`: the last levels of every topic.
    pub topic_port: String,
    pub core_thing_name: String,
    pub options: PortOptions,
    /// `Timeout`: how long a read waits for its bytes.
    pub timeout: Duration,
    /// `None` in Read-On-Demand mode (or when polling is misconfigured).
    pub polling: Option<Polling>,
}

/// `true`/`false` in any case; the empty string (which the optional
/// parameters' patterns admit) counts as absent.
fn flag(value: Option<&str>) -> Option<bool> {
    match value?.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn present(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

impl Settings {
    /// The settings, and what to log about them once the link is up.
    pub fn from_config(config: &ComponentConfig) -> (Settings, Vec<(LogLevel, String)>) {
        let mut notes = Vec::new();
        let parameter = |name: &str| present(config.parameters.get(name).map(String::as_str));

        let baud_rate = match parameter(BAUD_RATE).map(str::parse::<u32>) {
            Some(Ok(b)) if b > 0 => b,
            _ => {
                notes.push((
                    LogLevel::Error,
                    format!("{BAUD_RATE} is missing or not a baud rate; using {FALLBACK_BAUD}"),
                ));
                FALLBACK_BAUD
            }
        };
        let timeout = match parameter(TIMEOUT).map(str::parse::<u64>) {
            Some(Ok(t)) if (1..=MAX_TIMEOUT_S).contains(&t) => t,
            _ => {
                notes.push((
                    LogLevel::Error,
                    format!("{TIMEOUT} is missing or not 1-{MAX_TIMEOUT_S} seconds; using {FALLBACK_TIMEOUT_S}"),
                ));
                FALLBACK_TIMEOUT_S
            }
        };
        let parity = match parameter(PARITY).map(str::to_ascii_uppercase).as_deref() {
            None | Some("N") => Parity::None,
            Some("E") => Parity::Even,
            Some("O") => Parity::Odd,
            Some("M") => Parity::Mark,
            Some("S") => Parity::Space,
            Some(other) => {
                notes.push((
                    LogLevel::Error,
                    format!("{PARITY} {other:?} is not one of N, E, O, S, M; using N"),
                ));
                Parity::None
            }
        };
        let mut switch = |name: &str| match parameter(name) {
            None => false,
            Some(v) => flag(Some(v)).unwrap_or_else(|| {
                notes.push((
                    LogLevel::Error,
                    format!("{name} {v:?} is neither true nor false; using false"),
                ));
                false
            }),
        };
        let rts_cts = switch(RTS_CTS);
        let xon_xoff = switch(XON_XOFF);

        let device = resource_path(
            config,
            &mut notes,
            SERIAL_PORT_RESOURCE,
            SERIAL_PORT,
            |path, from| format!("serial port {} {from}", path.display()),
        )
        .unwrap_or_else(|| {
            notes.push((
                LogLevel::Error,
                format!(
                    "neither a granted {SERIAL_PORT_RESOURCE} nor {SERIAL_PORT}: no port to open"
                ),
            ));
            PathBuf::new()
        });
        // The topics name the port as the user wrote it in `SerialPort`
        // (validation checks it is the resource's SourcePath).
        let topic_port = parameter(SERIAL_PORT)
            .map(str::to_string)
            .unwrap_or_else(|| device.display().to_string())
            .trim_start_matches('/')
            .to_string();

        let polling = match flag(parameter(POLLING_READ)) {
            Some(true) => polling(&parameter, &mut notes),
            Some(false) => {
                let ignored: Vec<&str> = [
                    POLLING_READ_LENGTH,
                    POLLING_READ_INTERVAL,
                    POLLING_READ_TYPE,
                ]
                .into_iter()
                .filter(|name| parameter(name).is_some())
                .collect();
                if !ignored.is_empty() {
                    notes.push((
                        LogLevel::Info,
                        format!("{POLLING_READ} is false: {} ignored", ignored.join(", ")),
                    ));
                }
                None
            }
            None => {
                notes.push((
                    LogLevel::Error,
                    format!("{POLLING_READ} is missing or neither true nor false; reading on demand only"),
                ));
                None
            }
        };
        (
            Settings {
                device,
                topic_port,
                core_thing_name: config.core_thing_name.clone(),
                options: PortOptions {
                    baud_rate,
                    parity,
                    rts_cts,
                    xon_xoff,
                },
                timeout: Duration::from_secs(timeout),
                polling,
            },
            notes,
        )
    }

    /// `serial/<core>/status/<port>`: where statuses of requests for this
    /// port go (polling reads have none; their problems are logged).
    pub fn status_topic(&self) -> String {
        format!("serial/{}/status/{}", self.core_thing_name, self.topic_port)
    }

    /// `serial/<core>/read_response/<port>`: where polling reads publish.
    pub fn read_response_topic(&self) -> String {
        format!(
            "serial/{}/read_response/{}",
            self.core_thing_name, self.topic_port
        )
    }
}

/// The polling settings, or `None` with an ERROR note naming what is
/// missing: Greengrass requires all three when `PollingRead` is true, but
/// the manifest cannot say "required if", so validation lets it through.
fn polling<'a>(
    parameter: &impl Fn(&str) -> Option<&'a str>,
    notes: &mut Vec<(LogLevel, String)>,
) -> Option<Polling> {
    let length = parameter(POLLING_READ_LENGTH)
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=MAX_READ_LENGTH).contains(n));
    let interval = parameter(POLLING_READ_INTERVAL)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| (1..=999).contains(s));
    let encoding = parameter(POLLING_READ_TYPE).and_then(Encoding::parse);
    match (length, interval, encoding) {
        (Some(length), Some(interval), Some(encoding)) => {
            notes.push((
                LogLevel::Info,
                format!(
                    "Polling-Read: {length} bytes every {interval} s as {}",
                    encoding.name()
                ),
            ));
            Some(Polling {
                length,
                interval: Duration::from_secs(interval),
                encoding,
            })
        }
        _ => {
            let mut bad = Vec::new();
            if length.is_none() {
                bad.push(format!("{POLLING_READ_LENGTH} (1-{MAX_READ_LENGTH})"));
            }
            if interval.is_none() {
                bad.push(format!("{POLLING_READ_INTERVAL} (1-999 seconds)"));
            }
            if encoding.is_none() {
                bad.push(format!("{POLLING_READ_TYPE} (ascii or hex)"));
            }
            notes.push((
                LogLevel::Error,
                format!(
                    "{POLLING_READ} is true but {} missing or invalid: polling is off, reading on demand only",
                    bad.join(", ")
                ),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_ipc::{ComponentKind, ResourceGrant};
    use std::collections::BTreeMap;

    pub(crate) fn config(params: &[(&str, &str)], grant: Option<&str>) -> ComponentConfig {
        ComponentConfig {
            arn: crate::MANIFEST.arn("us-east-1", 3),
            kind: ComponentKind::Connector,
            id: "serial".into(),
            parameters: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            resources: grant
                .map(|path| {
                    BTreeMap::from([(
                        "port".to_string(),
                        ResourceGrant {
                            path: path.into(),
                            read_write: true,
                        },
                    )])
                })
                .unwrap_or_default(),
            secrets: vec![],
            log_level: LogLevel::Info,
            core_thing_name: "test-core".into(),
            region: "us-east-1".into(),
            endpoints: Default::default(),
        }
    }

    const BASE: [(&str, &str); 5] = [
        ("BaudRate", "115200"),
        ("Timeout", "2"),
        ("SerialPort", "/dev/ttyS9"),
        ("SerialPort-ResourceId", "port"),
        ("PollingRead", "false"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> (Settings, Vec<(LogLevel, String)>) {
        let mut params: Vec<(&str, &str)> = BASE.to_vec();
        for (k, v) in extra {
            params.retain(|(name, _)| name != k);
            params.push((k, v));
        }
        Settings::from_config(&config(&params, Some("/dev/ttyS9")))
    }

    fn errors(notes: &[(LogLevel, String)]) -> Vec<&String> {
        notes
            .iter()
            .filter(|(l, _)| *l >= LogLevel::Warn)
            .map(|(_, m)| m)
            .collect()
    }

    #[test]
    fn read_on_demand_settings() {
        let (s, notes) = with(&[]);
        assert_eq!(s.device, PathBuf::from("/dev/ttyS9"));
        assert_eq!(s.topic_port, "dev/ttyS9");
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(
            s.options,
            PortOptions {
                baud_rate: 115200,
                parity: Parity::None,
                rts_cts: false,
                xon_xoff: false
            }
        );
        assert_eq!(s.polling, None);
        assert_eq!(s.status_topic(), "serial/test-core/status/dev/ttyS9");
        assert_eq!(
            s.read_response_topic(),
            "serial/test-core/read_response/dev/ttyS9"
        );
        assert!(errors(&notes).is_empty(), "{notes:?}");
    }

    #[test]
    fn polling_settings_in_any_case() {
        let (s, notes) = with(&[
            ("PollingRead", "TRUE"),
            ("PollingReadLength", "63994"),
            ("PollingReadInterval", "999"),
            ("PollingReadType", "HeX"),
        ]);
        assert_eq!(
            s.polling,
            Some(Polling {
                length: 63994,
                interval: Duration::from_secs(999),
                encoding: Encoding::Hex
            })
        );
        assert!(errors(&notes).is_empty(), "{notes:?}");
    }

    #[test]
    fn polling_without_its_parameters_is_off_with_an_error_naming_them() {
        let (s, notes) = with(&[("PollingRead", "true"), ("PollingReadType", "")]);
        assert_eq!(s.polling, None);
        let e = errors(&notes);
        assert_eq!(e.len(), 1, "{notes:?}");
        for name in [
            "PollingReadLength",
            "PollingReadInterval",
            "PollingReadType",
        ] {
            assert!(e[0].contains(name), "{name} in {}", e[0]);
        }
        let (s, notes) = with(&[
            ("PollingRead", "true"),
            ("PollingReadLength", "63995"),
            ("PollingReadInterval", "1"),
            ("PollingReadType", "ascii"),
        ]);
        assert_eq!(s.polling, None);
        assert!(errors(&notes)[0].contains("PollingReadLength"), "{notes:?}");
    }

    #[test]
    fn parity_and_flow_control() {
        for (given, parity) in [
            ("", Parity::None),
            ("n", Parity::None),
            ("E", Parity::Even),
            ("o", Parity::Odd),
            ("M", Parity::Mark),
            ("s", Parity::Space),
        ] {
            let (s, notes) = with(&[("Parity", given)]);
            assert_eq!(s.options.parity, parity, "{given}");
            assert!(errors(&notes).is_empty(), "{notes:?}");
        }
        let (s, _) = with(&[("RtsCts", "True"), ("XonXoff", "tRUE")]);
        assert!(s.options.rts_cts && s.options.xon_xoff);
        let (s, notes) = with(&[("RtsCts", "yes"), ("Parity", "X")]);
        assert!(!s.options.rts_cts);
        assert_eq!(s.options.parity, Parity::None);
        assert_eq!(errors(&notes).len(), 2, "{notes:?}");
    }

    #[test]
    fn bad_required_values_fall_back_with_errors() {
        let (s, notes) = with(&[("BaudRate", "fast"), ("Timeout", "60"), ("PollingRead", "")]);
        assert_eq!(s.options.baud_rate, FALLBACK_BAUD);
        assert_eq!(s.timeout, Duration::from_secs(FALLBACK_TIMEOUT_S));
        assert_eq!(errors(&notes).len(), 3, "{notes:?}");
    }

    #[test]
    fn without_a_grant_the_serial_port_parameter_is_opened() {
        let (s, _) = Settings::from_config(&config(&BASE, None));
        assert_eq!(s.device, PathBuf::from("/dev/ttyS9"));
        let (s, notes) = Settings::from_config(&config(&[("BaudRate", "9600")], None));
        assert_eq!(s.device, PathBuf::new());
        assert!(errors(&notes).iter().any(|m| m.contains("no port to open")));
    }
}
