//! The live runs of one schedule tick (their intervals end at the same instant) and the model
//! runs they trigger, gathered so that one summary goes out once every task due at that tick
//! has run (`[notify] on = ["tick"]`), rather than one message per task.
//!
//! A tick awaits the tasks due at it, and each task a run of it triggers: a triggered task
//! counts once a run of it started after the trigger (so a model fed by two sources is
//! reported after the second). A task that never comes (run by another worker, by a process
//! before a restart, or its run folded into another) does not hold the tick for ever: with no
//! run of it in flight and nothing new for [`GRACE`], the tick closes, listing what did not run
//! here. Shutdown sends the ticks still open.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use affluent_core::{Interval, TaskId};
use jiff::Timestamp;

use crate::RunCounts;

/// How long a tick with nothing in flight waits for the tasks it still awaits.
pub(crate) const GRACE: Duration = Duration::from_secs(120);

/// One run of a tick.
#[derive(Debug, Clone)]
pub struct TickRun {
    /// The task.
    pub task: TaskId,
    /// Its interval.
    pub interval: Interval,
    /// Its counts (records fetched, rows loaded), or its error.
    pub result: Result<RunCounts, String>,
    /// The messages of the alerts it fired (a failed run too, for what it did load).
    pub fired: Vec<String>,
}

/// A schedule tick: the instant its intervals end, the runs done, and the tasks due at it
/// that this process did not run.
#[derive(Debug, Clone)]
pub struct Tick {
    /// Where the tick's intervals end (the cron's fire time).
    pub at: Timestamp,
    /// Tasks due at this tick (or triggered by its runs) that no run of this process covered:
    /// run by another worker or before a restart, or not run yet.
    pub missing: Vec<TaskId>,
    /// The runs, in the order they finished.
    pub runs: Vec<TickRun>,
}

#[derive(Debug)]
struct Open {
    /// Per task awaited, from when a run of it counts.
    awaited: BTreeMap<TaskId, Instant>,
    runs: Vec<(TickRun, Instant)>,
    in_flight: usize,
    last_activity: Instant,
}

/// The ticks whose runs are not all done.
#[derive(Debug, Default)]
pub(crate) struct Ticks {
    open: BTreeMap<Timestamp, Open>,
}

impl Ticks {
    /// A run of `task` covering intervals ending at `ends` started at `started`. A live run
    /// opens its tick (`expected`: the tasks due at it); any run is then in flight in the open
    /// ticks it covers.
    /// Returns the ends of the ticks it counts in (to hand back to [`Ticks::finish`]).
    pub(crate) fn started(
        &mut self,
        task: &TaskId,
        ends: &[Timestamp],
        started: Instant,
        live: Option<Vec<TaskId>>,
    ) -> Vec<Timestamp> {
        if let (Some(expected), Some(&at)) = (live, ends.last()) {
            let tick = self.open.entry(at).or_insert_with(|| Open {
                awaited: BTreeMap::new(),
                runs: Vec::new(),
                in_flight: 0,
                last_activity: started,
            });
            for t in expected.into_iter().chain([task.clone()]) {
                tick.awaited.entry(t).or_insert(started);
            }
        }
        let mut counted = Vec::new();
        for at in ends {
            if let Some(tick) = self.open.get_mut(at) {
                tick.in_flight += 1;
                tick.last_activity = started;
                counted.push(*at);
            }
        }
        counted
    }

    /// A run of `task` that started at `started` finished; `then` are the tasks it triggered
    /// (at `triggered_at`), which its ticks await too. Returns the ticks now complete.
    pub(crate) fn finish(
        &mut self,
        run: TickRun,
        ends: &[Timestamp],
        started: Instant,
        then: &[TaskId],
        triggered_at: Instant,
    ) -> Vec<Tick> {
        let mut done = Vec::new();
        for at in ends {
            let Some(tick) = self.open.get_mut(at) else {
                continue;
            };
            tick.in_flight = tick.in_flight.saturating_sub(1);
            tick.last_activity = Instant::now();
            tick.runs.push((run.clone(), started));
            for t in then {
                tick.awaited.insert(t.clone(), triggered_at);
            }
            let complete = tick
                .awaited
                .iter()
                .all(|(task, from)| tick.runs.iter().any(|(r, s)| &r.task == task && s >= from));
            if complete && tick.in_flight == 0 {
                done.extend(self.close(*at));
            }
        }
        done
    }

    /// The ticks with nothing in flight, nothing of them `waiting` to run (a task, for the
    /// tick's end), and nothing new for `grace`: they will not complete.
    pub(crate) fn expired(
        &mut self,
        now: Instant,
        grace: Duration,
        waiting: &dyn Fn(&TaskId, Timestamp) -> bool,
    ) -> Vec<Tick> {
        for (at, tick) in &mut self.open {
            if tick.awaited.keys().any(|t| waiting(t, *at)) {
                tick.last_activity = now;
            }
        }
        let stale: Vec<Timestamp> = self
            .open
            .iter()
            .filter(|(_, t)| t.in_flight == 0 && now.duration_since(t.last_activity) >= grace)
            .map(|(at, _)| *at)
            .collect();
        stale.into_iter().filter_map(|at| self.close(at)).collect()
    }

