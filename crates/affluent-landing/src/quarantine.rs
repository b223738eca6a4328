//! The quarantine: records that reached affluent but do not fit (a wrong type in a CSV cell, a
//! row with the wrong number of fields), each kept with its source, landing entry, place and
//! reason. One file per landing entry, written atomically, so parsing an entry again rewrites the
//! same file instead of duplicating rejects.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{LandingError, write_atomic};

/// One rejected record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reject {
    /// Source name.
    pub source: String,
    /// Landing entry it came from.
    pub entry_id: String,
    /// Where in the entry: `line 12` of a file, `record 3` of a response.
    pub location: String,
    /// The field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Why it was rejected.
    pub reason: String,
    /// The raw record, as received.
    pub raw: String,
}

/// The quarantine of a project, under `DATA_DIR/quarantine/SOURCE/ENTRY.jsonl`.
#[derive(Debug, Clone)]
pub struct Quarantine {
    root: PathBuf,
}

impl Quarantine {
    /// Opens the quarantine of a data directory.
    pub fn open(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("quarantine"),
        }
    }

    /// Replaces the rejects of one landing entry (none: the file is removed).
    pub fn put(
        &self,
        source: &str,
        entry_id: &str,
        rejects: &[Reject],
    ) -> Result<(), LandingError> {
        let path = self.root.join(source).join(format!("{entry_id}.jsonl"));
        if rejects.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(LandingError::Io { path, source: e })
                }
                _ => Ok(()),
            };
        }
        let mut text = String::new();
        for r in rejects {
            text.push_str(&serde_json::to_string(r).unwrap_or_default());
            text.push('\n');
        }
        write_atomic(&path, text.as_bytes())
    }

    /// Replaces the rejects that one consumer (a table) made of one landing entry:
    /// `SOURCE/ENTRY.SCOPE.jsonl`, so reloading the entry rewrites them instead of adding more.
    pub fn put_scoped(
        &self,
        source: &str,
        entry_id: &str,
        scope: &str,
        rejects: &[Reject],
    ) -> Result<(), LandingError> {
        self.put(source, &format!("{entry_id}.{scope}"), rejects)
    }

    /// Every reject of a source, in landing order.
    pub fn list(&self, source: &str) -> Result<Vec<Reject>, LandingError> {
        let dir = self.root.join(source);
        let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(LandingError::Io {
                    path: dir,
                    source: e,
                });
            }
        };
        files.sort();
        let mut out = Vec::new();
        for path in files {
            let text = fs::read_to_string(&path).map_err(|e| LandingError::Io {
                path: path.clone(),
                source: e,
            })?;
            for line in text.lines().filter(|l| !l.is_empty()) {
                out.push(
                    serde_json::from_str(line).map_err(|e| LandingError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?,
                );
            }
        }
        Ok(out)
    }
}
