//! What a gateway has accepted from its fleet: per fleet, the newest sequence and the digest of
//! that document, kept in `<root>/fleet/state.json` (written atomically, fsynced) so that a
//! restart, `kill -9` or a redelivered retained message never applies a document twice or an
//! older one at all.
//!
//! A document is *accepted* once it passed every check and before its bundle is fetched, so a
//! gateway killed mid-download resumes the same deployment after a restart (the retained
//! document arrives again and matches what was accepted, see [`Verdict::Resume`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::document::{Document, Refusal};

/// The file, under the runtime's write directory.
pub const STATE_FILE: &str = "fleet/state.json";

/// One fleet's newest accepted document and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub sequence: u64,
    /// SHA-256 of the envelope's `document` string: the same sequence with other content is a
    /// replay, not a redelivery.
    pub document_sha256: String,
    /// `None` while it is being applied; the final status once it is done.
    #[serde(default)]
    pub outcome: Option<String>,
}

/// What to do with a verified document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Newer than anything accepted: apply it.
    Apply,
    /// The document accepted last, not finished (the runtime stopped while applying it).
    Resume,
    /// The document accepted last, finished with this status: nothing to do.
    Done(String),
}

/// The accepted documents of every fleet, and where they are kept.
#[derive(Debug)]
pub struct FleetState {
    path: PathBuf,
    fleets: BTreeMap<String, Accepted>,
}

impl FleetState {
    /// Reads `<write_dir>/fleet/state.json`; a missing file is an empty state. An unreadable one
    /// is an error: starting empty would let an older document through.
    pub fn open(write_dir: &Path) -> Result<FleetState, String> {
        let path = write_dir.join(STATE_FILE);
        let fleets = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(FleetState { path, fleets })
    }

    /// Decides what `document` (whose signed text is `text`) means here.
    pub fn judge(&self, document: &Document, text: &str) -> Result<Verdict, Refusal> {
        let Some(last) = self.fleets.get(&document.fleet) else {
            return Ok(Verdict::Apply);
        };
        if document.sequence > last.sequence {
            return Ok(Verdict::Apply);
        }
        if document.sequence == last.sequence && digest(text) == last.document_sha256 {
            return Ok(match &last.outcome {
                None => Verdict::Resume,
                Some(outcome) => Verdict::Done(outcome.clone()),
            });
        }
        Err(Refusal::Replayed {
            fleet: document.fleet.clone(),
            got: document.sequence,
            applied: last.sequence,
        })
    }

    /// Records `document` as accepted (before it is applied).
    pub fn accept(&mut self, document: &Document, text: &str) -> std::io::Result<()> {
        self.fleets.insert(
            document.fleet.clone(),
            Accepted {
                sequence: document.sequence,
                document_sha256: digest(text),
                outcome: None,
            },
        );
        self.save()
    }

    /// Records how the accepted document of `fleet` ended.
    pub fn finish(&mut self, fleet: &str, outcome: &str) -> std::io::Result<()> {
        if let Some(a) = self.fleets.get_mut(fleet) {
            a.outcome = Some(outcome.to_string());
        }
        self.save()
    }

    /// The newest accepted document of every fleet.
    pub fn accepted(&self) -> &BTreeMap<String, Accepted> {
        &self.fleets
    }

    fn save(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.fleets).map_err(std::io::Error::other)?;
        evergreen_durable::write_atomic(&self.path, &bytes, evergreen_durable::Mode::Private)
    }
}

/// Lowercase hex SHA-256.
pub fn digest(bytes: impl AsRef<[u8]>) -> String {
    hex(&Sha256::digest(bytes.as_ref()))
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
