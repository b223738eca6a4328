//! Sinks: chosen tables and models written outside the Delta tables, each new Delta version
//! once. [`Sink`] is what a sink type implements; [`registry::build`] is the one list of them;
//! [`Sinks`] runs a project's sinks after tables change and on demand.
//!
//! A sink never reads landing or sources: it reads tables through
//! [`affluent_tables::Warehouse::changes`] (the rows since the version it last wrote, or the
//! whole table) and keeps its own progress where it writes, so that rows and progress commit
//! together.

use std::collections::BTreeMap;
use std::sync::Arc;

use affluent_tables::{TableError, Warehouse};

pub mod postgres;
pub mod registry;

/// Errors of sinks. Messages say what failed and what to do; they carry no secret.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The project has no such sink, or it is off.
    #[error("{0}")]
    Invalid(String),
    /// The sink's database refused or could not be reached.
    #[error("sink `{sink}`: {message}")]
    Connect {
        /// The sink.
        sink: String,
        /// What failed and what to do (redacted).
        message: String,
        /// The driver's error (`None`: the server did not answer in time).
        #[source]
        source: Option<sqlx::Error>,
    },
    /// Writing a table failed; the sink's database is as it was before.
    #[error("sink `{sink}`, table `{table}`: {message}; nothing of this version was written")]
    Write {
        /// The sink.
        sink: String,
        /// The table.
        table: String,
        /// What failed and what to do (redacted).
        message: String,
        /// The driver's error, if it came from the database.
        #[source]
        source: Option<sqlx::Error>,
    },
    /// Reading the table failed.
    #[error("sink `{sink}`, table `{table}`: {source}")]
    Table {
        /// The sink.
        sink: String,
        /// The table.
        table: String,
        /// The table's error.
        #[source]
        source: Box<TableError>,
    },
}

/// What one table's write did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableSync {
    /// The sink.
    pub sink: String,
    /// The table.
    pub table: String,
    /// The Delta version now written (`None`: the table was never written).
    pub version: Option<i64>,
    /// The version written before (`None`: none).
    pub previous: Option<i64>,
    /// `up to date`, `changes` (the rows since `previous`) or `whole` (the table mirrored).
    pub scope: String,
    /// Rows read from the table and sent.
    pub rows_sent: u64,
    /// Rows inserted or updated in the sink.
    pub rows_written: u64,
    /// Rows removed from the sink (a whole table mirrored).
    pub rows_removed: u64,
    /// Columns the sink gained or widened.
    pub schema_changes: Vec<String>,
    /// Values whose NUL characters were written as U+FFFD.
    pub nul_replaced: u64,
}

/// Where a sink stands for one table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableStatus {
    /// The table.
    pub table: String,
    /// Its latest Delta version (`None`: never written).
    pub delta_version: Option<i64>,
    /// The version the sink holds (`None`: none yet).
    pub written_version: Option<i64>,
    /// When the sink wrote it, Unix milliseconds.
    pub written_at_ms: Option<i64>,
}

/// A sink type: writes what a table gained since it last wrote it, exactly once per version.
#[async_trait::async_trait]
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// The sink's name (`[sinks.NAME]`).
    fn name(&self) -> &str;
    /// The tables and models it writes.
    fn tables(&self) -> &[String];
    /// Brings one table up to its latest Delta version; a sink's rows and its progress commit
    /// together, so a write cut short (a crash, a refusal) is done again whole next time.
    async fn sync_table(&self, warehouse: &Warehouse, table: &str) -> Result<TableSync, SinkError>;
    /// Where it stands for each of its tables.
    async fn status(&self, warehouse: &Warehouse) -> Result<Vec<TableStatus>, SinkError>;
}

/// A project's sinks, built once per process.
#[derive(Debug, Clone)]
pub struct Sinks {
    warehouse: Warehouse,
    sinks: BTreeMap<String, Arc<dyn Sink>>,
    /// Sinks that are off, and why.
    off: BTreeMap<String, String>,
    /// One write per sink at a time in this process (across processes: the database's lock).
    running: Arc<BTreeMap<String, tokio::sync::Mutex<()>>>,
}

/// A sink as `affluent sinks list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkInfo {
    /// The name.
    pub name: String,
    /// Its type.
    pub kind: String,
    /// Its tables.
    pub tables: Vec<String>,
    /// Why it is off, if it is.
    pub off: Option<String>,
}

