//! Coverage: where every interval of a task stands over a range of time, as runs of
//! consecutive intervals in the same state (a year of hourly intervals is a handful of
//! segments). `affluent status --coverage` prints it; the dashboard's pipeline page draws it.
//!
//! An interval is `done`, `landed` (fetched, not loaded), `pending` (due, not run yet),
//! `running` (a live lease holds it), `failed` (its last attempt), or `missing`: a task that
//! covers since a start date and catches up has a hole for every interval that ended and was
//! never recorded (the scheduler was not running), as [`crate::status`] counts them. A hole is
//! an interval landed, pending, failed or missing; one a worker holds is `running`, not a hole
//! (`status` counts it among its holes until it is done). Recorded intervals are those that
//! overlap the range, so the first and last segments may reach past it.

use std::collections::{BTreeMap, HashMap};

use affluent_core::{Interval, TaskId};
use affluent_scheduler::TaskSpec;
use affluent_state::{IntervalRow, IntervalState, Store};
use jiff::Timestamp;

use crate::PipelineError;

/// The most intervals one coverage enumerates: a range wider than that at the task's schedule
/// is refused (ask for a narrower one).
pub const MAX_COVERAGE_INTERVALS: usize = 200_000;

/// Where an interval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverageState {
    /// Loaded.
    Done,
    /// Landed, not loaded yet (its load or its models failed, or are to come).
    Landed,
    /// Due, not run yet (or to be retried).
    Pending,
    /// A worker holds it now.
    Running,
    /// Its last attempt failed.
    Failed,
    /// Ended, never recorded: a hole since the task's start date.
    Missing,
}

impl CoverageState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Landed => "landed",
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Failed => "failed",
            Self::Missing => "missing",
        }
    }

    /// Whether an interval in this state is a hole (ended and not done).
    pub fn is_hole(self) -> bool {
        matches!(
            self,
            Self::Landed | Self::Pending | Self::Failed | Self::Missing
        )
    }
}

/// Consecutive intervals in the same state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Segment {
    /// Start of the first interval.
    pub start: Timestamp,
    /// End of the last one.
    pub end: Timestamp,
    /// Their state.
    pub state: CoverageState,
    /// How many intervals.
    pub intervals: usize,
    /// The error of the latest failed one (secrets scrubbed when it was recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One task's coverage of a range.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Coverage {
    /// The task.
    pub task: TaskId,
    /// Its schedule as written (`after inputs` for a model, `-` when unscheduled).
    pub schedule: String,
    /// The first interval it covers, when it has a start date.
    pub start: Option<Timestamp>,
    /// The range asked for.
    pub from: Timestamp,
    /// Its end (excluded).
    pub to: Timestamp,
    /// Intervals per state over the range.
    pub counts: BTreeMap<CoverageState, usize>,
    /// The intervals of the range, oldest first, in runs of one state; a gap between two
    /// segments is time no interval of the task covers.
    pub segments: Vec<Segment>,
}

impl Coverage {
    /// Holes of the range (intervals that ended and are not done).
    pub fn holes(&self) -> usize {
        self.counts
            .iter()
            .filter(|(s, _)| s.is_hole())
            .map(|(_, n)| n)
            .sum()
    }
}

/// Where a coverage starts when not told: the task's start date, else 30 days before `now`.
pub fn default_from(task: &TaskSpec, now: Timestamp) -> Timestamp {
    task.start.unwrap_or_else(|| {
        now.checked_sub(jiff::SignedDuration::from_hours(24 * 30))
            .unwrap_or(Timestamp::MIN)
    })
}

/// The coverage of `task` over `[from, to)` at `now`.
pub async fn coverage(
    store: &Store,
    task: &TaskSpec,
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
) -> Result<Coverage, PipelineError> {
    if to <= from {
        return Err(PipelineError::Invalid(format!(
            "coverage of {}: the range's end {to} must be after its start {from}",
            task.id
        )));
    }
    let recorded = store.intervals(&task.id, from, to).await?;
    let mut states: Vec<(Interval, CoverageState, Option<String>)> = recorded
        .iter()
        .map(|r| (r.interval, state_of(r, now), r.last_error.clone()))
        .collect();
    // Intervals never recorded since the start date, for a task that fills its holes.
    if let (Some(schedule), Some(start), false, true) =
        (&task.schedule, task.start, task.triggered, task.catchup)
    {
        let (a, b) = (from.max(start), to.min(now));
        if a < b {
            let expected = schedule.intervals(a, b);
            if expected.len() > MAX_COVERAGE_INTERVALS {
                return Err(PipelineError::Invalid(format!(
                    "coverage of {}: more than {MAX_COVERAGE_INTERVALS} intervals of `{}` from {from} to {to}; ask for a narrower range",
                    task.id,
                    schedule.text()
                )));
            }
            let known: HashMap<Timestamp, ()> =
                recorded.iter().map(|r| (r.interval.start, ())).collect();
            states.extend(
                expected
                    .into_iter()
                    .filter(|i| !known.contains_key(&i.start))
                    .map(|i| (i, CoverageState::Missing, None)),
            );
        }
    }
    states.sort_by_key(|(i, _, _)| (i.start, i.end));
    let mut counts = BTreeMap::new();
    let mut segments: Vec<Segment> = Vec::new();
    for (interval, state, error) in states {
        *counts.entry(state).or_default() += 1;
        let error = error.filter(|_| state == CoverageState::Failed);
        match segments.last_mut() {
            Some(s) if s.state == state && s.end == interval.start => {
                s.end = interval.end;
                s.intervals += 1;
                if error.is_some() {
                    s.error = error;
                }
            }
            _ => segments.push(Segment {
                start: interval.start,
                end: interval.end,
                state,
                intervals: 1,
                error,
            }),
        }
    }
    Ok(Coverage {
        task: task.id.clone(),
        schedule: crate::status::schedule_text(task),
        start: task.start,
        from,
        to,
        counts,
        segments,
    })
}

