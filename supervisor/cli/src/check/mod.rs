//! `evergreen check`: the operator's health check. It owns the list of checks, their order,
//! their statuses (OK, WARN, FAIL, each with a fix hint), the text and JSON reports and the exit
//! status by the worst result. Each family of checks sits in a child: [`certs`] (certificate
//! and key files), [`net`] (listeners' ports and the upstream endpoint), [`host`] (clock, disk,
//! and the container findings of `evergreen_runtime::sandbox::check`, which stay there).
//!
//! A check never changes anything: it takes no lock, writes no file, binds a port only for the
//! instant of a bind test, and opens no MQTT session upstream (so it cannot take over the
//! running runtime's connection, which uses the same client id).

mod certs;
pub(crate) mod host;
mod net;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use evergreen_config::CoreConfig;
use evergreen_group::plan::GroupPlan;

use crate::app;

/// Exit status when the worst result is a warning: distinct from 0 so a script can tell, and
/// from 1 so `evergreen check || …` in a unit's `ExecStartPre=` can be written as
/// `evergreen check; test $? -ne 1`.
pub const EXIT_WARN: u8 = 2;

/// The default bound on each network step (DNS, TCP connect, TLS handshake).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How one check came out, worst last (the order `worst` takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    /// As the text report prints it.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }

    /// As `--json` prints it.
    pub fn json(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Stable name (scripts match it): `configuration`, `cloud certificate`, `port mqttTls`, …
    pub name: String,
    pub status: Status,
    /// What was found, on one line.
    pub detail: String,
    /// What to do about it; `None` when nothing is to be done.
    pub hint: Option<String>,
}

impl Check {
    pub(crate) fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: one_line(detail.into()),
            hint: None,
        }
    }

    pub(crate) fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check::with_hint(Status::Warn, name.into(), detail.into(), hint.into())
    }

    pub(crate) fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check::with_hint(Status::Fail, name.into(), detail.into(), hint.into())
    }

    fn with_hint(status: Status, name: String, detail: String, hint: String) -> Check {
        Check {
            name,
            status,
            detail: one_line(detail),
            hint: Some(hint),
        }
    }
}

/// Multi-line messages (a group's list of errors) joined with `; ` so every check is one line.
fn one_line(text: String) -> String {
    if !text.contains('\n') {
        return text;
    }
    let mut out = String::new();
    for line in text.lines().map(|l| l.trim().trim_start_matches("- ")) {
        if line.is_empty() {
            continue;
        }
        // A heading such as "and also:" runs on into its first item.
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    out
}

/// Every check, in the order run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// The worst status; OK for an empty report.
    pub fn worst(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    /// 0 when every check is OK, [`EXIT_WARN`] when the worst is a warning, 1 with any failure.
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            Status::Ok => 0,
            Status::Warn => EXIT_WARN,
            Status::Fail => 1,
        }
    }

    /// One line per check: status, name, detail and, after `fix:`, the hint; then the verdict.
    pub fn render(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            let _ = write!(
                out,
                "{:<4}  {:<width$}  {}",
                c.status.label(),
                c.name,
                c.detail
            );
            if let Some(hint) = &c.hint {
                let _ = write!(out, "; fix: {hint}");
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "\nworst: {} (exit status {})",
            self.worst().label(),
            self.exit_code()
        );
        out
    }

    /// `{"checks":[{"name","status","detail","hint"}],"worst":…}`.
    pub fn to_json(&self) -> serde_json::Value {
        let checks: Vec<serde_json::Value> = self
            .checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "status": c.status.json(),
                    "detail": c.detail,
                    "hint": c.hint,
                })
            })
            .collect();
        serde_json::json!({ "checks": checks, "worst": self.worst().json() })
    }
}

/// What `evergreen check` was asked.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub config: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub group: Option<PathBuf>,
    /// Bound on each network step.
    pub timeout: Duration,
}

/// Runs every check and returns the report; prints nothing.
pub fn run(opts: &CheckOptions) -> Report {
    let mut checks = Vec::new();
    match app::load_config(opts.config.as_deref(), opts.root.clone()) {
        Ok(cfg) => {
            checks.push(Check::ok("configuration", config_detail(opts, &cfg)));
            let plan = group(opts, &cfg, &mut checks);
            let needs = Needs::of(plan.as_ref());
            let running = net::runtime_running(&cfg);
            let cert_times = certs::check_all(&cfg, &needs, &mut checks);
            net::check_ports(&cfg, &needs, running.as_ref(), &mut checks);
            net::check_upstream(&cfg, opts.timeout, &mut checks);
            checks.push(host::clock(cert_times.latest_not_before.as_ref()));
            checks.push(host::disk(cfg.write_dir()));
        }
        Err(e) => {
            checks.push(Check::fail(
                "configuration",
                e.to_string(),
                "fix the file (every error names its key), or pass --config; the checks of \
                 group, certificates, ports, upstream and disk need it and were skipped",
            ));
            checks.push(host::clock(None));
        }
    }
    checks.extend(host::container());
    Report { checks }
}

/// Which file the configuration came from, and the root in use.
fn config_detail(opts: &CheckOptions, cfg: &CoreConfig) -> String {
    let file = match &opts.config {
        Some(path) => path.display().to_string(),
        None if std::path::Path::new(evergreen_config::DEFAULT_CONFIG_PATH).exists() => {
            evergreen_config::DEFAULT_CONFIG_PATH.to_string()
        }
        None => "built-in defaults (no configuration file)".to_string(),
    };
    format!("{file}; root {}", cfg.root().display())
}

