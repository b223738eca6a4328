//! What changed in a table since a version, for writers outside the Delta tables (sinks): the
//! rows to write, streamed as PostgreSQL's COPY text format, and their columns in neutral types.
//!
//! A table's rows since version `v0` are the rows of the data files active at the latest
//! version `V` that were not active at `v0`. When every commit in `(v0, V]` only adds or
//! upserts rows (appends, merges, compactions, vacuums), those rows are every row added or
//! changed since `v0` (a merge rewrites whole files, and a compaction moves rows, so some
//! unchanged rows come again: writing them again by key changes nothing). Any other commit (an
//! overwrite, a `replace`, a model run, a delete) may have removed rows: the changes are then the
//! whole table at `V` ([`Scope::Whole`]), for the writer to mirror.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::DeltaTable;
use futures::StreamExt;

use crate::{TableError, Warehouse};

/// A column's type, as a writer outside Delta needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// 16-bit integer.
    SmallInt,
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    BigInt,
    /// An exact decimal (`precision`, `scale`); an unsigned 64-bit integer is `(20, 0)`.
    Numeric {
        /// Digits in all.
        precision: u8,
        /// Digits after the point.
        scale: i8,
    },
    /// 32-bit float.
    Real,
    /// 64-bit float.
    Double,
    /// Boolean.
    Bool,
    /// Text (also nested values and intervals, as their text).
    Text,
    /// Bytes.
    Bytes,
    /// A calendar date.
    Date,
    /// A time of day.
    Time,
    /// A date and time without a zone.
    Timestamp,
    /// An instant.
    TimestampTz,
}

/// One column of the changed rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeColumn {
    /// Its name in the table.
    pub name: String,
    /// Its type.
    pub kind: ColumnKind,
}

/// Which rows a [`Changes`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The rows added or changed after `since` (and some unchanged ones); none was removed.
    Since(i64),
    /// Every row of the table at the version: rows may have been removed.
    Whole,
}

/// One chunk of changed rows in COPY text format: tab-separated, `\N` for null, one row per
/// line, backslash escapes.
#[derive(Debug, Clone)]
pub struct CopyChunk {
    /// The encoded rows.
    pub bytes: Vec<u8>,
    /// How many rows.
    pub rows: usize,
}

/// The changes of a table since a version, read from one fixed version.
pub struct Changes {
    /// The table.
    pub table: String,
    /// The version the rows are read at.
    pub version: i64,
    /// Which rows.
    pub scope: Scope,
    /// The columns, in table order.
    pub columns: Vec<ChangeColumn>,
    /// Why the scope is [`Scope::Whole`] though changes since a version were asked for.
    pub whole_because: Option<String>,
    /// How many data files are read.
    pub files: usize,
    stream: Option<SendableRecordBatchStream>,
    /// Values holding a NUL character so far (COPY text cannot carry it: written as U+FFFD).
    pub nul_replaced: u64,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("table", &self.table)
            .field("version", &self.version)
            .field("scope", &self.scope)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// The operations that never remove a row (delta-rs's `commitInfo.operation`); a `WRITE` counts
/// only in append mode. affluent's merges only update and insert.
fn keeps_every_row(commit: &serde_json::Value) -> bool {
    let operation = commit
        .get("operation")
        .and_then(|o| o.as_str())
        .unwrap_or("");
    match operation {
        // A merge with a delete clause (another writer's) removes rows: its metrics say so.
        "MERGE" => ["num_target_rows_deleted", "numTargetRowsDeleted"]
            .iter()
            .filter_map(|k| commit.pointer(&format!("/operationMetrics/{k}")))
            .all(|n| n.as_u64() == Some(0) || n.as_str() == Some("0")),
        "OPTIMIZE" | "VACUUM START" | "VACUUM END" | "SET TBLPROPERTIES" => true,
        "WRITE" => commit
            .pointer("/operationParameters/mode")
            .and_then(|m| m.as_str())
            .is_some_and(|m| m == "Append"),
        _ => false,
    }
}

impl Warehouse {
    /// The changes of a table or model since `since` (`None`: every row), read at its latest
    /// version; `Ok(None)` when it was never written. Nothing is read until
    /// [`Changes::next_chunk`].
    pub async fn changes(
        &self,
        name: &str,
        since: Option<i64>,
    ) -> Result<Option<Changes>, TableError> {
        if !self.names().iter().any(|n| n == name) {
            return Err(self.unknown("table or model", name, &self.names()));
        }
        let Some(table) = self.open(name).await? else {
            return Ok(None);
        };
        let version = table
            .version()
            .map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let (selection, whole_because) = match since {
            None => (None, None),
            Some(v0) if v0 >= version => (Some(Vec::new()), None),
            Some(v0) => match self.added_since(name, &table, v0, version).await? {
                Ok(files) => (Some(files), None),
                Err(why) => (None, Some(why)),
            },
        };
        let scope = match (&selection, since) {
            (Some(_), Some(v0)) => Scope::Since(v0),
            _ => Scope::Whole,
        };
        let schema: Arc<Schema> = table
            .snapshot()
            .map_err(TableError::delta(name))?
            .snapshot()
            .arrow_schema();
        let columns = schema
            .fields()
            .iter()
            .map(|f| ChangeColumn {
                name: f.name().clone(),
                kind: kind_of(f.data_type()),
            })
            .collect();
        let files = match &selection {
            Some(files) => files.len(),
            None => table
                .get_file_uris()
                .map_err(TableError::delta(name))?
                .count(),
        };
        let stream = if selection.as_ref().is_some_and(Vec::is_empty) {
            None
        } else {
            Some(self.scan(name, &table, selection).await?)
        };
        Ok(Some(Changes {
            table: name.to_string(),
            version,
            scope,
            columns,
            whole_because,
            files,
            stream,
            nul_replaced: 0,
        }))
    }

