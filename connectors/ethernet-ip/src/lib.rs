//! The `IoTEIPProtocolAdaptor` connector (Greengrass versions 1 and 2):
//! polls EtherNet/IP devices (Logix-style tags, CIP Read Tag) and appends
//! each reading to a stream manager stream.
//!
//! **Output.** As the Greengrass page documents, each reading is appended
//! to the source's `destination.streamName` (created when absent, see
//! [`evergreen_connector_modbus_tcp::streams`]: `File`,
//! `OverwriteOldestData`, `streamBufferSize` MiB) as
//! `{"alias":…,"messages":[{"name":…,"value":…,"timestamp":…,"quality":…}]}`,
//! one message per tag per poll, in tag order. `alias` is
//! `destinationPathPrefix` + `path` (plain concatenation: the SiteWise guide
//! says the path "is prefixed with" it), `name` is the `path`, `timestamp`
//! milliseconds since the Unix epoch when the reply arrived, `value` a JSON
//! integer, number, string or boolean as `dstDataType` says, `quality`
//! `GOOD` or `BAD` (value `null`; exactly when: [`source`]). Unlike the
//! SiteWise entries of the Modbus-TCP adapter, `BAD` readings are appended
//! too: the documented structure has room for them. The group needs the
//! `GGStreamManager` system function; while the stream manager is away,
//! readings wait in a bounded queue and outages are reported.
//!
//! **Status topic.** `ethernetip/status` (Evergreen's own; the Greengrass
//! connector has no MQTT output): at start
//! `{"status":"success","output":"StreamManager","sources":[{"name","endpoint","stream"}]}`,
//! or for a refused configuration
//! `{"status":"fail","error":"InvalidConfiguration","error_message",…,"errors":[{"path","message"}]}`
//! (then nothing is polled until a redeployment: restarting changes
//! nothing); and `{"streamManager":"unavailable"|"ok",…}` on each stream
//! manager outage and recovery. A subscription from the connector on
//! `ethernetip/status` routes them.
//!
//! **Parameters.** `ProtocolAdapterConfiguration` (required) is the
//! adapter configuration ([`config`]). The guide's CLI example spells it
//! `ProtocolAdaptorConfiguration` **[doc inconsistency]**; both names are
//! accepted, so groups written from either page deploy. Neither is
//! `required` in the manifest (group validation would refuse the other
//! spelling); the connector itself refuses a group with neither, or with
//! both holding different documents, reporting it on `ethernetip/status`.
//! `LocalStoragePath` (default `/var/sitewise`) was the Java connector's
//! on-disk state; stream manager's store is the buffer here, so it is
//! validated, logged and otherwise unused. Its documented pattern
//! `^\s*$|\/.` would admit only two-character paths under whole-value
//! anchoring **[doc inconsistency]**: the manifest uses `^\s*$|\/.*`.
//!
//! **Protocol.** [`client`] and [`cip`]: one TCP session per source,
//! RegisterSession, then SendRRData with an unconnected Read Tag request
//! per tag, straight to the Message Router.
//!
//! **Isolation.** NoContainer only, as in Greengrass.

pub mod cip;
pub mod client;
pub mod config;
pub mod source;

use std::collections::HashMap;
use std::sync::Arc;

use evergreen_connector_kit::manifest;
use evergreen_connector_modbus_tcp::config::{err, ConfigError};
use evergreen_connector_modbus_tcp::output;
use evergreen_connector_modbus_tcp::streams::{self, EntryFormat, StreamSink};
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec};
use evergreen_ipc::sdk::{Component, Event, Handle, SdkError};
use evergreen_ipc::{ComponentConfig, LogLevel};
use tokio::sync::mpsc;

use crate::config::Adapter;
use crate::source::{Batch, Log, Poller, Stats};

/// The documented parameter name.
pub const CONFIGURATION: &str = "ProtocolAdapterConfiguration";
/// The spelling in the guide's CLI example.
pub const CONFIGURATION_ALT: &str = "ProtocolAdaptorConfiguration";
const LOCAL_STORAGE: &str = "LocalStoragePath";
/// Evergreen's status topic for this connector.
pub const STATUS_TOPIC: &str = "ethernetip/status";

