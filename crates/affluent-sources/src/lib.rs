//! Connectors that bring data in: declarative REST ([`rest`]) and CSV files ([`csv`]).
//!
//! Every connector lands what it receives in the landing zone *before* parsing it, then parses it
//! to count records, reject error payloads and quarantine rows that do not fit. [`Connectors`] is
//! the process-wide runtime: it owns what must be shared between runs (daily quotas, per-host and
//! per-source rate limiters). Connectors know nothing of tables, models or the dashboard.

pub mod csv;
mod error;
pub mod http;
pub mod paginate;
pub mod records;
pub mod rest;
pub mod state;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use affluent_config::Project;
use affluent_config::schema::{RateLimitConfig, SourceConfig};
use affluent_core::progress::{Observer, Progress, RequestProgress};
use affluent_core::{Interval, JsonPath};
use affluent_landing::{Entry, Landing, NewEntry, Quarantine, Reject};
use jiff::{Timestamp, ToSpan, Zoned};
use serde_json::Value;

pub use error::{SourceError, is_retryable_status};
use http::{HttpClient, HttpClientParts, Limits, RetryPolicy};
use state::{CacheEntry, ChangeCache, QuotaStore};

/// How to run an ingestion.
#[derive(Clone, Default)]
pub struct IngestOptions {
    /// The data interval; by default the last complete period of the source's `interval`.
    pub interval: Option<Interval>,
    /// Told of each request chain that finishes ([`Progress::Requests`]).
    pub observer: Option<Arc<dyn Observer>>,
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
        )
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

/// The process-wide runtime of connectors.
pub struct Connectors {
    project: Project,
    quotas: Arc<QuotaStore>,
    hosts: Vec<(String, Arc<Limits>)>,
    source_limits: Mutex<HashMap<String, Arc<Limits>>>,
}

impl Connectors {
    /// Opens the runtime of a project (reads its quota state).
    pub fn new(project: Project) -> Result<Self, SourceError> {
        let quotas = Arc::new(QuotaStore::open(&project.data_dir)?);
        let hosts = project
            .hosts
            .iter()
            .map(|(h, c)| (h.clone(), Arc::new(Limits::new(format!("host:{h}"), c))))
            .collect();
        Ok(Self {
            project,
            quotas,
            hosts,
            source_limits: Mutex::new(HashMap::new()),
        })
    }

    /// The project.
    pub fn project(&self) -> &Project {
        &self.project
    }

    /// Today's requests against a source's daily quota, and the quota (`None` without one). The
    /// day is the project's, as the quota counts it.
    pub fn quota_today(&self, source: &str) -> Option<(u32, u32)> {
        let limit = match self.project.sources.get(source)? {
            SourceConfig::Rest(r) => r.rate_limit.as_ref()?.per_day?,
            SourceConfig::Csv(_) => return None,
        };
        let day = Timestamp::now()
            .to_zoned(self.project.timezone.clone())
            .date()
            .to_string();
        Some((self.quotas.used(&format!("source:{source}"), &day), limit))
    }

    /// The landing zone.
    pub fn landing(&self) -> Landing {
        Landing::open(&self.project.data_dir)
    }

    /// The quarantine.
    pub fn quarantine(&self) -> Quarantine {
        Quarantine::open(&self.project.data_dir)
    }

