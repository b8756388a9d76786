//! `evergreen support-bundle`: one `.tar.gz` an operator attaches to a bug report. It owns what
//! goes in (versions, the effective configuration, the group last run, status, deployment
//! history, the end of every log, `evergreen check`'s report, kernel and cgroup facts), the
//! `MANIFEST.txt` that says what is in it and what could not be collected and why, and the
//! redaction of everything it writes.
//!
//! It must never put a secret into the archive: the configuration is the serialized
//! `CoreConfig` (whose static AWS credentials serialize redacted) with every value under a key
//! named like a secret replaced again here ([`redact_json`]); PEM private key blocks are cut out
//! of every file ([`redact_pem`]); the configuration's own secret strings are scrubbed from every
//! file, logs included; and it never opens `<write dir>/secrets`, a `*.key` file or a key file
//! the configuration names (those stay paths). A bundle is still written when the runtime is
//! down or the configuration unreadable: what is missing is listed, never a reason to fail.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use evergreen_config::CoreConfig;
use evergreen_ops::control::{Client, Reply, Request, CLIENT_TIMEOUT};
use evergreen_ops::deploy::LastRun;
use serde_json::Value;

use crate::app;

/// The lines taken from the end of each log file unless `--lines` says otherwise.
pub const DEFAULT_LINES: usize = 1000;

/// What replaces a secret value.
pub const REDACTED: &str = "<redacted>";

/// How deep the log directory is walked (`user/<region>/<account>/<name>.log` is four levels).
const MAX_LOG_DEPTH: usize = 8;

/// `evergreen support-bundle`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct BundleArgs {
    /// Core configuration file [default: /etc/evergreen/config.json if present].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Runtime root; overrides `evergreen.root` in the configuration.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Control socket [default: `evergreen.controlSocket`, else <root>/run/control.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The archive to write [default: ./evergreen-support-<hostname>-<UTC time>.tar.gz].
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Lines taken from the end of each log file.
    #[arg(long, short = 'n', value_name = "N", default_value_t = DEFAULT_LINES)]
    pub lines: usize,
    /// Print `{"archive", "bytes", "files", "notCollected"}` instead of the archive's path.
    #[arg(long)]
    pub json: bool,
}

/// Why the archive could not be written (collection failures are MANIFEST lines instead).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot build the archive: {0}")]
    Archive(std::io::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the host facts are read: parameters so unit tests use a temporary directory.
#[derive(Debug, Clone)]
struct HostPaths {
    /// `/proc`.
    proc: PathBuf,
    /// `/etc/os-release`.
    os_release: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            proc: PathBuf::from("/proc"),
            os_release: PathBuf::from("/etc/os-release"),
        }
    }
}

/// The collected files, in archive order, and what could not be collected.
#[derive(Debug, Default)]
struct Bundle {
    files: Vec<(String, Vec<u8>)>,
    missing: Vec<(String, String)>,
    notes: Vec<String>,
    /// Strings that must not appear in any file (the configuration's secrets).
    secrets: Vec<Vec<u8>>,
}

impl Bundle {
    fn add(&mut self, name: impl Into<String>, data: impl Into<Vec<u8>>) {
        self.files.push((name.into(), data.into()));
    }

    fn miss(&mut self, name: impl Into<String>, why: impl std::fmt::Display) {
        self.missing.push((name.into(), one_line(&why.to_string())));
    }

