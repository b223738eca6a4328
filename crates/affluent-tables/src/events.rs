//! A table's rows as events, one commit at a time, for `[streams.NAME]`.
//!
//! A stream reads its input table version by version: the events of version `v` are the rows of
//! the data files that commit added, in the order their landing entries were fetched, and
//! within an entry in the order its response held them (a table write stores its rows in the
//! order given, `Warehouse::write_in_order`, whatever their number). Reading a version again gives the same events in the same order, which a
//! stream's restart after a crash relies on. A commit that only reorganizes files (a
//! compaction, a vacuum) has no events; one that may rewrite or remove rows (a merge, an
//! overwrite, a delete) cannot be read as events, and says so.

use std::collections::HashSet;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;

use crate::{TableError, Warehouse};

/// The columns a stream reads: the key, the event time and one value per aggregate.
#[derive(Debug, Clone)]
pub struct EventColumns {
    /// Grouping key (read as text).
    pub key: String,
    /// Event time: a timestamp, a date, or RFC 3339 text.
    pub time: String,
    /// Values (read as numbers).
    pub values: Vec<String>,
}

/// One row as an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The key.
    pub key: String,
    /// Event time, milliseconds since the epoch.
    pub time_ms: i64,
    /// One value per value column.
    pub values: Vec<Option<f64>>,
}

/// The events of one version of a table.
#[derive(Debug, Clone, Default)]
pub struct CommitEvents {
    /// The events, in the commit's order.
    pub events: Vec<Event>,
    /// Rows without a key or an event time (or with a time that is not one): not events.
    pub skipped: u64,
    /// Why the first skipped row was skipped.
    pub first_skip: Option<String>,
}

/// What one version of a table gives a stream.
#[derive(Debug, Clone)]
pub enum Commit {
    /// The rows it added, as events.
    Events(CommitEvents),
    /// It cannot be read as events: it rewrote or removed rows, or its log entry or files are
    /// gone. The stream's windows must be computed again from the table as it is.
    Rewritten(String),
}

