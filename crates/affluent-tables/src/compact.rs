//! Few files per table: small files merged (Delta's optimize) and replaced files deleted
//! (vacuum), after loads and model runs or with `affluent tables optimize`.
//!
//! An optimize commit changes no row (its actions are `dataChange = false`), and the Delta log
//! keeps every transaction, so the `(affluent-load, N)` of the last load stays in the table's
//! state: exactly-once loads, replays and each row's landing entry are untouched. It runs under
//! the table's lock, like loads and model runs.

use std::num::NonZeroU64;

use deltalake::DeltaTable;
use serde::Serialize;

use crate::{TableError, Warehouse};

/// The least time replaced files of a shared table (outside `DATA_DIR/tables`) are kept: other
/// projects' sinks and models, and outside readers, may read older versions.
const SHARED_VACUUM_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The size merged files aim at.
const TARGET_FILE_SIZE: u64 = 128 << 20;

/// What a compaction did to one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompactReport {
    /// The table or model.
    pub table: String,
    /// Data files of the table before.
    pub files_before: usize,
    /// Data files of the table after.
    pub files_after: usize,
    /// Files deleted from disk (replaced earlier than `vacuum_after` ago).
    pub deleted: usize,
    /// The table's version after.
    pub version: Option<u64>,
}

impl Warehouse {
    /// Merges a table's small files and deletes the files replaced long enough ago
    /// (`[compaction] vacuum_after`), whatever their number. `None`: never written.
    pub async fn optimize(&self, name: &str) -> Result<Option<CompactReport>, TableError> {
        if !self.names().iter().any(|n| n == name) {
            return Err(self.unknown("table or model", name, &self.names()));
        }
        let _lock = self.lock_table(name)?;
        let Some(table) = self.open(name).await? else {
            return Ok(None);
        };
        self.compact_locked(name, table).await.map(Some)
    }

    /// After a load or a model run (the table's lock held): compacts when the table has
    /// `[compaction] files` data files or more. Returns the table as it is after.
    pub(crate) async fn compact_if_due(
        &self,
        name: &str,
        table: DeltaTable,
    ) -> Result<(DeltaTable, Option<CompactReport>), TableError> {
        let Some(threshold) = self.project().compaction.files() else {
            return Ok((table, None));
        };
        // Due when the version has many files (appends). Merges and replaces rewrite files
        // instead: few are current, and the replaced ones wait on disk for their vacuum.
        let current = data_files(&table, name)?;
        if current < threshold {
            let left = self
                .stored_parquet(name, &table)
                .await
                .saturating_sub(current);
            if left >= threshold
                && vacuum_due(&self.location(name).to_string(), self.vacuum_after())
            {
                let (table, deleted) = self.vacuum(name, table).await?;
                tracing::debug!(table = name, deleted, "replaced files deleted");
                return Ok((table, None));
            }
            return Ok((table, None));
        }
        let report = match self.compact_locked(name, table).await {
            Err(TableError::Busy(holder)) => {
                tracing::info!(table = name, "not compacting now: {holder}");
                let table = self.open(name).await?.ok_or_else(|| {
                    TableError::Invalid(format!("table `{name}` vanished while compacting"))
                })?;
                return Ok((table, None));
            }
            other => other?,
        };
        tracing::info!(
            table = name,
            files_before = report.files_before,
            files_after = report.files_after,
            deleted = report.deleted,
            "compacted"
        );
        let table = self.open(name).await?.ok_or_else(|| {
            TableError::Invalid(format!("table `{name}` vanished while compacting"))
        })?;
        Ok((table, Some(report)))
    }

    /// [`Warehouse::compact_if_due`] after a commit that stands whatever happens here: a
    /// failed compaction is logged, and the files stay as they were. Returns the table as it
    /// is after (`None` when the compaction failed midway: open it again).
    pub(crate) async fn compact_after(
        &self,
        name: &str,
        table: DeltaTable,
    ) -> (Option<DeltaTable>, Option<CompactReport>) {
        match self.compact_if_due(name, table).await {
            Ok((table, report)) => (Some(table), report),
            Err(e) => {
                tracing::warn!(
                    table = name,
                    "compaction failed, the files stay: {}",
                    affluent_core::error_chain(&e)
                );
                (None, None)
            }
        }
    }

