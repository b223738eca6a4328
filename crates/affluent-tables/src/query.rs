//! Read-only SQL over the project's tables and models, table listings, and exports.
//!
//! Every session has the project's tables and models registered by name and affluent's
//! functions ([`crate::udf`]). Queries run with DDL, DML and statements disabled, so a query
//! cannot create external tables, `COPY` to a file or read a path: it sees the project's tables
//! and nothing else.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::DeltaTable;
use serde::Serialize;

use crate::bounds::Bounds;
use crate::mapping::ENTRY_COLUMN;
use crate::{TableError, Warehouse};

/// How `affluent query` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// What `affluent export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One CSV file with a header row.
    Csv,
    /// One Parquet file.
    Parquet,
}

/// One line of `affluent tables`.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    /// Name.
    pub name: String,
    /// `table` or `model`.
    pub kind: &'static str,
    /// Rows (None: not written yet).
    pub rows: Option<u64>,
    /// Columns.
    pub columns: Option<usize>,
    /// Delta version.
    pub version: Option<u64>,
    /// Time of the last commit, RFC 3339.
    pub last_commit: Option<String>,
    /// Where it lives.
    pub path: String,
}

/// The options every affluent query runs with: reads only.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl Warehouse {
    /// A session with every written table and model registered, and affluent's functions, in
    /// the read queries' runtime: their memory pool (`[query] memory`), shared by every read
    /// session of the process.
    pub async fn session(&self) -> Result<SessionContext, TableError> {
        self.session_in(false).await
    }

    /// [`Warehouse::session`] in the read queries' runtime, or the models'.
    pub(crate) async fn session_in(&self, models: bool) -> Result<SessionContext, TableError> {
        let runtime = self.runtime(models)?;
        let q = &self.project().query;
        let max_bytes = if models {
            Bounds::model(q)
        } else {
            Bounds::read(q)
        }
        .memory
        .bytes();
        let config = SessionConfig::new()
            .with_information_schema(true)
            // Strings come back as plain Utf8: what Delta writes and every reader expects.
            .set_bool(
                "datafusion.execution.parquet.schema_force_view_types",
                false,
            );
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        crate::udf::register(&ctx, max_bytes);
        if !self.project().zones.is_empty() {
            ctx.register_udf(datafusion::logical_expr::ScalarUDF::from(
                crate::udf::ZoneOf::new(self.zones()),
            ));
        }
        for name in self.names() {
            if let Some(table) = self.open(&name).await? {
                register(&ctx, &name, &table).await?;
            } else if let Some(schema) = self.declared_schema(&name) {
                // A table whose every column is declared with a type exists, empty, before its
                // first load: models reading several sources run before each has data.
                let empty = datafusion::datasource::MemTable::try_new(schema, vec![Vec::new()])
                    .map_err(TableError::sql("empty table"))?;
                ctx.register_table(name.as_str(), Arc::new(empty))
                    .map_err(TableError::sql("empty table"))?;
            }
        }
        Ok(ctx)
    }

    /// The schema of a table whose columns are all declared with a type.
    fn declared_schema(&self, name: &str) -> Option<datafusion::arrow::datatypes::SchemaRef> {
        let config = self.project().tables.get(name)?;
        if config.columns.is_empty() {
            return None;
        }
        let columns: Option<Vec<(String, affluent_config::schema::TableType)>> = config
            .columns
            .iter()
            .map(|(n, spec)| match spec {
                affluent_config::schema::ColumnSpec::Typed(t) => t.kind.map(|k| (n.clone(), k)),
                affluent_config::schema::ColumnSpec::Path(_) => None,
            })
            .collect();
        Some(crate::mapping::schema_of(&columns?))
    }

    /// Runs a read-only query within the bounds of `[query]` (memory, timeout, max_rows). A
    /// result without rows is one empty batch: CSV gets its header, a table its column names.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>, TableError> {
        let bounds = Bounds::read(&self.project().query);
        let (warehouse, sql) = (self.clone(), sql.to_string());
        bounds
            .run("query", async move {
                let ctx = warehouse.session().await?;
                let df = ctx
                    .sql_with_options(&sql, read_only())
                    .await
                    .map_err(TableError::sql("query"))?;
                let pool = ctx.runtime_env().memory_pool.clone();
                let (_, batches) = crate::bounds::collect(df, &bounds, "query", &pool).await?;
                Ok(batches)
            })
            .await
    }

    /// Every table and model with its size and last commit.
    pub async fn tables(&self) -> Result<Vec<TableInfo>, TableError> {
        let ctx = self.session().await?;
        let mut out = Vec::new();
        for name in self.names() {
            let kind = if self.project().tables.contains_key(&name) {
                "table"
            } else {
                "model"
            };
            let path = self.location(&name).to_string();
            let Some(table) = self.open(&name).await? else {
                out.push(TableInfo {
                    name,
                    kind,
                    rows: None,
                    columns: None,
                    version: None,
                    last_commit: None,
                    path,
                });
                continue;
            };
            let version = table.version();
            let last_commit = version
                .and_then(|v| table.snapshot().ok()?.version_timestamp(v))
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .map(|t| t.to_string());
            let batches = ctx
                .sql(&format!(
                    "SELECT count(*) FROM {}",
                    crate::load::quote(&name)
                ))
                .await
                .map_err(TableError::sql(format!("count of `{name}`")))?
                .collect()
                .await
                .map_err(TableError::sql(format!("count of `{name}`")))?;
            let rows = batches
                .first()
                .and_then(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<datafusion::arrow::array::Int64Array>()
                })
                .map(|a| a.value(0) as u64);
            let columns = ctx
                .table_provider(name.as_str())
                .await
                .map(|p| p.schema().fields().len())
                .ok();
            out.push(TableInfo {
                name,
                kind,
                rows,
                columns,
                version,
                last_commit,
                path,
            });
        }
        Ok(out)
    }

    /// Writes a whole table or model to one file (the lineage column left out), batch by batch
    /// as the table is read: no cap on rows and no time limit, within the read queries' memory.
    pub async fn export(
        &self,
        name: &str,
        format: ExportFormat,
        out: &Path,
    ) -> Result<u64, TableError> {
        let names = self.names();
        if !names.iter().any(|n| n == name) {
            return Err(self.unknown("table or model", name, &names));
        }
        if self.open(name).await?.is_none() {
            return Err(TableError::Invalid(format!(
                "`{name}` has no data yet: load it (`affluent ingest`) or run it (`affluent transform`) first"
            )));
        }
        let what = format!("export of `{name}`");
        let (warehouse, name, out) = (self.clone(), name.to_string(), out.to_path_buf());
        Bounds::export(&self.project().query)
            .run(&what.clone(), async move {
                let ctx = warehouse.session().await?;
                let df = ctx
                    .table(name.as_str())
                    .await
                    .map_err(TableError::sql(what.clone()))?;
                let keep: Vec<String> = df
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .filter(|n| n != ENTRY_COLUMN)
                    .collect();
                let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
                let mut stream = df
                    .select_columns(&keep)?
                    .execute_stream()
                    .await
                    .map_err(TableError::sql(what.clone()))?;
                let schema = stream.schema();
                if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(TableError::io(dir))?;
                }
                let file = std::fs::File::create(&out).map_err(TableError::io(&out))?;
                let mut writer = match format {
                    ExportFormat::Csv => FileWriter::Csv(Box::new(
                        datafusion::arrow::csv::WriterBuilder::new()
                            .with_header(true)
                            .build(std::io::BufWriter::new(file)),
                    )),
                    ExportFormat::Parquet => FileWriter::Parquet(Box::new(
                        datafusion::parquet::arrow::ArrowWriter::try_new(
                            file,
                            schema.clone(),
                            None,
                        )?,
                    )),
                };
                let mut rows: u64 = 0;
                while let Some(batch) =
                    std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await
                {
                    let batch = batch.map_err(TableError::sql(what.clone()))?;
                    rows += batch.num_rows() as u64;
                    writer.write(&batch)?;
                }
                if rows == 0 {
                    // The header of a CSV without rows.
                    writer.write(&RecordBatch::new_empty(schema))?;
                }
                writer.finish(&out)?;
                Ok(rows)
            })
            .await
    }
}

