//! The scheduler: which data intervals each task must cover, which are covered, and running the
//! missing ones, live first, exactly once across restarts and across processes.
//!
//! - [`schedule`]: cron and `every` schedules in a time zone, and the intervals they delimit;
//! - the state store ([`affluent_state`]: coverage, leases, run history) is where it records
//!   what is covered and who runs it;
//! - [`Scheduler`]: the long-running loop of `affluent run`, generic over an [`Executor`] that
//!   does the work of one task for one interval (the binary plugs ingestion, loads and models in);
//! - [`backfill`]: a bounded run over a range of intervals, resumable;
//! - [`notify`]: email (SMTP) and webhook notifications on failure and recovery.
//!
//! Knows nothing of HTTP sources, tables or SQL: a task is a [`TaskId`] and a schedule.

pub mod backfill;
pub mod notify;
pub mod schedule;
mod tasks;
mod tick;

use std::collections::{HashMap, HashSet};

use futures::FutureExt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use affluent_core::{Interval, TaskId};
use jiff::{SignedDuration, Timestamp};
use tokio::task::JoinSet;

pub use affluent_state::{IntervalRow, IntervalState, RunCounts, RunRow, StateError, Store};
pub use notify::{Event, Notifier};
pub use schedule::Schedule;
pub use tasks::{TaskSpec, find_task, task_specs};
pub use tick::{Tick, TickRun};

/// Errors of the scheduler and its store.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The state store failed or refused.
    #[error("state store")]
    Store(#[from] StateError),
    /// A task or schedule is wrong.
    #[error("{0}")]
    Invalid(String),
}

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The most recent interval of a scheduled task, due now.
    Live,
    /// An older interval that was never covered (downtime, a new `start_date`).
    Catchup,
    /// An interval whose earlier attempt failed.
    Retry,
    /// Asked for by `affluent backfill`.
    Backfill,
    /// A model whose input interval was just loaded.
    Upstream,
}

impl Trigger {
    /// The trigger's text in run records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Catchup => "catchup",
            Self::Retry => "retry",
            Self::Backfill => "backfill",
            Self::Upstream => "upstream",
        }
    }
}

/// A failed run: what went wrong, and whether its data was landed before the failure.
#[derive(Debug, Clone)]
pub struct RunFailure {
    /// What went wrong (secrets scrubbed).
    pub error: String,
    /// Whether the interval's data was landed before the failure (it stays `landed`).
    pub landed: bool,
    /// The messages of the alerts the run fired before it failed (what it did load was
    /// evaluated): the tick's summary lists them too.
    pub fired: Vec<String>,
}

impl From<String> for RunFailure {
    fn from(error: String) -> Self {
        Self {
            error,
            landed: false,
            fired: Vec::new(),
        }
    }
}

/// Does the work of one task for one interval. Must be idempotent: an interval may run again
/// after a crash, and running it twice must leave the same tables.
pub trait Executor: Send + Sync + 'static {
    /// Runs `task` for `interval`.
    fn execute(
        &self,
        task: &TaskSpec,
        interval: Interval,
        trigger: Trigger,
    ) -> impl Future<Output = Result<RunCounts, RunFailure>> + Send;

    /// Whether a catch-up, retry or upstream-triggered run of `task` may start now. The live run
    /// is never held back: an executor says no here to keep what the live run needs (a daily
    /// quota's last requests).
    fn may_run_background(&self, _task: &TaskSpec) -> bool {
        true
    }
}

/// How the scheduler behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// This process's identity in leases (see [`worker_id`]).
    pub worker: String,
    /// Catch-up, retry and backfill runs in flight at once, over every task (live runs are not
    /// counted: they always start on time). Each source's requests stay within its own
    /// `concurrency`, however many of its runs are in flight.
    pub concurrency: usize,
    /// How long a claim holds without renewal.
    pub lease: Duration,
    /// First retry delay; doubled each attempt up to `retry_max`.
    pub retry_initial: Duration,
    /// The longest retry delay.
    pub retry_max: Duration,
    /// The longest sleep between two looks at the store (other processes, retries).
    pub tick: Duration,
    /// Stop once every interval ending at or before this instant is done (tests, `run --until`).
    pub until: Option<Timestamp>,
    /// Catch-up newest interval first instead of oldest first.
    pub newest_first: bool,
    /// On shutdown, how long in-flight runs may take to finish before they are aborted.
    pub shutdown_grace: Duration,
}

