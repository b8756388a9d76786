//! The command line: parses arguments, calls the library, turns errors into
//! exit codes. Nothing here decides how the runtime behaves.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{self, RunError, RunOptions};
use evergreen_group::ValidationError;
use evergreen_ops::control::Request;
use evergreen_ops::store::{StoreError, VersionMeta, VersionStore};

/// Evergreen runs AWS IoT Greengrass V1 style groups — connectors and
/// functions wired by subscriptions — on Linux gateways.
#[derive(Debug, Parser)]
#[command(name = "evergreen", version, about, long_about = None)]
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
    },
    /// Check a group file and print every error with its JSON path.
    ///
    /// Without FILE, checks the embedded default group. Exit status 0 when
    /// valid, 1 when invalid, 78 when the configuration is.
    Validate {
        /// Group file to check [default: the embedded default group].
        file: Option<PathBuf>,
        /// Core configuration file (for allowFunctionsToRunAsRoot and the core thing).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Greengrass V1 Python functions: package a function's directory.
    Function {
        #[command(subcommand)]
        command: FunctionCommand,
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
    Status {
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
    Reset {
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
    /// under <root>/secrets (see the README's "Secrets" section). A value is
    /// used from the next deployment on.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// List the connectors built into this binary, with their parameters and topics.
    Connectors,
    /// Check whether this host can run container mode (GreengrassContainer):
    /// kernel, namespaces, cgroups and controllers, no_new_privs, privileges.
    ///
    /// Exit status 0 when it can, 1 when it cannot (NoContainer still works).
    Check,
    /// Print the embedded default group, a starting point for your own.
    DefaultGroup,
    /// Run a built-in connector over stdio (used by the supervisor).
    #[command(hide = true)]
    Connector {
        /// Connector name, as in its ARN.
        name: String,
    },
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
pub enum CertsCommand {
    /// Create the group CA (kept if it exists, unless --force) and a server
    /// certificate (ECDSA P-256) for localhost and each --host.
    Init {
        /// Another DNS name or IP address devices use to reach this gateway.
        #[arg(long, value_name = "NAME")]
        host: Vec<String>,
        /// Replace an existing CA (every device certificate must be issued again).
        #[arg(long)]
        force: bool,
        /// RSA 2048 keys instead of ECDSA P-256 (for devices without ECDSA).
        #[arg(long)]
        rsa: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Issue a device key and certificate whose subject CN is THING (its
    /// thing name, which is also its MQTT client id).
    Device {
        thing: String,
        /// An RSA 2048 key instead of ECDSA P-256.
        #[arg(long)]
        rsa: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Store (or replace) the value of secret NAME: a Secrets Manager secret
    /// name (`greengrass-TwilioAuthToken`, matching the resource ARN
    /// `…:secret:greengrass-TwilioAuthToken-AbCdEf`) or a full secret ARN.
    ///
    /// The bytes are stored exactly as read (no newline is stripped); valid
    /// UTF-8 becomes a string secret (SecretString), anything else binary
    /// (SecretBinary). Exit status 0 when stored, 1 otherwise.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["from_file", "stdin"])))]
    Put {
        /// A Secrets Manager secret name or secret ARN.
        name: String,
        /// Read the value from FILE.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        /// Read the value from standard input.
        #[arg(long)]
        stdin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the stored secrets: name, type, size, when stored (never values).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a stored secret. Exit status 0 when removed, 1 when it was not stored.
    Rm {
        /// The name as stored (see `evergreen secrets list`).
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
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
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Validate a group file as `evergreen run` would and store it as an
    /// immutable version under <root>/deployments/versions.
    ///
    /// Prints the version id (the SHA-256 of the stored canonical group) on
    /// the first line of stdout. Storing the same group again prints the same
    /// id and writes nothing. Exit status 0 when stored, 1 when the group is
    /// invalid (every error is printed) or the store fails, 78 when the group
    /// file or configuration cannot be read.
    CreateVersion {
        /// Group file to store.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the stored versions, newest first.
    List {
        /// Print JSON (full ids and all metadata) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write a stored version and every program and code directory it runs
    /// as one bundle file (a tar): what `group import` or `deploy` on another
    /// gateway takes.
    ///
    /// Exit status 0 when written, 1 otherwise.
    Export {
        /// Version id, or a unique prefix of at least 6 hex digits.
        id: String,
        /// The bundle to write [default: group-<short id>.tar in the current directory].
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Store the version in a bundle (`group export`), every digest checked
    /// and the group validated, as `create-version` stores a file.
    ///
    /// Prints the version id on the first line of stdout. Exit status 0 when
    /// stored, 1 when the bundle is damaged, invalid or cannot be stored.
    Import {
        /// The bundle file.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print a stored version's group, its content checked against its id.
    Show {
        /// Version id, or a unique prefix of at least 6 hex digits.
        id: String,
        /// Print its metadata and group as one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Entry point of the `evergreen` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            group,
            root,
            config,
        } => match crate::run::run(RunOptions {
            config,
            group,
            root,
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("evergreen: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::Validate { file, config } => {
            let name = file.as_ref().map_or_else(
                || "(embedded default group)".to_string(),
                |f| f.display().to_string(),
            );
            match app::validate_file(file.as_deref(), config.as_deref()) {
                Ok(summary) => {
                    println!("{name}: valid ({summary})");
                    ExitCode::SUCCESS
                }
                Err(app::RunError::Group(evergreen_group::LoadError::Invalid {
                    errors, ..
                })) => print_invalid(&name, &errors),
                Err(e) => {
                    eprintln!("evergreen: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Group { command } => group(command),
        Command::Function {
            command: FunctionCommand::Package { dir, output },
        } => package_function(&dir, output),
        Command::Deploy { target, conn } => deploy(&target, conn),
        Command::Redeploy {
            deployment_id,
            conn,
        } => deployment_call(&conn, &Request::Redeploy { deployment_id }),
        Command::Reset { conn } => deployment_call(&conn, &Request::Reset),
        Command::Deployments { conn } => deployments(&conn),
        Command::Restart { component, conn } => restart(&component, &conn),
        Command::Status { conn } => status(conn.json, conn.socket, conn.config, conn.root),
        Command::Logs(args) => crate::tail::command(&args),
        Command::DefaultGroup => {
            print!("{}", app::DEFAULT_GROUP);
            ExitCode::SUCCESS
        }
        Command::Check => evergreen_runtime::sandbox::check::command(),
        Command::Certs { command } => certs(command),
        Command::Connectors => {
            print!("{}", app::describe_connectors());
            ExitCode::SUCCESS
        }
        Command::Secrets { command } => secrets(command),
        Command::Connector { name } => crate::catalogue::run_connector(&name),
    }
}

/// `evergreen function package DIR`.
fn package_function(dir: &std::path::Path, output: Option<PathBuf>) -> ExitCode {
    let trimmed = dir.components().as_path();
    let out = output.unwrap_or_else(|| {
        let mut name = trimmed.file_name().unwrap_or_default().to_os_string();
        name.push(".zip");
        trimmed.with_file_name(name)
    });
    match crate::package::package(dir, &out) {
        Ok(report) => {
            println!("{}", out.display());
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

/// Every validation error, one per line, as `evergreen validate` prints them.
fn print_invalid(name: &str, errors: &[ValidationError]) -> ExitCode {
    for e in errors {
        println!("{name}: {e}");
    }
    eprintln!("{name}: {} error(s)", errors.len());
    ExitCode::from(1)
}

fn run_failed(e: &RunError) -> ExitCode {
    eprintln!("evergreen: {e}");
    ExitCode::from(e.exit_code())
}

fn store_failed(e: &StoreError) -> ExitCode {
    eprintln!("evergreen: {e}");
    ExitCode::from(e.exit_code())
}

fn group(command: GroupCommand) -> ExitCode {
    match command {
        GroupCommand::CreateVersion { file, store } => create_version(&file, store),
        GroupCommand::List { json, store } => list_versions(json, store),
        GroupCommand::Show { id, json, store } => show_version(&id, json, store),
        GroupCommand::Export { id, output, store } => export_version(&id, output, store),
        GroupCommand::Import { file, store } => {
            let cfg = match app::load_config(store.config.as_deref(), store.root) {
                Ok(cfg) => cfg,
                Err(e) => return run_failed(&e),
            };
            match import_bundle(&file, &cfg) {
                Ok(id) => {
                    println!("{id}");
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
    }
}

fn export_version(id: &str, output: Option<PathBuf>, args: StoreArgs) -> ExitCode {
    let store = match open_store(args) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let full = match store.resolve(id) {
        Ok(full) => full,
        Err(e) => return store_failed(&e),
    };
    let output = output.unwrap_or_else(|| PathBuf::from(format!("group-{}.tar", full.short())));
    // Written beside its final name and renamed, so a failed export leaves no half bundle.
    let tmp = output.with_extension("tar.part");
    let written = std::fs::File::create(&tmp)
        .map_err(|source| evergreen_ops::bundle::BundleError::Io {
            path: tmp.clone(),
            source,
        })
        .and_then(|file| {
            let mut out = std::io::BufWriter::new(file);
            evergreen_ops::bundle::export(&store, full.as_str(), &mut out)?;
            out.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .map_err(|source| evergreen_ops::bundle::BundleError::Io {
                    path: tmp.clone(),
                    source,
                })
        })
        .and_then(|()| {
            std::fs::rename(&tmp, &output).map_err(|source| {
                evergreen_ops::bundle::BundleError::Io {
                    path: output.clone(),
                    source,
                }
            })
        });
    match written {
        Ok(()) => {
            println!("{}", output.display());
            eprintln!(
                "group version {} exported to {}",
                full.short(),
                output.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            eprintln!("evergreen: {e}");
            ExitCode::from(1)
        }
    }
}

/// Imports a bundle into the store of `cfg`'s root; the version id, or the exit code after
/// saying why not.
fn import_bundle(file: &Path, cfg: &evergreen_config::CoreConfig) -> Result<String, ExitCode> {
    let name = file.display().to_string();
    let store = VersionStore::open(cfg.write_dir());
    let imported = std::fs::File::open(file)
        .map_err(|source| evergreen_ops::bundle::BundleError::Io {
            path: file.to_path_buf(),
            source,
        })
        .and_then(|f| {
            evergreen_ops::bundle::import(
                &store,
                &app::loader(cfg),
                std::io::BufReader::new(f),
                &name,
            )
        });
    match imported {
        Ok(created) => {
            eprintln!(
                "{name}: {} group version {}",
                if created.existed {
                    "already stored:"
                } else {
                    "imported"
                },
                created.id.short()
            );
            Ok(created.id.as_str().to_string())
        }
        Err(evergreen_ops::bundle::BundleError::Invalid(evergreen_group::LoadError::Invalid {
            errors,
            ..
        })) => Err(print_invalid(&name, &errors)),
        Err(e) => {
            eprintln!("evergreen: {name}: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// The secrets directory of the configured root, and the name prefix rule.
fn secrets_dir(args: StoreArgs) -> Result<(PathBuf, String), ExitCode> {
    app::load_config(args.config.as_deref(), args.root)
        .map(|cfg| {
            (
                cfg.write_dir().join("secrets"),
                cfg.evergreen.secret_name_prefix.clone(),
            )
        })
        .map_err(|e| run_failed(&e))
}

fn secrets(command: SecretsCommand) -> ExitCode {
    use evergreen_secrets::{names, LocalStore, MAX_SECRET_BYTES};
    use std::io::Read;
    match command {
        SecretsCommand::Put {
            name,
            from_file,
            stdin,
            store,
        } => {
            let (dir, prefix) = match secrets_dir(store) {
                Ok(d) => d,
                Err(code) => return code,
            };
            // Read one byte over the limit so an oversize value is refused,
            // not cut.
            let limit = MAX_SECRET_BYTES as u64 + 1;
            let mut value = Vec::new();
            let read = match (&from_file, stdin) {
                (Some(file), _) => std::fs::File::open(file)
                    .and_then(|f| f.take(limit).read_to_end(&mut value))
                    .map_err(|e| format!("cannot read {}: {e}", file.display())),
                (None, _) => std::io::stdin()
                    .lock()
                    .take(limit)
                    .read_to_end(&mut value)
                    .map_err(|e| format!("cannot read standard input: {e}")),
            };
            if let Err(e) = read {
                eprintln!("evergreen: {e}");
                return ExitCode::from(1);
            }
            let result = LocalStore::new(&dir).put(&name, &value);
            value.iter_mut().for_each(|b| *b = 0);
            match result {
                Ok(info) => {
                    eprintln!(
                        "evergreen: stored secret {:?} ({}, {} bytes) in {}; deploy the group again to use it",
                        info.name,
                        info.kind.as_str(),
                        info.size,
                        dir.display()
                    );
                    let plain = names::arn_name(&name).unwrap_or(&name);
                    if !prefix.is_empty() && !plain.starts_with(&prefix) {
                        eprintln!(
                            "evergreen: note: {plain:?} does not start with {prefix:?}; groups may only use secrets \
                             named {prefix}… unless evergreen.secretNamePrefix says otherwise"
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("evergreen: cannot store secret {name:?}: {e}");
                    ExitCode::from(1)
                }
            }
        }
        SecretsCommand::List { store } => {
            let (dir, _) = match secrets_dir(store) {
                Ok(d) => d,
                Err(code) => return code,
            };
            let (list, problems) = LocalStore::new(&dir).list();
            if list.is_empty() && problems.is_empty() {
                eprintln!("no secrets stored in {}", dir.display());
            } else if !list.is_empty() {
                println!("{:<48}  {:<6}  {:>6}  STORED", "NAME", "TYPE", "SIZE");
                for s in &list {
                    println!(
                        "{:<48}  {:<6}  {:>6}  {}",
                        s.name,
                        s.kind.as_str(),
                        s.size,
                        s.stored_at
                    );
                }
            }
            for p in &problems {
                eprintln!("evergreen: {p}");
            }
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        SecretsCommand::Rm { name, store } => {
            let (dir, _) = match secrets_dir(store) {
                Ok(d) => d,
                Err(code) => return code,
            };
            match LocalStore::new(&dir).remove(&name) {
                Ok(true) => {
                    eprintln!(
                        "evergreen: removed secret {name:?}; deployments from now on cannot use it"
                    );
                    ExitCode::SUCCESS
                }
                Ok(false) => {
                    eprintln!("evergreen: no secret {name:?} stored in {}", dir.display());
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("evergreen: cannot remove secret {name:?}: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn open_store(args: StoreArgs) -> Result<VersionStore, ExitCode> {
    app::load_config(args.config.as_deref(), args.root)
        .map(|cfg| VersionStore::open(cfg.write_dir()))
        .map_err(|e| run_failed(&e))
}

fn create_version(file: &Path, args: StoreArgs) -> ExitCode {
    let name = file.display().to_string();
    let cfg = match app::load_config(args.config.as_deref(), args.root) {
        Ok(cfg) => cfg,
        Err(e) => return run_failed(&e),
    };
    let group = match app::read_group_file(file, &cfg) {
        Ok(group) => group,
        Err(RunError::Group(evergreen_group::LoadError::Invalid { errors, .. })) => {
            return print_invalid(&name, &errors)
        }
        Err(e) => return run_failed(&e),
    };
    let store = VersionStore::open(cfg.write_dir());
    match store.create(&group.text, &group.base_dir, Some(file), &group.plan) {
        Ok(created) => {
            // stdout carries only the id, so `id=$(evergreen group create-version f)` works.
            println!("{}", created.id);
            let dir = store.version_dir(&created.id);
            if created.existed {
                eprintln!(
                    "{name}: already stored as version {} in {}; nothing written",
                    created.id.short(),
                    dir.display()
                );
            } else {
                eprintln!(
                    "{name}: stored as version {} ({}) in {}",
                    created.id.short(),
                    evergreen_ops::store::VersionSummary::of(&group.plan),
                    dir.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => store_failed(&e),
    }
}

fn list_versions(json: bool, args: StoreArgs) -> ExitCode {
    let store = match open_store(args) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let list = match store.list() {
        Ok(list) => list,
        Err(e) => return store_failed(&e),
    };
    if json {
        match serde_json::to_string_pretty(&list.versions) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("evergreen: cannot encode the list: {e}");
                return ExitCode::from(1);
            }
        }
    } else if list.versions.is_empty() && list.problems.is_empty() {
        eprintln!("no group versions stored in {}", store.dir().display());
    } else {
        print!("{}", version_table(&list.versions));
    }
    // The good versions are still listed; a bad one fails the command so a
    // script notices.
    for problem in &list.problems {
        eprintln!("evergreen: {problem}");
    }
    if list.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn version_table(versions: &[VersionMeta]) -> String {
    let mut out = format!(
        "{:<12}  {:<24}  {:>10}  {:>13}  SOURCE\n",
        "ID", "CREATED", "COMPONENTS", "SUBSCRIPTIONS"
    );
    for v in versions {
        out.push_str(&format!(
            "{:<12}  {:<24}  {:>10}  {:>13}  {}\n",
            v.id.short(),
            v.created,
            v.summary.components,
            v.summary.subscriptions,
            v.source
                .as_ref()
                .map_or_else(|| "-".to_string(), |p| p.display().to_string())
        ));
    }
    out
}

fn show_version(id: &str, json: bool, args: StoreArgs) -> ExitCode {
    let store = match open_store(args) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let version = match store.load(id) {
        Ok(version) => version,
        Err(e) => return store_failed(&e),
    };
    let shown = serde_json::from_str::<serde_json::Value>(&version.group).and_then(|group| {
        if json {
            serde_json::to_string_pretty(&serde_json::json!({
                "meta": version.meta,
                "group": group,
            }))
        } else {
            serde_json::to_string_pretty(&group)
        }
    });
    match shown {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        // The content hashed to its id, so this is our own bug, not the disk's.
        Err(e) => {
            eprintln!("evergreen: version {} cannot be printed: {e}", version.id());
            ExitCode::from(1)
        }
    }
}

fn key_alg(rsa: bool) -> evergreen_mqtt::certs::KeyAlg {
    if rsa {
        evergreen_mqtt::certs::KeyAlg::Rsa2048
    } else {
        evergreen_mqtt::certs::KeyAlg::EcdsaP256
    }
}

/// `evergreen certs`: make the group CA, the server's and devices' certificates.
fn certs(command: CertsCommand) -> ExitCode {
    let (CertsCommand::Init { store, .. } | CertsCommand::Device { store, .. }) = &command;
    let cfg = match app::load_config(store.config.as_deref(), store.root.clone()) {
        Ok(cfg) => cfg,
        Err(e) => return run_failed(&e),
    };
    let root = cfg.root();
    let result = match command {
        CertsCommand::Init {
            host, force, rsa, ..
        } => evergreen_mqtt::certs::init_with(root, &host, force, key_alg(rsa)).map(|out| {
            if !out.created_ca {
                println!("kept the existing group CA");
            }
            println!("CA: {}", out.files.ca.display());
            println!("server certificate: {}", out.files.cert.display());
            println!("server key: {}", out.files.key.display());
        }),
        CertsCommand::Device { thing, rsa, .. } => {
            evergreen_mqtt::certs::device_with(root, &thing, key_alg(rsa)).map(|(cert, key)| {
                println!("certificate: {}", cert.display());
                println!("key: {}", key.display());
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evergreen: {e}");
            ExitCode::from(1)
        }
    }
}

fn status(
    json: bool,
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
    root: Option<PathBuf>,
) -> ExitCode {
    use evergreen_ops::control::{Client, Reply, Request, CLIENT_TIMEOUT};
    let path = match socket {
        Some(path) => path,
        None => match app::load_config(config.as_deref(), root) {
            Ok(cfg) => cfg.control_socket(),
            Err(e) => return run_failed(&e),
        },
    };
    let failed = |e: &dyn std::fmt::Display| {
        eprintln!("evergreen: {e}");
        ExitCode::from(1)
    };
    let mut client = match Client::connect(&path, CLIENT_TIMEOUT) {
        Ok(client) => client,
        Err(e) => return failed(&e),
    };
    if json {
        // The document as the runtime sent it, fields this build does not
        // know included.
        let status = client
            .call_raw(&Request::Status)
            .map(|mut answer| answer.remove("status"));
        match status {
            Ok(Some(status)) => match serde_json::to_string_pretty(&status) {
                Ok(text) => println!("{text}"),
                Err(e) => return failed(&e),
            },
            Ok(None) => return failed(&"the runtime's answer has no status"),
            Err(e) => return failed(&e),
        }
    } else {
        match client.call(&Request::Status) {
            Ok(Reply::Status { status }) => print!("{status}"),
            Ok(other) => return failed(&format!("unexpected answer: {other:?}")),
            Err(e) => return failed(&e),
        }
    }
    ExitCode::SUCCESS
}

/// How to reach the running runtime.
#[derive(Debug, clap::Args)]
pub struct ConnArgs {
    /// Print the answer as JSON instead of a table or text.
    #[arg(long)]
    json: bool,
    /// Control socket [default: `evergreen.controlSocket`, else <root>/run/control.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Core configuration file [default: /etc/evergreen/config.json if present].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Runtime root; overrides `evergreen.root` in the configuration.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

/// A deployment waits for readiness and may roll back: allow far more than
/// a status call.
const DEPLOY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

fn connect(
    conn: &ConnArgs,
    timeout: std::time::Duration,
) -> Result<evergreen_ops::control::Client, ExitCode> {
    let path = match &conn.socket {
        Some(path) => path.clone(),
        None => match app::load_config(conn.config.as_deref(), conn.root.clone()) {
            Ok(cfg) => cfg.control_socket(),
            Err(e) => return Err(run_failed(&e)),
        },
    };
    evergreen_ops::control::Client::connect(&path, timeout).map_err(|e| {
        eprintln!("evergreen: {e}");
        ExitCode::from(1)
    })
}

fn deploy(target: &str, conn: ConnArgs) -> ExitCode {
    let file = Path::new(target);
    let version = if file.is_file() {
        // A file is stored as a version first, so what is deployed is
        // immutable and can be redeployed later.
        let cfg = match app::load_config(conn.config.as_deref(), conn.root.clone()) {
            Ok(cfg) => cfg,
            Err(e) => return run_failed(&e),
        };
        if evergreen_ops::bundle::is_bundle(file) {
            return match import_bundle(file, &cfg) {
                Ok(version) => deployment_call(&conn, &Request::Deploy { version }),
                Err(code) => code,
            };
        }
        let group = match app::read_group_file(file, &cfg) {
            Ok(group) => group,
            Err(RunError::Group(evergreen_group::LoadError::Invalid { errors, .. })) => {
                return print_invalid(target, &errors)
            }
            Err(e) => return run_failed(&e),
        };
        match VersionStore::open(cfg.write_dir()).create(
            &group.text,
            &group.base_dir,
            Some(file),
            &group.plan,
        ) {
            Ok(created) => {
                eprintln!("{target}: stored as group version {}", created.id);
                created.id.as_str().to_string()
            }
            Err(e) => return store_failed(&e),
        }
    } else {
        target.to_string()
    };
    deployment_call(&conn, &Request::Deploy { version })
}

/// Sends one request to the running runtime: its reply, or the exit code
/// after saying why there is none (no runtime, refused, a failed request).
fn ask(
    conn: &ConnArgs,
    timeout: std::time::Duration,
    request: &Request,
) -> Result<evergreen_ops::control::Reply, ExitCode> {
    let mut client = connect(conn, timeout)?;
    client.call(request).map_err(|e| {
        eprintln!("evergreen: {e}");
        ExitCode::from(1)
    })
}

fn unexpected(reply: &evergreen_ops::control::Reply) -> ExitCode {
    eprintln!("evergreen: unexpected answer: {reply:?}");
    ExitCode::from(1)
}

/// Prints `value` as pretty JSON (`--json`).
fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("evergreen: {e}"),
    }
}

fn deployment_call(conn: &ConnArgs, request: &Request) -> ExitCode {
    use evergreen_ops::control::Reply;
    use evergreen_ops::deploy::DeploymentStatus;
    let deployment = match ask(conn, DEPLOY_TIMEOUT, request) {
        Ok(Reply::Deployment { deployment }) => deployment,
        Ok(other) => return unexpected(&other),
        Err(code) => return code,
    };
    if conn.json {
        print_json(&deployment);
    } else {
        let version = deployment.group_version.as_deref().unwrap_or("-");
        println!(
            "deployment {} ({:?}) of group version {}: {:?}",
            deployment.deployment_id,
            deployment.deployment_type,
            version,
            deployment.deployment_status
        );
        if let Some(error) = &deployment.error_message {
            println!("  {error}");
        }
        for detail in &deployment.error_details {
            println!("  {detail}");
        }
    }
    if deployment.deployment_status == DeploymentStatus::Success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn deployments(conn: &ConnArgs) -> ExitCode {
    use evergreen_ops::control::{Reply, CLIENT_TIMEOUT};
    let deployments = match ask(conn, CLIENT_TIMEOUT, &Request::Deployments) {
        Ok(Reply::Deployments { deployments }) => deployments,
        Ok(other) => return unexpected(&other),
        Err(code) => return code,
    };
    if conn.json {
        print_json(&deployments);
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<15} {:<16} {:<13} {:<11} {:<25} ERROR",
        "ID", "TYPE", "VERSION", "STATUS", "CREATED"
    );
    for d in deployments {
        let version = d
            .group_version
            .as_deref()
            .map_or("-", |v| &v[..v.len().min(12)]);
        println!(
            "{:<15} {:<16} {:<13} {:<11} {:<25} {}",
            d.deployment_id,
            format!("{:?}", d.deployment_type),
            version,
            format!("{:?}", d.deployment_status),
            d.created_at,
            d.error_message.as_deref().unwrap_or("")
        );
    }
    ExitCode::SUCCESS
}

fn restart(component: &str, conn: &ConnArgs) -> ExitCode {
    use evergreen_ops::control::{Reply, CLIENT_TIMEOUT};
    let request = Request::Restart {
        component: component.to_string(),
    };
    match ask(conn, CLIENT_TIMEOUT, &request) {
        Ok(Reply::Restart { arn, message }) => {
            if conn.json {
                print_json(&serde_json::json!({ "arn": arn, "message": message }));
            } else {
                println!("{arn}: {message}");
            }
            ExitCode::SUCCESS
        }
        Ok(other) => unexpected(&other),
        Err(code) => code,
    }
}
