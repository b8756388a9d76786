//! Tests of the whole pipeline: `tracing` events through the layer and tracing-appender's
//! non-blocking writer into the files, each test with its own subscriber (thread-local
//! default) and writer thread.

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use evergreen_ipc::LogLevel;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt as _;

use super::appender::{self, Shared};
use super::layer::GreengrassLayer;
use super::testing::{lines, parse_line};
use super::{
    ComponentLog, LogFormat, SystemLogOptions, COMPONENT_TARGET, QUEUE_LINES, REPEAT_BURST,
    SYSTEM_ARN, SYSTEM_LOG,
};

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:f:1";
const RELATIVE: &str = "user/us-east-1/123456789012/f.log";
const WAIT: Duration = Duration::from_secs(20);

struct Pipeline {
    shared: Arc<Shared>,
    dispatch: tracing::Dispatch,
    _worker: WorkerGuard,
}

impl Pipeline {
    fn new(root: &Path, level: LogLevel, format: LogFormat) -> Pipeline {
        Self::with_repeat_window(root, level, format, super::REPEAT_WINDOW)
    }

    fn with_repeat_window(
        root: &Path,
        level: LogLevel,
        format: LogFormat,
        window: Duration,
    ) -> Pipeline {
        let options = SystemLogOptions {
            level,
            space_kb: 100 * 1024,
            to_stderr: false,
            format,
        };
        let (shared, worker, writer) = appender::start(root, &options).expect("start");
        let layer = GreengrassLayer::new(shared.clone(), writer, &options).repeat_window(window);
        Pipeline {
            shared,
            dispatch: tracing::Dispatch::new(tracing_subscriber::registry().with(layer)),
            _worker: worker,
        }
    }

    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        tracing::dispatcher::with_default(&self.dispatch, f)
    }

    fn component(&self, root: &Path, level: LogLevel) -> ComponentLog {
        // Room for every line of a test: no rotation renames the file under a test.
        ComponentLog::open_in(
            Some(&self.shared),
            root,
            Path::new(RELATIVE),
            ARN,
            level,
            100 * 1024,
        )
        .expect("open component log")
    }

    fn flush(&self) {
        assert_eq!(self.shared.drain(WAIT), 0, "the writer did not catch up");
    }
}

#[test]
fn runtime_lines_name_their_target_and_spans_and_keep_the_greengrass_levels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pipeline::new(dir.path(), LogLevel::Info, LogFormat::Greengrass);
    p.run(|| {
        let n = 3;
        tracing::warn!(target: "evergreen::router", "queue {n} full");
        let component = tracing::info_span!("component", name = "Heartbeat");
        let _in = component.enter();
        tracing::info!(target: "evergreen::supervisor", "started");
        tracing::debug!(target: "evergreen::supervisor", "dropped: below INFO");
        tracing::trace!(target: "evergreen::supervisor", "dropped: no TRACE");
        tracing::error!(target: "evergreen", fatal = true, "cannot go on");
        tracing::info!(target: "evergreen::supervisor", "two\nlines");
    });
    p.flush();
    let got = lines(&dir.path().join(SYSTEM_LOG));
    let messages: Vec<(&str, &str)> = ["WARN", "INFO", "FATAL", "INFO", "INFO"]
        .iter()
        .zip(&got)
        .map(|(level, line)| (*level, parse_line(line, level, SYSTEM_ARN)))
        .collect();
    assert_eq!(got.len(), 5, "{got:#?}");
    // A multi-line message is split into lines, each with the full prefix, never one line
    // with a literal `\n`.
    assert_eq!(
        messages,
        [
            ("WARN", "evergreen::router: queue 3 full"),
            (
                "INFO",
                "evergreen::supervisor: component{name=Heartbeat}: started"
            ),
            (
                "FATAL",
                "evergreen: component{name=Heartbeat}: cannot go on"
            ),
            (
                "INFO",
                "evergreen::supervisor: component{name=Heartbeat}: two"
            ),
            (
                "INFO",
                "evergreen::supervisor: component{name=Heartbeat}: lines"
            ),
        ]
    );
}

