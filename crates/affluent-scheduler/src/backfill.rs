//! `affluent backfill`: run a task (and the models downstream of it) over a range of intervals,
//! with the same claims as `affluent run`, so both can run at once. An interrupted backfill
//! resumes where it stopped: the request is recorded, and asking again continues it instead of
//! resetting what it already redid.

use std::collections::HashMap;
use std::sync::Arc;

use affluent_core::{Interval, TaskId};
use futures::StreamExt;
use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::{Executor, IntervalState, Job, Options, SchedulerError, Store, TaskSpec, Trigger, add};

/// Which already-run intervals run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reprocess {
    /// Only intervals never run (or still pending).
    None,
    /// Also failed ones.
    Failed,
    /// Every interval of the range.
    All,
}

impl Reprocess {
    /// The option's text, as recorded with the backfill.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Failed => "failed",
            Self::All => "all",
        }
    }
}

/// What a backfill will do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The task asked for.
    pub task: TaskId,
    /// Every interval of the range, with its current state (`None`: never scheduled).
    pub intervals: Vec<(Interval, Option<IntervalState>)>,
    /// Those that will run, in order.
    pub to_run: Vec<Interval>,
    /// Whether an unfinished identical backfill is resumed.
    pub resumed: bool,
    /// The recorded request (task, range, reprocess).
    pub request: String,
}

/// Where a backfill is, for one task (reported to the caller's observer).
pub use affluent_core::progress::IntervalProgress as Progress;

/// How a backfill ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Intervals that ran and succeeded.
    pub succeeded: usize,
    /// Intervals that still failed after every attempt, with the last error.
    pub failed: Vec<(TaskId, Interval, String)>,
    /// Intervals another process was running (left to it).
    pub skipped: Vec<(TaskId, Interval)>,
}

