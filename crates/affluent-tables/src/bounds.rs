//! The bounds every query runs within, from `[query]` of the project file: a memory pool shared
//! by the engine's operators and the rows kept for the result, a time limit around planning and
//! execution, a cap on the rows a result keeps, and a task of its own so that a panic of the
//! engine is an error of that query, not of the process.
//!
//! DataFusion accounts for the memory of its operators (sorts, joins, aggregations) in the
//! session's [`MemoryPool`]; the batches of a result are not in that account, so
//! [`collect`] reserves them in the same pool as they arrive. Functions that build large values
//! in one call, outside the pool, are bounded in [`crate::udf`].

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use affluent_config::schema::{ByteSize, QueryConfig};
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::execution::memory_pool::{
    FairSpillPool, GreedyMemoryPool, MemoryConsumer, MemoryPool, TrackConsumersPool,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

use crate::TableError;

/// The bounds of one kind of query.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// The memory pool's size.
    pub(crate) memory: ByteSize,
    /// The key of `[query]` that sets it.
    pub(crate) memory_key: &'static str,
    /// The time limit (`None`: none).
    pub(crate) timeout: Option<Duration>,
    /// The key of `[query]` that sets it.
    pub(crate) timeout_key: &'static str,
    /// Rows a result may keep (`None`: no cap).
    pub(crate) max_rows: Option<u64>,
    /// Whether the pool shares itself fairly among operators that spill (models).
    pub(crate) fair: bool,
}

impl Bounds {
    /// Read queries: `affluent query`, the dashboard.
    pub(crate) fn read(q: &QueryConfig) -> Self {
        Self {
            memory: q.memory(),
            memory_key: "memory",
            timeout: Some(q.timeout()),
            timeout_key: "timeout",
            max_rows: Some(q.max_rows()),
            fair: false,
        }
    }

    /// Exports: the read queries' memory, no time limit and no cap on rows (they stream to a
    /// file).
    pub(crate) fn export(q: &QueryConfig) -> Self {
        Self {
            timeout: None,
            max_rows: None,
            ..Self::read(q)
        }
    }

    /// SQL models: their own memory (spilling to disk), a time limit only if configured, no cap
    /// on rows.
    pub(crate) fn model(q: &QueryConfig) -> Self {
        Self {
            memory: q.model_memory(),
            memory_key: "model_memory",
            timeout: q.model_timeout(),
            timeout_key: "model_timeout",
            max_rows: None,
            fair: true,
        }
    }

    /// A runtime whose memory pool has the bound's size; operators past it spill to the OS's
    /// temporary directory where they can.
    pub(crate) fn runtime(&self) -> Result<Arc<RuntimeEnv>, TableError> {
        let size = usize::try_from(self.memory.bytes()).unwrap_or(usize::MAX);
        let top = NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN);
        let pool: Arc<dyn MemoryPool> = if self.fair {
            Arc::new(TrackConsumersPool::new(FairSpillPool::new(size), top))
        } else {
            Arc::new(TrackConsumersPool::new(GreedyMemoryPool::new(size), top))
        };
        let mut disk = DiskManagerBuilder::default();
        if !self.fair {
            // What a read query may spill is bounded too: a few times its memory.
            disk = disk.with_max_temp_directory_size(self.memory.bytes().saturating_mul(4));
        }
        Ok(RuntimeEnvBuilder::new()
            .with_memory_pool(pool)
            .with_disk_manager_builder(disk)
            .build_arc()?)
    }

    /// Runs `work` (planning and running a query) in a task of its own within the time limit:
    /// a panic inside it is [`TableError::Engine`], running past the limit
    /// [`TableError::Timeout`] (the task is stopped), and an engine error that says memory ran
    /// out [`TableError::Memory`]. Dropping the returned future stops the task too.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        what: &str,
        work: impl Future<Output = Result<T, TableError>> + Send + 'static,
    ) -> Result<T, TableError> {
        let task = tokio::spawn(work);
        let _stop = AbortOnDrop(task.abort_handle());
        let joined = match self.timeout {
            Some(limit) => match tokio::time::timeout(limit, task).await {
                Ok(joined) => joined,
                Err(_) => {
                    return Err(TableError::Timeout {
                        what: what.to_string(),
                        limit,
                        key: self.timeout_key,
                    });
                }
            },
            None => task.await,
        };
        match joined {
            Ok(result) => result.map_err(|e| self.classify(what, e)),
            Err(e) if e.is_panic() => Err(TableError::Engine {
                what: what.to_string(),
                message: panic_message(e.into_panic()),
            }),
            Err(e) => Err(TableError::Engine {
                what: what.to_string(),
                message: e.to_string(),
            }),
        }
    }

    /// An engine error that says the memory ran out, or that a task of the engine panicked,
    /// becomes [`TableError::Memory`] or [`TableError::Engine`]; others are kept.
    fn classify(&self, what: &str, error: TableError) -> TableError {
        let df = match &error {
            TableError::Sql { source, .. } => Some(source.as_ref()),
            TableError::DataFusion(source) => Some(source),
            _ => None,
        };
        let Some(df) = df else {
            return error;
        };
        let mut panicked = None;
        let mut exhausted = false;
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(df);
        while let Some(e) = cause {
            // The engine shares errors between its tasks behind an `Arc`.
            let df = e
                .downcast_ref::<DataFusionError>()
                .or_else(|| e.downcast_ref::<Arc<DataFusionError>>().map(Arc::as_ref));
            if let Some(d) = df {
                exhausted |= matches!(d, DataFusionError::ResourcesExhausted(_));
            }
            let join = e.downcast_ref::<tokio::task::JoinError>().or_else(|| {
                e.downcast_ref::<Arc<tokio::task::JoinError>>()
                    .map(Arc::as_ref)
            });
            if let Some(j) = join
                && j.is_panic()
            {
                panicked = Some(j.to_string());
            }
            cause = e.source();
        }
        if let Some(message) = panicked {
            return TableError::Engine {
                what: what.to_string(),
                message,
            };
        }
        if exhausted {
            let source = match error {
                TableError::Sql { source, .. } => source,
                TableError::DataFusion(source) => Box::new(source),
                other => return other,
            };
            return TableError::Memory {
                what: what.to_string(),
                limit: self.memory,
                key: self.memory_key,
                source,
            };
        }
        error
    }

    /// The error of a result that outgrew the memory pool.
    fn result_too_large(&self, what: &str, source: DataFusionError) -> TableError {
        TableError::Memory {
            what: what.to_string(),
            limit: self.memory,
            key: self.memory_key,
            source: Box::new(source),
        }
    }
}

