//! `evergreen fleet deploy|status|abort`: the operator's commands that talk to the broker. The
//! rollout's rules (stages, outcomes, the record) are `evergreen_fleet::operator`'s; the
//! connection is `evergreen_cloud::client`'s. A connection that drops (a broker restart) is
//! opened again and the subscriptions renewed: the retained messages then bring the view up to
//! date, so a rollout survives it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use evergreen_cloud::bridge::TlsFiles;
use evergreen_cloud::client::{self, Connection, Endpoint, Next};
use evergreen_fleet::agent::now;
use evergreen_fleet::document::{Document, Targets};
use evergreen_fleet::operator::{rollout_topic, stages, FleetView, Rollout, RolloutState};
use evergreen_fleet::topics::{self, State};
use serde_json::json;

/// How long one broker operation (CONNACK, SUBACK, PUBACK) may take.
const OPERATION: Duration = Duration::from_secs(10);
/// How long a dropped connection is retried before the command gives up.
const RECONNECT_FOR: Duration = Duration::from_secs(120);

/// The broker and who the operator is on it.
#[derive(Debug, Clone, Args)]
pub(super) struct BrokerArgs {
    /// The broker: mqtt://host[:port] or mqtts://host[:port].
    #[arg(long)]
    broker: String,
    /// mqtts: the CA certificate(s) the broker's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// mqtts: the operator's certificate.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// mqtts: the operator's private key.
    #[arg(long = "cert-key", value_name = "FILE")]
    cert_key: Option<PathBuf>,
    /// The client id [default: evergreen-operator-<pid>].
    #[arg(long)]
    client_id: Option<String>,
    /// The fleet topics' prefix (the gateways' evergreen.fleet.topicPrefix).
    #[arg(long, default_value = topics::DEFAULT_PREFIX)]
    topic_prefix: String,
    /// Seconds to gather the gateways' retained messages before acting.
    #[arg(long, default_value_t = 2)]
    discover_secs: u64,
    /// Print JSON (one object per line) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    bundle: super::fleet::BundleArgs,
    #[command(flatten)]
    rollout: RolloutArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    release: super::fleet::ReleaseArgs,
    #[command(flatten)]
    rollout: RolloutArgs,
}

/// Who a rollout is for, in what stages, and the broker: what `deploy` and `update` share.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["things", "group"])))]
pub(super) struct RolloutArgs {
    /// This deployment's number [default: one more than any the gateways or a rollout
    /// reported for the fleet].
    #[arg(long)]
    sequence: Option<u64>,
    /// The gateways (thing names, comma-separated), in rollout order.
    #[arg(long, value_delimiter = ',')]
    things: Vec<String>,
    /// Every gateway whose health names this fleet group, by thing name.
    #[arg(long)]
    group: Option<String>,
    /// Gateways in the first stage.
    #[arg(long, default_value_t = 1)]
    canary: usize,
    /// Gateways per stage after the canary.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Failed gateways the rollout tolerates before it halts.
    #[arg(long, default_value_t = 0)]
    max_failures: usize,
    /// Seconds a stage may take; a gateway that has not reported by then counts as failed.
    #[arg(long, default_value_t = 600)]
    stage_timeout_secs: u64,
    #[command(flatten)]
    broker: BrokerArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this fleet's deployments and rollout.
    #[arg(long)]
    fleet: Option<String>,
    /// Go on printing each change until interrupted (or --watch-secs).
    #[arg(long)]
    watch: bool,
    /// With --watch: stop after this many seconds.
    #[arg(long)]
    watch_secs: Option<u64>,
    #[command(flatten)]
    broker: BrokerArgs,
}

#[derive(Debug, Args)]
pub struct AbortArgs {
    /// The fleet whose rollout stops.
    #[arg(long)]
    fleet: String,
    #[command(flatten)]
    broker: BrokerArgs,
}

/// A connection that comes back after a drop, and the view it feeds.
struct Session {
    endpoint: Endpoint,
    conn: Connection,
    view: FleetView,
}

