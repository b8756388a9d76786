//! The `IoTSiteWise` connector (Greengrass versions 1–12): reads OPC UA
//! servers and appends every value, as a SiteWise
//! `PutAssetPropertyValueEntry`, to a stream of the group's stream manager
//! (`GGStreamManager`), from which a stream with an IoT SiteWise export
//! sends it to `BatchPutAssetPropertyValue`.
//!
//! **Where the sources come from.** Greengrass's connector fetched its OPC
//! UA sources from the cloud SiteWise gateway (`iotsitewise:opcuacollector:N`
//! capability); that cloud is gone. Evergreen takes the same document
//! locally from its own parameter `CapabilityConfiguration`, exactly as the
//! Modbus-TCP connector does: the document itself or the CLI wrapper
//! `{"version","namespace":"iotsitewise:opcuacollector:1","configuration":"<json>"}`.
//! What each field means here, and what is unsupported: [`config`].
//!
//! **Output.** Each value becomes one entry (JSON) appended to
//! `destination.streamName`, default `SiteWise_Stream` (the stream
//! Greengrass's SiteWise gateway wrote to). `propertyAlias` is
//! `measurementDataStreamPrefix` + the node's browse path (`/Folder/Var`,
//! browse names from the Objects folder down), as the SiteWise guide's
//! `/Washington` example shows; value, quality (`GOOD`, `UNCERTAIN`,
//! `BAD`) and timestamp: [`values`]. The stream is created if absent
//! (`File`, `OverwriteOldestData`, `streamBufferSize` MiB); to reach SiteWise
//! it is created beforehand with an `IoTSiteWiseConfig` export. While the
//! stream manager is unavailable values wait in a bounded queue, oldest
//! dropped first (the Modbus-TCP connector's `StreamSink`).
//!
//! **Parameters.** `SiteWiseLocalStoragePath` (default `/var/sitewise`)
//! holds the OPC UA client's PKI ([`client`]). `AWSSecretsArnList` (a JSON
//! array of Secrets Manager ARNs) names the key-value secrets with
//! `username` and `password` that `identityProvider` `Username` refers to;
//! a source whose secret is not in the list, or cannot be read, does not
//! start and says why. `MaximumBufferSize` (GB, default 10) sized
//! Greengrass's on-disk buffer; the stream manager's store is the buffer
//! here, so it is validated and logged only.
//!
//! **Status.** `sitewise/status` carries `{"status":"success","sources":[…]}`
//! or `{"status":"fail","error":"InvalidConfiguration","errors":[{"path","message"}]}`
//! at start, and the stream manager's outages and recoveries. Connection
//! failures (server down, user refused, certificate untrusted) are logged
//! at ERROR with the OPC UA status code, once per distinct failure, while
//! the source retries with backoff.

pub mod client;
pub mod config;
pub mod filter;
pub mod values;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use evergreen_connector_kit::manifest;
use evergreen_connector_modbus_tcp::streams::{self, StreamSink};
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec};
use evergreen_ipc::sdk::{Component, Event, Handle, SdkError};
use evergreen_ipc::{ComponentConfig, LogLevel};
use serde_json::json;
use tokio::sync::mpsc;

use crate::client::{Batch, Credentials, Log, SourceRunner, SourceStatus};
use crate::config::{Capability, ConfigError, Identity};

const LOCAL_STORAGE: &str = "SiteWiseLocalStoragePath";
const SECRETS: &str = "AWSSecretsArnList";
const MAX_BUFFER: &str = "MaximumBufferSize";
const CAPABILITY: &str = "CapabilityConfiguration";
/// Start status and stream manager status.
pub const STATUS_TOPIC: &str = "sitewise/status";
/// Batches that may wait for the stream sink.
const BATCH_QUEUE: usize = 64;

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "IoTSiteWise",
    versions: &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    description: "Reads OPC UA servers as configured by CapabilityConfiguration (the SiteWise OPC UA source \
                  configuration) and appends each value as a SiteWise PutAssetPropertyValueEntry to a stream of \
                  the group's stream manager (default SiteWise_Stream).",
    parameters: &[
        ParameterSpec::new(
            LOCAL_STORAGE,
            "Where the connector keeps its OPC UA PKI (client certificate and key, trusted server \
             certificates), default /var/sitewise.",
        )
        .pattern("^\\s*$|\\/.*")
        .since(2),
        ParameterSpec::new(
            SECRETS,
            "JSON array of Secrets Manager ARNs: key-value secrets with username and password for OPC UA \
             sources whose identityProvider is Username.",
        )
        .secret_arn_list()
        .since(2),
        ParameterSpec::new(
            MAX_BUFFER,
            "Greengrass: the most disk space (GB, default 10) for buffered data. Validated and logged; the \
             stream manager's store is the buffer.",
        )
        .pattern("^\\s*$|[0-9]+")
        .since(2),
        ParameterSpec::new(
            CAPABILITY,
            "Evergreen: the OPC UA capability configuration (JSON) that Greengrass took from the cloud \
             SiteWise gateway: sources, endpoints, security, node filters, property groups. Also accepted \
             in the CLI wrapper form {\"version\",\"namespace\":\"iotsitewise:opcuacollector:1\",\
             \"configuration\":\"<json>\"}.",
        ),
    ],
    inputs: &[],
    outputs: &[STATUS_TOPIC],
    // Greengrass runs this connector natively: NoContainer only.
    isolation: manifest::NO_CONTAINER_ONLY,
    pinned: true,
    aws: false,
};

