//! `evergreen group …`: storing group files as immutable versions, listing and showing them,
//! and moving them between gateways as bundles. What a version is belongs to
//! `evergreen_ops::store`; this module only parses, prints and picks exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::{print_invalid, print_json, run_failed, store_failed, StoreArgs};
use crate::app::{self, RunError};
use evergreen_ops::store::{VersionMeta, VersionStore};

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
        /// Print `{"id", "existed", "directory"}` (or, for an invalid group, what
        /// `validate --json` prints).
        #[arg(long)]
        json: bool,
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
        /// Print `{"id", "file"}` instead of the bundle's path.
        #[arg(long)]
        json: bool,
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
        /// Print `{"id", "existed"}` (or, for an invalid group, what `validate --json`
        /// prints).
        #[arg(long)]
        json: bool,
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

/// `evergreen group …`.
pub(super) fn command(command: GroupCommand) -> ExitCode {
    match command {
        GroupCommand::CreateVersion { file, json, store } => create_version(&file, json, store),
        GroupCommand::List { json, store } => list_versions(json, store),
        GroupCommand::Show { id, json, store } => show_version(&id, json, store),
        GroupCommand::Export {
            id,
            json,
            output,
            store,
        } => export_version(&id, json, output, store),
        GroupCommand::Import { file, json, store } => {
            let cfg = match app::load_config(store.config.as_deref(), store.root) {
                Ok(cfg) => cfg,
                Err(e) => return run_failed(&e),
            };
            match import_bundle(&file, &cfg, json) {
                Ok((id, existed)) if json => {
                    print_json(&serde_json::json!({ "id": id, "existed": existed }));
                    ExitCode::SUCCESS
                }
                Ok((id, _)) => {
                    println!("{id}");
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
    }
}

fn export_version(id: &str, json: bool, output: Option<PathBuf>, args: StoreArgs) -> ExitCode {
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
            if json {
                print_json(&serde_json::json!({
                    "id": full.as_str(),
                    "file": output.display().to_string(),
                }));
            } else {
                println!("{}", output.display());
            }
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

/// Imports a bundle into the store of `cfg`'s root; the version id and whether it was
/// stored already, or the exit code after saying why not (an invalid group's errors as
/// `validate` prints them, with `json` as `validate --json` does).
pub(super) fn import_bundle(
    file: &Path,
    cfg: &evergreen_config::CoreConfig,
    json: bool,
) -> Result<(String, bool), ExitCode> {
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
            Ok((created.id.as_str().to_string(), created.existed))
        }
        Err(evergreen_ops::bundle::BundleError::Invalid(evergreen_group::LoadError::Invalid {
            errors,
            ..
        })) => Err(print_invalid(&name, &errors, json)),
        Err(e) => {
            eprintln!("evergreen: {name}: {e}");
            Err(ExitCode::from(1))
        }
    }
}

fn open_store(args: StoreArgs) -> Result<VersionStore, ExitCode> {
    app::load_config(args.config.as_deref(), args.root)
        .map(|cfg| VersionStore::open(cfg.write_dir()))
        .map_err(|e| run_failed(&e))
}

fn create_version(file: &Path, json: bool, args: StoreArgs) -> ExitCode {
    let name = file.display().to_string();
    let cfg = match app::load_config(args.config.as_deref(), args.root) {
        Ok(cfg) => cfg,
        Err(e) => return run_failed(&e),
    };
    let group = match app::read_group_file(file, &cfg) {
        Ok(group) => group,
        Err(RunError::Group(evergreen_group::LoadError::Invalid { errors, .. })) => {
            return print_invalid(&name, &errors, json)
        }
        Err(e) => return run_failed(&e),
    };
    let store = VersionStore::open(cfg.write_dir());
    match store.create(&group.text, &group.base_dir, Some(file), &group.plan) {
        Ok(created) => {
            let dir = store.version_dir(&created.id);
            if json {
                print_json(&serde_json::json!({
                    "id": created.id.as_str(),
                    "existed": created.existed,
                    "directory": dir.display().to_string(),
                }));
            } else {
                // stdout carries only the id, so `id=$(evergreen group create-version f)` works.
                println!("{}", created.id);
            }
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