    /// What could not be collected, with why.
    fn missing(&self) -> &[(String, String)] {
        &self.missing
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Collects every part of the bundle; never fails (what fails is listed as missing).
fn collect(args: &BundleArgs, host: &HostPaths) -> Bundle {
    let mut b = Bundle::default();
    b.add("version.txt", version_text(host));
    let cfg = match app::load_config(args.config.as_deref(), args.root.clone()) {
        Ok(cfg) => Some(cfg),
        Err(e) => {
            b.miss(
                "config.json",
                format!("the configuration cannot be read: {e}"),
            );
            None
        }
    };
    if let Some(cfg) = &cfg {
        b.secrets = config_secrets(cfg);
        match serde_json::to_value(cfg) {
            Ok(mut value) => {
                redact_json(&mut value);
                b.add("config.json", pretty(&value));
            }
            Err(e) => b.miss("config.json", format!("cannot serialize: {e}")),
        }
        group(cfg, &mut b);
    }
    let socket = args
        .socket
        .clone()
        .or_else(|| cfg.as_ref().map(CoreConfig::control_socket));
    let answered = match &socket {
        Some(socket) => from_runtime(socket, &mut b),
        None => {
            b.miss(
                "status.json",
                "no control socket: the configuration cannot be read and --socket was not given",
            );
            false
        }
    };
    if !answered {
        match &cfg {
            Some(cfg) => match evergreen_ops::deploy::history(cfg.write_dir()) {
                Ok(records) => {
                    b.notes.push(format!(
                        "deployments.json: read from {} (no runtime answered)",
                        cfg.write_dir().join("deployments/history.json").display()
                    ));
                    b.add("deployments.json", pretty(&records));
                }
                Err(e) => b.miss("deployments.json", e),
            },
            None => b.miss(
                "deployments.json",
                "no runtime answered and the configuration cannot be read",
            ),
        }
    }
    match &cfg {
        Some(cfg) => logs(&cfg.log_dir(), args.lines, &mut b),
        None => b.miss("logs/", "the configuration cannot be read"),
    }
    let report = crate::check::run(&crate::check::CheckOptions {
        config: args.config.clone(),
        root: args.root.clone(),
        group: None,
        timeout: crate::check::DEFAULT_TIMEOUT,
    });
    b.add("check.txt", report.render());
    b.add(
        "host.txt",
        host_text(host, cfg.as_ref().map(CoreConfig::write_dir)),
    );
    b
}

/// `evergreen --version`, the kernel, the OS and the architecture.
fn version_text(host: &HostPaths) -> String {
    let mut out = format!("evergreen {}\n", evergreen_ops::release::version());
    let kernel = read_text(&host.proc.join("sys/kernel/osrelease"));
    let _ = writeln!(out, "kernel: {}", kernel.trim());
    let _ = writeln!(out, "architecture: {}", std::env::consts::ARCH);
    let _ = writeln!(out, "\n{}:", host.os_release.display());
    out.push_str(&read_text(&host.os_release));
    out
}

/// A file's text, or a line saying why it could not be read.
fn read_text(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("(cannot read {}: {e})\n", path.display()),
    }
}

/// Pretty JSON with a final newline.
fn pretty<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value)
        .unwrap_or_else(|e| format!("(cannot serialize: {e})").into_bytes());
    out.push(b'\n');
    out
}

/// The secret strings the configuration holds (and the status page's generated token), to
/// scrub from every file (a log line that printed one must not carry it into the bundle).
fn config_secrets(cfg: &CoreConfig) -> Vec<Vec<u8>> {
    let creds = cfg.evergreen.aws.credentials.as_ref();
    let page_token = cfg.evergreen.status_page.as_ref().map(|page| {
        page.token.clone().unwrap_or_else(|| {
            let file = cfg.root().join(evergreen_ops::statuspage::TOKEN_FILE);
            std::fs::read_to_string(file)
                .map(|t| t.trim().to_string())
                .unwrap_or_default()
        })
    });
    [
        creds.map(|c| c.secret_access_key.clone()),
        creds.and_then(|c| c.session_token.clone()),
        page_token,
    ]
    .into_iter()
    .flatten()
    // A very short value would also match innocent text; such a value is no key anyway.
    .filter(|s| s.len() >= 8)
    .map(String::into_bytes)
    .collect()
}