/// The file an export writes, batch by batch.
enum FileWriter {
    Csv(Box<datafusion::arrow::csv::Writer<std::io::BufWriter<std::fs::File>>>),
    Parquet(Box<datafusion::parquet::arrow::ArrowWriter<std::fs::File>>),
}

impl FileWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), TableError> {
        match self {
            FileWriter::Csv(w) => w.write(batch)?,
            FileWriter::Parquet(w) => w.write(batch)?,
        }
        Ok(())
    }

    fn finish(self, path: &Path) -> Result<(), TableError> {
        match self {
            FileWriter::Csv(w) => {
                use std::io::Write;
                w.into_inner().flush().map_err(TableError::io(path))?;
            }
            FileWriter::Parquet(w) => {
                w.close()?;
            }
        }
        Ok(())
    }
}

/// Registers (or re-registers) a Delta table on a session under `name`.
pub(crate) async fn register(
    ctx: &SessionContext,
    name: &str,
    table: &DeltaTable,
) -> Result<(), TableError> {
    table
        .update_datafusion_session(&ctx.state())
        .map_err(TableError::delta(name))?;
    let provider = table
        .table_provider()
        .await
        .map_err(|e| TableError::Invalid(format!("cannot read table `{name}`: {e}")))?;
    ctx.deregister_table(name)?;
    ctx.register_table(name, provider)?;
    Ok(())
}