/// Batches that may wait for the stream sink before pollers wait too.
const BATCH_QUEUE: usize = 64;

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "IoTEIPProtocolAdaptor",
    versions: &[1, 2],
    description: "Polls EtherNet/IP devices (CIP Read Tag) as configured by ProtocolAdapterConfiguration and \
                  appends each reading, {\"alias\",\"messages\":[{\"name\",\"value\",\"timestamp\",\"quality\"}]}, \
                  to stream <streamName> of the group's stream manager.",
    parameters: &[
        ParameterSpec::new(
            LOCAL_STORAGE,
            "Greengrass: where the connector kept persistent data (default /var/sitewise). Accepted and \
             unused: the stream manager's store is the buffer.",
        )
        .pattern("^\\s*$|\\/.*"),
        ParameterSpec::new(
            CONFIGURATION,
            "The adapter configuration (JSON): sources, endpoints, destination streams, property groups, \
             tag paths. Required (or under its other spelling, ProtocolAdaptorConfiguration).",
        ),
        ParameterSpec::new(
            CONFIGURATION_ALT,
            "ProtocolAdapterConfiguration as the Greengrass guide's CLI example spells it.",
        ),
    ],
    inputs: &[],
    outputs: &[STATUS_TOPIC],
    isolation: manifest::NO_CONTAINER_ONLY,
    pinned: true,
    aws: false,
};

/// What the connector runs with: the sources, or every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub adapter: Result<Adapter, Vec<ConfigError>>,
}

impl Settings {
    /// The settings, and what to log about them once the link is up.
    pub fn from_config(config: &ComponentConfig) -> (Settings, Vec<(LogLevel, String)>) {
        let parameter = |name: &str| {
            config
                .parameters
                .get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let notes = vec![(
            LogLevel::Info,
            format!(
                "{LOCAL_STORAGE} {} is not used: the stream manager's store is the buffer",
                parameter(LOCAL_STORAGE).unwrap_or("/var/sitewise")
            ),
        )];
        let adapter = match (parameter(CONFIGURATION), parameter(CONFIGURATION_ALT)) {
            (None, None) => Err(vec![err(
                CONFIGURATION,
                format!(
                    "is required (or {CONFIGURATION_ALT}, as the guide's CLI example spells it)"
                ),
            )]),
            (Some(a), Some(b)) if a != b => Err(vec![err(
                CONFIGURATION_ALT,
                format!("differs from {CONFIGURATION}: give the configuration once"),
            )]),
            (Some(text), _) => Adapter::parse(CONFIGURATION, text),
            (None, Some(text)) => Adapter::parse(CONFIGURATION_ALT, text),
        };
        (Settings { adapter }, notes)
    }
}

/// A started source's counters.
#[derive(Debug)]
pub struct Running {
    pub name: String,
    pub stats: Arc<Stats>,
}

/// Starts one task per source; every poll's batch goes to `out`.
pub fn start_sources(adapter: &Adapter, out: &mpsc::Sender<Batch>, log: &Log) -> Vec<Running> {
    adapter
        .sources
        .iter()
        .map(|source| {
            let stats = Arc::new(Stats::default());
            for group in &source.groups {
                log(
                    LogLevel::Info,
                    format!(
                        "source {:?} group {:?}: {} tag(s) every {} ms from {}:{}",
                        source.name,
                        group.name,
                        group.tags.len(),
                        group.rate.as_millis(),
                        source.endpoint.host,
                        source.endpoint.port
                    ),
                );
            }
            let poller = Poller::new(Arc::new(source.clone()), log.clone(), stats.clone());
            tokio::spawn(source::run_source(poller, out.clone()));
            Running {
                name: source.name.clone(),
                stats,
            }
        })
        .collect()
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    let (batch_tx, mut batches) = mpsc::channel::<Batch>(BATCH_QUEUE);
    let log: Log = {
        let h = handle.clone();
        Arc::new(move |level, message| h.log(level, message))
    };
    let mut buffers: HashMap<String, Option<u64>> = HashMap::new();
    let _running = match &settings.adapter {
        Ok(adapter) => {
            let summary: Vec<(String, String, String)> = adapter
                .sources
                .iter()
                .map(|s| {
                    buffers.insert(
                        s.destination.stream_name.clone(),
                        s.destination.stream_buffer_size,
                    );
                    (
                        s.name.clone(),
                        format!("{}:{}", s.endpoint.host, s.endpoint.port),
                        s.destination.stream_name.clone(),
                    )
                })
                .collect();
            if adapter.sources.is_empty() {
                handle.warn("the configuration has no sources: there is nothing to poll");
            }
            publish_or_log(&handle, STATUS_TOPIC, output::status_ok_streams(&summary)).await?;
            start_sources(adapter, &batch_tx, &log)
        }
        Err(errors) => {
            handle.error(format!(
                "the adapter configuration is invalid ({} problem(s)); nothing will be polled until the \
                 group is redeployed with a corrected one",
                errors.len()
            ));
            for e in errors {
                handle.error(e.to_string());
            }
            publish_or_log(&handle, STATUS_TOPIC, output::status_invalid(errors)).await?;
            Vec::new()
        }
    };
    drop(batch_tx);
    let sink = {
        let h = handle.clone();
        let report: streams::Report = Arc::new(move |level, message, status| {
            h.log(level, message);
            if let Some(status) = status {
                let h = h.clone();
                tokio::spawn(async move {
                    let _ = publish_or_log(&h, STATUS_TOPIC, status).await;
                });
            }
        });
        StreamSink::start_with_format(
            streams::connect_from_env(),
            report,
            streams::QUEUE_LIMIT,
            EntryFormat::Messages,
        )
    };
    loop {
        tokio::select! {
            Some(batch) = batches.recv() => {
                sink.push(&batch, buffers.get(&batch.stream_name).copied().flatten());
            }
            event = component.next_event() => match event {
                None | Some(Event::Shutdown { .. }) => break,
                Some(Event::Invoke(_)) => {}
                Some(Event::Refused { topic, reason }) => {
                    handle.warn(format!("publish on {topic} refused: {reason}"))
                }
                Some(Event::Message(m)) => {
                    handle.warn(format!("unexpected message on {}: this connector takes no input", m.topic))
                }
            }
        }
    }
    let c = sink.counts();
    handle.info(format!(
        "stream manager output: {} appended, {} dropped, {} still queued at stop",
        c.appended, c.dropped, c.queued
    ));
    sink.close();
    handle.info("stopping");
    Ok(())
}

/// Publishes; only a closed link is fatal, anything else is logged.
async fn publish_or_log(handle: &Handle, topic: &str, payload: Vec<u8>) -> Result<(), SdkError> {
    match handle.publish(topic, payload).await {
        Ok(()) => Ok(()),
        Err(SdkError::Closed) => Err(SdkError::Closed),
        Err(e) => {
            handle.error(format!("cannot publish on {topic}: {e}"));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_connector_kit::testing::ManifestChecks;

    fn config(params: &[(&str, &str)]) -> ComponentConfig {
        evergreen_connector_kit::testing::config(&MANIFEST, 2, params)
            .id("eip")
            .core("test-core")
            .build()
    }

    const DOC: &str = r#"{"sources":[{"type":"EIPSource","name":"S","endpoint":{"ipAddress":"127.0.0.1"},
        "destination":{"type":"StreamManager","streamName":"Out"},"destinationPathPrefix":"P_",
        "propertyGroups":[{"name":"G","scanMode":{"type":"POLL","rate":1000},
        "tagPathDefinitions":[{"type":"EIPTagPath","path":"Count","dstDataType":"integer"}]}]}]}"#;