/// What the connector runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub capability: Result<Capability, Vec<ConfigError>>,
    pub storage: PathBuf,
    /// `AWSSecretsArnList`, or why it is unreadable.
    pub secrets: Result<Vec<String>, String>,
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
        let storage = PathBuf::from(parameter(LOCAL_STORAGE).unwrap_or("/var/sitewise"));
        match parameter(MAX_BUFFER).map(|v| v.parse::<u64>()) {
            None => notes.push((
                LogLevel::Info,
                format!("{MAX_BUFFER} 10 GB (default): the stream manager's store is the buffer"),
            )),
            Some(Ok(gb)) => notes.push((
                LogLevel::Info,
                format!("{MAX_BUFFER} {gb} GB: the stream manager's store is the buffer"),
            )),
            Some(Err(_)) => notes.push((
                LogLevel::Error,
                format!("{MAX_BUFFER} must be a whole number of GB; ignored"),
            )),
        }
        let secrets = match parameter(SECRETS) {
            None => Ok(Vec::new()),
            Some(text) => serde_json::from_str::<Vec<String>>(text)
                .map_err(|e| format!("{SECRETS} must be a JSON array of secret ARNs: {e}")),
        };
        let capability = match parameter(CAPABILITY) {
            None => {
                notes.push((
                    LogLevel::Warn,
                    format!("no {CAPABILITY}: there is no OPC UA source to read (Greengrass took them from the SiteWise cloud gateway)"),
                ));
                Ok(Capability::default())
            }
            Some(text) => Capability::parse(text),
        };
        (
            Settings {
                capability,
                storage,
                secrets,
            },
            notes,
        )
    }
}

/// `username` and `password` of a key-value secret's text.
pub fn parse_credentials(secret_string: &str) -> Result<Credentials, String> {
    let v: serde_json::Value = serde_json::from_str(secret_string)
        .map_err(|_| "is not a key-value (JSON) secret".to_string())?;
    let get = |k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_string);
    match (get("username"), get("password")) {
        (Some(username), Some(password)) => Ok(Credentials { username, password }),
        _ => Err("needs the keys username and password".into()),
    }
}

async fn credentials_for(
    handle: &Handle,
    arn: &str,
    allowed: &Result<Vec<String>, String>,
) -> Result<Credentials, String> {
    match allowed {
        Err(why) => return Err(why.clone()),
        Ok(list) if !list.iter().any(|a| a == arn) => {
            return Err(format!(
                "secret {arn} is not in {SECRETS} (add it to the connector's list)"
            ))
        }
        Ok(_) => {}
    }
    let value = handle
        .get_secret(arn, None)
        .await
        .map_err(|e| format!("cannot read secret {arn}: {e}"))?;
    let text = value
        .secret_string
        .ok_or_else(|| format!("secret {arn} is binary; it must be a key-value secret"))?;
    parse_credentials(&text).map_err(|why| format!("secret {arn} {why}"))
}

