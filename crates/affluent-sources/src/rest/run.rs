//! One run of the REST connector: plans the request chains (fan-out over static values, another
//! source's records and a time grid, multiplied), walks each chain's pages, lands every new
//! body before parsing it, and skips responses that did not change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use affluent_config::schema::{HttpMethod, PaginatorConfig, ParamValue, RestSourceConfig};
use affluent_core::Interval;
use affluent_core::progress::{Observer, Progress, RequestProgress};
use affluent_core::template::{Template, Value as TValue, Vars};
use affluent_landing::{Landing, NewEntry, content_hash};
use futures::StreamExt;
use jiff::tz::TimeZone;
use jiff::{Span, Zoned};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

use super::http::{HttpClient, Request};
use super::paginate::{PageRequest, Paginator};
use super::records::select_page;
use crate::error::SourceError;
use crate::state::{CacheEntry, ChangeCache};

/// Headers worth keeping with a landed body.
const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "etag",
    "last-modified",
    "date",
    "link",
    "cache-control",
    "x-total-count",
];

/// One request chain of a run: its variables, before pagination.
#[derive(Debug, Clone)]
pub(super) struct Call {
    vars: Vars,
    shown: BTreeMap<String, String>,
}

/// Counters of one REST run.
#[derive(Debug, Default)]
pub(super) struct RestCounters {
    /// Bodies written to landing.
    pub landed: AtomicU64,
    /// Responses identical to the last one (304 or same content hash).
    pub unchanged: AtomicU64,
    /// Records in landed bodies.
    pub records: AtomicU64,
    /// Warnings (repeated page, page guard, selector not found).
    pub warnings: std::sync::Mutex<Vec<String>>,
}

/// A REST source ready to run.
pub(super) struct RestRun<'a> {
    /// Source name.
    pub name: &'a str,
    /// Its config.
    pub config: &'a RestSourceConfig,
    /// HTTP client.
    pub client: HttpClient,
    /// Landing zone.
    pub landing: Landing,
    /// Change detection, when enabled.
    pub cache: Option<Arc<ChangeCache>>,
    /// Run id.
    pub run_id: String,
    /// The data interval.
    pub interval: Interval,
    /// The source's time zone.
    pub tz: TimeZone,
    /// Counters.
    pub counters: Arc<RestCounters>,
    /// The source's request slots, shared by its concurrent runs: `concurrency` bounds the
    /// source's requests in flight, not each run's.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// The cassette answering instead of the network, when the source replays.
    pub replay: Option<Arc<super::cassette::Cassette>>,
    /// Where each answer is recorded, for `affluent record`.
    pub recorder: Option<&'a super::cassette::Recorder>,
    /// The parameters a replay may see differ from the recording (they follow the interval).
    pub interval_params: &'a std::collections::BTreeSet<String>,
    /// Requests answered from the cassette.
    pub replayed: AtomicU64,
    /// Of those, the ones answered by a recording made for other values of the interval's
    /// parameters.
    pub replayed_elsewhere: AtomicU64,
}