impl Options {
    /// The options of `[scheduler]`, defaults for what it leaves out.
    pub fn from_config(config: &affluent_config::schema::SchedulerConfig) -> Self {
        let d = Self::default();
        let or = |v: Option<affluent_config::ConfigDuration>, default: Duration| {
            v.map_or(default, |v| v.get())
        };
        Self {
            concurrency: config.concurrency.unwrap_or(d.concurrency),
            lease: or(config.lease, d.lease),
            retry_initial: or(config.retry_initial, d.retry_initial),
            retry_max: or(config.retry_max, d.retry_max),
            shutdown_grace: or(config.shutdown_grace, d.shutdown_grace),
            ..d
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            worker: worker_id(),
            concurrency: 16,
            lease: Duration::from_secs(60),
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            tick: Duration::from_secs(1),
            until: None,
            newest_first: false,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// A lease owner name: `host:pid:nonce`, so a dead process on this host can be recognised.
pub fn worker_id() -> String {
    let nonce = Timestamp::now().as_nanosecond() % 1_000_000_000;
    format!("{}:{}:{nonce}", host_name(), std::process::id())
}

/// This host's name, read once.
fn host_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".into())
    })
}

/// Whether a lease owner is a process of this host that no longer runs (exited or a zombie).
fn owner_is_dead(owner: &str) -> bool {
    let mut parts = owner.splitn(3, ':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    if host != host_name() || pid == std::process::id().to_string() {
        return false;
    }
    if !std::path::Path::new("/proc/self").exists() {
        return false; // no procfs: only lease expiry applies
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

/// The delay before retry `attempts` (1 = first retry).
pub fn backoff(options: &Options, attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 30) - 1).unwrap_or(0);
    options
        .retry_initial
        .saturating_mul(2u32.saturating_pow(exp))
        .min(options.retry_max)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// Renews `worker`'s leases in the background, every third of the lease, until dropped.
fn heartbeat(store: Store, worker: String, lease: Duration) -> Heartbeat {
    Heartbeat(tokio::spawn(async move {
        loop {
            tokio::time::sleep(lease / 3).await;
            if let Err(e) = store.renew(&worker, add(Timestamp::now(), lease)).await {
                tracing::warn!("cannot renew leases: {e}");
            }
        }
    }))
}

struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Releases the leases of processes of this host that are gone (killed, crashed), so that their
/// intervals run again at once instead of after the lease expires.
pub async fn reap_dead_owners(store: &Store) -> Result<(), SchedulerError> {
    for owner in store.lease_owners().await? {
        if owner_is_dead(&owner) {
            let n = store.release_all(&owner).await?;
            tracing::info!("took back {n} interval(s) leased by {owner}, which is gone");
        }
    }
    Ok(())
}

/// What one run did, as the loop reports it.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The task.
    pub task: TaskId,
    /// The interval it ran.
    pub interval: Interval,
    /// Why it ran.
    pub trigger: Trigger,
    /// Its counts, or its error.
    pub result: Result<RunCounts, String>,
    /// How long it took.
    pub duration: Duration,
    /// How late the run started after its interval ended (live runs).
    pub start_delay: Duration,
}

/// The long-running scheduler.
#[derive(Debug)]
pub struct Scheduler<E: Executor> {
    store: Store,
    tasks: Vec<TaskSpec>,
    executor: Arc<E>,
    options: Options,
    notifier: Option<Arc<Notifier>>,
    reports: Option<tokio::sync::mpsc::UnboundedSender<RunReport>>,
}

type Key = (TaskId, Timestamp);

