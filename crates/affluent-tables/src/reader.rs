//! Queries with bound parameters for long-lived readers (the dashboard).
//!
//! A [`Reader`] is a session opened once over the tables' current versions; it is reused for
//! every query until [`Warehouse::versions`] shows that a table has a new commit. Parameters are
//! `$name` placeholders bound to values by DataFusion, never pasted into the SQL text.

use std::collections::{BTreeMap, HashMap};

use affluent_config::storage::TableLocation;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use serde::Serialize;

use crate::bounds::Bounds;
use crate::query::read_only;
use crate::{TableError, Warehouse};

/// A value bound to a `$name` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// SQL NULL (e.g. "All" in a select).
    Null,
    /// A string.
    Text(String),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A calendar date.
    Date(jiff::civil::Date),
    /// A list of strings (multi-select), for `array_has($name, column)`.
    List(Vec<String>),
}

impl Param {
    fn scalar(&self) -> ScalarValue {
        match self {
            Param::Null => ScalarValue::Null,
            Param::Text(s) => ScalarValue::Utf8(Some(s.clone())),
            Param::Int(i) => ScalarValue::Int64(Some(*i)),
            Param::Float(f) => ScalarValue::Float64(Some(*f)),
            Param::Date(d) => {
                let days = d
                    .since(jiff::civil::date(1970, 1, 1))
                    .map(|span| span.get_days())
                    .unwrap_or(0);
                ScalarValue::Date32(Some(days))
            }
            Param::List(values) => {
                let scalars: Vec<ScalarValue> = values
                    .iter()
                    .map(|v| ScalarValue::Utf8(Some(v.clone())))
                    .collect();
                ScalarValue::List(ScalarValue::new_list_nullable(&scalars, &DataType::Utf8))
            }
        }
    }
}

/// A column of a result, with a kind the dashboard knows how to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnInfo {
    /// The column's name.
    pub name: String,
    /// `number`, `text`, `date`, `timestamp`, `bool` or `other`.
    pub kind: &'static str,
}

/// The rows of a query, as JSON values in column order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rows {
    /// The columns.
    pub columns: Vec<ColumnInfo>,
    /// The rows.
    pub rows: Vec<Vec<serde_json::Value>>,
}

fn kind_of(t: &DataType) -> &'static str {
    match t {
        t if t.is_numeric() => "number",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(..) => "timestamp",
        DataType::Boolean => "bool",
        _ => "other",
    }
}

fn column_infos(df: &datafusion::dataframe::DataFrame) -> Vec<ColumnInfo> {
    df.schema()
        .fields()
        .iter()
        .map(|f| ColumnInfo {
            name: f.name().clone(),
            kind: kind_of(f.data_type()),
        })
        .collect()
}

fn to_rows(columns: Vec<ColumnInfo>, batches: &[RecordBatch]) -> Result<Rows, TableError> {
    // Batch by batch: the JSON text and objects of one batch at a time, not of the result.
    let mut rows = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    let mut buf = Vec::new();
    for batch in batches {
        buf.clear();
        {
            let mut writer = datafusion::arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, datafusion::arrow::json::writer::JsonArray>(&mut buf);
            writer.write(batch)?;
            writer.finish()?;
        }
        if buf.is_empty() {
            continue;
        }
        let objects: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(&buf)
            .map_err(|e| TableError::Invalid(format!("cannot read query rows: {e}")))?;
        rows.extend(objects.into_iter().map(|mut o| {
            columns
                .iter()
                .map(|c| o.remove(&c.name).unwrap_or(serde_json::Value::Null))
                .collect::<Vec<_>>()
        }));
    }
    Ok(Rows { columns, rows })
}

/// A session over the tables as they were when it was opened. Every query runs within the
/// bounds of `[query]`: the read queries' memory pool, `timeout`, `max_rows`.
pub struct Reader {
    ctx: SessionContext,
    bounds: Bounds,
    versions: BTreeMap<String, Option<i64>>,
    /// Results of [`Reader::rows_cached`]: valid as long as the reader, which sees fixed versions.
    cache: std::sync::Mutex<HashMap<String, std::sync::Arc<Rows>>>,
    /// Results of [`Reader::batches`] (every panel's query), by query and bound values, within
    /// [`RESULT_CACHE_BYTES`]: valid as long as the reader too.
    results: std::sync::Mutex<ResultCache>,
}

/// Entries kept by [`Reader::rows_cached`] before it starts over.
const CACHE_ENTRIES: usize = 512;

/// Bytes of Arrow arrays the result cache of a reader keeps; a result over a quarter of it is
/// not kept.
pub const RESULT_CACHE_BYTES: usize = 64 << 20;

type CachedResult = std::sync::Arc<(Vec<ColumnInfo>, Vec<RecordBatch>)>;

#[derive(Default)]
struct ResultCache {
    entries: HashMap<String, (CachedResult, usize)>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

/// How a reader's result cache did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Queries answered from the cache.
    pub hits: u64,
    /// Queries run.
    pub misses: u64,
    /// Results kept.
    pub entries: usize,
    /// Their size, bytes of Arrow arrays.
    pub bytes: usize,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("versions", &self.versions)
            .finish()
    }
}