    #[test]
    fn manifest_is_consistent_with_the_guide() {
        for ok in ["/var/sitewise", "/", "", " "] {
            assert!(MANIFEST.admits(LOCAL_STORAGE, ok), "{ok:?}");
        }
        assert!(!MANIFEST.admits(LOCAL_STORAGE, "var/x"));
        MANIFEST.assert_filters_valid();
        assert_eq!(
            MANIFEST.arn("us-east-1", 2),
            "arn:aws:greengrass:us-east-1::/connectors/IoTEIPProtocolAdaptor/versions/2"
        );
        assert!(MANIFEST.isolation.no_container && !MANIFEST.isolation.container);
    }

    #[test]
    fn the_configuration_is_read_under_either_spelling() {
        let (a, _) = Settings::from_config(&config(&[(CONFIGURATION, DOC)]));
        let (b, _) = Settings::from_config(&config(&[(CONFIGURATION_ALT, DOC)]));
        assert_eq!(a, b);
        let adapter = a.adapter.expect("valid");
        assert_eq!(adapter.sources[0].endpoint.port, 44818);
        let (both, _) =
            Settings::from_config(&config(&[(CONFIGURATION, DOC), (CONFIGURATION_ALT, DOC)]));
        assert!(both.adapter.is_ok());
    }

    #[test]
    fn a_missing_or_twice_given_configuration_is_an_error_with_its_path() {
        let (s, _) = Settings::from_config(&config(&[]));
        assert_eq!(s.adapter.expect_err("missing")[0].path, CONFIGURATION);
        let (s, _) =
            Settings::from_config(&config(&[(CONFIGURATION, DOC), (CONFIGURATION_ALT, "{}")]));
        assert_eq!(s.adapter.expect_err("differs")[0].path, CONFIGURATION_ALT);
        let (s, _) = Settings::from_config(&config(&[(CONFIGURATION_ALT, "{")]));
        let errors = s.adapter.expect_err("bad json");
        assert_eq!(errors[0].path, CONFIGURATION_ALT);
        let status = evergreen_connector_kit::testing::json(&output::status_invalid(&errors));
        assert_eq!(status["status"], "fail");
        assert_eq!(status["errors"][0]["path"], CONFIGURATION_ALT);
    }
}
