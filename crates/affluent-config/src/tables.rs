//! `[tables.NAME]` and `[models.NAME]`: Delta tables fed by sources, SQL models over them, and
//! their checks (sources, columns, keys, model files).

use std::collections::BTreeMap;

use affluent_core::JsonPath;
use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use crate::diagnostics::Reporter;
use crate::sources::SourceConfig;
use crate::validate::{check_name, span_in};

/// `[tables.NAME]`: a Delta table fed by one source's records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The source whose landed records feed the table.
    pub source: String,
    /// `append` (default), `merge` (upsert on `primary_key`) or `replace`.
    pub write: Option<WriteMode>,
    /// Columns identifying a row: required by `merge`, where the latest record of a key wins.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// With `merge`: the column deciding which record is the latest (a record older than the one
    /// in the table does not overwrite it). Default: the latest to arrive wins.
    pub order_by: Option<String>,
    /// With `replace`: the column whose values the new records replace (rows of the table with
    /// those values are removed, e.g. a day). Default: the whole table is replaced by the records
    /// of the newest run.
    pub replace_by: Option<String>,
    /// Path, inside each record, to an array of objects (one row each), an object of parallel
    /// arrays (Open-Meteo's `hourly`: one row per index) or an object of objects (infoclimat's
    /// forecast: one row per member whose value is an object, its name as `@key`). Column paths
    /// are then relative to the element; `$.path` reaches the whole record.
    pub explode: Option<String>,
    /// Columns, in this order: `name = "path"` (type inferred) or `name = { path, type, format }`.
    /// A path may name a value of the response instead: `@interval_start`, `@interval_end`
    /// (the run's data interval: a snapshot's observation time, the same when a run is
    /// retried), `@fetched_at`, `@key` (see `explode`).
    /// Empty: every top-level field, nested objects flattened as `parent__child`, arrays as JSON
    /// text; new fields become new nullable columns.
    #[serde(default)]
    pub columns: indexmap::IndexMap<String, ColumnSpec>,
    /// Where this table lives, instead of under `tables_location`: a folder or
    /// `s3://bucket/prefix`.
    pub location: Option<String>,
}

/// What a column path starting with `@` reads: the response's, not the record's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    /// `@interval_start`: start of the run's data interval.
    IntervalStart,
    /// `@interval_end`: its end (a snapshot API's observation time, the same on a retry).
    IntervalEnd,
    /// `@fetched_at`: when the response was received.
    FetchedAt,
    /// `@key`: with `explode` over an object of objects, the member's name.
    Key,
}

impl Meta {
    /// The names a column path can take, `@` included.
    pub const NAMES: [&'static str; 4] =
        ["@interval_start", "@interval_end", "@fetched_at", "@key"];

    /// The meta value a path names: `Some(Ok)` for one of [`Meta::NAMES`], `Some(Err)` for a
    /// near miss (`@interval_ends`), `None` for any other path (a record's field may start with
    /// `@`, as JSON-LD's `@id` does).
    pub fn parse(path: &str) -> Option<Result<Self, String>> {
        match path {
            "@interval_start" => Some(Ok(Meta::IntervalStart)),
            "@interval_end" => Some(Ok(Meta::IntervalEnd)),
            "@fetched_at" => Some(Ok(Meta::FetchedAt)),
            "@key" => Some(Ok(Meta::Key)),
            _ if path.starts_with('@') => {
                let near = affluent_core::closest(path, &Self::NAMES)?;
                Some(Err(format!(
                    "unknown response value {path:?}; did you mean {near:?}? (a record field named {path:?} is read with `[\"{path}\"]`)"
                )))
            }
            _ => None,
        }
    }
}

/// `[compaction]`: how tables and models keep few files. Every load or model run commits at
/// least one Parquet file; once a table has `files` of them, they are merged into files of
/// about 128 MiB (Delta's optimize: a commit that changes no row, so loads stay exactly once),
/// and the files it replaced are deleted `vacuum_after` later.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactionConfig {
    /// Merge a table's files after a load or a model run once it has this many (default 16;
    /// 0: only with `affluent tables optimize`).
    pub files: Option<usize>,
    /// Delete files replaced by a merge, a `replace` or a model run this long after (default
    /// `"2m"`). Earlier versions of a table cannot be read once their files are gone: keep it
    /// longer than any query on the tables (`[query] timeout`) and any outside reader's scan.
    pub vacuum_after: Option<crate::values::ConfigDuration>,
}