    /// Every tick still open (at shutdown).
    pub(crate) fn drain(&mut self) -> Vec<Tick> {
        let all: Vec<Timestamp> = self.open.keys().copied().collect();
        all.into_iter().filter_map(|at| self.close(at)).collect()
    }

    fn close(&mut self, at: Timestamp) -> Option<Tick> {
        let open = self.open.remove(&at)?;
        let ran: BTreeSet<&TaskId> = open.runs.iter().map(|(r, _)| &r.task).collect();
        let missing = open
            .awaited
            .keys()
            .filter(|t| !ran.contains(t))
            .cloned()
            .collect();
        Some(Tick {
            at,
            missing,
            runs: open.runs.into_iter().map(|(r, _)| r).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TaskId {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn run(task: &str, at: Timestamp) -> TickRun {
        TickRun {
            task: id(task),
            interval: Interval {
                start: at - jiff::SignedDuration::from_hours(3),
                end: at,
            },
            result: Ok(RunCounts::default()),
            fired: Vec::new(),
        }
    }

    #[test]
    fn a_model_fed_by_two_sources_is_awaited_after_the_second() {
        let at = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let (a, b, m) = ("source:a", "source:b", "model:m");
        let mut ticks = Ticks::default();
        let t0 = Instant::now();
        let due = vec![id(a), id(b)];
        ticks.started(&id(a), &[at], t0, Some(due.clone()));
        ticks.started(&id(b), &[at], t0, Some(due));
        // a is done and triggers m, which runs before b is done.
        let t1 = t0 + Duration::from_millis(1);
        assert!(ticks.finish(run(a, at), &[at], t0, &[id(m)], t1).is_empty());
        let t2 = t0 + Duration::from_millis(2);
        ticks.started(&id(m), &[at], t2, None);
        assert!(
            ticks.finish(run(m, at), &[at], t2, &[], t2).is_empty(),
            "b still runs"
        );
        // b is done and triggers m again: the run of m before it does not count.
        let t3 = t0 + Duration::from_millis(3);
        assert!(ticks.finish(run(b, at), &[at], t0, &[id(m)], t3).is_empty());
        let t4 = t0 + Duration::from_millis(4);
        ticks.started(&id(m), &[at], t4, None);
        let done = ticks.finish(run(m, at), &[at], t4, &[], t4);
        assert_eq!(done.len(), 1);
        let names: Vec<String> = done[0].runs.iter().map(|r| r.task.to_string()).collect();
        assert_eq!(names, [a, m, b, m]);
        assert!(done[0].missing.is_empty());
        assert!(ticks.drain().is_empty());
    }

    #[test]
    fn a_task_that_never_runs_here_holds_its_tick_only_for_the_grace() {
        let at = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut ticks = Ticks::default();
        let t0 = Instant::now();
        // b is due but another worker runs it.
        ticks.started(
            &id("source:a"),
            &[at],
            t0,
            Some(vec![id("source:a"), id("source:b")]),
        );
        assert!(
            ticks
                .finish(run("source:a", at), &[at], t0, &[], t0)
                .is_empty()
        );
        assert!(
            ticks
                .expired(t0 + GRACE / 2, GRACE, &|_, _| false)
                .is_empty(),
            "within the grace"
        );
        // While b is pending here, the tick waits for it.
        let pending = |t: &TaskId, _: Timestamp| t == &id("source:b");
        assert!(ticks.expired(t0 + GRACE * 2, GRACE, &pending).is_empty());
        let done = ticks.expired(t0 + GRACE * 4, GRACE, &|_, _| false);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].missing, vec![id("source:b")]);
        assert_eq!(done[0].runs.len(), 1);
        // A run in flight keeps its tick open however long it takes; shutdown sends it.
        ticks.started(&id("source:a"), &[at], t0, Some(vec![id("source:a")]));
        assert!(
            ticks
                .expired(t0 + GRACE * 10, GRACE, &|_, _| false)
                .is_empty()
        );
        let left = ticks.drain();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].missing, vec![id("source:a")]);
    }

    #[test]
    fn a_model_run_covering_two_ticks_counts_in_both() {
        let at1 = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let at2 = at1 + jiff::SignedDuration::from_hours(3);
        let mut ticks = Ticks::default();
        let t0 = Instant::now();
        for at in [at1, at2] {
            ticks.started(&id("source:a"), &[at], t0, Some(vec![id("source:a")]));
            assert!(
                ticks
                    .finish(run("source:a", at), &[at], t0, &[id("model:m")], t0)
                    .is_empty()
            );
        }
        let t1 = t0 + Duration::from_millis(1);
        ticks.started(&id("model:m"), &[at1, at2], t1, None);
        let done = ticks.finish(run("model:m", at2), &[at1, at2], t1, &[], t1);
        assert_eq!(done.iter().map(|t| t.at).collect::<Vec<_>>(), [at1, at2]);
    }
}