/// Writes batches as CSV with a header row.
pub fn write_csv(out: impl std::io::Write, batches: &[RecordBatch]) -> Result<(), TableError> {
    let mut writer = datafusion::arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(out);
    for b in batches {
        writer.write(b)?;
    }
    Ok(())
}

/// Renders batches in a format.
pub fn render(batches: &[RecordBatch], format: OutputFormat) -> Result<String, TableError> {
    match format {
        OutputFormat::Table => {
            Ok(datafusion::arrow::util::pretty::pretty_format_batches(batches)?.to_string())
        }
        OutputFormat::Csv => {
            let mut buf = Vec::new();
            write_csv(&mut buf, batches)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        OutputFormat::Json => {
            let mut buf = Vec::new();
            {
                let mut writer = datafusion::arrow::json::ArrayWriter::new(&mut buf);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                writer.write_batches(&refs)?;
                writer.finish()?;
            }
            if buf.is_empty() {
                buf.extend_from_slice(b"[]");
            }
            buf.push(b'\n');
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

/// Casts a query's batch to types Delta stores: views to plain strings, unsigned to signed,
/// timestamps to microseconds, untyped nulls to strings.
pub fn normalize_for_delta(batch: &RecordBatch) -> Result<RecordBatch, TableError> {
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let target = match field.data_type() {
            DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => Some(DataType::Utf8),
            DataType::BinaryView | DataType::LargeBinary => Some(DataType::Binary),
            DataType::UInt8 => Some(DataType::Int16),
            DataType::UInt16 => Some(DataType::Int32),
            DataType::UInt32 | DataType::UInt64 => Some(DataType::Int64),
            DataType::Float16 => Some(DataType::Float32),
            DataType::Date64 => Some(DataType::Date32),
            DataType::Timestamp(unit, tz) if *unit != TimeUnit::Microsecond || tz.is_some() => {
                Some(DataType::Timestamp(
                    TimeUnit::Microsecond,
                    tz.as_ref().map(|_| "UTC".into()),
                ))
            }
            _ => None,
        };
        match target {
            Some(t) => {
                let c = if field.data_type() == &DataType::Null {
                    new_null_array(&t, column.len())
                } else {
                    cast(column, &t)?
                };
                fields.push(Field::new(field.name(), t, true));
                columns.push(c);
            }
            None => {
                fields.push(field.as_ref().clone().with_nullable(true));
                columns.push(column.clone());
            }
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
