//! Connectors that bring data in: declarative REST ([`rest`]) and CSV files ([`csv`]), each a
//! [`Source`] built by the [`registry`].
//!
//! Every connector lands what it receives in the landing zone *before* parsing it, then parses it
//! to count records, reject error payloads and quarantine rows that do not fit. [`Connectors`] is
//! the process-wide runtime: it builds each source's connector once and owns what runs share
//! ([`source::Shared`]: daily quotas, per-host and per-source rate limiters). Connectors know
//! nothing of tables, models or the dashboard, and draw nothing: progress goes to an
//! [`Observer`].

pub mod csv;
mod error;
pub mod registry;
pub mod rest;
pub mod source;
pub mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use affluent_config::Project;
use affluent_config::schema::RateLimitConfig;
use affluent_core::progress::Observer;
use affluent_core::{Interval, JsonPath, TaskId};
use affluent_landing::{Entry, Landing, Quarantine, Reject};
use jiff::{Timestamp, ToSpan, Zoned};
use serde_json::Value;

pub use error::{SourceError, is_retryable_status};
pub use source::{RunContext, Shared, Source};

/// How to run an ingestion.
#[derive(Clone, Default)]
pub struct IngestOptions {
    /// The data interval; by default the last complete period of the source's `interval`.
    pub interval: Option<Interval>,
    /// Told of each request chain that finishes ([`affluent_core::Progress::Requests`]).
    pub observer: Option<Arc<dyn Observer>>,
    /// Records every answer of the source's run (not its parent's) for a cassette.
    pub recorder: Option<Arc<rest::cassette::Recorder>>,
}

impl std::fmt::Debug for IngestOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestOptions")
            .field("interval", &self.interval)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunSummary {
    /// Source name.
    pub source: String,
    /// Run id (landing entries carry it).
    pub run_id: String,
    /// The data interval.
    pub interval: Option<Interval>,
    /// Requests sent (retries included) or files read.
    pub requests: u64,
    /// Retries.
    pub retries: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Bodies or files written to landing.
    pub landed: u64,
    /// Responses or files identical to the last ones, not landed again.
    pub unchanged: u64,
    /// Records in what was landed.
    pub records: u64,
    /// Rows sent to quarantine.
    pub quarantined: u64,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Errors of failed requests or files (the rest of the run was kept).
    pub errors: Vec<String>,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// The cassette the answers came from, when the source replayed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_from: Option<String>,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} requests ({} retries), {} received, {} landed, {} unchanged, {} records, {} quarantined, {} errors in {}",
            self.source,
            self.requests,
            self.retries,
            human_bytes(self.bytes),
            self.landed,
            self.unchanged,
            self.records,
            self.quarantined,
            self.errors.len(),
            affluent_core::format_duration(Duration::from_millis(self.duration_ms)),
        )?;
        if let Some(path) = &self.replayed_from {
            write!(f, " (replayed from {path})")?;
        }
        Ok(())
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// One rate-limited scope as it stands now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LimitStatus {
    /// `source:NAME` or `host:NAME`.
    pub scope: String,
    /// Requests a second, if limited.
    pub per_second: Option<u32>,
    /// Requests a minute, if limited.
    pub per_minute: Option<u32>,
    /// Requests a day (in the project's time zone), if limited.
    pub per_day: Option<u32>,
    /// Requests counted today against `per_day`.
    pub used_today: Option<u32>,
    /// When the next request may go, if not now.
    pub next_allowed: Option<Timestamp>,
    /// Why it waits.
    pub waiting_for: Option<String>,
}

/// The process-wide runtime of connectors: each source's connector, built once, and what their
/// runs share.
pub struct Connectors {
    shared: Shared,
    sources: BTreeMap<String, Arc<dyn Source>>,
}

