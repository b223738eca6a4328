//! The pipeline's own page: every task's status, the coverage of its intervals, the runs, and
//! backfills started from the dashboard (admins), run in this process with the same claims as
//! `affluent backfill`, so a scheduler running beside them never runs an interval twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use affluent_core::{Interval, TaskId, TaskKind};
use affluent_pipeline::Pipeline;
use affluent_pipeline::coverage::{self, CoverageState};
use affluent_scheduler::backfill::{self, Reprocess};
use affluent_scheduler::{Options, TaskSpec};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{AdminUser, ApiJson, ApiQuery, CurrentUser};
use crate::{AppState, ErrorBody, WebError};

/// The most runs one request lists.
const MAX_RUNS: i64 = 500;
/// Tries per interval of a backfill started here: once (a source's own retries still apply to
/// each request); what still fails stays a hole, retried by the scheduler or the next click.
const ATTEMPTS: u32 = 1;
/// Intervals one backfill started here may run.
const MAX_BACKFILL_INTERVALS: usize = 1_000;
/// Backfills started here running at once.
const MAX_RUNNING: usize = 4;
/// Backfills kept in the list once finished (the newest).
const KEPT_BACKFILLS: usize = 50;

/// One task (a source or a model) as `affluent status` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    /// `source:NAME` or `model:NAME`.
    pub task: String,
    /// `source` or `model`.
    pub kind: String,
    /// The name.
    pub name: String,
    /// When it runs: the schedule as written, `after inputs` for a model, `-` when unscheduled.
    pub schedule: String,
    /// When its last successful run finished (RFC 3339).
    pub last_success: Option<String>,
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
    /// The error of the last failed run, unless a success came after it (secrets scrubbed).
    pub last_error: Option<String>,
}

/// The range of a coverage request.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CoverageQuery {
    /// Start (included): RFC 3339, a date or date-time in the task's time zone, or relative
    /// (`-30d`). Default: the task's start date, else 30 days ago.
    pub from: Option<String>,
    /// End (excluded), read as `from`. Default: now.
    pub to: Option<String>,
    /// Only this task (`NAME`, `source:NAME` or `model:NAME`).
    pub task: Option<String>,
}

/// Where an interval stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SegmentState {
    /// Loaded.
    Done,
    /// Landed, not loaded yet.
    Landed,
    /// Due, not run yet (or to be retried).
    Pending,
    /// A worker holds it now.
    Running,
    /// Its last attempt failed.
    Failed,
    /// Ended, never recorded since the task's start date.
    Missing,
}

impl From<CoverageState> for SegmentState {
    fn from(s: CoverageState) -> Self {
        match s {
            CoverageState::Done => Self::Done,
            CoverageState::Landed => Self::Landed,
            CoverageState::Pending => Self::Pending,
            CoverageState::Running => Self::Running,
            CoverageState::Failed => Self::Failed,
            CoverageState::Missing => Self::Missing,
        }
    }
}

/// Consecutive intervals in one state.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentView {
    /// Start of the first interval (RFC 3339).
    pub start: String,
    /// End of the last one.
    pub end: String,
    /// Their state.
    pub state: SegmentState,
    /// How many intervals.
    pub intervals: usize,
    /// Whether they are holes (ended, not done).
    pub hole: bool,
    /// The error of the latest failed one (secrets scrubbed).
    pub error: Option<String>,
}

/// One task's intervals over a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct CoverageView {
    /// `source:NAME` or `model:NAME`.
    pub task: String,
    /// The schedule as written.
    pub schedule: String,
    /// The first interval it covers, when it has a start date.
    pub start: Option<String>,
    /// The range shown.
    pub from: String,
    /// Its end (excluded).
    pub to: String,
    /// Intervals per state.
    pub counts: BTreeMap<String, usize>,
    /// Holes in the range.
    pub holes: usize,
    /// Oldest first; a gap between two is time no interval of the task covers.
    pub segments: Vec<SegmentView>,
    /// Why the range cannot be shown for this task (too many intervals: narrow it).
    pub error: Option<String>,
}

