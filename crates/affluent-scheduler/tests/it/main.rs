//! The scheduler against real state stores: SQLite files and the PostgreSQL server of the machine
//! (`AFFLUENT_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/test`; CI starts it).
//! The executor here stands in for ingestion and loads: it records what it was asked to run, so
//! that "exactly once" can be counted.

mod notify;
mod properties;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use affluent_core::progress::{Progress, Silent};
use affluent_core::{Interval, TaskId};
use affluent_scheduler::backfill::{self, Reprocess};
use affluent_scheduler::{
    Executor, IntervalState, Options, RunCounts, RunFailure, Schedule, Scheduler, Store, TaskSpec,
    Trigger,
};
use jiff::{Timestamp, ToSpan, tz::TimeZone};

/// Now, to the second: intervals of tests start on whole seconds.
pub fn now_s() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).expect("now")
}

/// The machine's PostgreSQL (`AFFLUENT_TEST_POSTGRES` for another).
pub fn postgres_url() -> String {
    std::env::var("AFFLUENT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
    let path = dir.path().join("state.db");
    Store::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("sqlite store")
}

async fn postgres_store() -> Store {
    Store::open(&postgres_url()).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required by these tests (CI starts it; set AFFLUENT_TEST_POSTGRES): {e}"
        )
    })
}

/// A task name no other test (or earlier run) uses, so tests share a PostgreSQL database.
fn unique(name: &str) -> TaskId {
    tid(&format!(
        "source:{name}-{}-{}",
        std::process::id(),
        Timestamp::now().as_nanosecond() % 1_000_000_000_000
    ))
}

/// A task from its text form.
fn tid(text: &str) -> TaskId {
    text.parse().expect("task id")
}

fn every(period: &str, start: Timestamp) -> Schedule {
    Schedule::every(period, Some(start), &TimeZone::UTC).expect("schedule")
}

fn task(name: &TaskId, schedule: Schedule, start: Timestamp) -> TaskSpec {
    TaskSpec {
        id: name.clone(),
        schedule: Some(schedule),
        triggered: false,
        start: Some(start),
        catchup: true,
        max_active: 2,
        downstream: Vec::new(),
    }
}

fn fast_options(until: Timestamp) -> Options {
    Options {
        concurrency: 4,
        lease: Duration::from_secs(5),
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        tick: Duration::from_millis(50),
        until: Some(until),
        ..Options::default()
    }
}

/// Records every execution; fails the first `failures` attempts of chosen intervals.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(TaskId, Interval, Trigger)>>,
    fail_first: Mutex<HashMap<(TaskId, Timestamp), u32>>,
    delay: Duration,
    hold_background: std::sync::atomic::AtomicBool,
    /// The alert messages each successful run reports.
    fired: Vec<String>,
    /// Tasks slower than `delay`, by how much more.
    slow: HashMap<TaskId, Duration>,
}

impl Recorder {
    fn count(&self, task: &TaskId) -> HashMap<Timestamp, usize> {
        let mut out = HashMap::new();
        for (t, i, _) in self.calls.lock().expect("lock").iter() {
            if t == task {
                *out.entry(i.start).or_insert(0) += 1;
            }
        }
        out
    }
}

