//! `evergreen secrets put|list|rm`: the local secret store from the command line. Values are
//! read and stored, never printed; the store itself is `evergreen_secrets::LocalStore`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{run_failed, StoreArgs};
use crate::app;

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
        /// Print `{"secrets": [{"name", "type", "size", "storedAt", …}], "problems": […]}`.
        #[arg(long)]
        json: bool,
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

/// `evergreen secrets …`.
pub(super) fn command(command: SecretsCommand) -> ExitCode {
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
        SecretsCommand::List { json, store } => {
            let (dir, _) = match secrets_dir(store) {
                Ok(d) => d,
                Err(code) => return code,
            };
            let (list, problems) = LocalStore::new(&dir).list();
            if json {
                let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
                super::print_json(&serde_json::json!({ "secrets": list, "problems": problems }));
            } else if list.is_empty() && problems.is_empty() {
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