impl Session {
    async fn open(args: &BrokerArgs) -> Result<Session, String> {
        let tls = match (&args.ca, &args.cert, &args.cert_key) {
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None, None) => None,
            _ => return Err("--ca, --cert and --cert-key go together".into()),
        };
        let id = args
            .client_id
            .clone()
            .unwrap_or_else(|| format!("evergreen-operator-{}", std::process::id()));
        let endpoint = Endpoint::parse(&args.broker, &id, tls)?;
        let view = FleetView::new(&args.topic_prefix);
        let conn = client::connect(&endpoint, OPERATION).await?;
        conn.subscribe(&view.filters()).await?;
        let mut session = Session {
            endpoint,
            conn,
            view,
        };
        session
            .gather(Instant::now() + Duration::from_secs(args.discover_secs))
            .await?;
        Ok(session)
    }

    /// Takes what arrives until `until` into the view.
    async fn gather(&mut self, until: Instant) -> Result<(), String> {
        while let Some(_changed) = self.next_change(until).await? {}
        Ok(())
    }

    /// The next change to the view before `until` (the thing or fleet it concerns).
    async fn next_change(&mut self, until: Instant) -> Result<Option<String>, String> {
        loop {
            match self.conn.next_until(until).await {
                Next::Message(topic, payload) => {
                    if let Some(key) = self.view.take(&topic, &payload) {
                        return Ok(Some(key));
                    }
                }
                Next::Timeout => return Ok(None),
                Next::Closed => self.reconnect().await?,
            }
        }
    }

    async fn reconnect(&mut self) -> Result<(), String> {
        let give_up = Instant::now() + RECONNECT_FOR;
        let mut wait = Duration::from_millis(250);
        loop {
            match client::connect(&self.endpoint, OPERATION).await {
                Ok(conn) => {
                    conn.subscribe(&self.view.filters()).await?;
                    self.conn = conn;
                    eprintln!("evergreen fleet: connected to the broker again");
                    return Ok(());
                }
                Err(e) if Instant::now() < give_up => {
                    eprintln!("evergreen fleet: the broker connection dropped; retrying ({e})");
                    client::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(format!("the broker connection dropped: {e}")),
            }
        }
    }

    /// Publishes, retained; once more after a reconnect if the connection dropped.
    async fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<(), String> {
        match self.conn.publish_retained(topic, payload.clone()).await {
            Ok(()) => Ok(()),
            Err(_) => {
                self.reconnect().await?;
                self.conn.publish_retained(topic, payload).await
            }
        }
    }
}

pub(super) fn deploy(args: DeployArgs) -> ExitCode {
    let json = args.rollout.broker.json;
    let run = async move {
        let (key, bundle) = args.bundle.read()?;
        let content = Content {
            bundle: Some(bundle),
            release: None,
        };
        run_rollout(&key, &args.bundle.fleet, content, &args.rollout).await
    };
    finish_command("deploy", json, client::block_on(run))
}

pub(super) fn update(args: UpdateArgs) -> ExitCode {
    let json = args.rollout.broker.json;
    let run = async move {
        let (key, release) = args.release.read().await?;
        let content = Content {
            bundle: None,
            release: Some(release),
        };
        run_rollout(&key, &args.release.fleet, content, &args.rollout).await
    };
    finish_command("update", json, client::block_on(run))
}

fn finish_command(what: &str, json: bool, result: Result<u8, String>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if json {
                println!("{}", json!({"event": "error", "reason": e}));
            }
            eprintln!("evergreen fleet {what}: {e}");
            ExitCode::from(1)
        }
    }
}

/// What every stage's document carries: a bundle or a release.
#[derive(Debug, Clone)]
struct Content {
    bundle: Option<evergreen_fleet::document::BundleRef>,
    release: Option<evergreen_fleet::document::Release>,
}

/// One line of progress, as text or JSON.
fn say(json: bool, value: serde_json::Value, text: String) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

fn bar(done: usize, total: usize) -> String {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled)
    )
}