impl CompactionConfig {
    /// Default of `files`.
    pub const DEFAULT_FILES: usize = 16;
    /// Default of `vacuum_after`: 2 minutes.
    pub const DEFAULT_VACUUM_AFTER: std::time::Duration = std::time::Duration::from_secs(120);

    /// `files`, or its default; `None` when automatic compaction is off.
    pub fn files(&self) -> Option<usize> {
        match self.files.unwrap_or(Self::DEFAULT_FILES) {
            0 => None,
            n => Some(n),
        }
    }

    /// `vacuum_after`, or its default.
    pub fn vacuum_after(&self) -> std::time::Duration {
        self.vacuum_after
            .map_or(Self::DEFAULT_VACUUM_AFTER, |d| d.get())
    }
}

/// How a load writes a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Add the records.
    Append,
    /// Upsert on `primary_key`.
    Merge,
    /// Replace the whole table, or the rows sharing `replace_by` values.
    Replace,
}

/// One declared column.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ColumnSpec {
    /// A path only: the type is inferred.
    Path(String),
    /// A path with a type.
    Typed(TypedColumn),
}

impl ColumnSpec {
    /// The path to the value in the record.
    pub fn path(&self) -> &str {
        match self {
            ColumnSpec::Path(p) => p,
            ColumnSpec::Typed(t) => &t.path,
        }
    }
}

/// `{ path = "...", type = "...", format = "..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypedColumn {
    /// Path to the value (`_embedded.venues[0].city.name`).
    pub path: String,
    /// `string`, `int`, `float`, `bool`, `date`, `timestamp` or `json` (default: inferred).
    #[serde(rename = "type")]
    pub kind: Option<TableType>,
    /// strftime formats tried in order for `date` and `timestamp` text (default: ISO 8601).
    pub format: Option<OneOrMany>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// As a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A table column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableType {
    /// UTF-8 text.
    String,
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Float,
    /// Boolean.
    Bool,
    /// Calendar date.
    Date,
    /// Instant, microseconds, UTC; text without an offset is read in the source's time zone.
    Timestamp,
    /// Any JSON value, kept as its text.
    Json,
}

/// `[models.NAME]`: a SQL query (DataFusion dialect) over tables and other models, materialized
/// as a Delta table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The query, inline.
    pub sql: Option<String>,
    /// Or a file holding it, relative to the project directory.
    pub file: Option<String>,
    /// `replace` (default: the table is the query's result) or `merge` (rows upserted on
    /// `primary_key`, for queries that compute a recent window with `$interval_start` /
    /// `$interval_end`).
    pub materialized: Option<Materialized>,
    /// Key of `merge` models.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Where this model lives, instead of under `tables_location`: a folder or
    /// `s3://bucket/prefix`.
    pub location: Option<String>,
}

/// How a model is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Materialized {
    /// The table becomes the query's result.
    Replace,
    /// The query's rows are upserted on the key.
    Merge,
}

