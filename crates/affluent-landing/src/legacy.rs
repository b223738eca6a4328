//! The first landing layout, one file per body and one per metadata under `SOURCE/YYYY-MM-DD/`,
//! moved into segments the first time a process reads the source. Each entry keeps its id; its
//! old files are removed only once the segment holding it is durable, and an entry already in a
//! segment (a migration cut short) is not copied twice.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::index::SourceIndex;
use crate::writer::Writer;
use crate::{EntryMeta, LandingError, io, sync_dir};

/// Moves the legacy day folders of a source into segments. Returns whether anything moved.
pub(crate) fn migrate(
    dir: &Path,
    source: &str,
    day_dirs: &[PathBuf],
    index: &mut SourceIndex,
) -> Result<bool, LandingError> {
    if day_dirs.is_empty() {
        return Ok(false);
    }
    // One process at a time; the other one finds the work done when it gets the lock.
    let lock_path = dir.join(".migrate.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    index.refresh(dir)?;

    let mut writer = Writer::new(dir.to_path_buf());
    let mut done: Vec<PathBuf> = Vec::new();
    let mut moved = 0usize;
    for day in day_dirs {
        let Ok(listing) = fs::read_dir(day) else {
            continue;
        };
        let mut metas: Vec<PathBuf> = listing
            .flatten()
            .map(|f| f.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".meta.json") && !n.starts_with('.'))
            })
            .collect();
        metas.sort();
        for meta_path in metas {
            match read_entry(&meta_path) {
                Ok((meta, body, rejected)) => {
                    if !index.contains(&meta.entry_id) {
                        let (run_id, entry_id) = (meta.run_id.clone(), meta.entry_id.clone());
                        writer.push_entry(meta, &body)?;
                        if let Some(reason) = rejected {
                            writer.push_reject(&run_id, &entry_id, &reason);
                        }
                        moved += 1;
                    }
                    done.push(meta_path);
                }
                Err(e) => {
                    // Kept aside, not lost: the folder is ignored by listings from then on.
                    tracing::error!(source, "legacy landing entry cannot be moved: {e}");
                    set_aside(dir, &meta_path)?;
                }
            }
        }
    }
    let (work, error) = writer.take_sync_work();
    if let Some(e) = error {
        return Err(e);
    }
    work.perform(dir)?;
    drop(writer);
    // An entry skipped above may sit in a segment that a migration cut short wrote but did not
    // sync: every segment is durable before a legacy file goes.
    for path in index.segments.keys() {
        File::open(path)
            .and_then(|f| f.sync_data())
            .map_err(io(path))?;
    }
    sync_dir(dir)?;
    for meta_path in &done {
        let stem = entry_stem(meta_path);
        for suffix in ["body.zst", "rejected.json"] {
            let _ = fs::remove_file(meta_path.with_file_name(format!("{stem}.{suffix}")));
        }
        let _ = fs::remove_file(meta_path);
    }
    for day in day_dirs {
        // What is left: temp files and bodies whose metadata was never written, leftovers of
        // writes that were never acknowledged.
        if let Ok(listing) = fs::read_dir(day) {
            for f in listing.flatten() {
                let _ = fs::remove_file(f.path());
            }
        }
        let _ = fs::remove_dir(day);
    }
    tracing::info!(
        source,
        entries = moved,
        "landing entries moved from one file each into segments"
    );
    Ok(true)
}

fn entry_stem(meta_path: &Path) -> String {
    meta_path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".meta.json"))
        .unwrap_or_default()
        .to_string()
}

type LegacyEntry = (EntryMeta, Vec<u8>, Option<String>);

fn read_entry(meta_path: &Path) -> Result<LegacyEntry, LandingError> {
    let text = fs::read(meta_path).map_err(io(meta_path))?;
    let meta: EntryMeta = serde_json::from_slice(&text).map_err(|e| LandingError::Corrupt {
        path: meta_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let stem = entry_stem(meta_path);
    let body_path = meta_path.with_file_name(format!("{stem}.body.zst"));
    let compressed = fs::read(&body_path).map_err(io(&body_path))?;
    let body = zstd::stream::decode_all(compressed.as_slice()).map_err(io(&body_path))?;
    let rejected = fs::read(meta_path.with_file_name(format!("{stem}.rejected.json")))
        .ok()
        .map(|bytes| {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_string))
                .unwrap_or_else(|| "rejected".to_string())
        });
    Ok((meta, body, rejected))
}

/// Moves an unreadable entry's files to `SOURCE/.legacy-unreadable/DAY/`.
fn set_aside(dir: &Path, meta_path: &Path) -> Result<(), LandingError> {
    let day = meta_path
        .parent()
        .and_then(|d| d.file_name())
        .map(|d| d.to_os_string())
        .unwrap_or_default();
    let aside = dir.join(".legacy-unreadable").join(day);
    crate::create_private_dir(&aside)?;
    let stem = entry_stem(meta_path);
    for suffix in ["body.zst", "rejected.json", "meta.json"] {
        let from = meta_path.with_file_name(format!("{stem}.{suffix}"));
        if from.exists() {
            let to = aside.join(format!("{stem}.{suffix}"));
            fs::rename(&from, &to).map_err(io(&from))?;
        }
    }
    Ok(())
}