impl std::fmt::Debug for Connectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connectors")
            .field("project", &self.shared.project.name)
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Connectors {
    /// Opens the runtime of a project: builds every source's connector (through the
    /// [`registry`]) and reads the quota state.
    pub fn new(project: Project) -> Result<Self, SourceError> {
        let sources = project
            .sources
            .iter()
            .map(|(name, config)| Ok((name.clone(), registry::build(config)?)))
            .collect::<Result<_, SourceError>>()?;
        Ok(Self {
            shared: Shared::open(project)?,
            sources,
        })
    }

    /// The project.
    pub fn project(&self) -> &Project {
        &self.shared.project
    }

    /// Today's requests against a source's daily quota, and the quota (`None` without one). The
    /// day is the project's, as the quota counts it.
    pub fn quota_today(&self, source: &str) -> Option<(u32, u32)> {
        self.quota_today_in(source, false)
    }

    /// [`Connectors::quota_today`] as the project's quota file records it (what the scheduler
    /// process used, seen from a dashboard or `affluent status`): the file is read again.
    pub fn quota_today_recorded(&self, source: &str) -> Option<(u32, u32)> {
        self.quota_today_in(source, true)
    }

    fn quota_today_in(&self, source: &str, from_file: bool) -> Option<(u32, u32)> {
        let limit = self.sources.get(source)?.daily_quota()?;
        let day = Timestamp::now()
            .to_zoned(self.project().timezone.clone())
            .date()
            .to_string();
        let scope = TaskId::source(source).to_string();
        let used = if from_file {
            self.shared.quotas.used_by_any(&scope, &day)
        } else {
            self.shared.quotas.used(&scope, &day)
        };
        Some((used, limit))
    }

    /// Every rate-limited scope (a source's `rate_limit`, a `[hosts.NAME]`): its limits, what
    /// today's daily quota has used, and when the next request may go (`None`: now).
    pub fn limits(&self, now: Timestamp) -> Vec<LimitStatus> {
        let tz = self.project().timezone.clone();
        let today = now.to_zoned(tz.clone());
        let day = today.date().to_string();
        let tomorrow = today
            .date()
            .tomorrow()
            .ok()
            .and_then(|d| d.to_zoned(tz).ok())
            .map(|z| z.timestamp());
        let status = |scope: String, host: Option<&str>, l: &RateLimitConfig| {
            let used = l
                .per_day
                .map(|_| self.shared.quotas.used_by_any(&scope, &day));
            let (next_allowed, waiting_for) = match (l.per_day, used) {
                (Some(limit), Some(used)) if used >= limit => {
                    (tomorrow, Some(format!("today's {limit} requests are used")))
                }
                _ => match host.and_then(|h| self.shared.pauses.until(h)) {
                    Some(wait) => (
                        jiff::SignedDuration::try_from(wait)
                            .ok()
                            .and_then(|w| now.checked_add(w).ok()),
                        Some("the server asked to wait (Retry-After)".to_string()),
                    ),
                    None => (None, None),
                },
            };
            LimitStatus {
                scope,
                per_second: l.per_second,
                per_minute: l.per_minute,
                per_day: l.per_day,
                used_today: used,
                next_allowed,
                waiting_for,
            }
        };
        let mut out: Vec<LimitStatus> = self
            .sources
            .iter()
            .filter_map(|(name, s)| {
                s.rate_limit()
                    .map(|l| status(TaskId::source(name).to_string(), None, l))
            })
            .collect();
        for (host, l) in &self.project().hosts {
            out.push(status(format!("host:{host}"), Some(host), l));
        }
        out
    }

    /// The landing zone.
    pub fn landing(&self) -> Landing {
        self.shared.landing()
    }

    /// The quarantine.
    pub fn quarantine(&self) -> Quarantine {
        self.shared.quarantine()
    }

    fn source(&self, name: &str) -> Result<&Arc<dyn Source>, SourceError> {
        self.sources.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.sources.keys().map(String::as_str).collect();
            let hint = affluent_core::closest(name, &known)
                .map(|k| format!("; did you mean `{k}`?"))
                .unwrap_or_default();
            SourceError::UnknownSource {
                name: name.to_string(),
                hint,
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            }
        })
    }

    /// The interval `ingest` uses when none is given: the last complete period of the source's
    /// `interval` (default one day) in its time zone.
    pub fn default_interval(&self, source: &str, now: Timestamp) -> Result<Interval, SourceError> {
        let period = self.source(source)?.default_period();
        let tz = self.project().source_timezone(source);
        let now = now.to_zoned(tz);
        let secs = period.as_secs().max(1) as i64;
        let end: Zoned = if secs % 86_400 == 0 {
            now.start_of_day()
                .map_err(|e| SourceError::Plan(e.to_string()))?
        } else {
            let since_midnight = now
                .start_of_day()
                .map(|d| now.timestamp().as_second() - d.timestamp().as_second())
                .unwrap_or(0);
            now.checked_sub((since_midnight % secs).seconds())
                .and_then(|z| z.with().subsec_nanosecond(0).build())
                .map_err(|e| SourceError::Plan(e.to_string()))?
        };
        let start = if secs % 86_400 == 0 {
            end.checked_sub((secs / 86_400).days())
        } else {
            end.checked_sub(secs.seconds())
        }
        .map_err(|e| SourceError::Plan(e.to_string()))?;
        Interval::new(start.timestamp(), end.timestamp()).map_err(SourceError::Plan)
    }

    /// Runs one source for one interval: fetch, land, parse, quarantine.
    pub async fn ingest(
        &self,
        source: &str,
        options: &IngestOptions,
    ) -> Result<RunSummary, SourceError> {
        let interval = match options.interval {
            Some(i) => i,
            None => self.default_interval(source, Timestamp::now())?,
        };
        let run_id = new_run_id();
        let (summary, _) = self
            .ingest_inner(
                source,
                interval,
                &run_id,
                None,
                options.observer.as_deref(),
                options.recorder.as_deref(),
            )
            .await?;
        Ok(summary)
    }

    /// Runs a source; when `collect` is a field path, also returns that field's distinct values
    /// over every record (for a source that resolves over this one). A source with a parent
    /// runs it first, for the values of its parameter.
    fn ingest_inner<'a>(
        &'a self,
        source: &'a str,
        interval: Interval,
        run_id: &'a str,
        collect: Option<&'a JsonPath>,
        observer: Option<&'a dyn Observer>,
        recorder: Option<&'a rest::cassette::Recorder>,
    ) -> futures::future::BoxFuture<'a, Result<(RunSummary, Vec<String>), SourceError>> {
        Box::pin(async move {
            let started = Instant::now();
            let connector = self.source(source)?;
            if let Some(errors) = self.project().unavailable.get(source) {
                return Err(SourceError::Unavailable {
                    name: source.to_string(),
                    errors: errors.clone(),
                });
            }
            let mut summary = RunSummary {
                source: source.to_string(),
                run_id: run_id.to_string(),
                interval: connector.has_interval().then_some(interval),
                ..RunSummary::default()
            };
            let parent_values = match connector.parent() {
                Some((parent, field)) => {
                    let (parent_summary, values) = self
                        .ingest_inner(parent, interval, run_id, Some(field), observer, None)
                        .await?;
                    tracing::info!("{parent_summary}");
                    summary.errors.extend(
                        parent_summary
                            .errors
                            .iter()
                            .map(|e| format!("{parent}: {e}")),
                    );
                    values
                }
                None => Vec::new(),
            };
            let ctx = RunContext {
                name: source,
                run_id,
                interval,
                parent_values: &parent_values,
                collect: collect.is_some(),
                observer,
                recorder,
                shared: &self.shared,
            };
            let records = connector.run(ctx, &mut summary).await?;
            // Durable before the run reports success (and its interval counts as landed).
            self.shared.landing().sync(run_id)?;
            summary.duration_ms = started.elapsed().as_millis() as u64;
            Ok((summary, distinct_values(&records, collect)))
        })
    }

    /// The records of one landing entry, parsed again from landing alone (no network): the
    /// building block of loads and replays. Rejected entries have no records.
    pub fn records_of(&self, entry: &Entry) -> Result<(Vec<Value>, Vec<Reject>), SourceError> {
        let (connector, body) = self.landed(entry)?;
        connector.records(entry, &body)
    }

    /// The connector and the body of a landing entry that was not rejected.
    fn landed(&self, entry: &Entry) -> Result<(&dyn Source, Vec<u8>), SourceError> {
        if let Some(reason) = &entry.rejected {
            return Err(SourceError::Plan(format!(
                "landing entry {} was rejected: {reason}",
                entry.meta.entry_id
            )));
        }
        let connector = self.source(&entry.meta.source)?.as_ref();
        let body = self.landing().read_body(&entry.meta)?;
        Ok((connector, body))
    }

    /// The records of one landing entry in chunks of at most `max` ([`Source::records_chunked`]):
    /// what a load holds at a time.
    pub fn records_chunked(
        &self,
        entry: &Entry,
        max: usize,
        each: &mut dyn FnMut(Vec<Value>, Vec<Reject>),
    ) -> Result<(), SourceError> {
        let (connector, body) = self.landed(entry)?;
        connector.records_chunked(entry, &body, max, each)
    }
}

fn distinct_values(records: &[Value], field: Option<&JsonPath>) -> Vec<String> {
    let Some(field) = field else {
        return Vec::new();
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for r in records {
        let v = match field.get(r) {
            // An empty cell is no value (a watch list row without this source's id).
            Some(Value::String(s)) if s.trim().is_empty() => continue,
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            _ => continue,
        };
        if seen.insert(v.clone()) {
            out.push(v);
        }
    }
    out
}

/// A short random id for a run.
pub fn new_run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}
