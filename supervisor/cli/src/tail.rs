//! `evergreen logs`: prints the end of a component's log file, or of the
//! runtime's own, and with `-f` follows it as it grows.
//!
//! The running runtime is asked for its status over the control socket
//! ([`evergreen_ops::control::Client`]); the status names every component with its
//! log file, and the runtime's own log (`logFile`). When no runtime answers, the files are
//! found from the configuration's log directory and the group the runtime last ran (its last
//! good deployment, else the embedded default group), and a line on stderr says so. From
//! then on only the files are read: the runtime may stop or restart while a follower runs,
//! and the follower keeps following (a restarted runtime appends to the same
//! files). This keeps the command blocking and std-only; it needs no async
//! runtime and never writes anything.
//!
//! `--since`, `--until`, `--level` and `--json` go through [`crate::logfilter`]: the last `N`
//! lines are then the last `N` that pass, and a follower prints only those.
//!
//! It must print lines exactly as they are in the file (bytes, not text: a
//! line is never re-encoded), never print a line twice or skip one across a
//! rotation it sees, and stop quietly when its reader goes away.
//!
//! # Which log
//!
//! `COMPONENT` is compared, case-sensitively, with each component's ARN,
//! then its `Id` and its name (the function or connector name from its ARN).
//! Two versions of one function share a name: such a name is ambiguous and
//! the ARNs are listed. `runtime`, `system` and the runtime's own tag
//! ([`SYSTEM_ARN`]) mean the runtime's log, unless a component has that
//! name (its log is then still reached by the runtime's tag).
//!
//! # Rotation
//!
//! A log is `<name>.log` with at most [`ROTATED_FILES`] older files,
//! `<name>.log.1` (newest) … `<name>.log.3` (see [`evergreen_runtime::logs`]). The last
//! `N` lines are taken from the current file and, when it holds fewer, from
//! `.log.1`, then `.log.2`, … A follower polls every [`POLL_INTERVAL`]: it
//! copies what was appended, and when the path names another file (rotation:
//! the inode changed) it first drains the old file, then continues with the
//! new one from its start; a file that shrank (truncated) is read again from
//! its start.
//!
//! # Stopping
//!
//! Ctrl-C (SIGINT) ends a follower with the default action: nothing is
//! buffered (every copy is flushed) and nothing needs cleaning up, and a
//! shell sees the interrupt. Rust ignores SIGPIPE, so a reader that went
//! away shows up as a failed write (`BrokenPipe`), which ends the command
//! with status 0; a follower also polls its standard output for the error
//! condition a pipe reports once nobody reads it, so `evergreen logs -f x |
//! head -1` ends even while the log is quiet.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::app;
use crate::logfilter::{parse_time, Filter, FilteredWriter};
use evergreen_ops::control::{Client, ClientError, Request, CLIENT_TIMEOUT};
use evergreen_runtime::logs::{ROTATED_FILES, SYSTEM_ARN};

/// Lines printed before following when `-n` is not given.
pub const DEFAULT_LINES: usize = 100;
/// How often a follower looks for new lines. Short enough to feel live,
/// long enough that an idle follower costs nothing measurable.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Names that mean the runtime's own log.
pub const RUNTIME_NAMES: &[&str] = &["runtime", "system", SYSTEM_ARN];
/// How long opening a log waits for it to reappear: between the rename and
/// the creation of a rotation the path does not exist.
const REOPEN_PATIENCE: Duration = Duration::from_secs(1);
/// Bytes read at a time, backwards when looking for the last lines.
const CHUNK: usize = 64 << 10;

/// `evergreen logs` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// Component name, Id or ARN; `runtime` (or `system`) for the runtime's own log.
    pub component: String,
    /// Keep printing lines as they are written, across rotations, until
    /// interrupted (Ctrl-C); the runtime may stop meanwhile.
    #[arg(short, long)]
    pub follow: bool,
    /// Print the last N lines (from the rotated files too when the current
    /// one holds fewer).
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = DEFAULT_LINES)]
    pub lines: usize,
    /// Control socket [default: `evergreen.controlSocket`, else <root>/run/control.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Core configuration file [default: /etc/evergreen/config.json if present].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Runtime root; overrides `evergreen.root` in the configuration.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Only lines at or after this time: 2026-12-07T02:05:28Z, "2026-12-07 02:05:28" (UTC),
    /// 2026-12-07, or a time ago (90s, 15m, 2h, 3d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only lines at or before this time (the same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only lines at this level or above: DEBUG, INFO, WARN, ERROR or FATAL.
    #[arg(long, value_name = "LEVEL")]
    pub level: Option<String>,
    /// Print each line as a JSON object (timestamp, level, arn, message).
    #[arg(long)]
    pub json: bool,
}