impl Executor for Recorder {
    fn may_run_background(&self, _task: &TaskSpec) -> bool {
        !self
            .hold_background
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn execute(
        &self,
        task: &TaskSpec,
        interval: Interval,
        trigger: Trigger,
    ) -> Result<RunCounts, RunFailure> {
        tokio::time::sleep(self.delay + self.slow.get(&task.id).copied().unwrap_or_default()).await;
        self.calls
            .lock()
            .expect("lock")
            .push((task.id.clone(), interval, trigger));
        let mut fail = self.fail_first.lock().expect("lock");
        if let Some(left) = fail.get_mut(&(task.id.clone(), interval.start))
            && *left > 0
        {
            *left -= 1;
            return Err(RunFailure {
                error: format!("injected failure, {left} left"),
                landed: false,
                // What it loaded before failing was alerted on.
                fired: self.fired.clone(),
            });
        }
        Ok(RunCounts {
            records: 1,
            loaded: 1,
            requests: 1,
            // Sources' loads fire alerts here, models do not.
            fired: if task.id.is_source() {
                self.fired.clone()
            } else {
                Vec::new()
            },
            replayed_from: None,
        })
    }
}

async fn store_claims_are_exclusive(store: &Store) {
    let name = unique("claims");
    let start = Timestamp::from_second(1_700_000_000).expect("ts");
    let intervals = every("1h", start).intervals(start, start + 10.hours());
    assert_eq!(intervals.len(), 10);
    assert_eq!(store.ensure(&name, &intervals).await.expect("ensure"), 10);
    assert_eq!(store.ensure(&name, &intervals).await.expect("ensure"), 0);
    let later = Timestamp::now() + 60.seconds();
    let first = intervals[0].start;
    assert!(
        store
            .claim(&name, first, "a:1:1", later)
            .await
            .expect("claim")
    );
    assert!(
        !store
            .claim(&name, first, "b:2:2", later)
            .await
            .expect("claim")
    );
    // Only the holder can end it.
    assert!(
        !store
            .mark_done(&name, first, "b:2:2", 5)
            .await
            .expect("done")
    );
    assert!(
        store
            .mark_done(&name, first, "a:1:1", 5)
            .await
            .expect("done")
    );
    assert!(
        !store
            .claim(&name, first, "b:2:2", later)
            .await
            .expect("claim done")
    );
    // A failure waits for its retry time; an expired lease can be taken over.
    let second = intervals[1].start;
    assert!(
        store
            .claim(&name, second, "a:1:1", later)
            .await
            .expect("claim")
    );
    assert!(
        store
            .mark_failed(&name, second, "a:1:1", "boom", later)
            .await
            .expect("failed")
    );
    assert!(
        !store
            .claim(&name, second, "b:2:2", later)
            .await
            .expect("too early")
    );
    let third = intervals[2].start;
    let past = Timestamp::now() - 1.seconds();
    assert!(
        store
            .claim(&name, third, "a:1:1", past)
            .await
            .expect("claim")
    );
    assert!(
        store
            .claim(&name, third, "b:2:2", later)
            .await
            .expect("expired lease")
    );
    let holes = store.holes(&name).await.expect("holes");
    assert_eq!(holes.len(), 9);
    let failed = holes
        .iter()
        .find(|h| h.interval.start == second)
        .expect("row");
    assert_eq!(failed.state, IntervalState::Failed);
    assert_eq!(failed.last_error.as_deref(), Some("boom"));
    assert_eq!(failed.attempts, 1);
}

#[tokio::test]
async fn sqlite_store_claims_are_exclusive() {
    let dir = tempfile::tempdir().expect("tmp");
    store_claims_are_exclusive(&sqlite_store(&dir).await).await;
}

#[tokio::test]
async fn postgres_store_claims_are_exclusive() {
    store_claims_are_exclusive(&postgres_store().await).await;
}

#[tokio::test]
async fn catch_up_runs_every_missed_interval_once_with_retries() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite_store(&dir).await;
    let now = now_s();
    let start = now - 20.seconds();
    let schedule = every("1s", start);
    let name = tid("source:api");
    let expected = schedule.intervals(start, now);
    let recorder = Arc::new(Recorder::default());
    // Two intervals fail twice each before succeeding.
    recorder.fail_first.lock().expect("lock").extend([
        ((name.clone(), expected[3].start), 2),
        ((name.clone(), expected[7].start), 2),
    ]);
    let scheduler = Scheduler::new(
        store.clone(),
        vec![task(&name, schedule, start)],
        recorder.clone(),
        fast_options(now),
    );
    tokio::time::timeout(
        Duration::from_secs(60),
        scheduler.run(std::future::pending()),
    )
    .await
    .expect("scheduler finished in time")
    .expect("scheduler");
    let counts = recorder.count(&name);
    for i in &expected {
        let n = counts.get(&i.start).copied().unwrap_or(0);
        let want = if *i == expected[3] || *i == expected[7] {
            3
        } else {
            1
        };
        assert_eq!(n, want, "interval {i} ran {n} times");
    }
    assert_eq!(counts.len(), expected.len());
    assert!(store.holes(&name).await.expect("holes").is_empty());
    let failed = store.runs(Some(&name), true, 100).await.expect("runs");
    assert_eq!(failed.len(), 4);
    assert!(
        failed
            .iter()
            .all(|r| r.error.as_deref().is_some_and(|e| e.contains("injected")))
    );
}

