//! The `SerialStream` connector (Greengrass versions 1, 2 and 3): reads and
//! writes one serial port for the group, on request over MQTT-style topics
//! and, in Polling-Read mode, every `PollingReadInterval` seconds.
//!
//! **Topics.** Requests arrive on `serial/<core thing>/read/<port>` and
//! `serial/<core thing>/write/<port>`, where `<port>` is `SerialPort`
//! without its leading `/` (`serial/core/write/dev/ttyS0`). Statuses go to
//! `serial/<core thing>/status/<port>` and data to
//! `serial/<core thing>/read_response/<port>`:
//!
//! ```text
//! read request   {"readLength": "30", "type": "ascii", "id": "abc123"}
//! write request  {"data": "random serial data", "type": "ascii", "id": "abc123"}
//!                {"data": "<base64 of the bytes>", "type": "hex", "id": "abc123"}
//! status         {"response": {"status": "success"}, "id": "abc123"}
//!                {"response": {"status": "fail", "error_message": "…"}, "id": "abc123"}
//! read_response  {"data": "…", "id": "abc123"}     (base64 when type is hex)
//! ```
//!
//! Every request gets exactly one status (requests still queued when the
//! connector is stopped get none); a read that received bytes publishes
//! them on `read_response` first. `id` is echoed when given.
//!
//! **Choices where the Greengrass guide is silent or inconsistent** (also in
//! docs/connectors.md):
//! - *Reads* follow pyserial's `read(n)` with a timeout, as the Python
//!   connector did: they end when `readLength` bytes have arrived or
//!   `Timeout` seconds after they started. All `readLength` bytes: the data,
//!   then a success status. Fewer: the bytes that did arrive are still
//!   published on `read_response` (dropping them would lose them), then a
//!   fail status `Read timed out: 3 of 10 bytes …`. None: only the fail
//!   status `Read timed out: no data …`.
//! - *Requests for another core thing or another port* (routed here by a
//!   subscription's wildcard, e.g. a typo in the port) are answered with a
//!   fail status on that request's own status topic, naming the port and
//!   core this connector serves, and logged at WARN: the requester is
//!   waiting for a status, and silence would hide the typo. Messages on a
//!   topic that is not `serial/<thing>/read|write/<port>` at all have no
//!   status topic; they are logged at WARN and dropped.
//! - *`data`*: the guide gives the pattern `^[1-9][0-9]*$`, which its own
//!   examples contradict; any non-empty string is accepted. For `ascii` its
//!   UTF-8 bytes are written as they are; for `hex` it is base64 (spaces
//!   and line breaks ignored).
//! - *`type`* is `ascii` or `hex` in any case, for reads and writes alike
//!   (the guide's read pattern is case-insensitive, its write pattern lists
//!   only all-lower and all-upper case).
//! - *`readLength`* must be a JSON string of digits from 1 to 63994, as the
//!   guide types it; a JSON number is refused with a message saying so.
//! - *`PollingReadInterval`* is the parameter's name (the guide's table and
//!   examples); the prose's `PollingInterval` is refused by validation as an
//!   unknown parameter, whose message lists the right name.
//! - *Polling reads* publish on `read_response` without an `id` and only
//!   when bytes arrived (up to `PollingReadLength` within `Timeout`); they
//!   publish no status (there is no request to answer), and their problems
//!   are logged. They share the port with on-demand requests, in turn.
//! - *Received `ascii` bytes that are not UTF-8* are published with U+FFFD in
//!   their place, and a WARN suggests `hex`: JSON strings are Unicode.
//! - *Limits*: a read longer than 63994 bytes and a write longer than 128000
//!   bytes (decoded, for `hex`) get a fail status naming the limit.
//!
//! **Order and failures.** One task owns the port ([`worker`]); requests,
//! valid or not, are queued to it in arrival order, so statuses leave in
//! that order. Up to [`QUEUE`] requests wait; beyond that a request is
//! answered at once with a fail status ("busy"). Malformed requests get a
//! fail status naming the field ([`request`]); nothing in a request can
//! stop the connector. A port that fails (an I/O error, or a port that
//! cannot be opened at start) gives fail statuses and is reopened with a
//! backoff doubling from 1 s to 30 s, or at once when a request needs it.
//! A write must hand its bytes to the tty driver within `Timeout` plus the
//! time they need on the wire; success means the driver has them all.
//!
//! **Port settings.** 8 data bits, 1 stop bit (pyserial's defaults; the
//! guide has no parameter for them). `Parity` N, E, O through tokio-serial;
//! M (mark) and S (space), which tokio-serial cannot set, are set directly
//! in termios (`CMSPAR`), as is `RtsCts` *and* `XonXoff` together, which
//! tokio-serial's single flow-control choice cannot say (see [`port`]).
//! With `XonXoff`, bytes 0x11 and 0x13 are flow control, not data, as with
//! pyserial: send binary data with it off.
//!
//! **Where the port is opened.** The group gives a
//! `LocalDeviceResourceData` resource named by `SerialPort-ResourceId`;
//! `SerialPort` repeats its `SourcePath` (validation checks they agree).
//! The connector opens the granted resource's path when there is one (in
//! NoContainer mode the supervisor passes the `SourcePath`), else
//! `SerialPort`; the topics always use `SerialPort`.
//!
//! **Isolation.** As in Greengrass, this connector runs only in a container
//! (`GreengrassContainer`), where the device is bound at its path (which is
//! also the grant's path). A host that cannot run containers refuses a group
//! with this connector (see `evergreen check`).

