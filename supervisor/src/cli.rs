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
    /// Without --group, runs the embedded default group: the Heartbeat
    /// connector publishes the core's uptime and load every 5 s, routed to the
    /// MessageLog connector, whose log shows each message.
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
    /// Exit status 0 when valid, 1 when invalid, 78 when the configuration is.
    Validate {
        /// Group file to check.
        file: PathBuf,
        /// Core configuration file (for allowFunctionsToRunAsRoot and the core thing).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// List the connectors built into this binary, with their parameters and topics.
    Connectors,
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
        Command::Validate { file, config } => match run::validate_file(&file, config.as_deref()) {
            Ok(summary) => {
                println!("{}: valid ({summary})", file.display());
                ExitCode::SUCCESS
            }
            Err(run::RunError::InvalidGroup { errors, .. }) => {
                for e in &errors {
                    println!("{}: {e}", file.display());
                }
                eprintln!("{}: {} error(s)", file.display(), errors.len());
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("evergreen: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::Connectors => {
            print!("{}", run::describe_connectors());
            ExitCode::SUCCESS
        }
        Command::Connector { name } => crate::catalogue::run_connector(&name),
    }
}
