//! A project's pipeline as the scheduler runs it: sources → landing → tables → models.
//!
//! - [`Runtime`]: what a process opens once for a project: the warehouse (over the connectors)
//!   and the state store;
//! - [`Pipeline`]: the scheduler's [`Executor`](affluent_scheduler::Executor): a source's
//!   interval is ingested then loaded (loads batched across runs), a model's is materialized;
//!   catch-up keeps what the live run needs of a daily quota;
//! - [`streams`]: `[streams.NAME]`, each new version of an input table read as events through
//!   the window engine, windows written exactly once;
//! - [`status`]: per task, the last success, the next run, the holes, the quota used today and
//!   the last error (`affluent status`, the dashboard's pipeline page);
//! - [`coverage`]: where each interval of a task stands over a range, in runs of one state
//!   (`affluent status --coverage`, the pipeline page's timelines).
//!
//! Knows no HTTP server, no terminal and no command line: the binary and the dashboard call it.

pub mod coverage;
mod downstream;
mod executor;
pub mod status;
pub mod streams;

use std::sync::Arc;

use affluent_config::Project;
use affluent_scheduler::{SchedulerError, TaskSpec};
use affluent_sources::{Connectors, SourceError};
use affluent_state::{StateError, Store};
use affluent_tables::{TableError, Warehouse};
use jiff::Timestamp;

pub use downstream::{Downstream, Followed};
pub use executor::Pipeline;
pub use streams::{StreamReport, Streams};

/// Errors of the pipeline: those of the layers it drives, with their causes.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A connector failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A table, model or query failed.
    #[error(transparent)]
    Table(#[from] TableError),
    /// The scheduler refused a task or a schedule.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A request that cannot be answered as asked (a reversed range, too wide a range).
    #[error("{0}")]
    Invalid(String),
}

/// What a process opens once for a project.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The tables, over the connectors.
    pub warehouse: Warehouse,
    /// The state store.
    pub store: Store,
}

impl Runtime {
    /// Opens the connectors, the warehouse and the state store of a project.
    pub async fn open(project: Project) -> Result<Self, PipelineError> {
        let store = Store::open_project(&project).await?;
        let warehouse = open_warehouse(project)?;
        Ok(Self { warehouse, store })
    }

    /// The project.
    pub fn project(&self) -> &Project {
        self.warehouse.project()
    }
}

/// The warehouse of a project, over a new connectors runtime.
pub fn open_warehouse(project: Project) -> Result<Warehouse, PipelineError> {
    Ok(Warehouse::new(Arc::new(Connectors::new(project)?)))
}

/// The project's tasks: its scheduled sources and the models downstream of them.
pub fn tasks(warehouse: &Warehouse, now: Timestamp) -> Result<Vec<TaskSpec>, PipelineError> {
    let deps = warehouse.model_dependencies()?;
    Ok(affluent_scheduler::task_specs(
        warehouse.project(),
        &deps,
        now,
    )?)
}
