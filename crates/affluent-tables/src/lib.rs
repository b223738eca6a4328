//! Tables people can query and trust: Delta Lake tables loaded **exactly once** from the landing
//! zone ([`load`]), SQL models on DataFusion run in dependency order ([`models`]), read-only
//! queries and exports ([`query`]).
//!
//! Tables are plain Delta tables under `DATA_DIR/tables/NAME`, or wherever `tables_location` and
//! `location` put them, S3-compatible object stores included ([`storage`]): DuckDB, Polars,
//! pandas and Spark read them. Records reach a table from landing only ([`affluent_sources::Connectors::records_of`]),
//! never from the network, so any table can be rebuilt with [`Warehouse::load_source`] over [`LoadScope::Replay`].
//!
//! This crate is the only one that knows DataFusion and deltalake; it knows nothing of HTTP or
//! the dashboard.

mod bounds;
pub mod changes;
pub mod compact;
pub mod events;
pub mod lineage;
pub mod load;
pub mod mapping;
pub mod models;
pub mod parts;
pub mod query;
pub mod reader;
pub mod storage;
pub mod system;
pub mod udf;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use affluent_config::Project;
use affluent_config::schema::ByteSize;
use affluent_landing::{Landing, LandingError, Quarantine};
use affluent_sources::{Connectors, SourceError};
use datafusion::arrow::array::RecordBatch;
use datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::DeltaTable;
use deltalake::delta_datafusion::DeltaSessionContext;
use deltalake::operations::write::WriteBuilder;

pub use load::{LoadReport, LoadScope};
pub use models::ModelReport;
pub use query::{ExportFormat, OutputFormat, TableInfo};
pub use reader::{ColumnInfo, Param, Reader, Rows};

/// Errors of tables, models and queries.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The user asked for something the project does not have, or a query is not allowed.
    #[error("{0}")]
    Invalid(String),
    /// A SQL model or query failed.
    #[error("{context}: {source}")]
    Sql {
        /// Which model or query.
        context: String,
        /// DataFusion's error.
        source: Box<datafusion::error::DataFusionError>,
    },
    /// A Delta operation failed.
    #[error("delta table `{table}`: {source}")]
    Delta {
        /// The table.
        table: String,
        /// deltalake's error.
        source: Box<deltalake::DeltaTableError>,
    },
    /// Arrow could not build or convert data.
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// DataFusion failed outside a named query.
    #[error("datafusion: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Parquet writing failed.
    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    /// Landing or quarantine I/O.
    #[error(transparent)]
    Landing(#[from] LandingError),
    /// A landed entry could not be parsed again.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Other file I/O.
    #[error("I/O on {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another writer is compacting the table (a table on an object store, shared).
    #[error("{0}; try again later")]
    Busy(String),
    /// A query ran past its time limit (`[query] timeout`, `model_timeout`) and was stopped.
    #[error(
        "{what} stopped after {}, the limit of `{key}` in [query] of affluent.toml: make it cheaper (filter or aggregate earlier) or raise `{key}`",
        affluent_core::format_period(*limit)
    )]
    Timeout {
        /// What ran (`query`, `model \`NAME\``).
        what: String,
        /// The limit.
        limit: std::time::Duration,
        /// The key that sets it.
        key: &'static str,
    },
    /// A query needed more memory than its limit (`[query] memory`, `model_memory`) and was
    /// stopped.
    #[error(
        "{what} needs more than {limit} of memory, the limit of `{key}` in [query] of affluent.toml: filter or aggregate earlier, add a LIMIT, or raise `{key}`"
    )]
    Memory {
        /// What ran.
        what: String,
        /// The limit.
        limit: ByteSize,
        /// The key that sets it.
        key: &'static str,
        /// The engine's account of what took the memory.
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },
    /// A query's result has more rows than `[query] max_rows`; nothing was cut.
    #[error(
        "{what} returns more than {limit} rows, the limit of `max_rows` in [query] of affluent.toml: add a LIMIT or aggregate, or raise `max_rows`"
    )]
    TooManyRows {
        /// What ran.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// The query engine panicked while running a query (a bug of DataFusion or arrow that the
    /// query ran into); the query was stopped and the process goes on.
    #[error(
        "{what} failed inside the query engine ({message}); it was stopped, nothing else is affected"
    )]
    Engine {
        /// What ran.
        what: String,
        /// The panic's message.
        message: String,
    },
}