async fn publish_or_log(handle: &Handle, payload: Vec<u8>) -> Result<(), SdkError> {
    match handle.publish(STATUS_TOPIC, payload).await {
        Ok(()) => Ok(()),
        Err(SdkError::Closed) => Err(SdkError::Closed),
        Err(e) => {
            handle.warn(format!("cannot publish on {STATUS_TOPIC}: {e}"));
            Ok(())
        }
    }
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    let (batch_tx, mut batches) = mpsc::channel::<Batch>(BATCH_QUEUE);
    let log: Log = {
        let h = handle.clone();
        Arc::new(move |level, message| h.log(level, message))
    };
    let mut tasks = Vec::new();
    let mut statuses: Vec<(String, Arc<SourceStatus>)> = Vec::new();
    match &settings.capability {
        Err(errors) => {
            handle.error(format!(
                "{CAPABILITY} is invalid ({} problem(s)); nothing is read until the group is redeployed",
                errors.len()
            ));
            for e in errors {
                handle.error(format!("{CAPABILITY}: {e}"));
            }
            let list: Vec<_> = errors
                .iter()
                .map(|e| json!({"path": e.path, "message": e.message}))
                .collect();
            publish_or_log(
                &handle,
                json!({"status": "fail", "error": "InvalidConfiguration", "error_message": format!("{CAPABILITY} is invalid"), "errors": list})
                    .to_string()
                    .into_bytes(),
            )
            .await?;
        }
        Ok(cap) => {
            let mut summary = Vec::new();
            for source in &cap.sources {
                let credentials = match &source.endpoint.identity {
                    Identity::Anonymous => None,
                    Identity::Username { secret_arn } => {
                        match credentials_for(&handle, secret_arn, &settings.secrets).await {
                            Ok(c) => Some(c),
                            Err(why) => {
                                handle
                                    .error(format!("source {:?} not started: {why}", source.name));
                                summary.push(json!({"name": source.name, "endpoint": source.endpoint.uri, "error": why}));
                                continue;
                            }
                        }
                    }
                };
                let status = Arc::new(SourceStatus::default());
                let runner = SourceRunner {
                    source: Arc::new(source.clone()),
                    pki_dir: client::pki_dir(&settings.storage, &source.name),
                    credentials,
                    log: log.clone(),
                    out: batch_tx.clone(),
                    status: status.clone(),
                };
                handle.info(format!(
                    "source {:?}: {} ({:?}/{:?}), stream {:?}, PKI in {}",
                    source.name,
                    source.endpoint.uri,
                    source.endpoint.policy,
                    source.endpoint.mode,
                    source.stream_name,
                    runner.pki_dir.display()
                ));
                summary.push(json!({"name": source.name, "endpoint": source.endpoint.uri, "stream": source.stream_name}));
                statuses.push((source.name.clone(), status));
                tasks.push(tokio::spawn(client::run_source(runner)));
            }
            publish_or_log(
                &handle,
                json!({"status": "success", "sources": summary})
                    .to_string()
                    .into_bytes(),
            )
            .await?;
        }
    }
    drop(batch_tx);
    let sink = {
        let h = handle.clone();
        let report: streams::Report = Arc::new(move |level, message, status| {
            h.log(level, message);
            if let Some(status) = status {
                let h = h.clone();
                tokio::spawn(async move {
                    let _ = publish_or_log(&h, status).await;
                });
            }
        });
        StreamSink::start(streams::connect_from_env(), report, streams::QUEUE_LIMIT)
    };
    let mut buffers: HashMap<String, Option<u64>> = HashMap::new();
    loop {
        tokio::select! {
            Some(batch) = batches.recv() => {
                buffers.entry(batch.stream_name.clone()).or_insert(batch.buffer_mib);
                sink.push_entries(&batch.stream_name, batch.buffer_mib, batch.entries);
            }
            event = component.next_event() => match event {
                None | Some(Event::Shutdown { .. }) => break,
                Some(Event::Refused { topic, reason }) => {
                    handle.warn(format!("publish on {topic} refused: {reason}"))
                }
                Some(_) => {}
            }
        }
    }
    for t in &tasks {
        t.abort();
    }
    let c = sink.counts();
    for (name, s) in &statuses {
        let s = s.snapshot();
        handle.info(format!(
            "source {name:?}: {} value(s) over {} connection(s), {} dropped",
            s.values, s.connections, s.dropped
        ));
    }
    handle.info(format!(
        "stream manager output: {} appended, {} dropped, {} still queued at stop",
        c.appended, c.dropped, c.queued
    ));
    sink.close();
    handle.info("stopping");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_connector_kit::testing::ManifestChecks;

    fn config(params: &[(&str, &str)]) -> ComponentConfig {
        evergreen_connector_kit::testing::config(&MANIFEST, 12, params)
            .id("sitewise")
            .core("test-core")
            .build()
    }

    #[test]
    fn manifest_and_settings() {
        for ok in ["/var/sitewise", ""] {
            assert!(MANIFEST.admits(LOCAL_STORAGE, ok), "{ok:?}");
        }
        assert!(!MANIFEST.admits(LOCAL_STORAGE, "var"));
        assert!(!MANIFEST.admits(MAX_BUFFER, "10GB"));
        assert!(MANIFEST.isolation.no_container && !MANIFEST.isolation.container);
        let (s, notes) = Settings::from_config(&config(&[]));
        assert_eq!(s.capability, Ok(Capability::default()));
        assert_eq!(s.storage, PathBuf::from("/var/sitewise"));
        assert!(notes.iter().any(|(l, _)| *l == LogLevel::Warn));
        let (s, _) =
            Settings::from_config(&config(&[(SECRETS, "[\"arn:a\"]"), (CAPABILITY, "{}")]));
        assert_eq!(s.secrets, Ok(vec!["arn:a".to_string()]));
        assert_eq!(s.capability.expect_err("invalid")[0].path, "sources");
        let (s, _) = Settings::from_config(&config(&[(SECRETS, "arn:a")]));
        assert!(s.secrets.is_err());
    }

    #[test]
    fn credentials_come_from_key_value_secrets() {
        let c = parse_credentials(r#"{"username":"u","password":"p"}"#).expect("ok");
        assert_eq!(c.username, "u");
        assert!(!format!("{c:?}").contains('p') || !format!("{c:?}").contains("\"p\""));
        assert!(parse_credentials("plain").is_err());
        assert!(parse_credentials(r#"{"user":"u"}"#).is_err());
    }
}