/// A run as the loop gets it back: its key, what it counts in (its interval, the ticks it
/// counts in, when it started), and what `Job::run` returned.
type Finished = (
    Key,
    Option<(Interval, Vec<Timestamp>, std::time::Instant)>,
    (Result<RunCounts, String>, std::time::Instant, Vec<String>),
);

/// The loop's state a finished run updates.
struct Bookkeeping<'a> {
    in_flight: &'a mut HashSet<Key>,
    live_in_flight: &'a mut HashSet<Key>,
    last_status: &'a mut HashMap<TaskId, bool>,
    ticks: &'a mut tick::Ticks,
    sends: &'a mut JoinSet<()>,
}

impl<E: Executor> Scheduler<E> {
    /// A scheduler of `tasks` over a state store, running them with `executor`.
    pub fn new(store: Store, tasks: Vec<TaskSpec>, executor: Arc<E>, options: Options) -> Self {
        Self {
            store,
            tasks,
            executor,
            options,
            notifier: None,
            reports: None,
        }
    }

    /// Sends failure/recovery (and optionally every run's) notifications.
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = Some(Arc::new(notifier));
        self
    }

    /// Receives a report of every finished run.
    pub fn with_reports(mut self, tx: tokio::sync::mpsc::UnboundedSender<RunReport>) -> Self {
        self.reports = Some(tx);
        self
    }

    fn task(&self, id: &TaskId) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| t.id == *id)
    }

    /// Records the intervals due by `now` for every scheduled task.
    async fn materialize(
        &self,
        now: Timestamp,
        cursor: &mut HashMap<TaskId, Timestamp>,
    ) -> Result<(), SchedulerError> {
        let horizon = self.options.until.map_or(now, |u| u.min(now));
        for task in &self.tasks {
            let Some(schedule) = &task.schedule else {
                continue;
            };
            if task.triggered {
                continue;
            }
            let from = match cursor.get(&task.id) {
                Some(t) => *t,
                None => {
                    let latest = self.store.latest_end(&task.id).await?;
                    match (task.catchup, task.start, latest) {
                        (true, Some(start), _) => start,
                        // No start date: cover from where this task was first scheduled.
                        (true, None, Some(latest)) => latest,
                        _ => match schedule.last_complete(horizon) {
                            Some(i) => i.start,
                            None => continue,
                        },
                    }
                }
            };
            let from = if task.catchup {
                from
            } else {
                match schedule.last_complete(horizon) {
                    Some(i) => i.start.max(from),
                    None => continue,
                }
            };
            let intervals = schedule.intervals(from, horizon);
            if let Some(last) = intervals.last() {
                let added = self.store.ensure(&task.id, &intervals).await?;
                if added > 0 {
                    tracing::debug!(task = %task.id, added, "intervals due");
                }
                cursor.insert(task.id.clone(), last.end);
            } else {
                cursor.entry(task.id.clone()).or_insert(from);
            }
        }
        Ok(())
    }

    /// The scheduled tasks whose live interval at `now` ends at `end`: one tick's runs.
    fn live_ending(&self, now: Timestamp, end: Timestamp) -> Vec<TaskId> {
        self.tasks
            .iter()
            .filter(|t| !t.triggered)
            .filter(|t| {
                t.schedule
                    .as_ref()
                    .and_then(|s| s.last_complete(now))
                    .is_some_and(|i| i.end == end)
            })
            .map(|t| t.id.clone())
            .collect()
    }

    /// Sends a tick's summary without holding the loop (SMTP and webhook may be slow).
    fn send_tick(&self, sends: &mut JoinSet<()>, tick: tick::Tick) {
        if let Some(notifier) = self.notifier.clone() {
            sends.spawn(async move { notifier.send_tick(&tick).await });
        }
    }

    /// Sends the ticks still open and waits, a while, for every summary on its way (shutdown,
    /// `until`).
    async fn flush_ticks(&self, ticks: &mut tick::Ticks, sends: &mut JoinSet<()>) {
        for tick in ticks.drain() {
            self.send_tick(sends, tick);
        }
        let all = async { while sends.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .is_err()
        {
            tracing::warn!("{} run summaries could not be sent in 30 s", sends.len());
        }
    }

    /// What follows a finished run: it leaves the runs in flight, its failure or recovery is
    /// notified, and it counts in its ticks.
    async fn finished(&self, finished: Finished, state: &mut Bookkeeping<'_>) {
        let ((task, start), of_tick, (result, triggered_at, failed_fired)) = finished;
        state.in_flight.remove(&(task.clone(), start));
        state.live_in_flight.remove(&(task.clone(), start));
        let ok = result.is_ok();
        self.notify_transition(state.last_status, &task, start, ok)
            .await;
        let Some((interval, ends, started)) = of_tick else {
            return;
        };
        // What a successful run triggers belongs to its tick too.
        let then = match (&result, self.task(&task)) {
            (Ok(_), Some(spec)) => spec.downstream.clone(),
            _ => Vec::new(),
        };
        let fired = match &result {
            Ok(counts) => counts.fired.clone(),
            Err(_) => failed_fired,
        };
        let run = tick::TickRun {
            task,
            interval,
            result,
            fired,
        };
        for done in state.ticks.finish(run, &ends, started, &then, triggered_at) {
            self.send_tick(state.sends, done);
        }
    }

    /// The live interval of each scheduled task at `now`.
    fn live_intervals(&self, now: Timestamp) -> HashSet<Key> {
        self.tasks
            .iter()
            .filter(|t| !t.triggered)
            .filter_map(|t| {
                let i = t.schedule.as_ref()?.last_complete(now)?;
                Some((t.id.clone(), i.start))
            })
            .collect()
    }

    /// Runs until `shutdown` resolves (or, with `until`, until every interval up to it is done).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), SchedulerError> {
        tokio::pin!(shutdown);
        let worker = self.options.worker.clone();
        let heartbeat = heartbeat(self.store.clone(), worker.clone(), self.options.lease);
        let result = self.run_loop(&mut shutdown).await;
        drop(heartbeat);
        if let Err(e) = self.store.release_all(&worker).await {
            tracing::warn!("cannot release leases: {e}");
        }
        result
    }

    async fn run_loop(
        &self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), SchedulerError> {
        let mut cursor: HashMap<TaskId, Timestamp> = HashMap::new();
        let mut running: JoinSet<Finished> = JoinSet::new();
        let mut ticks = tick::Ticks::default();
        let mut sends: JoinSet<()> = JoinSet::new();
        let summaries = self.notifier.as_ref().is_some_and(|n| n.wants(Event::Tick));
        let mut in_flight: HashSet<Key> = HashSet::new();
        let mut live_in_flight: HashSet<Key> = HashSet::new();
        let mut last_status: HashMap<TaskId, bool> = HashMap::new();
        let mut last_reap = Timestamp::MIN;
        // The loop's state a finished run updates (in the loop and in the shutdown grace).
        macro_rules! bookkeeping {
            () => {
                Bookkeeping {
                    in_flight: &mut in_flight,
                    live_in_flight: &mut live_in_flight,
                    last_status: &mut last_status,
                    ticks: &mut ticks,
                    sends: &mut sends,
                }
            };
        }
        loop {
            let now = Timestamp::now();
            self.materialize(now, &mut cursor).await?;
            // With `until`: done once everything up to it is materialized and covered.
            if let Some(until) = self.options.until
                && running.is_empty()
                && now >= until
                && self.covered_until(until).await?
            {
                self.flush_ticks(&mut ticks, &mut sends).await;
                return Ok(());
            }

            if now.duration_since(last_reap).as_secs() >= 2 {
                last_reap = now;
                reap_dead_owners(&self.store).await?;
            }
            let live = self.live_intervals(now);
            let mut candidates = self.store.runnable(now, 10_000).await?;
            candidates.retain(|r| self.task(&r.task).is_some());
            if let Some(until) = self.options.until {
                candidates.retain(|r| r.interval.end <= until);
            }
            let rank = |r: &IntervalRow| -> u8 {
                let task = self.task(&r.task);
                if live.contains(&(r.task.clone(), r.interval.start)) && r.attempts == 0 {
                    0
                } else if task.is_some_and(|t| t.triggered) {
                    1
                } else {
                    2
                }
            };
            candidates.sort_by(|a, b| {
                rank(a).cmp(&rank(b)).then_with(|| {
                    if self.options.newest_first {
                        b.interval.start.cmp(&a.interval.start)
                    } else {
                        a.interval.start.cmp(&b.interval.start)
                    }
                })
            });
            let all_candidates = candidates.clone();
            // A tick waits while what it awaits is pending here (a model waiting for a slot).
            let pending: HashSet<(TaskId, Timestamp)> = all_candidates
                .iter()
                .map(|r| (r.task.clone(), r.interval.end))
                .collect();
            let waiting = |task: &TaskId, at: Timestamp| pending.contains(&(task.clone(), at));
            for stale in ticks.expired(std::time::Instant::now(), tick::GRACE, &waiting) {
                self.send_tick(&mut sends, stale);
            }
            for row in candidates {
                let key = (row.task.clone(), row.interval.start);
                if in_flight.contains(&key) {
                    continue;
                }
                let Some(task) = self.task(&row.task).cloned() else {
                    continue;
                };
                let is_live = rank(&row) == 0;
                let of_task = in_flight.iter().filter(|(t, _)| *t == row.task).count();
                let background = in_flight.len() - live_in_flight.len();
                let allowed = if is_live {
                    of_task < task.max_active + 1
                } else {
                    background < self.options.concurrency
                        && of_task < task.max_active
                        && self.executor.may_run_background(&task)
                };
                if !allowed {
                    continue;
                }
                let until = add(Timestamp::now(), self.options.lease);
                if !self
                    .store
                    .claim(&row.task, row.interval.start, &self.options.worker, until)
                    .await?
                {
                    continue;
                }
                // A model recomputes from its inputs: one run covers every interval it has
                // pending (a catch-up loads many source intervals while one model run lasts).
                let mut members = vec![row.interval];
                if task.triggered {
                    for other in pending_of(&all_candidates, &row.task) {
                        if other.start != row.interval.start
                            && self
                                .store
                                .claim(&row.task, other.start, &self.options.worker, until)
                                .await?
                        {
                            members.push(other);
                        }
                    }
                }
                let trigger = if is_live {
                    Trigger::Live
                } else if row.attempts > 0 || row.state == IntervalState::Failed {
                    Trigger::Retry
                } else if task.triggered {
                    Trigger::Upstream
                } else {
                    Trigger::Catchup
                };
                in_flight.insert(key.clone());
                if is_live {
                    live_in_flight.insert(key.clone());
                }
                let job = Job {
                    store: self.store.clone(),
                    executor: self.executor.clone(),
                    options: self.options.clone(),
                    downstream: task
                        .downstream
                        .iter()
                        .filter_map(|d| self.task(d).map(|t| t.id.clone()))
                        .collect(),
                    task,
                    interval: Interval {
                        start: members
                            .iter()
                            .map(|i| i.start)
                            .min()
                            .unwrap_or(row.interval.start),
                        end: members
                            .iter()
                            .map(|i| i.end)
                            .max()
                            .unwrap_or(row.interval.end),
                    },
                    members,
                    attempts: row.attempts + 1,
                    trigger,
                    reports: self.reports.clone(),
                };
                // A tick's summary covers its live runs and the models they trigger (a model's
                // run counts in the ticks of every interval it covers).
                // (A triggered model may run as a retry: its attempts are not reset by a
                // trigger.)
                let of_tick = (summaries && (is_live || job.task.triggered)).then(|| {
                    let started = std::time::Instant::now();
                    let ends: Vec<Timestamp> = job.members.iter().map(|m| m.end).collect();
                    let live = is_live.then(|| self.live_ending(now, job.interval.end));
                    let counted = ticks.started(&job.task.id, &ends, started, live);
                    (job.interval, counted, started)
                });
                running.spawn(async move {
                    // A panic is this run's failure: its key and its tick come back all the same.
                    let result = std::panic::AssertUnwindSafe(job.run())
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|panic| {
                            let text = panic
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_default();
                            tracing::error!("a run panicked: {text}");
                            (
                                Err(format!("the run panicked: {text}")),
                                std::time::Instant::now(),
                                Vec::new(),
                            )
                        });
                    (key, of_tick, result)
                });
            }
            // Sleep until the next boundary, a finished run, the tick, or shutdown.
            let wake = self.next_wake(Timestamp::now());
            tokio::select! {
                Some(joined) = running.join_next(), if !running.is_empty() => {
                    match joined {
                        Ok(finished) => {
                            self.finished(finished, &mut bookkeeping!()).await;
                        }
                        Err(e) => tracing::error!("a run was aborted: {e}"),
                    }
                }
                Some(_) = sends.join_next(), if !sends.is_empty() => {}
                _ = tokio::time::sleep(wake) => {}
                _ = shutdown.as_mut() => {
                    tracing::info!(
                        "shutting down: {} run(s) in flight get {:?} to finish",
                        running.len(),
                        self.options.shutdown_grace
                    );
                    // What finishes in the grace is recorded as always (its tick too).
                    let drain = async {
                        while let Some(joined) = running.join_next().await {
                            if let Ok(finished) = joined {
                                self.finished(finished, &mut bookkeeping!()).await;
                            }
                        }
                    };
                    if tokio::time::timeout(self.options.shutdown_grace, drain).await.is_err() {
                        tracing::warn!("aborting {} run(s); their intervals run again on restart", running.len());
                        running.abort_all();
                        while running.join_next().await.is_some() {}
                    }
                    self.flush_ticks(&mut ticks, &mut sends).await;
                    return Ok(());
                }
            }
        }
    }

    /// Whether every task's intervals ending by `until` are done.
    async fn covered_until(&self, until: Timestamp) -> Result<bool, SchedulerError> {
        for task in &self.tasks {
            if self
                .store
                .holes(&task.id)
                .await?
                .iter()
                .any(|h| h.interval.end <= until)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn next_wake(&self, now: Timestamp) -> Duration {
        let mut wake = self.options.tick;
        for task in self.tasks.iter().filter(|t| !t.triggered) {
            if let Some(next) = task.schedule.as_ref().and_then(|s| s.next_after(now)) {
                let d = next.duration_since(now);
                if let Ok(d) = Duration::try_from(d) {
                    wake = wake.min(d);
                }
            }
        }
        wake
    }

    async fn notify_transition(
        &self,
        last: &mut HashMap<TaskId, bool>,
        task: &TaskId,
        start: Timestamp,
        ok: bool,
    ) {
        let previous = last.insert(task.clone(), ok);
        let Some(notifier) = &self.notifier else {
            return;
        };
        let event = match (previous, ok) {
            (_, false) => Some(Event::Failure),
            (Some(false), true) => Some(Event::Recovery),
            (_, true) => Some(Event::Success),
        };
        if let Some(event) = event
            && notifier.wants(event)
        {
            let detail = self
                .store
                .runs(Some(task), false, 1)
                .await
                .ok()
                .and_then(|mut r| r.pop());
            notifier.send(event, task, start, detail.as_ref()).await;
        }
    }
}

/// The runnable intervals of one task among the candidates.
fn pending_of(candidates: &[IntervalRow], task: &TaskId) -> Vec<Interval> {
    candidates
        .iter()
        .filter(|r| r.task == *task)
        .map(|r| r.interval)
        .collect()
}

/// One claimed interval to run.
pub(crate) struct Job<E: Executor> {
    store: Store,
    executor: Arc<E>,
    options: Options,
    task: TaskSpec,
    downstream: Vec<TaskId>,
    /// The interval passed to the executor: the span of `members`.
    interval: Interval,
    /// The claimed intervals this run covers (one, except for models).
    members: Vec<Interval>,
    attempts: i64,
    trigger: Trigger,
    reports: Option<tokio::sync::mpsc::UnboundedSender<RunReport>>,
}

impl<E: Executor> Job<E> {
    /// Sets the downstream tasks' intervals pending, then marks the members done. Downstream
    /// first: if the process dies in between, the interval runs again and sets them again;
    /// never the other way round.
    async fn record_success(
        &self,
        task: &TaskId,
        worker: &str,
        counts: &RunCounts,
    ) -> Result<(), SchedulerError> {
        for d in &self.downstream {
            self.store
                .reset(d, &self.members, &[IntervalState::Done])
                .await?;
        }
        for member in &self.members {
            if !self
                .store
                .mark_done(task, member.start, worker, counts.records)
                .await?
            {
                tracing::warn!("{task} {member}: the lease was lost before the run ended");
            }
        }
        Ok(())
    }

    /// Runs the interval and records the outcome; also returns when its downstream tasks were
    /// set pending (a run of them that starts later follows this one), and the alerts a failed
    /// run fired before failing.
    pub(crate) async fn run(self) -> (Result<RunCounts, String>, std::time::Instant, Vec<String>) {
        let started = std::time::Instant::now();
        let start_delay = Timestamp::now()
            .duration_since(self.interval.end)
            .try_into()
            .unwrap_or(Duration::ZERO);
        let run_id = run_id();
        let worker = &self.options.worker;
        let task = &self.task.id;
        if let Err(e) = self
            .store
            .run_started(&run_id, task, self.interval, self.trigger.as_str(), worker)
            .await
        {
            tracing::warn!("cannot record the start of {task} {}: {e}", self.interval);
        }
        tracing::debug!(task = %task, interval = %self.interval, trigger = self.trigger.as_str(), "run started");
        let outcome = self
            .executor
            .execute(&self.task, self.interval, self.trigger)
            .await;
        let mut triggered_at = std::time::Instant::now();
        let mut failed_fired = Vec::new();
        let result = match outcome {
            Ok(counts) => {
                triggered_at = std::time::Instant::now();
                let recorded = self.record_success(task, worker, &counts).await;
                match recorded {
                    Ok(()) => Ok(counts),
                    Err(e) => Err(format!("the run succeeded but could not be recorded: {e}")),
                }
            }
            Err(failure) => {
                if failure.landed {
                    let _ = self
                        .store
                        .mark_landed(task, self.interval.start, worker)
                        .await;
                }
                let retry_at = add(Timestamp::now(), backoff(&self.options, self.attempts));
                for member in &self.members {
                    if let Err(e) = self
                        .store
                        .mark_failed(task, member.start, worker, &failure.error, retry_at)
                        .await
                    {
                        tracing::warn!("cannot record the failure of {task}: {e}");
                    }
                }
                tracing::warn!(task = %task, interval = %self.interval, attempt = self.attempts, retry_at = %retry_at, "run failed: {}", failure.error);
                failed_fired = failure.fired;
                Err(failure.error)
            }
        };
        let counts = result.as_ref().map_err(String::as_str);
        if let Err(e) = self.store.run_finished(&run_id, counts).await {
            tracing::warn!("cannot record the end of {task}: {e}");
        }
        if let Ok(c) = &result {
            // A backfill shows its own progress.
            if self.trigger == Trigger::Backfill {
                tracing::debug!(task = %task, interval = %self.interval, records = c.records, loaded = c.loaded, "run done");
            } else {
                tracing::info!(task = %task, interval = %self.interval, trigger = self.trigger.as_str(), records = c.records, loaded = c.loaded, "run done");
            }
        }
        let outcome = (result.clone(), triggered_at, failed_fired);
        if let Some(tx) = &self.reports {
            let _ = tx.send(RunReport {
                task: task.clone(),
                interval: self.interval,
                trigger: self.trigger,
                result,
                duration: started.elapsed(),
                start_delay,
            });
        }
        outcome
    }
}

/// A run id: time-ordered and unique enough across processes.
pub fn run_id() -> String {
    let now = Timestamp::now();
    format!(
        "{}-{:08x}",
        now.strftime("%Y%m%dT%H%M%S%.3f"),
        (now.as_nanosecond() as u64 ^ u64::from(std::process::id()).rotate_left(32)) as u32
    )
}
