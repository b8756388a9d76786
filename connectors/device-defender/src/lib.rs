//! The `DeviceDefender` connector (Greengrass versions 1, 2 and 3): the
//! core's network metrics for AWS IoT Device Defender.
//!
//! Every `SampleIntervalSeconds` (300 or more; the first report right after
//! start) it publishes a device metrics document on
//! `$aws/things/<core thing name>/defender/metrics/json`:
//! `{"header":{"report_id":…,"version":"1.0"},"metrics":{"listening_tcp_ports":…,
//! "listening_udp_ports":…,"network_stats":…,"tcp_connections":…}}`. A
//! subscription routes it to `cloud`. What each metric holds, and why, is in
//! [`metrics`]; the three versions behave alike (version 2 changed only the
//! Python connector's logging).
//!
//! **Where `/proc` is read.** The group gives a `LocalVolumeResourceData`
//! resource whose source is the host's `/proc`, and names it with
//! `ProcDestinationPath-ResourceId`; `ProcDestinationPath` repeats the
//! volume's destination (validation checks they agree). In a Greengrass
//! container the volume is mounted at that destination. In `NoContainer`
//! mode nothing is mounted, so the supervisor passes the granted resource's
//! host path (its `SourcePath`, normally `/proc`) in
//! `ComponentConfig::resources`. The connector reads from that grant when it
//! is there, and from `ProcDestinationPath` otherwise, so one group file
//! works in both modes.
//!
//! **Isolation.** As in Greengrass, this connector runs only in a container
//! (`GreengrassContainer`): the host's `/proc` is bind-mounted read-only at
//! `ProcDestinationPath`, and the grant in `ComponentConfig::resources` names
//! that path. A host that cannot run containers (see `evergreen check`)
//! refuses a group with this connector; the embedded default group leaves
//! it out there, with a warning.
//!
//! **Evergreen extension.** `DevelopmentSampleIntervalSeconds` (1–99999)
//! overrides `SampleIntervalSeconds`, to watch reports without waiting five
//! minutes. AWS IoT Device Defender rejects reports sent more often than
//! every 300 s, so the connector logs a WARN whenever it is set below that.
//!
//! **Answers.** The service answers each report on `…/json/accepted` or
//! `…/json/rejected`. They are declared as inputs so a subscription from
//! `cloud` can route them here; an acceptance is logged at INFO with the
//! report id, a rejection at WARN with the service's body.

pub mod interfaces;
pub mod metrics;
pub mod procnet;

use std::path::PathBuf;
use std::time::Duration;

use evergreen_connector_kit::manifest;
use evergreen_connector_kit::params::resource_path;
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec, ResourceKind};
use evergreen_ipc::sdk::{Component, Event, SdkError};
use evergreen_ipc::{ComponentConfig, LogLevel};

use crate::metrics::Collector;

/// The topic filter the connector publishes on; `+` is the core's thing name.
pub const OUTPUT_FILTER: &str = "$aws/things/+/defender/metrics/json";
/// The service's answer to an accepted report.
pub const ACCEPTED_FILTER: &str = "$aws/things/+/defender/metrics/json/accepted";
/// The service's answer to a rejected report.
pub const REJECTED_FILTER: &str = "$aws/things/+/defender/metrics/json/rejected";

/// The shortest interval Device Defender accepts reports at.
pub const MIN_INTERVAL_S: u64 = 300;
/// The longest interval used: the parameter pattern admits any number of
/// digits, and a timer cannot be set centuries ahead.
pub const MAX_INTERVAL_S: u64 = 7 * 24 * 3600;
/// Longest rejection body quoted in the log.
const ANSWER_QUOTE_MAX: usize = 2048;

