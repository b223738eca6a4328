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
        create_private_dir(&dir)?;

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

/// What a prune did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Entries removed: past retention and either rejected or safely loaded.
    pub removed_entries: u64,
    /// Leftovers of interrupted writes removed (a body without metadata, a temp file).
    pub removed_orphans: u64,
    /// Bytes freed on disk.
    pub bytes_freed: u64,
    /// Entries past retention kept because no load has taken their records yet.
    pub kept_not_loaded: u64,
    /// Entries within retention.
    pub kept_recent: u64,
}

impl Landing {
    /// Applies a retention policy to a source: removes entries fetched before `cutoff` that are
    /// rejected or for which `is_loaded` says their records are safely in every table that needs
    /// them, and leftovers of interrupted writes older than `cutoff`. Entries nobody loaded are
    /// never removed, whatever their age. With `dry_run`, only counts.
    pub fn prune(
        &self,
        source: &str,
        cutoff: Timestamp,
        is_loaded: &dyn Fn(&EntryMeta) -> bool,
        dry_run: bool,
    ) -> Result<PruneReport, LandingError> {
        let mut report = PruneReport::default();
        let remove = |path: &Path, report: &mut PruneReport| -> Result<(), LandingError> {
            let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if !dry_run {
                match fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(path)(e)),
                    _ => {}
                }
            }
            report.bytes_freed += size;
            Ok(())
        };
        let mut known: std::collections::HashSet<String> = std::collections::HashSet::new();
        for entry in self.list(source)? {
            known.insert(entry.meta.entry_id.clone());
            if entry.meta.fetched_at >= cutoff {
                report.kept_recent += 1;
                continue;
            }
            if entry.rejected.is_none() && !is_loaded(&entry.meta) {
                report.kept_not_loaded += 1;
                continue;
            }
            // Metadata last: an entry without it is invisible, never half-listed.
            for suffix in ["body.zst", "rejected.json", "meta.json"] {
                remove(&self.entry_path(&entry.meta, suffix), &mut report)?;
            }
            report.removed_entries += 1;
        }
        let dir = self.source_dir(source);
        let Ok(days) = fs::read_dir(&dir) else {
            return Ok(report);
        };
        for day in days.flatten().map(|d| d.path()).filter(|p| p.is_dir()) {
            for file in fs::read_dir(&day).map_err(io(&day))?.flatten() {
                let path = file.path();
                let name = file.file_name().to_string_lossy().into_owned();
                let orphan_body = name
                    .strip_suffix(".body.zst")
                    .is_some_and(|id| !known.contains(id));
                let temp = name.starts_with('.') && name.contains(".tmp-");
                let old = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| Timestamp::try_from(t).ok())
                    .is_some_and(|t| t < cutoff);
                if (orphan_body || temp) && old {
                    remove(&path, &mut report)?;
                    report.removed_orphans += 1;
                }
            }
            if !dry_run {
                // Removes the day folder only when empty.
                let _ = fs::remove_dir(&day);
            }
        }
        Ok(report)
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
    create_private_dir(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Unique per write, not only per process: two runs of one process may write the same file
    // (a source's change cache) at once, and must not rename each other's temporary file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let seq = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{seq}", std::process::id()));
    let mut file = private_file(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io(path))
}

/// Creates `dir` and its missing parents readable by this user only (0700 on Unix): landing,
/// quarantine and state hold raw responses and credentials' effects that are nobody else's.
pub fn create_private_dir(dir: &Path) -> Result<(), LandingError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io(dir))
}

/// A new file readable by this user only (0600 on Unix).
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn sync_dir(dir: &Path) -> Result<(), LandingError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn landed_files_and_folders_are_the_owner_s_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let landing = Landing::open(dir.path());
        let meta = landing.write(new_entry("api"), b"[1]").unwrap();
        let mut seen = 0;
        let mut stack = vec![dir.path().join("landing")];
        while let Some(p) = stack.pop() {
            let mode = fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", p.display());
            seen += 1;
            if p.is_dir() {
                stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            }
        }
        assert!(
            seen >= 5,
            "landing/, its source, its day, body and meta: {seen}"
        );
        assert!(!meta.entry_id.is_empty());
    }

    #[test]
    fn concurrent_writes_of_one_file_each_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::thread::scope(|s| {
            for i in 0..8 {
                let path = &path;
                s.spawn(move || {
                    for j in 0..50 {
                        write_atomic(path, format!("{i}-{j}").as_bytes()).unwrap();
                    }
                });
            }
        });
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.ends_with("-49"), "{last}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left");
    }

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
    fn prune_removes_only_old_rejected_or_loaded_entries_and_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let landing = Landing::open(dir.path());
        let old = |_: ()| {
            let mut e = new_entry("s");
            e.fetched_at = "2020-01-01T00:00:00Z".parse().unwrap();
            e
        };
        let loaded = landing.write(old(()), b"[1]").unwrap();
        let not_loaded = landing.write(old(()), b"[2]").unwrap();
        let rejected = landing.write(old(()), b"{").unwrap();
        landing.reject(&rejected, "malformed").unwrap();
        let recent = landing.write(new_entry("s"), b"[3]").unwrap();
        // An interrupted write: a body whose metadata never made it.
        let orphan = landing
            .entry_path(&loaded, "x")
            .with_file_name("20200101T000000.000000Z-dead-000001.body.zst");
        fs::write(&orphan, b"x").unwrap();
        let cutoff: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let is_loaded = |m: &EntryMeta| m.entry_id == loaded.entry_id;
        // The orphan is new on disk: kept until it is older than the cutoff.
        let dry = landing.prune("s", cutoff, &is_loaded, true).unwrap();
        assert_eq!(
            (dry.removed_entries, dry.kept_not_loaded, dry.kept_recent),
            (2, 1, 1)
        );
        assert_eq!(
            landing.list("s").unwrap().len(),
            4,
            "a dry run removes nothing"
        );
        let later = Timestamp::now() + jiff::SignedDuration::from_secs(60);
        let report = landing.prune("s", later, &is_loaded, false).unwrap();
        assert_eq!(report.removed_entries, 2);
        assert_eq!(report.removed_orphans, 1);
        let left: Vec<String> = landing
            .list("s")
            .unwrap()
            .into_iter()
            .map(|e| e.meta.entry_id)
            .collect();
        assert_eq!(
            left,
            [not_loaded.entry_id, recent.entry_id],
            "unloaded entries stay, whatever their age"
        );
        assert!(!orphan.exists());
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
