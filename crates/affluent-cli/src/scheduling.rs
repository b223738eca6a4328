//! `run`, `backfill`, `status` and `runs`: the scheduler wired to ingestion, loads and models.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use affluent_config::Project;
use affluent_core::{Interval, parse_duration};
use affluent_scheduler::backfill::{self, Reprocess};
use affluent_scheduler::{
    Executor, IntervalState, Notifier, Options, RunCounts, RunFailure, Scheduler, Store, TaskSpec,
    Trigger,
};
use affluent_sources::{Connectors, IngestOptions};
use affluent_tables::{LoadScope, Warehouse};
use anyhow::{Context, Result, bail};
use jiff::Timestamp;

/// Ingestion, loads and models as the scheduler's executor.
pub struct Pipeline {
    warehouse: Warehouse,
    /// Table writes of this process one at a time: the table locks are file locks that block a
    /// thread, and runs of one process share the runtime's few threads.
    writes: tokio::sync::Mutex<()>,
    /// The most requests one run of each source has made: what a live run needs of the quota.
    largest_run: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Per source: loads asked for and loads done, to batch them (see [`Pipeline::load`]).
    load_tickets: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
}

impl Pipeline {
    pub fn new(warehouse: Warehouse) -> Self {
        Self {
            warehouse,
            writes: tokio::sync::Mutex::new(()),
            largest_run: Default::default(),
            load_tickets: Default::default(),
        }
    }

    /// Loads a source's pending landed entries, once for every run that landed while another
    /// load held the lock: a load takes every pending entry of the source, so a run whose
    /// entries were landed before a load started needs no load of its own. During a catch-up of
    /// many small intervals this turns one Delta commit per interval into one per batch.
    /// `Ok(None)`: another run's load covered this one.
    async fn load(
        &self,
        source: &str,
    ) -> Result<Option<Vec<affluent_tables::LoadReport>>, affluent_tables::TableError> {
        let ticket = {
            let mut tickets = self.load_tickets.lock().unwrap_or_else(|e| e.into_inner());
            let entry = tickets.entry(source.to_string()).or_default();
            entry.0 += 1;
            entry.0
        };
        let _writing = self.writes.lock().await;
        let covers = {
            let tickets = self.load_tickets.lock().unwrap_or_else(|e| e.into_inner());
            let (issued, done) = tickets.get(source).copied().unwrap_or_default();
            if done >= ticket {
                return Ok(None);
            }
            issued
        };
        let reports = self
            .warehouse
            .load_source(source, &LoadScope::Pending)
            .await?;
        let mut tickets = self.load_tickets.lock().unwrap_or_else(|e| e.into_inner());
        let entry = tickets.entry(source.to_string()).or_default();
        entry.1 = entry.1.max(covers);
        Ok(Some(reports))
    }
}

fn first_errors(errors: &[String]) -> String {
    let mut text = errors
        .iter()
        .take(3)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > 3 {
        text.push_str(&format!(" (and {} more)", errors.len() - 3));
    }
    text
}

impl Executor for Pipeline {
    async fn execute(
        &self,
        task: &TaskSpec,
        interval: Interval,
        _trigger: Trigger,
    ) -> Result<RunCounts, RunFailure> {
        match task.kind() {
            "source" => {
                let source = task.target();
                let summary = self
                    .warehouse
                    .connectors()
                    .ingest(
                        source,
                        &IngestOptions {
                            interval: Some(interval),
                            progress: false,
                        },
                    )
                    .await
                    .map_err(|e| RunFailure::from(e.to_string()))?;
                for w in &summary.warnings {
                    tracing::warn!(source, "{w}");
                }
                {
                    let mut largest = self.largest_run.lock().unwrap_or_else(|e| e.into_inner());
                    let entry = largest.entry(source.to_string()).or_default();
                    *entry = (*entry).max(summary.requests);
                }
                // Whatever was landed is loaded, even when some requests failed: the retry
                // re-fetches the interval, and loads are idempotent by key and by entry.
                let landed = summary.landed > 0;
                let reports = self
                    .load(source)
                    .await
                    .map_err(|e| RunFailure {
                        error: e.to_string(),
                        landed,
                    })?
                    .unwrap_or_default();
                let mut errors = summary.errors.clone();
                for r in &reports {
                    errors.extend(r.errors.iter().map(|e| format!("table {}: {e}", r.table)));
                }
                if !errors.is_empty() {
                    return Err(RunFailure {
                        error: first_errors(&errors),
                        landed,
                    });
                }
                Ok(RunCounts {
                    records: summary.records as i64,
                    loaded: reports.iter().map(|r| (r.loaded + r.merged) as i64).sum(),
                    requests: summary.requests as i64,
                })
            }
            "model" => {
                let _writing = self.writes.lock().await;
                let reports = self
                    .warehouse
                    .transform(&[task.target().to_string()], Some(interval))
                    .await
                    .map_err(|e| RunFailure::from(e.to_string()))?;
                let rows: u64 = reports.iter().map(|r| r.rows).sum();
                Ok(RunCounts {
                    records: rows as i64,
                    loaded: rows as i64,
                    requests: 0,
                })
            }
            other => Err(RunFailure::from(format!("unknown kind of task {other}"))),
        }
    }