const SAMPLE_INTERVAL: &str = "SampleIntervalSeconds";
const DEVELOPMENT_INTERVAL: &str = "DevelopmentSampleIntervalSeconds";
const PROC_RESOURCE_ID: &str = "ProcDestinationPath-ResourceId";
const PROC_DESTINATION: &str = "ProcDestinationPath";

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "DeviceDefender",
    versions: &[1, 2, 3],
    description: "Publishes the core's listening TCP/UDP ports, established TCP connections and network \
                  traffic to AWS IoT Device Defender every SampleIntervalSeconds on \
                  $aws/things/<core>/defender/metrics/json.",
    parameters: &[
        ParameterSpec::new(
            SAMPLE_INTERVAL,
            "Seconds between reports; 300 or more, the Device Defender minimum.",
        )
        .required()
        .pattern("^[0-9]*(?:3[0-9][0-9]|[4-9][0-9]{2}|[1-9][0-9]{3,})$"),
        ParameterSpec::new(
            PROC_RESOURCE_ID,
            "Id of the LocalVolumeResourceData resource whose source is the host's /proc (granted read-only).",
        )
        .required()
        .pattern("[a-zA-Z0-9_-]+")
        .resource(ResourceKind::LocalVolume),
        ParameterSpec::new(
            PROC_DESTINATION,
            "The DestinationPath of that volume, e.g. /host_proc.",
        )
        .required()
        .pattern("\\/[a-zA-Z0-9_-]+"),
        ParameterSpec::new(
            DEVELOPMENT_INTERVAL,
            "Evergreen extension, for development: seconds between reports (1-99999), overriding \
             SampleIntervalSeconds. AWS IoT Device Defender rejects reports sent more often than every 300 s.",
        )
        .pattern("^[1-9][0-9]{0,4}$"),
    ],
    inputs: &[ACCEPTED_FILTER, REJECTED_FILTER],
    outputs: &[OUTPUT_FILTER],
    // Greengrass: container only.
    isolation: manifest::CONTAINER_ONLY,
    pinned: true,
    aws: false,
};

/// What the connector runs with, from its `ComponentConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub interval: Duration,
    /// The directory read as `/proc`.
    pub proc_root: PathBuf,
    /// `$aws/things/<core>/defender/metrics/json`, or `None` when the core's
    /// thing name cannot be part of a topic (nothing is published then).
    pub topic: Option<String>,
}