impl TableError {
    /// Whether the error is a bound of `[query]` that the query hit (time, memory, rows): the
    /// query asked too much, the tables and the engine are fine. Its message is for the user:
    /// it names the limit and the key that raises it, and carries no engine text.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            TableError::Timeout { .. } | TableError::Memory { .. } | TableError::TooManyRows { .. }
        )
    }

    /// Whether a commit failed because another writer's commit, made meanwhile, conflicts
    /// with it: the table is as before, and the write can be made again over its new state.
    pub fn is_commit_conflict(&self) -> bool {
        use deltalake::kernel::transaction::{CommitConflictError, TransactionError};
        let TableError::Delta { source, .. } = self else {
            return false;
        };
        match source.as_ref() {
            deltalake::DeltaTableError::Transaction { source } => match source {
                // The winner carries this very transaction: it is in the table already.
                TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction) => {
                    false
                }
                TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_) => {
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }

    pub(crate) fn delta(table: &str) -> impl FnOnce(deltalake::DeltaTableError) -> TableError + '_ {
        move |source| TableError::Delta {
            table: table.to_string(),
            source: Box::new(source),
        }
    }

    pub(crate) fn sql(
        context: impl Into<String>,
    ) -> impl FnOnce(datafusion::error::DataFusionError) -> TableError {
        let context = context.into();
        move |source| TableError::Sql {
            context,
            source: Box::new(source),
        }
    }

    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TableError + '_ {
        move |source| TableError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The tables and models of a project: loads, replays, transforms, queries.
#[derive(Clone)]
pub struct Warehouse {
    connectors: Arc<Connectors>,
    runtimes: Arc<Runtimes>,
    /// Per table: the committed loads read so far and the landing entries they took.
    ledgers: Arc<std::sync::Mutex<LedgerCache>>,
    /// Per table on an object store: its store and the latest version listed.
    remote: Arc<storage::RemoteLogs>,
    /// The name of this data directory's loads into shared tables, read once.
    writer: Arc<std::sync::OnceLock<String>>,
    /// The `[zones.NAME]` polygons, read on first use (or why they cannot be).
    zones: Arc<std::sync::OnceLock<Result<udf::ZoneSets, String>>>,
}

/// Per table: how many committed loads were read, and the landing entries they took.
type LedgerCache = std::collections::HashMap<String, (i64, Arc<std::collections::HashSet<String>>)>;

/// The query runtimes of a process, made on first use: every read query (`affluent query`, all
/// the dashboard's readers) shares one memory pool, models another.
#[derive(Default)]
struct Runtimes {
    read: std::sync::Mutex<Option<Arc<RuntimeEnv>>>,
    model: std::sync::Mutex<Option<Arc<RuntimeEnv>>>,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse")
            .field("project", &self.project().name)
            .finish()
    }
}

impl Warehouse {
    /// The warehouse of a project, sharing the connectors' runtime (to parse landed entries).
    pub fn new(connectors: Arc<Connectors>) -> Self {
        Self {
            connectors,
            runtimes: Arc::default(),
            ledgers: Arc::default(),
            remote: Arc::default(),
            writer: Arc::default(),
            zones: Arc::default(),
        }
    }

