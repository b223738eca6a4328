//! The REST connector (`type = "rest"`): [`RestSource`] plans a run's request chains (fan-out
//! over static values, a parent source's records and a time grid), walks each chain's pages
//! ([`paginate`]), sends them with auth, limits, retries and timeouts ([`http`]), lands every
//! new body before parsing it, and finds the records with the data selector ([`records`]).

pub mod cassette;
pub mod http;
pub mod paginate;
pub mod records;
mod run;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use affluent_config::schema::RestSourceConfig;
use affluent_core::JsonPath;
use affluent_landing::{Entry, Reject};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::source::{RunContext, Source};
use crate::state::ChangeCache;
use crate::{RunSummary, SourceError};
use http::{HttpClient, HttpClientParts, RetryPolicy};

/// A REST source, built from its configuration.
#[derive(Debug)]
pub struct RestSource {
    config: RestSourceConfig,
    /// `client.base_url`'s origin: the only one that sees the credentials.
    origin: url::Origin,
    selector: Option<JsonPath>,
    parent: Option<(String, JsonPath)>,
    /// The change cache, opened by the first run of the process and shared by the next ones.
    cache: std::sync::Mutex<Option<Arc<ChangeCache>>>,
    /// The cassette, read by the first run that replays it.
    cassette: std::sync::Mutex<Option<Arc<cassette::Cassette>>>,
    /// The parameters whose value comes from the data interval: a replay may differ there.
    interval_params: std::collections::BTreeSet<String>,
}

impl RestSource {
    /// The connector of a `type = "rest"` source.
    pub fn new(config: &RestSourceConfig) -> Result<Self, SourceError> {
        let selector = config
            .endpoint
            .data_selector
            .as_ref()
            .map(|s| s.path().clone());
        let parent = match config.resolve() {
            Some((_, resolve)) => Some((
                resolve.resource.clone(),
                JsonPath::parse(&resolve.field).map_err(|e| SourceError::Plan(e.to_string()))?,
            )),
            None => None,
        };
        let origin = url::Url::parse(&config.client.base_url)
            .map_err(|e| SourceError::Plan(format!("client.base_url: {e}")))?
            .origin();
        Ok(Self {
            config: config.clone(),
            origin,
            selector,
            parent,
            cache: std::sync::Mutex::default(),
            cassette: std::sync::Mutex::default(),
            interval_params: interval_params(config),
        })
    }
}

/// The parameters whose template reads the data interval or a time-grid step.
fn interval_params(config: &RestSourceConfig) -> std::collections::BTreeSet<String> {
    let grid = config
        .fan_out
        .as_ref()
        .and_then(|f| f.time.as_ref())
        .map(|g| g.name.clone().unwrap_or_else(|| "step".to_string()));
    config
        .endpoint
        .params
        .iter()
        .filter_map(|(name, value)| match value {
            affluent_config::schema::ParamValue::Text(t) => {
                let template = affluent_core::template::Template::parse(t).ok()?;
                let timed = template.variables().any(|v| {
                    v.starts_with("interval.")
                        || v == "now"
                        || grid
                            .as_deref()
                            .is_some_and(|g| v == g || v.strip_prefix(g) == Some(".end"))
                });
                timed.then(|| name.clone())
            }
            _ => None,
        })
        .collect()
}

impl RestSource {
    fn cassette(
        &self,
        path: &std::path::Path,
        name: &str,
    ) -> Result<Arc<cassette::Cassette>, SourceError> {
        let mut slot = self.cassette.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(cassette::Cassette::open(path, name)?);
        *slot = Some(c.clone());
        Ok(c)
    }

    fn change_cache(
        &self,
        data_dir: &std::path::Path,
        name: &str,
    ) -> Result<Arc<ChangeCache>, SourceError> {
        let mut slot = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cache) = slot.as_ref() {
            return Ok(cache.clone());
        }
        let cache = Arc::new(ChangeCache::open(data_dir, name)?);
        *slot = Some(cache.clone());
        Ok(cache)
    }
}

