//! The raw landing zone: every response body (or CSV file) kept compressed with its metadata,
//! written atomically **before** it is parsed, so anything that reached affluent can be replayed
//! without the network. And the quarantine, where records that do not fit are kept with their
//! reason.
//!
//! Layout under `DATA_DIR/landing/SOURCE/YYYY-MM-DD/` (UTC day of fetch):
//! - `ENTRY.body.zst`: the body, zstd-compressed;
//! - `ENTRY.meta.json`: [`EntryMeta`], written after the body: an entry exists once its meta does;
//! - `ENTRY.rejected.json`: present when the body turned out not to be data (an error payload,
//!   malformed JSON); loads skip such entries, but they are kept for diagnosis.
//!
//! Entry ids sort in fetch order. Landing files are removed by a retention policy only, never by
//! a load. This crate knows nothing of HTTP or tables.

mod quarantine;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use affluent_core::Interval;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use quarantine::{Quarantine, Reject};

/// zstd level for bodies: fast, and JSON compresses well at it.
const ZSTD_LEVEL: i32 = 3;

/// Landing errors.
#[derive(Debug, thiserror::Error)]
pub enum LandingError {
    /// A file operation failed.
    #[error("landing I/O on {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A metadata file does not parse.
    #[error("corrupt landing metadata {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No such entry.
    #[error("no landing entry {entry_id} for source {source_name}")]
    NotFound {
        /// The source.
        source_name: String,
        /// The entry.
        entry_id: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LandingError + '_ {
    move |source| LandingError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What was requested and received, as kept next to the body. URLs, params and bodies are
/// stored already redacted: no secret is ever written here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryMeta {
    /// Sortable id, unique in the source.
    pub entry_id: String,
    /// Source name.
    pub source: String,
    /// The run that fetched it.
    pub run_id: String,
    /// `http` or `file`.
    pub kind: String,
    /// Request URL (secrets removed) or file path.
    pub url: String,
    /// HTTP method, for `http` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request body sent (secrets removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<serde_json::Value>,
    /// Fan-out and page variables of the request.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Page number in its request chain, 0 first.
    #[serde(default)]
    pub page: u32,
    /// HTTP status (200 for files).
    pub status: u16,
    /// Useful response headers (content type, ETag, Last-Modified, Date, Link).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// When it was received.
    pub fetched_at: Timestamp,
    /// The run's data interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// SHA-256 of the uncompressed body, hex.
    pub content_hash: String,
    /// Uncompressed size.
    pub bytes: u64,
    /// Size on disk.
    pub compressed_bytes: u64,
}

/// What the caller knows of an entry before it is written; the store fills in id, hash and sizes.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// Source name.
    pub source: String,
    /// Run id.
    pub run_id: String,
    /// `http` or `file`.
    pub kind: String,
    /// Redacted URL or file path.
    pub url: String,
    /// HTTP method.
    pub method: Option<String>,
    /// Redacted request body.
    pub request_body: Option<serde_json::Value>,
    /// Request variables.
    pub vars: BTreeMap<String, String>,
    /// Page number.
    pub page: u32,
    /// Status.
    pub status: u16,
    /// Useful headers.
    pub headers: BTreeMap<String, String>,
    /// Reception time.
    pub fetched_at: Timestamp,
    /// Data interval.
    pub interval: Option<Interval>,
}

/// A landing entry and whether it was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its metadata.
    pub meta: EntryMeta,
    /// Why its body is not data, if it is not.
    pub rejected: Option<String>,
}

/// The landing zone of a project.
#[derive(Debug, Clone)]
pub struct Landing {
    root: PathBuf,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// SHA-256 of a body, hex: the content hash used for change detection.
pub fn content_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

impl Landing {
    /// The landing zone under `DATA_DIR/landing`.
    pub fn open(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("landing"),
        }
    }

    /// The folder of a source.
    pub fn source_dir(&self, source: &str) -> PathBuf {
        self.root.join(source)
    }

