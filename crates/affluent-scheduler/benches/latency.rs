//! Scheduling latency and overhead per run, on SQLite and PostgreSQL.
//!
//! - latency: tasks scheduled `every = "1s"`; for each live run, the delay between the end of its
//!   interval (when it is due) and the start of the executor;
//! - overhead: a catch-up of N intervals with an executor that does nothing: wall time per run is
//!   what the scheduler itself costs (claim, run record, done record, queries).
//!
//! `cargo bench -p affluent-scheduler --bench latency` (PostgreSQL from AFFLUENT_TEST_POSTGRES,
//! default postgres://postgres@127.0.0.1:5432/test; `--sqlite-only` to skip it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use affluent_core::Interval;
use affluent_scheduler::{
    Executor, Options, RunCounts, RunFailure, RunReport, Schedule, Scheduler, Store, TaskSpec,
    Trigger,
};
use jiff::{Timestamp, ToSpan, tz::TimeZone};

struct Noop;

impl Executor for Noop {
    async fn execute(
        &self,
        _task: &TaskSpec,
        _interval: Interval,
        _trigger: Trigger,
    ) -> Result<RunCounts, RunFailure> {
        Ok(RunCounts::default())
    }
}

fn task(name: String, start: Timestamp) -> TaskSpec {
    TaskSpec {
        id: name.parse().expect("task id"),
        schedule: Some(Schedule::every("1s", Some(start), &TimeZone::UTC).expect("schedule")),
        triggered: false,
        start: Some(start),
        catchup: true,
        max_active: 1,
        downstream: Vec::new(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

async fn collect(
    store: Store,
    tasks: Vec<TaskSpec>,
    options: Options,
) -> (Vec<RunReport>, Duration) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let scheduler = Scheduler::new(store, tasks, Arc::new(Noop), options).with_reports(tx);
    let started = Instant::now();
    scheduler
        .run(std::future::pending())
        .await
        .expect("scheduler");
    let elapsed = started.elapsed();
    let mut reports = Vec::new();
    while let Ok(r) = rx.try_recv() {
        reports.push(r);
    }
    (reports, elapsed)
}

async fn bench(label: &str, url: &str) {
    let store = Store::open(url).await.expect("store");
    let prefix = format!("bench-{}", Timestamp::now().as_millisecond());

    // Latency: 10 tasks, live every second for 15 s.
    let now = Timestamp::from_second(Timestamp::now().as_second()).expect("now");
    let tasks: Vec<TaskSpec> = (0..10)
        .map(|i| task(format!("source:{prefix}-live-{i}"), now))
        .collect();
    let options = Options {
        until: Some(now + 15.seconds()),
        tick: Duration::from_secs(1),
        concurrency: 16,
        ..Options::default()
    };
    let (reports, _) = collect(store.clone(), tasks, options).await;
    let mut delays: Vec<Duration> = reports
        .iter()
        .filter(|r| r.trigger == Trigger::Live)
        .map(|r| r.start_delay)
        .collect();
    delays.sort();
    println!(
        "{label}: latency due→start over {} live runs of 10 tasks: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        delays.len(),
        percentile(&delays, 0.5).as_secs_f64() * 1e3,
        percentile(&delays, 0.99).as_secs_f64() * 1e3,
        delays.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );

    // Overhead: one task catching up 1,000 one-second intervals, runs one at a time.
    let now = Timestamp::from_second(Timestamp::now().as_second()).expect("now");
    let start = now - 1000.seconds();
    let options = Options {
        until: Some(now),
        concurrency: 1,
        ..Options::default()
    };
    let (reports, elapsed) = collect(
        store.clone(),
        vec![task(format!("source:{prefix}-catchup"), start)],
        options,
    )
    .await;
    println!(
        "{label}: overhead: {} catch-up runs in {:.2} s = {:.2} ms per run (no-op work, one at a time)",
        reports.len(),
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e3 / reports.len().max(1) as f64
    );
}

fn main() {
    let sqlite_only = std::env::args().any(|a| a == "--sqlite-only");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tmp");
        bench(
            "sqlite",
            &format!("sqlite://{}", dir.path().join("state.db").display()),
        )
        .await;
        if !sqlite_only {
            let url = std::env::var("AFFLUENT_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            bench("postgres", &url).await;
        }
    });
}