impl Warehouse {
    /// The latest commit of every table and model (`None`: never written), read from the
    /// `_delta_log` folders without opening the tables: cheap enough to poll every second. A
    /// table on an object store is listed at most every few seconds (a LIST request each).
    pub async fn versions(&self) -> BTreeMap<String, Option<i64>> {
        let mut out = BTreeMap::new();
        for name in self.names() {
            let latest = match self.location(&name) {
                TableLocation::Local(dir) => local_latest(&dir.join("_delta_log")),
                TableLocation::S3(url) => self.remote_latest(&name, &url, false).await,
            };
            out.insert(name, latest);
        }
        out
    }

    /// The latest commit of one table or model, read now (`None`: never written).
    pub async fn latest_version(&self, name: &str) -> Option<i64> {
        match self.location(name) {
            TableLocation::Local(dir) => local_latest(&dir.join("_delta_log")),
            TableLocation::S3(url) => self.remote_latest(name, &url, true).await,
        }
    }

    /// A reader over the tables' current versions.
    pub async fn reader(&self) -> Result<Reader, TableError> {
        // Versions first: a commit landing while the session opens is seen as a change later.
        let versions = self.versions().await;
        let ctx = self.session().await?;
        Ok(Reader {
            ctx,
            bounds: Bounds::read(&self.project().query),
            versions,
            cache: Default::default(),
            results: Default::default(),
        })
    }
}

impl Reader {
    /// The versions this reader sees.
    pub fn versions(&self) -> &BTreeMap<String, Option<i64>> {
        &self.versions
    }

    /// Plans a query with its parameters bound.
    async fn frame(
        ctx: &SessionContext,
        sql: &str,
        params: HashMap<String, ScalarValue>,
    ) -> Result<datafusion::dataframe::DataFrame, TableError> {
        let df = ctx
            .sql_with_options(sql, read_only())
            .await
            .map_err(TableError::sql("query"))?;
        df.with_param_values(ParamValues::from(params))
            .map_err(TableError::sql("query parameters"))
    }

    fn scalars(params: &HashMap<String, Param>) -> HashMap<String, ScalarValue> {
        params
            .iter()
            .map(|(k, v)| (k.clone(), v.scalar()))
            .collect()
    }

    /// The columns a query would return, without running it.
    pub async fn columns(
        &self,
        sql: &str,
        params: &HashMap<String, Param>,
    ) -> Result<Vec<ColumnInfo>, TableError> {
        let (ctx, sql, params) = (self.ctx.clone(), sql.to_string(), Self::scalars(params));
        self.bounds
            .run("query", async move {
                Ok(column_infos(&Self::frame(&ctx, &sql, params).await?))
            })
            .await
    }

    /// Runs a read-only query with bound parameters, within the bounds of `[query]`: past
    /// `max_rows` rows, the memory limit or the timeout it is an error, never a cut result.
    /// The result is remembered for the life of the reader (its tables do not change; a new
    /// commit brings a new reader): the same panel with the same filters runs once.
    pub async fn batches(
        &self,
        sql: &str,
        params: &HashMap<String, Param>,
    ) -> Result<(Vec<ColumnInfo>, Vec<RecordBatch>), TableError> {
        let key = cache_key(sql, params);
        {
            let mut cache = self.results.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((hit, _)) = cache.entries.get(&key) {
                let hit = hit.clone();
                cache.hits += 1;
                return Ok((hit.0.clone(), hit.1.clone()));
            }
            cache.misses += 1;
        }
        let (ctx, sql, params) = (self.ctx.clone(), sql.to_string(), Self::scalars(params));
        let bounds = self.bounds;
        let (columns, batches) = self
            .bounds
            .run("query", async move {
                let df = Self::frame(&ctx, &sql, params).await?;
                let columns = column_infos(&df);
                let pool = ctx.runtime_env().memory_pool.clone();
                let (_, batches) = crate::bounds::collect(df, &bounds, "query", &pool).await?;
                Ok((columns, batches))
            })
            .await?;
        let size: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
        if size <= RESULT_CACHE_BYTES / 4 {
            let mut cache = self.results.lock().unwrap_or_else(|e| e.into_inner());
            if cache.bytes + size > RESULT_CACHE_BYTES {
                cache.entries.clear();
                cache.bytes = 0;
            }
            let entry = std::sync::Arc::new((columns.clone(), batches.clone()));
            if let Some((_, old)) = cache.entries.insert(key, (entry, size)) {
                cache.bytes -= old;
            }
            cache.bytes += size;
        }
        Ok((columns, batches))
    }

    /// How the result cache did so far.
    pub fn cache_stats(&self) -> CacheStats {
        let cache = self.results.lock().unwrap_or_else(|e| e.into_inner());
        CacheStats {
            hits: cache.hits,
            misses: cache.misses,
            entries: cache.entries.len(),
            bytes: cache.bytes,
        }
    }