#[test]
fn the_json_format_writes_one_object_per_runtime_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pipeline::new(dir.path(), LogLevel::Info, LogFormat::Json);
    let log = p.component(dir.path(), LogLevel::Info);
    p.run(|| {
        let deployment = tracing::info_span!("deployment", id = "d-1");
        let _in = deployment.enter();
        tracing::warn!(target: "evergreen::router", "multi\nline \"quoted\"");
        log.write(LogLevel::Info, "components keep Greengrass's format");
    });
    p.flush();
    let got = lines(&dir.path().join(SYSTEM_LOG));
    assert_eq!(got.len(), 1, "{got:#?}");
    let line: serde_json::Value = serde_json::from_str(&got[0]).expect("a JSON object");
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["arn"], SYSTEM_ARN);
    assert_eq!(line["target"], "evergreen::router");
    assert_eq!(line["message"], "multi\nline \"quoted\"");
    assert_eq!(line["spans"][0]["name"], "deployment");
    assert_eq!(line["spans"][0]["fields"]["id"], "d-1");
    assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    let component = lines(&dir.path().join(RELATIVE));
    assert_eq!(
        parse_line(&component[0], "INFO", ARN),
        "components keep Greengrass's format"
    );
}

#[test]
fn component_lines_keep_the_v1_format_and_their_own_level() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The runtime's level (ERROR) does not filter components' lines: their log's does (DEBUG).
    let p = Pipeline::new(dir.path(), LogLevel::Error, LogFormat::Greengrass);
    let log = p.component(dir.path(), LogLevel::Debug);
    let quiet = ComponentLog::open_in(
        Some(&p.shared),
        dir.path(),
        Path::new("user/quiet.log"),
        ARN,
        LogLevel::Warn,
        1024,
    )
    .expect("open");
    p.run(|| {
        log.write(LogLevel::Debug, "debug");
        log.write(LogLevel::Fatal, "fatal\nnot a second line");
        quiet.write(LogLevel::Info, "below WARN: dropped");
        quiet.write(LogLevel::Error, "kept");
        tracing::info!("below the runtime's ERROR: dropped");
    });
    p.flush();
    let got = lines(&dir.path().join(RELATIVE));
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(parse_line(&got[0], "DEBUG", ARN), "debug");
    assert_eq!(
        parse_line(&got[1], "FATAL", ARN),
        "fatal\\nnot a second line"
    );
    let quiet_lines = lines(&dir.path().join("user/quiet.log"));
    assert_eq!(quiet_lines.len(), 1, "{quiet_lines:#?}");
    assert_eq!(parse_line(&quiet_lines[0], "ERROR", ARN), "kept");
    assert!(lines(&dir.path().join(SYSTEM_LOG)).is_empty());
    // A component line is an event with the component target (another subscriber sees it).
    assert_eq!(COMPONENT_TARGET, "evergreen::component_log");
}

#[test]
fn a_closed_log_is_written_to_its_end_and_then_released() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pipeline::new(dir.path(), LogLevel::Info, LogFormat::Greengrass);
    let log = p.component(dir.path(), LogLevel::Info);
    let pid = std::process::id();
    let path = dir.path().join(RELATIVE);
    let open_files = || {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fds")
            .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
            .filter(|target| *target == path)
            .count()
    };
    p.run(|| {
        for i in 0..100 {
            log.write(LogLevel::Info, &format!("line {i}"));
        }
    });
    drop(log);
    p.flush();
    assert_eq!(lines(&dir.path().join(RELATIVE)).len(), 100);
    assert_eq!(open_files(), 0, "the writer still holds the closed log");
}

#[test]
fn repeated_warnings_are_limited_per_call_site_and_summarised() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Pipeline::with_repeat_window(
        dir.path(),
        LogLevel::Info,
        LogFormat::Greengrass,
        Duration::from_millis(300),
    );
    fn warn_from_a(i: u32) {
        tracing::warn!(target: "evergreen_mqtt::server", "refused a connection from 127.0.0.1:{i}");
    }
    fn warn_from_b(i: u32) {
        tracing::warn!(target: "evergreen_mqtt::server", "refused a connection from [::1]:{i}");
    }
    p.run(|| {
        (0..1000).for_each(warn_from_a);
        (0..3).for_each(warn_from_b);
    });
    p.flush();
    let text = fs::read_to_string(dir.path().join(SYSTEM_LOG)).expect("read");
    let count = |text: &str, needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        count(&text, "refused a connection"),
        REPEAT_BURST as usize + 3,
        "{text}"
    );
    // Once the window is over, the next warning from anywhere brings the summary.
    std::thread::sleep(Duration::from_millis(350));
    p.run(|| warn_from_b(4));
    p.flush();
    let text = fs::read_to_string(dir.path().join(SYSTEM_LOG)).expect("read");
    let summary = text
        .lines()
        .find(|l| l.contains("more like this"))
        .unwrap_or_else(|| panic!("no summary in {text}"));
    assert!(
        summary.contains("[WARN]")
            && summary.contains(&format!("{} more like this", 1000 - REPEAT_BURST))
            && summary.contains("evergreen_mqtt::server"),
        "{summary}"
    );
    assert_eq!(count(&text, "more like this"), 1);
}