    /// Compacts (the table's lock held). On an object store, under the table's compaction
    /// lease, over the table as it is once the lease is held.
    async fn compact_locked(
        &self,
        name: &str,
        table: DeltaTable,
    ) -> Result<CompactReport, TableError> {
        let lease = self
            .compaction_lease(name, &table)
            .await
            .map_err(TableError::Busy)?;
        let Some(lease) = lease else {
            return self.compact_now(name, table).await;
        };
        let result = match self.open(name).await {
            Ok(Some(table)) => self.compact_now(name, table).await,
            Ok(None) => Err(TableError::Invalid(format!(
                "table `{name}` vanished while compacting"
            ))),
            Err(e) => Err(e),
        };
        lease.release().await;
        result
    }

    async fn compact_now(
        &self,
        name: &str,
        table: DeltaTable,
    ) -> Result<CompactReport, TableError> {
        let err = TableError::delta(name);
        let files_before = data_files(&table, name)?;
        let target = NonZeroU64::new(TARGET_FILE_SIZE).unwrap_or(NonZeroU64::MIN);
        let mut optimize = table.optimize().with_target_size(target);
        if self.is_shared(name) {
            // Meant as "only over the version read" (deltalake does not see two compactions
            // removing the same files as a conflict), but deltalake 1.1's optimize commits with
            // its own retries and ignores this: the lease is what guards (a known gap).
            optimize = optimize.with_commit_properties(
                deltalake::kernel::transaction::CommitProperties::default().with_max_retries(0),
            );
        }
        let (table, _metrics) = optimize.await.map_err(|e| {
            let e = err(e);
            if e.is_commit_conflict() {
                TableError::Busy(format!(
                    "another writer committed to `{name}` while it was being compacted"
                ))
            } else {
                e
            }
        })?;
        let files_after = data_files(&table, name)?;
        let (table, deleted) = self.vacuum(name, table).await?;
        Ok(CompactReport {
            table: name.to_string(),
            files_before,
            files_after,
            deleted,
            version: table.version(),
        })
    }
}

impl Warehouse {
    fn vacuum_after(&self) -> std::time::Duration {
        self.project().compaction.vacuum_after()
    }

    /// Deletes the files replaced more than `vacuum_after` ago (the table's lock held).
    async fn vacuum(
        &self,
        name: &str,
        table: DeltaTable,
    ) -> Result<(DeltaTable, usize), TableError> {
        let mut after = self.vacuum_after();
        if self.is_shared(name) {
            // Other projects and outside readers may read older versions for longer.
            after = after.max(SHARED_VACUUM_AFTER);
        }
        let retention = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
        vacuumed_now(&self.location(name).to_string());
        let (table, vacuumed) = table
            .vacuum()
            .with_retention_period(retention)
            // Delta's 7-day floor is for readers we cannot see; affluent's readers swap to the
            // new version within a second, and `vacuum_after` is the user's choice.
            .with_enforce_retention_duration(false)
            .await
            .map_err(TableError::delta(name))?;
        Ok((table, vacuumed.files_deleted.len()))
    }

    /// Deletes, in every table and model, the files replaced more than `vacuum_after` ago:
    /// what a long-running process calls now and then, so that replaced files do not wait for
    /// the table's next load. Returns the files deleted.
    pub async fn tidy(&self) -> Result<usize, TableError> {
        let mut deleted = 0;
        for name in self.names() {
            if let Some(dir) = self.table_dir(&name)
                && parquet_on_disk(&dir) == 0
            {
                continue;
            }
            let _lock = self.lock_table(&name)?;
            let Some(table) = self.open(&name).await? else {
                continue;
            };
            if self.stored_parquet(&name, &table).await > data_files(&table, &name)? {
                deleted += self.vacuum(&name, table).await?.1;
            }
        }
        Ok(deleted)
    }
}

/// When each table was last vacuumed by this process.
fn vacuums() -> &'static std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>> {
    static LAST: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    > = std::sync::OnceLock::new();
    LAST.get_or_init(Default::default)
}

fn vacuumed_now(location: &str) {
    vacuums()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(location.to_string(), std::time::Instant::now());
}

/// Whether this process last vacuumed the table `every` ago or more (or never).
fn vacuum_due(location: &str, every: std::time::Duration) -> bool {
    vacuums()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(location)
        .is_none_or(|at| at.elapsed() >= every)
}

/// Parquet files under a table's folder (partitions included), current or not.
pub(crate) fn parquet_on_disk(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                if path.ends_with("_delta_log") {
                    0
                } else {
                    parquet_on_disk(&path)
                }
            } else {
                usize::from(path.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

/// The data files of a table's current version.
fn data_files(table: &DeltaTable, name: &str) -> Result<usize, TableError> {
    Ok(table
        .get_file_uris()
        .map_err(TableError::delta(name))?
        .count())
}
