//! The raw landing zone: every response body (or CSV file) kept compressed with its metadata,
//! durable **before** its interval counts as landed and before any load reads it, so anything
//! that reached affluent can be replayed without the network. And the quarantine, where records
//! that do not fit are kept with their reason.
//!
//! Layout under `DATA_DIR/landing/SOURCE/`: segments, `STAMP-PID-N.seg`, each written by one
//! process and only appended to (format in [`segment`]). A process gathers the entries of its
//! runs in a block in memory and writes it when it is full or a run ends; [`Landing::sync`] makes
//! everything written durable with one fsync per segment (group commit) and is what a run calls
//! before it reports success. Rejections (an entry that turned out to be an error payload or
//! malformed JSON) are records of their own; loads skip rejected entries, which are kept for
//! diagnosis.
//!
//! Entry ids sort in fetch order and stay the address of an entry (list, show, replay, lineage,
//! retention) whichever segment holds it. Landing is removed by a retention policy only, never by
//! a load. This crate knows nothing of HTTP or tables.

mod index;
mod legacy;
mod prune;
mod quarantine;
pub mod segment;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use affluent_core::Interval;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use index::SourceIndex;
pub use prune::PruneReport;
pub use quarantine::{Quarantine, Reject};
use writer::Writer;

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
    #[error("corrupt landing data {}: {reason}", path.display())]
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
    /// Entries of a run were not made durable (a failed write or fsync, a full disk).
    #[error(
        "landing lost entries of run {run_id} of source {source_name} before they were durable: {reason}"
    )]
    Lost {
        /// The source.
        source_name: String,
        /// The run.
        run_id: String,
        /// The failure.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LandingError + '_ {
    move |source| LandingError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What was requested and received, as kept with the body. URLs, params and bodies are
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
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// Page number in its request chain, 0 first.
    #[serde(default)]
    pub page: u32,
    /// HTTP status (200 for files).
    pub status: u16,
    /// Useful response headers (content type, ETag, Last-Modified, Date, Link).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
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

/// A landing entry as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its metadata.
    pub meta: EntryMeta,
    /// Why its body is not data, if it is not.
    pub rejected: Option<String>,
    /// Its share of the bytes on disk (bodies are compressed by block).
    pub stored_bytes: u64,
}

/// The landing zone of a project. Clones share one writer per source and one index: open it
/// once per process and pass it around.
#[derive(Debug, Clone)]
pub struct Landing {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    writers: Mutex<HashMap<String, Writer>>,
    /// Held for a whole sync: a second sync waits for the first, then finds its entries durable
    /// or syncs them.
    sync: Mutex<()>,
    indexes: Mutex<HashMap<String, SourceIndex>>,
    bodies: Mutex<BodyCache>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let writers = self.writers.get_mut().unwrap_or_else(|e| e.into_inner());
        for writer in writers.values_mut() {
            let (work, _) = writer.take_sync_work();
            let _ = work.perform(&self.root);
        }
    }
}

/// The bodies of recently read blocks: a load reads the entries of a block one after another.
#[derive(Debug, Default)]
struct BodyCache {
    blocks: std::collections::VecDeque<(BlockKey, Arc<Vec<u8>>)>,
    bytes: usize,
}

/// A block: its segment and offset.
type BlockKey = (Arc<Path>, u64);

const BODY_CACHE_BYTES: usize = 32 << 20;