impl RestRun<'_> {
    /// The request chains of this run: the product of static values, resolved values (from
    /// `parent_values`) and time-grid steps.
    pub(super) fn plan(&self, parent_values: &[String]) -> Result<Vec<Call>, SourceError> {
        let mut base = Vars::new();
        base.insert(
            "interval.start".into(),
            TValue::Time(self.interval.start_in(&self.tz)),
        );
        base.insert(
            "interval.end".into(),
            TValue::Time(self.interval.end_in(&self.tz)),
        );
        let mut calls = vec![Call {
            vars: base,
            shown: BTreeMap::new(),
        }];
        let fan_out = self.config.fan_out.clone().unwrap_or_default();
        for (name, values) in &fan_out.values {
            let texts: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            calls = multiply(calls, name, &texts);
        }
        if !fan_out.rows.is_empty() {
            let mut out = Vec::with_capacity(calls.len() * fan_out.rows.len());
            for call in &calls {
                for row in &fan_out.rows {
                    let mut c = call.clone();
                    for (name, value) in row {
                        c.vars.insert(name.clone(), TValue::Text(value.to_string()));
                        c.shown.insert(name.clone(), value.to_string());
                    }
                    out.push(c);
                }
            }
            calls = out;
        }
        if let Some((param, resolve)) = self.config.resolve() {
            calls = multiply(calls, param, &resolve.requests(parent_values));
        }
        if let Some(grid) = &fan_out.time {
            let every = grid.every.get();
            let name = grid.name.clone().unwrap_or_else(|| "step".to_string());
            let steps = time_grid(&self.interval, &self.tz, every)?;
            let mut out = Vec::with_capacity(calls.len() * steps.len());
            for call in &calls {
                for (start, end) in &steps {
                    let mut c = call.clone();
                    c.shown.insert(name.clone(), start.to_string());
                    c.vars.insert(name.clone(), TValue::Time(start.clone()));
                    c.vars
                        .insert(format!("{name}.end"), TValue::Time(end.clone()));
                    out.push(c);
                }
            }
            calls = out;
        }
        Ok(calls)
    }

    /// Runs every chain with bounded concurrency. Returns the records of all pages when
    /// `collect` (for a child source that resolves over this one), and the errors of failed
    /// chains (the others are landed regardless).
    pub(super) async fn run(
        &self,
        calls: Vec<Call>,
        collect: bool,
        observer: Option<&dyn Observer>,
    ) -> (Vec<Value>, Vec<SourceError>) {
        let mut progress = RequestProgress {
            source: self.name.to_string(),
            total: calls.len() as u64,
            ..RequestProgress::default()
        };
        let concurrency = self.config.concurrency.unwrap_or(4).max(1);
        let mut stream = futures::stream::iter(calls)
            .map(|call| async move {
                // A chain's pages go one after another: one slot per chain.
                let _slot = self.slots.acquire().await;
                self.run_chain(call, collect).await
            })
            .buffer_unordered(concurrency);
        let mut records = Vec::new();
        let mut errors = Vec::new();
        while let Some(result) = stream.next().await {
            progress.done += 1;
            match result {
                Ok(mut r) => records.append(&mut r),
                Err(e) => {
                    tracing::error!(source = self.name, "{e}");
                    errors.push(e);
                    progress.failed += 1;
                }
            }
            if let Some(observer) = observer {
                progress.records = self.counters.records.load(Ordering::Relaxed);
                progress.landed = self.counters.landed.load(Ordering::Relaxed);
                progress.unchanged = self.counters.unchanged.load(Ordering::Relaxed);
                observer.observe(&Progress::Requests(progress.clone()));
            }
        }
        // The change cache points at landed entries: they are made durable first.
        if let Err(e) = self.landing.sync(&self.run_id) {
            errors.push(e.into());
        } else if let Some(cache) = &self.cache
            && let Err(e) = cache.flush()
        {
            errors.push(e);
        }
        (records, errors)
    }

    fn warn(&self, message: String) {
        tracing::warn!(source = self.name, "{message}");
        self.counters
            .warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
    }

    /// The headers kept with a landed body, secrets scrubbed.
    fn kept_headers(&self, headers: &HeaderMap) -> BTreeMap<String, String> {
        let redactor = self.client.redactor();
        KEPT_HEADERS
            .iter()
            .filter_map(|h| {
                headers
                    .get(*h)
                    .and_then(|v| v.to_str().ok())
                    // A `Link` holds URLs: their secret-named parameters are masked too.
                    .map(|v| {
                        let shown = if *h == "link" {
                            redact_link(redactor, v)
                        } else {
                            redactor.redact(v)
                        };
                        (h.to_string(), shown)
                    })
            })
            .collect()
    }

    fn render(&self, text: &str, vars: &Vars) -> Result<String, SourceError> {
        Template::parse(text)
            .and_then(|t| t.render(vars))
            .map_err(|e| SourceError::Plan(format!("source `{}`: {e}", self.name)))
    }

    fn render_json(&self, value: &Value, vars: &Vars) -> Result<Value, SourceError> {
        Ok(match value {
            Value::String(s) => Value::String(self.render(s, vars)?),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.render_json(v, vars))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_json(v, vars)?)))
                    .collect::<Result<_, SourceError>>()?,
            ),
            other => other.clone(),
        })
    }

    /// Builds the first request of a chain.
    fn first_request(&self, call: &Call) -> Result<(PageRequest, Option<Value>), SourceError> {
        let endpoint = &self.config.endpoint;
        let path = self.render(&endpoint.path, &call.vars)?;
        let base = &self.config.client.base_url;
        let joined = if path.is_empty() {
            base.clone()
        } else if path.starts_with("http://") || path.starts_with("https://") {
            path.clone()
        } else {
            format!(
                "{}/{}",
                base.trim_end_matches('/'),
                path.trim_start_matches('/')
            )
        };
        let mut url = url::Url::parse(&joined).map_err(|e| {
            SourceError::Plan(format!(
                "source `{}`: invalid URL {:?}: {e}",
                self.name,
                self.client.redactor().redact_url(&joined)
            ))
        })?;
        // Parameters already in the base URL or path stay first.
        let mut params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        url.set_query(None);
        let path_vars: Vec<String> = Template::parse(&endpoint.path)
            .map_err(|e| SourceError::Plan(format!("source `{}`: {e}", self.name)))?
            .variables()
            .map(str::to_string)
            .collect();
        for (name, value) in &endpoint.params {
            let v = match value {
                ParamValue::Text(t) => self.render(t, &call.vars)?,
                ParamValue::Integer(i) => i.to_string(),
                ParamValue::Float(f) => f.to_string(),
                ParamValue::Bool(b) => b.to_string(),
                ParamValue::Resolve(_) => {
                    if path_vars.iter().any(|v| v == name) {
                        continue;
                    }
                    match call.vars.get(name) {
                        Some(TValue::Text(t)) => t.clone(),
                        _ => continue,
                    }
                }
            };
            params.retain(|(k, _)| k != name);
            params.push((name.clone(), v));
        }
        let body = endpoint
            .json
            .as_ref()
            .map(|b| self.render_json(b, &call.vars))
            .transpose()?;
        Ok((PageRequest { url, params }, body))
    }

    async fn run_chain(&self, call: Call, collect: bool) -> Result<Vec<Value>, SourceError> {
        let (mut page_request, body) = self.first_request(&call)?;
        let paginator_config = self
            .config
            .endpoint
            .paginator
            .clone()
            .or_else(|| self.config.client.paginator.clone())
            .unwrap_or(PaginatorConfig::SinglePage);
        let mut paginator = Paginator::start(paginator_config, &mut page_request);
        let selector = self
            .config
            .endpoint
            .data_selector
            .as_ref()
            .map(|s| s.path());
        let method = match self.config.endpoint.method.unwrap_or(HttpMethod::Get) {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
        };
        let max_pages = self.config.max_pages.unwrap_or(1000);
        let redactor = self.client.redactor();
        // A body whose redaction is no longer JSON is shown (and matched in a cassette) as text.
        let shown_body = body.as_ref().map(|b| {
            let text = redactor.redact(&b.to_string());
            serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))
        });
        let mut collected = Vec::new();
        let mut previous_hash: Option<String> = None;
        let mut page: u32 = 0;
        loop {
            let url = page_request.full_url();
            let shown_url = redactor.redact_url(url.as_str());
            let cache_key = content_hash(
                format!(
                    "{method} {shown_url} {}",
                    shown_body
                        .as_ref()
                        .map(|b| b.to_string())
                        .unwrap_or_default()
                )
                .as_bytes(),
            );
            // A cache entry counts only while the body it points to is still in landing.
            let cached = self
                .cache
                .as_ref()
                .and_then(|c| c.get(&cache_key))
                .filter(|c| self.landing.has_body_by_id(self.name, &c.entry_id));
            let mut headers = HeaderMap::new();
            if let Some(c) = &cached {
                if let Some(etag) = c
                    .etag
                    .as_deref()
                    .and_then(|v| HeaderValue::from_str(v).ok())
                {
                    headers.insert(reqwest::header::IF_NONE_MATCH, etag);
                }
                if let Some(lm) = c
                    .last_modified
                    .as_deref()
                    .and_then(|v| HeaderValue::from_str(v).ok())
                {
                    headers.insert(reqwest::header::IF_MODIFIED_SINCE, lm);
                }
            }
            let response = match &self.replay {
                Some(cassette) => {
                    let (answer, elsewhere) = cassette.answer(
                        method.as_str(),
                        &shown_url,
                        shown_body.as_ref(),
                        self.interval_params,
                    )?;
                    self.replayed.fetch_add(1, Ordering::Relaxed);
                    if elsewhere {
                        self.replayed_elsewhere.fetch_add(1, Ordering::Relaxed);
                    }
                    answer
                }
                None => {
                    self.client
                        .send(&Request {
                            method: method.clone(),
                            url: url.clone(),
                            body: body.clone(),
                            headers,
                        })
                        .await?
                }
            };

            let body_bytes: Vec<u8>;
            let hash;
            let mut landed_entry = None;
            if response.status == 304 {
                // Conditional request: the body is the one landed last time.
                let entry_id = cached.as_ref().map(|c| c.entry_id.as_str()).unwrap_or("");
                body_bytes = self
                    .landing
                    .read_body_by_id(self.name, entry_id)?
                    .ok_or_else(|| {
                        SourceError::Plan(format!(
                            "{shown_url} answered 304 Not Modified but no landed body matches; run again to fetch it whole"
                        ))
                    })?;
                hash = content_hash(&body_bytes);
                self.counters.unchanged.fetch_add(1, Ordering::Relaxed);
            } else {
                // Secrets echoed by the server are scrubbed before anything is stored.
                body_bytes = redactor.redact_bytes(&response.body).into_owned();
                hash = content_hash(&body_bytes);
                if let Some(recorder) = self.recorder {
                    // The redactor scrubs text: a body that is not UTF-8 and holds a secret is
                    // recorded as its redacted text, never as it came.
                    let lossy;
                    let recorded = match std::str::from_utf8(&body_bytes) {
                        Err(_)
                            if redactor.contains_secret(&String::from_utf8_lossy(&body_bytes)) =>
                        {
                            self.warn(format!(
                                "the answer to {shown_url} is not UTF-8 and holds a secret: recorded as its redacted text"
                            ));
                            lossy = redactor.redact(&String::from_utf8_lossy(&body_bytes));
                            lossy.as_bytes()
                        }
                        _ => &body_bytes[..],
                    };
                    recorder.record(
                        method.as_str(),
                        &shown_url,
                        shown_body.as_ref(),
                        response.status,
                        self.kept_headers(&response.headers),
                        recorded,
                    );
                }
                if previous_hash.as_deref() == Some(hash.as_str()) {
                    self.warn(format!(
                        "page {page} of {shown_url} repeats the previous page: stopping this request chain (check the paginator settings)"
                    ));
                    break;
                }
                let unchanged = cached.as_ref().is_some_and(|c| c.content_hash == hash);
                if unchanged {
                    self.counters.unchanged.fetch_add(1, Ordering::Relaxed);
                } else {
                    let kept = self.kept_headers(&response.headers);
                    let meta = self.landing.write(
                        NewEntry {
                            source: self.name.to_string(),
                            run_id: self.run_id.clone(),
                            kind: "http".into(),
                            url: shown_url.clone(),
                            method: Some(method.to_string()),
                            request_body: shown_body.clone(),
                            vars: call.shown.clone(),
                            page,
                            status: response.status,
                            headers: kept,
                            fetched_at: response.received_at,
                            interval: Some(self.interval),
                        },
                        &body_bytes,
                    )?;
                    self.counters.landed.fetch_add(1, Ordering::Relaxed);
                    landed_entry = Some(meta);
                }
            }

            let selected = match select_page(&body_bytes, selector) {
                Ok(ok) => ok,
                Err(message) => {
                    let message = redactor.redact(&message);
                    let entry_id = match &landed_entry {
                        Some(meta) => {
                            self.landing.reject(meta, &message)?;
                            meta.entry_id.clone()
                        }
                        None => cached.map(|c| c.entry_id).unwrap_or_default(),
                    };
                    return Err(SourceError::BadPayload {
                        url: shown_url,
                        message,
                        entry_id,
                    });
                }
            };
            if let (Some(meta), Some(cache)) = (&landed_entry, &self.cache) {
                let header = |name| {
                    response
                        .headers
                        .get(name)
                        .and_then(|v: &HeaderValue| v.to_str().ok())
                        .map(str::to_string)
                };
                cache.put(
                    &cache_key,
                    CacheEntry {
                        etag: header(reqwest::header::ETAG),
                        last_modified: header(reqwest::header::LAST_MODIFIED),
                        content_hash: hash.clone(),
                        entry_id: meta.entry_id.clone(),
                    },
                );
            }
            if selected.selector_missing && page == 0 {
                self.warn(format!(
                    "data_selector `{}` found nothing in the response of {shown_url}: 0 records",
                    selector.map(|s| s.as_str()).unwrap_or("$")
                ));
            }
            let n = selected.records.len();
            if landed_entry.is_some() {
                self.counters.records.fetch_add(n as u64, Ordering::Relaxed);
            }
            if collect {
                collected.extend(selected.values().map_err(SourceError::Plan)?);
            }
            tracing::debug!(source = self.name, page, records = n, url = %shown_url, "page");
            previous_hash = Some(hash);
            page += 1;
            if !paginator.advance(&mut page_request, &selected, &response.headers, n) {
                if let Some(why) = paginator.capped() {
                    self.warn(format!("{shown_url}: {why}"));
                }
                break;
            }
            if page >= max_pages {
                self.warn(format!(
                    "stopped {shown_url} after max_pages = {max_pages} pages although more were announced; raise max_pages to fetch them"
                ));
                break;
            }
        }
        Ok(collected)
    }
}

