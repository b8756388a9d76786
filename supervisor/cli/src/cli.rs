//! The command line: parses arguments, calls the library, turns errors into
//! exit codes. Nothing here decides how the runtime behaves. This module holds
//! the top-level commands and the dispatch; each family of subcommands sits in
//! its own child: `versions` (`group …`), `control` (the commands that ask a
//! running runtime), `secrets`, `certs` and `import`.

mod certs;
mod control;
mod fleet;
mod import;
mod rollout;
mod secrets;
mod versions;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{self, RunError, RunOptions};
use evergreen_group::ValidationError;
use evergreen_ops::control::Request;
use evergreen_ops::store::StoreError;
use evergreen_runtime::logs::LogFormat;

pub use certs::CertsCommand;
pub use control::ConnArgs;
pub use fleet::FleetCommand;
pub use import::ImportArgs;
pub use secrets::SecretsCommand;
pub use versions::GroupCommand;

/// Evergreen runs AWS IoT Greengrass V1 style groups — connectors and
/// functions wired by subscriptions — on Linux gateways.
#[derive(Debug, Parser)]
#[command(
    name = "evergreen",
    version = evergreen_ops::release::version(),
    about = "Edge runtime for AWS IoT Greengrass V1 style groups",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a group until SIGINT or SIGTERM.
    ///
    /// Without --group, runs the embedded default group: the DeviceDefender
    /// connector reports the machine's listening ports, connections and
    /// traffic every 10 s and the Heartbeat connector its uptime and load every
    /// 5 s, both routed to the MessageLog connector, whose log shows each message.
    Run {
        /// Group file (JSON; top-level keys are the definition-version names).
        #[arg(long, value_name = "FILE")]
        group: Option<PathBuf>,
        /// Runtime root (logs, state); overrides `evergreen.root` in the configuration.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Core configuration file [default: /etc/evergreen/config.json if present].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// How the runtime's own log lines are written: `greengrass`
        /// (`[time][LEVEL]-(arn) …`, as V1) or `json` (one object per line, for journald or
        /// Loki). Component logs keep Greengrass's format.
        #[arg(long, value_name = "FORMAT", default_value = "greengrass")]
        log_format: LogFormatArg,
        /// The runtime's own log level: DEBUG, INFO, WARN, ERROR or FATAL [default:
        /// `evergreen.logLevel`, else the group's GreengrassSystem Logger definition, else INFO].
        #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
        log_level: Option<evergreen_ipc::LogLevel>,
    },
    /// Check a group file and print every error with its JSON path.
    ///
    /// Without FILE, checks the embedded default group. Exit status 0 when
    /// valid, 1 when invalid, 78 when the configuration is.
    Validate {
        /// Group file to check [default: the embedded default group].
        file: Option<PathBuf>,
        /// Print `{"file", "valid", "summary", "errors": [{"path", "id", "message"}]}`.
        #[arg(long)]
        json: bool,
        /// Core configuration file (for allowFunctionsToRunAsRoot and the core thing).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Make a group file from a Greengrass V1 group as you saved it: `aws greengrass
    /// get-group-version` and `get-*-definition-version` outputs (files, a directory of them,
    /// or one combined JSON), or CloudFormation templates with AWS::Greengrass resources (JSON or
    /// YAML, short-form tags included).
    ///
    /// Refs, GetAtts and the other intrinsic functions are resolved; parameters take their
    /// Default, AWS::Region and AWS::AccountId --region and --account. A Python function gets
    /// Runtime, Executable and CodeUri from its AWS::Lambda::Function when the template has it
    /// (inline code is written under functions/ beside -o FILE). Everything the import could
    /// not map — code not in the input, unknown connectors, machine-learning models, values only
    /// CloudFormation knew — is listed on stderr with what to do (see docs/import.md). The group
    /// goes to -o FILE or stdout. Exit status 0 when complete (it passes `evergreen validate`),
    /// 2 when written with things to finish, 1 when the input is unusable (nothing written).
    Import(ImportArgs),
    /// Greengrass V1 Python functions: package a function's directory.
    Function {
        #[command(subcommand)]
        command: FunctionCommand,
    },
    /// Fleet deployments: make a signing key, sign a deployment document for a bundle.
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Store validated groups as immutable versions, and inspect them.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Show the running runtime and each component: state, pid, uptime,
    /// restarts, memory, messages in and out, queue and drops.
    ///
    /// Asks the runtime over its control socket. Exit status 0 with an
    /// answer, 1 when no runtime answers or the socket refuses, 78 when the
    /// configuration cannot be read.
    ///
    /// With --page-url, prints the read-only status page's URL with its access token instead
    /// (`evergreen.statusPage`; exit status 1 when the page is off).
    Status {
        /// Print the status page's URL, with its token, to open in a browser.
        #[arg(long)]
        page_url: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Print the last lines of a component's log, or the runtime's, and with
    /// -f follow it.
    ///
    /// Asks the running runtime over its control socket where the log is,
    /// then reads the file (and its rotated predecessors when needed). A
    /// follower keeps following across rotations, also after the runtime
    /// stops, until interrupted. Exit status 0, 1 when no runtime answers or
    /// the component is unknown or ambiguous, 78 when the configuration
    /// cannot be read.
    Logs(crate::tail::LogsArgs),
    /// Deploy a stored group version (id or unique prefix), a group file
    /// (stored as a version with its programs and code first), or a group
    /// bundle (`group export`; imported first, every digest checked), to the
    /// running runtime.
    ///
    /// Only what changed restarts; if a started component does not become
    /// Ready, the previous group is deployed again. Exit status 0 on
    /// success, 1 on failure.
    Deploy {
        /// Group version id (or prefix), a group file or a bundle.
        target: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Deploy again the group version of an earlier deployment.
    Redeploy {
        /// A `DeploymentId` from `evergreen deployments`.
        deployment_id: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Stop every component of the running runtime (deploy the empty group).
    ///
    /// Asks for confirmation on the terminal first (answer `yes` or `y`) unless --yes. With
    /// standard input not a terminal (a script, a pipe) and no --yes, refuses: exit status
    /// 64. Exit status 0 when reset, 1 when declined, failed or no runtime answers.
    Reset {
        /// Do not ask: reset at once (for scripts).
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Start a component again now, by name, Id or ARN: a Failed one without
    /// waiting for its cool-down, a running one after a graceful stop.
    Restart {
        component: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Stop a component, by name, Id or ARN, and keep it stopped: no restart policy, message
    /// or cool-down starts it again until `evergreen start` or a new deployment (a restart
    /// of the runtime starts it too). `status` shows it `Stopped (operator)`.
    ///
    /// Answers once its child is gone (stop, then SIGTERM, then SIGKILL, as for a removal).
    /// Exit status 0 when stopped, 1 when no runtime answers or the component is unknown or
    /// ambiguous.
    Stop {
        component: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Start a component that `evergreen stop` stopped: a pinned one now, an on-demand one at
    /// its next message. A component that was not stopped by an operator is left as it is.
    ///
    /// Exit status 0, 1 when no runtime answers or the component is unknown or ambiguous.
    Start {
        component: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// The running runtime's deployment history, newest first.
    Deployments {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Certificates for the local MQTT server without the cloud: a group CA,
    /// the server's certificate and device certificates, written owner-only
    /// (0600, directory 0700) under <root>/certs/local.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Secret values for the group's secret resources, stored encrypted
    /// under <root>/secrets (see docs/services.md, "Secrets"). A value is
    /// used from the next deployment on.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// List the connectors built into this binary, with their parameters and topics.
    Connectors {
        /// Print `{"connectors": [{"name", "versions", "parameters": […], …}]}`.
        #[arg(long)]
        json: bool,
    },
    /// The health check to run first: configuration and group, certificates, listeners'
    /// ports, the upstream endpoint (DNS, TCP, TLS with the core's certificate), clock, disk
    /// space and container support; one line per check, OK, WARN or FAIL with a fix.
    ///
    /// Exit status 0 when every check is OK, 2 when the worst is a warning, 1 with any
    /// failure. With --container, only whether this host can run container mode
    /// (GreengrassContainer): exit 0 when it can, 1 when it cannot.
    Check(CheckArgs),
    /// Write one archive for a bug report: versions, the configuration and the group (secrets
    /// and keys redacted), status, deployment history, the last lines of every log, `check`'s
    /// report and kernel and cgroup facts, with a MANIFEST.txt of what is in it.
    ///
    /// Prints the archive's path (written 0600). Works when the runtime is down: what could not
    /// be collected is listed in the manifest and on stderr. Exit status 0 when written, 1 when
    /// not.
    SupportBundle(crate::bundle::BundleArgs),
    /// Print the embedded default group, a starting point for your own.
    DefaultGroup,
    /// Print the completion script for SHELL, generated from this binary's commands.
    ///
    /// bash: `evergreen completions bash > /etc/bash_completion.d/evergreen` (the packages
    /// install it); zsh: into a directory of `$fpath` as `_evergreen`; fish: into
    /// `~/.config/fish/completions/evergreen.fish`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: crate::docs::Shell,
    },
    /// Print the man page evergreen(1), or with --dir write it and one page per command
    /// (evergreen-status.1, …) into DIR: generated from the same definitions as --help.
    #[command(hide = true)]
    Man {
        /// Write every page into DIR instead of printing evergreen(1).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run a built-in connector over stdio (used by the supervisor).
    #[command(hide = true)]
    Connector {
        /// Connector name, as in its ARN.
        name: String,
    },
}

/// `evergreen check`'s options.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Core configuration file [default: /etc/evergreen/config.json if present].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Runtime root; overrides `evergreen.root` in the configuration.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Group file to check [default: the last good deployment, else the embedded default
    /// group: what `evergreen run` would start].
    #[arg(long, value_name = "FILE")]
    group: Option<PathBuf>,
    /// Print `{"checks":[{"name","status","detail","hint"}],"worst":…}` instead of text.
    #[arg(long)]
    json: bool,
    /// Bound on each network step (DNS, TCP connect, TLS handshake), in seconds.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    timeout_secs: u64,
    /// Only the container-mode report (kernel, namespaces, cgroups, privileges, probe).
    #[arg(long, conflicts_with_all = ["config", "root", "group", "json"])]
    container: bool,
}

/// Where the `group` commands find the runtime root.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Runtime root; overrides `evergreen.root` in the configuration.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Core configuration file [default: /etc/evergreen/config.json if present].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum FunctionCommand {
    /// Zip a Python function's directory (its handler module and what it
    /// vendors, such as greengrasssdk) into the file a group's CodeUri names.
    ///
    /// Prints the archive's path. Exit status 0 when written, 1 otherwise.
    Package {
        /// The function's directory.
        dir: PathBuf,
        /// The archive to write [default: DIR.zip beside DIR].
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Print `{"archive", "files", "bytes", "hasSdk"}` instead of the archive's path.
        #[arg(long)]
        json: bool,
    },
}

/// A Logger definition's level name, in any case (`debug` or `DEBUG`).
fn parse_level(s: &str) -> Result<evergreen_ipc::LogLevel, String> {
    evergreen_ipc::LogLevel::parse(&s.to_ascii_uppercase())
        .ok_or_else(|| format!("{s:?} is not a level: DEBUG, INFO, WARN, ERROR or FATAL"))
}

/// `run --log-format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    Greengrass,
    Json,
}

/// Entry point of the `evergreen` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            group,
            root,
            config,
            log_format,
            log_level,
        } => match crate::run::run(RunOptions {
            log_level,
            config,
            group,
            root,
            log_format: match log_format {
                LogFormatArg::Greengrass => LogFormat::Greengrass,
                LogFormatArg::Json => LogFormat::Json,
            },
        }) {
            Ok(crate::run::Stopped::Signal) => ExitCode::SUCCESS,
            Ok(crate::run::Stopped::Restart(cfg)) => crate::launch::restart(&cfg),
            Err(e) => {
                eprintln!("evergreen: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::Validate { file, json, config } => {
            let name = file.as_ref().map_or_else(
                || "(embedded default group)".to_string(),
                |f| f.display().to_string(),
            );
            match app::validate_file(file.as_deref(), config.as_deref()) {
                Ok(summary) if json => {
                    print_json(&serde_json::json!({
                        "file": name,
                        "valid": true,
                        "summary": summary,
                        "errors": [],
                    }));
                    ExitCode::SUCCESS
                }
                Ok(summary) => {
                    println!("{name}: valid ({summary})");
                    ExitCode::SUCCESS
                }
                Err(app::RunError::Group(evergreen_group::LoadError::Invalid {
                    errors, ..
                })) => print_invalid(&name, &errors, json),
                Err(e) => {
                    eprintln!("evergreen: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Group { command } => versions::command(command),
        Command::Import(args) => import::command(args),
        Command::Fleet { command } => fleet::command(command),
        Command::Function {
            command: FunctionCommand::Package { dir, output, json },
        } => package_function(&dir, output, json),
        Command::Deploy { target, conn } => control::deploy(&target, conn),
        Command::Redeploy {
            deployment_id,
            conn,
        } => control::deployment_call(&conn, &Request::Redeploy { deployment_id }),
        Command::Reset { yes, conn } => match confirm_reset(yes) {
            Ok(()) => control::deployment_call(&conn, &Request::Reset),
            Err(code) => code,
        },
        Command::Deployments { conn } => control::deployments(&conn),
        Command::Restart { component, conn } => {
            control::component_call(control::ComponentOp::Restart, &component, &conn)
        }
        Command::Stop { component, conn } => {
            control::component_call(control::ComponentOp::Stop, &component, &conn)
        }
        Command::Start { component, conn } => {
            control::component_call(control::ComponentOp::Start, &component, &conn)
        }
        Command::Status {
            page_url: true,
            conn,
        } => control::page_url(&conn),
        Command::Status { conn, .. } => control::status(conn),
        Command::Logs(args) => crate::tail::command(&args),
        Command::SupportBundle(args) => crate::bundle::command(&args),
        Command::Completions { shell } => write_stdout(&crate::docs::completions(shell)),
        Command::Man { dir: None } => match crate::docs::man_pages() {
            Ok(pages) => match pages.into_iter().next() {
                Some((_, top)) => write_stdout(&top),
                None => ExitCode::from(1),
            },
            Err(e) => {
                eprintln!("evergreen: cannot render the man page: {e}");
                ExitCode::from(1)
            }
        },
        Command::Man { dir: Some(dir) } => match crate::docs::write_man_pages(&dir) {
            Ok(written) => {
                for path in written {
                    println!("{}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "evergreen: cannot write the man pages into {}: {e}",
                    dir.display()
                );
                ExitCode::from(1)
            }
        },
        Command::DefaultGroup => {
            print!("{}", app::DEFAULT_GROUP);
            ExitCode::SUCCESS
        }
        Command::Check(args) if args.container => evergreen_runtime::sandbox::check::command(),
        Command::Check(args) => crate::check::command(
            &crate::check::CheckOptions {
                config: args.config,
                root: args.root,
                group: args.group,
                timeout: std::time::Duration::from_secs(args.timeout_secs),
            },
            args.json,
        ),
        Command::Certs { command } => certs::command(command),
        Command::Connectors { json: true } => {
            print_json(&app::connectors_document());
            ExitCode::SUCCESS
        }
        Command::Connectors { json: false } => {
            print!("{}", app::describe_connectors());
            ExitCode::SUCCESS
        }
        Command::Secrets { command } => secrets::command(command),
        Command::Connector { name } => crate::catalogue::run_connector(&name),
    }
}

/// Writes generated text (a completion script, a man page) to stdout.
fn write_stdout(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evergreen: cannot write to standard output: {e}");
            ExitCode::from(1)
        }
    }
}

/// `evergreen function package DIR`.
fn package_function(dir: &std::path::Path, output: Option<PathBuf>, json: bool) -> ExitCode {
    let trimmed = dir.components().as_path();
    let out = output.unwrap_or_else(|| {
        let mut name = trimmed.file_name().unwrap_or_default().to_os_string();
        name.push(".zip");
        trimmed.with_file_name(name)
    });
    match crate::package::package(dir, &out) {
        Ok(report) => {
            if json {
                print_json(&serde_json::json!({
                    "archive": out.display().to_string(),
                    "files": report.files,
                    "bytes": report.bytes,
                    "hasSdk": report.has_sdk,
                }));
            } else {
                println!("{}", out.display());
            }
            eprintln!(
                "evergreen: {} files, {} bytes packaged",
                report.files, report.bytes
            );
            if !report.has_sdk {
                eprintln!(
                    "evergreen: note: no greengrasssdk/ in {}; a function that imports it needs it vendored \
                     (pip install --target {} greengrasssdk)",
                    dir.display(),
                    dir.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("evergreen: cannot package {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// `evergreen reset` stops everything: it goes ahead only with --yes or a `yes`/`y` typed
/// on the terminal. Without a terminal to ask on, it refuses rather than guess.
fn confirm_reset(yes: bool) -> Result<(), ExitCode> {
    use std::io::{BufRead, IsTerminal, Read, Write};
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        eprintln!(
            "evergreen: reset stops every component of the running runtime; standard input is not \
             a terminal to confirm on, so nothing was done (add --yes to reset without asking)"
        );
        return Err(ExitCode::from(crate::EXIT_USAGE));
    }
    eprint!("Stop every component of the running runtime (deploy the empty group)? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    // The answer is one short line: read at most a few bytes of it, so a paste cannot make
    // this hold an unbounded line.
    let read = stdin.lock().take(256).read_line(&mut answer);
    match read {
        Ok(_) if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") => Ok(()),
        Ok(_) => {
            eprintln!("evergreen: not reset");
            Err(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("evergreen: cannot read the answer: {e}; not reset");
            Err(ExitCode::from(1))
        }
    }
}

/// Every validation error, one per line, as `evergreen validate` prints them; with `json`,
/// the one document `validate --json` prints (`{"file", "valid": false, "errors": [{"path",
/// "id", "message"}]}`).
fn print_invalid(name: &str, errors: &[ValidationError], json: bool) -> ExitCode {
    if json {
        print_json(&serde_json::json!({
            "file": name,
            "valid": false,
            "errors": errors,
        }));
    } else {
        for e in errors {
            println!("{name}: {e}");
        }
    }
    eprintln!("{name}: {} error(s)", errors.len());
    ExitCode::from(1)
}

/// Prints `value` as the one pretty JSON document of a command's `--json`.
fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        // Our own documents (strings, numbers, lists) always encode; should one not, say so.
        Err(e) => eprintln!("evergreen: cannot encode the answer as JSON: {e}"),
    }
}

fn run_failed(e: &RunError) -> ExitCode {
    eprintln!("evergreen: {e}");
    ExitCode::from(e.exit_code())
}

fn store_failed(e: &StoreError) -> ExitCode {
    eprintln!("evergreen: {e}");
    ExitCode::from(e.exit_code())
}
