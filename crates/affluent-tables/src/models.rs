//! SQL models: queries (DataFusion dialect) over tables and other models, run in dependency
//! order found from the SQL itself, each materialized as a Delta table (`replace`, or `merge` on a
//! key). A model sees `$interval_start` and `$interval_end` (UTC timestamps) when its query uses
//! them; without an interval they span all time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use affluent_config::schema::Materialized;
use affluent_core::Interval;
use datafusion::arrow::array::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::common::ScalarValue;
use datafusion::common::config::Dialect;
use datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use serde::Serialize;

use crate::bounds::Bounds;
use crate::load::merge;
use crate::query::{normalize_for_delta, read_only, register};
use crate::{TableError, Warehouse};

/// What running a model did.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// The model.
    pub model: String,
    /// Rows the query produced.
    pub rows: u64,
    /// Rows inserted and updated (merge models).
    pub merged: Option<(u64, u64)>,
    /// The Delta version written.
    pub version: Option<u64>,
    /// The compaction that followed, if the model had `[compaction] files` files.
    pub compacted: Option<crate::compact::CompactReport>,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
}

impl std::fmt::Display for ModelReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} rows", self.model, self.rows)?;
        if let Some((inserted, updated)) = self.merged {
            write!(f, " ({inserted} inserted, {updated} updated)")?;
        }
        if let Some(v) = self.version {
            write!(f, ", version {v}")?;
        }
        write!(f, " in {} ms", self.duration_ms)
    }
}

impl Warehouse {
    /// The SQL of a model (inline or from its file).
    pub fn model_sql(&self, name: &str) -> Result<String, TableError> {
        let Some(model) = self.project().models.get(name) else {
            let known: Vec<String> = self.project().models.keys().cloned().collect();
            return Err(self.unknown("model", name, &known));
        };
        match (&model.sql, &model.file) {
            (Some(sql), _) => Ok(sql.clone()),
            (None, Some(file)) => {
                let path = self.project().dir.join(file);
                std::fs::read_to_string(&path).map_err(TableError::io(&path))
            }
            (None, None) => Err(TableError::Invalid(format!("model `{name}` has no query"))),
        }
    }

    /// The tables and models a query reads, from its SQL (CTE names and unknown names left
    /// out: the query's own run reports those).
    pub fn tables_read(&self, sql: &str, context: &str) -> Result<BTreeSet<String>, TableError> {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let known: Vec<String> = self.names();
        let statement = state
            .sql_to_statement(sql, &Dialect::Generic)
            .map_err(TableError::sql(context.to_string()))?;
        let refs = state
            .resolve_table_references(&statement)
            .map_err(TableError::sql(context.to_string()))?;
        Ok(refs
            .into_iter()
            .map(|r| r.table().to_string())
            .filter(|t| known.contains(t))
            .collect())
    }

    /// What each model reads (tables and models), from its SQL.
    pub fn model_dependencies(&self) -> Result<BTreeMap<String, BTreeSet<String>>, TableError> {
        let mut deps = BTreeMap::new();
        for name in self.project().models.keys() {
            let sql = self.model_sql(name)?;
            let reads = self.tables_read(&sql, &format!("model `{name}`"))?;
            if reads.contains(name) {
                return Err(TableError::Invalid(format!("model `{name}` reads itself")));
            }
            deps.insert(name.clone(), reads);
        }
        Ok(deps)
    }

    /// Models in an order where each comes after what it reads.
    pub fn model_order(&self) -> Result<Vec<String>, TableError> {
        let deps = self.model_dependencies()?;
        let mut order = Vec::new();
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut visiting: Vec<String> = Vec::new();
        fn visit(
            name: &str,
            deps: &BTreeMap<String, BTreeSet<String>>,
            done: &mut BTreeSet<String>,
            visiting: &mut Vec<String>,
            order: &mut Vec<String>,
        ) -> Result<(), TableError> {
            if done.contains(name) {
                return Ok(());
            }
            if let Some(i) = visiting.iter().position(|v| v == name) {
                let mut cycle = visiting[i..].to_vec();
                cycle.push(name.to_string());
                return Err(TableError::Invalid(format!(
                    "models depend on each other in a cycle: {}",
                    cycle.join(" -> ")
                )));
            }
            visiting.push(name.to_string());
            for d in deps.get(name).into_iter().flatten() {
                if deps.contains_key(d) {
                    visit(d, deps, done, visiting, order)?;
                }
            }
            visiting.pop();
            done.insert(name.to_string());
            order.push(name.to_string());
            Ok(())
        }
        for name in deps.keys() {
            visit(name, &deps, &mut done, &mut visiting, &mut order)?;
        }
        Ok(order)
    }

