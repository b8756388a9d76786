//! The `MessageLog` connector: writes every message routed to it into its log.
//!
//! Not a Greengrass connector: Evergreen ships it so that message flows can
//! be watched with `tail -f` on its log file. Each delivery becomes one INFO
//! line `topic=<topic> source=<source> payload=<text>`; payloads that are not
//! UTF-8 are shown as a byte count, and long ones are cut at
//! `MaxPayloadBytes` so a flood of large messages cannot fill the disk faster
//! than the log rotation expects.

use evergreen_connector_kit::manifest;
use evergreen_connector_kit::{Notes, Params};
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec};
use evergreen_ipc::sdk::{Component, Event, SdkError};
use evergreen_ipc::ComponentConfig;

const MAX_PAYLOAD: &str = "MaxPayloadBytes";

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "MessageLog",
    versions: &[1],
    description: "Logs every message it receives (topic, source, payload) to its log file.",
    parameters: &[
        ParameterSpec::new(MAX_PAYLOAD, "Longest payload shown in full (bytes).")
            .pattern("^[0-9]{1,7}$")
            .default_value("1024"),
    ],
    inputs: &["#"],
    outputs: &[],
    isolation: manifest::NO_CONTAINER_ONLY,
    pinned: true,
    aws: false,
};

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, max) = Component::start(max_payload).await?;
    while let Some(event) = component.next_event().await {
        match event {
            Event::Message(m) => handle.info(format!(
                "topic={} source={} payload={}",
                m.topic,
                m.source,
                describe(&m.payload, max)
            )),
            Event::Shutdown { .. } => break,
            // Only a component that serves a function name gets invokes.
            Event::Invoke(_) => {}
            Event::Refused { topic, reason } => {
                handle.warn(format!("publish on {topic} refused: {reason}"))
            }
        }
    }
    Ok(())
}

/// `MaxPayloadBytes`, 1024 when missing (the manifest's pattern refused
/// anything else, so no note).
pub fn max_payload(config: &ComponentConfig) -> (usize, Notes) {
    let p = Params::new(config);
    let max = p
        .raw(MAX_PAYLOAD)
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(1024);
    p.finish(max)
}

/// A printable rendering of a payload, at most `max` bytes of it.
pub fn describe(payload: &[u8], max: usize) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) if text.len() <= max => text.to_string(),
        Ok(text) => {
            let mut cut = max;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}… ({} bytes)", &text[..cut], payload.len())
        }
        Err(_) => format!("<{} bytes of binary>", payload.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn payload_rendering() {
        assert_eq!(describe(b"{\"a\":1}", 100), "{\"a\":1}");
        assert_eq!(describe(&[0xff, 0xfe], 100), "<2 bytes of binary>");
        assert_eq!(describe("héllo".as_bytes(), 2), "h… (6 bytes)");
    }
}