/// Whether a key names a secret value: compared without case, `_` and `-`, by its end
/// (`secretAccessKey`, `sessionToken`, `SPLUNK_TOKEN`, `clientSecret`, `password`,
/// `privateKey`, …). Keys that only refer to a secret (`…SecretArn`, `secretNamePrefix`) end
/// otherwise and stay.
fn is_secret_key(key: &str) -> bool {
    const ENDINGS: &[&str] = &[
        "secret",
        "secretaccesskey",
        "secretkey",
        "secretstring",
        "secretbinary",
        "token",
        "password",
        "passwd",
        "passphrase",
        "privatekey",
        "apikey",
    ];
    let norm: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    ENDINGS.iter().any(|e| norm.ends_with(e))
}

/// Replaces, in place, every non-null value under a secret-named key (see [`is_secret_key`])
/// and every string holding a PEM private key by [`REDACTED`].
fn redact_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret_key(key) && !v.is_null() {
                    *v = Value::String(REDACTED.to_string());
                } else {
                    redact_json(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::String(s) if s.contains("PRIVATE KEY") => *s = REDACTED.to_string(),
        _ => {}
    }
}

/// `data` with every PEM private key block (`-----BEGIN … PRIVATE KEY-----` to its `END` line,
/// or to the end when it has none) replaced by a marker.
fn redact_pem(data: &[u8]) -> Vec<u8> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"-----END ";
    const TAIL: &[u8] = b"PRIVATE KEY-----";
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(at) = find(rest, BEGIN) {
        let after = &rest[at..];
        let line_end = find(after, b"\n").unwrap_or(after.len());
        if find(&after[..line_end], TAIL).is_none() {
            out.extend_from_slice(&rest[..at + BEGIN.len()]);
            rest = &rest[at + BEGIN.len()..];
            continue;
        }
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"<redacted: private key>");
        let skip = find(after, END)
            .and_then(|e| find(&after[e..], TAIL).map(|t| e + t + TAIL.len()))
            .unwrap_or(after.len());
        rest = &after[skip..];
    }
    out.extend_from_slice(rest);
    out
}