    /// Runs a query and returns its rows as JSON values.
    pub async fn rows(
        &self,
        sql: &str,
        params: &HashMap<String, Param>,
    ) -> Result<Rows, TableError> {
        let (columns, batches) = self.batches(sql, params).await?;
        to_rows(columns, &batches)
    }

    /// [`Reader::rows`], remembered for the life of this reader (the tables it sees do not
    /// change): for the small, repeated queries of a dashboard (filter options, anchors).
    pub async fn rows_cached(
        &self,
        sql: &str,
        params: &HashMap<String, Param>,
    ) -> Result<std::sync::Arc<Rows>, TableError> {
        let key = cache_key(sql, params);
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(hit.clone());
        }
        let rows = std::sync::Arc::new(self.rows(sql, params).await?);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, rows.clone());
        Ok(rows)
    }

    /// Runs a query and returns `limit` rows from `offset`, in the query's order, and how many
    /// rows it has in all (a page of a table).
    pub async fn rows_window(
        &self,
        sql: &str,
        params: &HashMap<String, Param>,
        offset: usize,
        limit: usize,
    ) -> Result<(Rows, usize), TableError> {
        let (columns, batches) = self.batches(sql, params).await?;
        let total: usize = batches.iter().map(|b| b.num_rows()).sum();
        let mut window = Vec::new();
        let (mut skip, mut take) = (offset, limit);
        for b in &batches {
            if take == 0 {
                break;
            }
            if skip >= b.num_rows() {
                skip -= b.num_rows();
                continue;
            }
            let len = take.min(b.num_rows() - skip);
            window.push(b.slice(skip, len));
            take -= len;
            skip = 0;
        }
        Ok((to_rows(columns, &window)?, total))
    }

    /// Runs a query and returns CSV with a header row.
    pub async fn csv(
        &self,
        sql: &str,
        params: &HashMap<String, Param>,
    ) -> Result<Vec<u8>, TableError> {
        let (_, batches) = self.batches(sql, params).await?;
        let batches = batches
            .iter()
            .map(neutralize_formulas)
            .collect::<Result<Vec<_>, _>>()?;
        let mut buf = Vec::new();
        crate::query::write_csv(&mut buf, &batches)?;
        Ok(buf)
    }
}

/// A query and its bound values as one text (the values in name order).
fn cache_key(sql: &str, params: &HashMap<String, Param>) -> String {
    let mut bound: Vec<(&String, &Param)> = params.iter().collect();
    bound.sort_by(|a, b| a.0.cmp(b.0));
    format!("{sql}\u{0}{bound:?}")
}

/// Text cells that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a
/// tab or a carriage return) get a leading `'`, as OWASP advises for CSV downloads; numbers and
/// other types are left as they are. Only the dashboard's CSV downloads do this: `affluent
/// export` writes the data unchanged.
fn neutralize_formulas(batch: &RecordBatch) -> Result<RecordBatch, TableError> {
    use datafusion::arrow::array::{Array, ArrayRef, StringArray};
    use datafusion::arrow::compute::cast;
    use std::sync::Arc;
    let risky = |v: &str| v.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    let mut fields = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !matches!(
            column.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            columns.push(column.clone());
            fields.push(field.as_ref().clone());
            continue;
        }
        let text = cast(column, &DataType::Utf8)?;
        let text = text
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| TableError::Invalid("a text column did not cast to text".into()))?;
        let escaped: StringArray = text
            .iter()
            .map(|v| {
                v.map(|v| {
                    if risky(v) {
                        format!("'{v}")
                    } else {
                        v.to_string()
                    }
                })
            })
            .collect();
        columns.push(Arc::new(escaped));
        fields.push(field.as_ref().clone().with_data_type(DataType::Utf8));
    }
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The highest commit file in a local `_delta_log` folder.
fn local_latest(log: &std::path::Path) -> Option<i64> {
    std::fs::read_dir(log).ok().and_then(|entries| {
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let file = e.file_name();
                let file = file.to_str()?;
                let stem = file.strip_suffix(".json")?;
                (stem.len() == 20).then(|| stem.parse::<i64>().ok())?
            })
            .max()
    })
}

#[cfg(test)]
mod csv_tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray, StringViewArray};
    use std::sync::Arc;

    #[test]
    fn formula_cells_are_neutralized_and_numbers_kept() {
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new("label", DataType::Utf8, true),
            datafusion::arrow::datatypes::Field::new("view", DataType::Utf8View, true),
            datafusion::arrow::datatypes::Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("=HYPERLINK(\"http://x\")"),
                    Some("plain"),
                    None,
                ])),
                Arc::new(StringViewArray::from(vec![
                    Some("@SUM(A1)"),
                    Some("-2+3"),
                    Some("ok"),
                ])),
                Arc::new(Int64Array::from(vec![Some(-5), Some(7), None])),
            ],
        )
        .unwrap();
        let out = neutralize_formulas(&batch).unwrap();
        let mut buf = Vec::new();
        crate::query::write_csv(&mut buf, &[out]).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "label,view,n\n\"'=HYPERLINK(\"\"http://x\"\")\",'@SUM(A1),-5\nplain,'-2+3,7\n,ok,\n"
        );
    }
}