/// The state of a recorded interval at `now`.
fn state_of(row: &IntervalRow, now: Timestamp) -> CoverageState {
    let leased = row.lease_owner.is_some() && row.lease_until.is_some_and(|u| u > now);
    match row.state {
        _ if leased => CoverageState::Running,
        IntervalState::Done => CoverageState::Done,
        IntervalState::Landed => CoverageState::Landed,
        IntervalState::Failed => CoverageState::Failed,
        IntervalState::Pending => CoverageState::Pending,
    }
}

#[cfg(test)]
mod tests {
    use affluent_scheduler::Schedule;
    use jiff::tz::TimeZone;

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn task(start: &str, catchup: bool) -> TaskSpec {
        TaskSpec {
            id: TaskId::source("api"),
            schedule: Some(Schedule::every("1h", None, &TimeZone::UTC).unwrap()),
            triggered: false,
            start: Some(at(start)),
            catchup,
            max_active: 1,
            downstream: vec![],
        }
    }

    fn hour(h: i64) -> Interval {
        let start = at("2024-01-01T00:00:00Z") + jiff::SignedDuration::from_hours(h);
        Interval {
            start,
            end: start + jiff::SignedDuration::from_hours(1),
        }
    }

    #[tokio::test]
    async fn intervals_come_in_runs_of_one_state_with_the_holes_since_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
            .await
            .unwrap();
        let t = task("2024-01-01T00:00:00Z", true);
        // Hours 0-2 done, 3 failed, 4 landed, 5 leased, 6-7 pending, 8-9 never recorded.
        store
            .ensure(&t.id, &(0..8).map(hour).collect::<Vec<_>>())
            .await
            .unwrap();
        let far = at("2030-01-01T00:00:00Z");
        for h in 0..6 {
            assert!(store.claim(&t.id, hour(h).start, "w", far).await.unwrap());
        }
        for h in 0..3 {
            store.mark_done(&t.id, hour(h).start, "w", 1).await.unwrap();
        }
        store
            .mark_failed(&t.id, hour(3).start, "w", "HTTP 500: broke", far)
            .await
            .unwrap();
        store.mark_landed(&t.id, hour(4).start, "w").await.unwrap();
        let now = hour(10).start;
        let c = coverage(&store, &t, hour(0).start, now, now).await.unwrap();
        let got: Vec<(CoverageState, usize, i64)> = c
            .segments
            .iter()
            .map(|s| {
                (
                    s.state,
                    s.intervals,
                    s.start.duration_since(hour(0).start).as_hours(),
                )
            })
            .collect();
        use CoverageState::*;
        // Hour 4 stays leased by `w` after landing (its run would load it next).
        assert_eq!(
            got,
            vec![
                (Done, 3, 0),
                (Failed, 1, 3),
                (Running, 2, 4),
                (Pending, 2, 6),
                (Missing, 2, 8)
            ]
        );
        assert_eq!(c.segments[1].error.as_deref(), Some("HTTP 500: broke"));
        assert_eq!(c.holes(), 5);
        // A range inside: only its intervals.
        let c = coverage(&store, &t, hour(2).start, hour(4).start, now)
            .await
            .unwrap();
        assert_eq!(c.counts, BTreeMap::from([(Done, 1), (Failed, 1)]));
        // A task that does not catch up has no missing intervals; a reversed range is refused.
        let c = coverage(
            &store,
            &task("2024-01-01T00:00:00Z", false),
            hour(0).start,
            now,
            now,
        )
        .await
        .unwrap();
        assert!(!c.counts.contains_key(&Missing), "{:?}", c.counts);
        assert!(coverage(&store, &t, now, hour(0).start, now).await.is_err());
        // Too many intervals to enumerate: a narrower range is asked for.
        let old = task("1990-01-01T00:00:00Z", true);
        let e = coverage(&store, &old, at("1990-01-01T00:00:00Z"), now, now)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("narrower range"), "{e}");
    }
}
