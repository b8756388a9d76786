//! The command line: parses arguments, calls the library, turns errors into
//! exit codes. Nothing here decides how the runtime behaves.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::run::{self, RunOptions};

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
    /// List the connectors built into this binary, with their parameters and topics.
    Connectors,
    /// Print the embedded default group, a starting point for your own.
    DefaultGroup,
    /// Run a built-in connector over stdio (used by the supervisor).
    #[command(hide = true)]
    Connector {
        /// Connector name, as in its ARN.
        name: String,
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
        } => match run::run(RunOptions {
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
            match run::validate_file(file.as_deref(), config.as_deref()) {
                Ok(summary) => {
                    println!("{name}: valid ({summary})");
                    ExitCode::SUCCESS
                }
                Err(run::RunError::InvalidGroup { errors, .. }) => {
                    for e in &errors {
                        println!("{name}: {e}");
                    }
                    eprintln!("{name}: {} error(s)", errors.len());
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("evergreen: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::DefaultGroup => {
            print!("{}", run::DEFAULT_GROUP);
            ExitCode::SUCCESS
        }
        Command::Connectors => {
            print!("{}", run::describe_connectors());
            ExitCode::SUCCESS
        }
        Command::Connector { name } => crate::catalogue::run_connector(&name),
    }
}