#[tokio::test]
async fn two_schedulers_on_one_postgres_never_run_an_interval_twice() {
    let store_a = postgres_store().await;
    let store_b = postgres_store().await;
    let now = now_s();
    let start = now - 40.seconds();
    let schedule = every("1s", start);
    let name = unique("shared");
    let expected = schedule.intervals(start, now);
    // One recorder shared by both processes' executors: it sees every execution.
    let recorder = Arc::new(Recorder {
        delay: Duration::from_millis(20),
        ..Recorder::default()
    });
    let mut a_options = fast_options(now);
    a_options.worker = "host-a:1:1".into();
    let mut b_options = fast_options(now);
    b_options.worker = "host-b:2:2".into();
    let a = Scheduler::new(
        store_a,
        vec![task(&name, schedule.clone(), start)],
        recorder.clone(),
        a_options,
    );
    let b = Scheduler::new(
        store_b.clone(),
        vec![task(&name, schedule, start)],
        recorder.clone(),
        b_options,
    );
    let (ra, rb) = tokio::time::timeout(
        Duration::from_secs(90),
        futures_join(a.run(std::future::pending()), b.run(std::future::pending())),
    )
    .await
    .expect("both finished");
    ra.expect("a");
    rb.expect("b");
    let counts = recorder.count(&name);
    assert_eq!(counts.len(), expected.len());
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    let runs = store_b.runs(Some(&name), false, 1000).await.expect("runs");
    let workers: std::collections::HashSet<&str> = runs.iter().map(|r| r.worker.as_str()).collect();
    assert_eq!(workers.len(), 2, "both schedulers took part");
}

async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

#[tokio::test]
async fn a_backfill_resumes_where_it_stopped_and_reprocesses_on_request() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite_store(&dir).await;
    let start: Timestamp = "2024-03-30T00:00:00Z".parse().expect("ts");
    let end: Timestamp = "2024-04-01T00:00:00Z".parse().expect("ts");
    let tz = TimeZone::get("Europe/Paris").expect("tz");
    let schedule = Schedule::cron("0 * * * *", &tz).expect("cron");
    let name = tid("source:hourly");
    let spec = task(&name, schedule, start);
    let tasks = vec![spec.clone()];
    let recorder = Arc::new(Recorder {
        delay: Duration::from_millis(10),
        ..Recorder::default()
    });
    let options = fast_options(end);

    let plan = backfill::plan(&store, &spec, start, end, Reprocess::None, false, true)
        .await
        .expect("dry run");
    // 48 hours of UTC, hourly in Paris: the spring-forward night changes nothing in UTC.
    assert_eq!(plan.to_run.len(), 48);
    assert!(
        store.holes(&name).await.expect("holes").is_empty(),
        "a dry run writes nothing"
    );

    // Interrupted (the future dropped, as a killed process would stop) after 10 intervals.
    let plan = backfill::plan(&store, &spec, start, end, Reprocess::All, false, false)
        .await
        .expect("plan");
    let stop_after = 10;
    let (tx, rx) = tokio::sync::watch::channel(0usize);
    let observer = |p: &Progress| {
        if let Progress::Intervals(p) = p {
            let _ = tx.send(p.done);
        }
    };
    let run = backfill::run(
        &store,
        &tasks,
        recorder.clone(),
        &options,
        &plan,
        start,
        end,
        1,
        &observer,
    );
    let mut rx = rx;
    tokio::select! {
        _ = run => panic!("the backfill should have been interrupted"),
        _ = rx.wait_for(|done| *done >= stop_after) => {}
    }
    // Runs still in flight when the backfill stopped (at most `concurrency`) were not recorded
    // as done: like a killed process's, they run again. Everything else runs exactly once.
    let done_first: Vec<Timestamp> = store
        .intervals(&name, start, end)
        .await
        .expect("intervals")
        .into_iter()
        .filter(|r| r.state == IntervalState::Done)
        .map(|r| r.interval.start)
        .collect();
    assert!(done_first.len() >= stop_after);
    // Asking again resumes: the same request redoes only what is left.
    let again = backfill::plan(&store, &spec, start, end, Reprocess::All, false, false)
        .await
        .expect("plan again");
    assert!(again.resumed);
    assert_eq!(again.to_run.len(), 48 - done_first.len());
    assert!(again.to_run.iter().all(|i| !done_first.contains(&i.start)));
    let outcome = backfill::run(
        &store,
        &tasks,
        recorder.clone(),
        &options,
        &again,
        start,
        end,
        1,
        &Silent,
    )
    .await
    .expect("rest");
    assert_eq!(outcome.succeeded, 48 - done_first.len());
    let counts = recorder.count(&name);
    assert_eq!(counts.len(), 48);
    let twice: Vec<&Timestamp> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(t, _)| t)
        .collect();
    assert!(counts.values().all(|n| *n <= 2), "{counts:?}");
    assert!(twice.len() <= options.concurrency, "{twice:?}");
    assert!(
        twice.iter().all(|t| !done_first.contains(t)),
        "a done interval ran again"
    );
    // Finished: the same request now reprocesses everything again.
    let fresh = backfill::plan(&store, &spec, start, end, Reprocess::All, true, true)
        .await
        .expect("plan fresh");
    assert!(!fresh.resumed);
    assert_eq!(fresh.to_run.len(), 48);
    assert!(
        fresh.to_run[0].start > fresh.to_run[47].start,
        "newest first"
    );
    let none = backfill::plan(&store, &spec, start, end, Reprocess::None, false, true)
        .await
        .expect("plan none");
    assert!(none.to_run.is_empty(), "nothing left that never ran");
}

