//! The Serial Stream connector's request handling (`route`: the topic, then
//! `request::parse` on the JSON of `serial/<thing>/read|write/<port>`), and the responses it
//! would publish for what it parsed (`response::read_response` on data read from the port,
//! `response::failure`, `response::success`), which must be JSON echoing the request's id.
//!
//! Input: a topic, a NUL byte, the payload. Without a NUL the whole input is the payload of a
//! read and of a write request for the configured port (so the reference's request JSON
//! works as a seed as it is).

#![no_main]

use evergreen_connector_serial_stream::request::{Encoding, Request};
use evergreen_connector_serial_stream::response;
use evergreen_connector_serial_stream::settings::Settings;
use evergreen_connector_serial_stream::worker::Work;
use evergreen_connector_serial_stream::{route, Routed};
use evergreen_ipc::ComponentConfig;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn settings() -> Settings {
    let config = ComponentConfig::connector(
        "arn:aws:greengrass:us-east-1::/connectors/SerialStream/versions/3",
        &[
            ("SerialPort", "/dev/ttyS0"),
            ("BaudRate", "9600"),
            ("Timeout", "5"),
        ],
    );
    Settings::from_config(&config).0
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static SETTINGS: Settings = settings();
    }
    SETTINGS.with(|settings| match data.iter().position(|b| *b == 0) {
        Some(nul) => {
            if let Ok(topic) = std::str::from_utf8(&data[..nul]) {
                one(settings, topic, &data[nul + 1..]);
            }
        }
        None => {
            one(settings, "serial/core/read/dev/ttyS0", data);
            one(settings, "serial/core/write/dev/ttyS0", data);
        }
    });
});

fn one(settings: &Settings, topic: &str, payload: &[u8]) {
    let job = match route(settings, topic, payload) {
        Routed::Job(job) => job,
        Routed::Drop(_) => return,
    };
    assert!(job.status_topic.starts_with("serial/"));
    match job.work {
        Work::Request(Request::Read {
            length,
            encoding,
            id,
        }) => {
            // What a read of `length` bytes could return: the payload's bytes stand in.
            let data = &payload[..payload.len().min(length)];
            let (bytes, _) = response::read_response(data, encoding, id.as_ref());
            check(&bytes, id.as_ref());
            if encoding == Encoding::Ascii {
                let _ = response::read_response(data, Encoding::Hex, id.as_ref());
            }
            check(&response::success(id.as_ref()), id.as_ref());
        }
        Work::Request(Request::Write { id, .. }) => {
            check(&response::success(id.as_ref()), id.as_ref())
        }
        Work::Reject { id, message } => {
            check(&response::failure(&message, id.as_ref()), id.as_ref())
        }
    }
}

/// A published message: JSON, with the request's id when it had one.
fn check(bytes: &[u8], id: Option<&Value>) {
    let value: Value = serde_json::from_slice(bytes).expect("published JSON");
    if let Some(id) = id {
        assert_eq!(value.get("id"), Some(id), "{value}");
    }
}
