//! Small durable state of connectors, as JSON files under `DATA_DIR/state/`: daily request counts
//! (so a quota survives restarts) and the change-detection cache (ETag, Last-Modified, content
//! hash of the last response per request). Files are replaced atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use affluent_landing::{LandingError, write_atomic};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::SourceError;

fn read_json<T: DeserializeOwned + Default>(path: &Path) -> Result<T, SourceError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            SourceError::Landing(LandingError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("{e} (delete the file to reset this state)"),
            })
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(SourceError::Landing(LandingError::Io {
            path: path.to_path_buf(),
            source: e,
        })),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), SourceError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| {
        SourceError::Landing(LandingError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    })?;
    Ok(write_atomic(path, &bytes)?)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DayCount {
    day: String,
    count: u32,
}

/// Requests made today per scope (`source:NAME`, `host:NAME`), persisted on every reservation so
/// a restart cannot reset a daily quota.
#[derive(Debug)]
pub struct QuotaStore {
    path: PathBuf,
    counts: Mutex<BTreeMap<String, DayCount>>,
}

impl QuotaStore {
    /// Opens `DATA_DIR/state/quotas.json`.
    pub fn open(data_dir: &Path) -> Result<Self, SourceError> {
        let path = data_dir.join("state").join("quotas.json");
        let counts = read_json(&path)?;
        Ok(Self {
            path,
            counts: Mutex::new(counts),
        })
    }

    /// Counts one request against `scope` for `day`, refusing when `limit` is reached. The count
    /// is written before the request is sent, so a crash can only over-count.
    pub fn reserve(&self, scope: &str, day: &str, limit: u32) -> Result<u32, SourceError> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = counts.entry(scope.to_string()).or_default();
        if entry.day != day {
            entry.day = day.to_string();
            entry.count = 0;
        }
        if entry.count >= limit {
            return Err(SourceError::QuotaExhausted {
                scope: scope.replace(':', " "),
                limit,
                day: day.to_string(),
            });
        }
        entry.count += 1;
        let used = entry.count;
        write_json(&self.path, &*counts)?;
        Ok(used)
    }

    /// Requests counted today for a scope.
    pub fn used(&self, scope: &str, day: &str) -> u32 {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .get(scope)
            .filter(|c| c.day == day)
            .map(|c| c.count)
            .unwrap_or(0)
    }
}

/// What was last received for one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// `ETag` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// `Last-Modified` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// SHA-256 of the body.
    pub content_hash: String,
    /// The landing entry holding that body.
    pub entry_id: String,
}

/// The change-detection cache of one source: `DATA_DIR/state/http_cache/SOURCE.json`.
#[derive(Debug)]
pub struct ChangeCache {
    path: PathBuf,
    entries: Mutex<(BTreeMap<String, CacheEntry>, bool)>,
}

impl ChangeCache {
    /// Opens the cache of a source.
    pub fn open(data_dir: &Path, source: &str) -> Result<Self, SourceError> {
        let path = data_dir
            .join("state")
            .join("change_cache")
            .join(format!("{source}.json"));
        let entries = read_json(&path)?;
        Ok(Self {
            path,
            entries: Mutex::new((entries, false)),
        })
    }

    /// The last response recorded for a request key.
    pub fn get(&self, key: &str) -> Option<CacheEntry> {
        let guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.get(key).cloned()
    }

    /// Records a response (kept in memory until [`ChangeCache::flush`]).
    pub fn put(&self, key: &str, entry: CacheEntry) {
        let mut guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.insert(key.to_string(), entry);
        guard.1 = true;
    }

    /// Writes the cache if it changed. A crash before a flush can only make the next run land
    /// an unchanged response once more, never lose one.
    pub fn flush(&self) -> Result<(), SourceError> {
        let mut guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if guard.1 {
            write_json(&self.path, &guard.0)?;
            guard.1 = false;
        }
        Ok(())
    }
}
