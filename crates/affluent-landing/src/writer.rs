//! The writer of one source's segments in this process: entries are gathered in a block in
//! memory, written when the block is full or a sync comes, and made durable by one fsync for
//! everything written since the last one (group commit).
//!
//! A writer owns its segment: the file is created new, locked (`flock`) while open, and never
//! appended to by anyone else; a new process starts a new segment. A segment is closed at the
//! next UTC day of fetch or at [`SEGMENT_BYTES`].

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;

use crate::segment::PendingBlock;
use crate::{EntryMeta, LandingError, create_private_dir, io};

/// A block is written once its bodies reach this size, sync or not.
pub(crate) const BLOCK_BYTES: usize = 1 << 20;
/// A segment is closed once it reaches this size.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;

/// An open segment file.
#[derive(Debug)]
struct Open {
    file: Arc<File>,
    len: u64,
    day: String,
    /// Whether the folder entry of the file is not yet durable.
    new: bool,
}

/// What one sync must make durable.
#[derive(Debug, Default)]
pub(crate) struct SyncWork {
    pub(crate) files: Vec<Arc<File>>,
    pub(crate) dirs: Vec<PathBuf>,
    pub(crate) runs: BTreeSet<String>,
}

impl SyncWork {
    /// Fsyncs the files written to, then the folders of new segments. `dir` names the place in
    /// an error.
    pub(crate) fn perform(&self, dir: &Path) -> Result<(), LandingError> {
        for file in &self.files {
            file.sync_data().map_err(io(dir))?;
        }
        self.dirs.iter().try_for_each(|d| crate::sync_dir(d))
    }
}

/// The writer of one source.
#[derive(Debug)]
pub(crate) struct Writer {
    dir: PathBuf,
    open: Option<Open>,
    pending: PendingBlock,
    pending_runs: BTreeSet<String>,
    pending_day: Option<String>,
    /// Files written to since the last sync, closed or not.
    unsynced: Vec<Arc<File>>,
    unsynced_dirs: Vec<PathBuf>,
    unsynced_runs: BTreeSet<String>,
    /// Runs whose entries a failed write or sync lost; their next sync reports it.
    lost: Vec<(String, String)>,
}