    /// The data files active at `version` and not at `v0`, or why the rows since `v0` cannot be
    /// told apart from the whole table (a commit that may remove rows, a log no longer there).
    async fn added_since(
        &self,
        name: &str,
        table: &DeltaTable,
        v0: i64,
        version: i64,
    ) -> Result<Result<Vec<String>, String>, TableError> {
        let store = table.log_store();
        for v in v0 + 1..=version {
            let Some(bytes) = store
                .read_commit_entry(v.unsigned_abs())
                .await
                .map_err(TableError::delta(name))?
            else {
                return Ok(Err(format!("the log of version {v} is gone")));
            };
            let commit = bytes
                .split(|b| *b == b'\n')
                .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
                .find_map(|action| action.get("commitInfo").cloned());
            let Some(commit) = commit else {
                return Ok(Err(format!("version {v} has no commit information")));
            };
            if !keeps_every_row(&commit) {
                let operation = commit
                    .get("operation")
                    .and_then(|o| o.as_str())
                    .unwrap_or("unknown");
                return Ok(Err(format!(
                    "version {v} ({operation}) may have removed rows"
                )));
            }
        }
        let mut before = table.clone();
        if let Err(e) = before.load_version(v0.unsigned_abs()).await {
            return Ok(Err(format!("version {v0} cannot be read again: {e}")));
        }
        let old: HashSet<String> = before
            .get_file_uris()
            .map_err(TableError::delta(name))?
            .collect();
        Ok(Ok(table
            .get_file_uris()
            .map_err(TableError::delta(name))?
            .filter(|f| !old.contains(f))
            .collect()))
    }

    /// A stream of the table's rows at its loaded version, from the selected files only.
    async fn scan(
        &self,
        name: &str,
        table: &DeltaTable,
        files: Option<Vec<String>>,
    ) -> Result<SendableRecordBatchStream, TableError> {
        // The models' runtime: its memory pool, and no query time limit (a sink of a large
        // table streams for as long as its writer takes).
        let config = SessionConfig::new().set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        );
        let ctx = SessionContext::new_with_config_rt(config, self.runtime(true)?);
        table
            .update_datafusion_session(&ctx.state())
            .map_err(TableError::delta(name))?;
        let mut builder = table.table_provider();
        if let Some(files) = files {
            builder = builder.with_file_paths(files);
        }
        let provider = builder
            .await
            .map_err(|e| TableError::Invalid(format!("cannot read table `{name}`: {e}")))?;
        let frame = ctx
            .read_table(provider)
            .map_err(TableError::sql(format!("reading `{name}`")))?;
        frame
            .execute_stream()
            .await
            .map_err(TableError::sql(format!("reading `{name}`")))
    }
}

