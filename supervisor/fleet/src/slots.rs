//! The runtime's installed releases and which one starts: versioned slots under
//! `<root>/release/slots/<version>/evergreen`, and the boot record `<root>/release/boot.json`
//! that the launcher, the health gate and the fleet agent share. No I/O but these files; the
//! processes (exec, the watched trial, the restart) are the binary's.
//!
//! # The rule
//!
//! The service always starts the **stable binary** (`/usr/bin/evergreen` from the package, or
//! whatever path started the runtime). Before anything else, `evergreen run` reads the boot
//! record ([`decide`]):
//!
//! * a **trial** pending (a release the fleet installed, not yet healthy): its slot is
//!   verified (SHA-256 against the record) and started, and its start counted. After
//!   `maxStarts` starts that never became healthy, or a slot that does not verify, the trial is
//!   dropped and the outcome recorded as `RolledBack`;
//! * else the **active** slot (a release that became healthy), verified, is started;
//! * else, or when a slot does not verify, the stable binary runs itself. A slot is only ever
//!   started after its digest matched: nothing unverified runs, and the stable binary is the
//!   floor every fall-back ends on.
//!
//! The new runtime, started from the trial slot, passes the **health gate** when every
//! component is up (none Starting, in Backoff or Failed) and the cloud bridge is connected (if
//! configured) within `updateHealthWindowSecs`: [`Boot::commit`] makes the trial active. If the
//! window ends first, [`Boot::roll_back`] drops it and the runtime restarts onto the previous
//! release.
//!
//! # The package and the fleet
//!
//! The record remembers the stable binary's version ([`Boot::stable_version`]). When the stable
//! binary starts and finds another version there than the record says, the package manager
//! replaced it since the fleet's last update (`apt upgrade`, `rpm -U`): the **newest install
//! wins**, so the package's binary runs and the fleet's slots are set aside (a pending trial is
//! reported as `Failure` with code `SupersededByPackage`). A fleet update after that works as
//! before. The package never writes under `/var/lib/evergreen/release`; the fleet never writes
//! `/usr/bin/evergreen`; so neither undoes the other's files.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::topics::State;

/// The directory, under the runtime's write directory.
pub const DIR: &str = "release";
/// The boot record, under the runtime's write directory.
pub const BOOT_FILE: &str = "release/boot.json";
/// The binary's name inside a slot.
pub const BINARY: &str = "evergreen";

/// An installed release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    pub version: String,
    /// SHA-256 of the slot's binary, as the signed document gave it.
    pub sha256: String,
}

/// A release being tried, and the document that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trial {
    pub slot: Slot,
    pub fleet: String,
    pub sequence: u64,
    /// Starts so far (counted by the launcher before each).
    pub starts: u32,
    /// The version that ran when the update was taken (reported after a roll-back).
    pub from_version: String,
}

/// How an update ended, until the fleet agent has reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub fleet: String,
    pub sequence: u64,
    pub state: State,
    /// The release tried.
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The boot record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Boot {
    /// The release that runs when no trial is pending; `None`: the stable binary.
    #[serde(default)]
    pub active: Option<Slot>,
    #[serde(default)]
    pub trial: Option<Trial>,
    /// The stable binary's version when it last started (see the module docs).
    #[serde(default)]
    pub stable_version: Option<String>,
    /// The stable binary's path, which a restart goes back to.
    #[serde(default)]
    pub stable_path: Option<PathBuf>,
    /// The last update's outcome, until reported.
    #[serde(default)]
    pub outcome: Option<Outcome>,
}

impl Boot {
    /// The trial became healthy: it is the active release now.
    pub fn commit(&mut self) -> Option<Outcome> {
        let trial = self.trial.take()?;
        let outcome = Outcome {
            fleet: trial.fleet,
            sequence: trial.sequence,
            state: State::Success,
            version: trial.slot.version.clone(),
            code: None,
            reason: None,
        };
        self.active = Some(trial.slot);
        self.outcome = Some(outcome.clone());
        Some(outcome)
    }

    /// The trial failed (`code`, `reason`): the active release stays what it was.
    pub fn roll_back(&mut self, code: &str, reason: String) -> Option<Outcome> {
        let trial = self.trial.take()?;
        let outcome = Outcome {
            fleet: trial.fleet,
            sequence: trial.sequence,
            state: State::RolledBack,
            version: trial.slot.version,
            code: Some(code.to_string()),
            reason: Some(reason),
        };
        self.outcome = Some(outcome.clone());
        Some(outcome)
    }
}

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// The stable binary: the running one goes on.
    Stable,
    /// A verified slot's binary.
    Slot {
        version: String,
        path: PathBuf,
        trial: bool,
    },
}

