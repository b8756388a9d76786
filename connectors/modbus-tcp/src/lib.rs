//! The `ModbusTCPConnector` connector (Greengrass versions 1, 2 and 3): polls
//! Modbus TCP devices and publishes their readings in the SiteWise message
//! structure.
//!
//! **Readings on MQTT, or into stream manager.** Greengrass's Java connector
//! wrote readings into a stream manager stream. Evergreen does too when the
//! Evergreen parameter `OutputDestination` is `StreamManager` (the group
//! then needs the `GGStreamManager` system function; see [`streams`] for the
//! entry format, stream creation, `streamBufferSize` and what happens while
//! the stream manager is unavailable). By default (`MQTT`, or the parameter
//! absent) each reading is published on `modbus/tcp/stream/<streamName>`
//! (the source's `destination.streamName`; stream names are letters, digits,
//! spaces and `, . - _`, so always one valid topic level) as
//! `{"alias":…,"messages":[{"name":…,"value":…,"timestamp":…,"quality":…}]}`,
//! one MQTT message per tag per poll. A subscription from the connector on
//! `modbus/tcp/stream/+` (or one stream) routes them to a function or the
//! cloud. `alias` is `measurementDataStreamPrefix` + `tag` (the SiteWise guide:
//! the prefix is prepended to every data stream of the source), `name` is the
//! `tag`, `timestamp` is milliseconds since the Unix epoch when the response
//! arrived (or, for a `BAD` reading without one, when the poll gave up),
//! `value` is a JSON boolean, integer, number or string as `dstDataType`
//! says (see [`decode`]), and `quality` is `GOOD` or `BAD`, a `BAD` reading's
//! value being `null` (exactly when: [`source`]).
//!
//! **Requests and responses.** Like the Modbus-RTU adapter, the connector
//! takes `modbus/adapter/request` and answers on `modbus/adapter/response`,
//! with the same messages (the shared `evergreen_connector_modbus` code), for
//! the configured TCP endpoints; `request.source` picks the source (see
//! [`adapter`]).
//!
//! **Parameters.** `CapabilityConfiguration` (optional, as in Greengrass) is
//! the SiteWise Modbus TCP capability configuration, either the document
//! itself or the CLI wrapper
//! `{"version":1,"namespace":"iotsitewise:modbuscollector:1","configuration":"<json>"}`;
//! [`config`] says what each field means here. `LocalStoragePath` and
//! `MaximumBufferSize` sized the Java connector's on-disk buffer behind
//! stream manager; here the stream manager's own store (and
//! `streamBufferSize`) is that buffer, so both are validated, logged, and
//! otherwise unused. `OutputDestination` (Evergreen's own, optional):
//! `MQTT` (default) or `StreamManager`. The reference prints the
//! `LocalStoragePath` pattern as `^\s*$|\/.`, which under Evergreen's
//! whole-value anchoring would admit only two-character paths **[doc
//! inconsistency]**: the manifest uses `^\s*$|\/.*` (empty, or an absolute path).
//!
//! **A bad configuration** is reported, not crash-looped: the connector
//! starts, logs every problem at ERROR with its JSON path (e.g.
//! `sources[0].propertyGroups[0].tagPathDefinitions[1].address: …`),
//! publishes `{"status":"fail","error":"InvalidConfiguration",…,"errors":[{"path","message"}]}`
//! on `modbus/tcp/status`, polls nothing, and answers adapter requests with
//! a failure. Restarting would change nothing until the group is redeployed.
//! A configuration is all or nothing: one bad source stops every source, so
//! a half-applied configuration never looks like a working one. A good one
//! is announced on `modbus/tcp/status` as
//! `{"status":"success","sources":[{"name","endpoint","topic"}]}`.
//!
//! **Name.** The connector ARN is `…/connectors/ModbusTCPConnector/versions/N`
//! as the guide's tables say; its CLI example's `…/connectors/ModbusTCP/…`
//! **[doc inconsistency]** is taken for a slip and not accepted.
//!
//! **Isolation.** Greengrass runs this connector natively (NoContainer
//! only), and so does Evergreen.

pub mod adapter;
pub mod config;
pub mod decode;
pub mod output;
pub mod plan;
#[cfg(feature = "slave")]
pub mod slave;
pub mod source;
pub mod streams;