    /// Writes a body and its metadata atomically (temp file, fsync, rename; body first, meta
    /// last) and returns the metadata. Called before the body is parsed.
    pub fn write(&self, new: NewEntry, body: &[u8]) -> Result<EntryMeta, LandingError> {
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let stamp = jiff::fmt::strtime::format("%Y%m%dT%H%M%S%.6fZ", new.fetched_at)
            .unwrap_or_else(|_| new.fetched_at.as_microsecond().to_string());
        let entry_id = format!("{stamp}-{}-{seq:06}", new.run_id);
        let day = jiff::fmt::strtime::format("%Y-%m-%d", new.fetched_at)
            .unwrap_or_else(|_| "unknown-day".to_string());
        let dir = self.source_dir(&new.source).join(day);
        fs::create_dir_all(&dir).map_err(io(&dir))?;

        let compressed = zstd::bulk::compress(body, ZSTD_LEVEL).map_err(io(&dir))?;
        let body_path = dir.join(format!("{entry_id}.body.zst"));
        write_atomic(&body_path, &compressed)?;

        let meta = EntryMeta {
            entry_id,
            source: new.source,
            run_id: new.run_id,
            kind: new.kind,
            url: new.url,
            method: new.method,
            request_body: new.request_body,
            vars: new.vars,
            page: new.page,
            status: new.status,
            headers: new.headers,
            fetched_at: new.fetched_at,
            interval: new.interval,
            content_hash: content_hash(body),
            bytes: body.len() as u64,
            compressed_bytes: compressed.len() as u64,
        };
        let meta_path = dir.join(format!("{}.meta.json", meta.entry_id));
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| LandingError::Corrupt {
            path: meta_path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&meta_path, &json)?;
        sync_dir(&dir)?;
        Ok(meta)
    }

    /// Marks an entry as not data (an error payload, malformed JSON), with the reason. The body
    /// stays for diagnosis; loads skip it.
    pub fn reject(&self, meta: &EntryMeta, reason: &str) -> Result<(), LandingError> {
        let path = self.entry_path(meta, "rejected.json");
        let json = serde_json::json!({ "reason": reason, "at": Timestamp::now() });
        write_atomic(&path, json.to_string().as_bytes())
    }

    fn entry_path(&self, meta: &EntryMeta, suffix: &str) -> PathBuf {
        let day = jiff::fmt::strtime::format("%Y-%m-%d", meta.fetched_at)
            .unwrap_or_else(|_| "unknown-day".to_string());
        self.source_dir(&meta.source)
            .join(day)
            .join(format!("{}.{suffix}", meta.entry_id))
    }

    /// Every entry of a source, in fetch order.
    pub fn list(&self, source: &str) -> Result<Vec<Entry>, LandingError> {
        let dir = self.source_dir(source);
        let mut entries = Vec::new();
        let days = match fs::read_dir(&dir) {
            Ok(days) => days,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entries),
            Err(e) => return Err(io(&dir)(e)),
        };
        for day in days {
            let day = day.map_err(io(&dir))?.path();
            if !day.is_dir() {
                continue;
            }
            for file in fs::read_dir(&day).map_err(io(&day))? {
                let path = file.map_err(io(&day))?.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if !name.ends_with(".meta.json") || name.starts_with('.') {
                    continue;
                }
                let text = fs::read(&path).map_err(io(&path))?;
                let meta: EntryMeta =
                    serde_json::from_slice(&text).map_err(|e| LandingError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                let rejected_path = day.join(format!("{}.rejected.json", meta.entry_id));
                let rejected = match fs::read(&rejected_path) {
                    Ok(bytes) => Some(
                        serde_json::from_slice::<serde_json::Value>(&bytes)
                            .ok()
                            .and_then(|v| v["reason"].as_str().map(str::to_string))
                            .unwrap_or_else(|| "rejected".to_string()),
                    ),
                    Err(_) => None,
                };
                entries.push(Entry { meta, rejected });
            }
        }
        entries.sort_by(|a, b| a.meta.entry_id.cmp(&b.meta.entry_id));
        Ok(entries)
    }