/// Which runs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only this task (`NAME`, `source:NAME` or `model:NAME`).
    pub task: Option<String>,
    /// Only failed runs.
    pub failed: Option<bool>,
    /// How many, newest first (1 to 500; default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// One run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    /// The run's id.
    pub id: String,
    /// `source:NAME` or `model:NAME`.
    pub task: String,
    /// The data interval's start.
    pub interval_start: String,
    /// Its end.
    pub interval_end: String,
    /// Why it ran: `live`, `catchup`, `retry`, `backfill`, `upstream`.
    pub trigger: String,
    /// When it started.
    pub started: String,
    /// When it ended (none while running, or if its process died).
    pub finished: Option<String>,
    /// How long it took.
    pub seconds: Option<f64>,
    /// `running`, `success` or `failed`.
    pub status: String,
    /// Records fetched (or rows a model wrote).
    pub records: Option<i64>,
    /// Rows loaded into tables.
    pub loaded: Option<i64>,
    /// Requests sent.
    pub requests: Option<i64>,
    /// Why it failed (the server's message, secrets scrubbed).
    pub error: Option<String>,
}

/// Which intervals of the range run again.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReprocessMode {
    /// Only intervals never run (or still pending).
    None,
    /// Also failed ones: a retry.
    #[default]
    Failed,
    /// Every interval of the range.
    All,
}

impl From<ReprocessMode> for Reprocess {
    fn from(m: ReprocessMode) -> Self {
        match m {
            ReprocessMode::None => Reprocess::None,
            ReprocessMode::Failed => Reprocess::Failed,
            ReprocessMode::All => Reprocess::All,
        }
    }
}

/// A backfill to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBackfill {
    /// The task (`NAME`, `source:NAME` or `model:NAME`).
    pub task: String,
    /// Start (included): RFC 3339, or a date or date-time in the task's time zone.
    pub from: String,
    /// End (excluded).
    pub to: String,
    /// Which intervals that already ran run again (default `failed`).
    #[serde(default)]
    pub reprocess: ReprocessMode,
}

/// Where a backfill started from the dashboard is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackfillView {
    /// Its id.
    pub id: u64,
    /// `source:NAME` or `model:NAME`.
    pub task: String,
    /// The range's start.
    pub from: String,
    /// Its end.
    pub to: String,
    /// Which intervals run again.
    pub reprocess: ReprocessMode,
    /// Who started it.
    pub started_by: String,
    /// When.
    pub started: String,
    /// When it ended.
    pub finished: Option<String>,
    /// `running`, `succeeded` or `failed` (some interval still failed, or it could not run).
    pub status: String,
    /// Intervals to run (of the task asked for).
    pub total: usize,
    /// Intervals that succeeded.
    pub done: usize,
    /// Intervals that failed after every attempt.
    pub failed: usize,
    /// The last error (secrets scrubbed).
    pub error: Option<String>,
}

/// The backfills started from this dashboard, newest first.
#[derive(Debug, Clone, Default)]
pub struct Backfills {
    list: Arc<Mutex<Vec<BackfillView>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl Backfills {
    fn update(&self, id: u64, f: impl FnOnce(&mut BackfillView)) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = list.iter_mut().find(|b| b.id == id) {
            f(b);
        }
    }

    /// Every one, newest first.
    pub fn list(&self) -> Vec<BackfillView> {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn tasks(state: &AppState, now: Timestamp) -> Result<Vec<TaskSpec>, WebError> {
    affluent_pipeline::tasks(state.live.warehouse(), now)
        .map_err(|e| WebError::internal("the project's tasks", e))
}

fn find<'a>(tasks: &'a [TaskSpec], name: &str) -> Result<&'a TaskSpec, WebError> {
    affluent_scheduler::find_task(tasks, name).map_err(|e| WebError::NotFound(e.to_string()))
}

/// The time zone a task's dates are read in.
fn timezone(state: &AppState, task: &TaskId) -> jiff::tz::TimeZone {
    match task.kind {
        TaskKind::Source => state.project.source_timezone(&task.name),
        TaskKind::Model => state.project.timezone.clone(),
    }
}