/// The group `evergreen run` would start with these options, validated as it would be: the
/// `--group` file, else the last good deployment, else the embedded default group.
fn group(opts: &CheckOptions, cfg: &CoreConfig, checks: &mut Vec<Check>) -> Option<GroupPlan> {
    const NAME: &str = "group";
    if let Some(path) = &opts.group {
        return match app::read_group_file(path, cfg) {
            Ok(file) => {
                checks.push(Check::ok(
                    NAME,
                    format!("{}: valid ({})", path.display(), summary(&file.plan)),
                ));
                Some(file.plan)
            }
            Err(e) => {
                checks.push(Check::fail(
                    NAME,
                    e.to_string(),
                    format!(
                        "fix the group file (`evergreen validate {}` lists every error)",
                        path.display()
                    ),
                ));
                None
            }
        };
    }
    if let Some(id) = evergreen_ops::deploy::last_good(cfg.write_dir()) {
        return match app::load_version(cfg, &id) {
            Ok(plan) => {
                checks.push(Check::ok(
                    NAME,
                    format!(
                        "group version {} (the last good deployment): valid ({})",
                        id.short(),
                        summary(&plan)
                    ),
                ));
                Some(plan)
            }
            Err(e) => {
                checks.push(Check::fail(
                    NAME,
                    format!(
                        "the last good deployment (group version {}) cannot be restored: {e}; \
                         `evergreen run` would start the embedded default group instead",
                        id.short()
                    ),
                    "deploy a valid group (`evergreen deploy FILE`), or check with --group FILE",
                ));
                None
            }
        };
    }
    let unavailable = evergreen_runtime::sandbox::check::container_support();
    match app::read_group(None, cfg) {
        Ok(plan) => {
            let detail = format!("embedded default group: valid ({})", summary(&plan));
            checks.push(match app::default_group_for(unavailable).1 {
                Some(note) => Check::warn(
                    NAME,
                    format!("{detail}; {note}"),
                    "run as root where container mode can run, or deploy your own group",
                ),
                None => Check::ok(NAME, detail),
            });
            Some(plan)
        }
        Err(e) => {
            checks.push(Check::fail(
                NAME,
                e.to_string(),
                "the configuration's core thing or options refuse the embedded group: check \
                 coreThing.thingArn and runtime.allowFunctionsToRunAsRoot",
            ));
            None
        }
    }
}

fn summary(plan: &GroupPlan) -> String {
    format!(
        "{} components, {} subscriptions, {} devices",
        plan.components.len(),
        plan.subscriptions.len(),
        plan.devices.len()
    )
}

/// What the group needs of the host, for the checks that depend on it. Without a valid group
/// every need is assumed, so nothing is excused.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Needs {
    /// The Lambda endpoint (`coreThing.ggDaemonPort`) serves Python functions.
    pub(crate) lambda: bool,
    /// Devices connect over the local MQTT server's TLS listener.
    pub(crate) devices: bool,
}

impl Needs {
    fn of(plan: Option<&GroupPlan>) -> Needs {
        match plan {
            Some(plan) => Needs {
                lambda: plan.components.values().any(|c| c.launch.lambda_link()),
                devices: !plan.devices.is_empty(),
            },
            None => Needs {
                lambda: true,
                devices: true,
            },
        }
    }
}

/// `evergreen check`: prints the report (text or JSON) and returns its exit status.
pub fn command(opts: &CheckOptions, json: bool) -> std::process::ExitCode {
    let report = run(opts);
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render());
    }
    std::process::ExitCode::from(report.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(statuses: &[Status]) -> Report {
        Report {
            checks: statuses
                .iter()
                .enumerate()
                .map(|(i, s)| Check {
                    name: format!("c{i}"),
                    status: *s,
                    detail: "d".into(),
                    hint: (*s != Status::Ok).then(|| "h".into()),
                })
                .collect(),
        }
    }

    #[test]
    fn the_exit_status_follows_the_worst_result() {
        assert_eq!(report(&[Status::Ok, Status::Ok]).exit_code(), 0);
        assert_eq!(report(&[Status::Ok, Status::Warn]).exit_code(), EXIT_WARN);
        assert_eq!(
            report(&[Status::Warn, Status::Fail, Status::Ok]).exit_code(),
            1
        );
        assert_eq!(report(&[]).exit_code(), 0);
    }

    #[test]
    fn every_check_is_one_line_with_its_hint() {
        let r = report(&[Status::Ok, Status::Fail]);
        let text = r.render();
        assert!(text.contains("OK    c0  d\n"), "{text}");
        assert!(text.contains("FAIL  c1  d; fix: h\n"), "{text}");
        assert!(text.ends_with("worst: FAIL (exit status 1)\n"), "{text}");
        let multi = Check::fail("x", "a\n  b\n", "h");
        assert_eq!(multi.detail, "a; b");
        let listed = Check::fail("x", "bad at k1\nand also:\n  - k2: y\n  - k3: z", "h");
        assert_eq!(listed.detail, "bad at k1; and also: k2: y; k3: z");
    }

    #[test]
    fn json_names_every_check_and_the_worst() {
        let v = report(&[Status::Ok, Status::Warn]).to_json();
        assert_eq!(v["worst"], "warn");
        assert_eq!(v["checks"][1]["status"], "warn");
        assert_eq!(v["checks"][0]["hint"], serde_json::Value::Null);
    }
}