impl Warehouse {
    /// The events version `version` of `table` added, or why that version cannot give them.
    /// Errors when a column is missing or the table cannot be read.
    pub async fn commit_events(
        &self,
        table: &str,
        version: i64,
        columns: &EventColumns,
    ) -> Result<Commit, TableError> {
        let Some(mut delta) = self.open(table).await? else {
            return Ok(Commit::Rewritten(format!("table `{table}` is gone")));
        };
        let store = delta.log_store();
        let Some(bytes) = store
            .read_commit_entry(version.unsigned_abs())
            .await
            .map_err(TableError::delta(table))?
        else {
            return Ok(Commit::Rewritten(format!(
                "version {version} of table `{table}` is no longer in its log"
            )));
        };
        let mut actions: Vec<serde_json::Value> = Vec::new();
        for line in bytes.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice(line) {
                Ok(action) => actions.push(action),
                Err(e) => {
                    return Ok(Commit::Rewritten(format!(
                        "version {version} of table `{table}` has a log line that is not JSON ({e})"
                    )));
                }
            }
        }
        let operation = actions
            .iter()
            .find_map(|a| a.pointer("/commitInfo/operation").and_then(|o| o.as_str()))
            .unwrap_or("");
        let mode = actions
            .iter()
            .find_map(|a| {
                a.pointer("/commitInfo/operationParameters/mode")
                    .and_then(|o| o.as_str())
            })
            .unwrap_or("");
        let removes = actions.iter().any(|a| {
            a.pointer("/remove/dataChange") != Some(&serde_json::Value::Bool(false))
                && a.get("remove").is_some()
        });
        let adds: Vec<String> = actions
            .iter()
            .filter(|a| a.pointer("/add/dataChange") != Some(&serde_json::Value::Bool(false)))
            .filter_map(|a| a.pointer("/add/path").and_then(|p| p.as_str()))
            .map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        if removes || (operation == "WRITE" && mode != "Append") {
            return Ok(Commit::Rewritten(format!(
                "version {version} of table `{table}` ({operation}{}) rewrote or removed rows",
                if mode.is_empty() {
                    String::new()
                } else {
                    format!(", {mode}")
                }
            )));
        }
        if adds.is_empty() {
            return Ok(Commit::Events(CommitEvents::default()));
        }
        delta
            .load_version(version.unsigned_abs())
            .await
            .map_err(TableError::delta(table))?;
        let uris: Vec<String> = delta
            .get_file_uris()
            .map_err(TableError::delta(table))?
            .collect();
        // The commit's files in its own order, as URIs of the version.
        let mut files = Vec::with_capacity(adds.len());
        let mut taken = HashSet::new();
        for path in &adds {
            let found = uris
                .iter()
                .find(|u| u.ends_with(path.as_str()) && !taken.contains(*u));
            match found {
                Some(u) => {
                    taken.insert(u.clone());
                    files.push(u.clone());
                }
                None => {
                    return Ok(Commit::Rewritten(format!(
                        "a file of version {version} of table `{table}` is not in that version ({path})"
                    )));
                }
            }
        }
        // Files replaced by a compaction are deleted by its vacuum: a version read late may
        // have lost them.
        for file in &files {
            if let Some(path) = file.strip_prefix("file://") {
                let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
                if !std::path::Path::new(path.as_ref()).exists() {
                    return Ok(Commit::Rewritten(format!(
                        "the files of version {version} of table `{table}` were compacted and deleted"
                    )));
                }
            }
        }
        self.scan_events(table, &delta, files, columns)
            .await
            .map(Commit::Events)
    }

    /// Every row of `table` as it is now, as events in fetch order, with the version read;
    /// `None` when the table was never written.
    pub async fn table_events(
        &self,
        table: &str,
        columns: &EventColumns,
    ) -> Result<Option<(i64, CommitEvents)>, TableError> {
        let Some(delta) = self.open(table).await? else {
            return Ok(None);
        };
        let version = delta
            .version()
            .map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let files: Vec<String> = delta
            .get_file_uris()
            .map_err(TableError::delta(table))?
            .collect();
        let events = self.scan_events(table, &delta, files, columns).await?;
        Ok(Some((version, events)))
    }

    /// The Delta table id of `table` (a new one when it is created again), if it exists.
    pub async fn table_id(&self, table: &str) -> Result<Option<String>, TableError> {
        let Some(delta) = self.open(table).await? else {
            return Ok(None);
        };
        let snapshot = delta.snapshot().map_err(TableError::delta(table))?;
        Ok(Some(snapshot.metadata().id().to_string()))
    }

    /// The rows of `files` of a loaded version as events, back in fetch order.
    async fn scan_events(
        &self,
        table: &str,
        delta: &deltalake::DeltaTable,
        files: Vec<String>,
        columns: &EventColumns,
    ) -> Result<CommitEvents, TableError> {
        let mut out = CommitEvents::default();
        if files.is_empty() {
            return Ok(out);
        }
        let config = SessionConfig::new().with_target_partitions(1).set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        );
        let ctx = SessionContext::new_with_config_rt(config, self.runtime(true)?);
        delta
            .update_datafusion_session(&ctx.state())
            .map_err(TableError::delta(table))?;
        let mut entries: Vec<Option<String>> = Vec::new();
        // One file at a time: the files' order, whatever the scan's planning.
        for file in files {
            let provider = delta
                .table_provider()
                .with_file_paths(vec![file])
                .await
                .map_err(|e| TableError::Invalid(format!("cannot read table `{table}`: {e}")))?;
            let frame = ctx
                .read_table(provider)
                .map_err(TableError::sql(format!("reading `{table}`")))?;
            let mut stream = frame
                .execute_stream()
                .await
                .map_err(TableError::sql(format!("reading `{table}`")))?;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(TableError::sql(format!("reading `{table}`")))?;
                events_of(table, &batch, columns, &mut out, &mut entries)?;
            }
        }
        // Back in fetch order: entry ids start with their fetch time. The sort is stable.
        if entries.iter().any(Option::is_some) {
            let mut order: Vec<usize> = (0..out.events.len()).collect();
            order.sort_by(|a, b| entries[*a].cmp(&entries[*b]));
            let mut events: Vec<Option<Event>> = out.events.drain(..).map(Some).collect();
            out.events = order.into_iter().filter_map(|i| events[i].take()).collect();
        }
        Ok(out)
    }
}