/// A `Link` header with each `<URL>` redacted as a URL (its secret-named parameters masked) and
/// the rest as text: the `<`, `>` and `rel` around them stay.
fn redact_link(redactor: &affluent_core::Redactor, link: &str) -> String {
    let mut out = String::with_capacity(link.len());
    let mut rest = link;
    while let Some(open) = rest.find('<') {
        out.push_str(&redactor.redact(&rest[..=open]));
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            rest = after;
            break;
        };
        out.push_str(&redactor.redact_url(&after[..close]));
        out.push('>');
        rest = &after[close + 1..];
    }
    out.push_str(&redactor.redact(rest));
    out
}

fn multiply(calls: Vec<Call>, name: &str, values: &[String]) -> Vec<Call> {
    let mut out = Vec::with_capacity(calls.len() * values.len());
    for call in &calls {
        for v in values {
            let mut c = call.clone();
            c.vars.insert(name.to_string(), TValue::Text(v.clone()));
            c.shown.insert(name.to_string(), v.clone());
            out.push(c);
        }
    }
    out
}

/// Steps `[t, t + every)` covering the interval, the last one cut at its end. Steps of whole days
/// are calendar days in `tz`, so a day across a daylight-saving change is one step.
pub(super) fn time_grid(
    interval: &Interval,
    tz: &TimeZone,
    every: std::time::Duration,
) -> Result<Vec<(Zoned, Zoned)>, SourceError> {
    let secs = every.as_secs() as i64;
    if secs == 0 {
        return Err(SourceError::Plan(
            "time grid step must be at least 1s".into(),
        ));
    }
    let span = if secs % 86_400 == 0 {
        Span::new().days(secs / 86_400)
    } else {
        Span::new().seconds(secs)
    };
    let end = interval.end_in(tz);
    let mut t = interval.start_in(tz);
    let mut steps = Vec::new();
    while t < end {
        let next = t
            .checked_add(span)
            .map_err(|e| SourceError::Plan(format!("time grid out of range: {e}")))?;
        let cut = if next > end {
            end.clone()
        } else {
            next.clone()
        };
        steps.push((t, cut));
        t = next;
        if steps.len() > 1_000_000 {
            return Err(SourceError::Plan(
                "time grid would make more than 1,000,000 requests: shorten the interval or lengthen `every`".into(),
            ));
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::redact_link;

    #[test]
    fn a_link_header_keeps_its_shape_when_a_secret_is_masked() {
        let r = affluent_core::Redactor::new();
        r.add("s3cr3t-key");
        let link = "<https://x/i?page=2&api_key=s3cr3t-key>; rel=\"next\", <https://x/i?page=9&token=abc>; rel=\"last\"";
        assert_eq!(
            redact_link(&r, link),
            "<https://x/i?page=2&api_key=***>; rel=\"next\", <https://x/i?page=9&token=***>; rel=\"last\""
        );
    }
}