use std::sync::Arc;

use evergreen_connector_kit::manifest;
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec};
use evergreen_ipc::sdk::{Component, Event, Handle, SdkError};
use evergreen_ipc::{ComponentConfig, LogLevel};
use tokio::sync::mpsc;

use crate::adapter::{Routed, Targets, REQUEST_TOPIC, RESPONSE_TOPIC};
use crate::config::{Capability, ConfigError};
use crate::output::{STATUS_TOPIC, STREAM_FILTER};
use crate::source::{Batch, Command, Log, Poller, Stats};
use crate::streams::{OutputDestination, StreamSink};

const CAPABILITY: &str = "CapabilityConfiguration";
const LOCAL_STORAGE: &str = "LocalStoragePath";
const MAX_BUFFER: &str = "MaximumBufferSize";
const OUTPUT: &str = "OutputDestination";

/// Batches that may wait for publishing before pollers wait too.
const BATCH_QUEUE: usize = 64;

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "ModbusTCPConnector",
    versions: &[1, 2, 3],
    description: "Polls Modbus TCP devices as configured by CapabilityConfiguration (the SiteWise Modbus TCP \
                  source configuration) and publishes each reading on modbus/tcp/stream/<streamName>, or appends it to \
                  stream <streamName> of the group's stream manager (OutputDestination StreamManager).",
    parameters: &[
        ParameterSpec::new(
            LOCAL_STORAGE,
            "Greengrass: where the connector buffered data (default /var/sitewise). Accepted and unused: \
             Evergreen keeps no buffer of its own (the stream manager's store is the buffer).",
        )
        .pattern("^\\s*$|\\/.*"),
        ParameterSpec::new(
            MAX_BUFFER,
            "Greengrass: the most disk space (GB, default 10) for buffered data. Accepted and unused, as above.",
        )
        .pattern("^\\s*$|[0-9]+"),
        ParameterSpec::new(
            OUTPUT,
            "Evergreen: where readings go. MQTT (default): published on modbus/tcp/stream/<streamName>. \
             StreamManager: appended as SiteWise PutAssetPropertyValueEntry JSON to stream <streamName> of \
             the group's stream manager (GGStreamManager), created if absent (File, OverwriteOldestData, \
             streamBufferSize MiB).",
        )
        .pattern("^\\s*$|MQTT|StreamManager"),
        ParameterSpec::new(
            CAPABILITY,
            "The Modbus TCP capability configuration (JSON): sources, endpoints, property groups, tags. \
             Also accepted in the CLI wrapper form {\"version\":1,\"namespace\":\"iotsitewise:modbuscollector:1\",\
             \"configuration\":\"<json>\"}.",
        ),
    ],
    inputs: &[REQUEST_TOPIC],
    outputs: &[STREAM_FILTER, STATUS_TOPIC, RESPONSE_TOPIC],
    // Greengrass runs this connector natively: NoContainer only.
    isolation: manifest::NO_CONTAINER_ONLY,
    pinned: true,
    aws: false,
};

/// What the connector runs with, from its `ComponentConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The sources, or every problem found in `CapabilityConfiguration`.
    pub capability: Result<Capability, Vec<ConfigError>>,
    /// Where readings go (`OutputDestination`).
    pub output: OutputDestination,
}

