//! An alert's state file, `DATA_DIR/state/alerts/NAME.json`: the last evaluation's number, each
//! entity's state, the firings of that evaluation until the table is known to hold them, and
//! the firings no channel has accepted yet.

use std::collections::BTreeMap;
use std::path::Path;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{AlertError, Firing, Unsent};

/// One entity's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EntityState {
    /// Whether the condition held at the last evaluation that observed the entity.
    pub(crate) active: bool,
    /// When it last fired.
    pub(crate) fired_at: Option<Timestamp>,
    /// The time (the alert's `time` column) of the latest observation evaluated: the next
    /// evaluation walks the observations after it, one by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) observed: Option<serde_json::Value>,
}

/// An alert's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// The last recorded evaluation number (0: none): one per observation time walked.
    pub(crate) evaluation: i64,
    /// How many evaluation passes were recorded (absent from the files of affluent 0.1, where a
    /// pass was one number: `evaluation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) passes: Option<u64>,
    /// When it ran.
    pub(crate) evaluated_at: Option<Timestamp>,
    /// Per entity (JSON text of its key columns).
    pub(crate) entities: BTreeMap<String, EntityState>,
    /// The firings of evaluation `evaluation`, until the table holds them.
    pub(crate) pending: Vec<Firing>,
    /// Firings recorded but not yet delivered to a channel (the outbox): sent with the next
    /// pass until a channel accepts them.
    #[serde(default)]
    pub(crate) unsent: Vec<Unsent>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AlertError + '_ {
    move |source| AlertError::State {
        path: path.to_path_buf(),
        source,
    }
}

impl State {
    /// The state of an alert (empty when it never ran).
    pub(crate) fn read(dir: &Path, name: &str) -> Result<Self, AlertError> {
        let path = dir.join(format!("{name}.json"));
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io(&path)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not a state file ({e}); move it aside to start the alert afresh"),
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Writes it atomically (temporary file, fsync, rename).
    pub(crate) fn write(&self, dir: &Path, name: &str) -> Result<(), AlertError> {
        let path = dir.join(format!("{name}.json"));
        let bytes = serde_json::to_vec(self).map_err(|e| io(&path)(std::io::Error::other(e)))?;
        affluent_landing::write_atomic(&path, &bytes)
            .map_err(|e| io(&path)(std::io::Error::other(e.to_string())))
    }
}

/// Holds `NAME.lock` in the state folder until dropped: one recording evaluation of an alert
/// at a time, across processes. Waits for another holder on a blocking thread, not the
/// runtime's.
pub(crate) async fn lock(dir: &Path, name: &str) -> Result<std::fs::File, AlertError> {
    let path = dir.join(format!("{name}.lock"));
    affluent_landing::lock_exclusive(&path)
        .await
        .map_err(io(&path))
}
