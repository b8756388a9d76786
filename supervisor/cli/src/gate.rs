//! The health gate of a runtime release on trial (`evergreen_fleet::slots`): the runtime
//! started from the trial's slot must, within `evergreen.fleet.updateHealthWindowSecs`, have
//! deployed its group with every component up (none Starting, in Backoff or Failed: on-demand
//! functions that have not been asked for yet count as up) and, when the cloud bridge is
//! configured, be connected to it. Then the trial becomes the active release; else it is
//! rolled back and the runtime restarts onto the previous one, which reports the reason.

use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::Addr;
use evergreen_cloud::bridge::{BridgeHandle, LinkState};
use evergreen_config::CoreConfig;
use evergreen_fleet::slots::Slots;
use evergreen_runtime::component::ComponentState;
use evergreen_runtime::supervisor::{Status, Supervisor};
use tokio::sync::{watch, Notify};

/// How often the gate looks.
const POLL: Duration = Duration::from_millis(250);

/// Starts the gate when this binary is the release on trial; `decided` is notified once the
/// boot record holds the outcome (the fleet agent reports it), `restart` asked for after a
/// roll-back.
pub(crate) fn start(
    cfg: &CoreConfig,
    supervisor: Addr<Supervisor>,
    bridge: Option<BridgeHandle>,
    restart: watch::Sender<Option<String>>,
    decided: Rc<Notify>,
) {
    let slots = Slots::new(cfg.write_dir());
    let trial = match slots.load() {
        Ok(Some(boot)) => boot.trial,
        _ => None,
    };
    let Some(trial) = trial else {
        return;
    };
    let me = std::env::current_exe().ok();
    if me.as_deref() != Some(slots.binary(&trial.slot.version).as_path()) {
        return;
    }
    let window = Duration::from_secs(u64::from(
        cfg.evergreen
            .fleet
            .as_ref()
            .map_or(120, |f| f.update_health_window_secs),
    ));
    let version = trial.slot.version.clone();
    tracing::info!(
        "release {version} on trial (start {}): it must become healthy within {} s, or release {} comes back",
        trial.starts,
        window.as_secs(),
        trial.from_version
    );
    actix_rt::spawn(async move {
        let deadline = Instant::now() + window;
        loop {
            let why = unhealthy(&supervisor, bridge.as_ref()).await;
            match why {
                None => {
                    decide(&slots, |boot| {
                        boot.commit();
                    });
                    tracing::info!("release {version} is healthy: it is the active release now");
                    decided.notify_one();
                    return;
                }
                Some(_) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
                Some(why) => {
                    let reason = format!(
                        "version {version} was not healthy within {} s: {why}",
                        window.as_secs()
                    );
                    tracing::error!("{reason}; rolling back to release {}", trial.from_version);
                    decide(&slots, |boot| {
                        boot.roll_back("HealthGate", reason.clone());
                    });
                    let _ = restart.send(Some(format!("release {version} rolled back")));
                    return;
                }
            }
        }
    });
}

/// Reads the boot record, changes it and writes it back; then keeps only the active release's
/// slot and the one before it.
fn decide(slots: &Slots, change: impl FnOnce(&mut evergreen_fleet::slots::Boot)) {
    let result = slots.load().and_then(|boot| {
        let mut boot = boot.unwrap_or_default();
        let before = boot.active.clone();
        change(&mut boot);
        slots.save(&boot).map_err(|e| e.to_string())?;
        let keep = [
            boot.active.as_ref().map(|s| s.version.as_str()),
            before.as_ref().map(|s| s.version.as_str()),
        ];
        slots.remove_except(&keep).map_err(|e| e.to_string())
    });
    if let Err(e) = result {
        tracing::error!("cannot update the release boot record: {e}");
    }
}

/// Why the runtime is not healthy yet; `None` when it is.
async fn unhealthy(supervisor: &Addr<Supervisor>, bridge: Option<&BridgeHandle>) -> Option<String> {
    let statuses = match supervisor.send(Status).await {
        Ok(s) => s,
        Err(_) => return Some("the supervisor is gone".into()),
    };
    if let Some(c) = statuses.iter().find(|c| {
        matches!(
            c.state,
            ComponentState::Starting | ComponentState::Backoff | ComponentState::Failed
        )
    }) {
        return Some(format!("component {} is {:?}", c.id, c.state));
    }
    if let Some(bridge) = bridge {
        let link = bridge.link();
        if link.state != LinkState::Connected {
            return Some(format!(
                "the cloud bridge to {} is {:?}{}",
                link.endpoint,
                link.state,
                link.last_error
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        }
    }
    None
}