/// Why `evergreen logs` failed.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(
        "no component {wanted:?} in the running group; give a name, Id or ARN:\n{}",
        list(available)
    )]
    Unknown {
        wanted: String,
        /// `(name, ARN)` of the runtime and every component.
        available: Vec<(String, String)>,
    },
    #[error("{wanted:?} names {} components; give one of their ARNs:\n{}", arns.len(), arns.iter().map(|a| format!("  {a}")).collect::<Vec<_>>().join("\n"))]
    Ambiguous { wanted: String, arns: Vec<String> },
    #[error("the runtime does not say where the log of {what} is (it is older than this command); look under its log directory")]
    NotReported { what: String },
    #[error("the runtime's status is not understood: {0}")]
    BadStatus(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Offline(String),
}

fn list(available: &[(String, String)]) -> String {
    let width = available.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    available
        .iter()
        .map(|(name, arn)| format!("  {name:<width$}  {arn}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The log chosen: whose it is, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    /// The ARN of the component, or [`SYSTEM_ARN`].
    pub arn: String,
    pub path: PathBuf,
}

/// What `evergreen logs` reads of the status document. Only these fields,
/// each with a default, so a runtime of another build still answers.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    #[serde(default)]
    log_file: Option<String>,
    #[serde(default)]
    components: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    arn: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    log_file: String,
}

/// Finds the log `wanted` names in a status document (the `status` object
/// of the runtime's answer).
pub fn resolve(status: &serde_json::Value, wanted: &str) -> Result<LogTarget, LogsError> {
    let listing = Listing::deserialize(status).map_err(|e| LogsError::BadStatus(e.to_string()))?;
    let component = |e: &Entry| {
        if e.log_file.is_empty() {
            Err(LogsError::NotReported {
                what: e.arn.clone(),
            })
        } else {
            Ok(LogTarget {
                arn: e.arn.clone(),
                path: PathBuf::from(&e.log_file),
            })
        }
    };
    // An ARN is unique; an Id or a name may not be.
    if let Some(e) = listing.components.iter().find(|e| e.arn == wanted) {
        return component(e);
    }
    let matches: Vec<&Entry> = listing
        .components
        .iter()
        .filter(|e| e.id == wanted || e.name == wanted)
        .collect();
    match matches.as_slice() {
        [one] => return component(one),
        [] => {}
        many => {
            return Err(LogsError::Ambiguous {
                wanted: wanted.to_string(),
                arns: many.iter().map(|e| e.arn.clone()).collect(),
            })
        }
    }
    if RUNTIME_NAMES.contains(&wanted) {
        return match listing.log_file {
            Some(path) if !path.is_empty() => Ok(LogTarget {
                arn: SYSTEM_ARN.to_string(),
                path: PathBuf::from(path),
            }),
            _ => Err(LogsError::NotReported {
                what: "the runtime".into(),
            }),
        };
    }
    let mut available = vec![("runtime".to_string(), SYSTEM_ARN.to_string())];
    available.extend(
        listing
            .components
            .iter()
            .map(|e| (e.name.clone(), e.arn.clone())),
    );
    Err(LogsError::Unknown {
        wanted: wanted.to_string(),
        available,
    })
}

/// `<path>.<n>`: the `n`th rotated file of the log at `path`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Where the last `n` lines of `file[..end]` start, and how many lines that
/// is (fewer than `n` when the file holds fewer). A last line without its
/// newline counts as a line.
fn tail_start(file: &File, end: u64, n: usize) -> io::Result<(u64, usize)> {
    if n == 0 || end == 0 {
        return Ok((end, 0));
    }
    // The byte at `end - 1` ends the last line (or is part of a last line
    // without newline); either way it starts none, so the search for the
    // newline before the n-th line from the end begins below it.
    let mut upto = end - 1;
    let mut found = 0;
    let mut buf = vec![0; CHUNK];
    while upto > 0 {
        let len = usize::try_from(upto).map_or(CHUNK, |u| u.min(CHUNK));
        let from = upto - len as u64;
        read_exact_at(file, &mut buf[..len], from)?;
        for (i, b) in buf[..len].iter().enumerate().rev() {
            if *b == b'\n' {
                found += 1;
                if found == n {
                    return Ok((from + i as u64 + 1, n));
                }
            }
        }
        upto = from;
    }
    Ok((0, found + 1))
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    // Not `FileExt::read_exact_at`: a file truncated meanwhile must give
    // what is left, not an error.
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                // Not newlines, so no lines are invented.
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(k) => done += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Bytes `[from, end)` of `file` (fewer if it was truncated meanwhile).
fn read_range(file: &File, from: u64, end: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(usize::try_from(end - from).unwrap_or(0).min(16 << 20));
    let mut buf = vec![0; CHUNK];
    let mut pos = from;
    while pos < end {
        let want = usize::try_from(end - pos).map_or(CHUNK, |w| w.min(CHUNK));
        match file.read_at(&mut buf[..want], pos) {
            Ok(0) => break,
            Ok(k) => {
                out.extend_from_slice(&buf[..k]);
                pos += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Opens a log, waiting up to [`REOPEN_PATIENCE`] for a path a rotation has
/// renamed away and not yet recreated.
fn open_log(path: &Path) -> Result<File, LogsError> {
    let deadline = Instant::now() + REOPEN_PATIENCE;
    loop {
        match File::open(path) {
            Ok(file) => return Ok(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(LogsError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// The identity of a file, to tell a rotated path from the file we hold.
fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// The last `n` lines of the log at `path` (its rotated files included when
/// the current one holds fewer), and a [`Follower`] positioned just after
/// them in the current file.
pub fn last_lines(path: &Path, n: usize) -> Result<(Vec<u8>, Follower), LogsError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LogsError::Io { path, source }
    };
    // The current file first: what a rotation moves afterwards is the file
    // we hold, and is recognised below by its identity.
    let file = open_log(path)?;
    let meta = file.metadata().map_err(io_err(path))?;
    let end = meta.len();
    let (start, mut have) = tail_start(&file, end, n).map_err(io_err(path))?;
    let mut parts = vec![read_range(&file, start, end).map_err(io_err(path))?];
    let mut seen = vec![file_id(&meta)];
    for k in 1..=ROTATED_FILES {
        if have >= n {
            break;
        }
        let older_path = rotated(path, k);
        let older = match File::open(&older_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(LogsError::Io {
                    path: older_path,
                    source,
                })
            }
        };
        let meta = older.metadata().map_err(io_err(&older_path))?;
        if seen.contains(&file_id(&meta)) {
            continue;
        }
        seen.push(file_id(&meta));
        let (start, got) = tail_start(&older, meta.len(), n - have).map_err(io_err(&older_path))?;
        let mut part = read_range(&older, start, meta.len()).map_err(io_err(&older_path))?;
        // A file that ends in a torn line: the next file's first line must
        // not be glued to it (the writer starts it on a fresh line too).
        if part.last().is_some_and(|b| *b != b'\n') {
            part.push(b'\n');
        }
        parts.push(part);
        have += got;
    }
    let out: Vec<u8> = parts.into_iter().rev().flatten().collect();
    let follower = Follower {
        path: path.to_path_buf(),
        id: file_id(&meta),
        file,
        pos: end,
        at_line_start: out.last().is_none_or(|b| *b == b'\n'),
    };
    Ok((out, follower))
}

/// The last `n` lines of the one file at `path`, its rotated files not consulted (for
/// `evergreen support-bundle`, which takes every file of the log directory on its own).
pub fn last_lines_of_file(path: &Path, n: usize) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let end = file.metadata()?.len();
    let (start, _) = tail_start(&file, end, n)?;
    read_range(&file, start, end)
}

/// Follows one log file across rotations: each [`Follower::poll`] copies
/// what was appended since the previous one.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: File,
    id: (u64, u64),
    /// Bytes of `file` already copied.
    pos: u64,
    /// Whether the last byte copied ended a line.
    at_line_start: bool,
}

impl Follower {
    /// Copies everything appended to the held file since the last copy.
    fn drain(&mut self, out: &mut dyn Write) -> io::Result<bool> {
        let mut buf = vec![0; CHUNK];
        let mut wrote = false;
        loop {
            let k = match self.file.read_at(&mut buf, self.pos) {
                Ok(0) => return Ok(wrote),
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            out.write_all(&buf[..k])?;
            self.pos += k as u64;
            self.at_line_start = buf[k - 1] == b'\n';
            wrote = true;
        }
    }

    /// Copies what was appended to the log since the last call to `out`
    /// (flushed), following a rotation to the new file and a truncation back
    /// to the start. Returns whether anything was copied.
    pub fn poll(&mut self, out: &mut dyn Write) -> io::Result<bool> {
        let mut wrote = self.drain(out)?;
        match std::fs::metadata(&self.path) {
            Ok(meta) if file_id(&meta) != self.id => {
                // Rotated. Lines may have reached the old file after the
                // drain above, before the writer switched: take them first.
                wrote |= self.drain(out)?;
                match File::open(&self.path) {
                    Ok(file) => {
                        let meta = file.metadata()?;
                        if !self.at_line_start {
                            out.write_all(b"\n")?;
                            self.at_line_start = true;
                        }
                        self.file = file;
                        self.id = file_id(&meta);
                        self.pos = 0;
                        wrote |= self.drain(out)?;
                    }
                    // Rotated again meanwhile: the next poll sees the newest.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(meta) if meta.len() < self.pos => {
                // Truncated in place: what is there now is new.
                if !self.at_line_start {
                    out.write_all(b"\n")?;
                    self.at_line_start = true;
                }
                self.pos = 0;
                wrote |= self.drain(out)?;
            }
            Ok(_) => {}
            // Between the rename and the creation of a rotation; the writer
            // may even go on writing to the renamed file we hold, which the
            // next drain copies.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if wrote {
            out.flush()?;
        }
        Ok(wrote)
    }

    /// Polls every `interval` until `stop` says so or a copy fails.
    pub fn follow(
        &mut self,
        out: &mut dyn Write,
        interval: Duration,
        mut stop: impl FnMut() -> bool,
    ) -> io::Result<()> {
        loop {
            self.poll(out)?;
            if stop() {
                return Ok(());
            }
            std::thread::sleep(interval);
        }
    }
}

/// Whether standard output is a pipe nobody reads any more: Linux reports
/// `POLLERR` for the write end of a pipe whose read end is closed, so a
/// quiet follower notices without waiting for a line to write.
fn stdout_gone() -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let stdout = io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR))
}

/// Asks the runtime at `socket` for its status and picks the log `wanted`
/// names.
pub fn find(socket: &Path, wanted: &str) -> Result<LogTarget, LogsError> {
    let mut client = Client::connect(socket, CLIENT_TIMEOUT)?;
    let mut answer = client.call_raw(&Request::Status)?;
    let status = answer
        .remove("status")
        .ok_or_else(|| LogsError::BadStatus("the answer has no status".into()))?;
    resolve(&status, wanted)
}

/// The files of the group the runtime last ran, for when no runtime answers: its last good
/// deployment, else the embedded default group, in a status document's shape.
fn offline_listing(
    cfg: &evergreen_config::CoreConfig,
) -> Result<(serde_json::Value, String), LogsError> {
    use evergreen_ops::deploy::{last_run, LastRun};
    let (plan, label) = match last_run(cfg.write_dir()) {
        Some(LastRun::Version(id)) => (
            app::load_version(cfg, &id)
                .map_err(|e| LogsError::Offline(format!("its last group: {e}")))?,
            format!("group version {}", id.short()),
        ),
        Some(LastRun::Embedded) | None => (
            app::read_group(None, cfg)
                .map_err(|e| LogsError::Offline(format!("the default group: {e}")))?,
            "the embedded default group".to_string(),
        ),
    };
    let log_dir = cfg.log_dir();
    let components: Vec<serde_json::Value> = plan
        .components
        .values()
        .map(|c| {
            serde_json::json!({
                "arn": c.arn,
                "id": c.id,
                "name": c.name,
                "logFile": log_dir.join(&c.log_file),
            })
        })
        .collect();
    let listing = serde_json::json!({
        "logFile": log_dir.join(evergreen_runtime::logs::SYSTEM_LOG),
        "components": components,
    });
    Ok((listing, label))
}

/// The log `args` names: asked of the running runtime, else found offline (see the module's
/// docs) when no runtime listens.
fn locate(socket: &Path, args: &LogsArgs) -> Result<LogTarget, LogsError> {
    match find(socket, &args.component) {
        Err(LogsError::Client(e @ ClientError::NotListening { .. })) => {
            // Both reasons, the runtime's absence first: it is the one the user acts on.
            let offline = |why: String| LogsError::Offline(format!("{e}; {why}"));
            let cfg = app::load_config(args.config.as_deref(), args.root.clone())
                .map_err(|c| offline(c.to_string()))?;
            let (listing, label) = offline_listing(&cfg).map_err(|o| offline(o.to_string()))?;
            let target = resolve(&listing, &args.component).map_err(|r| {
                offline(format!(
                    "in the log files of {label} under {}: {r}",
                    cfg.log_dir().display()
                ))
            })?;
            eprintln!(
                "evergreen: {e}; reading the log files of {label} under {}",
                cfg.log_dir().display()
            );
            Ok(target)
        }
        other => other,
    }
}

/// The filter `args` asks for.
fn filter_of(args: &LogsArgs) -> Result<Filter, String> {
    let now = time::OffsetDateTime::now_utc();
    Ok(Filter {
        since: args
            .since
            .as_deref()
            .map(|s| parse_time(s, now))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|s| parse_time(s, now))
            .transpose()?,
        level: args
            .level
            .as_deref()
            .map(|l| {
                evergreen_ipc::LogLevel::parse(&l.to_ascii_uppercase())
                    .ok_or_else(|| format!("--level {l:?}: give DEBUG, INFO, WARN, ERROR or FATAL"))
            })
            .transpose()?,
        json: args.json,
    })
}

/// `evergreen logs`: exit status 0 after printing (or when the reader went
/// away), 1 on any failure, 2 for a bad filter, 78 when the configuration cannot be read.
pub fn command(args: &LogsArgs) -> ExitCode {
    let filter = match filter_of(args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("evergreen: {e}");
            return ExitCode::from(2);
        }
    };
    let socket = match &args.socket {
        Some(path) => path.clone(),
        None => match app::load_config(args.config.as_deref(), args.root.clone()) {
            Ok(cfg) => cfg.control_socket(),
            Err(e) => {
                eprintln!("evergreen: {e}");
                return ExitCode::from(e.exit_code());
            }
        },
    };
    match print(&socket, args, &filter) {
        Ok(()) => ExitCode::SUCCESS,
        Err(LogsError::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("evergreen: {e}");
            ExitCode::from(1)
        }
    }
}

fn print(socket: &Path, args: &LogsArgs, filter: &Filter) -> Result<(), LogsError> {
    let target = locate(socket, args)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let out_err = |source| LogsError::Io {
        path: PathBuf::from("standard output"),
        source,
    };
    let mut follower = if filter.is_plain() {
        let (text, follower) = last_lines(&target.path, args.lines)?;
        out.write_all(&text).map_err(out_err)?;
        follower
    } else {
        // The last N lines that pass: every line is read, then filtered.
        let (text, follower) = last_lines(&target.path, usize::MAX)?;
        let mut kept = Vec::new();
        filter.apply(&text, &mut kept).map_err(out_err)?;
        let skip = kept
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
            .saturating_sub(args.lines);
        let start = if skip == 0 {
            0
        } else {
            kept.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .nth(skip - 1)
                .map_or(kept.len(), |(i, _)| i + 1)
        };
        out.write_all(&kept[start..]).map_err(out_err)?;
        follower
    };
    out.flush().map_err(out_err)?;
    if !args.follow {
        return Ok(());
    }
    let mut filtered;
    let sink: &mut dyn Write = if filter.is_plain() {
        &mut out
    } else {
        filtered = FilteredWriter::new(filter, &mut out);
        &mut filtered
    };
    follower
        .follow(sink, POLL_INTERVAL, stdout_gone)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::BrokenPipe {
                out_err(source)
            } else {
                LogsError::Io {
                    path: target.path.clone(),
                    source,
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status() -> serde_json::Value {
        json!({
            "version": "0.1.0",
            "logFile": "/l/system/runtime.log",
            "components": [
                { "arn": "arn:aws:lambda:r:1:function:f:1", "id": "f-one", "name": "f", "logFile": "/l/f1.log" },
                { "arn": "arn:aws:lambda:r:1:function:f:2", "id": "f-two", "name": "f", "logFile": "/l/f2.log" },
                { "arn": "arn:aws:lambda:r:1:function:g:1", "id": "gee", "name": "g", "logFile": "/l/g.log" },
                { "arn": "arn:aws:greengrass:r::/connectors/MessageLog/versions/1", "id": "system", "name": "MessageLog", "logFile": "/l/m.log" },
            ],
        })
    }

    fn path_of(wanted: &str) -> PathBuf {
        resolve(&status(), wanted)
            .unwrap_or_else(|e| panic!("{wanted}: {e}"))
            .path
    }

    #[test]
    fn components_are_found_by_arn_id_or_name() {
        assert_eq!(path_of("g"), Path::new("/l/g.log"));
        assert_eq!(path_of("gee"), Path::new("/l/g.log"));
        assert_eq!(
            path_of("arn:aws:lambda:r:1:function:g:1"),
            Path::new("/l/g.log")
        );
        assert_eq!(path_of("f-two"), Path::new("/l/f2.log"));
        assert_eq!(
            path_of("arn:aws:lambda:r:1:function:f:1"),
            Path::new("/l/f1.log")
        );
        // The runtime by its names, unless a component has one of them.
        assert_eq!(path_of("runtime"), Path::new("/l/system/runtime.log"));
        assert_eq!(path_of(SYSTEM_ARN), Path::new("/l/system/runtime.log"));
        assert_eq!(path_of("system"), Path::new("/l/m.log"));
        let target = resolve(&status(), "runtime").expect("runtime");
        assert_eq!(target.arn, SYSTEM_ARN);
    }

    #[test]
    fn unknown_and_ambiguous_names_say_what_there_is() {
        let e = resolve(&status(), "G").expect_err("case-sensitive");
        let text = e.to_string();
        assert!(matches!(e, LogsError::Unknown { .. }), "{e:?}");
        assert!(text.starts_with("no component \"G\""), "{text}");
        for name in ["runtime", "MessageLog", "arn:aws:lambda:r:1:function:g:1"] {
            assert!(text.contains(name), "{name} in {text}");
        }
        let e = resolve(&status(), "f").expect_err("two versions");
        let text = e.to_string();
        assert!(text.starts_with("\"f\" names 2 components"), "{text}");
        assert!(
            text.contains("  arn:aws:lambda:r:1:function:f:1\n  arn:aws:lambda:r:1:function:f:2")
        );
        // An older runtime that does not report log files.
        let old = json!({ "components": [{ "arn": "a", "id": "i", "name": "n" }] });
        assert!(matches!(
            resolve(&old, "n"),
            Err(LogsError::NotReported { .. })
        ));
        assert!(matches!(
            resolve(&old, "runtime"),
            Err(LogsError::NotReported { .. })
        ));
        assert!(matches!(
            resolve(&json!([1]), "n"),
            Err(LogsError::BadStatus(_))
        ));
    }

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).expect("write");
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .expect("open");
        f.write_all(text.as_bytes()).expect("append");
    }

    fn tail(path: &Path, n: usize) -> String {
        let (bytes, _) = last_lines(path, n).expect("tail");
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn last_lines_of_one_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f.log");
        write(&p, "");
        assert_eq!(tail(&p, 5), "");
        write(&p, "a\nb\nc\n");
        assert_eq!(tail(&p, 0), "");
        assert_eq!(tail(&p, 1), "c\n");
        assert_eq!(tail(&p, 2), "b\nc\n");
        assert_eq!(tail(&p, 3), "a\nb\nc\n");
        assert_eq!(tail(&p, 9), "a\nb\nc\n");
        write(&p, "\n\nx\n");
        assert_eq!(tail(&p, 2), "\nx\n", "empty lines are lines");
        write(&p, "a\nb\ntorn");
        assert_eq!(tail(&p, 1), "torn");
        assert_eq!(tail(&p, 2), "b\ntorn");
        // Lines longer than a read chunk, and many of them.
        let long = "x".repeat(CHUNK + 17);
        let text: String = (0..5).map(|i| format!("{i}{long}\n")).collect();
        write(&p, &text);
        assert_eq!(tail(&p, 2), format!("3{long}\n4{long}\n"));
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        write(&p, &text);
        assert_eq!(tail(&p, 3), "line 19997\nline 19998\nline 19999\n");
        assert_eq!(tail(&p, 30_000), text);
        assert!(matches!(
            last_lines(&dir.path().join("none.log"), 1),
            Err(LogsError::Io { .. })
        ));
    }

    #[test]
    fn last_lines_reach_into_rotated_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f.log");
        write(&rotated(&p, 3), "1\n2\n");
        write(&rotated(&p, 2), "3\ntorn");
        write(&rotated(&p, 1), "4\n5\n");
        write(&p, "6\n");
        assert_eq!(tail(&p, 1), "6\n");
        assert_eq!(tail(&p, 3), "4\n5\n6\n");
        assert_eq!(tail(&p, 5), "3\ntorn\n4\n5\n6\n");
        assert_eq!(tail(&p, 100), "1\n2\n3\ntorn\n4\n5\n6\n");
        // A rotated file that is the current one (a rotation between the
        // two opens) is not read twice.
        std::fs::remove_file(rotated(&p, 1)).expect("rm");
        std::fs::hard_link(&p, rotated(&p, 1)).expect("link");
        assert_eq!(tail(&p, 3), "3\ntorn\n6\n");
    }

    #[test]
    fn last_lines_of_file_stays_in_its_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f.log");
        write(&rotated(&p, 1), "1\n2\n");
        write(&p, "3\n4\n5");
        let got = |n| String::from_utf8(last_lines_of_file(&p, n).expect("read")).expect("utf-8");
        assert_eq!(got(2), "4\n5");
        assert_eq!(got(10), "3\n4\n5");
        assert_eq!(got(0), "");
    }

    /// Runs one poll and returns what it copied.
    fn poll(f: &mut Follower) -> String {
        let mut out = Vec::new();
        f.poll(&mut out).expect("poll");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn a_follower_copies_appends_rotations_and_truncations() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f.log");
        write(&p, "old\nlast\n");
        let (text, mut f) = last_lines(&p, 1).expect("tail");
        assert_eq!(text, b"last\n");
        assert_eq!(poll(&mut f), "");
        append(&p, "new 1\nnew");
        assert_eq!(poll(&mut f), "new 1\nnew", "bytes as they are, torn or not");
        append(&p, " 2\n");
        assert_eq!(poll(&mut f), " 2\n");

        // Rotation: lines that reached the old file before the switch come
        // first, then the new file from its start.
        append(&p, "before rotation\n");
        std::fs::rename(&p, rotated(&p, 1)).expect("rename");
        assert_eq!(
            poll(&mut f),
            "before rotation\n",
            "path missing: keep the old file"
        );
        append(&rotated(&p, 1), "late\n");
        write(&p, "after rotation\n");
        assert_eq!(poll(&mut f), "late\nafter rotation\n");
        append(&p, "more\n");
        assert_eq!(poll(&mut f), "more\n");

        // An old file that ends in a torn line: the new file's first line
        // starts on a line of its own.
        append(&p, "torn");
        std::fs::rename(&p, rotated(&p, 1)).expect("rename");
        write(&p, "fresh\n");
        assert_eq!(poll(&mut f), "torn\nfresh\n");

        // Truncated in place: read again from the start.
        write(&p, "");
        assert_eq!(poll(&mut f), "");
        append(&p, "x\n");
        assert_eq!(poll(&mut f), "x\n");
    }

    #[test]
    fn follow_stops_when_told() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f.log");
        write(&p, "a\n");
        let (_, mut f) = last_lines(&p, 0).expect("tail");
        let mut out = Vec::new();
        let mut polls = 0;
        f.follow(&mut out, Duration::from_millis(1), || {
            polls += 1;
            if polls == 2 {
                append(&p, "b\n");
            }
            polls == 3
        })
        .expect("follow");
        assert_eq!(out, b"b\n");
        assert_eq!(polls, 3);
    }
}
