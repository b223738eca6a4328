//! What this process knows of a source's segments: the entries and rejections read so far from
//! each, and where each body is. Segments only grow (or are replaced by a prune under another
//! name), so a refresh reads each one from where the last read stopped.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::segment::{self, Record};
use crate::{Entry, LandingError, io};

/// Where an entry's body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) segment: Arc<Path>,
    /// Offset of the block in the segment.
    pub(crate) block: u64,
    /// Offset and length in the block's bodies.
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// One entry as indexed: what listing and retention choose by, and where the rest is. The
/// metadata itself stays on disk (read again from its block when an entry is listed), so a
/// process that lands for months holds about 250 bytes per entry, not the whole metadata.
#[derive(Debug, Clone)]
pub(crate) struct Indexed {
    pub(crate) entry_id: Box<str>,
    pub(crate) fetched_at: jiff::Timestamp,
    pub(crate) location: Location,
    pub(crate) stored: u64,
    /// Its line in the block's metadata section.
    pub(crate) line: usize,
}

/// What has been read of one segment.
#[derive(Debug, Default)]
pub(crate) struct SegmentIndex {
    /// The readable part ends here.
    pub(crate) end: u64,
    /// Bytes after it (a cut-short block, or one being written).
    pub(crate) tail: u64,
    /// The tail starts with a block that fails its checks (see [`segment::Scan::corrupt`]).
    pub(crate) corrupt: bool,
    pub(crate) entries: Vec<Indexed>,
    /// Rejections recorded in this segment (of entries here or elsewhere).
    pub(crate) rejects: Vec<(String, String)>,
}

/// The index of one source.
#[derive(Debug, Default)]
pub(crate) struct SourceIndex {
    pub(crate) segments: BTreeMap<PathBuf, SegmentIndex>,
    by_id: HashMap<String, Location>,
    rejected: HashMap<String, String>,
}

