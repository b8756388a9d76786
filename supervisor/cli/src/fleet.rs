//! The fleet agent in a running runtime: `evergreen.fleet` and the core's thing name make its
//! settings, the cloud bridge carries its topics, and the version store and the deployer apply
//! what it accepts (the `evergreen_fleet` crate does the rest).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use evergreen_cloud::bridge::BridgeHandle;
use evergreen_cloud::bridge::Inbound;
use evergreen_config::{CoreConfig, FleetTransport};
use evergreen_fleet::agent::{Agent, Apply, Deployed, Settings, Transport, Upstream};
use evergreen_fleet::document::{Identity, TrustedKey};
use evergreen_group::Loader;
use evergreen_ops::control::ControlState;
use evergreen_ops::deploy::{self, Deployer, DeploymentStatus, DeploymentType};
use evergreen_ops::store::VersionStore;

/// The bridge as the agent's upstream.
struct Bridge(BridgeHandle);

impl Upstream for Bridge {
    fn publish_retained(&self, topic: &str, payload: Vec<u8>) {
        self.0.publish_retained(topic, payload);
    }

    fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.0.publish(topic, payload);
    }
}

/// The version store and the deployer, as the agent applies bundles with them.
struct Runtime {
    store: VersionStore,
    loader: Loader,
    deployer: Rc<Deployer>,
    write_dir: PathBuf,
    /// Answers the status document, as the control socket does.
    control: ControlState,
    restart: tokio::sync::watch::Sender<Option<String>>,
}

impl Apply for Runtime {
    fn import(&self, path: &Path, label: &str) -> Result<String, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        evergreen_ops::bundle::import(
            &self.store,
            &self.loader,
            std::io::BufReader::new(file),
            label,
        )
        .map(|created| created.id.as_str().to_string())
        .map_err(|e| e.to_string())
    }

    async fn deploy(&self, id: &str) -> Deployed {
        let record = self
            .deployer
            .deploy(id, DeploymentType::NewDeployment)
            .await;
        Deployed {
            success: record.deployment_status == DeploymentStatus::Success,
            rolled_back: record.rolled_back,
            deployment_id: record.deployment_id,
            message: record.error_message,
        }
    }

    fn current(&self) -> Option<String> {
        deploy::last_good(&self.write_dir).map(|v| v.as_str().to_string())
    }

    async fn health(&self) -> Option<serde_json::Value> {
        match self.control.status().await {
            Ok(status) => serde_json::to_value(status).ok(),
            Err(e) => {
                tracing::warn!("fleet: no status for the health message: {e}");
                None
            }
        }
    }

    fn restart(&self, reason: &str) {
        let _ = self.restart.send(Some(reason.to_string()));
    }
}

/// What the agent applies documents with, and how it hears of the health gate.
pub(crate) struct Hooks {
    pub deployer: Rc<Deployer>,
    pub loader: Loader,
    pub control: ControlState,
    /// Asks the runtime to restart onto another release.
    pub restart: tokio::sync::watch::Sender<Option<String>>,
    /// Notified once the health gate decided on a release on trial.
    pub decided: Rc<tokio::sync::Notify>,
}

/// Starts the fleet agent on the actors' thread when `evergreen.fleet` is set: documents from
/// the bridge's topics, one at a time. Without a bridge (no `coreThing.iotHost`) there is no
/// fleet connection: said in the log, the runtime runs on.
pub(crate) fn start(cfg: &CoreConfig, thing: &str, bridge: Option<&BridgeHandle>, hooks: Hooks) {
    let Some(fleet) = &cfg.evergreen.fleet else {
        return;
    };
    let Some(bridge) = bridge else {
        tracing::error!("fleet: evergreen.fleet is set but there is no cloud connection (coreThing.iotHost): no deployment can arrive");
        return;
    };
    // The configuration check refused keys that do not decode.
    let trusted: Vec<TrustedKey> = fleet
        .trusted_keys
        .iter()
        .filter_map(|k| TrustedKey::parse(k).ok())
        .collect();
    let settings = Settings {
        me: Identity {
            thing: thing.to_string(),
            groups: fleet.groups.clone(),
        },
        topic_prefix: fleet.topic_prefix.clone(),
        trusted,
        max_bundle_bytes: fleet.max_bundle_bytes,
        write_dir: cfg.write_dir().to_path_buf(),
        health_interval: std::time::Duration::from_secs(u64::from(fleet.health_interval_secs)),
        transport: match fleet.transport {
            FleetTransport::Mqtt => Transport::Mqtt,
            FleetTransport::Jobs => Transport::Jobs,
        },
        runtime_version: evergreen_ops::release::version().to_string(),
    };
    let topics = settings.document_topics();
    let decided = hooks.decided;
    let runtime = Runtime {
        store: VersionStore::open(cfg.write_dir()),
        loader: hooks.loader,
        deployer: hooks.deployer,
        write_dir: cfg.write_dir().to_path_buf(),
        control: hooks.control,
        restart: hooks.restart,
    };
    let mut agent = match Agent::new(settings, Bridge(bridge.clone()), runtime) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("fleet: cannot read the fleet state ({e}); no deployment is taken");
            return;
        }
    };
    tracing::info!("fleet: taking deployment documents on {topics:?}");
    let mut documents = bridge.serve_topics(topics);
    actix_rt::spawn(async move {
        // The first tick is at once: the health message at start.
        let mut health = tokio::time::interval(agent.health_interval());
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut changes = tokio::time::interval(agent.change_interval());
        changes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                inbound = documents.recv() => match inbound {
                    Some(Inbound::Message { topic, payload }) => agent.on_message(&topic, &payload).await,
                    Some(Inbound::Connected) => agent.on_connected(),
                    None => return,
                },
                _ = health.tick() => agent.publish_health().await,
                () = decided.notified() => {
                    agent.reconcile();
                    agent.publish_health().await;
                }
                _ = changes.tick() => agent.publish_health_if_changed().await,
            }
        }
    });
}
