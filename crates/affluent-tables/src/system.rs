//! Tables affluent writes itself rather than loading them from a source: the alerts' firings
//! ([`ALERT_FIRINGS`]), the trained ML model versions ([`ML_MODELS`]), each `[ml.NAME]`'s
//! predictions (a table named `NAME`) and each `[streams.NAME]`'s windows (`NAME`, the final
//! ones, and `NAME_open`). They are Delta tables like the others (queried, shown,
//! exported), and each write carries an application transaction `(app, version)` in the same
//! commit as its rows, so a writer that retries after a crash writes once.

use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;

use crate::mapping::Rows;
use crate::{TableError, Warehouse};

/// The table of alert firings, present when the project has `[alerts.*]`.
pub const ALERT_FIRINGS: &str = "alert_firings";

/// The table of trained model versions, present when the project has `[ml.*]`.
pub const ML_MODELS: &str = affluent_config::schema::ML_MODELS;

impl Warehouse {
    /// The tables affluent writes itself, for this project.
    pub fn system_tables(&self) -> Vec<String> {
        let project = self.project();
        let mut out = Vec::new();
        if !project.alerts.is_empty() {
            out.push(ALERT_FIRINGS.to_string());
        }
        if !project.ml.is_empty() {
            out.push(ML_MODELS.to_string());
            out.extend(project.ml.keys().cloned());
        }
        for name in project.streams.keys() {
            out.push(name.clone());
            out.push(affluent_config::schema::StreamConfig::open_table(name));
        }
        out
    }

    /// The last version `app` committed to a table (0: none, or no table).
    pub async fn app_version(&self, name: &str, app: &str) -> Result<i64, TableError> {
        let Some(table) = self.open(name).await? else {
            return Ok(0);
        };
        let Ok(state) = table.snapshot() else {
            return Ok(0);
        };
        Ok(state
            .transaction_version(table.log_store().as_ref(), app)
            .await
            .map_err(TableError::delta(name))?
            .unwrap_or(0))
    }

    /// Appends rows to a system table in one commit that records `(app, version)`; the table
    /// is created by the first append and gains new columns as its rows do. Returns the
    /// table's version.
    pub async fn append_rows(
        &self,
        name: &str,
        rows: &Rows,
        app: &str,
        version: i64,
    ) -> Result<Option<u64>, TableError> {
        self.write_rows(name, rows, app, version, SaveMode::Append)
            .await
    }

    /// Replaces a system table's rows (and schema) in one commit that records `(app,
    /// version)`; the table is created by the first write. Returns the table's version.
    pub async fn replace_rows(
        &self,
        name: &str,
        rows: &Rows,
        app: &str,
        version: i64,
    ) -> Result<Option<u64>, TableError> {
        self.write_rows(name, rows, app, version, SaveMode::Overwrite)
            .await
    }

    /// Replaces the rows of a system table whose text column `column` holds one of `values`
    /// by `rows` (which must all hold one of them), keeping every other row, in one commit
    /// that records `(app, version)`; the table is created by the first write. This is how
    /// one writer among several replaces its own share of a table (a partition of a stream's
    /// open windows).
    pub async fn replace_rows_of(
        &self,
        name: &str,
        rows: &Rows,
        column: &str,
        values: &[String],
        app: &str,
        version: i64,
    ) -> Result<Option<u64>, TableError> {
        let _lock = self.lock_table(name)?;
        let batch = rows.to_batch()?;
        let table = self.delta_table(name).await?;
        let exists = table.version().is_some();
        let commit = CommitProperties::default()
            .with_application_transaction(Transaction::new(app, version))
            .with_metadata([("affluent.writer".to_string(), serde_json::json!(app))]);
        let builder =
            Warehouse::write_in_order(name, table, vec![batch])?.with_commit_properties(commit);
        let builder = if exists && !values.is_empty() {
            let list = values
                .iter()
                .map(|v| format!("'{}'", v.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ");
            builder
                .with_save_mode(SaveMode::Overwrite)
                .with_replace_where(format!("{} IN ({list})", crate::load::quote(column)))
        } else {
            builder.with_save_mode(SaveMode::Append)
        };
        let table = builder.await.map_err(TableError::delta(name))?;
        Ok(table.version())
    }

    async fn write_rows(
        &self,
        name: &str,
        rows: &Rows,
        app: &str,
        version: i64,
        mode: SaveMode,
    ) -> Result<Option<u64>, TableError> {
        let _lock = self.lock_table(name)?;
        let batch = rows.to_batch()?;
        let table = self.delta_table(name).await?;
        let commit = CommitProperties::default()
            .with_application_transaction(Transaction::new(app, version))
            .with_metadata([("affluent.writer".to_string(), serde_json::json!(app))]);
        let table = Warehouse::write_in_order(name, table, vec![batch])?
            .with_save_mode(mode)
            .with_schema_mode(if mode == SaveMode::Overwrite {
                SchemaMode::Overwrite
            } else {
                SchemaMode::Merge
            })
            .with_commit_properties(commit)
            .await
            .map_err(TableError::delta(name))?;
        Ok(table.version())
    }
}
