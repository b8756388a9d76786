//! CloudWatch Logs for a group's `AWSCloudWatch` loggers (Greengrass V1's
//! log upload): the runtime's lines and the components' lines, as the log
//! pipeline ships them ([`evergreen_runtime::logs::LogShipper`]), are batched
//! into `PutLogEvents` requests to V1's log groups and streams.
//!
//! The path of a line: [`CloudLogs::ship`] hands it to a bounded queue
//! without ever blocking the thread that logged (a full queue drops the
//! line and counts it); the *spool thread* collects the queue for
//! [`FLUSH_EVERY`] and writes what it got to the disk spool ([`spool`],
//! bounded by [`SPOOL_BYTES`], oldest dropped and counted beyond); the
//! *upload thread* sends the spool's oldest events, one log stream per
//! request within CloudWatch's limits ([`batch`]), creating the log group
//! and stream when CloudWatch does not know them, and removes from the spool
//! what CloudWatch accepted. While CloudWatch cannot be reached (no answer,
//! 5xx, throttling, no credentials) the lines wait in the spool, across
//! restarts, and are sent later in order; a request CloudWatch refuses for
//! good (4xx) is dropped and counted. Drops are told in the runtime log at
//! most once a minute and in [`CloudLogs::stats`].
//!
//! Names (as V1's): log group `/aws/greengrass/GreengrassSystem/<component>`
//! or `/aws/greengrass/Lambda/<region>/<account>/<function>`, log stream
//! `YYYY/MM/DD/<account>/<core thing name>` (the UTC date of the line).

pub mod batch;
pub mod spool;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use evergreen_aws::credentials::AwsAccess;
use evergreen_aws::{AwsClient, AwsError};
use evergreen_group::plan::GroupPlan;
use evergreen_ipc::{AwsCredentials, LogLevel};
use evergreen_runtime::logs::LineSource;
use evergreen_runtime::services::PlanListener;
use serde_json::json;

use batch::{first_batch, Event};
use spool::Spool;

/// How long the spool thread collects lines before it writes them to disk.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Bytes collected in memory before they are written early.
pub const PENDING_BYTES: usize = 256 << 10;
/// Lines that may wait in the queue for the spool thread.
pub const QUEUE_LINES: usize = 8192;
/// The disk spool's budget.
pub const SPOOL_BYTES: u64 = 16 << 20;
/// Waits between failed uploads: doubling from the first to the second.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(15);
/// How often at most drops are told in the runtime log.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Where the uploader keeps its spool and how streams are named.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `<root>/cloudwatch-logs`.
    pub spool_dir: PathBuf,
    pub account: String,
    pub thing_name: String,
}

/// Counts since the start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events CloudWatch accepted.
    pub sent: AtomicU64,
    /// Lines that found the queue full.
    pub dropped_queue: AtomicU64,
    /// Events dropped from the spool to keep within its budget, or that
    /// could not be written to it.
    pub dropped_spool: AtomicU64,
    /// Events CloudWatch refused (too old, too new, a 4xx answer).
    pub dropped_refused: AtomicU64,
}

impl Stats {
    fn dropped(&self) -> u64 {
        self.dropped_queue.load(Ordering::Relaxed)
            + self.dropped_spool.load(Ordering::Relaxed)
            + self.dropped_refused.load(Ordering::Relaxed)
    }
}

enum Msg {
    Event(Event),
    /// Write what is collected to the spool now and say so.
    Flush(SyncSender<()>),
}

/// The levels of the deployed `AWSCloudWatch` loggers (`None`: no logger).
#[derive(Debug, Clone, Copy, Default)]
struct Levels {
    system: Option<LogLevel>,
    user: Option<LogLevel>,
}

/// The uploader: its queue, levels and counts. Lives as long as the process.
#[derive(Debug)]
pub struct CloudLogs {
    tx: SyncSender<Msg>,
    levels: RwLock<Levels>,
    stats: Arc<Stats>,
    settings: Settings,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Event(_) => "Event",
            Msg::Flush(_) => "Flush",
        })
    }
}