    /// The project's `[zones.NAME]`, each file read and indexed once per warehouse, or why
    /// they cannot be (reported by `zone_of` only: other queries run).
    pub(crate) fn zones(&self) -> Result<udf::ZoneSets, String> {
        self.zones
            .get_or_init(|| {
                let project = self.project();
                let mut sets = std::collections::BTreeMap::new();
                for (name, z) in &project.zones {
                    let path = project.dir.join(&z.file);
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        format!("zones `{name}`: cannot read {}: {e}", path.display())
                    })?;
                    let zones = affluent_geo::Zones::from_geojson(&text, &z.name)
                        .map_err(|e| format!("zones `{name}` ({}): {e}", path.display()))?;
                    sets.insert(name.clone(), Arc::new(zones));
                }
                Ok(udf::ZoneSets(Arc::new(sets)))
            })
            .clone()
    }

    /// The runtime (memory pool, spill files) of read queries, or of models.
    pub(crate) fn runtime(&self, models: bool) -> Result<Arc<RuntimeEnv>, TableError> {
        let (slot, bounds) = if models {
            (
                &self.runtimes.model,
                bounds::Bounds::model(&self.project().query),
            )
        } else {
            (
                &self.runtimes.read,
                bounds::Bounds::read(&self.project().query),
            )
        };
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(runtime) = slot.as_ref() {
            return Ok(runtime.clone());
        }
        let runtime = bounds.runtime()?;
        *slot = Some(runtime.clone());
        Ok(runtime)
    }

    /// A write of `batches` into `table` that stores their rows in the order given.
    ///
    /// deltalake runs a write as a DataFusion plan whose partitions feed one writer over a
    /// channel, each batch stored as it arrives: with more than one partition, the order of
    /// the stored rows would depend on the engine's planning. One partition pins it to the
    /// batches' order, which a stream reads from a version as its events (see [`events`]), the
    /// same whether the load ran once or again after a crash. Parquet encoding runs in the
    /// writer's one task either way.
    pub(crate) fn write_in_order(
        name: &str,
        table: DeltaTable,
        batches: Vec<RecordBatch>,
    ) -> Result<WriteBuilder, TableError> {
        let overrides = std::collections::HashMap::from([(
            "datafusion.execution.target_partitions".to_string(),
            "1".to_string(),
        )]);
        let session = DeltaSessionContext::new_with_session_overrides(&overrides)
            .map_err(TableError::delta(name))?;
        Ok(table
            .write(batches)
            .with_session_state(Arc::new(session.state())))
    }

    /// The project.
    pub fn project(&self) -> &Project {
        self.connectors.project()
    }

    /// The landing zone.
    pub fn landing(&self) -> Landing {
        self.connectors.landing()
    }

    /// The quarantine.
    pub fn quarantine(&self) -> Quarantine {
        self.connectors.quarantine()
    }

    /// The connectors (to parse landed entries).
    pub fn connectors(&self) -> &Connectors {
        &self.connectors
    }

    /// The local folder tables and models go under (`DATA_DIR/tables`, or `tables_location`
    /// when it is a folder); `DATA_DIR/tables` when they are on an object store.
    pub fn tables_dir(&self) -> PathBuf {
        match &self.project().storage.root {
            affluent_config::storage::TableLocation::Local(dir) => dir.clone(),
            affluent_config::storage::TableLocation::S3(_) => {
                self.project().data_dir.join("tables")
            }
        }
    }

    /// The folder of one table or model; `None` when it is on an object store
    /// ([`Warehouse::location`]).
    pub fn table_dir(&self, name: &str) -> Option<PathBuf> {
        match self.location(name) {
            affluent_config::storage::TableLocation::Local(dir) => Some(dir),
            affluent_config::storage::TableLocation::S3(_) => None,
        }
    }

    /// Every table and model name, tables first, then the tables affluent writes itself
    /// ([`Warehouse::system_tables`]).
    pub fn names(&self) -> Vec<String> {
        let p = self.project();
        p.tables
            .keys()
            .chain(p.models.keys())
            .cloned()
            .chain(self.system_tables())
            .collect()
    }

    /// Opens a table or model by name; `Ok(None)` when it was never written.
    pub async fn open(&self, name: &str) -> Result<Option<DeltaTable>, TableError> {
        if let Some(dir) = self.table_dir(name)
            && !dir.join("_delta_log").is_dir()
        {
            return Ok(None);
        }
        let table = self.delta_table(name).await?;
        Ok(table.version().is_some().then_some(table))
    }

    /// An unknown-name error with a suggestion.
    pub(crate) fn unknown(&self, what: &str, name: &str, known: &[String]) -> TableError {
        let hint = affluent_core::closest(name, known)
            .map(|k| format!("; did you mean `{k}`?"))
            .unwrap_or_default();
        TableError::Invalid(format!(
            "no {what} named `{name}`{hint} (known: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
    }
}

/// The `file://` URL of a table folder (created if missing).
pub(crate) fn table_url(dir: &Path) -> Result<url::Url, TableError> {
    std::fs::create_dir_all(dir).map_err(TableError::io(dir))?;
    let abs = std::fs::canonicalize(dir).map_err(TableError::io(dir))?;
    url::Url::from_directory_path(&abs)
        .map_err(|()| TableError::Invalid(format!("not a usable table path: {}", abs.display())))
}