pub mod port;
pub mod request;
pub mod response;
pub mod settings;
pub mod worker;

use std::time::Duration;

use evergreen_connector_kit::manifest;
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec, ResourceKind};
use evergreen_ipc::sdk::{Component, Event, Handle, SdkError};
use tokio::sync::mpsc;

use crate::request::{Operation, Target};
use crate::settings::*;
use crate::worker::{Job, Work, Worker};

/// The longest read, in bytes (the Greengrass limit).
pub const MAX_READ_LENGTH: usize = 63994;
/// The longest write, in bytes after decoding (the Greengrass limit).
pub const MAX_WRITE_LENGTH: usize = 128000;
/// Requests that may wait for the port; a read can take `Timeout` (up to
/// 59 s), so a burst beyond this is refused rather than queued for hours.
pub const QUEUE: usize = 256;
/// How long the port task may finish its current job after a shutdown.
const STOP_GRACE: Duration = Duration::from_millis(500);

pub(crate) const PARITY: &str = "Parity";

pub const READ_FILTER: &str = "serial/+/read/#";
pub const WRITE_FILTER: &str = "serial/+/write/#";
pub const STATUS_FILTER: &str = "serial/+/status/#";
pub const READ_RESPONSE_FILTER: &str = "serial/+/read_response/#";