/// `data` with every occurrence of each of `secrets` replaced by [`REDACTED`].
fn scrub(mut data: Vec<u8>, secrets: &[Vec<u8>]) -> Vec<u8> {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if find(&data, secret).is_none() {
            continue;
        }
        let mut out = Vec::with_capacity(data.len());
        let mut rest = data.as_slice();
        while let Some(at) = find(rest, secret) {
            out.extend_from_slice(&rest[..at]);
            out.extend_from_slice(REDACTED.as_bytes());
            rest = &rest[at + secret.len()..];
        }
        out.extend_from_slice(rest);
        data = out;
    }
    data
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `group.json`: the group the runtime runs or last ran, its secret-named values redacted (a
/// group file names its secrets by ARN; it carries no value).
fn group(cfg: &CoreConfig, b: &mut Bundle) {
    const NAME: &str = "group.json";
    let write_dir = cfg.write_dir();
    match evergreen_ops::deploy::last_run(write_dir) {
        Some(LastRun::Version(id)) => {
            let store = evergreen_ops::store::VersionStore::open(write_dir);
            // A version whose programs no longer match their digests is worth reporting, and
            // its group is still worth reading.
            let stored = store.load(id.as_str()).or_else(|e| {
                b.notes.push(format!(
                    "group.json: group version {} does not load: {}",
                    id.short(),
                    one_line(&e.to_string())
                ));
                store.read_created(&id)
            });
            match stored {
                Ok(stored) => match serde_json::from_str::<Value>(&stored.group) {
                    Ok(mut value) => {
                        redact_json(&mut value);
                        b.notes
                            .push(format!("group.json: group version {}", id.as_str()));
                        b.add(NAME, pretty(&value));
                    }
                    Err(e) => b.miss(NAME, format!("group version {}: {e}", id.short())),
                },
                Err(e) => b.miss(NAME, format!("group version {}: {e}", id.short())),
            }
        }
        Some(LastRun::Embedded) => {
            b.notes
                .push("group.json: the embedded default group".to_string());
            b.add(NAME, app::DEFAULT_GROUP);
        }
        None => b.miss(NAME, "no group was ever run on this root"),
    }
}

/// `status.json` and `deployments.json` from the running runtime; false when none answered.
fn from_runtime(socket: &Path, b: &mut Bundle) -> bool {
    let mut client = match Client::connect(socket, CLIENT_TIMEOUT) {
        Ok(client) => client,
        Err(e) => {
            b.miss(
                "status.json",
                format!("the runtime did not answer on {}: {e}", socket.display()),
            );
            return false;
        }
    };
    match client.call_raw(&Request::Status) {
        Ok(mut answer) => match answer.remove("status") {
            Some(mut status) => {
                redact_json(&mut status);
                b.add("status.json", pretty(&status));
            }
            None => b.miss("status.json", "the runtime's answer has no status"),
        },
        Err(e) => {
            b.miss(
                "status.json",
                format!("the runtime did not answer on {}: {e}", socket.display()),
            );
            return false;
        }
    }
    match client.call(&Request::Deployments) {
        Ok(Reply::Deployments { deployments }) => {
            b.add("deployments.json", pretty(&deployments));
            true
        }
        Ok(other) => {
            b.notes.push(format!(
                "deployments.json: unexpected answer from the runtime: {other:?}"
            ));
            false
        }
        Err(e) => {
            b.notes.push(format!(
                "deployments.json: the runtime did not answer: {}",
                one_line(&e.to_string())
            ));
            false
        }
    }
}

/// `logs/<path under the log directory>`: the last `lines` lines of every file, current and
/// rotated alike, each on its own. Symbolic links are not followed; key files are skipped.
fn logs(dir: &Path, lines: usize, b: &mut Bundle) {
    let mut files = Vec::new();
    if let Err(e) = walk(dir, 0, &mut files) {
        b.miss("logs/", format!("{}: {e}", dir.display()));
        return;
    }
    if files.is_empty() {
        b.miss("logs/", format!("{}: no log files", dir.display()));
    }
    files.sort();
    for path in files {
        let rel = path.strip_prefix(dir).unwrap_or(&path);
        let name = format!("logs/{}", rel.display());
        if is_key_file(&path) {
            b.miss(name, "a key file: never collected");
            continue;
        }
        match crate::tail::last_lines_of_file(&path, lines) {
            Ok(data) => b.add(name, data),
            Err(e) => b.miss(name, e),
        }
    }
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_file() {
            out.push(entry.path());
        } else if kind.is_dir() && depth < MAX_LOG_DEPTH {
            // An unreadable subdirectory loses its files, not the others'.
            let _ = walk(&entry.path(), depth + 1, out);
        }
    }
    Ok(())
}

fn is_key_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("key") || e.eq_ignore_ascii_case("pem"))
}

/// Kernel and cgroup facts: uptime, load, memory, the cgroup controllers and mounts, and the
/// free space of the write directory.
fn host_text(host: &HostPaths, write_dir: Option<&Path>) -> String {
    let mut out = String::new();
    for (title, file) in [
        ("uptime (seconds up, idle)", "uptime"),
        ("load average", "loadavg"),
        ("memory", "meminfo"),
        ("cgroup controllers", "cgroups"),
    ] {
        let path = host.proc.join(file);
        let _ = writeln!(out, "== {title}: {} ==", path.display());
        out.push_str(&read_text(&path));
        out.push('\n');
    }
    let mountinfo = host.proc.join("self/mountinfo");
    let _ = writeln!(out, "== cgroup mounts: {} ==", mountinfo.display());
    match std::fs::read(&mountinfo) {
        Ok(bytes) => {
            for line in String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| l.contains(" - cgroup"))
            {
                let _ = writeln!(out, "{line}");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "(cannot read {}: {e})", mountinfo.display());
        }
    }
    out.push('\n');
    out.push_str("== disk ==\n");
    match write_dir {
        Some(dir) => {
            let check = crate::check::host::disk(dir);
            let _ = writeln!(out, "{}: {}", check.status.label(), check.detail);
        }
        None => out.push_str("(the write directory is unknown: no configuration)\n"),
    }
    out
}