    /// The models that read one of `tables`, directly or through another such model, in
    /// dependency order: what must run again after those tables changed outside the models
    /// (an ML model's predictions).
    pub fn models_after(&self, tables: &[&str]) -> Result<Vec<String>, TableError> {
        let deps = self.model_dependencies()?;
        let mut reached: BTreeSet<String> = tables.iter().map(|t| t.to_string()).collect();
        let mut out = Vec::new();
        for name in self.model_order()? {
            if deps
                .get(&name)
                .is_some_and(|d| d.iter().any(|t| reached.contains(t)))
            {
                reached.insert(name.clone());
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Runs models (all when `selected` is empty) in dependency order.
    pub async fn transform(
        &self,
        selected: &[String],
        interval: Option<Interval>,
    ) -> Result<Vec<ModelReport>, TableError> {
        let order = self.model_order()?;
        for s in selected {
            if !order.contains(s) {
                return Err(self.unknown("model", s, &order));
            }
        }
        // A model reading the predictions of an `[ml.*]` model not trained yet waits for that
        // training, which runs it (the pipeline's downstream models of ML).
        let mut untrained = Vec::new();
        if selected.is_empty() {
            for ml in self.project().ml.keys() {
                if self.open(ml).await?.is_none() {
                    untrained.push(ml.as_str());
                }
            }
        }
        let waiting = if untrained.is_empty() {
            Vec::new()
        } else {
            self.models_after(&untrained)?
        };
        // Models run in their own runtime: `[query] model_memory`, spilling to disk past it.
        let ctx = self.session_in(true).await?;
        let mut reports = Vec::new();
        for name in order {
            if !selected.is_empty() && !selected.contains(&name) {
                continue;
            }
            if waiting.contains(&name) {
                tracing::info!(
                    model = name.as_str(),
                    "model reads the predictions of an ML model not trained yet ({}): it runs after that training",
                    untrained.join(", ")
                );
                continue;
            }
            reports.push(self.run_model(&ctx, &name, interval).await?);
        }
        Ok(reports)
    }

    async fn run_model(
        &self,
        ctx: &SessionContext,
        name: &str,
        interval: Option<Interval>,
    ) -> Result<ModelReport, TableError> {
        let started = Instant::now();
        let Some(model) = self.project().models.get(name).cloned() else {
            let known: Vec<String> = self.project().models.keys().cloned().collect();
            return Err(self.unknown("model", name, &known));
        };
        let _lock = self.lock_table(name)?;
        let sql = self.model_sql(name)?;
        let context = format!("model `{name}`");
        // Planned and run in a task of its own: a panic of the engine is this model's error,
        // and `model_timeout` (when set) stops it.
        let bounds = Bounds::model(&self.project().query);
        let (task_ctx, task_context) = (ctx.clone(), context.clone());
        let (result_schema, batches) = bounds
            .run(&context, async move {
                let (ctx, context) = (task_ctx, task_context);
                let mut df = ctx
                    .sql_with_options(&sql, read_only())
                    .await
                    .map_err(TableError::sql(context.clone()))?;
                if sql.contains("$interval_start") || sql.contains("$interval_end") {
                    let (start, end) = match interval {
                        Some(i) => (i.start.as_microsecond(), i.end.as_microsecond()),
                        None => (i64::MIN / 2, i64::MAX / 2),
                    };
                    let ts =
                        |us: i64| ScalarValue::TimestampMicrosecond(Some(us), Some("UTC".into()));
                    let params = ParamValues::Map(
                        [
                            ("interval_start".to_string(), ts(start).into()),
                            ("interval_end".to_string(), ts(end).into()),
                        ]
                        .into_iter()
                        .collect(),
                    );
                    df = df
                        .with_param_values(params)
                        .map_err(TableError::sql(context.clone()))?;
                }
                let pool = ctx.runtime_env().memory_pool.clone();
                crate::bounds::collect(df, &bounds, &context, &pool).await
            })
            .await?;
        let batches: Vec<RecordBatch> = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(normalize_for_delta)
            .collect::<Result<_, _>>()?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let table = self.delta_table(name).await?;
        let exists = table.version().is_some();
        let commit = CommitProperties::default()
            .with_metadata([("affluent.model".to_string(), serde_json::json!(name))]);
        let materialized = model.materialized.unwrap_or(Materialized::Replace);
        let (table, merged) = if materialized == Materialized::Merge && exists {
            let source = ctx.read_batches(batches)?;
            let (table, inserted, updated) =
                merge(table, name, source, &model.primary_key, None, commit).await?;
            (table, Some((inserted, updated)))
        } else {
            let batches = if batches.is_empty() {
                // An empty result still defines the table's columns.
                vec![normalize_for_delta(&RecordBatch::new_empty(result_schema))?]
            } else {
                batches
            };
            let table = Warehouse::write_in_order(name, table, batches)?
                .with_save_mode(SaveMode::Overwrite)
                .with_schema_mode(SchemaMode::Overwrite)
                .with_commit_properties(commit)
                .await
                .map_err(TableError::delta(name))?;
            (table, None)
        };
        let written = table.version();
        let (table, compacted) = self.compact_after(name, table).await;
        // The session reads the table as it is now (compacted or not).
        let table = match table {
            Some(t) => Some(t),
            None => self.open(name).await?,
        };
        if let Some(table) = &table {
            register(ctx, name, table).await?;
        }
        Ok(ModelReport {
            compacted,
            model: name.to_string(),
            rows,
            merged,
            version: written,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}
