//! `evergreen fleet`: the operator's side of fleet deployments. Offline, `keygen` makes the
//! Ed25519 key documents are signed with and `sign` writes the signed deployment document for
//! a bundle (to publish with any MQTT client); over the broker, `deploy`, `status` and `abort`
//! ([`super::rollout`]). The document format and the topics are the `evergreen_fleet` crate's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use evergreen_fleet::document::{BundleRef, Document, Release, SigningKey, Targets};

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Make a signing key: writes it to KEY_FILE (owner-only; keep it secret) and prints the
    /// public key to put in each gateway's `evergreen.fleet.trustedKeys`.
    Keygen {
        /// Where the private key is written (refused if it exists).
        key_file: PathBuf,
        /// Print `{"keyFile": …, "publicKey": …}` instead of the bare public key.
        #[arg(long)]
        json: bool,
    },
    /// Write the signed deployment document for BUNDLE (`evergreen group export`) to standard
    /// output: its size and SHA-256, where gateways fetch it (--url) or the bundle itself
    /// (--inline, for small groups), who it is for, and the fleet's next sequence number.
    ///
    /// Publish it retained on `evergreen/fleet/things/<thing>/deployment` or
    /// `evergreen/fleet/groups/<group>/deployment`, e.g. with
    /// `mosquitto_pub -r -q 1 -t … -f document.json`.
    #[command(group(clap::ArgGroup::new("who").required(true).multiple(true).args(["things", "groups"])))]
    Sign {
        #[command(flatten)]
        bundle: BundleArgs,
        /// This deployment's number: higher than any earlier one of the fleet.
        #[arg(long)]
        sequence: u64,
        /// Thing names the document is for (comma-separated).
        #[arg(long, value_delimiter = ',')]
        things: Vec<String>,
        /// Fleet groups the document is for (comma-separated).
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Print `{"fleet", "sequence", "bundleSize", "bundleSha256", "document"}`, where
        /// `document` is the signed document as text (what to publish), instead of the
        /// document alone.
        #[arg(long)]
        json: bool,
    },
    /// Roll BUNDLE out over the broker: a canary stage, then batches, each signed for its
    /// gateways and published on their topics; waits for every gateway's status, and halts
    /// (leaving the rest untouched) once more than --max-failures have failed.
    ///
    /// Exit status: 0 every gateway succeeded, 3 done with at most --max-failures failures,
    /// 2 halted (too many failures, or `fleet abort`), 1 it could not run.
    Deploy(Box<super::rollout::DeployArgs>),
    /// Roll a new Evergreen release out over the broker, with the same stages and halt rules
    /// as `deploy`: each gateway downloads the binary for its target, checks it, restarts onto
    /// it and reports `Success` once the new runtime is healthy, or `RolledBack` (its previous
    /// release running again) with the reason.
    ///
    /// Exit status as `deploy`'s.
    Update(Box<super::rollout::UpdateArgs>),
    /// The fleet as the gateways' retained messages show it: per gateway its groups, version,
    /// last deployment status and health; and the rollouts in progress. With --watch, every
    /// change as it comes. Exit status 0, 1 when the broker cannot be reached.
    Status(Box<super::rollout::StatusArgs>),
    /// Stop the rollout in progress of a fleet before its next stage (the gateways of the
    /// stage under way finish it). Exit status 0 when one was aborted, 1 when none is running.
    Abort(super::rollout::AbortArgs),
}

/// The bundle, where gateways get it, the key that signs it and the fleet: what `sign` and
/// `deploy` both take.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["url", "inline"])))]
pub struct BundleArgs {
    /// The bundle file (`evergreen group export`).
    pub(super) bundle: PathBuf,
    /// The signing key (`evergreen fleet keygen`).
    #[arg(long, value_name = "KEY_FILE")]
    pub(super) key: PathBuf,
    /// The fleet's name; sequences count per fleet.
    #[arg(long)]
    pub(super) fleet: String,
    /// Where gateways download the bundle: https://, http:// or file://.
    #[arg(long)]
    pub(super) url: Option<String>,
    /// Put the bundle in the document (at most 64 KiB).
    #[arg(long)]
    pub(super) inline: bool,
}

impl BundleArgs {
    /// The signing key and what a document says of the bundle.
    pub(super) fn read(&self) -> Result<(SigningKey, BundleRef), String> {
        Ok((
            read_key(&self.key)?,
            bundle_ref(&self.bundle, self.url.clone(), self.inline)?,
        ))
    }
}

/// A release: its version, a binary per target, where gateways fetch them, the key and fleet.
#[derive(Debug, clap::Args)]
pub(super) struct ReleaseArgs {
    /// The release's version: what `evergreen --version` of each binary prints after
    /// `evergreen ` (checked here for a binary this machine can run, and on each gateway).
    #[arg(long)]
    pub(super) version: String,
    /// A binary and its target, as TARGET=FILE (targets: x86_64, aarch64; armv7 reserved); repeat for
    /// a fleet of mixed gateways.
    #[arg(long = "binary", value_name = "TARGET=FILE", required = true)]
    pub(super) binaries: Vec<String>,
    /// Where gateways download the binaries: each is fetched from URL_BASE/<its file name>
    /// (https://, http:// or file://).
    #[arg(long, value_name = "URL_BASE")]
    pub(super) url_base: String,
    /// The signing key (`evergreen fleet keygen`).
    #[arg(long, value_name = "KEY_FILE")]
    pub(super) key: PathBuf,
    /// The fleet's name; sequences count per fleet.
    #[arg(long)]
    pub(super) fleet: String,
}