/// `./evergreen-support-<hostname>-<UTC time>.tar.gz`.
fn default_output(host: &HostPaths) -> PathBuf {
    let hostname = std::fs::read_to_string(host.proc.join("sys/kernel/hostname"));
    let hostname: String = hostname
        .as_deref()
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    let hostname = if hostname.is_empty() {
        "unknown".to_string()
    } else {
        hostname
    };
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "now".to_string());
    PathBuf::from(format!("evergreen-support-{hostname}-{stamp}.tar.gz"))
}

/// The archive's top directory: the file's name without `.tar.gz`.
fn top_dir(output: &Path) -> String {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".tar.gz")
        .or_else(|| name.strip_suffix(".tgz"))
        .unwrap_or(&name);
    if stem.is_empty() || stem.starts_with('.') {
        "evergreen-support".to_string()
    } else {
        stem.to_string()
    }
}

/// MANIFEST.txt: what is in the bundle, what is not and why, and what was redacted.
fn manifest(b: &Bundle) -> String {
    let mut out = String::from("Evergreen support bundle\n");
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let _ = writeln!(out, "created: {now}");
    let _ = writeln!(out, "evergreen: {}", evergreen_ops::release::version());
    out.push_str("\ncollected:\n");
    for (name, data) in &b.files {
        let _ = writeln!(out, "  {name} ({} bytes)", data.len());
    }
    out.push_str("\nnot collected:\n");
    if b.missing.is_empty() {
        out.push_str("  (nothing)\n");
    }
    for (name, why) in &b.missing {
        let _ = writeln!(out, "  {name}: {why}");
    }
    if !b.notes.is_empty() {
        out.push_str("\nnotes:\n");
        for note in &b.notes {
            let _ = writeln!(out, "  {note}");
        }
    }
    out.push_str(
        "\nredacted: values of keys named like a secret (AWS secretAccessKey and sessionToken, \
         tokens, passwords, private keys) read \"<redacted>\"; PEM private key blocks are cut \
         out of every file; the configuration's secret strings are scrubbed from every file, \
         logs included. Never read: the secret store (<write dir>/secrets), key files (only \
         their paths appear).\n",
    );
    out
}

/// The bundle as a gzipped ustar archive under `top/`, every file redacted once more.
fn archive(b: &Bundle, top: &str) -> Result<Vec<u8>, BundleError> {
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let manifest = manifest(b);
    let mut tar = tar::Builder::new(Vec::new());
    let files = std::iter::once(("MANIFEST.txt", manifest.as_bytes()))
        .chain(b.files.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
    for (name, data) in files {
        let data = scrub(redact_pem(data), &b.secrets);
        // GNU headers: a path longer than ustar's 100 + 155 bytes (a deep log file under a long
        // archive name) gets a long-name entry instead of failing the whole archive.
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("{top}/{name}"), data.as_slice())
            .map_err(BundleError::Archive)?;
    }
    let bytes = tar.into_inner().map_err(BundleError::Archive)?;
    Ok(gzip(&bytes))
}

/// Writes `data` to `path`, owner-only (0600) even when the file existed.
fn write_private(path: &Path, data: &[u8]) -> Result<(), BundleError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |source| BundleError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    file.write_all(data).map_err(err)?;
    file.sync_all().map_err(err)
}