impl Settings {
    /// The settings, and what to log about them once the link is up.
    pub fn from_config(config: &ComponentConfig) -> (Settings, Vec<(LogLevel, String)>) {
        let mut notes = Vec::new();
        let parameter = |name: &str| config.parameters.get(name).map(String::as_str);

        let sample = match parameter(SAMPLE_INTERVAL).map(str::parse::<u64>) {
            Some(Ok(s)) if s < MIN_INTERVAL_S => {
                notes.push((
                    LogLevel::Warn,
                    format!("{SAMPLE_INTERVAL} {s} is below the minimum; using {MIN_INTERVAL_S}"),
                ));
                MIN_INTERVAL_S
            }
            Some(Ok(s)) if s > MAX_INTERVAL_S => {
                notes.push((
                    LogLevel::Warn,
                    format!("{SAMPLE_INTERVAL} {s} is above {MAX_INTERVAL_S} s (a week); using {MAX_INTERVAL_S}"),
                ));
                MAX_INTERVAL_S
            }
            Some(Ok(s)) => s,
            // Validation lets any number of digits through: too many for a
            // u64 is "very long".
            Some(Err(_))
                if parameter(SAMPLE_INTERVAL)
                    .is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit())) =>
            {
                notes.push((
                    LogLevel::Warn,
                    format!("{SAMPLE_INTERVAL} is above {MAX_INTERVAL_S} s (a week); using {MAX_INTERVAL_S}"),
                ));
                MAX_INTERVAL_S
            }
            Some(Err(_)) | None => {
                notes.push((
                    LogLevel::Warn,
                    format!("{SAMPLE_INTERVAL} is missing or not a number; using {MIN_INTERVAL_S}"),
                ));
                MIN_INTERVAL_S
            }
        };
        let development = parameter(DEVELOPMENT_INTERVAL)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|s| (1..=MAX_INTERVAL_S).contains(s));
        let interval = match development {
            Some(dev) => {
                let level = if dev < MIN_INTERVAL_S {
                    LogLevel::Warn
                } else {
                    LogLevel::Info
                };
                notes.push((
                    level,
                    format!(
                        "{DEVELOPMENT_INTERVAL} {dev} overrides {SAMPLE_INTERVAL} {sample}: for development only; \
                         AWS IoT Device Defender rejects reports sent more often than every {MIN_INTERVAL_S} s"
                    ),
                ));
                dev
            }
            None => sample,
        };

        let proc_root = resource_path(
            config,
            &mut notes,
            PROC_RESOURCE_ID,
            PROC_DESTINATION,
            |path, from| format!("reading /proc from {} {from}", path.display()),
        )
        .unwrap_or_else(|| {
            notes.push((
                LogLevel::Warn,
                format!(
                    "neither a granted {PROC_RESOURCE_ID} nor {PROC_DESTINATION}; reading /proc"
                ),
            ));
            PathBuf::from("/proc")
        });

        let topic = format!(
            "$aws/things/{}/defender/metrics/json",
            config.core_thing_name
        );
        let topic = match evergreen_ipc::topic::validate_topic(&topic) {
            Ok(()) => Some(topic),
            Err(e) => {
                notes.push((
                    LogLevel::Error,
                    format!(
                        "the core's thing name {:?} cannot be part of a topic ({e}); no reports will be published",
                        config.core_thing_name
                    ),
                ));
                None
            }
        };
        (
            Settings {
                interval: Duration::from_secs(interval),
                proc_root,
                topic,
            },
            notes,
        )
    }
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    if let Some(topic) = &settings.topic {
        handle.info(format!(
            "publishing device metrics on {topic} every {} s",
            settings.interval.as_secs()
        ));
    }
    let mut collector = Collector::new(&settings.proc_root);
    let mut ticker = tokio::time::interval(settings.interval);
    // After a stall, report once and carry on: a burst of catch-up reports
    // would only be rejected as too frequent.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick(), if settings.topic.is_some() => {
                let Some(topic) = &settings.topic else { continue };
                // A cycle blocks for milliseconds, nearly all of it the
                // kernel walking its TCP hash table for net/tcp and tcp6
                // (see the bench); nothing here is latency-sensitive
                // (deliveries wait in the inbox), so it runs inline.
                let cycle = collector.collect();
                for warning in cycle.warnings {
                    handle.warn(warning);
                }
                let id = cycle.document.header.report_id;
                let payload = match cycle.document.to_json() {
                    Ok(p) => p,
                    Err(e) => {
                        handle.error(format!("report {id} cannot be serialised: {e}"));
                        continue;
                    }
                };
                match handle.publish(topic.as_str(), payload).await {
                    Ok(()) => handle.debug(format!("report {id} published")),
                    Err(SdkError::Closed) => return Err(SdkError::Closed),
                    Err(e) => handle.error(format!("report {id} not published: {e}")),
                }
                trim_heap();
            }
            event = component.next_event() => match event {
                None | Some(Event::Shutdown { .. }) => break,
                // Only a component that serves a function name gets invokes.
                Some(Event::Invoke(_)) => {}
                Some(Event::Refused { topic, reason }) => {
                    handle.warn(format!("publish on {topic} refused: {reason}"))
                }
                Some(Event::Message(m)) => {
                    let (level, line) = describe_answer(&m.topic, &m.payload);
                    handle.log(level, line);
                }
            }
        }
    }
    handle.info("stopping");
    Ok(())
}

