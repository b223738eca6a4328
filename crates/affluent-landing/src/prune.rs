//! Retention: removing entries that are past a cutoff and either rejected or safely loaded.
//! A segment whose every record can go is removed; one that keeps some is rewritten under a new
//! name with the kept records (written and synced before the old one is removed), so an entry is
//! always in at least one segment until it is meant to go. A segment some process still appends
//! to (it holds its lock) is left alone.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::Path;

use jiff::Timestamp;

use crate::index::{Indexed, SourceIndex};
use crate::segment::{self, Record};
use crate::writer::Writer;
use crate::{Landing, LandingError, io, sync_dir};

/// What a prune did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Entries removed: past retention and either rejected or safely loaded.
    pub removed_entries: u64,
    /// Leftovers of interrupted writes removed (a block cut short at the end of a segment).
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
    /// rejected or for which `is_loaded` (given the entry id) says their records are safely in
    /// every table that needs them, and leftovers of interrupted writes older than `cutoff`. Entries nobody loaded are
    /// never removed, whatever their age. With `dry_run`, only counts.
    pub fn prune(
        &self,
        source: &str,
        cutoff: Timestamp,
        is_loaded: &dyn Fn(&str) -> bool,
        dry_run: bool,
    ) -> Result<PruneReport, LandingError> {
        if !dry_run {
            // This process's own open segment becomes prunable too.
            self.close_writer(source)?;
            self.sync("")?;
        }
        let dir = self.source_dir(source);
        let mut report = PruneReport::default();
        // The whole picture first: a rejection may sit in another segment than its entry.
        let mut index = SourceIndex::default();
        let others = index.refresh(&dir)?;
        if crate::legacy::migrate(&dir, source, &others, &mut index)? {
            index.refresh(&dir)?;
        }
        let rejected: HashSet<String> = index
            .segments
            .values()
            .flat_map(|s| s.rejects.iter().map(|(id, _)| id.clone()))
            .collect();
        let removable = |e: &Indexed| {
            e.fetched_at < cutoff && (rejected.contains(&*e.entry_id) || is_loaded(&e.entry_id))
        };
        let kept: HashSet<String> = index
            .segments
            .values()
            .flat_map(|s| s.entries.iter())
            .filter(|e| !removable(e))
            .map(|e| e.entry_id.to_string())
            .collect();

        for (path, seg) in &index.segments {
            let claimed = if seg.corrupt { None } else { claim(path)? };
            let Some(_guard) = claimed else {
                // Still being written, or damaged past its readable part (what follows may be
                // valid): everything in it counts as kept.
                for e in &seg.entries {
                    count_kept(&mut report, e, cutoff);
                }
                continue;
            };
            let old_tail = seg.tail > 0 && modified_before(path, cutoff);
            let mut gone = 0u64;
            for e in &seg.entries {
                if kept.contains(&*e.entry_id) {
                    count_kept(&mut report, e, cutoff);
                } else {
                    gone += 1;
                }
            }
            let stale_rejects = seg.rejects.iter().any(|(id, _)| !kept.contains(id));
            if gone == 0 && !old_tail && !stale_rejects {
                continue;
            }
            report.removed_entries += gone;
            report.removed_orphans += u64::from(old_tail);
            let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let keeps_some = seg.entries.iter().any(|e| kept.contains(&*e.entry_id))
                || seg.rejects.iter().any(|(id, _)| kept.contains(id));
            if !keeps_some {
                if !dry_run {
                    fs::remove_file(path).map_err(io(path))?;
                }
                report.bytes_freed += size;
                continue;
            }
            if dry_run {
                let freed: u64 = seg
                    .entries
                    .iter()
                    .filter(|e| !kept.contains(&*e.entry_id))
                    .map(|e| e.stored)
                    .sum();
                report.bytes_freed += freed + if old_tail { seg.tail } else { 0 };
                continue;
            }
            let written = rewrite(&dir, path, &kept)?;
            fs::remove_file(path).map_err(io(path))?;
            report.bytes_freed += size.saturating_sub(written);
        }
        if !dry_run {
            sync_dir(&dir)?;
            if let Some(index) = crate::lock(&self.inner.indexes).get_mut(source) {
                index.clear();
            }
        }
        Ok(report)
    }
}

fn count_kept(report: &mut PruneReport, e: &Indexed, cutoff: Timestamp) {
    if e.fetched_at >= cutoff {
        report.kept_recent += 1;
    } else {
        report.kept_not_loaded += 1;
    }
}

/// The segment's lock, if no process holds it (none appends to it any more).
fn claim(path: &Path) -> Result<Option<File>, LandingError> {
    let file = File::open(path).map_err(io(path))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(io(path)(e)),
    }
}

fn modified_before(path: &Path, cutoff: Timestamp) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| Timestamp::try_from(t).ok())
        .is_some_and(|t| t < cutoff)
}

/// Writes the kept records of a segment to a new one, durable before the caller removes the
/// old one. Returns the new segment's size.
fn rewrite(dir: &Path, path: &Path, kept: &HashSet<String>) -> Result<u64, LandingError> {
    let scan = segment::scan(path, 0)?;
    let mut writer = Writer::new(dir.to_path_buf());
    for (block, records) in scan.blocks {
        let mut bodies: Option<Vec<u8>> = None;
        for record in records {
            match record {
                Record::Entry {
                    meta, offset, len, ..
                } if kept.contains(&meta.entry_id) => {
                    if bodies.is_none() {
                        bodies = Some(segment::read_bodies(path, block)?);
                    }
                    let all = bodies.as_deref().unwrap_or_default();
                    let body = all
                        .get(offset as usize..(offset + len) as usize)
                        .ok_or_else(|| LandingError::Corrupt {
                            path: path.to_path_buf(),
                            reason: format!("entry {} lies outside its block", meta.entry_id),
                        })?;
                    writer.push_entry(*meta, body)?;
                }
                Record::Reject {
                    entry_id, reason, ..
                } if kept.contains(&entry_id) => {
                    writer.push_reject("", &entry_id, &reason);
                }
                _ => {}
            }
        }
    }
    let (work, error) = writer.take_sync_work();
    if let Some(e) = error {
        return Err(e);
    }
    // Data and the new segment's folder entry, before the caller removes the old one.
    work.perform(dir)?;
    Ok(work
        .files
        .iter()
        .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
        .sum())
}