impl Source for RestSource {
    fn kind(&self) -> &'static str {
        "rest"
    }

    fn default_period(&self) -> Duration {
        self.config
            .interval
            .map_or(Duration::from_secs(86_400), |d| d.get())
    }

    fn daily_quota(&self) -> Option<u32> {
        self.config.rate_limit.as_ref()?.per_day
    }

    fn rate_limit(&self) -> Option<&affluent_config::schema::RateLimitConfig> {
        self.config.rate_limit.as_ref()
    }

    fn parent(&self) -> Option<(&str, &JsonPath)> {
        self.parent
            .as_ref()
            .map(|(name, path)| (name.as_str(), path))
    }

    fn run<'a>(
        &'a self,
        ctx: RunContext<'a>,
        summary: &'a mut RunSummary,
    ) -> BoxFuture<'a, Result<Vec<Value>, SourceError>> {
        Box::pin(async move {
            let rest = &self.config;
            let shared = ctx.shared;
            let project = &shared.project;
            let client = HttpClient::new(HttpClientParts {
                client: shared.http_client()?,
                redactor: project.redactor.clone(),
                retry: RetryPolicy::from(rest.retry.as_ref()),
                timeout: Duration::from_secs(rest.client.timeout_secs.unwrap_or(30)),
                auth: rest.client.auth.clone(),
                headers: rest.client.headers.clone().into_iter().collect(),
                source_limits: shared.limits_for(ctx.name, rest.rate_limit.as_ref()),
                host_limits: shared.hosts.clone(),
                quotas: shared.quotas.clone(),
                tz: project.timezone.clone(),
                origin: self.origin.clone(),
                pauses: shared.pauses.clone(),
                cross_origin: rest.client.cross_origin,
            })?;
            let stats = client.stats.clone();
            let replay = match project.replaying.get(ctx.name) {
                Some(path) if ctx.recorder.is_none() => Some(self.cassette(path, ctx.name)?),
                _ => None,
            };
            summary.replayed_from = replay.as_ref().map(|c| {
                let path = c.path();
                path.strip_prefix(&project.dir)
                    .unwrap_or(path)
                    .display()
                    .to_string()
            });
            // A recording wants every body whole: no conditional requests.
            let cache = if rest.change_detection.unwrap_or(true) && ctx.recorder.is_none() {
                Some(self.change_cache(&project.data_dir, ctx.name)?)
            } else {
                None
            };
            let run = run::RestRun {
                name: ctx.name,
                config: rest,
                client,
                landing: shared.landing(),
                cache,
                run_id: ctx.run_id.to_string(),
                interval: ctx.interval,
                tz: project.source_timezone(ctx.name),
                counters: Arc::default(),
                slots: shared.request_slots(ctx.name, rest.concurrency.unwrap_or(4).max(1)),
                replay,
                recorder: ctx.recorder,
                interval_params: &self.interval_params,
                replayed: AtomicU64::new(0),
                replayed_elsewhere: AtomicU64::new(0),
            };
            let calls = run.plan(ctx.parent_values)?;
            let (records, errors) = run.run(calls, ctx.collect, ctx.observer).await;
            summary.requests =
                stats.requests.load(Ordering::Relaxed) + run.replayed.load(Ordering::Relaxed);
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
            let elsewhere = run.replayed_elsewhere.load(Ordering::Relaxed);
            if elsewhere > 0 {
                let params: Vec<&str> = self.interval_params.iter().map(String::as_str).collect();
                summary.warnings.push(format!(
                    "{elsewhere} answer(s) replayed from recordings made for other values of {} (they follow the interval): the records are those recorded then; `affluent record {}` over this interval records its own",
                    params.join(", "),
                    ctx.name
                ));
            }
            summary
                .errors
                .extend(errors.iter().map(ToString::to_string));
            Ok(records)
        })
    }

    fn records(
        &self,
        _entry: &Entry,
        body: &[u8],
    ) -> Result<(Vec<Value>, Vec<Reject>), SourceError> {
        let page = records::select_page(body, self.selector.as_ref()).map_err(SourceError::Plan)?;
        Ok((page.values().map_err(SourceError::Plan)?, Vec::new()))
    }
}