async fn run_rollout(
    key: &evergreen_fleet::document::SigningKey,
    fleet: &str,
    content: Content,
    args: &RolloutArgs,
) -> Result<u8, String> {
    // A thing name is one topic level of the gateway's topics.
    if let Some(bad) = args
        .things
        .iter()
        .find(|t| t.is_empty() || t.contains(['/', '+', '#']))
    {
        return Err(format!(
            "{bad:?} is not a thing name (one topic level: no /, + or #)"
        ));
    }
    let fleet = fleet.to_string();
    let json = args.broker.json;
    let prefix = args.broker.topic_prefix.clone();
    let mut s = Session::open(&args.broker).await?;
    let things = match &args.group {
        Some(group) => {
            let members = s.view.members(group);
            if members.is_empty() {
                return Err(format!(
                    "no gateway of group {group:?} has published its health on this broker"
                ));
            }
            members
        }
        None => args.things.clone(),
    };
    let sequence = args
        .sequence
        .unwrap_or_else(|| s.view.next_sequence(&fleet));
    let mut record = Rollout {
        fleet: fleet.clone(),
        sequence,
        state: RolloutState::InProgress,
        things: things.clone(),
        succeeded: Vec::new(),
        failed: Vec::new(),
        updated_at: now(),
    };
    let record_topic = rollout_topic(&prefix, &fleet);
    publish_record(&mut s, &record_topic, &mut record).await?;
    let plan = stages(&things, args.canary, args.batch);
    say(
        json,
        json!({"event": "start", "fleet": fleet, "sequence": sequence, "things": things, "stages": plan.len()}),
        format!(
            "rolling out deployment {sequence} of fleet {} to {} gateways in {} stages",
            fleet,
            things.len(),
            plan.len()
        ),
    );
    for (i, stage) in plan.iter().enumerate() {
        if s.view.aborted(&fleet, sequence) {
            return finish(&mut s, &record_topic, record, RolloutState::Aborted, json).await;
        }
        let document = Document {
            fleet: fleet.clone(),
            sequence,
            created_at: Some(now()),
            targets: Targets {
                things: stage.clone(),
                groups: Vec::new(),
            },
            bundle: content.bundle.clone(),
            release: content.release.clone(),
        };
        let signed = key.sign(&document).map_err(|e| e.to_string())?;
        for thing in stage {
            s.publish(&topics::thing_deployment(&prefix, thing), signed.clone())
                .await?;
        }
        say(
            json,
            json!({"event": "stage", "stage": i + 1, "things": stage}),
            format!(
                "stage {}/{}{}: {}",
                i + 1,
                plan.len(),
                if i == 0 { " (canary)" } else { "" },
                stage.join(", ")
            ),
        );
        let deadline = Instant::now() + Duration::from_secs(args.stage_timeout_secs);
        let mut reported = std::collections::BTreeSet::new();
        while reported.len() < stage.len() && !s.view.aborted(&fleet, sequence) {
            let Some(changed) = s.next_change(deadline).await? else {
                break;
            };
            if !stage.contains(&changed) || reported.contains(&changed) {
                continue;
            }
            if let Some(state) = s.view.outcome(&changed, &fleet, sequence) {
                reported.insert(changed.clone());
                let status = s.view.gateways.get(&changed).and_then(|g| g.status.clone());
                let reason = status
                    .as_ref()
                    .and_then(|st| st.reason.clone())
                    .unwrap_or_default();
                if state == State::Success {
                    record.succeeded.push(changed.clone());
                } else {
                    record.failed.push(changed.clone());
                }
                let done = record.succeeded.len() + record.failed.len();
                say(
                    json,
                    json!({"event": "gateway", "thing": changed, "state": state, "status": status}),
                    format!(
                        "  {changed}: {state:?}{} {}",
                        if reason.is_empty() {
                            String::new()
                        } else {
                            format!(" ({reason})")
                        },
                        bar(done, things.len())
                    ),
                );
            }
        }
        if s.view.aborted(&fleet, sequence) {
            // The gateways of this stage have their document and go on with it.
            return finish(&mut s, &record_topic, record, RolloutState::Aborted, json).await;
        }
        for thing in stage.iter().filter(|t| !reported.contains(*t)) {
            record.failed.push(thing.clone());
            say(
                json,
                json!({"event": "gateway", "thing": thing, "state": "NoAnswer"}),
                format!(
                    "  {thing}: no final status within {} s",
                    args.stage_timeout_secs
                ),
            );
        }
        publish_record(&mut s, &record_topic, &mut record).await?;
        if record.failed.len() > args.max_failures {
            return finish(&mut s, &record_topic, record, RolloutState::Halted, json).await;
        }
    }
    finish(&mut s, &record_topic, record, RolloutState::Completed, json).await
}

async fn publish_record(s: &mut Session, topic: &str, record: &mut Rollout) -> Result<(), String> {
    record.updated_at = now();
    let bytes = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    s.publish(topic, bytes).await
}

async fn finish(
    s: &mut Session,
    topic: &str,
    mut record: Rollout,
    state: RolloutState,
    json: bool,
) -> Result<u8, String> {
    record.state = state;
    publish_record(s, topic, &mut record).await?;
    s.conn.close();
    let untouched = record.things.len() - record.succeeded.len() - record.failed.len();
    say(
        json,
        json!({"event": "done", "state": state, "succeeded": record.succeeded, "failed": record.failed, "untouched": untouched}),
        format!(
            "{state:?}: {} succeeded, {} failed{}",
            record.succeeded.len(),
            record.failed.len(),
            if untouched > 0 {
                format!(", {untouched} not deployed")
            } else {
                String::new()
            }
        ),
    );
    Ok(match state {
        RolloutState::Completed if record.failed.is_empty() => 0,
        RolloutState::Completed => 3,
        _ => 2,
    })
}