fn parse_time(
    what: &str,
    text: &str,
    tz: &jiff::tz::TimeZone,
    now: Timestamp,
) -> Result<Timestamp, WebError> {
    affluent_config::parse_start(text, tz, now)
        .map_err(|e| WebError::Invalid(format!("`{what}` {:?}: {e}", crate::shorten(text, 40))))
}

fn pipeline_error(what: &str) -> impl FnOnce(affluent_pipeline::PipelineError) -> WebError + '_ {
    move |e| match e {
        affluent_pipeline::PipelineError::Invalid(m) => WebError::Invalid(m),
        affluent_pipeline::PipelineError::State(e) => WebError::store(e),
        other => WebError::internal(what, other),
    }
}

#[utoipa::path(get, path = "/api/pipeline/tasks", tag = "pipeline",
    responses((status = 200, description = "Every source and model: schedule, last success, next run, holes, quota, last error", body = Vec<TaskView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 500, description = "The project's tasks could not be read; the server's log has the details", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
pub(crate) async fn list_tasks(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Result<Json<Vec<TaskView>>, WebError> {
    let now = Timestamp::now();
    let tasks = tasks(&state, now)?;
    let status = affluent_pipeline::status::status(
        &state.store,
        &tasks,
        state.live.warehouse().connectors(),
        now,
    )
    .await
    .map_err(pipeline_error("the tasks' status"))?;
    Ok(Json(
        status
            .into_iter()
            .map(|s| TaskView {
                task: s.task.to_string(),
                kind: s.task.kind.as_str().to_string(),
                name: s.task.name.clone(),
                schedule: s.schedule,
                last_success: s.last_success,
                next_run: s.next_run,
                holes: s.holes,
                failed: s.failed,
                first_hole: s.first_hole,
                quota_today: s.quota_today,
                last_error: s.last_error,
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/pipeline/coverage", tag = "pipeline", params(CoverageQuery),
    responses((status = 200, description = "Each task's intervals over the range, in runs of one state", body = Vec<CoverageView>),
        (status = 400, description = "A time that does not parse, a reversed range, or one of too many intervals", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 500, description = "The project's tasks could not be read; the server's log has the details", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
pub(crate) async fn coverage(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiQuery(query): ApiQuery<CoverageQuery>,
) -> Result<Json<Vec<CoverageView>>, WebError> {
    let now = Timestamp::now();
    let all = tasks(&state, now)?;
    let chosen: Vec<&TaskSpec> = match &query.task {
        Some(name) => vec![find(&all, name)?],
        None => all.iter().collect(),
    };
    let mut out = Vec::with_capacity(chosen.len());
    for task in chosen {
        let tz = timezone(&state, &task.id);
        let from = match &query.from {
            Some(f) => parse_time("from", f, &tz, now)?,
            None => coverage::default_from(task, now),
        };
        let to = match &query.to {
            Some(t) => parse_time("to", t, &tz, now)?,
            None => now,
        };
        if to <= from {
            return Err(WebError::Invalid(format!(
                "`to` ({to}) must be after `from` ({from})"
            )));
        }
        let c = match coverage::coverage(&state.store, task, from, to, now).await {
            Ok(c) => c,
            // Asked for every task, one whose range is too wide says so and the others show.
            Err(affluent_pipeline::PipelineError::Invalid(m)) if query.task.is_none() => {
                out.push(CoverageView {
                    task: task.id.to_string(),
                    schedule: affluent_pipeline::status::schedule_text(task),
                    start: task.start.map(|s| s.to_string()),
                    from: from.to_string(),
                    to: to.to_string(),
                    counts: BTreeMap::new(),
                    holes: 0,
                    segments: Vec::new(),
                    error: Some(m),
                });
                continue;
            }
            Err(e) => return Err(pipeline_error("coverage")(e)),
        };
        out.push(CoverageView {
            error: None,
            task: c.task.to_string(),
            holes: c.holes(),
            schedule: c.schedule,
            start: c.start.map(|s| s.to_string()),
            from: c.from.to_string(),
            to: c.to.to_string(),
            counts: c
                .counts
                .iter()
                .map(|(s, n)| (s.as_str().to_string(), *n))
                .collect(),
            segments: c
                .segments
                .into_iter()
                .map(|s| SegmentView {
                    start: s.start.to_string(),
                    end: s.end.to_string(),
                    hole: s.state.is_hole(),
                    state: s.state.into(),
                    intervals: s.intervals,
                    error: s.error,
                })
                .collect(),
        });
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/pipeline/runs", tag = "pipeline", params(RunsQuery),
    responses((status = 200, description = "Runs, newest first", body = Vec<RunView>),
        (status = 400, description = "A limit out of 1 to 500, or a query that does not decode", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
pub(crate) async fn runs(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<Json<Vec<RunView>>, WebError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_RUNS).contains(&limit) {
        return Err(WebError::Invalid(format!(
            "`limit` must be between 1 and {MAX_RUNS}, got {limit}"
        )));
    }
    let task = match &query.task {
        Some(name) => Some(find(&tasks(&state, Timestamp::now())?, name)?.id.clone()),
        None => None,
    };
    let rows = state
        .store
        .runs(task.as_ref(), query.failed.unwrap_or(false), limit)
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| RunView {
                seconds: r
                    .finished
                    .map(|f| f.duration_since(r.started).as_secs_f64()),
                id: r.id,
                task: r.task.to_string(),
                interval_start: r.interval.start.to_string(),
                interval_end: r.interval.end.to_string(),
                trigger: r.trigger,
                started: r.started.to_string(),
                finished: r.finished.map(|f| f.to_string()),
                status: r.status,
                records: r.records,
                loaded: r.loaded,
                requests: r.requests,
                error: r.error,
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/pipeline/backfills", tag = "pipeline",
    responses((status = 200, description = "The backfills started from this dashboard since it started, newest first, with their progress", body = Vec<BackfillView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
pub(crate) async fn list_backfills(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Json<Vec<BackfillView>> {
    Json(state.backfills.list())
}

#[utoipa::path(post, path = "/api/pipeline/backfills", tag = "pipeline", request_body = NewBackfill,
    responses((status = 202, description = "Started: it runs in the server, `GET /api/pipeline/backfills` follows it", body = BackfillView),
        (status = 400, description = "Not JSON, a time that does not parse, a reversed range or one ending in the future, more than 1,000 intervals, a task without a schedule, or a source that lacks its settings", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin, or no valid CSRF token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "A backfill of that task started here is still running", body = ErrorBody),
        (status = 413, description = "The body is larger than 2 MiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON, but not of the request body's schema (a missing or mistyped field)", body = ErrorBody),
        (status = 500, description = "The backfill could not be planned; the server's log has the details", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
pub(crate) async fn start_backfill(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ApiJson(body): ApiJson<NewBackfill>,
) -> Result<(StatusCode, Json<BackfillView>), WebError> {
    let now = Timestamp::now();
    let all = tasks(&state, now)?;
    let task = find(&all, &body.task)?.clone();
    if task.id.kind == TaskKind::Source
        && let Err(errors) = state.project.require_sources([task.id.name.as_str()])
    {
        return Err(WebError::Invalid(format!(
            "{} cannot run from this server: {errors}",
            task.id
        )));
    }
    let tz = timezone(&state, &task.id);
    let from = parse_time("from", &body.from, &tz, now)?;
    let to = parse_time("to", &body.to, &tz, now)?;
    let range = Interval::new(from, to).map_err(WebError::Invalid)?;
    if range.end > now {
        return Err(WebError::Invalid(format!(
            "the range ends at {to}, in the future: a backfill runs intervals that have ended"
        )));
    }
    // Checked before anything is recorded: the range's intervals, done or not.
    let in_range = task
        .schedule
        .as_ref()
        .map_or(0, |sch| sch.intervals(range.start, range.end).len());
    if in_range > MAX_BACKFILL_INTERVALS {
        return Err(WebError::Invalid(format!(
            "{in_range} intervals of {} in the range: a backfill from the dashboard covers at most {MAX_BACKFILL_INTERVALS}; narrow the range, or run `affluent backfill`",
            task.id
        )));
    }
    let id = state
        .backfills
        .next
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    let mut view = BackfillView {
        id,
        task: task.id.to_string(),
        from: range.start.to_string(),
        to: range.end.to_string(),
        reprocess: body.reprocess,
        started_by: admin.name.clone(),
        started: now.to_string(),
        finished: None,
        status: "running".into(),
        total: 0,
        done: 0,
        failed: 0,
        error: None,
    };
    // Checked and taken under one lock: two requests at once start one backfill.
    {
        let mut list = state
            .backfills
            .list
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if list
            .iter()
            .any(|b| b.task == view.task && b.status == "running")
        {
            return Err(WebError::Conflict(format!(
                "a backfill of {} started here is still running: wait for it (GET /api/pipeline/backfills)",
                task.id
            )));
        }
        if list.iter().filter(|b| b.status == "running").count() >= MAX_RUNNING {
            return Err(WebError::Conflict(format!(
                "{MAX_RUNNING} backfills started here are running: wait for one to end"
            )));
        }
        list.insert(0, view.clone());
        // The newest finished ones are kept; running ones always.
        let mut finished = 0;
        list.retain(|b| {
            if b.status == "running" {
                return true;
            }
            finished += 1;
            finished <= KEPT_BACKFILLS
        });
    }
    let planned = backfill::plan(
        &state.store,
        &task,
        range.start,
        range.end,
        body.reprocess.into(),
        false,
        false,
    )
    .await
    .map_err(|e| match e {
        affluent_scheduler::SchedulerError::Invalid(m) => WebError::Invalid(m),
        other => WebError::internal("planning the backfill", other),
    });
    let plan = match planned {
        Ok(plan) => plan,
        Err(e) => {
            // Not started: not listed.
            let mut list = state
                .backfills
                .list
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            list.retain(|b| b.id != id);
            return Err(e);
        }
    };
    view.total = plan.to_run.len();
    let total = view.total;
    state.backfills.update(id, |b| b.total = total);
    tracing::info!(
        "dashboard: {} started a backfill of {} over {range} ({} interval(s) to run)",
        admin.name,
        task.id,
        plan.to_run.len()
    );
    let backfills = state.backfills.clone();
    let store = state.store.clone();
    let warehouse = state.live.warehouse().clone();
    let options = Options::from_config(&state.project.scheduler);
    let asked = task.id.clone();
    tokio::spawn(async move {
        let observer = {
            let backfills = backfills.clone();
            let asked = asked.clone();
            move |event: &affluent_core::Progress| {
                if let affluent_core::Progress::Intervals(p) = event
                    && p.task == asked
                {
                    backfills.update(id, |b| {
                        b.done = p.done;
                        b.failed = p.failed;
                        if let Some((_, Err(e))) = &p.last {
                            b.error = Some(e.clone());
                        }
                    });
                }
            }
        };
        // Its own task, so that a panic in it ends the backfill as failed, not "running".
        let run = tokio::spawn(async move {
            backfill::run(
                &store,
                &all,
                Arc::new(Pipeline::new(warehouse)),
                &options,
                &plan,
                range.start,
                range.end,
                ATTEMPTS,
                &observer,
            )
            .await
        });
        let outcome = run.await;
        let finished = Timestamp::now().to_string();
        backfills.update(id, |b| {
            b.finished = Some(finished);
            match outcome {
                Ok(Ok(o)) if o.failed.is_empty() => {
                    b.status = "succeeded".into();
                    if !o.skipped.is_empty() {
                        b.error = Some(format!(
                            "{} interval(s) were left to another process running them",
                            o.skipped.len()
                        ));
                    }
                }
                Ok(Ok(o)) => {
                    b.status = "failed".into();
                    if let Some((task, interval, e)) = o.failed.last() {
                        b.error = Some(format!("{task} {interval}: {e}"));
                    }
                }
                Ok(Err(e)) => {
                    b.status = "failed".into();
                    b.error = Some(e.to_string());
                }
                Err(e) => {
                    tracing::error!("dashboard: backfill {id} stopped: {e}");
                    b.status = "failed".into();
                    b.error = Some(
                        "the backfill stopped unexpectedly; the server's log has the details"
                            .into(),
                    );
                }
            }
        });
    });
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// One rate-limited scope: a source's `rate_limit` or a `[hosts.NAME]`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitView {
    /// `source:NAME` or `host:NAME`.
    pub scope: String,
    /// Requests a second, if limited.
    pub per_second: Option<u32>,
    /// Requests a minute, if limited.
    pub per_minute: Option<u32>,
    /// Requests a day (in the project's time zone), if limited.
    pub per_day: Option<u32>,
    /// Requests counted today against `per_day`, as the project's quota file records them.
    pub used_today: Option<u32>,
    /// When the next request may go, if not now (RFC 3339).
    pub next_allowed: Option<String>,
    /// Why it waits.
    pub waiting_for: Option<String>,
}

#[utoipa::path(get, path = "/api/pipeline/limits", tag = "pipeline",
    responses((status = 200, description = "Every rate-limited source and host: its limits, today's requests against its daily quota, when the next request may go", body = Vec<LimitView>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
pub(crate) async fn limits(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Json<Vec<LimitView>> {
    let limits = state.live.warehouse().connectors().limits(Timestamp::now());
    Json(
        limits
            .into_iter()
            .map(|l| LimitView {
                scope: l.scope,
                per_second: l.per_second,
                per_minute: l.per_minute,
                per_day: l.per_day,
                used_today: l.used_today,
                next_allowed: l.next_allowed.map(|t| t.to_string()),
                waiting_for: l.waiting_for,
            })
            .collect(),
    )
}

/// A level of the log.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LevelName {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Information, warnings and errors.
    Info,
    /// Also debugging details.
    Debug,
    /// Everything.
    Trace,
}

impl From<LevelName> for tracing::Level {
    fn from(l: LevelName) -> Self {
        match l {
            LevelName::Error => tracing::Level::ERROR,
            LevelName::Warn => tracing::Level::WARN,
            LevelName::Info => tracing::Level::INFO,
            LevelName::Debug => tracing::Level::DEBUG,
            LevelName::Trace => tracing::Level::TRACE,
        }
    }
}

/// Which log lines.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only lines numbered after this one (the `last` of the previous answer): what came since.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// This level or more severe (default `info`).
    #[param(inline)]
    pub level: Option<LevelName>,
    /// Only lines whose message or module holds this text (a task: `source:NAME`).
    #[param(max_length = 200)]
    pub task: Option<String>,
    /// At most this many, the newest (1 to 1000; default 200).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Lines of the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    /// Oldest first.
    pub records: Vec<crate::logs::LogRecord>,
    /// The number of the newest line kept: ask `after` it next time.
    pub last: u64,
}

#[utoipa::path(get, path = "/api/pipeline/logs", tag = "pipeline", params(LogsQuery),
    responses((status = 200, description = "The running process's log (its last 5,000 lines), filtered; poll with `after` to follow it", body = LogPage),
        (status = 400, description = "A limit out of 1 to 1000, a negative `after`, a task filter longer than 200 characters, or a query that does not decode", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
pub(crate) async fn logs(
    _admin: AdminUser,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> Result<Json<LogPage>, WebError> {
    let limit = query.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(WebError::Invalid(format!(
            "`limit` must be between 1 and 1000, got {limit}"
        )));
    }
    if query.task.as_ref().is_some_and(|t| t.chars().count() > 200) {
        return Err(WebError::Invalid(
            "`task` is longer than 200 characters".to_string(),
        ));
    }
    let after = query.after.unwrap_or(0);
    let Ok(after) = u64::try_from(after) else {
        return Err(WebError::Invalid(format!(
            "`after` must be 0 or more, got {after}"
        )));
    };
    let (records, last) = crate::logs::global().read(
        after,
        query.level.unwrap_or(LevelName::Info).into(),
        query.task.as_deref().filter(|t| !t.is_empty()),
        limit,
    );
    Ok(Json(LogPage { records, last }))
}