impl BodyCache {
    fn get(&self, key: &BlockKey) -> Option<Arc<Vec<u8>>> {
        self.blocks
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn put(&mut self, key: BlockKey, bodies: Arc<Vec<u8>>) {
        self.bytes += bodies.len();
        self.blocks.push_back((key, bodies));
        while self.bytes > BODY_CACHE_BYTES && self.blocks.len() > 1 {
            if let Some((_, old)) = self.blocks.pop_front() {
                self.bytes -= old.len();
            }
        }
    }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// SHA-256 of a body, hex: the content hash used for change detection.
pub fn content_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Landing {
    /// The landing zone under `DATA_DIR/landing`.
    pub fn open(data_dir: &Path) -> Self {
        Self {
            inner: Arc::new(Inner {
                root: data_dir.join("landing"),
                writers: Mutex::default(),
                sync: Mutex::default(),
                indexes: Mutex::default(),
                bodies: Mutex::default(),
            }),
        }
    }

    /// The folder of a source.
    pub fn source_dir(&self, source: &str) -> PathBuf {
        self.inner.root.join(source)
    }

    /// Adds a body and its metadata to the source's segment and returns the metadata. The
    /// entry is durable after the next [`Landing::sync`]; it is visible to this process at once.
    pub fn write(&self, new: NewEntry, body: &[u8]) -> Result<EntryMeta, LandingError> {
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let stamp = jiff::fmt::strtime::format("%Y%m%dT%H%M%S%.6fZ", new.fetched_at)
            .unwrap_or_else(|_| new.fetched_at.as_microsecond().to_string());
        let entry_id = format!("{stamp}-{}-{seq:06}", new.run_id);
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
        };
        self.with_writer(&meta.source, |w| w.push_entry(meta.clone(), body))?;
        Ok(meta)
    }

    /// Marks an entry as not data (an error payload, malformed JSON), with the reason. The body
    /// stays for diagnosis; loads skip it. Durable with the entry's run, at its sync.
    pub fn reject(&self, meta: &EntryMeta, reason: &str) -> Result<(), LandingError> {
        self.with_writer(&meta.source, |w| {
            w.push_reject(&meta.run_id, &meta.entry_id, reason);
            Ok(())
        })
    }

    fn with_writer<T>(
        &self,
        source: &str,
        f: impl FnOnce(&mut Writer) -> Result<T, LandingError>,
    ) -> Result<T, LandingError> {
        let mut writers = lock(&self.inner.writers);
        let writer = writers
            .entry(source.to_string())
            .or_insert_with(|| Writer::new(self.source_dir(source)));
        f(writer)
    }

    /// Makes everything written so far durable (one fsync per segment written to, whoever
    /// wrote), then says whether `run_id` lost entries on the way. A run calls it before it
    /// reports success: its interval counts as landed only after.
    pub fn sync(&self, run_id: &str) -> Result<(), LandingError> {
        let _one_at_a_time = lock(&self.inner.sync);
        let mut work = Vec::new();
        {
            let mut writers = lock(&self.inner.writers);
            for (source, writer) in writers.iter_mut() {
                let (w, error) = writer.take_sync_work();
                if let Some(e) = error {
                    tracing::error!(source = source.as_str(), "landing write failed: {e}");
                }
                work.push((source.clone(), w));
            }
        }
        for (source, w) in work {
            if let Err(e) = w.perform(&self.source_dir(&source)) {
                tracing::error!(source = source.as_str(), "landing sync failed: {e}");
                self.with_writer(&source, |writer| {
                    writer.sync_failed(w.runs, &e.to_string());
                    Ok(())
                })?;
            }
        }
        let mut writers = lock(&self.inner.writers);
        for (source, writer) in writers.iter_mut() {
            if let Some(reason) = writer.take_lost(run_id) {
                return Err(LandingError::Lost {
                    source_name: source.clone(),
                    run_id: run_id.to_string(),
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Writes (without fsync) what this process holds in memory for a source, so that a read
    /// of its folder sees it.
    fn flush(&self, source: &str) -> Result<(), LandingError> {
        let mut writers = lock(&self.inner.writers);
        match writers.get_mut(source) {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    /// Stops appending to the source's open segment, so that a prune may rewrite it.
    fn close_writer(&self, source: &str) -> Result<(), LandingError> {
        let mut writers = lock(&self.inner.writers);
        match writers.get_mut(source) {
            Some(w) => w.close(),
            None => Ok(()),
        }
    }

    /// The index of a source, refreshed from its folder (legacy files migrated first).
    fn index<T>(&self, source: &str, f: impl FnOnce(&SourceIndex) -> T) -> Result<T, LandingError> {
        self.flush(source)?;
        let dir = self.source_dir(source);
        let mut indexes = lock(&self.inner.indexes);
        let index = indexes.entry(source.to_string()).or_default();
        let others = index.refresh(&dir)?;
        if legacy::migrate(&dir, source, &others, index)? {
            index.refresh(&dir)?;
        }
        Ok(f(index))
    }

    /// Every entry of a source, in fetch order.
    pub fn list(&self, source: &str) -> Result<Vec<Entry>, LandingError> {
        self.list_where(source, |_, _| true)
    }

    /// The entries of a source that `keep` accepts by id and fetch time, in fetch order (only
    /// their metadata is read: a load asks for the few entries no load took yet).
    pub fn list_where(
        &self,
        source: &str,
        keep: impl Fn(&str, Timestamp) -> bool,
    ) -> Result<Vec<Entry>, LandingError> {
        // A load must not take what this process has not made durable: its rows would outlive
        // their landing entry after a power loss.
        self.sync("")?;
        match self.index(source, |i| i.entries(&keep))? {
            // A segment replaced by a prune since it was indexed: read the folder again.
            Err(LandingError::Io { source: cause, .. })
                if cause.kind() == std::io::ErrorKind::NotFound =>
            {
                if let Some(index) = lock(&self.inner.indexes).get_mut(source) {
                    index.clear();
                }
                self.index(source, |i| i.entries(&keep))?
            }
            other => other,
        }
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
        self.read_body_by_id(&meta.source, &meta.entry_id)?
            .ok_or_else(|| LandingError::NotFound {
                source_name: meta.source.clone(),
                entry_id: meta.entry_id.clone(),
            })
    }

    /// Whether the body of an entry known by id is still in landing.
    pub fn has_body_by_id(&self, source: &str, entry_id: &str) -> bool {
        if let Some(index) = lock(&self.inner.indexes).get(source)
            && index.contains(entry_id)
        {
            return true;
        }
        self.pending_body(source, entry_id).is_some()
            || self
                .index(source, |i| i.contains(entry_id))
                .unwrap_or(false)
    }

    fn pending_body(&self, source: &str, entry_id: &str) -> Option<Vec<u8>> {
        lock(&self.inner.writers)
            .get(source)
            .and_then(|w| w.pending_body(entry_id))
    }

    /// The body of an entry known by id only; `None` when the entry is gone (removed by
    /// retention).
    pub fn read_body_by_id(
        &self,
        source: &str,
        entry_id: &str,
    ) -> Result<Option<Vec<u8>>, LandingError> {
        if let Some(body) = self.pending_body(source, entry_id) {
            return Ok(Some(body));
        }
        for attempt in 0..2 {
            let Some(location) = self.index(source, |i| i.location(entry_id).cloned())? else {
                return Ok(None);
            };
            let key = (location.segment.clone(), location.block);
            let cached = lock(&self.inner.bodies).get(&key);
            let bodies = match cached {
                Some(b) => b,
                None => match segment::read_bodies(&location.segment, location.block) {
                    Ok(b) => {
                        let b = Arc::new(b);
                        lock(&self.inner.bodies).put(key, b.clone());
                        b
                    }
                    // Replaced by a prune since it was indexed: read the folder again.
                    Err(LandingError::Io { source: cause, .. })
                        if attempt == 0 && cause.kind() == std::io::ErrorKind::NotFound =>
                    {
                        if let Some(index) = lock(&self.inner.indexes).get_mut(source) {
                            index.clear();
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let (start, end) = (
                location.offset as usize,
                (location.offset + location.len) as usize,
            );
            return match bodies.get(start..end) {
                Some(body) => Ok(Some(body.to_vec())),
                None => Err(LandingError::Corrupt {
                    path: location.segment.to_path_buf(),
                    reason: format!("entry {entry_id} lies outside its block"),
                }),
            };
        }
        Ok(None)
    }
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

/// Holds an exclusive lock on `path` (created, with its folder, if missing) until the file is
/// dropped: one holder at a time across processes. A holder elsewhere is waited for on a
/// blocking thread, not the runtime's.
pub async fn lock_exclusive(path: &Path) -> std::io::Result<fs::File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => {
            tracing::info!(lock = %path.display(), "waiting for another holder of the lock");
            tokio::task::spawn_blocking(move || file.lock().map(|()| file))
                .await
                .map_err(std::io::Error::other)?
        }
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
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
    private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Options that create files readable by this user only (0600 on Unix); the caller adds how it
/// opens them (write, append, create_new).
pub fn private_options() -> fs::OpenOptions {
    #[allow(unused_mut)]
    let mut options = fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn sync_dir(dir: &Path) -> Result<(), LandingError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests;
