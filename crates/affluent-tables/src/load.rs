//! Exactly-once loads from landing into Delta tables.
//!
//! Each load has a number `N` per table. Before writing, the load's **ledger**
//! (`DATA_DIR/state/loads/TABLE/N.json`: which landing entries it takes) is written atomically;
//! then the Delta commit carries an application transaction `(affluent-load, N)` in the same
//! commit as the data. A load counts only if the table's committed transaction version is at
//! least `N`: a crash before the commit leaves the table at its previous version and the ledger
//! of `N` is ignored (and overwritten by the next load), a crash after it leaves a committed
//! load whose entries are never taken again. Loading twice, or replaying, cannot duplicate rows.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use affluent_config::schema::{TableConfig, WriteMode};
use affluent_landing::{Entry, Reject, write_atomic};
use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::mapping::{ENTRY_COLUMN, EntryContext, Mapper};
use crate::parts::{Part, unify};
use crate::{TableError, Warehouse};

/// The application id of load transactions in the Delta log.
pub const LOAD_APP_ID: &str = "affluent-load";

/// Records per commit at most (a load of many entries is split into several commits; one entry
/// is never split).
const MAX_RECORDS_PER_COMMIT: usize = 500_000;

/// Times a load's commit is written again after it conflicted with another writer's.
const COMMIT_CONFLICT_RETRIES: u32 = 10;

/// Records parsed and mapped at a time: what a load holds as JSON values.
const MAP_CHUNK: usize = 16_384;

/// Which landing entries a load takes.
#[derive(Debug, Clone, Default)]
pub enum LoadScope {
    /// Entries no committed load has taken yet.
    #[default]
    Pending,
    /// Every entry fetched in `[from, to)` (all when unbounded), loaded again: the rows they
    /// gave before are replaced. Without bounds the table is rebuilt from landing alone.
    Replay {
        /// Lower bound on fetch time.
        from: Option<Timestamp>,
        /// Upper bound on fetch time.
        to: Option<Timestamp>,
    },
}

/// What a load did to one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// The table.
    pub table: String,
    /// Landing entries taken.
    pub entries: usize,
    /// Rows written (appended, inserted or replaced).
    pub loaded: u64,
    /// The compaction that followed, if the table had `[compaction] files` files.
    pub compacted: Option<crate::compact::CompactReport>,
    /// Rows that updated an existing row (merge).
    pub merged: u64,
    /// Rows of the batch dropped because a later row had the same key.
    pub superseded: u64,
    /// Records sent to the quarantine.
    pub quarantined: u64,
    /// Delta commits made.
    pub commits: u64,
    /// The table's version afterwards.
    pub version: Option<u64>,
    /// Entries that could not be parsed again (left pending), with the reason.
    pub errors: Vec<String>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} entries, {} rows loaded, {} merged, {} quarantined",
            self.table, self.entries, self.loaded, self.merged, self.quarantined
        )?;
        if self.superseded > 0 {
            write!(f, ", {} superseded in batch", self.superseded)?;
        }
        match self.version {
            Some(v) => write!(f, " (version {v})"),
            None => write!(f, " (table not created: no rows yet)"),
        }
    }
}

/// One load's ledger: the entries it takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ledger {
    load: i64,
    source: String,
    /// The load rebuilt the table (replace, or a replay of all landing): earlier rows are gone.
    reset: bool,
    entries: Vec<String>,
    at: Timestamp,
}