/// What both threads share: the spool and the signal that it has more.
#[derive(Debug)]
struct Shared {
    spool: Mutex<Spool>,
    more: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CloudLogs {
    /// Opens the spool (taking over what a previous run left) and starts
    /// the two threads; nothing is shipped until a plan with an
    /// `AWSCloudWatch` logger is deployed.
    pub fn start(settings: Settings, aws: Arc<AwsAccess>) -> std::io::Result<Arc<CloudLogs>> {
        let spool = Spool::open(&settings.spool_dir.join("spool"), SPOOL_BYTES)?;
        let waiting = spool.events();
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            more: Condvar::new(),
        });
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        {
            let shared = shared.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("cwlogs-spool".into())
                .spawn(move || spool_thread(rx, &shared, &stats))?;
        }
        {
            let shared = shared.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("cwlogs-upload".into())
                .spawn(move || upload_thread(&shared, &stats, &aws))?;
        }
        if waiting > 0 {
            tracing::info!(
                "CloudWatch Logs: {waiting} log lines from before the restart wait in the spool and will be sent"
            );
        }
        Ok(Arc::new(CloudLogs {
            tx,
            levels: RwLock::default(),
            stats,
            settings,
        }))
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Writes the lines collected so far to the spool, waiting at most
    /// `timeout` (the runtime stops: they are sent at the next start).
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let mut msg = Msg::Flush(done_tx);
        // A full queue makes room as the spool thread takes from it; wait
        // for that (bounded), never for a stalled disk beyond the deadline.
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    msg = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// `YYYY/MM/DD/<account>/<core thing name>` for a line logged `at`.
    fn stream(&self, at: SystemTime) -> String {
        let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let date = time::OffsetDateTime::from_unix_timestamp(secs as i64)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        format!(
            "{:04}/{:02}/{:02}/{}/{}",
            date.year(),
            u8::from(date.month()),
            date.day(),
            self.settings.account,
            self.settings.thing_name
        )
    }
}

impl evergreen_runtime::logs::LogShipper for CloudLogs {
    fn wants(&self, system: bool, level: LogLevel) -> bool {
        let levels = *self.levels.read().unwrap_or_else(PoisonError::into_inner);
        let min = if system { levels.system } else { levels.user };
        min.is_some_and(|min| level >= min)
    }

    fn dropped(&self) -> u64 {
        self.stats.dropped()
    }