    /// Catch-up stops short of a source's daily quota by what its largest run needed, so that
    /// the live run still has requests left.
    fn may_run_background(&self, task: &TaskSpec) -> bool {
        if task.kind() != "source" {
            return true;
        }
        let Some((used, limit)) = self.warehouse.connectors().quota_today(task.target()) else {
            return true;
        };
        let reserve = self
            .largest_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(task.target())
            .copied()
            .unwrap_or(1)
            .max(1);
        let keep = u64::from(limit).saturating_sub(u64::from(used)) > reserve;
        if !keep {
            tracing::debug!(
                source = task.target(),
                used,
                limit,
                "catch-up paused: the rest of today's quota is kept for live runs"
            );
        }
        keep
    }
}

/// The project's state store: `state_url`, or SQLite in `DATA_DIR/state/affluent.db`.
pub async fn open_store(project: &Project) -> Result<Store> {
    let url = match &project.state_url {
        Some(url) => url.clone(),
        None => {
            let dir = project.data_dir.join("state");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            format!("sqlite://{}", dir.join("affluent.db").display())
        }
    };
    Ok(Store::open(&url).await?)
}

fn duration_or(text: Option<&str>, default: Duration) -> Duration {
    // Validated when the project was loaded.
    text.and_then(|t| parse_duration(t).ok()).unwrap_or(default)
}

/// The scheduler's options from `[scheduler]`.
pub fn options(project: &Project) -> Options {
    let s = &project.scheduler;
    let d = Options::default();
    Options {
        concurrency: s.concurrency.unwrap_or(d.concurrency),
        lease: duration_or(s.lease.as_deref(), d.lease),
        retry_initial: duration_or(s.retry_initial.as_deref(), d.retry_initial),
        retry_max: duration_or(s.retry_max.as_deref(), d.retry_max),
        shutdown_grace: duration_or(s.shutdown_grace.as_deref(), d.shutdown_grace),
        ..d
    }
}

/// The project's tasks.
pub fn tasks(warehouse: &Warehouse, now: Timestamp) -> Result<Vec<TaskSpec>> {
    let deps = warehouse.model_dependencies()?;
    Ok(affluent_scheduler::task_specs(
        warehouse.project(),
        &deps,
        now,
    )?)
}