impl Sinks {
    /// The sinks of the warehouse's project; those that are off (an empty url, or one that
    /// cannot be used) are kept aside with why.
    pub fn new(warehouse: Warehouse) -> Self {
        let project = warehouse.project();
        let mut sinks = BTreeMap::new();
        let mut off = BTreeMap::new();
        for (name, config) in &project.sinks {
            if let Some(why) = config.off() {
                off.insert(name.clone(), why);
                continue;
            }
            match registry::build(name, config, project.redactor.clone()) {
                Ok(sink) => {
                    sinks.insert(name.clone(), sink);
                }
                Err(e) => {
                    off.insert(name.clone(), e.to_string());
                }
            }
        }
        let running = Arc::new(
            sinks
                .keys()
                .map(|n| (n.clone(), tokio::sync::Mutex::new(())))
                .collect(),
        );
        Self {
            warehouse,
            sinks,
            off,
            running,
        }
    }

    /// Every sink of the project, on or off.
    pub fn list(&self) -> Vec<SinkInfo> {
        self.warehouse
            .project()
            .sinks
            .iter()
            .map(|(name, config)| SinkInfo {
                name: name.clone(),
                kind: config.kind().to_string(),
                tables: config.tables().to_vec(),
                off: self.off.get(name).cloned(),
            })
            .collect()
    }

    /// Whether any sink is on.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// The sinks that are on, by name.
    fn chosen(&self, names: &[String]) -> Result<Vec<Arc<dyn Sink>>, SinkError> {
        if names.is_empty() {
            return Ok(self.sinks.values().cloned().collect());
        }
        names
            .iter()
            .map(|name| {
                if let Some(why) = self.off.get(name) {
                    return Err(SinkError::Invalid(format!("sink `{name}` is off: {why}")));
                }
                self.sinks.get(name).cloned().ok_or_else(|| {
                    let known: Vec<String> =
                        self.warehouse.project().sinks.keys().cloned().collect();
                    let hint = affluent_core::closest(name, &known)
                        .map(|k| format!("; did you mean `{k}`?"))
                        .unwrap_or_default();
                    SinkError::Invalid(format!("no sink named `{name}`{hint}"))
                })
            })
            .collect()
    }

    /// Brings the named sinks (every one when empty) up to date with their tables, table by
    /// table in their order; a table that fails does not stop the others.
    pub async fn run(
        &self,
        names: &[String],
    ) -> Result<Vec<Result<TableSync, SinkError>>, SinkError> {
        let mut out = Vec::new();
        for sink in self.chosen(names)? {
            let tables = sink.tables().to_vec();
            out.extend(self.sync(&sink, &tables).await);
        }
        Ok(out)
    }

    async fn sync(
        &self,
        sink: &Arc<dyn Sink>,
        tables: &[String],
    ) -> Vec<Result<TableSync, SinkError>> {
        let _one = match self.running.get(sink.name()) {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let mut out = Vec::new();
        for table in tables {
            let result = sink.sync_table(&self.warehouse, table).await;
            let unreachable = matches!(result, Err(SinkError::Connect { .. }));
            out.push(result);
            if unreachable {
                // One wait for a database that is away is enough for this pass.
                break;
            }
        }
        out
    }

    /// What the pipeline calls after new versions of tables: each sink writing one of them
    /// brings those up to date. Failures are logged (redacted); every result is returned; the next change,
    /// `affluent sinks run` or the periodic catch-up of `affluent run` writes them again.
    pub async fn after_change(&self, changed: &[&str]) -> Vec<Result<TableSync, SinkError>> {
        let mut out = Vec::new();
        for sink in self.sinks.values() {
            let tables: Vec<String> = sink
                .tables()
                .iter()
                .filter(|t| changed.contains(&t.as_str()))
                .cloned()
                .collect();
            if tables.is_empty() {
                continue;
            }
            for result in self.sync(sink, &tables).await {
                log(&result, self.warehouse.project().redactor.as_ref());
                out.push(result);
            }
        }
        out
    }

    /// Every sink, every table: what `affluent run` calls now and then, so that a sink whose
    /// database was away catches up without waiting for the next change.
    pub async fn catch_up(&self) -> Vec<Result<TableSync, SinkError>> {
        let mut out = Vec::new();
        for sink in self.sinks.values() {
            let tables = sink.tables().to_vec();
            for result in self.sync(sink, &tables).await {
                log(&result, self.warehouse.project().redactor.as_ref());
                out.push(result);
            }
        }
        out
    }

    /// Where each chosen sink stands.
    pub async fn status(
        &self,
        names: &[String],
    ) -> Result<Vec<(String, Vec<TableStatus>)>, SinkError> {
        let mut out = Vec::new();
        for sink in self.chosen(names)? {
            out.push((sink.name().to_string(), sink.status(&self.warehouse).await?));
        }
        Ok(out)
    }
}

fn log(result: &Result<TableSync, SinkError>, redactor: &affluent_core::Redactor) {
    if let Err(e) = result {
        tracing::warn!("{}", redactor.redact(&affluent_core::error_chain(e)));
    }
}
