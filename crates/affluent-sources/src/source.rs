//! The [`Source`] trait: what every connector does, and [`RunContext`], what the runtime hands
//! one run. A connector is a folder (`rest/`, `csv/`) with its runtime type implementing
//! [`Source`]; its configuration and checks live in affluent-config's `sources/`. The
//! [`registry`](crate::registry) is the one list that turns a configuration into a connector.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use affluent_config::Project;
use affluent_config::schema::RateLimitConfig;
use affluent_core::progress::Observer;
use affluent_core::{Interval, JsonPath, TaskId};
use affluent_landing::{Entry, Landing, Quarantine, Reject};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::rest::http::{HostPauses, Limits};
use crate::state::QuotaStore;
use crate::{RunSummary, SourceError};

/// A connector, built once per process from a source's configuration.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// The `type` it was built from (`rest`, `csv`).
    fn kind(&self) -> &'static str;

    /// Whether runs cover a data interval (a CSV source reads whatever its glob matches).
    fn has_interval(&self) -> bool {
        true
    }

    /// The length of the data interval `ingest` covers when given none (default one day).
    fn default_period(&self) -> Duration {
        Duration::from_secs(86_400)
    }

    /// The daily request quota, if the source has one.
    fn daily_quota(&self) -> Option<u32> {
        None
    }

    /// The source's own rate limits, if it has some.
    fn rate_limit(&self) -> Option<&RateLimitConfig> {
        None
    }

    /// The source whose records give one of this source's parameters, and the field read.
    fn parent(&self) -> Option<(&str, &JsonPath)> {
        None
    }

    /// One run: fetch, land every body before parsing it, parse, quarantine. Counts go into
    /// `summary`; failed requests are kept in `summary.errors` (the rest of the run goes on).
    /// When `ctx.collect` is set, returns the records (for a source that resolves over this one).
    fn run<'a>(
        &'a self,
        ctx: RunContext<'a>,
        summary: &'a mut RunSummary,
    ) -> BoxFuture<'a, Result<Vec<Value>, SourceError>>;

    /// The records of one landed body, parsed again from landing alone (no network).
    fn records(&self, entry: &Entry, body: &[u8])
    -> Result<(Vec<Value>, Vec<Reject>), SourceError>;

    /// The records of one landed body in chunks of at most `max` records, each handed to `each`
    /// with the rejects found since the previous one, so that a load holds one chunk at a time.
    /// The default parses the whole body, then hands it over chunk by chunk.
    fn records_chunked(
        &self,
        entry: &Entry,
        body: &[u8],
        max: usize,
        each: &mut dyn FnMut(Vec<Value>, Vec<Reject>),
    ) -> Result<(), SourceError> {
        let (records, mut rejects) = self.records(entry, body)?;
        let max = max.max(1);
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<Value> = records.by_ref().take(max).collect();
            each(chunk, std::mem::take(&mut rejects));
        }
        if !rejects.is_empty() {
            each(Vec::new(), rejects);
        }
        Ok(())
    }
}

/// What the runtime hands one run of a source.
#[derive(Clone, Copy)]
pub struct RunContext<'a> {
    /// The source's name.
    pub name: &'a str,
    /// The run's id (landing entries carry it).
    pub run_id: &'a str,
    /// The data interval.
    pub interval: Interval,
    /// The values of the parent's field, when the source has a [`Source::parent`].
    pub parent_values: &'a [String],
    /// Whether the records are wanted back (a child resolves over them).
    pub collect: bool,
    /// Told of each request chain or file that finishes.
    pub observer: Option<&'a dyn Observer>,
    /// Where a REST source records its answers (`affluent record`): the run then calls the API
    /// even if the source replays, and asks for every body whole.
    pub recorder: Option<&'a crate::rest::cassette::Recorder>,
    /// What every run of the process shares.
    pub shared: &'a Shared,
}

impl std::fmt::Debug for RunContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("name", &self.name)
            .field("run_id", &self.run_id)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// What the runs of one process share: the project, the daily quotas, the per-host and
/// per-source rate limiters.
#[derive(Debug)]
pub struct Shared {
    /// The project.
    pub project: Project,
    /// Daily quotas, persisted.
    pub(crate) quotas: Arc<QuotaStore>,
    /// Limiters of `[hosts]`.
    pub(crate) hosts: Vec<(String, Arc<Limits>)>,
    /// Pauses per host asked for by `Retry-After`.
    pub(crate) pauses: Arc<HostPauses>,
    source_limits: Mutex<HashMap<String, Arc<Limits>>>,
    /// One landing per process: its writers group the entries of concurrent runs.
    landing: Landing,
    /// The HTTP connection pool of the REST sources, made by the first run.
    http: Mutex<Option<reqwest::Client>>,
    /// Per source, its requests in flight across its runs.
    request_slots: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl Shared {
    /// Opens the shared state of a project (reads its quota state).
    pub(crate) fn open(project: Project) -> Result<Self, SourceError> {
        let quotas = Arc::new(QuotaStore::open(&project.data_dir)?);
        let hosts = project
            .hosts
            .iter()
            .map(|(h, c)| (h.clone(), Arc::new(Limits::new(format!("host:{h}"), c))))
            .collect();
        Ok(Self {
            landing: Landing::open(&project.data_dir),
            http: Mutex::default(),
            request_slots: Mutex::default(),
            project,
            quotas,
            hosts,
            pauses: Arc::default(),
            source_limits: Mutex::new(HashMap::new()),
        })
    }

    /// The landing zone.
    pub fn landing(&self) -> Landing {
        self.landing.clone()
    }

    /// The quarantine.
    pub fn quarantine(&self) -> Quarantine {
        Quarantine::open(&self.project.data_dir)
    }

    /// The HTTP client of the process's REST sources (one connection pool).
    pub(crate) fn http_client(&self) -> Result<reqwest::Client, SourceError> {
        let mut slot = self.http.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = crate::rest::http::build_client()?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// The request slots of a source (`concurrency` of them), the same for every run of the
    /// process.
    pub(crate) fn request_slots(&self, name: &str, n: usize) -> Arc<tokio::sync::Semaphore> {
        let mut map = self.request_slots.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(n)))
            .clone()
    }

    /// The limiter of a source, the same for every run of the process.
    pub(crate) fn limits_for(&self, name: &str, config: Option<&RateLimitConfig>) -> Arc<Limits> {
        let mut map = self.source_limits.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Limits::new(
                    TaskId::source(name).to_string(),
                    &config.cloned().unwrap_or_default(),
                ))
            })
            .clone()
    }
}
