//! What follows new versions of tables, in one order for the scheduler's executor and the
//! command line's one-shot commands: the streams reading them run, the ML models reading them
//! (or the streams' windows) are trained, the SQL models reading the new predictions run, the
//! alerts reading any of these are evaluated and sent, then the sinks writing any of them are
//! brought up to date.
//! Failures are logged or returned in the reports: the data that changed stays loaded whatever
//! becomes of them.

use affluent_alerts::{Alerts, Evaluation};
use affluent_config::schema::StreamConfig;
use affluent_ml::{Ml, TrainReport};
use affluent_sinks::{SinkError, Sinks, TableSync};
use affluent_tables::{ModelReport, Warehouse};

use crate::{StreamReport, Streams};

/// The engines downstream of the tables.
#[derive(Debug)]
pub struct Downstream {
    warehouse: Warehouse,
    streams: Streams,
    ml: Ml,
    alerts: Alerts,
    sinks: Sinks,
}

/// What one pass of [`Downstream::after_change`] did.
#[derive(Debug, Default)]
pub struct Followed {
    /// The streams that read something new (or failed: logged).
    pub streams: Vec<StreamReport>,
    /// The ML models trained (or predicted with their last version).
    pub trained: Vec<TrainReport>,
    /// The SQL models that read the new predictions, run again.
    pub models: Vec<ModelReport>,
    /// The alerts evaluated.
    pub evaluations: Vec<Evaluation>,
    /// The tables the sinks wrote, or why not.
    pub syncs: Vec<Result<TableSync, SinkError>>,
}

impl Downstream {
    /// The engines of the warehouse's project.
    pub fn new(warehouse: Warehouse) -> Self {
        Self {
            warehouse: warehouse.clone(),
            streams: Streams::new(warehouse.clone()),
            ml: Ml::new(warehouse.clone()),
            alerts: Alerts::new(warehouse.clone()),
            sinks: Sinks::new(warehouse),
        }
    }

    /// The project's sinks.
    pub fn sinks(&self) -> &Sinks {
        &self.sinks
    }

    /// Runs what follows new versions of `changed`. `writes`, when given, is held while the
    /// streams write their windows (a process's one-write-at-a-time lock).
    pub async fn after_change(
        &self,
        changed: &[&str],
        writes: Option<&tokio::sync::Mutex<()>>,
    ) -> Followed {
        let mut out = Followed::default();
        if changed.is_empty() {
            return out;
        }
        // Streams first: their windows are tables the models, alerts and sinks may read.
        out.streams = {
            let _writing = match writes {
                Some(lock) => Some(lock.lock().await),
                None => None,
            };
            self.streams.after_change(changed).await
        };
        let mut windows: Vec<String> = Vec::new();
        for r in out.streams.iter().filter(|r| r.versions.is_some()) {
            windows.push(r.stream.clone());
            windows.push(StreamConfig::open_table(&r.stream));
        }
        let mut changed: Vec<&str> = changed.to_vec();
        changed.extend(windows.iter().map(String::as_str));
        out.trained = self.ml.after_change(&changed).await;
        // New predictions: those of the models trained here, and of those a command trained
        // before calling this (`affluent ml train`).
        let ml_models = &self.warehouse.project().ml;
        let mut predicted: Vec<&str> = out.trained.iter().map(|r| r.model.as_str()).collect();
        for c in changed.iter().copied() {
            if ml_models.contains_key(c) && !predicted.contains(&c) {
                predicted.push(c);
            }
        }
        if !predicted.is_empty() {
            let after = match self.warehouse.models_after(&predicted) {
                Ok(after) => after,
                Err(e) => {
                    tracing::warn!(
                        "the models reading {}: {}",
                        predicted.join(", "),
                        affluent_core::error_chain(&e)
                    );
                    Vec::new()
                }
            };
            if !after.is_empty() {
                match self.warehouse.transform(&after, None).await {
                    Ok(reports) => out.models = reports,
                    Err(e) => tracing::warn!(
                        "the models reading the predictions of {}: {}",
                        predicted.join(", "),
                        affluent_core::error_chain(&e)
                    ),
                }
            }
        }
        let mut all = changed.clone();
        all.extend(out.trained.iter().map(|r| r.model.as_str()));
        all.extend(
            out.models
                .iter()
                .filter(|r| r.version.is_some())
                .map(|r| r.model.as_str()),
        );
        out.evaluations = self.alerts.after_change(&all).await;
        if self.sinks.is_empty() {
            return out;
        }
        if out.evaluations.iter().any(|e| !e.fired.is_empty()) {
            all.push(affluent_tables::system::ALERT_FIRINGS);
        }
        if !out.trained.is_empty() {
            all.push(affluent_tables::system::ML_MODELS);
        }
        out.syncs = self.sinks.after_change(&all).await;
        out
    }
}