/// `evergreen support-bundle`: collects, writes the archive and prints its path. Exit status 0
/// when written (whatever could not be collected), 1 when the archive could not be written.
pub fn command(args: &BundleArgs) -> ExitCode {
    let host = HostPaths::default();
    let output = args.output.clone().unwrap_or_else(|| default_output(&host));
    let bundle = collect(args, &host);
    for (name, why) in bundle.missing() {
        eprintln!("evergreen: not collected: {name}: {why}");
    }
    let written = archive(&bundle, &top_dir(&output))
        .and_then(|gz| write_private(&output, &gz).map(|()| gz.len()));
    match written {
        Ok(bytes) if args.json => {
            let document = serde_json::json!({
                "archive": output.display().to_string(),
                "bytes": bytes,
                "files": std::iter::once("MANIFEST.txt")
                    .chain(bundle.files.iter().map(|(name, _)| name.as_str()))
                    .collect::<Vec<_>>(),
                "notCollected": bundle
                    .missing()
                    .iter()
                    .map(|(name, why)| serde_json::json!({"name": name, "reason": why}))
                    .collect::<Vec<_>>(),
            });
            println!("{document:#}");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            println!("{}", output.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("evergreen: {e}");
            ExitCode::from(1)
        }
    }
}

/// A gzip member (RFC 1952) around `data` deflated: header without name or time, CRC-32 and
/// length.
fn gzip(data: &[u8]) -> Vec<u8> {
    // ID1 ID2, CM = deflate, no flags, no mtime, no extra flags, OS = unknown.
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
    out.extend(crc32(data).to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952 2.3.1): the truncation is the format's.
    out.extend((data.len() as u64 as u32).to_le_bytes());
    out
}

/// The CRC-32 of gzip (IEEE 802.3, reflected, polynomial 0xEDB88320).
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !data.iter().fold(!0u32, |crc, b| {
        TABLE[((crc ^ u32::from(*b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crc32_matches_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn gzip_round_trips() {
        let data = b"line one\nline two\n".repeat(100);
        let gz = gzip(&data);
        assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
        let body = &gz[10..gz.len() - 8];
        let back = miniz_oxide::inflate::decompress_to_vec(body).expect("inflate");
        assert_eq!(back, data);
        assert_eq!(gz[gz.len() - 8..gz.len() - 4], crc32(&data).to_le_bytes());
    }

    #[test]
    fn secret_named_values_are_redacted_and_references_stay() {
        let mut v = json!({
            "aws": { "credentials": { "accessKeyId": "AKIA", "secretAccessKey": "s", "sessionToken": "t" } },
            "secretNamePrefix": "greengrass-",
            "Parameters": { "SplunkTokenSecretArn": "arn:x", "SPLUNK_TOKEN": "abc", "password": 5 },
            "keyPath": "/etc/evergreen/core.key",
            "pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            "none": { "sessionToken": null }
        });
        redact_json(&mut v);
        assert_eq!(v["aws"]["credentials"]["accessKeyId"], "AKIA");
        assert_eq!(v["aws"]["credentials"]["secretAccessKey"], REDACTED);
        assert_eq!(v["aws"]["credentials"]["sessionToken"], REDACTED);
        assert_eq!(v["secretNamePrefix"], "greengrass-");
        assert_eq!(v["Parameters"]["SplunkTokenSecretArn"], "arn:x");
        assert_eq!(v["Parameters"]["SPLUNK_TOKEN"], REDACTED);
        assert_eq!(v["Parameters"]["password"], REDACTED);
        assert_eq!(v["keyPath"], "/etc/evergreen/core.key");
        assert_eq!(v["pem"], REDACTED);
        assert_eq!(v["none"]["sessionToken"], Value::Null);
    }

    #[test]
    fn pem_private_keys_are_cut_out_and_certificates_stay() {
        let text = b"a\n-----BEGIN EC PRIVATE KEY-----\nSECRET\n-----END EC PRIVATE KEY-----\nb\n\
                     -----BEGIN CERTIFICATE-----\nPUBLIC\n-----END CERTIFICATE-----\n\
                     -----BEGIN PRIVATE KEY-----\nTORN";
        let out = String::from_utf8(redact_pem(text)).expect("utf8");
        assert!(!out.contains("SECRET") && !out.contains("TORN"), "{out}");
        assert!(
            out.contains("PUBLIC") && out.starts_with("a\n<redacted"),
            "{out}"
        );
        assert!(out.contains("\nb\n"), "{out}");
    }

    #[test]
    fn scrub_replaces_every_occurrence() {
        let out = scrub(b"xSEKRITySEKRIT".to_vec(), &[b"SEKRIT".to_vec()]);
        assert_eq!(out, b"x<redacted>y<redacted>");
    }

    #[test]
    fn host_facts_come_from_the_given_proc() {
        let dir = tempfile::tempdir().expect("tmp");
        let proc = dir.path().join("proc");
        std::fs::create_dir_all(proc.join("self")).expect("dir");
        std::fs::create_dir_all(proc.join("sys/kernel")).expect("dir");
        std::fs::write(proc.join("sys/kernel/osrelease"), "6.1.0-test\n").expect("w");
        std::fs::write(proc.join("uptime"), "123.4 56.7\n").expect("w");
        std::fs::write(
            proc.join("self/mountinfo"),
            "1 0 0:1 / / rw - ext4 /dev/vda rw\n\
             2 1 0:2 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        )
        .expect("w");
        let host = HostPaths {
            proc,
            os_release: dir.path().join("os-release"),
        };
        let version = version_text(&host);
        assert!(version.contains("kernel: 6.1.0-test"), "{version}");
        assert!(version.contains("cannot read"), "{version}");
        let text = host_text(&host, Some(dir.path()));
        assert!(text.contains("123.4 56.7"), "{text}");
        assert!(text.contains("/sys/fs/cgroup rw - cgroup2"), "{text}");
        assert!(!text.contains("ext4"), "{text}");
        assert!(text.contains("cannot read"), "{text}");
    }

    #[test]
    fn the_archive_holds_the_manifest_and_every_file_redacted() {
        let mut b = Bundle {
            secrets: vec![b"SEKRIT-value".to_vec()],
            ..Bundle::default()
        };
        b.add("a.txt", "x SEKRIT-value y\n");
        let long = format!("logs/{}/f.log", "d".repeat(300));
        b.add(
            long.clone(),
            "-----BEGIN RSA PRIVATE KEY-----\nK\n-----END RSA PRIVATE KEY-----\n",
        );
        b.miss("status.json", "no runtime\n answered");
        let gz = archive(&b, "top").expect("archive");
        let tar_bytes =
            miniz_oxide::inflate::decompress_to_vec(&gz[10..gz.len() - 8]).expect("inflate");
        let mut entries = Vec::new();
        let mut ar = tar::Archive::new(tar_bytes.as_slice());
        for entry in ar.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").display().to_string();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).expect("read");
            entries.push((path, text));
        }
        assert_eq!(entries[0].0, "top/MANIFEST.txt");
        assert!(
            entries[0]
                .1
                .contains("  status.json: no runtime answered\n"),
            "{}",
            entries[0].1
        );
        assert!(
            entries[0].1.contains("  a.txt (17 bytes)\n"),
            "{}",
            entries[0].1
        );
        assert_eq!(
            entries[1],
            ("top/a.txt".to_string(), "x <redacted> y\n".to_string())
        );
        assert_eq!(entries[2].0, format!("top/{long}"));
        assert_eq!(entries[2].1, "<redacted: private key>\n");
    }

    #[test]
    fn the_top_directory_is_the_archive_name() {
        assert_eq!(top_dir(Path::new("/tmp/x.tar.gz")), "x");
        assert_eq!(top_dir(Path::new("b.tgz")), "b");
        assert_eq!(top_dir(Path::new("/")), "evergreen-support");
    }
}