    fn source(&self, name: &str) -> Result<&SourceConfig, SourceError> {
        self.project.sources.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.project.sources.keys().map(String::as_str).collect();
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
        let period = match self.source(source)? {
            SourceConfig::Rest(r) => r.interval.map(|d| d.get()),
            SourceConfig::Csv(_) => None,
        }
        .unwrap_or(Duration::from_secs(86_400));
        let tz = self.project.source_timezone(source);
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

    fn limits_for(&self, name: &str, config: Option<&RateLimitConfig>) -> Arc<Limits> {
        let mut map = self.source_limits.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Limits::new(
                    format!("source:{name}"),
                    &config.cloned().unwrap_or_default(),
                ))
            })
            .clone()
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
            .ingest_inner(source, interval, &run_id, None, options.observer.as_deref())
            .await?;
        Ok(summary)
    }

    /// Runs a source; when `collect` is a field path, also returns that field's distinct values
    /// over every record (for a source that resolves over this one).
    fn ingest_inner<'a>(
        &'a self,
        source: &'a str,
        interval: Interval,
        run_id: &'a str,
        collect: Option<JsonPath>,
        observer: Option<&'a dyn Observer>,
    ) -> futures::future::BoxFuture<'a, Result<(RunSummary, Vec<String>), SourceError>> {
        Box::pin(async move {
            let started = Instant::now();
            let config = self.source(source)?;
            if let Some(errors) = self.project.unavailable.get(source) {
                return Err(SourceError::Unavailable {
                    name: source.to_string(),
                    errors: errors.clone(),
                });
            }
            let mut summary = RunSummary {
                source: source.to_string(),
                run_id: run_id.to_string(),
                interval: Some(interval),
                ..RunSummary::default()
            };
            let values = match config {
                SourceConfig::Rest(rest) => {
                    let parent_values = match rest.resolve() {
                        Some((_, resolve)) => {
                            let parent = resolve.resource.clone();
                            let path = JsonPath::parse(&resolve.field)
                                .map_err(|e| SourceError::Plan(e.to_string()))?;
                            let (parent_summary, values) = self
                                .ingest_inner(&parent, interval, run_id, Some(path), observer)
                                .await?;
                            tracing::info!("{parent_summary}");
                            if !parent_summary.errors.is_empty() {
                                summary.errors.extend(
                                    parent_summary
                                        .errors
                                        .iter()
                                        .map(|e| format!("{parent}: {e}")),
                                );
                            }
                            values
                        }
                        None => Vec::new(),
                    };
                    let tz = self.project.source_timezone(source);
                    let client = HttpClient::new(HttpClientParts {
                        redactor: self.project.redactor.clone(),
                        retry: RetryPolicy::from(rest.retry.as_ref()),
                        timeout: Duration::from_secs(rest.client.timeout_secs.unwrap_or(30)),
                        auth: rest.client.auth.clone(),
                        headers: rest.client.headers.clone().into_iter().collect(),
                        source_limits: self.limits_for(source, rest.rate_limit.as_ref()),
                        host_limits: self.hosts.clone(),
                        quotas: self.quotas.clone(),
                        tz: self.project.timezone.clone(),
                    })?;
                    let stats = client.stats.clone();
                    let cache = if rest.change_detection.unwrap_or(true) {
                        Some(ChangeCache::open(&self.project.data_dir, source)?)
                    } else {
                        None
                    };
                    let run = rest::RestRun {
                        name: source,
                        config: rest,
                        client,
                        landing: self.landing(),
                        cache,
                        run_id: run_id.to_string(),
                        interval,
                        tz,
                        counters: Arc::default(),
                    };
                    let calls = run.plan(&parent_values)?;
                    let (records, errors) = run.run(calls, collect.is_some(), observer).await;
                    summary.requests = stats.requests.load(Ordering::Relaxed);
                    summary.retries = stats.retries.load(Ordering::Relaxed);
                    summary.bytes = stats.bytes.load(Ordering::Relaxed);
                    summary.landed = run.counters.landed.load(Ordering::Relaxed);
                    summary.unchanged = run.counters.unchanged.load(Ordering::Relaxed);
                    summary.records = run.counters.records.load(Ordering::Relaxed);
                    summary.warnings = run
                        .counters
                        .warnings
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    summary
                        .errors
                        .extend(errors.iter().map(ToString::to_string));
                    distinct_values(&records, collect.as_ref())
                }
                SourceConfig::Csv(csv_config) => {
                    // Files have no data interval: each run reads what the glob matches.
                    summary.interval = None;
                    let records = self.ingest_csv(
                        source,
                        csv_config,
                        run_id,
                        &mut summary,
                        collect.is_some(),
                        observer,
                    )?;
                    distinct_values(&records, collect.as_ref())
                }
            };
            summary.duration_ms = started.elapsed().as_millis() as u64;
            Ok((summary, values))
        })
    }

    fn ingest_csv(
        &self,
        source: &str,
        config: &affluent_config::schema::CsvSourceConfig,
        run_id: &str,
        summary: &mut RunSummary,
        collect: bool,
        observer: Option<&dyn Observer>,
    ) -> Result<Vec<Value>, SourceError> {
        let files = csv::files(&self.project.dir, config).map_err(SourceError::Files)?;
        let total = files.len() as u64;
        // One event per file read, whatever became of it.
        let report = |summary: &RunSummary| {
            if let Some(observer) = observer {
                observer.observe(&Progress::Requests(RequestProgress {
                    source: source.to_string(),
                    done: summary.requests,
                    total,
                    failed: summary.errors.len() as u64,
                    records: summary.records,
                    landed: summary.landed,
                    unchanged: summary.unchanged,
                }));
            }
        };
        let landing = self.landing();
        let quarantine = self.quarantine();
        let cache = ChangeCache::open(&self.project.data_dir, source)?;
        let mut collected = Vec::new();
        for path in files {
            summary.requests += 1;
            let shown = path
                .strip_prefix(&self.project.dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    summary.errors.push(format!("cannot read {shown}: {e}"));
                    report(summary);
                    continue;
                }
            };
            summary.bytes += bytes.len() as u64;
            let hash = affluent_landing::content_hash(&bytes);
            let key = format!("file:{shown}");
            if cache.get(&key).is_some_and(|c| {
                c.content_hash == hash && landing.has_body_by_id(source, &c.entry_id)
            }) {
                summary.unchanged += 1;
                report(summary);
                continue;
            }
            let meta = landing.write(
                NewEntry {
                    source: source.to_string(),
                    run_id: run_id.to_string(),
                    kind: "file".into(),
                    url: shown.clone(),
                    method: None,
                    request_body: None,
                    vars: Default::default(),
                    page: 0,
                    status: 200,
                    headers: csv::file_headers(&path),
                    fetched_at: Timestamp::now(),
                    interval: None,
                },
                &bytes,
            )?;
            summary.landed += 1;
            match csv::parse(&bytes, config, source, &meta.entry_id) {
                Ok(parsed) => {
                    quarantine.put(source, &meta.entry_id, &parsed.rejects)?;
                    summary.records += parsed.records.len() as u64;
                    summary.quarantined += parsed.rejects.len() as u64;
                    if !parsed.rejects.is_empty() {
                        summary.warnings.push(format!(
                            "{shown}: {} rows quarantined (first: {} {})",
                            parsed.rejects.len(),
                            parsed.rejects[0].location,
                            parsed.rejects[0].reason
                        ));
                    }
                    if collect {
                        collected.extend(parsed.records);
                    }
                }
                Err(reason) => {
                    landing.reject(&meta, &reason)?;
                    summary.errors.push(format!("{shown}: {reason}"));
                    // Not remembered as seen: after a fix to the project file, the same bytes
                    // are read again.
                    report(summary);
                    continue;
                }
            }
            cache.put(
                &key,
                CacheEntry {
                    etag: None,
                    last_modified: None,
                    content_hash: hash,
                    entry_id: meta.entry_id.clone(),
                },
            );
            cache.flush()?;
            report(summary);
        }
        Ok(collected)
    }

    /// The records of one landing entry, parsed again from landing alone (no network): the
    /// building block of loads and replays. Rejected entries have no records.
    pub fn records_of(&self, entry: &Entry) -> Result<(Vec<Value>, Vec<Reject>), SourceError> {
        if let Some(reason) = &entry.rejected {
            return Err(SourceError::Plan(format!(
                "landing entry {} was rejected: {reason}",
                entry.meta.entry_id
            )));
        }
        let body = self.landing().read_body(&entry.meta)?;
        match self.source(&entry.meta.source)? {
            SourceConfig::Rest(rest) => {
                let selector = records::data_selector(rest)?;
                let page =
                    records::select_page(&body, selector.as_ref()).map_err(SourceError::Plan)?;
                Ok((page.values().map_err(SourceError::Plan)?, Vec::new()))
            }
            SourceConfig::Csv(config) => {
                let parsed = csv::parse(&body, config, &entry.meta.source, &entry.meta.entry_id)
                    .map_err(SourceError::Plan)?;
                Ok((parsed.records, parsed.rejects))
            }
        }
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