/// Stops a task when dropped (the caller gave up: timeout, closed connection).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Memory held by a batch: the slices of its buffers that it uses (a slice of a larger batch
/// counts its own rows only).
fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// Runs a planned query and keeps its batches, reserving their memory in `pool` as they arrive
/// and stopping at `bounds.max_rows`: a result past either bound is an error, never cut. Returns
/// the result's schema with the batches (at least one, maybe empty, so that a result without
/// rows still has columns).
pub(crate) async fn collect(
    df: DataFrame,
    bounds: &Bounds,
    what: &str,
    pool: &Arc<dyn MemoryPool>,
) -> Result<(SchemaRef, Vec<RecordBatch>), TableError> {
    let mut stream = df
        .execute_stream()
        .await
        .map_err(TableError::sql(what.to_string()))?;
    let schema = stream.schema();
    let reservation = MemoryConsumer::new(format!("{what}: result rows")).register(pool);
    let mut batches = Vec::new();
    let mut rows: u64 = 0;
    while let Some(batch) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        let batch = batch.map_err(TableError::sql(what.to_string()))?;
        rows += batch.num_rows() as u64;
        if let Some(max) = bounds.max_rows
            && rows > max
        {
            return Err(TableError::TooManyRows {
                what: what.to_string(),
                limit: max,
            });
        }
        reservation
            .try_grow(batch_bytes(&batch))
            .map_err(|e| bounds.result_too_large(what, e))?;
        if batch.num_rows() > 0 {
            batches.push(batch);
        }
    }
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(schema.clone()));
    }
    Ok((schema, batches))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use super::*;

    #[test]
    fn models_have_a_time_limit_only_when_configured() {
        let q = QueryConfig::default();
        assert_eq!(Bounds::read(&q).timeout, Some(Duration::from_secs(30)));
        assert_eq!(Bounds::model(&q).timeout, None);
        assert_eq!(Bounds::model(&q).max_rows, None);
        assert_eq!(Bounds::export(&q).timeout, None);
        assert_eq!(Bounds::export(&q).max_rows, None);
        assert_eq!(Bounds::model(&q).memory, q.memory());
    }

    #[test]
    fn a_slice_of_a_batch_counts_its_own_rows_only() {
        let column = datafusion::arrow::array::Int64Array::from_iter_values(0..100_000);
        let batch = RecordBatch::try_from_iter([(
            "n",
            Arc::new(column) as datafusion::arrow::array::ArrayRef,
        )])
        .unwrap();
        assert!(batch_bytes(&batch) >= 800_000);
        assert!(batch_bytes(&batch.slice(0, 10)) <= 1_000);
    }
}