impl Writer {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            open: None,
            pending: PendingBlock::default(),
            pending_runs: BTreeSet::new(),
            pending_day: None,
            unsynced: Vec::new(),
            unsynced_dirs: Vec::new(),
            unsynced_runs: BTreeSet::new(),
            lost: Vec::new(),
        }
    }

    /// Adds an entry to the block being filled; writes the block when it is full or the day of
    /// fetch changes.
    pub(crate) fn push_entry(&mut self, meta: EntryMeta, body: &[u8]) -> Result<(), LandingError> {
        let day = day_of(meta.fetched_at);
        if self.pending_day.as_deref().is_some_and(|d| d != day) {
            self.flush()?;
        }
        self.pending_day = Some(day);
        self.pending_runs.insert(meta.run_id.clone());
        self.pending.push_entry(meta, body);
        if self.pending.size() >= BLOCK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Adds a rejection to the block being filled.
    pub(crate) fn push_reject(&mut self, run_id: &str, entry_id: &str, reason: &str) {
        self.pending_runs.insert(run_id.to_string());
        self.pending
            .push_reject(entry_id.to_string(), reason.to_string());
    }

    /// The body of an entry not yet written.
    pub(crate) fn pending_body(&self, entry_id: &str) -> Option<Vec<u8>> {
        self.pending.body_of(entry_id).map(<[u8]>::to_vec)
    }

    /// Writes the block being filled (no fsync). On failure the block is lost: the runs that
    /// had entries in it learn it from their sync.
    pub(crate) fn flush(&mut self) -> Result<(), LandingError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let day = self
            .pending_day
            .clone()
            .unwrap_or_else(|| day_of(Timestamp::now()));
        let runs = std::mem::take(&mut self.pending_runs);
        match self.write_block(&day) {
            Ok(()) => {
                self.unsynced_runs.extend(runs);
                Ok(())
            }
            Err(e) => {
                let message = e.to_string();
                self.lost
                    .extend(runs.into_iter().map(|r| (r, message.clone())));
                Err(e)
            }
        }
    }

    fn write_block(&mut self, day: &str) -> Result<(), LandingError> {
        let (bytes, _) = self.pending.take_encoded().map_err(io(&self.dir))?;
        let rotate = self
            .open
            .as_ref()
            .is_some_and(|o| o.day != day || o.len >= SEGMENT_BYTES);
        if rotate {
            self.open = None;
        }
        if self.open.is_none() {
            self.open = Some(self.create(day)?);
        }
        let open = self.open.as_mut().expect("opened above");
        let result = (&*open.file).write_all(&bytes);
        if let Err(e) = result {
            // Leave the segment readable up to its last whole block; if even that fails, stop
            // appending to it.
            if open.file.set_len(open.len).is_err() {
                self.open = None;
            }
            return Err(io(&self.dir)(e));
        }
        open.len += bytes.len() as u64;
        if open.new {
            open.new = false;
            self.unsynced_dirs.push(self.dir.clone());
        }
        if !self.unsynced.iter().any(|f| Arc::ptr_eq(f, &open.file)) {
            self.unsynced.push(open.file.clone());
        }
        Ok(())
    }

    fn create(&self, day: &str) -> Result<Open, LandingError> {
        static SEGMENTS: AtomicU64 = AtomicU64::new(0);
        create_private_dir(&self.dir)?;
        let stamp = jiff::fmt::strtime::format("%Y%m%dT%H%M%S%.6fZ", Timestamp::now())
            .unwrap_or_else(|_| Timestamp::now().as_microsecond().to_string());
        let n = SEGMENTS.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join(format!("{stamp}-{}-{n}.seg", std::process::id()));
        let file = crate::private_options()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        // Held while this process may append: a prune leaves the segment alone meanwhile.
        file.lock().map_err(io(&path))?;
        Ok(Open {
            file: Arc::new(file),
            len: 0,
            day: day.to_string(),
            new: true,
        })
    }

    /// Writes the block being filled and hands over what a sync must make durable.
    pub(crate) fn take_sync_work(&mut self) -> (SyncWork, Option<LandingError>) {
        let error = self.flush().err();
        let work = SyncWork {
            files: std::mem::take(&mut self.unsynced),
            dirs: std::mem::take(&mut self.unsynced_dirs),
            runs: std::mem::take(&mut self.unsynced_runs),
        };
        (work, error)
    }

    /// After a failed fsync: nothing written since the last good one can be trusted, and the
    /// segment is not appended to again.
    pub(crate) fn sync_failed(&mut self, runs: BTreeSet<String>, message: &str) {
        self.open = None;
        // Blocks appended since the sync took its work went to the same files: a later fsync of
        // them could succeed without their pages, so their runs are lost too.
        self.unsynced.clear();
        self.unsynced_dirs.clear();
        let later = std::mem::take(&mut self.unsynced_runs);
        self.lost.extend(
            runs.into_iter()
                .chain(later)
                .map(|r| (r, message.to_string())),
        );
    }

    /// Whether a run lost entries to a failed write or sync (and forgets it).
    pub(crate) fn take_lost(&mut self, run_id: &str) -> Option<String> {
        let i = self.lost.iter().position(|(r, _)| r == run_id)?;
        let (_, message) = self.lost.remove(i);
        self.lost.retain(|(r, _)| r != run_id);
        Some(message)
    }

    /// Stops appending to the open segment (it stays until the next sync has made it durable).
    pub(crate) fn close(&mut self) -> Result<(), LandingError> {
        self.flush()?;
        self.open = None;
        Ok(())
    }
}

/// `2024-01-01`: the UTC day of a fetch.
pub(crate) fn day_of(at: Timestamp) -> String {
    jiff::fmt::strtime::format("%Y-%m-%d", at).unwrap_or_else(|_| "unknown-day".to_string())
}
