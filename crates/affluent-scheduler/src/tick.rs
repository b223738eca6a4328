//! The live runs of one schedule tick (their intervals end at the same instant) and the model
//! runs they trigger, gathered so that one summary goes out once every task due at that tick
//! has run (`[notify] on = ["tick"]`), rather than one message per task.

use std::collections::{BTreeMap, BTreeSet};

use affluent_core::{Interval, TaskId};
use jiff::Timestamp;

use crate::RunCounts;

/// One run of a tick.
#[derive(Debug, Clone)]
pub struct TickRun {
    /// The task.
    pub task: TaskId,
    /// Its interval.
    pub interval: Interval,
    /// Its counts (records landed, rows loaded, alerts fired), or its error.
    pub result: Result<RunCounts, String>,
}

/// A schedule tick: the instant its intervals end, the tasks due, and the runs done.
#[derive(Debug, Clone)]
pub struct Tick {
    /// Where the tick's intervals end (the cron's fire time).
    pub at: Timestamp,
    /// The tasks due at this tick that did not run before the next tick began.
    pub missing: Vec<TaskId>,
    /// The runs, in the order they finished.
    pub runs: Vec<TickRun>,
}

#[derive(Debug, Default)]
struct Open {
    expected: BTreeSet<TaskId>,
    runs: Vec<TickRun>,
}

/// The ticks whose runs are not all done.
#[derive(Debug, Default)]
pub(crate) struct Ticks {
    open: BTreeMap<Timestamp, Open>,
}

impl Ticks {
    /// A live run of `task` ending at `at` starts; `expected` are the tasks due at `at`. Returns
    /// the older ticks this task was still awaited in: they will not see it, and are done.
    pub(crate) fn start(
        &mut self,
        task: &TaskId,
        at: Timestamp,
        expected: Vec<TaskId>,
    ) -> Vec<Tick> {
        let tick = self.open.entry(at).or_default();
        tick.expected.extend(expected);
        tick.expected.insert(task.clone());
        let stale: Vec<Timestamp> = self
            .open
            .range(..at)
            .filter(|(_, t)| t.expected.contains(task) && !t.runs.iter().any(|r| &r.task == task))
            .map(|(at, _)| *at)
            .collect();
        stale.into_iter().filter_map(|at| self.close(at)).collect()
    }

    /// A run of a tick finished (a live run, or a model one triggered), and `then` are the tasks
    /// it triggered, which the tick now awaits too. Returns the tick once every task due at it
    /// has run.
    pub(crate) fn finish(
        &mut self,
        task: &TaskId,
        interval: Interval,
        result: Result<RunCounts, String>,
        then: Vec<TaskId>,
    ) -> Option<Tick> {
        let tick = self.open.get_mut(&interval.end)?;
        tick.expected.extend(then);
        tick.runs.push(TickRun {
            task: task.clone(),
            interval,
            result,
        });
        let done = tick
            .expected
            .iter()
            .all(|t| tick.runs.iter().any(|r| &r.task == t));
        if done { self.close(interval.end) } else { None }
    }

    fn close(&mut self, at: Timestamp) -> Option<Tick> {
        let open = self.open.remove(&at)?;
        let missing = open
            .expected
            .iter()
            .filter(|t| !open.runs.iter().any(|r| &r.task == *t))
            .cloned()
            .collect();
        Some(Tick {
            at,
            missing,
            runs: open.runs,
        })
    }
}