    /// Finds one entry by id.
    pub fn get(&self, source: &str, entry_id: &str) -> Result<Entry, LandingError> {
        self.list(source)?
            .into_iter()
            .find(|e| e.meta.entry_id == entry_id)
            .ok_or_else(|| LandingError::NotFound {
                source_name: source.to_string(),
                entry_id: entry_id.to_string(),
            })
    }

    /// The uncompressed body of an entry.
    pub fn read_body(&self, meta: &EntryMeta) -> Result<Vec<u8>, LandingError> {
        let path = self.entry_path(meta, "body.zst");
        let compressed = fs::read(&path).map_err(io(&path))?;
        zstd::bulk::decompress(&compressed, meta.bytes as usize + 1).map_err(io(&path))
    }

    /// Whether the body of an entry known by id is still in landing.
    pub fn has_body_by_id(&self, source: &str, entry_id: &str) -> bool {
        self.body_path_by_id(source, entry_id)
            .is_some_and(|p| p.is_file())
    }

    fn body_path_by_id(&self, source: &str, entry_id: &str) -> Option<PathBuf> {
        let day = day_of_id(entry_id)?;
        Some(
            self.source_dir(source)
                .join(day)
                .join(format!("{entry_id}.body.zst")),
        )
    }

    /// The body of an entry known by id only (its day is part of the id); `None` when the entry
    /// is gone (removed by retention).
    pub fn read_body_by_id(
        &self,
        source: &str,
        entry_id: &str,
    ) -> Result<Option<Vec<u8>>, LandingError> {
        let Some(path) = self.body_path_by_id(source, entry_id) else {
            return Ok(None);
        };
        match fs::read(&path) {
            Ok(compressed) => {
                let mut out = Vec::new();
                zstd::stream::copy_decode(compressed.as_slice(), &mut out).map_err(io(&path))?;
                Ok(Some(out))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }
}

/// `20240101T...` -> `2024-01-01`.
fn day_of_id(entry_id: &str) -> Option<String> {
    let d = entry_id.get(..8)?;
    d.chars()
        .all(|c| c.is_ascii_digit())
        .then(|| format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..8]))
}

/// Writes a file so that it is either absent or complete: temp file, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LandingError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), LandingError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_entry(source: &str) -> NewEntry {
        NewEntry {
            source: source.into(),
            run_id: "r1".into(),
            kind: "http".into(),
            url: "https://x/y?apikey=***".into(),
            method: Some("GET".into()),
            request_body: None,
            vars: BTreeMap::new(),
            page: 0,
            status: 200,
            headers: BTreeMap::new(),
            fetched_at: Timestamp::now(),
            interval: None,
        }
    }

    #[test]
    fn round_trips_bodies_in_order_and_marks_rejections() {
        let dir = tempfile::tempdir().unwrap();
        let landing = Landing::open(dir.path());
        let a = landing.write(new_entry("s"), b"[1,2,3]").unwrap();
        let b = landing.write(new_entry("s"), b"{\"oops\":").unwrap();
        landing.reject(&b, "malformed JSON").unwrap();
        let entries = landing.list("s").unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].meta, a);
        assert_eq!(entries[0].rejected, None);
        assert_eq!(entries[1].rejected.as_deref(), Some("malformed JSON"));
        assert_eq!(landing.read_body(&a).unwrap(), b"[1,2,3]");
        let by_id = landing.read_body_by_id("s", &a.entry_id).unwrap();
        assert_eq!(by_id.as_deref(), Some(&b"[1,2,3]"[..]));
        assert_eq!(
            landing
                .read_body_by_id("s", "20000101T000000.000000Z-x-1")
                .unwrap(),
            None
        );
        assert_eq!(a.content_hash, content_hash(b"[1,2,3]"));
        assert!(landing.list("other").unwrap().is_empty());
    }

    #[test]
    fn leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let landing = Landing::open(dir.path());
        let meta = landing.write(new_entry("s"), &vec![b'x'; 100_000]).unwrap();
        let day_dir = landing.entry_path(&meta, "x");
        let names: Vec<String> = fs::read_dir(day_dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
        assert!(meta.compressed_bytes < meta.bytes / 10);
    }
}