fn column<'a>(
    table: &str,
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a std::sync::Arc<dyn Array>, TableError> {
    batch.column_by_name(name).ok_or_else(|| {
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n != crate::mapping::ENTRY_COLUMN)
            .collect();
        TableError::Invalid(format!(
            "table `{table}` has no column `{name}` (it has {})",
            names.join(", ")
        ))
    })
}

/// Appends the batch's rows as events.
fn events_of(
    table: &str,
    batch: &RecordBatch,
    columns: &EventColumns,
    out: &mut CommitEvents,
    entries: &mut Vec<Option<String>>,
) -> Result<(), TableError> {
    let lineage = batch
        .column_by_name(crate::mapping::ENTRY_COLUMN)
        .map(|c| cast(c, &DataType::Utf8))
        .transpose()?;
    let lineage = lineage.as_ref().map(|c| c.as_string::<i32>());
    let keys = cast(column(table, batch, &columns.key)?, &DataType::Utf8)?;
    let keys = keys.as_string::<i32>();
    let time = column(table, batch, &columns.time)?;
    let millis = match time.data_type() {
        DataType::Timestamp(_, tz) => cast(
            time,
            &DataType::Timestamp(TimeUnit::Millisecond, tz.clone()),
        )?,
        DataType::Date32 | DataType::Date64 => {
            cast(time, &DataType::Timestamp(TimeUnit::Millisecond, None))?
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => cast(
            time,
            &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        )
        .map_err(|e| {
            TableError::Invalid(format!(
                "column `{}` of table `{table}` holds text that is not a time: {e}",
                columns.time
            ))
        })?,
        other => {
            return Err(TableError::Invalid(format!(
                "column `{}` of table `{table}` is {other}, not a time: declare it `type = \"timestamp\"`",
                columns.time
            )));
        }
    };
    let millis = cast(&millis, &DataType::Int64)?;
    let millis = millis.as_primitive::<Int64Type>();
    let mut values = Vec::with_capacity(columns.values.len());
    for name in &columns.values {
        let array = column(table, batch, name)?;
        let numbers = cast(array, &DataType::Float64).map_err(|e| {
            TableError::Invalid(format!(
                "column `{name}` of table `{table}` is {}, not numbers: {e}",
                array.data_type()
            ))
        })?;
        values.push(numbers);
    }
    let values: Vec<_> = values
        .iter()
        .map(|a| a.as_primitive::<Float64Type>())
        .collect();
    out.events.reserve(batch.num_rows());
    for row in 0..batch.num_rows() {
        if keys.is_null(row) || millis.is_null(row) {
            out.skipped += 1;
            if out.first_skip.is_none() {
                let which = if keys.is_null(row) {
                    &columns.key
                } else {
                    &columns.time
                };
                out.first_skip = Some(format!(
                    "a row of `{table}` whose `{which}` is empty or not a {}",
                    if keys.is_null(row) { "key" } else { "time" }
                ));
            }
            continue;
        }
        entries.push(lineage.and_then(|l| (!l.is_null(row)).then(|| l.value(row).to_string())));
        out.events.push(Event {
            key: keys.value(row).to_string(),
            time_ms: millis.value(row),
            values: values
                .iter()
                .map(|v| {
                    (!v.is_null(row))
                        .then(|| v.value(row))
                        .filter(|x| x.is_finite())
                })
                .collect(),
        });
    }
    Ok(())
}