/// A test hook: with `AFFLUENT_FAILPOINT=NAME`, the process says so on stderr and freezes when
/// it reaches that point of a load (or of a stream's run), for the crash tests to SIGKILL it
/// there. Inert otherwise.
pub fn failpoint(name: &str) {
    if std::env::var("AFFLUENT_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Records per commit: `AFFLUENT_LOAD_COMMIT_RECORDS` or [`MAX_RECORDS_PER_COMMIT`].
fn records_per_commit() -> usize {
    std::env::var("AFFLUENT_LOAD_COMMIT_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(MAX_RECORDS_PER_COMMIT)
}

impl Warehouse {
    fn ledger_dir(&self, table: &str) -> PathBuf {
        self.project()
            .data_dir
            .join("state")
            .join("loads")
            .join(table)
    }

    /// Holds an exclusive lock on `state/loads/NAME.lock` until dropped; waits for another
    /// process loading or writing the same table.
    pub(crate) fn lock_table(&self, name: &str) -> Result<std::fs::File, TableError> {
        let dir = self.project().data_dir.join("state").join("loads");
        std::fs::create_dir_all(&dir).map_err(TableError::io(&dir))?;
        let path = dir.join(format!("{name}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(TableError::io(&path))?;
        if file.try_lock().is_err() {
            tracing::info!(
                table = name,
                "waiting for another process writing the table"
            );
            file.lock().map_err(TableError::io(&path))?;
        }
        Ok(file)
    }

    /// The entries the committed loads of a table took.
    pub async fn loaded_entries(&self, table: &str) -> Result<HashSet<String>, TableError> {
        let committed = match self.open(table).await? {
            Some(t) => committed_load(&t, table, &self.load_app(table)?).await?,
            None => 0,
        };
        Ok(self.ledger_entries(table, committed)?.as_ref().clone())
    }

    /// The entries taken by the committed loads `1..=committed` of a table. Committed ledgers
    /// never change, so each is read once per process; a table rebuilt from nothing (fewer
    /// committed loads than cached) is read again.
    fn ledger_entries(
        &self,
        table: &str,
        committed: i64,
    ) -> Result<Arc<HashSet<String>>, TableError> {
        let cache = self.ledgers.clone();
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        let (upto, entries) = cache
            .entry(table.to_string())
            .or_insert_with(|| (0, Arc::default()));
        if *upto > committed {
            *upto = 0;
            *entries = Arc::default();
        }
        if *upto == committed {
            return Ok(entries.clone());
        }
        let dir = self.ledger_dir(table);
        let set = Arc::make_mut(entries);
        for n in *upto + 1..=committed {
            let path = dir.join(format!("{n:010}.json"));
            let text = match std::fs::read(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(TableError::io(&path)(e)),
            };
            let ledger: Ledger = serde_json::from_slice(&text).map_err(|e| {
                TableError::Invalid(format!("corrupt load ledger {}: {e}", path.display()))
            })?;
            // Every committed load counts, resets included: an entry taken once is never
            // taken again by a pending load (a replace table must not fall back to an older
            // run).
            set.extend(ledger.entries);
        }
        *upto = committed;
        Ok(entries.clone())
    }

    /// Whether every table fed by the entry's source has loaded it (for landing retention).
    pub async fn loaded_by_every_table(
        &self,
        source: &str,
    ) -> Result<Option<HashSet<String>>, TableError> {
        let tables: Vec<&String> = self
            .project()
            .tables
            .iter()
            .filter(|(_, t)| t.source == source)
            .map(|(n, _)| n)
            .collect();
        if tables.is_empty() {
            return Ok(None);
        }
        let mut all: Option<HashSet<String>> = None;
        for t in tables {
            let set = self.loaded_entries(t).await?;
            all = Some(match all {
                None => set,
                Some(prev) => prev.intersection(&set).cloned().collect(),
            });
        }
        Ok(all)
    }

    /// Loads every table fed by `source`.
    pub async fn load_source(
        &self,
        source: &str,
        scope: &LoadScope,
    ) -> Result<Vec<LoadReport>, TableError> {
        if !self.project().sources.contains_key(source) {
            let known: Vec<String> = self.project().sources.keys().cloned().collect();
            return Err(self.unknown("source", source, &known));
        }
        let names: Vec<String> = self
            .project()
            .tables
            .iter()
            .filter(|(_, t)| t.source == source)
            .map(|(n, _)| n.clone())
            .collect();
        let mut reports = Vec::new();
        for name in names {
            reports.push(self.load_table(&name, scope).await?);
        }
        Ok(reports)
    }

    /// Loads one table from landing.
    pub async fn load_table(
        &self,
        name: &str,
        scope: &LoadScope,
    ) -> Result<LoadReport, TableError> {
        let Some(config) = self.project().tables.get(name).cloned() else {
            let known: Vec<String> = self.project().tables.keys().cloned().collect();
            return Err(self.unknown("table", name, &known));
        };
        let mapper = Mapper::new(&config, self.project().source_timezone(&config.source))
            .map_err(TableError::Invalid)?;
        // One load of a table at a time, across processes: the lock is released when the file
        // is closed, including by a crash.
        let _lock = self.lock_table(name)?;
        let table = self.open(name).await?;
        let committed = match &table {
            Some(t) => committed_load(t, name, &self.load_app(name)?).await?,
            None => 0,
        };
        let loaded = self.ledger_entries(name, committed)?;
        let (mut chosen, mut reset): (Vec<Entry>, bool) = match scope {
            // Only the entries no committed load took, without copying the others.
            LoadScope::Pending => (
                self.landing()
                    .list_where(&config.source, |id, _| !loaded.contains(id))?,
                false,
            ),
            LoadScope::Replay { from, to } => {
                let in_window =
                    |t: Timestamp| from.is_none_or(|f| t >= f) && to.is_none_or(|end| t < end);
                let listed = self
                    .landing()
                    .list_where(&config.source, |_, t| in_window(t))?;
                let unbounded = from.is_none() && to.is_none();
                if unbounded {
                    let present: HashSet<&str> =
                        listed.iter().map(|e| e.meta.entry_id.as_str()).collect();
                    let gone = loaded
                        .iter()
                        .filter(|e| !present.contains(e.as_str()))
                        .count();
                    if gone > 0 {
                        return Err(TableError::Invalid(format!(
                            "table `{name}`: {gone} loaded landing entries of `{}` are no longer in landing (removed by retention); rebuilding the whole table would drop their rows. Replay a window instead (--from/--to)",
                            config.source
                        )));
                    }
                }
                (listed, unbounded)
            }
        };
        chosen.retain(|e| e.rejected.is_none());
        let mut report = LoadReport {
            table: name.to_string(),
            version: table.as_ref().and_then(|t| t.version()),
            ..LoadReport::default()
        };
        let write = config.write.unwrap_or(WriteMode::Append);
        if write == WriteMode::Replace && config.replace_by.is_none() && !chosen.is_empty() {
            // The whole table becomes the newest run's records; older pending runs are
            // superseded (taken, their rows not written).
            reset = true;
        }
        if chosen.is_empty() {
            return Ok(report);
        }
        report.entries = chosen.len();

        // Groups of entries, each one commit. Each entry's records are parsed and mapped chunk
        // by chunk and only their Arrow columns are kept, so memory holds one chunk of records
        // and the group's columns, not the backlog's records.
        let whole_table = write == WriteMode::Replace && config.replace_by.is_none();
        let mut state = ChunkState {
            table,
            committed,
            first: true,
        };
        let mut group = Group::default();
        let mut existing = None;
        let total = chosen.len();
        let per_commit = records_per_commit();
        for (i, entry) in chosen.drain(..).enumerate() {
            let last = i + 1 == total;
            if group.entries.is_empty() {
                // The table's schema as the group's commit will find it (its types win).
                existing = match &state.table {
                    Some(t) if !(reset && state.first) => Some(arrow_schema(t, name).await?),
                    _ => None,
                };
            }
            match self.map_entry(&entry, &mapper, &config.source, name, existing.as_deref()) {
                Ok(mapped) => group.add(entry, mapped),
                // The entry stays pending: fixing the project file and loading again takes it.
                Err(e) => report.errors.push(format!("{}: {e}", entry.meta.entry_id)),
            }
            if !group.entries.is_empty() && (last || (group.records >= per_commit && !whole_table))
            {
                self.commit_group(
                    name,
                    &config,
                    scope,
                    reset,
                    &mut state,
                    std::mem::take(&mut group),
                    &mut report,
                )
                .await?;
            }
        }
        let table = state.table;
        report.version = table.as_ref().and_then(|t| t.version());
        if let Some(table) = table {
            let (table, compacted) = self.compact_after(name, table).await;
            if let Some(table) = table {
                report.version = table.version();
            }
            report.compacted = compacted;
        }
        Ok(report)
    }

    /// The rows of one landing entry, mapped chunk by chunk of [`MAP_CHUNK`] records.
    fn map_entry(
        &self,
        entry: &Entry,
        mapper: &Mapper,
        source: &str,
        table: &str,
        existing: Option<&datafusion::arrow::datatypes::Schema>,
    ) -> Result<Mapped, String> {
        let id = &entry.meta.entry_id;
        let context = EntryContext {
            interval: entry.meta.interval,
            fetched_at: Some(entry.meta.fetched_at),
        };
        let mut mapped = Mapped::default();
        let mut failed = None;
        self.connectors()
            .records_chunked(entry, MAP_CHUNK, &mut |records, _| {
                // The parser's own rejects were quarantined when the entry landed.
                if failed.is_some() || records.is_empty() {
                    return;
                }
                let first = mapped.records;
                mapped.records += records.len();
                let (rows, mut rejects) = mapper.map(
                    source,
                    table,
                    &[(id.clone(), records)],
                    existing,
                    first,
                    &context,
                );
                mapped.rejects.append(&mut rejects);
                match Part::of(&rows) {
                    Ok(part) => mapped.parts.push(part),
                    Err(e) => failed = Some(e.to_string()),
                }
            })
            .map_err(|e| e.to_string())?;
        match failed {
            Some(e) => Err(e),
            None => Ok(mapped),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit_group(
        &self,
        name: &str,
        config: &TableConfig,
        scope: &LoadScope,
        reset: bool,
        state: &mut ChunkState,
        group: Group,
        report: &mut LoadReport,
    ) -> Result<(), TableError> {
        let write = config.write.unwrap_or(WriteMode::Append);
        let first = std::mem::replace(&mut state.first, false);
        let Group {
            entries,
            parts,
            rejects,
            ..
        } = group;
        let mut rows = unify(parts)?;
        if write == WriteMode::Replace
            && config.replace_by.is_none()
            && let Some(last_run) = entries.last().map(|e| e.meta.run_id.clone())
        {
            let newest: HashSet<&str> = entries
                .iter()
                .filter(|e| e.meta.run_id == last_run)
                .map(|e| e.meta.entry_id.as_str())
                .collect();
            rows.retain_entries(|e| newest.contains(e))?;
        }
        self.quarantine_rejects(config, name, &entries, &rejects)?;
        report.quarantined += rejects.len() as u64;
        if write == WriteMode::Merge {
            report.superseded +=
                rows.dedupe(&config.primary_key, config.order_by.as_deref())? as u64;
        }
        if rows.columns.is_empty() && state.table.as_ref().is_none_or(|t| t.version().is_none()) {
            // Nothing to build a schema from yet: the entries stay pending.
            return Ok(());
        }
        let columns = rows.columns.clone();
        let mut batches = rows.into_batches();
        if batches.is_empty() {
            // Entries without a row (an empty page) are still taken, by a commit of no row.
            let schema = if !columns.is_empty() {
                crate::mapping::schema_of(&columns)
            } else {
                match &state.table {
                    Some(t) => arrow_schema(t, name).await?,
                    None => return Ok(()),
                }
            };
            batches.push(RecordBatch::new_empty(schema));
        }
        let n = state.committed + 1;
        let ledger = Ledger {
            load: n,
            source: config.source.clone(),
            reset: reset && first,
            entries: entries.iter().map(|e| e.meta.entry_id.clone()).collect(),
            at: Timestamp::now(),
        };
        let path = self.ledger_dir(name).join(format!("{n:010}.json"));
        let json = serde_json::to_vec_pretty(&ledger)
            .map_err(|e| TableError::Invalid(format!("cannot encode load ledger: {e}")))?;
        write_atomic(&path, &json)?;
        failpoint("load:after_ledger");

        let app = self.load_app(name)?;
        let commit = CommitProperties::default()
            .with_application_transaction(Transaction::new(app.clone(), n))
            .with_metadata([
                ("affluent.load".to_string(), serde_json::json!(n)),
                (
                    "affluent.source".to_string(),
                    serde_json::json!(config.source),
                ),
                (
                    "affluent.entries".to_string(),
                    serde_json::json!(ledger.entries.len()),
                ),
            ]);
        let entry_ids: BTreeSet<String> = ledger.entries.iter().cloned().collect();
        let rows_in = batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        let replay_range = matches!(scope, LoadScope::Replay { .. }) && !reset;
        let kind = WriteKind::pick(write, reset && first, replay_range, config);
        // On a shared table, a write that reads the table (a merge, a replace) commits only
        // over the version it read: deltalake's checker lets two merges that insert the same
        // new keys both land. A commit refused that way is written again below, over the table
        // as it is then. Appends read nothing and are reordered by deltalake itself.
        let commit = if self.is_shared(name) && !matches!(kind, WriteKind::Append) {
            commit.with_max_retries(0)
        } else {
            commit
        };
        // Another writer's commit that this one cannot be reordered after (a table shared by
        // two projects): unless the table holds this load's transaction after all (a put the
        // store made but answered with an error, then retried), the same rows are written
        // again over the table as it is now.
        let mut table = state.table.take();
        let mut attempt = 0;
        let (new_table, inserted, updated) = loop {
            if attempt > 0
                && let Some(fresh) = self.open(name).await?
            {
                if committed_load(&fresh, name, &app).await? >= n {
                    break (fresh, None, 0);
                }
                table = Some(fresh);
            }
            let written = self
                .write_batch(
                    name,
                    config,
                    table,
                    batches.clone(),
                    commit.clone(),
                    kind.clone(),
                    &entry_ids,
                )
                .await;
            match written {
                Err(e) if e.is_commit_conflict() && attempt < COMMIT_CONFLICT_RETRIES => {
                    attempt += 1;
                    tracing::warn!(
                        table = name,
                        attempt,
                        "another writer's commit conflicts with this load's, writing it again: {}",
                        affluent_core::error_chain(&e)
                    );
                    table = None;
                }
                other => break other?,
            }
        };
        failpoint("load:after_commit");
        state.table = Some(new_table);
        state.committed = n;
        report.commits += 1;
        report.loaded += inserted.unwrap_or(rows_in);
        report.merged += updated;
        Ok(())
    }

    fn quarantine_rejects(
        &self,
        config: &TableConfig,
        table: &str,
        entries: &[Entry],
        rejects: &[Reject],
    ) -> Result<(), TableError> {
        let quarantine = self.quarantine();
        for entry in entries {
            let mine: Vec<Reject> = rejects
                .iter()
                .filter(|r| r.entry_id == entry.meta.entry_id)
                .cloned()
                .collect();
            quarantine.put_scoped(&config.source, &entry.meta.entry_id, table, &mine)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_batch(
        &self,
        name: &str,
        config: &TableConfig,
        table: Option<DeltaTable>,
        batches: Vec<RecordBatch>,
        commit: CommitProperties,
        kind: WriteKind,
        entries: &BTreeSet<String>,
    ) -> Result<(DeltaTable, Option<u64>, u64), TableError> {
        let table = match table {
            Some(t) => t,
            None => self.delta_table(name).await?,
        };
        let exists = table.version().is_some();
        let err = TableError::delta(name);
        // A merge of no row commits nothing, and so would not record the load's transaction:
        // an append of no row does.
        let no_rows = batches.iter().all(|b| b.num_rows() == 0);
        match kind {
            WriteKind::Merge if exists && !no_rows => {
                let source = SessionContext::new().read_batches(batches)?;
                let (table, inserted, updated) = merge(
                    table,
                    name,
                    source,
                    &config.primary_key,
                    config.order_by.as_deref(),
                    commit,
                )
                .await?;
                Ok((table, Some(inserted), updated))
            }
            WriteKind::ReplaceWhole => {
                let t = Warehouse::write_in_order(name, table, batches)?
                    .with_save_mode(SaveMode::Overwrite)
                    .with_schema_mode(SchemaMode::Overwrite)
                    .with_commit_properties(commit)
                    .await
                    .map_err(err)?;
                Ok((t, None, 0))
            }
            WriteKind::ReplaceValues(column) if exists => {
                let values = distinct_literals(&batches, &column)?;
                let builder =
                    Warehouse::write_in_order(name, table, batches)?.with_commit_properties(commit);
                let t = if values.is_empty() {
                    builder.with_save_mode(SaveMode::Append)
                } else {
                    builder
                        .with_save_mode(SaveMode::Overwrite)
                        .with_replace_where(format!(
                            "{} IN ({})",
                            quote(&column),
                            values.join(", ")
                        ))
                }
                .await
                .map_err(err)?;
                Ok((t, None, 0))
            }
            WriteKind::ReplaceEntries if exists => {
                let list = entries
                    .iter()
                    .map(|e| format!("'{}'", e.replace('\'', "''")))
                    .collect::<Vec<_>>()
                    .join(", ");
                let t = Warehouse::write_in_order(name, table, batches)?
                    .with_save_mode(SaveMode::Overwrite)
                    .with_replace_where(format!("{} IN ({list})", quote(ENTRY_COLUMN)))
                    .with_commit_properties(commit)
                    .await
                    .map_err(err)?;
                Ok((t, None, 0))
            }
            _ => {
                let t = Warehouse::write_in_order(name, table, batches)?
                    .with_save_mode(SaveMode::Append)
                    .with_schema_mode(SchemaMode::Merge)
                    .with_commit_properties(commit)
                    .await
                    .map_err(err)?;
                Ok((t, None, 0))
            }
        }
    }
}

/// One entry's rows: the Arrow parts of its chunks, the records that did not map.
#[derive(Debug, Default)]
struct Mapped {
    records: usize,
    parts: Vec<Part>,
    rejects: Vec<Reject>,
}

/// The entries of one commit, mapped.
#[derive(Debug, Default)]
struct Group {
    entries: Vec<Entry>,
    records: usize,
    parts: Vec<Part>,
    rejects: Vec<Reject>,
}

impl Group {
    fn add(&mut self, entry: Entry, mapped: Mapped) {
        self.entries.push(entry);
        self.records += mapped.records;
        self.parts.extend(mapped.parts);
        self.rejects.extend(mapped.rejects);
    }
}

/// What successive commits of one load share.
struct ChunkState {
    table: Option<DeltaTable>,
    committed: i64,
    first: bool,
}

/// How one commit writes.
#[derive(Clone)]
enum WriteKind {
    Append,
    Merge,
    ReplaceWhole,
    ReplaceValues(String),
    /// Rows of these entries replaced (a replay of part of an append table).
    ReplaceEntries,
}

impl WriteKind {
    fn pick(write: WriteMode, reset: bool, replay_range: bool, config: &TableConfig) -> Self {
        if reset {
            return WriteKind::ReplaceWhole;
        }
        match write {
            WriteMode::Merge => WriteKind::Merge,
            WriteMode::Replace => match &config.replace_by {
                Some(c) => WriteKind::ReplaceValues(c.clone()),
                None => WriteKind::ReplaceWhole,
            },
            WriteMode::Append if replay_range => WriteKind::ReplaceEntries,
            WriteMode::Append => WriteKind::Append,
        }
    }
}

/// Upserts `source` into `table` on `key` in one commit: every column of the source is set
/// (new columns are added to the table); with `newer_by`, a row only overwrites a row whose
/// value of that column is not greater. Returns the table, rows inserted and rows updated.
pub(crate) async fn merge(
    table: DeltaTable,
    name: &str,
    source: datafusion::prelude::DataFrame,
    key: &[String],
    newer_by: Option<&str>,
    commit: CommitProperties,
) -> Result<(DeltaTable, u64, u64), TableError> {
    let columns: Vec<String> = source
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    if let Some(k) = key.iter().find(|k| !columns.contains(k)) {
        return Err(TableError::Invalid(format!(
            "`{name}`: key column `{k}` is not among the rows' columns ({})",
            columns.join(", ")
        )));
    }
    let on = key
        .iter()
        .map(|k| format!("t.{q} = s.{q}", q = quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let newer = newer_by.map(|o| format!("s.{q} >= t.{q} OR t.{q} IS NULL", q = quote(o)));
    let (table, metrics) = table
        .merge(source, on)
        .with_source_alias("s")
        .with_target_alias("t")
        .with_merge_schema(true)
        .with_commit_properties(commit)
        .when_matched_update(|mut update| {
            if let Some(p) = newer {
                update = update.predicate(p);
            }
            for c in &columns {
                update = update.update(c.as_str(), format!("s.{}", quote(c)));
            }
            update
        })
        .map_err(TableError::delta(name))?
        .when_not_matched_insert(|mut insert| {
            for c in &columns {
                insert = insert.set(c.as_str(), format!("s.{}", quote(c)));
            }
            insert
        })
        .map_err(TableError::delta(name))?
        .await
        .map_err(TableError::delta(name))?;
    Ok((
        table,
        metrics.num_target_rows_inserted as u64,
        metrics.num_target_rows_updated as u64,
    ))
}

/// The last load `app` committed to a table (0: none).
pub(crate) async fn committed_load(
    table: &DeltaTable,
    name: &str,
    app: &str,
) -> Result<i64, TableError> {
    let Ok(state) = table.snapshot() else {
        return Ok(0);
    };
    Ok(state
        .transaction_version(table.log_store().as_ref(), app)
        .await
        .map_err(TableError::delta(name))?
        .unwrap_or(0))
}

/// The Arrow schema of a table as DataFusion reads it.
pub(crate) async fn arrow_schema(
    table: &DeltaTable,
    name: &str,
) -> Result<std::sync::Arc<datafusion::arrow::datatypes::Schema>, TableError> {
    let provider = table
        .table_provider()
        .await
        .map_err(|e| TableError::Invalid(format!("cannot read table `{name}`: {e}")))?;
    Ok(provider.schema())
}

/// `"name"`, quoted for SQL.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The distinct values of a column as SQL literals.
fn distinct_literals(batches: &[RecordBatch], column: &str) -> Result<Vec<String>, TableError> {
    let mut out = BTreeSet::new();
    for batch in batches {
        distinct_literals_of(batch, column, &mut out)?;
    }
    Ok(out.into_iter().collect())
}

fn distinct_literals_of(
    batch: &RecordBatch,
    column: &str,
    out: &mut BTreeSet<String>,
) -> Result<(), TableError> {
    use datafusion::arrow::util::display::array_value_to_string;
    let Some(array) = batch.column_by_name(column) else {
        return Err(TableError::Invalid(format!(
            "`replace_by` column `{column}` is not in the loaded rows"
        )));
    };
    let numeric = array.data_type().is_numeric();
    for i in 0..array.len() {
        if array.is_null(i) {
            continue;
        }
        let text = array_value_to_string(array, i)?;
        out.insert(if numeric {
            text
        } else {
            let lit = format!("'{}'", text.replace('\'', "''"));
            match array.data_type() {
                datafusion::arrow::datatypes::DataType::Date32 => format!("DATE {lit}"),
                datafusion::arrow::datatypes::DataType::Timestamp(_, _) => {
                    format!("TIMESTAMP {lit}")
                }
                _ => lit,
            }
        });
    }
    Ok(())
}
