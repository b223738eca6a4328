//! [`Pipeline`]: ingestion, loads and models as the scheduler's executor.

use std::collections::HashMap;
use std::sync::Mutex;

use affluent_core::{Interval, TaskId, TaskKind, error_chain};
use affluent_scheduler::{Executor, RunCounts, RunFailure, TaskSpec, Trigger};
use affluent_sinks::Sinks;
use affluent_sources::IngestOptions;
use affluent_tables::{LoadReport, LoadScope, TableError, Warehouse};

use crate::Downstream;

/// Ingestion, loads and models as the scheduler's executor.
#[derive(Debug)]
pub struct Pipeline {
    warehouse: Warehouse,
    /// The streams, ML models, alerts and sinks run after a load or a model gives a table
    /// they read a new version.
    downstream: Downstream,
    /// Table writes of this process one at a time: the table locks are file locks that block a
    /// thread, and runs of one process share the runtime's few threads.
    writes: tokio::sync::Mutex<()>,
    /// The most requests one run of each source has made: what a live run needs of the quota.
    largest_run: Mutex<HashMap<String, u64>>,
    /// Per source: loads asked for and loads done, to batch them (see [`Pipeline::load`]).
    load_tickets: Mutex<HashMap<String, (u64, u64)>>,
}

impl Pipeline {
    /// The executor over a warehouse.
    pub fn new(warehouse: Warehouse) -> Self {
        Self {
            downstream: Downstream::new(warehouse.clone()),
            warehouse,
            writes: tokio::sync::Mutex::new(()),
            largest_run: Mutex::default(),
            load_tickets: Mutex::default(),
        }
    }

    /// Loads a source's pending landed entries, once for every run that landed while another
    /// load held the lock: a load takes every pending entry of the source, so a run whose
    /// entries were landed before a load started needs no load of its own. During a catch-up of
    /// many small intervals this turns one Delta commit per interval into one per batch.
    /// `Ok(None)`: another run's load covered this one.
    async fn load(
        &self,
        source: &str,
    ) -> Result<Option<(Vec<LoadReport>, Vec<String>)>, TableError> {
        let ticket = {
            let mut tickets = self.load_tickets.lock().unwrap_or_else(|e| e.into_inner());
            let entry = tickets.entry(source.to_string()).or_default();
            entry.0 += 1;
            entry.0
        };
        let writing = self.writes.lock().await;
        let covers = {
            let tickets = self.load_tickets.lock().unwrap_or_else(|e| e.into_inner());
            let (issued, done) = tickets.get(source).copied().unwrap_or_default();
            if done >= ticket {
                return Ok(None);
            }
            issued
        };
        let reports = self
            .warehouse
            .load_source(source, &LoadScope::Pending)
            .await?;
        {
            let mut tickets = self.load_tickets.lock().unwrap_or_else(|e| e.into_inner());
            let entry = tickets.entry(source.to_string()).or_default();
            entry.1 = entry.1.max(covers);
        }
        drop(writing);
        // Alerts (and their notifications) outside the write lock: the next loads need not
        // wait for an SMTP server.
        let changed: Vec<&str> = reports
            .iter()
            .filter(|r| r.commits > 0)
            .map(|r| r.table.as_str())
            .collect();
        let fired = if changed.is_empty() {
            Vec::new()
        } else {
            self.after_change(&changed).await
        };
        Ok(Some((reports, fired)))
    }

    /// What follows new versions of tables or models ([`Downstream::after_change`]), logged.
    /// Returns the messages of the alerts fired.
    async fn after_change(&self, changed: &[&str]) -> Vec<String> {
        let followed = self
            .downstream
            .after_change(changed, Some(&self.writes))
            .await;
        let fired: Vec<String> = followed
            .evaluations
            .iter()
            .flat_map(|e| e.fired.iter().map(|f| f.message.clone()))
            .collect();
        for r in followed.streams.iter().filter(|r| r.versions.is_some()) {
            tracing::info!(stream = r.stream, "{r}");
        }
        for s in followed.syncs.into_iter().flatten() {
            if s.rows_sent > 0 || s.rows_removed > 0 {
                tracing::info!(
                    sink = s.sink,
                    table = s.table,
                    version = s.version,
                    written = s.rows_written,
                    removed = s.rows_removed,
                    scope = s.scope,
                    "sink wrote a table"
                );
            }
        }
        fired
    }