impl Changes {
    /// The next rows in COPY text format; `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<CopyChunk>, TableError> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        loop {
            match stream.next().await {
                None => {
                    self.stream = None;
                    return Ok(None);
                }
                Some(batch) => {
                    let batch =
                        batch.map_err(TableError::sql(format!("reading `{}`", self.table)))?;
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    let mut bytes = Vec::with_capacity(batch.num_rows() * 64);
                    self.nul_replaced += encode_copy_text(&batch, &mut bytes)?;
                    return Ok(Some(CopyChunk {
                        bytes,
                        rows: batch.num_rows(),
                    }));
                }
            }
        }
    }
}

/// The neutral type of an Arrow type.
fn kind_of(data_type: &DataType) -> ColumnKind {
    match data_type {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => ColumnKind::SmallInt,
        DataType::Int32 | DataType::UInt16 => ColumnKind::Int,
        DataType::Int64 | DataType::UInt32 => ColumnKind::BigInt,
        DataType::UInt64 => ColumnKind::Numeric {
            precision: 20,
            scale: 0,
        },
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => ColumnKind::Numeric {
            precision: *p,
            scale: *s,
        },
        DataType::Float16 | DataType::Float32 => ColumnKind::Real,
        DataType::Float64 => ColumnKind::Double,
        DataType::Boolean => ColumnKind::Bool,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => ColumnKind::Bytes,
        DataType::Date32 | DataType::Date64 => ColumnKind::Date,
        DataType::Time32(_) | DataType::Time64(_) => ColumnKind::Time,
        DataType::Timestamp(_, None) => ColumnKind::Timestamp,
        DataType::Timestamp(_, Some(_)) => ColumnKind::TimestampTz,
        DataType::Dictionary(_, value) => kind_of(value),
        _ => ColumnKind::Text,
    }
}

/// Appends a batch's rows in COPY text format; returns how many values held a NUL character
/// (replaced by U+FFFD: PostgreSQL's text cannot hold it).
pub fn encode_copy_text(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<u64, TableError> {
    let options = FormatOptions::default()
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.f%:z"));
    let mut columns: Vec<Column<'_>> = Vec::with_capacity(batch.num_columns());
    for array in batch.columns() {
        let array: &dyn Array = array.as_ref();
        columns.push(match array.data_type() {
            DataType::Utf8 => Column::Utf8(array),
            DataType::LargeUtf8 => Column::LargeUtf8(array),
            DataType::Utf8View => Column::Utf8View(array),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                Column::Binary(array)
            }
            _ => Column::Display(array, ArrayFormatter::try_new(array, &options)?),
        });
    }
    let mut nul = 0;
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            if column.array().is_null(row) {
                out.extend_from_slice(b"\\N");
                continue;
            }
            match column {
                Column::Utf8(a) => nul += escape(a.as_string::<i32>().value(row), out),
                Column::LargeUtf8(a) => nul += escape(a.as_string::<i64>().value(row), out),
                Column::Utf8View(a) => nul += escape(a.as_string_view().value(row), out),
                Column::Binary(a) => {
                    let bytes: &[u8] = match a.data_type() {
                        DataType::Binary => a.as_binary::<i32>().value(row),
                        DataType::LargeBinary => a.as_binary::<i64>().value(row),
                        _ => a.as_binary_view().value(row),
                    };
                    // bytea's hex input, its backslash escaped for COPY.
                    out.extend_from_slice(b"\\\\x");
                    for b in bytes {
                        out.extend_from_slice(format!("{b:02x}").as_bytes());
                    }
                }
                Column::Display(_, formatter) => {
                    use std::fmt::Write as _;
                    text.clear();
                    write!(text, "{}", formatter.value(row))
                        .map_err(|e| TableError::Invalid(format!("cannot format a value: {e}")))?;
                    nul += escape(&text, out);
                }
            }
        }
        out.push(b'\n');
    }
    Ok(nul)
}

