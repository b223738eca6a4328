//! Live refresh: a watcher notices new table commits, swaps the shared reader and tells every
//! open page which tables changed (server-sent events).

use std::sync::Arc;
use std::time::Duration;

use affluent_tables::{Reader, Warehouse};
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::{RwLock, broadcast};

use crate::WebError;

/// Tables that got new commits.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Change {
    /// The tables and models with a new version.
    pub tables: Vec<String>,
    /// When the change was seen, RFC 3339.
    pub at: String,
}

/// The current reader and the change feed.
#[derive(Clone)]
pub struct Live {
    warehouse: Warehouse,
    reader: Arc<RwLock<Arc<Reader>>>,
    changes: broadcast::Sender<Change>,
    updated: Arc<std::sync::Mutex<Timestamp>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Live {
    /// Opens a reader over the tables' current versions.
    pub async fn open(warehouse: Warehouse) -> Result<Self, WebError> {
        let reader = warehouse
            .reader()
            .await
            .map_err(WebError::query("opening the tables"))?;
        let (changes, _) = broadcast::channel(64);
        Ok(Self {
            warehouse,
            reader: Arc::new(RwLock::new(Arc::new(reader))),
            changes,
            updated: Arc::new(std::sync::Mutex::new(Timestamp::now())),
        })
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// The reader over the latest versions seen.
    pub async fn reader(&self) -> Arc<Reader> {
        self.reader.read().await.clone()
    }

    /// When the tables last changed (or the server started).
    pub fn updated(&self) -> Timestamp {
        *self.updated.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes to changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Checks once for new commits; on a change, swaps the reader and announces it.
    pub async fn check(&self) -> Result<Option<Change>, WebError> {
        let versions = self.warehouse.versions().await;
        let current = self.reader().await;
        let changed: Vec<String> = versions
            .iter()
            .filter(|(name, v)| current.versions().get(*name) != Some(*v))
            .map(|(name, _)| name.clone())
            .collect();
        if changed.is_empty() {
            return Ok(None);
        }
        let reader = self
            .warehouse
            .reader()
            .await
            .map_err(WebError::query("opening the tables"))?;
        *self.reader.write().await = Arc::new(reader);
        let now = Timestamp::now();
        *self.updated.lock().unwrap_or_else(|p| p.into_inner()) = now;
        let change = Change {
            tables: changed,
            at: now.to_string(),
        };
        // No subscriber is not an error.
        let _ = self.changes.send(change.clone());
        Ok(Some(change))
    }

    /// Checks every `period` until `stop` turns true (a check in progress finishes first).
    pub fn watch(
        &self,
        period: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let live = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tick.tick() => {}
                }
                if let Err(e) = live.check().await {
                    tracing::warn!("dashboard: cannot refresh tables: {e}");
                }
            }
        })
    }
}