const FLAG: &str = "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$";
const OPTIONAL_FLAG: &str = "^(|[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$";

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "SerialStream",
    versions: &[1, 2, 3],
    description: "Reads and writes a serial port: requests on serial/<core>/read|write/<port>, statuses on \
                  serial/<core>/status/<port>, data on serial/<core>/read_response/<port>; optionally polls \
                  the port every PollingReadInterval seconds.",
    parameters: &[
        ParameterSpec::new(BAUD_RATE, "Baud rate of the serial port.")
            .required()
            .pattern(
                "^110$|^300$|^600$|^1200$|^2400$|^4800$|^9600$|^14400$|^19200$|^28800$|^38400$|^56000$|^57600$|^115200$|^230400$",
            ),
        ParameterSpec::new(TIMEOUT, "Seconds (1-59) a read waits for its bytes.")
            .required()
            .pattern("^([1-9]|[1-5][0-9])$"),
        ParameterSpec::new(
            SERIAL_PORT,
            "Absolute path of the serial port: the SourcePath of the device resource.",
        )
        .required()
        .pattern("[/a-zA-Z0-9_-]+"),
        ParameterSpec::new(
            SERIAL_PORT_RESOURCE,
            "Id of the LocalDeviceResourceData resource of the serial port (granted read-write).",
        )
        .required()
        .pattern("[a-zA-Z0-9_-]+")
        .resource(ResourceKind::LocalDevice),
        ParameterSpec::new(
            POLLING_READ,
            "true: Polling-Read mode (also serves requests); false: Read-On-Demand only.",
        )
        .required()
        .pattern(FLAG),
        ParameterSpec::new(
            POLLING_READ_LENGTH,
            "Bytes (1-63994) per polling read; required when PollingRead is true.",
        )
        .pattern(
            "^(|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-2][0-9]{3}|63[0-8][0-9]{2}|639[0-8][0-9]|6399[0-4])$",
        ),
        ParameterSpec::new(
            POLLING_READ_INTERVAL,
            "Seconds (1-999) between polling reads; required when PollingRead is true.",
        )
        .pattern("^(|[1-9]|[1-9][0-9]|[1-9][0-9][0-9])$"),
        ParameterSpec::new(
            POLLING_READ_TYPE,
            "ascii or hex (base64 on the wire) for polled data; required when PollingRead is true.",
        )
        .pattern("^(|[Aa][Ss][Cc][Ii][Ii]|[Hh][Ee][Xx])$"),
        ParameterSpec::new(RTS_CTS, "RTS/CTS hardware flow control.")
            .pattern(OPTIONAL_FLAG)
            .default_value("false"),
        ParameterSpec::new(XON_XOFF, "XON/XOFF software flow control.")
            .pattern(OPTIONAL_FLAG)
            .default_value("false"),
        ParameterSpec::new(
            PARITY,
            "N (none), E (even), O (odd), S (space) or M (mark).",
        )
        .pattern("^(|[NEOSMneosm])$")
        .default_value("N"),
    ],
    inputs: &[READ_FILTER, WRITE_FILTER],
    outputs: &[STATUS_FILTER, READ_RESPONSE_FILTER],
    // Greengrass: container only.
    isolation: manifest::CONTAINER_ONLY,
    pinned: true,
    aws: false,
};

/// What to do with a message on an input topic.
#[derive(Debug)]
pub enum Routed {
    /// Queue it for the port task (a request, or a refusal to answer).
    Job(Job),
    /// No status topic to answer on: log this at WARN and drop it.
    Drop(String),
}

/// Turns a delivery into a job for the port task.
pub fn route(settings: &Settings, topic: &str, payload: &[u8]) -> Routed {
    let Some(target) = Target::parse(topic) else {
        return Routed::Drop(format!(
            "message on {topic} ignored: requests go to serial/{}/read|write/{}",
            settings.core_thing_name, settings.topic_port
        ));
    };
    let status_topic = target.status_topic();
    let read_response_topic = target.read_response_topic();
    let work = if target.thing != settings.core_thing_name || target.port != settings.topic_port {
        let id = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("id").cloned());
        Work::Reject {
            id,
            message: format!(
                "this connector serves port /{} on core {}, not /{} on {}",
                settings.topic_port, settings.core_thing_name, target.port, target.thing
            ),
        }
    } else {
        match request::parse(target.operation, payload) {
            Ok(request) => Work::Request(request),
            Err(rejection) => Work::Reject {
                id: rejection.id,
                message: match target.operation {
                    Operation::Read => format!("Invalid read request: {}", rejection.message),
                    Operation::Write => format!("Invalid write request: {}", rejection.message),
                },
            },
        }
    };
    Routed::Job(Job {
        work,
        status_topic,
        read_response_topic,
    })
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    // Ready before the port opens: a port that is missing now is reopened
    // later, and requests meanwhile get fail statuses saying why.
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    handle.info(format!(
        "serving serial/{core}/read/{port} and serial/{core}/write/{port}",
        core = settings.core_thing_name,
        port = settings.topic_port
    ));
    let (jobs, queue) = mpsc::channel(QUEUE);
    let mut worker = tokio::spawn(Worker::new(settings.clone(), handle.clone()).run(queue));
    let mut worker_result = None;
    loop {
        tokio::select! {
            result = &mut worker => {
                worker_result = Some(result);
                break;
            }
            event = component.next_event() => match event {
                None | Some(Event::Shutdown { .. }) => break,
                // Only a component that serves a function name gets invokes.
                Some(Event::Invoke(_)) => {}
                Some(Event::Refused { topic, reason }) => {
                    handle.warn(format!("publish on {topic} refused: {reason}"))
                }
                Some(Event::Message(m)) => match route(&settings, &m.topic, &m.payload) {
                    Routed::Drop(line) => handle.warn(line),
                    Routed::Job(job) => enqueue(&jobs, job, &handle).await?,
                },
            }
        }
    }
    drop(jobs);
    let result = match worker_result {
        Some(result) => result,
        None => match tokio::time::timeout(STOP_GRACE, &mut worker).await {
            Ok(result) => result,
            Err(_) => {
                worker.abort();
                handle.info("stopping with a port operation unfinished");
                Ok(Ok(()))
            }
        },
    };
    handle.info("stopping");
    match result {
        Ok(r) => r,
        Err(e) => {
            handle.error(format!("the port task ended abnormally: {e}"));
            Ok(())
        }
    }
}