impl ReleaseArgs {
    /// The signing key and what a document says of the release.
    pub(super) async fn read(&self) -> Result<(SigningKey, Release), String> {
        if !evergreen_fleet::document::valid_version(&self.version) {
            return Err(format!(
                "--version {:?}: 1 to 64 letters, digits and .+-_",
                self.version
            ));
        }
        let mut binaries = std::collections::BTreeMap::new();
        let mut names = std::collections::BTreeSet::new();
        for spec in &self.binaries {
            let Some((target, file)) = spec.split_once('=') else {
                return Err(format!("--binary {spec:?}: expected TARGET=FILE"));
            };
            let file = Path::new(file);
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| format!("--binary {spec:?}: no file name"))?;
            if target == evergreen_fleet::document::target() {
                evergreen_fleet::agent::probe_version(file, &self.version).await?;
            }
            let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let url = format!("{}/{name}", self.url_base.trim_end_matches('/'));
            let previous = binaries.insert(
                target.to_string(),
                BundleRef {
                    sha256: evergreen_fleet::state::digest(&bytes),
                    size: bytes.len() as u64,
                    url: Some(url),
                    inline: None,
                },
            );
            if previous.is_some() {
                return Err(format!("--binary: target {target} given twice"));
            }
            if !names.insert(name.to_string()) {
                return Err(format!(
                    "--binary: two binaries are named {name:?}, so both would be fetched from the same URL (packaging/build.sh names them evergreen-<version>-<target>)"
                ));
            }
        }
        let release = Release {
            version: self.version.clone(),
            binaries,
        };
        Ok((read_key(&self.key)?, release))
    }
}

/// The largest bundle `sign --inline` puts in a document: base64 makes it a third larger, and
/// the whole document stays under `MAX_ENVELOPE_BYTES`.
const MAX_INLINE: u64 = 64 * 1024;

pub(super) fn command(command: FleetCommand) -> ExitCode {
    let result = match command {
        FleetCommand::Deploy(args) => return super::rollout::deploy(*args),
        FleetCommand::Update(args) => return super::rollout::update(*args),
        FleetCommand::Status(args) => return super::rollout::status(*args),
        FleetCommand::Abort(args) => return super::rollout::abort(args),
        FleetCommand::Keygen { key_file, json } => keygen(&key_file, json),
        FleetCommand::Sign {
            bundle,
            sequence,
            things,
            groups,
            json,
        } => sign(&bundle, sequence, Targets { things, groups }, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evergreen fleet: {e}");
            ExitCode::from(1)
        }
    }
}

fn keygen(path: &Path, json: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (text, key) = SigningKey::generate()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"keyFile": path.display().to_string(), "publicKey": key.public().to_base64()})
        );
        return Ok(());
    }
    eprintln!(
        "wrote the private key to {} (keep it secret); the gateways' evergreen.fleet.trustedKeys takes:",
        path.display()
    );
    println!("{}", key.public().to_base64());
    Ok(())
}

fn sign(args: &BundleArgs, sequence: u64, targets: Targets, json: bool) -> Result<(), String> {
    let (key, bundle) = args.read()?;
    let document = Document {
        fleet: args.fleet.clone(),
        sequence,
        created_at: Some(evergreen_fleet::agent::now()),
        targets,
        bundle: Some(bundle),
        release: None,
    };
    let signed = key.sign(&document).map_err(|e| e.to_string())?;
    let (size, sha256) = document
        .bundle
        .as_ref()
        .map_or((0, ""), |b| (b.size, b.sha256.as_str()));
    if json {
        // The document stays text: gateways check the signature over its exact bytes, so a
        // script publishes this string as it is rather than re-encoding a parsed object.
        let summary = serde_json::json!({
            "fleet": document.fleet,
            "sequence": document.sequence,
            "bundleSize": size,
            "bundleSha256": sha256,
            "document": String::from_utf8_lossy(&signed),
        });
        println!("{summary:#}");
        return Ok(());
    }
    println!("{}", String::from_utf8_lossy(&signed));
    eprintln!(
        "signed deployment {} of fleet {} for {size} byte bundle {sha256}",
        document.sequence, document.fleet,
    );
    Ok(())
}

/// Reads a signing key file.
fn read_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    SigningKey::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// What a document says of `bundle`: its size and digest, and `url` or (with `inline`) the
/// bundle itself.
pub(super) fn bundle_ref(
    bundle: &Path,
    url: Option<String>,
    inline: bool,
) -> Result<BundleRef, String> {
    use base64::Engine as _;
    if !evergreen_ops::bundle::is_bundle(bundle) {
        return Err(format!(
            "{} is not a group bundle (evergreen group export writes one)",
            bundle.display()
        ));
    }
    let bytes = std::fs::read(bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
    let size = bytes.len() as u64;
    if inline && size > MAX_INLINE {
        return Err(format!(
            "{} is {size} bytes; --inline takes at most {MAX_INLINE} (use --url)",
            bundle.display()
        ));
    }
    Ok(BundleRef {
        sha256: evergreen_fleet::state::digest(&bytes),
        size,
        url: if inline { None } else { url },
        inline: inline.then(|| base64::engine::general_purpose::STANDARD.encode(&bytes)),
    })
}