fn request_id(task: &TaskId, from: Timestamp, to: Timestamp, reprocess: Reprocess) -> String {
    let digest = Sha256::digest(format!(
        "{task}|{}|{}|{}",
        from.as_millisecond(),
        to.as_millisecond(),
        reprocess.as_str()
    ));
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// What `backfill` would run; with `dry_run = false` the request is recorded and the intervals
/// set to run.
pub async fn plan(
    store: &Store,
    task: &TaskSpec,
    from: Timestamp,
    to: Timestamp,
    reprocess: Reprocess,
    newest_first: bool,
    dry_run: bool,
) -> Result<Plan, SchedulerError> {
    let Some(schedule) = &task.schedule else {
        return Err(SchedulerError::Invalid(format!(
            "{} has no schedule to cut {from}..{to} into intervals",
            task.id
        )));
    };
    let range = schedule.intervals(from, to);
    if range.is_empty() {
        return Err(SchedulerError::Invalid(format!(
            "no complete interval of {} ({}) lies within {from}..{to}",
            task.id,
            schedule.text()
        )));
    }
    let known: HashMap<Timestamp, IntervalState> = store
        .intervals(&task.id, from, to)
        .await?
        .into_iter()
        .map(|r| (r.interval.start, r.state))
        .collect();
    let id = request_id(&task.id, from, to, reprocess);
    let resumed = store.backfill_open(&id).await?;
    let runs = |state: Option<IntervalState>| -> bool {
        if resumed {
            return state != Some(IntervalState::Done);
        }
        match reprocess {
            Reprocess::None => matches!(state, None | Some(IntervalState::Pending)),
            Reprocess::Failed => state != Some(IntervalState::Done),
            Reprocess::All => true,
        }
    };
    let intervals: Vec<(Interval, Option<IntervalState>)> = range
        .iter()
        .map(|i| (*i, known.get(&i.start).copied()))
        .collect();
    let mut to_run: Vec<Interval> = intervals
        .iter()
        .filter(|(_, s)| runs(*s))
        .map(|(i, _)| *i)
        .collect();
    if newest_first {
        to_run.reverse();
    }
    if !dry_run {
        if !resumed {
            store
                .backfill_record(&id, &task.id, from, to, reprocess.as_str())
                .await?;
            let states: &[IntervalState] = match reprocess {
                Reprocess::None => &[],
                Reprocess::Failed => &[IntervalState::Failed, IntervalState::Landed],
                Reprocess::All => &[
                    IntervalState::Failed,
                    IntervalState::Landed,
                    IntervalState::Done,
                ],
            };
            store.reset(&task.id, &to_run, states).await?;
        } else {
            store.ensure(&task.id, &to_run).await?;
        }
    }
    Ok(Plan {
        task: task.id.clone(),
        intervals,
        to_run,
        resumed,
        request: id,
    })
}

/// Runs a plan, then the pending intervals of the downstream tasks in the same range. Each
/// interval gets `attempts` tries.
#[allow(clippy::too_many_arguments)]
pub async fn run<E: Executor>(
    store: &Store,
    tasks: &[TaskSpec],
    executor: Arc<E>,
    options: &Options,
    plan: &Plan,
    from: Timestamp,
    to: Timestamp,
    attempts: u32,
    observer: &dyn affluent_core::Observer,
) -> Result<Outcome, SchedulerError> {
    crate::reap_dead_owners(store).await?;
    let heartbeat = crate::heartbeat(store.clone(), options.worker.clone(), options.lease);
    let mut outcome = Outcome::default();
    let result = async {
        let Some(root) = tasks.iter().find(|t| t.id == plan.task) else {
            return Err(SchedulerError::Invalid(format!(
                "unknown task {}",
                plan.task
            )));
        };
        // The task asked for, then the models downstream, in order: theirs are the intervals
        // the runs before set pending.
        let mut queue: Vec<(&TaskSpec, Vec<Interval>)> = vec![(root, plan.to_run.clone())];
        let mut next: Vec<TaskId> = root.downstream.clone();
        let mut seen = std::collections::HashSet::new();
        while !queue.is_empty() {
            for (task, intervals) in std::mem::take(&mut queue) {
                let mut state = Progress {
                    task: task.id.clone(),
                    done: 0,
                    failed: 0,
                    total: intervals.len(),
                    last: None,
                };
                if !intervals.is_empty() {
                    observer.observe(&affluent_core::Progress::Intervals(state.clone()));
                }
                // A model recomputes from its inputs: one run covers all its intervals.
                let groups: Vec<Vec<Interval>> = if task.triggered && !intervals.is_empty() {
                    vec![intervals]
                } else {
                    intervals.into_iter().map(|i| vec![i]).collect()
                };
                // Up to `concurrency` intervals at once; progress in interval order.
                let executor = &executor;
                let runs = futures::stream::iter(groups.into_iter().map(|group| async move {
                    let mut own = Outcome::default();
                    let r = run_one(
                        store, tasks, executor, options, task, &group, attempts, &mut own,
                    )
                    .await;
                    (group, own, r)
                }))
                .buffered(options.concurrency.max(1));
                futures::pin_mut!(runs);
                while let Some((group, own, r)) = runs.next().await {
                    let r = r?;
                    outcome.succeeded += own.succeeded;
                    outcome.failed.extend(own.failed);
                    outcome.skipped.extend(own.skipped);
                    match &r {
                        Ok(()) => state.done += group.len(),
                        Err(_) => state.failed += group.len(),
                    }
                    let span = Interval {
                        start: group.iter().map(|i| i.start).min().unwrap_or_default(),
                        end: group.iter().map(|i| i.end).max().unwrap_or_default(),
                    };
                    state.last = Some((span, r));
                    observer.observe(&affluent_core::Progress::Intervals(state.clone()));
                }
            }
            for name in std::mem::take(&mut next) {
                let Some(task) = tasks.iter().find(|t| t.id == name) else {
                    continue;
                };
                if !seen.insert(name) {
                    continue;
                }
                let pending: Vec<Interval> = store
                    .intervals(&task.id, from, to)
                    .await?
                    .into_iter()
                    .filter(|r| r.state != IntervalState::Done)
                    .map(|r| r.interval)
                    .collect();
                next.extend(task.downstream.iter().cloned());
                queue.push((task, pending));
            }
        }
        Ok(())
    }
    .await;
    drop(heartbeat);
    store.release_all(&options.worker).await?;
    result?;
    if outcome.failed.is_empty() && outcome.skipped.is_empty() {
        store.backfill_finished(&plan.request).await?;
    }
    Ok(outcome)
}

#[allow(clippy::too_many_arguments)]
async fn run_one<E: Executor>(
    store: &Store,
    tasks: &[TaskSpec],
    executor: &Arc<E>,
    options: &Options,
    task: &TaskSpec,
    members: &[Interval],
    attempts: u32,
    outcome: &mut Outcome,
) -> Result<Result<(), String>, SchedulerError> {
    let Some(&interval) = members.first() else {
        return Ok(Ok(()));
    };
    let mut last_error = String::new();
    for attempt in 1..=attempts.max(1) {
        // Wait out the backoff of an earlier failure, then claim.
        let row = store
            .intervals(&task.id, interval.start, interval.end)
            .await?
            .into_iter()
            .find(|r| r.interval.start == interval.start);
        if let Some(row) = &row {
            if row.state == IntervalState::Done && attempt > 1 {
                return Ok(Ok(()));
            }
            let wait = row.next_attempt.duration_since(Timestamp::now());
            if let Ok(wait) = std::time::Duration::try_from(wait) {
                tokio::time::sleep(wait).await;
            }
        }
        let until = add(Timestamp::now(), options.lease);
        let mut claimed = Vec::new();
        for m in members {
            if store
                .claim(&task.id, m.start, &options.worker, until)
                .await?
            {
                claimed.push(*m);
            }
        }
        if claimed.is_empty() {
            let row = store
                .intervals(&task.id, interval.start, interval.end)
                .await?
                .into_iter()
                .find(|r| r.interval.start == interval.start);
            if row.as_ref().is_some_and(|r| r.state == IntervalState::Done) {
                return Ok(Ok(()));
            }
            outcome.skipped.push((task.id.clone(), interval));
            return Ok(Err("another process is running it".into()));
        }
        let job = Job {
            store: store.clone(),
            executor: executor.clone(),
            options: options.clone(),
            downstream: task
                .downstream
                .iter()
                .filter(|d| tasks.iter().any(|t| &t.id == *d))
                .cloned()
                .collect(),
            task: task.clone(),
            interval: Interval {
                start: claimed
                    .iter()
                    .map(|i| i.start)
                    .min()
                    .unwrap_or(interval.start),
                end: claimed.iter().map(|i| i.end).max().unwrap_or(interval.end),
            },
            members: claimed.clone(),
            attempts: row.map_or(1, |r| r.attempts + 1),
            trigger: Trigger::Backfill,
            reports: None,
        };
        match job.run().await.0 {
            Ok(_) => {
                outcome.succeeded += claimed.len();
                return Ok(Ok(()));
            }
            Err(e) => last_error = e,
        }
    }
    outcome
        .failed
        .push((task.id.clone(), interval, last_error.clone()));
    Ok(Err(last_error))
}