    /// The project's sinks (for the periodic catch-up of `affluent run`).
    pub fn sinks(&self) -> &Sinks {
        self.downstream.sinks()
    }

    async fn ingest_and_load(
        &self,
        source: &str,
        interval: Interval,
    ) -> Result<RunCounts, RunFailure> {
        let summary = self
            .warehouse
            .connectors()
            .ingest(
                source,
                &IngestOptions {
                    interval: Some(interval),
                    observer: None,
                    recorder: None,
                },
            )
            .await
            .map_err(|e| RunFailure::from(error_chain(&e)))?;
        for w in &summary.warnings {
            tracing::warn!(source, "{w}");
        }
        {
            let mut largest = self.largest_run.lock().unwrap_or_else(|e| e.into_inner());
            let entry = largest.entry(source.to_string()).or_default();
            *entry = (*entry).max(summary.requests);
        }
        // Whatever was landed is loaded, even when some requests failed: the retry re-fetches
        // the interval, and loads are idempotent by key and by entry.
        let landed = summary.landed > 0;
        let reports = self
            .load(source)
            .await
            .map_err(|e| RunFailure {
                error: error_chain(&e),
                landed,
                fired: Vec::new(),
            })?
            .unwrap_or_default();
        let (reports, fired) = reports;
        let mut errors = summary.errors.clone();
        for r in &reports {
            errors.extend(r.errors.iter().map(|e| format!("table {}: {e}", r.table)));
        }
        if !errors.is_empty() {
            return Err(RunFailure {
                error: first_errors(&errors),
                landed,
                fired,
            });
        }
        Ok(RunCounts {
            records: summary.records as i64,
            loaded: reports.iter().map(|r| (r.loaded + r.merged) as i64).sum(),
            requests: summary.requests as i64,
            fired,
            replayed_from: summary.replayed_from.clone(),
        })
    }

    async fn transform(&self, model: &str, interval: Interval) -> Result<RunCounts, RunFailure> {
        let writing = self.writes.lock().await;
        let reports = self
            .warehouse
            .transform(&[model.to_string()], Some(interval))
            .await
            .map_err(|e| RunFailure::from(error_chain(&e)))?;
        drop(writing);
        let fired = self.after_change(&[model]).await;
        let rows: u64 = reports.iter().map(|r| r.rows).sum();
        Ok(RunCounts {
            records: rows as i64,
            loaded: rows as i64,
            requests: 0,
            fired,
            replayed_from: None,
        })
    }
}

/// The first three errors of a run, and how many more.
fn first_errors(errors: &[String]) -> String {
    let mut text = errors
        .iter()
        .take(3)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > 3 {
        text.push_str(&format!(" (and {} more)", errors.len() - 3));
    }
    text
}

impl Executor for Pipeline {
    async fn execute(
        &self,
        task: &TaskSpec,
        interval: Interval,
        _trigger: Trigger,
    ) -> Result<RunCounts, RunFailure> {
        match &task.id {
            TaskId {
                kind: TaskKind::Source,
                name,
            } => self.ingest_and_load(name, interval).await,
            TaskId {
                kind: TaskKind::Model,
                name,
            } => self.transform(name, interval).await,
        }
    }

    /// Catch-up stops short of a source's daily quota by what its largest run needed, so that
    /// the live run still has requests left.
    fn may_run_background(&self, task: &TaskSpec) -> bool {
        if !task.id.is_source() {
            return true;
        }
        let source = task.id.name.as_str();
        let Some((used, limit)) = self.warehouse.connectors().quota_today(source) else {
            return true;
        };
        let reserve = self
            .largest_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(source)
            .copied()
            .unwrap_or(1)
            .max(1);
        let keep = u64::from(limit).saturating_sub(u64::from(used)) > reserve;
        if !keep {
            tracing::debug!(
                source,
                used,
                limit,
                "catch-up paused: the rest of today's quota is kept for live runs"
            );
        }
        keep
    }
}