/// Queues a job, or answers it at once with "busy" when the queue is full.
/// Only a closed link to the supervisor is an error.
async fn enqueue(jobs: &mpsc::Sender<Job>, job: Job, handle: &Handle) -> Result<(), SdkError> {
    match jobs.try_send(job) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(job)) => {
            let id = match &job.work {
                Work::Request(request::Request::Read { id, .. })
                | Work::Request(request::Request::Write { id, .. })
                | Work::Reject { id, .. } => id.clone(),
            };
            let message = format!("busy: {QUEUE} requests are already waiting for the serial port");
            handle.warn(format!("request refused: {message}"));
            let body = response::failure(&message, id.as_ref());
            match handle.publish(job.status_topic.as_str(), body).await {
                Err(SdkError::Closed) => Err(SdkError::Closed),
                Err(e) => {
                    handle.error(format!("cannot publish on {}: {e}", job.status_topic));
                    Ok(())
                }
                Ok(()) => Ok(()),
            }
        }
        // The port task is gone; the main loop sees why next.
        Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_connector_kit::testing::ManifestChecks;

    #[test]
    fn manifest_patterns_say_what_the_reference_says() {
        for ok in ["110", "9600", "14400", "56000", "115200", "230400"] {
            assert!(MANIFEST.admits("BaudRate", ok), "{ok}");
        }
        for bad in ["", "9601", "460800", "96000"] {
            assert!(!MANIFEST.admits("BaudRate", bad), "{bad}");
        }
        for ok in ["1", "9", "10", "59"] {
            assert!(MANIFEST.admits("Timeout", ok), "{ok}");
        }
        for bad in ["0", "60", "", "05"] {
            assert!(!MANIFEST.admits("Timeout", bad), "{bad}");
        }
        assert!(MANIFEST.admits("SerialPort", "/dev/ttyUSB0"));
        assert!(!MANIFEST.admits("SerialPort", "/dev/tty USB0"));
        assert!(MANIFEST.admits("SerialPort-ResourceId", "serial-port_1"));
        for ok in ["true", "FALSE", "True"] {
            assert!(MANIFEST.admits("PollingRead", ok), "{ok}");
        }
        assert!(!MANIFEST.admits("PollingRead", ""));
        for ok in [
            "", "1", "9999", "10000", "59999", "62999", "63899", "63989", "63994",
        ] {
            assert!(MANIFEST.admits("PollingReadLength", ok), "{ok}");
        }
        for bad in ["0", "63995", "64000", "99999", "01"] {
            assert!(!MANIFEST.admits("PollingReadLength", bad), "{bad}");
        }
        for ok in ["", "1", "99", "999"] {
            assert!(MANIFEST.admits("PollingReadInterval", ok), "{ok}");
        }
        for bad in ["0", "1000", "010"] {
            assert!(!MANIFEST.admits("PollingReadInterval", bad), "{bad}");
        }
        for ok in ["", "ascii", "ASCII", "Hex"] {
            assert!(MANIFEST.admits("PollingReadType", ok), "{ok}");
        }
        assert!(!MANIFEST.admits("PollingReadType", "base64"));
        for ok in ["", "true", "False"] {
            assert!(
                MANIFEST.admits("RtsCts", ok) && MANIFEST.admits("XonXoff", ok),
                "{ok}"
            );
        }
        for ok in ["", "N", "e", "O", "s", "M"] {
            assert!(MANIFEST.admits("Parity", ok), "{ok}");
        }
        for bad in ["X", "NE", "none"] {
            assert!(!MANIFEST.admits("Parity", bad), "{bad}");
        }
        assert_eq!(
            MANIFEST.resource_kind("SerialPort-ResourceId"),
            Some(ResourceKind::LocalDevice)
        );
        let required: Vec<&str> = MANIFEST
            .parameters
            .iter()
            .filter(|p| p.required)
            .map(|p| p.name)
            .collect();
        assert_eq!(
            required,
            [
                "BaudRate",
                "Timeout",
                "SerialPort",
                "SerialPort-ResourceId",
                "PollingRead"
            ]
        );
        // The rest of what the supervisor's `registry::manifest_problems`
        // checks (this crate cannot depend on the supervisor).
        MANIFEST.assert_filters_valid();
        for (i, p) in MANIFEST.parameters.iter().enumerate() {
            assert!(
                !MANIFEST.parameters[..i].iter().any(|q| q.name == p.name),
                "{} listed twice",
                p.name
            );
            if let Some(default) = p.default {
                assert!(MANIFEST.admits(p.name, default), "default of {}", p.name);
            }
        }
    }

    fn settings() -> Settings {
        let config = evergreen_connector_kit::testing::config(
            &MANIFEST,
            3,
            &[
                ("BaudRate", "9600"),
                ("Timeout", "1"),
                ("SerialPort", "/dev/ttyS3"),
                ("PollingRead", "false"),
            ],
        )
        .id("serial")
        .build();
        Settings::from_config(&config).0
    }

    fn job(routed: Routed) -> Job {
        match routed {
            Routed::Job(job) => job,
            Routed::Drop(line) => panic!("dropped: {line}"),
        }
    }

    #[test]
    fn requests_for_this_port_are_queued_as_requests() {
        let s = settings();
        let j = job(route(
            &s,
            "serial/core/write/dev/ttyS3",
            br#"{"data":"hi","type":"ascii","id":"1"}"#,
        ));
        assert!(matches!(
            j.work,
            Work::Request(request::Request::Write { .. })
        ));
        assert_eq!(j.status_topic, "serial/core/status/dev/ttyS3");
        assert_eq!(j.read_response_topic, "serial/core/read_response/dev/ttyS3");
    }

    #[test]
    fn bad_requests_are_refused_on_their_status_topic() {
        let s = settings();
        let j = job(route(&s, "serial/core/read/dev/ttyS3", b"{oops"));
        assert_eq!(j.status_topic, "serial/core/status/dev/ttyS3");
        match j.work {
            Work::Reject { id: None, message } => {
                assert!(
                    message.starts_with("Invalid read request: the request is not valid JSON"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Another port or core: refused on that request's own status topic.
        for topic in ["serial/core/read/dev/ttyS4", "serial/other/write/dev/ttyS3"] {
            let j = job(route(
                &s,
                topic,
                br#"{"readLength":"1","type":"ascii","id":"q"}"#,
            ));
            assert_eq!(
                j.status_topic,
                topic
                    .replace("/read/", "/status/")
                    .replace("/write/", "/status/")
            );
            match j.work {
                Work::Reject { id, message } => {
                    assert_eq!(id, Some(serde_json::json!("q")));
                    assert!(
                        message.contains("serves port /dev/ttyS3 on core core"),
                        "{message}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            route(&s, "serial/core/read", b"{}"),
            Routed::Drop(_)
        ));
        assert!(matches!(
            route(&s, "serial/core/flush/dev/ttyS3", b"{}"),
            Routed::Drop(_)
        ));
    }
}