/// Decides what starts, updating `boot` (the trial's start count, a roll-back, the package
/// rule); `notes` says what changed, for the log. `me` is the stable binary's version;
/// `verify` checks a slot and gives its binary's path.
pub fn decide(
    boot: &mut Boot,
    me: &str,
    max_starts: u32,
    verify: impl Fn(&Slot) -> Result<PathBuf, String>,
    notes: &mut Vec<String>,
) -> Launch {
    let replaced = boot.stable_version.as_deref().is_some_and(|v| v != me);
    boot.stable_version = Some(me.to_string());
    if replaced && (boot.active.is_some() || boot.trial.is_some()) {
        notes.push(format!(
            "the stable binary is version {me} now, installed after the fleet's last update: it runs, and the fleet's releases are set aside"
        ));
        if let Some(t) = boot.trial.take() {
            boot.outcome = Some(Outcome {
                fleet: t.fleet,
                sequence: t.sequence,
                state: State::Failure,
                version: t.slot.version,
                code: Some("SupersededByPackage".into()),
                reason: Some(format!(
                    "version {me} was installed by the package manager before the update finished"
                )),
            });
        }
        boot.active = None;
        return Launch::Stable;
    }
    if let Some(trial) = boot.trial.as_mut() {
        let failed = if trial.starts >= max_starts {
            Some((
                "CrashLoop",
                format!(
                    "version {} started {} times without becoming healthy",
                    trial.slot.version, trial.starts
                ),
            ))
        } else {
            match verify(&trial.slot) {
                Ok(path) => {
                    trial.starts += 1;
                    notes.push(format!(
                        "trying version {} (start {} of {max_starts})",
                        trial.slot.version, trial.starts
                    ));
                    return Launch::Slot {
                        version: trial.slot.version.clone(),
                        path,
                        trial: true,
                    };
                }
                Err(e) => Some(("SlotNotVerified", e)),
            }
        };
        if let Some((code, reason)) = failed {
            notes.push(format!("rolling back: {reason}"));
            boot.roll_back(code, reason);
        }
    }
    if let Some(active) = &boot.active {
        match verify(active) {
            Ok(path) => {
                return Launch::Slot {
                    version: active.version.clone(),
                    path,
                    trial: false,
                }
            }
            Err(e) => {
                notes.push(format!(
                    "the active release {} does not verify ({e}); the stable binary runs",
                    active.version
                ));
                boot.active = None;
            }
        }
    }
    Launch::Stable
}

/// The slots of one runtime root.
#[derive(Debug, Clone)]
pub struct Slots {
    dir: PathBuf,
    boot: PathBuf,
}

impl Slots {
    pub fn new(write_dir: &Path) -> Slots {
        Slots {
            dir: write_dir.join(DIR),
            boot: write_dir.join(BOOT_FILE),
        }
    }

    /// `<root>/release/slots`: a binary under it is a slot's.
    pub fn slots_dir(&self) -> PathBuf {
        self.dir.join("slots")
    }

    /// Where the binary of `version` lives.
    pub fn binary(&self, version: &str) -> PathBuf {
        self.slots_dir().join(version).join(BINARY)
    }

    /// Whether `exe` (the running binary) is a slot's.
    pub fn holds(&self, exe: &Path) -> bool {
        exe.starts_with(self.slots_dir())
    }

    /// The boot record; `None` when there is none (no update ever taken).
    pub fn load(&self) -> Result<Option<Boot>, String> {
        let path = &self.boot;
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the boot record (atomically, fsynced).
    pub fn save(&self, boot: &Boot) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(boot).map_err(std::io::Error::other)?;
        evergreen_durable::write_atomic(&self.boot, &bytes, evergreen_durable::Mode::Private)
    }

    /// Moves the checked download `file` into the slot of `version` (executable, fsynced),
    /// first removing every slot but `keep` (the active release) to make room.
    pub fn install(
        &self,
        version: &str,
        file: &Path,
        keep: Option<&str>,
    ) -> std::io::Result<PathBuf> {
        self.remove_except(&[Some(version), keep])?;
        let slot = self.slots_dir().join(version);
        std::fs::create_dir_all(&slot)?;
        let binary = slot.join(BINARY);
        {
            use std::os::unix::fs::PermissionsExt;
            let f = std::fs::File::open(file)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
            f.sync_all()?;
        }
        std::fs::rename(file, &binary)?;
        std::fs::File::open(&slot)?.sync_all()?;
        Ok(binary)
    }

    /// Removes every slot whose version is not in `keep`.
    pub fn remove_except(&self, keep: &[Option<&str>]) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(self.slots_dir()) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !keep.iter().flatten().any(|k| name.to_str() == Some(k)) {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(())
    }

    /// Checks the slot's binary against its recorded digest; its path when it matches.
    pub fn verify(&self, slot: &Slot) -> Result<PathBuf, String> {
        let path = self.binary(&slot.version);
        let digest = file_sha256(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if digest == slot.sha256 {
            Ok(path)
        } else {
            Err(format!(
                "{} has SHA-256 {digest}, the release signed {}",
                path.display(),
                slot.sha256
            ))
        }
    }
}

/// SHA-256 of a file, lowercase hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(crate::state::hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests;