/// Tables: their source exists, keys and columns agree, paths parse, the write mode has what it
/// needs. Models: one query each, keys for `merge`, no name shared with a table or a source.
pub(crate) fn check(
    reporter: &mut Reporter<'_>,
    project_dir: &std::path::Path,
    tables: &BTreeMap<String, TableConfig>,
    models: &BTreeMap<String, ModelConfig>,
    sources: &BTreeMap<String, SourceConfig>,
    root: &Spanned<DeTable<'_>>,
) {
    let source_names: Vec<&String> = sources.keys().collect();
    for (name, table) in tables {
        let at = |path: &[&str]| {
            let mut full = vec!["tables", name.as_str()];
            full.extend_from_slice(path);
            span_in(root, &full)
        };
        check_name(reporter, "table", name, at(&[]));
        if !sources.contains_key(&table.source) {
            let hint = affluent_core::closest(&table.source, &source_names)
                .map(|k| format!("; did you mean \"{k}\"?"))
                .unwrap_or_default();
            reporter.error(
                at(&["source"]),
                format!(
                    "table `{name}` reads unknown source `{}`{hint} (declare it under [sources.{}])",
                    table.source, table.source
                ),
            );
        }
        let write = table.write.unwrap_or(WriteMode::Append);
        if write == WriteMode::Merge && table.primary_key.is_empty() {
            reporter.error(
                at(&["write"]),
                format!("table `{name}` merges on a key: set `primary_key = [\"column\", ...]`"),
            );
        }
        if table.order_by.is_some() && write != WriteMode::Merge {
            reporter.error(
                at(&["order_by"]),
                "`order_by` only applies to `write = \"merge\"`",
            );
        }
        if table.replace_by.is_some() && write != WriteMode::Replace {
            reporter.error(
                at(&["replace_by"]),
                "`replace_by` only applies to `write = \"replace\"`",
            );
        }
        let declared: Vec<&String> = table.columns.keys().collect();
        let mut used: Vec<(&str, &str)> = table
            .primary_key
            .iter()
            .map(|k| ("primary_key", k.as_str()))
            .collect();
        used.extend(table.order_by.as_deref().map(|c| ("order_by", c)));
        used.extend(table.replace_by.as_deref().map(|c| ("replace_by", c)));
        if !declared.is_empty() {
            for (key, column) in used {
                if !table.columns.contains_key(column) {
                    let hint = affluent_core::closest(column, &declared)
                        .map(|k| format!("; did you mean \"{k}\"?"))
                        .unwrap_or_default();
                    reporter.error(
                        at(&[key]),
                        format!("`{key}` names `{column}`, which is not a column of table `{name}`{hint}"),
                    );
                }
            }
        }
        if let Some(explode) = &table.explode
            && let Err(e) = JsonPath::parse(explode)
        {
            reporter.error(at(&["explode"]), format!("invalid path {explode:?}: {e}"));
        }
        for (column, spec) in &table.columns {
            if column.starts_with("_affluent") {
                reporter.error(
                    at(&["columns", column]),
                    format!("column names starting with `_affluent` are reserved (`{column}`)"),
                );
            }
            match Meta::parse(spec.path()) {
                Some(Err(e)) => {
                    reporter.error(at(&["columns", column]), format!("column `{column}`: {e}"));
                }
                Some(Ok(Meta::Key)) if table.explode.is_none() => {
                    reporter.error(
                        at(&["columns", column]),
                        format!("column `{column}`: `@key` is the member name of an `explode` over an object of objects, and table `{name}` has no `explode`"),
                    );
                }
                Some(Ok(_)) => {}
                None => {
                    let path = spec.path().strip_prefix("$.").unwrap_or(spec.path());
                    if let Err(e) = JsonPath::parse(path) {
                        reporter.error(
                            at(&["columns", column]),
                            format!("invalid path {:?} for column `{column}`: {e}", spec.path()),
                        );
                    }
                }
            }
            if let ColumnSpec::Typed(t) = spec
                && t.format.is_some()
                && !matches!(t.kind, Some(TableType::Date | TableType::Timestamp))
            {
                reporter.error(
                    at(&["columns", column]),
                    format!(
                        "`format` of column `{column}` needs `type = \"date\"` or `\"timestamp\"`"
                    ),
                );
            }
        }
    }
    for (name, model) in models {
        let at = |path: &[&str]| {
            let mut full = vec!["models", name.as_str()];
            full.extend_from_slice(path);
            span_in(root, &full)
        };
        check_name(reporter, "model", name, at(&[]));
        if tables.contains_key(name) {
            reporter.error(
                at(&[]),
                format!("`{name}` is both a table and a model: rename one"),
            );
        }
        match (&model.sql, &model.file) {
            (Some(_), Some(_)) => reporter.error(
                at(&["file"]),
                format!("model `{name}` has both `sql` and `file`: keep one"),
            ),
            (None, None) => reporter.error(
                at(&[]),
                format!("model `{name}` needs its query: `sql = \"SELECT ...\"` or `file = \"models/{name}.sql\"`"),
            ),
            (None, Some(file)) => {
                if !project_dir.join(file).is_file() {
                    reporter.error(
                        at(&["file"]),
                        format!("model `{name}`: no file {file:?} in the project directory"),
                    );
                }
            }
            (Some(_), None) => {}
        }
        if model.materialized == Some(Materialized::Merge) && model.primary_key.is_empty() {
            reporter.error(
                at(&["materialized"]),
                format!("model `{name}` merges on a key: set `primary_key = [\"column\", ...]`"),
            );
        }
    }
}