/// Gives the memory a cycle freed back to the system. A cycle reads the host's whole
/// `/proc/net/tcp*` (megabytes on a host with tens of thousands of sockets) and builds a report
/// from it; glibc would otherwise keep that peak for the connector's lifetime, between reports
/// minutes apart. musl returns free pages by itself.
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim locks each arena itself and releases only free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The log line for a message on one of the input topics: the service's
/// `accepted`/`rejected` answers to a report.
pub fn describe_answer(topic: &str, payload: &[u8]) -> (LogLevel, String) {
    let json: Option<serde_json::Value> = serde_json::from_slice(payload).ok();
    let id = json
        .as_ref()
        .and_then(|j| j.get("reportId").or_else(|| j.get("report_id")))
        .map(|id| match id {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| "(no reportId)".to_string());
    if topic.ends_with("/accepted") {
        (
            LogLevel::Info,
            format!("report {id} accepted by AWS IoT Device Defender ({topic})"),
        )
    } else if topic.ends_with("/rejected") {
        (
            LogLevel::Warn,
            format!(
                "report {id} rejected by AWS IoT Device Defender ({topic}): {}",
                quote(payload)
            ),
        )
    } else {
        (
            LogLevel::Warn,
            format!("unexpected message on {topic}: {}", quote(payload)),
        )
    }
}

fn quote(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    match text.char_indices().nth(ANSWER_QUOTE_MAX) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], payload.len()),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_connector_kit::testing;
    use evergreen_connector_kit::testing::ManifestChecks;

    fn config(params: &[(&str, &str)], grant: Option<&str>) -> ComponentConfig {
        testing::config(&MANIFEST, 3, params)
            .id("dd")
            .core("test-core")
            .maybe_grant("host-proc", grant, false)
            .build()
    }

    const BASE: [(&str, &str); 3] = [
        ("SampleIntervalSeconds", "600"),
        ("ProcDestinationPath-ResourceId", "host-proc"),
        ("ProcDestinationPath", "/host_proc"),
    ];

    #[test]
    fn manifest_patterns_say_what_the_reference_says() {
        for ok in ["300", "301", "399", "400", "999", "1000", "86400", "0300"] {
            assert!(MANIFEST.admits("SampleIntervalSeconds", ok), "{ok}");
        }
        for bad in ["", "0", "1", "60", "299", "100", "-300", "300s"] {
            assert!(!MANIFEST.admits("SampleIntervalSeconds", bad), "{bad}");
        }
        assert!(MANIFEST.admits("ProcDestinationPath", "/host_proc"));
        assert!(!MANIFEST.admits("ProcDestinationPath", "host_proc"));
        assert!(!MANIFEST.admits("ProcDestinationPath", "/a/b"));
        assert!(MANIFEST.admits("ProcDestinationPath-ResourceId", "host-proc_1"));
        assert!(!MANIFEST.admits("ProcDestinationPath-ResourceId", "a b"));
        for ok in ["1", "5", "300", "99999"] {
            assert!(
                MANIFEST.admits("DevelopmentSampleIntervalSeconds", ok),
                "{ok}"
            );
        }
        for bad in ["0", "01", "100000", ""] {
            assert!(
                !MANIFEST.admits("DevelopmentSampleIntervalSeconds", bad),
                "{bad}"
            );
        }
        assert_eq!(
            MANIFEST.resource_kind("ProcDestinationPath-ResourceId"),
            Some(ResourceKind::LocalVolume)
        );
        MANIFEST.assert_filters_valid();
        // The rest of what the supervisor's `registry::manifest_problems`
        // checks (this crate cannot depend on the supervisor).
        let newest = MANIFEST.versions.iter().copied().max().unwrap_or(0);
        for (i, p) in MANIFEST.parameters.iter().enumerate() {
            assert!(
                !MANIFEST.parameters[..i].iter().any(|q| q.name == p.name),
                "{} listed twice",
                p.name
            );
            assert!(p.since_version <= newest, "{}", p.name);
            assert!(
                p.default.is_none(),
                "{}: no defaults in this manifest",
                p.name
            );
        }
        assert!(MANIFEST.isolation.no_container || MANIFEST.isolation.container);
    }

    #[test]
    fn the_grant_wins_over_the_destination() {
        let (s, notes) = Settings::from_config(&config(&BASE, Some("/proc")));
        assert_eq!(s.proc_root, PathBuf::from("/proc"));
        assert_eq!(s.interval, Duration::from_secs(600));
        assert_eq!(
            s.topic.as_deref(),
            Some("$aws/things/test-core/defender/metrics/json")
        );
        assert!(notes.iter().all(|(l, _)| *l == LogLevel::Info), "{notes:?}");

        let (s, _) = Settings::from_config(&config(&BASE, None));
        assert_eq!(s.proc_root, PathBuf::from("/host_proc"), "container mode");
    }

    #[test]
    fn the_development_interval_overrides_with_a_warning() {
        let mut params = BASE.to_vec();
        params.push(("DevelopmentSampleIntervalSeconds", "1"));
        let (s, notes) = Settings::from_config(&config(&params, Some("/proc")));
        assert_eq!(s.interval, Duration::from_secs(1));
        let warn: Vec<&String> = notes
            .iter()
            .filter(|(l, _)| *l == LogLevel::Warn)
            .map(|(_, m)| m)
            .collect();
        assert_eq!(warn.len(), 1, "{notes:?}");
        assert!(warn[0].contains("rejects reports sent more often than every 300 s"));
    }

    #[test]
    fn odd_intervals_are_clamped() {
        let with = |v: &str| {
            let mut params = BASE.to_vec();
            params[0].1 = v;
            Settings::from_config(&config(&params, None))
        };
        assert_eq!(with("99").0.interval.as_secs(), MIN_INTERVAL_S);
        assert_eq!(with("9999999999").0.interval.as_secs(), MAX_INTERVAL_S);
        assert_eq!(
            with("99999999999999999999999").0.interval.as_secs(),
            MAX_INTERVAL_S
        );
        assert_eq!(with("soon").0.interval.as_secs(), MIN_INTERVAL_S);
        assert!(with("soon").1.iter().any(|(l, _)| *l == LogLevel::Warn));
    }

    #[test]
    fn a_thing_name_that_cannot_be_a_topic_level_publishes_nothing() {
        let mut c = config(&BASE, None);
        c.core_thing_name = "a/+".into();
        let (s, notes) = Settings::from_config(&c);
        assert_eq!(s.topic, None);
        assert!(notes.iter().any(|(l, _)| *l == LogLevel::Error));
    }

    #[test]
    fn answers_are_logged_with_the_report_id() {
        let accepted =
            br#"{"thingName":"test-core","reportId":1700000000,"status":"ACCEPTED","timestamp":1}"#;
        assert_eq!(
            describe_answer(
                "$aws/things/test-core/defender/metrics/json/accepted",
                accepted
            ),
            (
                LogLevel::Info,
                "report 1700000000 accepted by AWS IoT Device Defender \
                 ($aws/things/test-core/defender/metrics/json/accepted)"
                    .to_string()
            )
        );
        let rejected = br#"{"reportId":"7","status":"REJECTED","statusDetails":{"ErrorCode":"InvalidPayload"}}"#;
        let (level, line) = describe_answer(
            "$aws/things/test-core/defender/metrics/json/rejected",
            rejected,
        );
        assert_eq!(level, LogLevel::Warn);
        assert!(line.starts_with("report 7 rejected"), "{line}");
        assert!(line.contains("InvalidPayload"), "{line}");

        let (level, line) = describe_answer(
            "$aws/things/x/defender/metrics/json/rejected",
            &[0xff; 5000],
        );
        assert_eq!(level, LogLevel::Warn);
        assert!(
            line.contains("(no reportId)") && line.contains("(5000 bytes)"),
            "{line}"
        );
    }
}
