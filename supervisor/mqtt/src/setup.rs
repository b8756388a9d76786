//! Starting the server from the core configuration: where it listens, its files and limits, the
//! session store, and the listeners file.

use std::sync::Arc;

use crate::sessions::{self, SessionStore};

use crate::admission::PeerLimits;
use crate::hub::MqttHub;
use crate::{certs, server, OFFLINE_QUEUE};

/// Where the server listens, from the core configuration.
#[derive(Debug, Clone)]
pub struct Setup {
    pub(crate) tls_addr: std::net::SocketAddr,
    pub(crate) files: certs::ServerFiles,
    /// Whether any of the TLS files was named in the configuration.
    pub(crate) files_configured: bool,
    pub(crate) plain_addr: Option<std::net::SocketAddr>,
    pub(crate) root: std::path::PathBuf,
    /// `writeDirectory` (default the root): where the persistent sessions are stored, as the
    /// cloud spool is (state, not configuration).
    pub(crate) write_dir: std::path::PathBuf,
    pub queue_capacity: usize,
    /// Bounds on peers before and after they are trusted (`evergreen.mqttLimits`).
    pub limits: PeerLimits,
}

impl From<&evergreen_config::MqttLimits> for PeerLimits {
    fn from(m: &evergreen_config::MqttLimits) -> Self {
        PeerLimits {
            max_packet_bytes_before_connect: m.max_packet_bytes_before_connect,
            max_packet_bytes: m.max_packet_bytes,
            connect_timeout: std::time::Duration::from_secs(u64::from(m.connect_timeout_secs)),
            max_connections: m.max_connections,
            max_connections_per_ip: m.max_connections_per_ip,
            max_keep_alive_secs: m.max_keep_alive_secs,
            read_timeout_secs: m.read_timeout_secs,
        }
    }
}

impl Setup {
    pub fn from_config(cfg: &evergreen_config::CoreConfig) -> Setup {
        let root = cfg.root().to_path_buf();
        let tls = &cfg.evergreen.listeners.mqtt_tls;
        let defaults = certs::ServerFiles::default_under(&root);
        // A relative path is under `<root>/certs`, as for `coreThing.caPath`.
        let resolve = |p: &Option<std::path::PathBuf>, default: std::path::PathBuf| match p {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => root.join("certs").join(p),
            None => default,
        };
        Setup {
            tls_addr: cfg.mqtt_tls_addr(),
            files: certs::ServerFiles {
                ca: resolve(&tls.ca_path, defaults.ca),
                cert: resolve(&tls.cert_path, defaults.cert),
                key: resolve(&tls.key_path, defaults.key),
            },
            files_configured: tls.ca_path.is_some()
                || tls.cert_path.is_some()
                || tls.key_path.is_some(),
            plain_addr: cfg.mqtt_plain_addr(),
            write_dir: cfg.write_dir().to_path_buf(),
            root,
            queue_capacity: cfg.evergreen.queue_capacity,
            limits: PeerLimits::from(&cfg.evergreen.mqtt_limits),
        }
    }

    /// The TLS listener's address (port 0 = any free port).
    pub fn tls_addr(&self) -> std::net::SocketAddr {
        self.tls_addr
    }

    /// The group CA, server certificate and key the TLS listener uses, resolved.
    pub fn tls_files(&self) -> &certs::ServerFiles {
        &self.files
    }

    /// Whether the TLS listener starts: its files are all present or named in the
    /// configuration (named but unusable files stop the start-up).
    pub fn tls_enabled(&self) -> bool {
        let f = &self.files;
        self.files_configured || (f.ca.exists() && f.cert.exists() && f.key.exists())
    }

    /// The plain listener's address, if it is enabled.
    pub fn plain_addr(&self) -> Option<std::net::SocketAddr> {
        self.plain_addr
    }
}

/// The durable store of persistent sessions ([`sessions`]), under `writeDirectory` (default
/// the root).
pub(crate) fn sessions_file(write_dir: &std::path::Path) -> std::path::PathBuf {
    write_dir.join("mqtt").join("sessions.redb")
}

/// The file naming the bound listeners (port 0 in the configuration = any free port).
pub fn listeners_file(root: &std::path::Path) -> std::path::PathBuf {
    root.join("run").join("mqtt-listeners.json")
}

/// Binds the listeners and starts serving. Without certificates the TLS listener stays off
/// (with a warning when the group has devices); a listener that cannot be bound, or TLS files
/// that are named but unusable, stop the start-up.
/// Why the local MQTT server could not start; each message names the setting or file to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the local MQTT server's persistent sessions: {0}")]
    Sessions(#[source] sessions::SessionStoreError),
    #[error("cannot listen on {addr} (evergreen.listeners.{listener}) for MQTT: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        /// `mqttPlain` or `mqttTls`, the key under `evergreen.listeners`.
        listener: &'static str,
        source: std::io::Error,
    },
    #[error("the local MQTT server's TLS files: {0}")]
    Tls(#[source] server::TlsError),
    #[error("cannot start the MQTT server thread: {0}")]
    Thread(#[source] std::io::Error),
}

pub fn start(setup: &Setup, hub: Arc<MqttHub>, has_devices: bool) -> Result<(), StartError> {
    let store_path = sessions_file(&setup.write_dir);
    let opened = SessionStore::open(&store_path, OFFLINE_QUEUE).map_err(StartError::Sessions)?;
    hub.restore(opened.store, opened.sessions, opened.retained);
    let mut bound = server::Bound::default();
    if let Some(addr) = setup.plain_addr {
        let l = server::bind(addr).map_err(|source| StartError::Bind {
            addr,
            listener: "mqttPlain",
            source,
        })?;
        bound.plain = Some(l);
    }
    let files = &setup.files;
    if setup.tls_enabled() {
        let config = server::tls_config(files).map_err(StartError::Tls)?;
        match server::bind(setup.tls_addr) {
            Ok(l) => bound.tls = Some((l, config)),
            Err(source) => {
                let what = StartError::Bind {
                    addr: setup.tls_addr,
                    listener: "mqttTls",
                    source,
                };
                if has_devices {
                    return Err(what);
                }
                tracing::warn!("{what}; the group has no devices, going on without it");
            }
        }
    } else if has_devices {
        tracing::warn!(
            "the MQTT TLS listener is off: no group CA and server certificate at {} (run `evergreen certs init`); devices cannot connect",
            files.ca.display()
        );
    }
    let tls = bound.tls_addr();
    let plain = bound.plain_addr();
    if let Some(a) = tls {
        tracing::info!("MQTT server (TLS, client certificates required) on {a}");
    }
    if let Some(a) = plain {
        tracing::info!("MQTT server (plain TCP, client id = thing name, no certificate) on {a}");
    }
    let doc = serde_json::json!({
        "tls": tls.map(|a| a.to_string()),
        "plain": plain.map(|a| a.to_string()),
    });
    // Written once the first deployment has told the hub its devices.
    hub.announce_listeners(listeners_file(&setup.root), doc.to_string());
    server::serve(hub, bound, setup.limits.clone()).map_err(StartError::Thread)
}