enum Column<'a> {
    Utf8(&'a dyn Array),
    LargeUtf8(&'a dyn Array),
    Utf8View(&'a dyn Array),
    Binary(&'a dyn Array),
    Display(&'a dyn Array, ArrayFormatter<'a>),
}

impl Column<'_> {
    fn array(&self) -> &dyn Array {
        match self {
            Column::Utf8(a)
            | Column::LargeUtf8(a)
            | Column::Utf8View(a)
            | Column::Binary(a)
            | Column::Display(a, _) => *a,
        }
    }
}

/// Writes text with COPY's escapes; returns 1 when it held a NUL (written as U+FFFD).
fn escape(text: &str, out: &mut Vec<u8>) -> u64 {
    let mut nul = 0;
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            0 => {
                nul = 1;
                "\u{FFFD}".as_bytes()
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    nul
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        BinaryArray, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
        TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, TimeUnit};

    #[test]
    fn copy_text_escapes_and_writes_nulls_as_backslash_n() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("i", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("d", DataType::Date32, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("x", DataType::Binary, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a\tb\\c\nd\re"),
                    None,
                    Some("nul\0here"),
                ])),
                Arc::new(Int64Array::from(vec![Some(-5), Some(7), None])),
                Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN), None])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
                Arc::new(Date32Array::from(vec![Some(19_723), None, Some(0)])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_704_067_200_500_000), None, None])
                        .with_timezone("UTC"),
                ),
                Arc::new(BinaryArray::from(vec![Some(&b"\x01\xff"[..]), None, None])),
            ],
        )
        .expect("batch");
        let mut out = Vec::new();
        let nul = encode_copy_text(&batch, &mut out).expect("encode");
        assert_eq!(nul, 1);
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "a\\tb\\\\c\\nd\\re\t-5\t1.5\ttrue\t2024-01-01\t2024-01-01T00:00:00.500+00:00\t\\\\x01ff",
                "\\N\t7\tNaN\tfalse\t\\N\t\\N\t\\N",
                "nul\u{FFFD}here\t\\N\t\\N\t\\N\t1970-01-01\t\\N\t\\N",
            ]
        );
    }

    #[test]
    fn only_appends_merges_and_compactions_keep_every_row() {
        let op = |json: &str| keeps_every_row(&serde_json::from_str(json).expect("json"));
        assert!(op(r#"{"operation":"MERGE"}"#));
        assert!(op(
            r#"{"operation":"MERGE","operationMetrics":{"num_target_rows_deleted":0}}"#
        ));
        assert!(!op(
            r#"{"operation":"MERGE","operationMetrics":{"num_target_rows_deleted":3}}"#
        ));
        assert!(!op(
            r#"{"operation":"MERGE","operationMetrics":{"numTargetRowsDeleted":"1"}}"#
        ));
        assert!(op(r#"{"operation":"OPTIMIZE"}"#));
        assert!(op(
            r#"{"operation":"WRITE","operationParameters":{"mode":"Append"}}"#
        ));
        assert!(!op(
            r#"{"operation":"WRITE","operationParameters":{"mode":"Overwrite"}}"#
        ));
        assert!(!op(r#"{"operation":"DELETE"}"#));
        assert!(!op(r#"{"operation":"CREATE TABLE"}"#));
        assert!(!op(r#"{}"#));
    }

    #[test]
    fn arrow_types_map_to_neutral_kinds() {
        assert_eq!(kind_of(&DataType::Int64), ColumnKind::BigInt);
        assert_eq!(
            kind_of(&DataType::Timestamp(TimeUnit::Microsecond, None)),
            ColumnKind::Timestamp
        );
        assert_eq!(
            kind_of(&DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into())
            )),
            ColumnKind::TimestampTz
        );
        assert_eq!(
            kind_of(&DataType::List(Arc::new(Field::new(
                "i",
                DataType::Int64,
                true
            )))),
            ColumnKind::Text
        );
        assert_eq!(
            kind_of(&DataType::Dictionary(
                Box::new(DataType::Int32),
                Box::new(DataType::Utf8)
            )),
            ColumnKind::Text
        );
    }
}
