//! The tasks of a project: its scheduled sources and the models downstream of them.

use std::collections::{BTreeMap, BTreeSet};

use affluent_config::Project;
use affluent_core::{TaskId, TaskKind};
use jiff::Timestamp;

use crate::{Schedule, SchedulerError};

/// One schedulable unit: a source or a model, with when it runs.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Which source or model.
    pub id: TaskId,
    /// The schedule that delimits its intervals (a model has its first upstream source's).
    pub schedule: Option<Schedule>,
    /// Runs when an upstream interval is loaded rather than by the clock (models).
    pub triggered: bool,
    /// The first interval to cover.
    pub start: Option<Timestamp>,
    /// Whether holes since `start` are filled.
    pub catchup: bool,
    /// Catch-up intervals in flight at once.
    pub max_active: usize,
    /// Tasks to run with the same interval once this one succeeds.
    pub downstream: Vec<TaskId>,
}

/// Finds the task a user named: `NAME` (a source first, then a model), `source:NAME` or
/// `model:NAME`; the error lists the scheduled tasks and suggests the closest.
pub fn find_task<'a>(tasks: &'a [TaskSpec], name: &str) -> Result<&'a TaskSpec, SchedulerError> {
    let candidates: Vec<TaskId> = match name.parse::<TaskId>() {
        Ok(id) => vec![id],
        Err(_) => TaskKind::ALL
            .into_iter()
            .map(|kind| TaskId {
                kind,
                name: name.to_string(),
            })
            .collect(),
    };
    if let Some(t) = candidates
        .iter()
        .find_map(|c| tasks.iter().find(|t| &t.id == c))
    {
        return Ok(t);
    }
    if tasks.is_empty() {
        return Err(SchedulerError::Invalid(
            "no scheduled task: give a source `schedule = \"0 * * * *\"` or `every = \"1h\"` (models downstream of it are scheduled with it)".into(),
        ));
    }
    let known: Vec<&str> = tasks.iter().map(|t| t.id.name.as_str()).collect();
    let hint = affluent_core::closest(name, &known)
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    Err(SchedulerError::Invalid(format!(
        "no scheduled source or model named `{name}`{hint} (scheduled: {})",
        known.join(", ")
    )))
}

/// The tasks of a project: every source with `schedule` or `every`, and every model that reads
/// (directly or through other models) a table of such a source. `model_deps` maps each model to
/// the tables and models its SQL reads.
pub fn task_specs(
    project: &Project,
    model_deps: &BTreeMap<String, BTreeSet<String>>,
    now: Timestamp,
) -> Result<Vec<TaskSpec>, SchedulerError> {
    let mut tasks = Vec::new();
    let mut by_source: BTreeMap<&str, Schedule> = BTreeMap::new();
    for (name, source) in &project.sources {
        let s = source.scheduling();
        let tz = project.source_timezone(name);
        let start = s
            .start_date
            .map(|d| d.resolve(&tz, now))
            .transpose()
            .map_err(|e| SchedulerError::Invalid(format!("source `{name}`: {e}")))?;
        // A period counts from an absolute start date; a relative one (`-8w`) moves with every
        // start of the process, so the period counts from the epoch (hours on the hour).
        let anchor = start.filter(|_| !s.start_date.is_some_and(|d| d.is_relative()));
        let schedule = match (s.schedule, s.every) {
            (Some(cron), _) => Schedule::from_cron(cron, &tz),
            (None, Some(every)) => Schedule::every_period(every.get(), anchor, &tz),
            (None, None) => continue,
        }
        .map_err(|e| SchedulerError::Invalid(format!("source `{name}`: {e}")))?;
        // A relative start date (`-8w`) is aligned to the schedule, so that restarts agree.
        let start = start.map(|t| schedule.at_or_before(t).unwrap_or(t));
        by_source.insert(name, schedule.clone());
        tasks.push(TaskSpec {
            id: TaskId::source(name.as_str()),
            schedule: Some(schedule),
            triggered: false,
            start,
            catchup: s.catchup,
            max_active: s.max_active,
            downstream: Vec::new(),
        });
    }
    // What each model reads, resolved to sources: tables name their source; models recurse.
    let table_source: BTreeMap<&str, &str> = project
        .tables
        .iter()
        .map(|(t, c)| (t.as_str(), c.source.as_str()))
        .collect();
    for (model, deps) in model_deps {
        let mut upstream_sources = BTreeSet::new();
        let mut stack: Vec<&str> = deps.iter().map(String::as_str).collect();
        let mut seen = BTreeSet::new();
        while let Some(d) = stack.pop() {
            if !seen.insert(d) {
                continue;
            }
            if let Some(src) = table_source.get(d) {
                upstream_sources.insert(*src);
            } else if let Some(more) = model_deps.get(d) {
                stack.extend(more.iter().map(String::as_str));
            }
        }
        let Some(schedule) = upstream_sources
            .iter()
            .find_map(|s| by_source.get(s).cloned())
        else {
            continue;
        };
        tasks.push(TaskSpec {
            id: TaskId::model(model.as_str()),
            schedule: Some(schedule),
            triggered: true,
            start: None,
            catchup: true,
            max_active: 1,
            downstream: Vec::new(),
        });
    }
    // Edges: a source triggers the models reading its tables; a model the models reading it.
    let ids: BTreeSet<TaskId> = tasks.iter().map(|t| t.id.clone()).collect();
    for task in &mut tasks {
        let produced: BTreeSet<String> = match task.id.kind {
            TaskKind::Source => project
                .tables
                .iter()
                .filter(|(_, c)| c.source == task.id.name)
                .map(|(t, _)| t.clone())
                .collect(),
            TaskKind::Model => BTreeSet::from([task.id.name.clone()]),
        };
        task.downstream = model_deps
            .iter()
            .filter(|(_, deps)| deps.iter().any(|d| produced.contains(d)))
            .map(|(m, _)| TaskId::model(m.as_str()))
            .filter(|m| ids.contains(m))
            .collect();
    }
    Ok(tasks)
}
