//! Progress of long operations, reported as events to an [`Observer`]. Libraries emit them and
//! never draw: the CLI renders them as progress bars, the dashboard can relay them, tests
//! record them ([`Recorder`]) and assert on them.

use std::sync::Mutex;

use crate::{Interval, TaskId};

/// One step of a long operation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Progress {
    /// A source's run: request chains (or files) finished out of those planned.
    Requests(RequestProgress),
    /// A backfill: intervals of one task finished out of those to run.
    Intervals(IntervalProgress),
}

/// Where a source's run is.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestProgress {
    /// The source.
    pub source: String,
    /// Request chains finished (successfully or not).
    pub done: u64,
    /// Request chains planned.
    pub total: u64,
    /// Chains that ended in an error.
    pub failed: u64,
    /// Records in what was landed so far.
    pub records: u64,
    /// Responses landed so far.
    pub landed: u64,
    /// Responses identical to the previous ones, not landed again.
    pub unchanged: u64,
}

/// Where a backfill is, for one task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IntervalProgress {
    /// The task whose intervals run.
    pub task: TaskId,
    /// Intervals that succeeded.
    pub done: usize,
    /// Intervals that failed after every attempt.
    pub failed: usize,
    /// Intervals to run.
    pub total: usize,
    /// The latest run to finish (a model's group of intervals counts as one span) and its
    /// error, if it failed.
    pub last: Option<(Interval, Result<(), String>)>,
}

/// Receives progress events. Called on the task doing the work: keep it quick.
pub trait Observer: Send + Sync {
    /// One event.
    fn observe(&self, event: &Progress);
}

impl<F: Fn(&Progress) + Send + Sync> Observer for F {
    fn observe(&self, event: &Progress) {
        self(event)
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {
    fn observe(&self, _: &Progress) {}
}

/// An observer that keeps every event, in order.
#[derive(Debug, Default)]
pub struct Recorder(Mutex<Vec<Progress>>);

impl Recorder {
    /// The events so far.
    pub fn events(&self) -> Vec<Progress> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Observer for Recorder {
    fn observe(&self, event: &Progress) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.clone());
    }
}
