//! Per task: the last success, the next run, the holes, the quota used today and the last
//! error. `affluent status` prints it; so does the dashboard's pipeline page.

use std::collections::HashSet;

use affluent_core::{Interval, TaskId};
use affluent_scheduler::TaskSpec;
use affluent_sources::Connectors;
use affluent_state::{IntervalState, Store};
use jiff::Timestamp;

use crate::PipelineError;

/// One task's status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskStatus {
    /// The task.
    pub task: TaskId,
    /// When it runs: the schedule as written, `after inputs` for a model, `-` when unscheduled.
    pub schedule: String,
    /// When its last successful run finished.
    pub last_success: Option<String>,
    /// The interval of that run.
    pub last_success_interval: Option<String>,
    /// Its next live run (none for a model: it follows its inputs).
    pub next_run: Option<String>,
    /// Intervals that ended and are not done, including never-recorded ones since the start.
    pub holes: usize,
    /// Intervals whose last attempt failed.
    pub failed: usize,
    /// The oldest hole.
    pub first_hole: Option<String>,
    /// `used/limit` of today's daily quota, for a source that has one.
    pub quota_today: Option<String>,
    /// The error of the last failed run, unless a success came after it.
    pub last_error: Option<String>,
}

/// The holes of a task by `now`: recorded intervals not done, and, for a task covering since a
/// start date, intervals never recorded at all (the scheduler was not running).
pub async fn holes(
    store: &Store,
    task: &TaskSpec,
    now: Timestamp,
) -> Result<Vec<Interval>, PipelineError> {
    let recorded = store.intervals(&task.id, Timestamp::MIN, now).await?;
    let mut holes: Vec<Interval> = recorded
        .iter()
        .filter(|r| r.state != IntervalState::Done && r.interval.end <= now)
        .map(|r| r.interval)
        .collect();
    if let (Some(schedule), Some(start), false, true) =
        (&task.schedule, task.start, task.triggered, task.catchup)
    {
        let known: HashSet<Timestamp> = recorded.iter().map(|r| r.interval.start).collect();
        holes.extend(
            schedule
                .intervals(start, now)
                .into_iter()
                .filter(|i| !known.contains(&i.start)),
        );
    }
    holes.sort_by_key(|i| i.start);
    Ok(holes)
}

/// When a task runs: its schedule as written, `after inputs` for a model, `-` when unscheduled.
pub fn schedule_text(task: &TaskSpec) -> String {
    match (&task.schedule, task.triggered) {
        (_, true) => "after inputs".to_string(),
        (Some(s), false) => s.text().to_string(),
        (None, false) => "-".to_string(),
    }
}

/// The status of every task at `now`.
pub async fn status(
    store: &Store,
    tasks: &[TaskSpec],
    connectors: &Connectors,
    now: Timestamp,
) -> Result<Vec<TaskStatus>, PipelineError> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        let schedule = schedule_text(t);
        let holes = holes(store, t, now).await?;
        let failed = store
            .intervals(&t.id, Timestamp::MIN, now)
            .await?
            .iter()
            .filter(|r| r.state == IntervalState::Failed)
            .count();
        let success = store.last_success(&t.id).await?;
        let last_failed = store.runs(Some(&t.id), true, 1).await?.pop();
        let last_error = match (&last_failed, &success) {
            (Some(f), Some(s)) if f.started < s.started => None,
            (Some(f), _) => f.error.clone(),
            _ => None,
        };
        let next_run = if t.triggered {
            None
        } else {
            t.schedule
                .as_ref()
                .and_then(|s| s.next_after(now))
                .map(|n| n.to_string())
        };
        let quota_today =
            t.id.is_source()
                .then(|| connectors.quota_today_recorded(&t.id.name))
                .flatten()
                .map(|(used, limit)| format!("{used}/{limit}"));
        out.push(TaskStatus {
            task: t.id.clone(),
            schedule,
            last_success: success
                .as_ref()
                .and_then(|s| s.finished)
                .map(|f| f.to_string()),
            last_success_interval: success.as_ref().map(|s| s.interval.to_string()),
            next_run,
            holes: holes.len(),
            failed,
            first_hole: holes.first().map(|i| i.to_string()),
            quota_today,
            last_error,
        });
    }
    Ok(out)
}
