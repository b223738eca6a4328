//! Small durable state of connectors under `DATA_DIR/state/`: daily request counts (so a quota
//! survives restarts), as JSON replaced atomically, and the change-detection cache (ETag,
//! Last-Modified, content hash of the last response per request), as a snapshot plus an
//! append-only log of what changed since.

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

    /// Requests counted today for a scope, by this process or another one sharing the data
    /// directory (the file is read again: a dashboard shows what the scheduler used).
    pub fn used_by_any(&self, scope: &str, day: &str) -> u32 {
        let on_disk: BTreeMap<String, DayCount> = read_json(&self.path).unwrap_or_default();
        let theirs = on_disk
            .get(scope)
            .filter(|c| c.day == day)
            .map_or(0, |c| c.count);
        theirs.max(self.used(scope, day))
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

/// The change-detection cache of one source: `DATA_DIR/state/change_cache/SOURCE.json` (a
/// snapshot) and `SOURCE.log` (JSON lines appended at each flush, last one wins). A flush
/// appends only what changed; once the log outgrows the cache, the snapshot is rewritten and the
/// log emptied, so a run costs what it changed, not the size of the cache.
#[derive(Debug)]
pub struct ChangeCache {
    path: PathBuf,
    log: PathBuf,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    entries: BTreeMap<String, CacheEntry>,
    /// Keys put since the last flush.
    changed: std::collections::BTreeSet<String>,
    /// Lines in the log.
    logged: usize,
    /// The log ends with a line cut short: the next append starts on a new line.
    torn: bool,
}

/// One line of the log.
#[derive(Serialize, Deserialize)]
struct LogLine {
    key: String,
    entry: CacheEntry,
}

impl ChangeCache {
    /// Opens the cache of a source.
    pub fn open(data_dir: &Path, source: &str) -> Result<Self, SourceError> {
        let dir = data_dir.join("state").join("change_cache");
        let path = dir.join(format!("{source}.json"));
        let log = dir.join(format!("{source}.log"));
        let mut state = CacheState {
            entries: read_json(&path)?,
            ..CacheState::default()
        };
        match std::fs::read(&log) {
            Ok(bytes) => {
                state.torn = bytes.last().is_some_and(|b| *b != b'\n');
                // A line cut short by a crash is skipped: that response is landed once more.
                for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if let Ok(line) = serde_json::from_slice::<LogLine>(line) {
                        state.entries.insert(line.key, line.entry);
                    }
                    state.logged += 1;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SourceError::Landing(LandingError::Io { path: log, source }));
            }
        }
        Ok(Self {
            path,
            log,
            state: Mutex::new(state),
        })
    }

    /// The last response recorded for a request key.
    pub fn get(&self, key: &str) -> Option<CacheEntry> {
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        guard.entries.get(key).cloned()
    }

    /// Records a response (kept in memory until [`ChangeCache::flush`]).
    pub fn put(&self, key: &str, entry: CacheEntry) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        guard.entries.insert(key.to_string(), entry);
        guard.changed.insert(key.to_string());
    }

    /// Writes what changed. A crash before a flush can only make the next run land an
    /// unchanged response once more, never lose one.
    pub fn flush(&self) -> Result<(), SourceError> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if guard.changed.is_empty() {
            return Ok(());
        }
        let state = &mut *guard;
        let mut text = Vec::new();
        if state.torn {
            text.push(b'\n');
        }
        for key in &state.changed {
            if let Some(entry) = state.entries.get(key) {
                serde_json::to_writer(
                    &mut text,
                    &LogLine {
                        key: key.clone(),
                        entry: entry.clone(),
                    },
                )
                .map_err(|e| {
                    SourceError::Landing(LandingError::Corrupt {
                        path: self.log.clone(),
                        reason: e.to_string(),
                    })
                })?;
                text.push(b'\n');
            }
        }
        if let Err(source) = append_synced(&self.log, &text) {
            // Perhaps half written: the next append starts on a new line.
            state.torn = true;
            return Err(SourceError::Landing(LandingError::Io {
                path: self.log.clone(),
                source,
            }));
        }
        state.logged += state.changed.len();
        state.changed.clear();
        state.torn = false;
        if state.logged > 2 * state.entries.len() + 1024 {
            // The log holds every change, the newest last; the snapshot is written from the
            // same state, then the log goes. A crash in between replays the log over a
            // snapshot that already holds it, to the same result.
            write_json(&self.path, &state.entries)?;
            match std::fs::remove_file(&self.log) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(SourceError::Landing(LandingError::Io {
                        path: self.log.clone(),
                        source: e,
                    }));
                }
                _ => {}
            }
            state.logged = 0;
        }
        Ok(())
    }
}

/// Appends bytes to a file (created readable by this user only) and syncs them.
fn append_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        affluent_landing::create_private_dir(dir).map_err(std::io::Error::other)?;
    }
    let mut file = affluent_landing::private_options()
        .append(true)
        .create(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> CacheEntry {
        CacheEntry {
            etag: Some(format!("\"{n}\"")),
            last_modified: None,
            content_hash: format!("{n:064}"),
            entry_id: format!("e{n}"),
        }
    }

    #[test]
    fn the_change_cache_appends_what_changed_and_compacts_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChangeCache::open(dir.path(), "s").unwrap();
        let log = dir.path().join("state/change_cache/s.log");
        let snapshot = dir.path().join("state/change_cache/s.json");
        for run in 0..40 {
            for k in 0..100 {
                cache.put(&format!("k{k}"), entry(run * 1000 + k));
            }
            cache.flush().unwrap();
            // Each flush costs what it changed: the log stays within about twice the cache.
            let logged = std::fs::read(&log).map(|b| b.len()).unwrap_or(0);
            assert!(logged < 3 * 100 * 200 + 1024 * 200, "{logged} bytes of log");
        }
        assert!(snapshot.exists(), "the log was compacted into the snapshot");
        cache.put("late", entry(7));
        cache.flush().unwrap();
        // A line cut short by a crash is skipped, the others read.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, b"{\"key\":\"torn\",\"entr").unwrap();
        drop(f);
        let again = ChangeCache::open(dir.path(), "s").unwrap();
        assert_eq!(again.get("k5"), Some(entry(39 * 1000 + 5)));
        assert_eq!(again.get("late"), Some(entry(7)));
        assert_eq!(again.get("torn"), None);
        // And what is appended after the cut is read.
        again.put("after", entry(8));
        again.flush().unwrap();
        let third = ChangeCache::open(dir.path(), "s").unwrap();
        assert_eq!(third.get("after"), Some(entry(8)));
        assert_eq!(third.get("late"), Some(entry(7)));
    }
}