    fn ship(&self, source: LineSource<'_>, at: SystemTime, mut line: String) {
        batch::clip(&mut line);
        let group = match source {
            LineSource::Component(group) => group.to_owned(),
            LineSource::Runtime(target) => format!(
                "/aws/greengrass/GreengrassSystem/{}",
                system_component(target)
            ),
        };
        let event = Event {
            group,
            stream: self.stream(at),
            timestamp_ms: at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            message: line,
        };
        match self.tx.try_send(Msg::Event(event)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped_queue.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The `GreengrassSystem` component (V1's system log names) a runtime line of `target`
/// belongs to: the service that wrote it, else `runtime`.
fn system_component(target: &str) -> &'static str {
    const BY_TARGET: [(&str, &str); 6] = [
        ("evergreen_mqtt", "GGConnManager"),
        ("evergreen_shadow", "GGShadowService"),
        ("evergreen_cloud", "GGCloudSpooler"),
        ("evergreen_secrets", "GGSecretManager"),
        ("evergreen_runtime::lambda::credentials", "GGTES"),
        ("evergreen_cwlogs", "GGCloudWatchLogs"),
    ];
    BY_TARGET
        .iter()
        .find(|(prefix, _)| target.starts_with(prefix))
        .map_or("runtime", |(_, name)| name)
}

impl PlanListener for CloudLogs {
    fn deployed(&self, plan: &GroupPlan) {
        let levels = Levels {
            system: plan.loggers.system.cloud_watch,
            user: plan.loggers.user.cloud_watch,
        };
        *self.levels.write().unwrap_or_else(PoisonError::into_inner) = levels;
    }
}

/// Collects the queue and writes it to the spool every [`FLUSH_EVERY`] (or
/// at [`PENDING_BYTES`]); tells of drops.
fn spool_thread(rx: Receiver<Msg>, shared: &Shared, stats: &Stats) {
    let mut pending: Vec<Event> = Vec::new();
    let mut pending_bytes = 0;
    let mut since: Option<Instant> = None;
    let mut reported = 0;
    let mut last_report = Instant::now();
    loop {
        let wait = since.map_or(FLUSH_EVERY, |s| FLUSH_EVERY.saturating_sub(s.elapsed()));
        let mut done = None;
        let mut closed = false;
        match rx.recv_timeout(wait) {
            Ok(Msg::Event(e)) => {
                pending_bytes += e.size();
                pending.push(e);
                since.get_or_insert_with(Instant::now);
            }
            Ok(Msg::Flush(tell)) => done = Some(tell),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => closed = true,
        }
        let due = since.is_some_and(|s| s.elapsed() >= FLUSH_EVERY);
        if !pending.is_empty()
            && (due || done.is_some() || closed || pending_bytes >= PENDING_BYTES)
        {
            let written = lock(&shared.spool).append(&pending);
            match written {
                Ok(dropped) => {
                    stats.dropped_spool.fetch_add(dropped, Ordering::Relaxed);
                    shared.more.notify_all();
                }
                Err(e) => {
                    stats
                        .dropped_spool
                        .fetch_add(pending.len() as u64, Ordering::Relaxed);
                    tracing::warn!(
                        target: "evergreen_cwlogs",
                        "CloudWatch Logs: cannot write {} lines to the spool: {e}",
                        pending.len()
                    );
                }
            }
            pending.clear();
            pending_bytes = 0;
            since = None;
        }
        if let Some(tell) = done {
            let _ = tell.try_send(());
        }
        if closed {
            return;
        }
        let dropped = stats.dropped();
        if dropped > reported && last_report.elapsed() >= REPORT_EVERY {
            tracing::warn!(
                target: "evergreen_cwlogs",
                "CloudWatch Logs: {} log lines were not sent ({} since the start: {} found the queue full, {} left the full spool, {} refused by CloudWatch)",
                dropped - reported,
                dropped,
                stats.dropped_queue.load(Ordering::Relaxed),
                stats.dropped_spool.load(Ordering::Relaxed),
                stats.dropped_refused.load(Ordering::Relaxed)
            );
            reported = dropped;
            last_report = Instant::now();
        }
    }
}

/// Why an upload stopped.
enum Failure {
    /// Try again later: the events stay in the spool.
    Later(String),
}

/// Sends the spool's events, oldest first, and waits for more.
fn upload_thread(shared: &Shared, stats: &Stats, aws: &AwsAccess) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(target: "evergreen_cwlogs", "CloudWatch Logs: cannot start the upload thread: {e}");
            return;
        }
    };
    let mut client: Option<(AwsCredentials, AwsClient)> = None;
    let mut delay = RETRY_FIRST;
    let mut failing = false;
    loop {
        {
            let spool = lock(&shared.spool);
            if spool.is_empty() {
                let _ = shared
                    .more
                    .wait_timeout(spool, Duration::from_secs(5))
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
        }
        match runtime.block_on(upload_some(shared, stats, aws, &mut client)) {
            Ok(()) => {
                if failing {
                    tracing::info!(target: "evergreen_cwlogs", "CloudWatch Logs: sending again");
                    failing = false;
                }
                delay = RETRY_FIRST;
            }
            Err(Failure::Later(why)) => {
                if !failing {
                    tracing::warn!(
                        target: "evergreen_cwlogs",
                        "CloudWatch Logs: cannot send ({why}); lines wait in the spool and are retried"
                    );
                    failing = true;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

/// One request from the oldest segment.
async fn upload_some(
    shared: &Shared,
    stats: &Stats,
    aws: &AwsAccess,
    client: &mut Option<(AwsCredentials, AwsClient)>,
) -> Result<(), Failure> {
    let Some((seq, events)) = lock(&shared.spool).oldest() else {
        return Ok(());
    };
    let taken = first_batch(&events);
    if taken.is_empty() {
        // A segment whose lines all failed to parse.
        let _ = lock(&shared.spool).replace(seq, &[]);
        return Ok(());
    }
    let creds = aws.credentials().await.map_err(Failure::Later)?;
    let fresh = match client {
        Some((c, _)) => *c != creds,
        None => true,
    };
    if fresh {
        let c = AwsClient::with_credentials(aws.region(), aws.endpoints().clone(), creds.clone());
        *client = Some((creds, c));
    }
    let Some((_, c)) = client.as_ref() else {
        return Err(Failure::Later("no client".into()));
    };
    let first = &events[taken[0]];
    let body = json!({
        "logGroupName": first.group,
        "logStreamName": first.stream,
        "logEvents": taken.iter().map(|i| json!({
            "timestamp": events[*i].timestamp_ms,
            "message": events[*i].message,
        })).collect::<Vec<_>>(),
    });
    let mut answer = put(c, &body).await;
    if matches!(&answer, Err(AwsError::Service { code, .. }) if code == "ResourceNotFoundException")
    {
        create(c, &first.group, &first.stream)
            .await
            .map_err(|e| Failure::Later(e.to_string()))?;
        answer = put(c, &body).await;
    }
    match answer {
        Ok(reply) => {
            let refused = refused(&reply, taken.len());
            stats.dropped_refused.fetch_add(refused, Ordering::Relaxed);
            stats
                .sent
                .fetch_add(taken.len() as u64 - refused, Ordering::Relaxed);
        }
        Err(e) if e.is_retryable() => return Err(Failure::Later(e.to_string())),
        Err(AwsError::Service { code, .. }) if code == "DataAlreadyAcceptedException" => {}
        Err(e) => {
            stats
                .dropped_refused
                .fetch_add(taken.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                target: "evergreen_cwlogs",
                "CloudWatch Logs: {} lines for {} were refused and dropped: {e}",
                taken.len(),
                first.group
            );
        }
    }
    let mut remaining = Vec::with_capacity(events.len() - taken.len());
    let mut sent = vec![false; events.len()];
    for i in &taken {
        sent[*i] = true;
    }
    for (i, e) in events.into_iter().enumerate() {
        if !sent[i] {
            remaining.push(e);
        }
    }
    if let Err(e) = lock(&shared.spool).replace(seq, &remaining) {
        tracing::warn!(target: "evergreen_cwlogs", "CloudWatch Logs: cannot update the spool: {e}");
    }
    Ok(())
}

async fn put(c: &AwsClient, body: &serde_json::Value) -> Result<serde_json::Value, AwsError> {
    c.json("logs", "Logs_20140328.PutLogEvents", body).await
}

/// Creates the log group and stream, either of which may exist already.
async fn create(c: &AwsClient, group: &str, stream: &str) -> Result<(), AwsError> {
    let exists = |r: Result<serde_json::Value, AwsError>| match r {
        Err(AwsError::Service { code, .. }) if code == "ResourceAlreadyExistsException" => Ok(()),
        other => other.map(|_| ()),
    };
    exists(
        c.json(
            "logs",
            "Logs_20140328.CreateLogGroup",
            &json!({ "logGroupName": group }),
        )
        .await,
    )?;
    exists(
        c.json(
            "logs",
            "Logs_20140328.CreateLogStream",
            &json!({ "logGroupName": group, "logStreamName": stream }),
        )
        .await,
    )
}

/// Events of a batch of `n` CloudWatch said it did not take
/// (`rejectedLogEventsInfo`: before `tooNewLogEventStartIndex` … after
/// `tooOldLogEventEndIndex`/`expiredLogEventEndIndex`).
fn refused(reply: &serde_json::Value, n: usize) -> u64 {
    let info = &reply["rejectedLogEventsInfo"];
    let index = |k: &str| info[k].as_u64();
    let mut ok = vec![true; n];
    if let Some(end) = index("tooOldLogEventEndIndex").max(index("expiredLogEventEndIndex")) {
        for slot in ok
            .iter_mut()
            .take(usize::try_from(end).unwrap_or(n).saturating_add(1))
        {
            *slot = false;
        }
    }
    if let Some(start) = index("tooNewLogEventStartIndex") {
        for slot in ok.iter_mut().skip(usize::try_from(start).unwrap_or(n)) {
            *slot = false;
        }
    }
    ok.iter().filter(|k| !**k).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "Never blocking a component, drops counted": a burst far larger than the queue is
    /// shipped without waiting for the disk, and every line is either in the spool or
    /// counted as dropped (no credentials here: nothing leaves the spool).
    #[test]
    fn a_burst_never_waits_and_every_line_is_spooled_or_counted() {
        use evergreen_runtime::logs::LogShipper;
        let dir = tempfile::tempdir().expect("tmp");
        let logs = CloudLogs::start(
            Settings {
                spool_dir: dir.path().to_path_buf(),
                account: "123456789012".into(),
                thing_name: "core".into(),
            },
            AwsAccess::none("us-east-1"),
        )
        .expect("start");
        *logs.levels.write().expect("levels") = Levels {
            system: None,
            user: Some(LogLevel::Info),
        };
        assert!(!logs.wants(true, LogLevel::Fatal), "no system logger");
        assert!(!logs.wants(false, LogLevel::Debug), "below the level");
        let n = 4 * QUEUE_LINES as u64;
        let started = Instant::now();
        for i in 0..n {
            logs.ship(
                LineSource::Component("/aws/greengrass/Lambda/r/a/f"),
                SystemTime::now(),
                format!("[t][INFO]-line {i}"),
            );
        }
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "shipping took {took:?}");
        assert!(logs.flush(Duration::from_secs(10)), "flushed");
        let spooled = Spool::open(&dir.path().join("spool"), SPOOL_BYTES)
            .expect("spool")
            .events();
        let dropped = logs.stats().dropped_queue.load(Ordering::Relaxed);
        assert_eq!(spooled + dropped, n, "spooled {spooled}, dropped {dropped}");
        assert!(spooled >= QUEUE_LINES as u64, "spooled {spooled}");
    }

    #[test]
    fn runtime_lines_go_to_v1s_system_components() {
        assert_eq!(system_component("evergreen_mqtt::server"), "GGConnManager");
        assert_eq!(
            system_component("evergreen_runtime::lambda::credentials"),
            "GGTES"
        );
        assert_eq!(system_component("evergreen::run"), "runtime");
    }

    #[test]
    fn refused_events_are_counted_from_the_indexes() {
        assert_eq!(refused(&json!({}), 10), 0);
        assert_eq!(
            refused(
                &json!({"rejectedLogEventsInfo": {"tooOldLogEventEndIndex": 2}}),
                10
            ),
            3
        );
        assert_eq!(
            refused(
                &json!({"rejectedLogEventsInfo": {"tooNewLogEventStartIndex": 8, "expiredLogEventEndIndex": 0}}),
                10
            ),
            3
        );
    }
}