pub(super) fn status(args: StatusArgs) -> ExitCode {
    match client::block_on(run_status(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evergreen fleet status: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run_status(args: StatusArgs) -> Result<(), String> {
    let json = args.broker.json;
    let mut s = Session::open(&args.broker).await?;
    if json {
        println!("{}", status_json(&s.view, args.fleet.as_deref()));
    } else {
        print!("{}", status_table(&s.view, args.fleet.as_deref()));
    }
    if args.watch {
        let until = args.watch_secs.map_or_else(
            || Instant::now() + Duration::from_secs(100 * 365 * 86_400),
            |secs| Instant::now() + Duration::from_secs(secs),
        );
        while let Some(changed) = s.next_change(until).await? {
            if let Some(g) = s.view.gateways.get(&changed) {
                if json {
                    println!("{}", gateway_json(&changed, g));
                } else {
                    println!("{}", gateway_line(&changed, g));
                }
            }
        }
    }
    s.conn.close();
    Ok(())
}

fn short(version: Option<&str>) -> &str {
    version.map_or("-", |v| v.get(..12).unwrap_or(v))
}

fn gateway_line(thing: &str, g: &evergreen_fleet::operator::Gateway) -> String {
    let groups = g
        .health
        .as_ref()
        .map(|h| h.groups.join(","))
        .unwrap_or_default();
    let version = g.health.as_ref().and_then(|h| h.version.as_deref());
    let runtime = g
        .health
        .as_ref()
        .and_then(|h| h.runtime_version.as_deref())
        .unwrap_or("-");
    let (state, deployment) = match &g.status {
        Some(st) => (
            format!("{:?}", st.state),
            format!(
                "{}#{}",
                st.fleet.as_deref().unwrap_or("-"),
                st.sequence.map_or("-".into(), |n| n.to_string())
            ),
        ),
        None => ("-".into(), "-".into()),
    };
    let health = g
        .health
        .as_ref()
        .map(|h| {
            let counts = &h.runtime["counts"];
            format!(
                "{}/{} running, {}",
                counts["running"].as_u64().unwrap_or(0),
                counts["components"].as_u64().unwrap_or(0),
                h.updated_at
            )
        })
        .unwrap_or_else(|| "-".into());
    format!(
        "{thing:<20} {groups:<16} {runtime:<10} {:<13} {state:<11} {deployment:<16} {health}",
        short(version)
    )
}

fn gateway_json(thing: &str, g: &evergreen_fleet::operator::Gateway) -> serde_json::Value {
    json!({"thing": thing, "health": g.health, "status": g.status})
}

fn status_table(view: &FleetView, fleet: Option<&str>) -> String {
    let mut out = format!(
        "{:<20} {:<16} {:<10} {:<13} {:<11} {:<16} HEALTH\n",
        "THING", "GROUPS", "RUNTIME", "VERSION", "STATE", "DEPLOYMENT"
    );
    for (thing, g) in &view.gateways {
        let ours = fleet.is_none_or(|f| {
            g.status.as_ref().and_then(|s| s.fleet.as_deref()) == Some(f)
                || g.health
                    .as_ref()
                    .is_some_and(|h| h.accepted.contains_key(f))
        });
        if ours {
            out.push_str(&gateway_line(thing, g));
            out.push('\n');
        }
    }
    for r in view.rollouts.values() {
        if fleet.is_none_or(|f| f == r.fleet) {
            let done = r.succeeded.len() + r.failed.len();
            out.push_str(&format!(
                "rollout {} #{}: {:?} {} ({} failed)\n",
                r.fleet,
                r.sequence,
                r.state,
                bar(done, r.things.len()),
                r.failed.len()
            ));
        }
    }
    out
}

fn status_json(view: &FleetView, fleet: Option<&str>) -> serde_json::Value {
    let gateways: Vec<serde_json::Value> = view
        .gateways
        .iter()
        .map(|(t, g)| gateway_json(t, g))
        .collect();
    let rollouts: Vec<&Rollout> = view
        .rollouts
        .values()
        .filter(|r| fleet.is_none_or(|f| f == r.fleet))
        .collect();
    json!({"gateways": gateways, "rollouts": rollouts})
}

pub(super) fn abort(args: AbortArgs) -> ExitCode {
    match client::block_on(run_abort(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("evergreen fleet abort: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run_abort(args: AbortArgs) -> Result<bool, String> {
    let mut s = Session::open(&args.broker).await?;
    let Some(mut record) = s.view.rollouts.get(&args.fleet).cloned() else {
        eprintln!(
            "evergreen fleet abort: no rollout of fleet {:?} on this broker",
            args.fleet
        );
        return Ok(false);
    };
    if record.state != RolloutState::InProgress {
        eprintln!(
            "evergreen fleet abort: the rollout of deployment {} of fleet {:?} is {:?}, not in progress",
            record.sequence, args.fleet, record.state
        );
        return Ok(false);
    }
    record.state = RolloutState::Aborted;
    let topic = rollout_topic(&args.broker.topic_prefix, &args.fleet);
    publish_record(&mut s, &topic, &mut record).await?;
    s.conn.close();
    say(
        args.broker.json,
        json!({"event": "aborted", "fleet": args.fleet, "sequence": record.sequence}),
        format!(
            "aborted the rollout of deployment {} of fleet {}: no further stage is published",
            record.sequence, args.fleet
        ),
    );
    Ok(true)
}