/// Resolves `NAME`, `source:NAME` or `model:NAME` to a task.
fn find_task<'a>(tasks: &'a [TaskSpec], name: &str) -> Result<&'a TaskSpec> {
    let candidates = [
        name.to_string(),
        format!("source:{name}"),
        format!("model:{name}"),
    ];
    if let Some(t) = candidates
        .iter()
        .find_map(|c| tasks.iter().find(|t| &t.name == c))
    {
        return Ok(t);
    }
    let known: Vec<&str> = tasks.iter().map(|t| t.target()).collect();
    let hint = affluent_core::closest(name, &known)
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    if known.is_empty() {
        bail!(
            "no scheduled task: give a source `schedule = \"0 * * * *\"` or `every = \"1h\"` (models downstream of it are scheduled with it)"
        )
    }
    bail!(
        "no scheduled source or model named `{name}`{hint} (scheduled: {})",
        known.join(", ")
    )
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `affluent run`.
pub async fn run(
    project: Project,
    until: Option<Timestamp>,
    newest_first: bool,
    serve: Option<std::net::SocketAddr>,
) -> Result<std::process::ExitCode> {
    let notify = project.notify.clone();
    let redactor = project.redactor.clone();
    let name = project.name.clone();
    let mut options = options(&project);
    options.until = until;
    options.newest_first = newest_first;
    let store = open_store(&project).await?;
    let warehouse = Warehouse::new(Arc::new(Connectors::new(project)?));
    let tasks = tasks(&warehouse, Timestamp::now())?;
    if tasks.is_empty() {
        bail!(
            "nothing to schedule: give a source `schedule = \"0 * * * *\"` (cron) or `every = \"1h\"`"
        );
    }
    for t in &tasks {
        let when = match (&t.schedule, t.triggered) {
            (_, true) => "after its inputs load".to_string(),
            (Some(s), false) => s.text().to_string(),
            (None, false) => "unscheduled".to_string(),
        };
        let since = t
            .start
            .filter(|_| t.catchup)
            .map(|s| format!(", covering since {s}"))
            .unwrap_or_default();
        eprintln!("{}: {when}{since}", t.name);
    }
    eprintln!("worker {}; stop with Ctrl-C", options.worker);
    // The dashboard runs beside the scheduler; a port in use does not stop the pipeline.
    let dashboard = match serve {
        Some(addr) => match crate::dashboard::start(warehouse.clone(), store.clone(), addr).await {
            Ok(server) => Some(server),
            Err(e) => {
                eprintln!("warning: dashboard not started: {e:#}");
                None
            }
        },
        None => None,
    };
    let mut scheduler = Scheduler::new(store, tasks, Arc::new(Pipeline::new(warehouse)), options);
    if let Some(config) = notify {
        scheduler = scheduler.with_notifier(Notifier::new(&name, config, redactor));
    }
    let result = scheduler.run(shutdown_signal()).await;
    if let Some(server) = dashboard {
        server.shutdown().await;
    }
    result?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// `affluent backfill`.
#[allow(clippy::too_many_arguments)]
pub async fn backfill(
    project: Project,
    task: &str,
    from: Timestamp,
    to: Timestamp,
    reprocess: Reprocess,
    dry_run: bool,
    newest_first: bool,
    attempts: u32,
) -> Result<std::process::ExitCode> {
    let options = options(&project);
    let store = open_store(&project).await?;
    let warehouse = Warehouse::new(Arc::new(Connectors::new(project)?));
    let tasks = tasks(&warehouse, Timestamp::now())?;
    let spec = find_task(&tasks, task)?.clone();
    let plan = backfill::plan(&store, &spec, from, to, reprocess, newest_first, dry_run).await?;
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, s) in &plan.intervals {
        *by_state
            .entry(s.map_or("never run", IntervalState::as_str))
            .or_default() += 1;
    }
    let states: Vec<String> = by_state.iter().map(|(k, v)| format!("{v} {k}")).collect();
    eprintln!(
        "{}: {} interval(s) in range ({}); {} to run{}",
        spec.name,
        plan.intervals.len(),
        states.join(", "),
        plan.to_run.len(),
        if plan.resumed {
            " (resuming the unfinished identical backfill)"
        } else {
            ""
        }
    );
    if dry_run {
        for i in &plan.to_run {
            println!("{}\t{}\t{}", spec.name, i.start, i.end);
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} intervals ({eta} left) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let outcome = backfill::run(
        &store,
        &tasks,
        Arc::new(Pipeline::new(warehouse)),
        &options,
        &plan,
        from,
        to,
        attempts,
        |p| match &bar {
            Some(bar) => {
                bar.set_prefix(p.task.clone());
                bar.set_length(p.total as u64);
                bar.set_position((p.done + p.failed) as u64);
                if p.failed > 0 {
                    bar.set_message(format!("{} failed", p.failed));
                }
            }
            None => {
                // Without a terminal: failures, and a line every 5 %.
                if let Some((i, r)) = &p.last {
                    let n = p.done + p.failed;
                    let step = (p.total / 20).max(1);
                    match r {
                        Err(e) => eprintln!("{} {n}/{} {i} failed: {e}", p.task, p.total),
                        Ok(()) if n % step == 0 || n == p.total => {
                            eprintln!("{} {n}/{} intervals, up to {}", p.task, p.total, i.end)
                        }
                        Ok(()) => {}
                    }
                }
            }
        },
    )
    .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    println!(
        "backfill {}: {} interval(s) run, {} failed, {} left to another process",
        spec.name,
        outcome.succeeded,
        outcome.failed.len(),
        outcome.skipped.len()
    );
    for (task, i, e) in &outcome.failed {
        eprintln!("error: {task} {i}: {e}");
    }
    if outcome.failed.is_empty() {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        eprintln!(
            "run the same command again to resume; failed intervals stay holes until they succeed"
        );
        Ok(std::process::ExitCode::FAILURE)
    }
}

/// One task's line of `affluent status`.
#[derive(Debug, serde::Serialize)]
pub struct TaskStatus {
    pub task: String,
    pub schedule: String,
    pub last_success: Option<String>,
    pub last_success_interval: Option<String>,
    pub next_run: Option<String>,
    pub holes: usize,
    pub failed: usize,
    pub first_hole: Option<String>,
    pub quota_today: Option<String>,
    pub last_error: Option<String>,
}

/// `affluent status`.
pub async fn status(project: Project, json: bool) -> Result<std::process::ExitCode> {
    let store = open_store(&project).await?;
    let connectors = Arc::new(Connectors::new(project)?);
    let warehouse = Warehouse::new(connectors.clone());
    let now = Timestamp::now();
    let tasks = tasks(&warehouse, now)?;
    let mut out = Vec::new();
    for t in &tasks {
        let schedule = match (&t.schedule, t.triggered) {
            (_, true) => "after inputs".to_string(),
            (Some(s), false) => s.text().to_string(),
            (None, false) => "-".to_string(),
        };
        // Holes: recorded intervals not done, and, for a task covering since a start date,
        // intervals never recorded at all (the scheduler was not running).
        let recorded = store.intervals(&t.name, Timestamp::MIN, now).await?;
        let mut holes: Vec<Interval> = recorded
            .iter()
            .filter(|r| r.state != IntervalState::Done && r.interval.end <= now)
            .map(|r| r.interval)
            .collect();
        let failed = recorded
            .iter()
            .filter(|r| r.state == IntervalState::Failed)
            .count();
        if let (Some(schedule), Some(start), false, true) =
            (&t.schedule, t.start, t.triggered, t.catchup)
        {
            let known: std::collections::HashSet<Timestamp> =
                recorded.iter().map(|r| r.interval.start).collect();
            holes.extend(
                schedule
                    .intervals(start, now)
                    .into_iter()
                    .filter(|i| !known.contains(&i.start)),
            );
        }
        holes.sort_by_key(|i| i.start);
        let success = store.last_success(&t.name).await?;
        let last_failed = store.runs(Some(&t.name), true, 1).await?.pop();
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
        let quota_today = (t.kind() == "source")
            .then(|| connectors.quota_today(t.target()))
            .flatten()
            .map(|(used, limit)| format!("{used}/{limit}"));
        out.push(TaskStatus {
            task: t.name.clone(),
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
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if out.is_empty() {
        println!("no scheduled task: give a source `schedule = \"0 * * * *\"` or `every = \"1h\"`");
    } else {
        println!(
            "{:<28} {:<16} {:<22} {:<22} {:>6} {:>6} {:>9}  LAST ERROR",
            "TASK", "SCHEDULE", "LAST SUCCESS (UTC)", "NEXT RUN (UTC)", "HOLES", "FAILED", "QUOTA"
        );
        for s in &out {
            println!(
                "{:<28} {:<16} {:<22} {:<22} {:>6} {:>6} {:>9}  {}",
                s.task,
                s.schedule,
                short_time(s.last_success.as_deref()),
                short_time(s.next_run.as_deref()),
                s.holes,
                s.failed,
                s.quota_today.as_deref().unwrap_or("-"),
                s.last_error.as_deref().unwrap_or("")
            );
            if let Some(h) = &s.first_hole {
                println!("{:<28} first hole {h}", "");
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn short_time(t: Option<&str>) -> String {
    t.map(|t| t.trim_end_matches('Z').replace('T', " "))
        .map(|t| t.chars().take(19).collect())
        .unwrap_or_else(|| "-".into())
}

/// `affluent runs`.
pub async fn runs(
    project: Project,
    task: Option<&str>,
    failed: bool,
    limit: i64,
    json: bool,
) -> Result<std::process::ExitCode> {
    let store = open_store(&project).await?;
    let task = task.map(|t| {
        if t.contains(':') {
            t.to_string()
        } else if project.sources.contains_key(t) {
            format!("source:{t}")
        } else {
            format!("model:{t}")
        }
    });
    let rows = store.runs(task.as_deref(), failed, limit).await?;
    if json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<26} {:<42} {:<9} {:<8} {:>8} {:>8} {:>9}  ERROR",
        "STARTED (UTC)", "TASK", "INTERVAL", "TRIGGER", "STATUS", "RECORDS", "LOADED", "SECONDS"
    );
    for r in &rows {
        let seconds = r
            .finished
            .map(|f| format!("{:.2}", f.duration_since(r.started).as_secs_f64()))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<26} {:<42} {:<9} {:<8} {:>8} {:>8} {:>9}  {}",
            short_time(Some(&r.started.to_string())),
            r.task,
            r.interval.to_string(),
            r.trigger,
            r.status,
            r.records.map_or("-".into(), |n| n.to_string()),
            r.loaded.map_or("-".into(), |n| n.to_string()),
            seconds,
            r.error.as_deref().unwrap_or("")
        );
    }
    if rows.is_empty() {
        println!("no runs yet: `affluent run` or `affluent backfill` record them");
    }
    Ok(std::process::ExitCode::SUCCESS)
}