#[tokio::test]
async fn models_run_after_their_source_interval_is_loaded() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite_store(&dir).await;
    let now = now_s();
    let start = now - 5.seconds();
    let schedule = every("1s", start);
    let mut source = task(&tid("source:s"), schedule.clone(), start);
    source.downstream = vec![tid("model:m")];
    let model = TaskSpec {
        id: tid("model:m"),
        schedule: Some(schedule.clone()),
        triggered: true,
        start: None,
        catchup: true,
        max_active: 1,
        downstream: Vec::new(),
    };
    let recorder = Arc::new(Recorder::default());
    let scheduler = Scheduler::new(
        store.clone(),
        vec![source, model],
        recorder.clone(),
        fast_options(now),
    );
    tokio::time::timeout(
        Duration::from_secs(30),
        scheduler.run(std::future::pending()),
    )
    .await
    .expect("in time")
    .expect("run");
    let calls = recorder.calls.lock().expect("lock").clone();
    let expected = schedule.intervals(start, now);
    // Each source interval is followed by a model run covering it (one model run may cover
    // several intervals loaded while it was busy).
    for i in &expected {
        let s = calls
            .iter()
            .position(|(t, iv, _)| *t == tid("source:s") && iv == i)
            .expect("source ran");
        let m = calls
            .iter()
            .skip(s + 1)
            .find(|(t, iv, _)| *t == tid("model:m") && iv.start <= i.start && i.end <= iv.end);
        assert!(m.is_some(), "{i}: no model run after the source's");
    }
    assert!(
        store
            .holes(&tid("model:m"))
            .await
            .expect("holes")
            .is_empty()
    );
    assert!(
        calls
            .iter()
            .filter(|(t, _, _)| *t == tid("model:m"))
            .all(|(_, _, tr)| *tr == Trigger::Upstream)
    );
}

#[tokio::test]
async fn live_runs_go_on_while_catch_up_is_held_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite_store(&dir).await;
    let now = now_s();
    let start = now - 10.seconds();
    let schedule = every("1s", start);
    let name = tid("source:quota");
    let recorder = Arc::new(Recorder::default());
    recorder
        .hold_background
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut options = fast_options(now);
    options.until = None;
    let scheduler = Scheduler::new(
        store.clone(),
        vec![task(&name, schedule.clone(), start)],
        recorder.clone(),
        options,
    );
    // The executor keeps the quota for live runs (as affluent's does near a daily limit).
    scheduler
        .run(tokio::time::sleep(Duration::from_millis(3500)))
        .await
        .expect("run");
    let calls = recorder.calls.lock().expect("lock").clone();
    assert!(calls.len() >= 2, "live runs went on: {calls:?}");
    assert!(
        calls.iter().all(|(_, _, t)| *t == Trigger::Live),
        "{calls:?}"
    );
    assert!(
        calls.iter().all(|(_, i, _)| i.end >= now),
        "no catch-up: {calls:?}"
    );
    assert!(store.holes(&name).await.expect("holes").len() >= 9);
    // Released: the holes are filled, each interval once.
    recorder
        .hold_background
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let until = now_s();
    let scheduler = Scheduler::new(
        store.clone(),
        vec![task(&name, schedule.clone(), start)],
        recorder.clone(),
        fast_options(until),
    );
    tokio::time::timeout(
        Duration::from_secs(30),
        scheduler.run(std::future::pending()),
    )
    .await
    .expect("in time")
    .expect("run");
    let counts = recorder.count(&name);
    for i in schedule.intervals(start, until) {
        assert_eq!(counts.get(&i.start), Some(&1), "{i}");
    }
}