impl SourceIndex {
    /// Reads what is new in the source's folder: new segments, blocks appended to known ones,
    /// and forgets segments that are gone. Returns the names of other files found there (the
    /// legacy layout's day folders).
    pub(crate) fn refresh(&mut self, dir: &Path) -> Result<Vec<PathBuf>, LandingError> {
        let mut others = Vec::new();
        let listing = match fs::read_dir(dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !self.segments.is_empty() {
                    *self = Self::default();
                }
                return Ok(others);
            }
            Err(e) => return Err(io(dir)(e)),
        };
        let mut present = Vec::new();
        for item in listing {
            let item = item.map_err(io(dir))?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let path = item.path();
            if name.ends_with(".seg") {
                let len = item.metadata().map_err(io(&path))?.len();
                present.push((path, len));
            } else if item.file_type().map_err(io(&path))?.is_dir() {
                others.push(path);
            }
        }
        let before = self.segments.len();
        let names: std::collections::HashSet<&Path> =
            present.iter().map(|(p, _)| p.as_path()).collect();
        self.segments.retain(|p, _| names.contains(p.as_path()));
        let mut rebuild = self.segments.len() != before;
        let mut gone = Vec::new();
        for (path, len) in present {
            let known = self.segments.entry(path.clone()).or_default();
            if known.end + known.tail == len && len > 0 {
                continue;
            }
            if len < known.end {
                // Not a segment that only grew: read it again from the start.
                *known = SegmentIndex::default();
                rebuild = true;
            }
            let scan = match segment::scan(&path, known.end) {
                Ok(scan) => scan,
                // Removed by a prune since the folder was read.
                Err(LandingError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    gone.push(path.clone());
                    continue;
                }
                Err(e) => return Err(e),
            };
            let segment: Arc<Path> = Arc::from(path.as_path());
            for (block, records) in scan.blocks {
                for (line, record) in records.into_iter().enumerate() {
                    match record {
                        Record::Entry {
                            meta,
                            offset,
                            len,
                            stored,
                        } => {
                            let location = Location {
                                segment: segment.clone(),
                                block,
                                offset,
                                len,
                            };
                            if !rebuild {
                                self.by_id.insert(meta.entry_id.clone(), location.clone());
                            }
                            known.entries.push(Indexed {
                                entry_id: meta.entry_id.into_boxed_str(),
                                fetched_at: meta.fetched_at,
                                location,
                                stored,
                                line,
                            });
                        }
                        Record::Reject {
                            entry_id, reason, ..
                        } => {
                            if !rebuild {
                                self.rejected.insert(entry_id.clone(), reason.clone());
                            }
                            known.rejects.push((entry_id, reason));
                        }
                    }
                }
            }
            known.end = scan.end;
            known.tail = scan.tail;
            known.corrupt = scan.corrupt;
            if scan.corrupt {
                tracing::error!(
                    segment = %path.display(),
                    at = scan.end,
                    "landing segment has a block that fails its checks: entries after it are not read (prune leaves the segment alone)"
                );
            }
        }
        for path in gone {
            self.segments.remove(&path);
            rebuild = true;
        }
        if rebuild {
            self.rebuild_maps();
        }
        Ok(others)
    }

    fn rebuild_maps(&mut self) {
        self.by_id.clear();
        self.rejected.clear();
        for segment in self.segments.values() {
            for e in &segment.entries {
                self.by_id
                    .insert(e.entry_id.to_string(), e.location.clone());
            }
            for (id, reason) in &segment.rejects {
                self.rejected.insert(id.clone(), reason.clone());
            }
        }
    }

    /// Forgets everything (a segment was replaced under this process).
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    pub(crate) fn location(&self, entry_id: &str) -> Option<&Location> {
        self.by_id.get(entry_id)
    }

    pub(crate) fn rejection(&self, entry_id: &str) -> Option<&str> {
        self.rejected.get(entry_id).map(String::as_str)
    }

    pub(crate) fn contains(&self, entry_id: &str) -> bool {
        self.by_id.contains_key(entry_id)
    }

    /// The entries `keep` accepts (by id and fetch time), in fetch order, their metadata read
    /// from their blocks (each block once).
    pub(crate) fn entries(
        &self,
        keep: impl Fn(&str, jiff::Timestamp) -> bool,
    ) -> Result<Vec<Entry>, LandingError> {
        let mut chosen: Vec<&Indexed> = self
            .segments
            .values()
            .flat_map(|s| s.entries.iter())
            .filter(|e| keep(&e.entry_id, e.fetched_at))
            .collect();
        // Block by block, then back in fetch order.
        chosen.sort_by(|a, b| {
            (&a.location.segment, a.location.block, a.line).cmp(&(
                &b.location.segment,
                b.location.block,
                b.line,
            ))
        });
        let mut out = Vec::with_capacity(chosen.len());
        let mut block: Option<(&Location, Vec<Record>)> = None;
        for e in chosen {
            let same = block.as_ref().is_some_and(|(l, _)| {
                l.segment == e.location.segment && l.block == e.location.block
            });
            if !same {
                let records = segment::read_records(&e.location.segment, e.location.block)?;
                block = Some((&e.location, records));
            }
            let records = &block.as_ref().expect("read above").1;
            let Some(Record::Entry { meta, .. }) = records.get(e.line) else {
                return Err(LandingError::Corrupt {
                    path: e.location.segment.to_path_buf(),
                    reason: format!(
                        "the block at byte {} no longer holds entry {}",
                        e.location.block, e.entry_id
                    ),
                });
            };
            out.push(Entry {
                meta: (**meta).clone(),
                rejected: self.rejection(&e.entry_id).map(str::to_string),
                stored_bytes: e.stored,
            });
        }
        out.sort_by(|a, b| a.meta.entry_id.cmp(&b.meta.entry_id));
        // A prune writes a segment's kept entries to a new one before removing the old one: a
        // refresh in between sees them twice.
        out.dedup_by(|a, b| a.meta.entry_id == b.meta.entry_id);
        Ok(out)
    }
}