/// The documented promise: a stalled disk never blocks the thread that logs, and every line
/// is either written or counted as dropped. The component's log is a FIFO nobody reads: the
/// writer thread blocks in write(2) once the pipe is full, as on a disk that stopped.
#[test]
fn a_stalled_writer_never_blocks_the_logging_thread_and_every_line_is_written_or_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join(RELATIVE);
    fs::create_dir_all(fifo.parent().expect("parent")).expect("dirs");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o640)).expect("mkfifo");
    // Opened first, without blocking, so the log's own open finds a reader; never read
    // until the end.
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO's read end");
    let p = Arc::new(Pipeline::new(
        dir.path(),
        LogLevel::Info,
        LogFormat::Greengrass,
    ));
    let log = p.component(dir.path(), LogLevel::Info);
    let total: u64 = 3 * QUEUE_LINES as u64;
    // The logging thread must finish while the writer is stalled: watched, not timed.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let logging = {
        let p = p.clone();
        let log = log.clone();
        std::thread::spawn(move || {
            p.run(|| {
                for i in 0..total {
                    log.write(LogLevel::Info, &format!("line {i:06} {}", "x".repeat(80)));
                }
            });
            let _ = done_tx.send(());
        })
    };
    assert!(
        done_rx.recv_timeout(WAIT).is_ok(),
        "logging blocked behind the stalled writer"
    );
    logging.join().expect("logging thread");
    let dropped = log.dropped();
    assert!(dropped > 0, "a stalled writer must make the queue overflow");
    assert_eq!(p.shared.dropped_total(), dropped);
    // Now the disk comes back: read everything the writer writes until it has caught up.
    let (read_tx, read_rx) = std::sync::mpsc::channel();
    let drainer = std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut buf = [0u8; 65536];
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => text.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if read_rx.try_recv().is_ok() || std::time::Instant::now() > deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        // What is left in the pipe once the writer is done.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(text).expect("utf-8")
    });
    p.flush();
    let _ = read_tx.send(());
    let text = drainer.join().expect("drainer");
    let written = text.lines().filter(|l| l.contains(") line ")).count() as u64;
    assert_eq!(
        written + dropped,
        total,
        "{written} written and {dropped} dropped of {total}"
    );
    // And the runtime log says so, once the writer has room again.
    p.run(|| tracing::info!("the next line brings the report"));
    p.flush();
    let system = fs::read_to_string(dir.path().join(SYSTEM_LOG)).expect("runtime log");
    assert!(
        system.contains(&format!("{dropped} log lines were not written")),
        "{system}"
    );
}

#[test]
fn cloudwatch_log_groups_are_v1s_names() {
    use std::path::Path;
    assert_eq!(
        super::cloud_group(Path::new("user/us-east-1/123456789012/f.log")).as_deref(),
        Some("/aws/greengrass/Lambda/us-east-1/123456789012/f")
    );
    assert_eq!(
        super::cloud_group(Path::new("user/us-east-1/aws/SNS.log")).as_deref(),
        Some("/aws/greengrass/Lambda/us-east-1/aws/SNS")
    );
    assert_eq!(
        super::cloud_group(Path::new("system/runtime.log")).as_deref(),
        Some("/aws/greengrass/GreengrassSystem/runtime")
    );
    assert_eq!(super::cloud_group(Path::new("elsewhere/x.log")), None);
    let line = super::cloud_line(
        time::OffsetDateTime::UNIX_EPOCH,
        evergreen_ipc::LogLevel::Warn,
        Some("evergreen::run"),
        "two\nlines\n",
    );
    assert_eq!(
        line,
        "[1970-01-01T00:00:00.000Z][WARN]-evergreen::run: two\\nlines"
    );
}