impl Settings {
    /// The settings, and what to log about them once the link is up.
    pub fn from_config(config: &ComponentConfig) -> (Settings, Vec<(LogLevel, String)>) {
        let mut notes = Vec::new();
        let parameter = |name: &str| {
            config
                .parameters
                .get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        notes.push((
            LogLevel::Info,
            format!(
                "{LOCAL_STORAGE} {} and {MAX_BUFFER} {} GB are not used: the connector keeps no \
                 on-disk buffer of its own",
                parameter(LOCAL_STORAGE).unwrap_or("/var/sitewise"),
                parameter(MAX_BUFFER).unwrap_or("10"),
            ),
        ));
        let capability = match parameter(CAPABILITY) {
            None => {
                notes.push((
                    LogLevel::Warn,
                    format!("no {CAPABILITY}: there is nothing to poll"),
                ));
                Ok(Capability::default())
            }
            Some(text) => Capability::parse(text),
        };
        let output = match OutputDestination::parse(parameter(OUTPUT).unwrap_or("")) {
            Ok(o) => o,
            Err(why) => {
                notes.push((LogLevel::Error, format!("{why}; readings go to MQTT")));
                OutputDestination::Mqtt
            }
        };
        if output == OutputDestination::StreamManager {
            notes.push((
                LogLevel::Info,
                "readings go into stream manager streams (OutputDestination StreamManager)".into(),
            ));
        }
        (Settings { capability, output }, notes)
    }
}

/// A log sink for source tasks that writes to the connector's log.
fn log_to(handle: &Handle) -> Log {
    let handle = handle.clone();
    Arc::new(move |level, message| handle.log(level, message))
}

/// A started source: its command queue and counters.
#[derive(Debug)]
pub struct Running {
    pub name: String,
    pub commands: mpsc::Sender<Command>,
    pub stats: Arc<Stats>,
}

/// Starts one task per source; every poll's batch goes to `out`.
pub fn start_sources(cap: &Capability, out: &mpsc::Sender<Batch>, log: &Log) -> Vec<Running> {
    cap.sources
        .iter()
        .map(|source| {
            let stats = Arc::new(Stats::default());
            let poller = Poller::new(Arc::new(source.clone()), log.clone(), stats.clone());
            for (g, group) in source.groups.iter().enumerate() {
                log(
                    LogLevel::Info,
                    format!(
                        "source {:?} group {:?}: {} tag(s) in {} request(s) every {} ms",
                        source.name,
                        group.name,
                        group.tags.len(),
                        poller.reads_per_poll(g),
                        group.rate.as_millis()
                    ),
                );
            }
            // A short queue: a request waits for the poll in progress anyway.
            let (tx, rx) = mpsc::channel(adapter::QUEUE_CAPACITY);
            tokio::spawn(source::run_source(poller, out.clone(), rx));
            Running {
                name: source.name.clone(),
                commands: tx,
                stats,
            }
        })
        .collect()
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    let (batch_tx, mut batches) = mpsc::channel::<Batch>(BATCH_QUEUE);
    let running = match &settings.capability {
        Ok(cap) => {
            let running = start_sources(cap, &batch_tx, &log_to(&handle));
            let summary: Vec<(String, String, String)> = cap
                .sources
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        format!("{}:{}", s.endpoint.host, s.endpoint.port),
                        match settings.output {
                            OutputDestination::Mqtt => {
                                output::stream_topic(&s.destination.stream_name)
                            }
                            OutputDestination::StreamManager => s.destination.stream_name.clone(),
                        },
                    )
                })
                .collect();
            let status = match settings.output {
                OutputDestination::Mqtt => output::status_ok(&summary),
                OutputDestination::StreamManager => output::status_ok_streams(&summary),
            };
            publish_or_log(&handle, STATUS_TOPIC, status).await?;
            running
        }
        Err(errors) => {
            handle.error(format!(
                "{CAPABILITY} is invalid ({} problem(s)); nothing will be polled until the group is \
                 redeployed with a corrected configuration",
                errors.len()
            ));
            for e in errors {
                handle.error(format!("{CAPABILITY}: {e}"));
            }
            publish_or_log(&handle, STATUS_TOPIC, output::status_invalid(errors)).await?;
            Vec::new()
        }
    };
    drop(batch_tx);
    let targets = match &settings.capability {
        Ok(_) => Targets::Sources(&running),
        Err(_) => Targets::InvalidConfiguration,
    };
    let buffers: std::collections::HashMap<String, Option<u64>> = match &settings.capability {
        Ok(cap) => cap
            .sources
            .iter()
            .map(|s| {
                (
                    s.destination.stream_name.clone(),
                    s.destination.stream_buffer_size,
                )
            })
            .collect(),
        Err(_) => Default::default(),
    };
    let sink = (settings.output == OutputDestination::StreamManager).then(|| {
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
        StreamSink::start(streams::connect_from_env(), report, streams::QUEUE_LIMIT)
    });
    loop {
        tokio::select! {
            Some(batch) = batches.recv() => {
                if let Some(sink) = &sink {
                    sink.push(&batch, buffers.get(&batch.stream_name).copied().flatten());
                    continue;
                }
                let topic = output::stream_topic(&batch.stream_name);
                for reading in &batch.readings {
                    publish_or_log(&handle, &topic, reading.to_payload()).await?;
                }
            }
            event = component.next_event() => match event {
                None | Some(Event::Shutdown { .. }) => break,
                // Only a component that serves a function name gets invokes.
                Some(Event::Invoke(_)) => {}
                Some(Event::Refused { topic, reason }) => {
                    handle.warn(format!("publish on {topic} refused: {reason}"))
                }
                Some(Event::Message(m)) if m.topic == REQUEST_TOPIC => {
                    match adapter::route(&m.payload, &targets) {
                        Routed::Answer(response) => {
                            publish_or_log(&handle, RESPONSE_TOPIC, response.to_json()).await?
                        }
                        Routed::Pending(answer) => {
                            // Answered when the source's task gets to it; the
                            // queue bound limits how many of these wait.
                            let handle = handle.clone();
                            tokio::spawn(async move {
                                if let Ok(response) = answer.await {
                                    let _ = publish_or_log(&handle, RESPONSE_TOPIC, response.to_json()).await;
                                }
                            });
                        }
                    }
                }
                Some(Event::Message(m)) => {
                    handle.warn(format!("unexpected message on {}: requests go to {REQUEST_TOPIC}", m.topic))
                }
            }
        }
    }
    if let Some(sink) = &sink {
        let c = sink.counts();
        handle.info(format!(
            "stream manager output: {} appended, {} dropped, {} BAD skipped, {} still queued at stop",
            c.appended, c.dropped, c.skipped_bad, c.queued
        ));
        sink.close();
    }
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
        evergreen_connector_kit::testing::config(&MANIFEST, 3, params)
            .id("modbus-tcp")
            .core("test-core")
            .build()
    }

    #[test]
    fn manifest_is_consistent() {
        for ok in ["/var/sitewise", "/", "", "  "] {
            assert!(MANIFEST.admits(LOCAL_STORAGE, ok), "{ok:?}");
        }
        for bad in ["var/sitewise", "x"] {
            assert!(!MANIFEST.admits(LOCAL_STORAGE, bad), "{bad:?}");
        }
        for ok in ["10", "0", ""] {
            assert!(MANIFEST.admits(MAX_BUFFER, ok), "{ok:?}");
        }
        for bad in ["10GB", "-1"] {
            assert!(!MANIFEST.admits(MAX_BUFFER, bad), "{bad:?}");
        }
        for ok in ["MQTT", "StreamManager", ""] {
            assert!(MANIFEST.admits(OUTPUT, ok), "{ok:?}");
        }
        for bad in ["mqtt", "Stream", "StreamManagerX"] {
            assert!(!MANIFEST.admits(OUTPUT, bad), "{bad:?}");
        }
        MANIFEST.assert_filters_valid();
        for (i, p) in MANIFEST.parameters.iter().enumerate() {
            assert!(!MANIFEST.parameters[..i].iter().any(|q| q.name == p.name));
            assert!(
                !p.required,
                "{}: Greengrass makes every parameter optional",
                p.name
            );
        }
        assert!(MANIFEST.isolation.no_container && !MANIFEST.isolation.container);
    }

    #[test]
    fn settings_report_a_bad_configuration_and_a_missing_one() {
        let (s, notes) = Settings::from_config(&config(&[]));
        assert_eq!(s.capability, Ok(Capability::default()));
        assert!(notes
            .iter()
            .any(|(l, m)| *l == LogLevel::Warn && m.contains("nothing to poll")));
        assert_eq!(s.output, OutputDestination::Mqtt);
        let (s, _) = Settings::from_config(&config(&[(OUTPUT, "StreamManager")]));
        assert_eq!(s.output, OutputDestination::StreamManager);
        let (s, _) = Settings::from_config(&config(&[(CAPABILITY, "{\"sources\": 1}")]));
        let errors = s.capability.expect_err("invalid");
        assert_eq!(errors[0].path, "sources");
        let status: serde_json::Value =
            evergreen_connector_kit::testing::json(&output::status_invalid(&errors));
        assert_eq!(status["status"], "fail");
        assert_eq!(status["errors"][0]["path"], "sources");
    }
}
