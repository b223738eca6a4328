//! The HTTP client of REST sources: authentication (with a cached, refreshed OAuth token), rate
//! limits per source and per host (per second and minute with governor, per day persisted),
//! retries with exponential backoff and jitter that never come before a `Retry-After`, and a
//! timeout per request. Everything it reports is redacted.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use affluent_config::schema::{
    ApiKeyLocation, AuthConfig, ClientAuthStyle, CrossOrigin, RateLimitConfig, RetryConfig,
};
use affluent_core::Redactor;
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Mutex;
use url::Origin;

use super::records::error_message;
use crate::error::{SourceError, is_retryable_status};
use crate::state::QuotaStore;

/// Counters of one run, shared by every request of it.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests sent, retries included.
    pub requests: AtomicU64,
    /// Retries.
    pub retries: AtomicU64,
    /// Body bytes received.
    pub bytes: AtomicU64,
}

/// Rate limits of one scope (a source or a host).
pub struct Limits {
    scope: String,
    per_second: Option<DefaultDirectRateLimiter>,
    per_minute: Option<DefaultDirectRateLimiter>,
    per_day: Option<u32>,
}

impl Limits {
    /// Builds limiters from config. Requests are spaced evenly (burst of one), so no window of a
    /// second or a minute ever holds more than the limit.
    pub fn new(scope: String, config: &RateLimitConfig) -> Self {
        let per_second = config.per_second.map(|n| spaced(Duration::from_secs(1), n));
        let per_minute = config
            .per_minute
            .map(|n| spaced(Duration::from_secs(60), n));
        Self {
            scope,
            per_second,
            per_minute,
            per_day: config.per_day,
        }
    }

    async fn acquire(&self, quotas: &QuotaStore, day: &str) -> Result<(), SourceError> {
        if let Some(limit) = self.per_day {
            quotas.reserve(&self.scope, day, limit)?;
        }
        if let Some(l) = &self.per_minute {
            l.until_ready().await;
        }
        if let Some(l) = &self.per_second {
            l.until_ready().await;
        }
        Ok(())
    }
}

/// Pauses per host, shared by every source of the process: after a `429` or `503` with
/// `Retry-After`, no request goes to that host until the time the server asked for.
#[derive(Debug, Default)]
pub struct HostPauses(std::sync::Mutex<std::collections::HashMap<String, tokio::time::Instant>>);

impl HostPauses {
    /// Holds every request to `host` for `wait` (or longer, if a pause already runs).
    pub fn pause(&self, host: &str, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(host.to_ascii_lowercase()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// When the pause of `host` ends, if one runs.
    pub fn until(&self, host: &str) -> Option<Duration> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let until = *map.get(&host.to_ascii_lowercase())?;
        let now = tokio::time::Instant::now();
        (until > now).then(|| until - now)
    }

    /// Waits out the pause of `host`, if any.
    pub async fn wait(&self, host: &str) {
        loop {
            let until = {
                let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
                map.get(&host.to_ascii_lowercase()).copied()
            };
            match until {
                Some(until) if until > tokio::time::Instant::now() => {
                    tokio::time::sleep_until(until).await;
                }
                _ => return,
            }
        }
    }
}

/// A limiter letting one request through every `window / n`, plus a 10% (at least 10 ms) margin
/// so that network jitter cannot squeeze `n + 1` arrivals into one window at the server.
fn spaced(window: Duration, n: u32) -> DefaultDirectRateLimiter {
    let period = window / n.max(1);
    // Servers count arrivals, not departures: a margin of a tenth of the period absorbs the
    // jitter between the two (connection setup, a busy machine) so no window holds one too many.
    let margin = (period / 10).max(Duration::from_millis(10));
    let quota = Quota::with_period(period + margin)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct(quota)
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("scope", &self.scope)
            .finish()
    }
}

/// Retry policy, with defaults filled in.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all.
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff: Duration,
    /// Backoff ceiling.
    pub max_backoff: Duration,
}

impl From<Option<&RetryConfig>> for RetryPolicy {
    fn from(c: Option<&RetryConfig>) -> Self {
        let c = c.cloned().unwrap_or_default();
        Self {
            max_attempts: c.max_attempts.unwrap_or(5).max(1),
            initial_backoff: Duration::from_millis(c.initial_backoff_ms.unwrap_or(500)),
            max_backoff: Duration::from_secs(c.max_backoff_secs.unwrap_or(60)),
        }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `attempt + 1`: doubling from the initial one, capped, with jitter
    /// in its upper half.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_backoff);
        let jitter: f64 = rand::rng().random_range(0.5..=1.0);
        exp.mul_f64(jitter)
    }
}

/// A request ready to send (authentication is added by the client).
#[derive(Debug, Clone)]
pub struct Request {
    /// GET or POST.
    pub method: reqwest::Method,
    /// Full URL with query.
    pub url: url::Url,
    /// JSON body.
    pub body: Option<serde_json::Value>,
    /// Extra headers (conditional requests).
    pub headers: HeaderMap,
}

/// A received response.
#[derive(Debug)]
pub struct Response {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// When it arrived.
    pub received_at: Timestamp,
}

#[derive(Debug)]
struct CachedToken {
    token: String,
    expires: Instant,
}

/// The HTTP client of one source run.
pub struct HttpClient {
    client: reqwest::Client,
    redactor: Arc<Redactor>,
    retry: RetryPolicy,
    timeout: Duration,
    auth: Option<AuthConfig>,
    token: Mutex<Option<CachedToken>>,
    headers: HeaderMap,
    source_limits: Arc<Limits>,
    host_limits: Vec<(String, Arc<Limits>)>,
    quotas: Arc<QuotaStore>,
    tz: TimeZone,
    origin: Origin,
    cross_origin: CrossOrigin,
    pauses: Arc<HostPauses>,
    /// Counters of the run.
    pub stats: Arc<Stats>,
}

/// The most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;

impl std::fmt::Debug for HttpClient {
    // Headers and auth hold secrets: neither is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Everything an [`HttpClient`] is built from.
pub struct HttpClientParts {
    /// The connection pool ([`build_client`]), shared by the runs of a process.
    pub client: reqwest::Client,
    /// Redactor of the project.
    pub redactor: Arc<Redactor>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Timeout per request.
    pub timeout: Duration,
    /// Authentication.
    pub auth: Option<AuthConfig>,
    /// Static headers.
    pub headers: Vec<(String, String)>,
    /// The source's limits.
    pub source_limits: Arc<Limits>,
    /// Limits per host name.
    pub host_limits: Vec<(String, Arc<Limits>)>,
    /// Daily counts.
    pub quotas: Arc<QuotaStore>,
    /// Time zone of the daily quota's day.
    pub tz: TimeZone,
    /// The only origin credentials are sent to (`client.base_url`'s).
    pub origin: Origin,
    /// The process's pauses per host.
    pub pauses: Arc<HostPauses>,
    /// What to do with a request to another origin.
    pub cross_origin: CrossOrigin,
}

impl std::fmt::Debug for HttpClientParts {
    // Headers and auth hold secrets: neither is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClientParts")
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The HTTP client of a process: one connection pool, so runs reuse kept-alive connections and
/// the system's certificates are read once.
pub fn build_client() -> Result<reqwest::Client, SourceError> {
    reqwest::Client::builder()
        .user_agent(concat!("affluent/", env!("CARGO_PKG_VERSION")))
        // Redirects are followed by `send_once`, which decides per hop whether the next origin
        // may see the credentials.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| SourceError::Plan(format!("cannot build the HTTP client: {e}")))
}

impl HttpClient {
    /// Builds a client.
    pub fn new(parts: HttpClientParts) -> Result<Self, SourceError> {
        let client = parts.client;
        let mut headers = HeaderMap::new();
        for (k, v) in parts.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| SourceError::Plan(format!("invalid header name {k:?}")))?;
            let value = HeaderValue::from_str(&v).map_err(|_| {
                SourceError::Plan(format!(
                    "invalid value for header {k:?} (non-ASCII or newline)"
                ))
            })?;
            headers.insert(name, value);
        }
        Ok(Self {
            client,
            redactor: parts.redactor,
            retry: parts.retry,
            timeout: parts.timeout,
            auth: parts.auth,
            token: Mutex::new(None),
            headers,
            source_limits: parts.source_limits,
            host_limits: parts.host_limits,
            quotas: parts.quotas,
            tz: parts.tz,
            origin: parts.origin,
            cross_origin: parts.cross_origin,
            pauses: parts.pauses,
            stats: Arc::new(Stats::default()),
        })
    }

    /// The redactor in use.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    async fn acquire(&self, url: &url::Url) -> Result<(), SourceError> {
        let day = Timestamp::now()
            .to_zoned(self.tz.clone())
            .date()
            .to_string();
        let host = url.host_str().unwrap_or_default();
        self.pauses.wait(host).await;
        for (h, limits) in &self.host_limits {
            if h.eq_ignore_ascii_case(host) {
                limits.acquire(&self.quotas, &day).await?;
            }
        }
        self.source_limits.acquire(&self.quotas, &day).await
    }

    /// Sends a request with retries; returns any 2xx or 304 response, or the error that ended
    /// the attempts.
    pub async fn send(&self, request: &Request) -> Result<Response, SourceError> {
        let method = request.method.to_string();
        let shown_url = self.redactor.redact_url(request.url.as_str());
        let mut attempt = 0;
        let mut refreshed_token = false;
        loop {
            attempt += 1;
            self.acquire(&request.url).await?;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = self.send_once(request).await;
            let (error, retry_after) = match outcome {
                Ok(resp) if (200..300).contains(&resp.status) || resp.status == 304 => {
                    return Ok(resp);
                }
                Ok(resp) => {
                    let retry_after = retry_after(&resp.headers, resp.received_at);
                    if let (429 | 503, Some(wait)) = (resp.status, retry_after) {
                        // The server asked the client, not this request, to wait.
                        self.pauses
                            .pause(request.url.host_str().unwrap_or_default(), wait);
                    }
                    let message = self.redactor.redact(&describe_error_body(&resp.body));
                    let error = SourceError::Http {
                        status: resp.status,
                        method: method.clone(),
                        url: shown_url.clone(),
                        message,
                    };
                    if resp.status == 401
                        && !refreshed_token
                        && matches!(self.auth, Some(AuthConfig::OAuth2ClientCredentials { .. }))
                    {
                        // An expired token: fetch a new one once.
                        refreshed_token = true;
                        *self.token.lock().await = None;
                        attempt -= 1;
                        continue;
                    }
                    if !is_retryable_status(resp.status) {
                        return Err(error);
                    }
                    (error, retry_after)
                }
                Err(e) => (e, None),
            };
            if !error.is_retryable() || attempt >= self.retry.max_attempts {
                return Err(error);
            }
            let mut delay = self.retry.backoff(attempt);
            if let Some(min) = retry_after {
                delay = delay.max(min);
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                attempt,
                max_attempts = self.retry.max_attempts,
                delay_ms = delay.as_millis() as u64,
                "{error}; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// The configured headers that may go to another origin: none whose name looks secret or
    /// whose value holds a secret.
    fn public_headers(&self) -> HeaderMap {
        let mut out = HeaderMap::new();
        for (name, value) in &self.headers {
            let text = value.to_str().unwrap_or_default();
            let secret = value.is_sensitive()
                || Redactor::is_secret_name(name.as_str())
                || name == reqwest::header::AUTHORIZATION
                || name == reqwest::header::COOKIE
                || self.redactor.redact(text) != text;
            if !secret {
                out.insert(name.clone(), value.clone());
            }
        }
        out
    }

    /// One attempt: the request, and the redirects it gets, each hop sent with the credentials
    /// only if it is on `client.base_url`'s origin (and refused elsewhere, unless
    /// `cross_origin = "without_credentials"`).
    async fn send_once(&self, request: &Request) -> Result<Response, SourceError> {
        let mut url = request.url.clone();
        let mut method = request.method.clone();
        let mut body = request.body.as_ref();
        for _ in 0..=MAX_REDIRECTS {
            let trusted = url.origin() == self.origin;
            if !trusted && self.cross_origin == CrossOrigin::Refuse {
                return Err(SourceError::CrossOrigin {
                    method: method.to_string(),
                    url: self.redactor.redact_url(url.as_str()),
                    origin: self.origin.ascii_serialization(),
                });
            }
            let mut headers = if trusted {
                self.headers.clone()
            } else {
                self.public_headers()
            };
            headers.extend(request.headers.clone());
            let mut sent_url = url.clone();
            if trusted {
                self.authenticate(&mut sent_url, &mut headers).await?;
            }
            let mut builder = self
                .client
                .request(method.clone(), sent_url)
                .headers(headers)
                .timeout(self.timeout);
            if let Some(body) = body {
                builder = builder.json(body);
            }
            let network = |e: reqwest::Error| SourceError::Network {
                // reqwest puts the URL in its messages; ours is redacted.
                message: self
                    .redactor
                    .redact(&affluent_core::error_chain(&e.without_url())),
                method: method.to_string(),
                url: self.redactor.redact_url(url.as_str()),
            };
            let resp = builder.send().await.map_err(network)?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| url.join(l).ok());
            if let (301 | 302 | 303 | 307 | 308, Some(next)) = (status, location) {
                // As browsers do: 303, and 301/302 after a POST, go on as a GET without body.
                if status == 303 || (matches!(status, 301 | 302) && method == reqwest::Method::POST)
                {
                    method = reqwest::Method::GET;
                    body = None;
                }
                url = next;
                continue;
            }
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.map_err(network)?;
            self.stats
                .bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            return Ok(Response {
                status,
                headers,
                body: bytes,
                received_at: Timestamp::now(),
            });
        }
        Err(SourceError::Redirects {
            method: request.method.to_string(),
            url: self.redactor.redact_url(request.url.as_str()),
            max: MAX_REDIRECTS,
        })
    }

    async fn authenticate(
        &self,
        url: &mut url::Url,
        headers: &mut HeaderMap,
    ) -> Result<(), SourceError> {
        let bad_header =
            |_| SourceError::Plan("credential contains characters not allowed in a header".into());
        match &self.auth {
            None => {}
            Some(AuthConfig::ApiKey {
                name,
                api_key,
                location,
            }) => {
                let name = name.as_deref().unwrap_or("Authorization");
                match location.unwrap_or(ApiKeyLocation::Header) {
                    ApiKeyLocation::Header => {
                        let hn = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                            SourceError::Plan(format!("invalid header name {name:?}"))
                        })?;
                        let mut value = HeaderValue::from_str(api_key).map_err(bad_header)?;
                        value.set_sensitive(true);
                        headers.insert(hn, value);
                    }
                    ApiKeyLocation::Query => {
                        url.query_pairs_mut().append_pair(name, api_key);
                    }
                }
            }
            Some(AuthConfig::Bearer { token }) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(bad_header)?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
            Some(AuthConfig::HttpBasic { username, password }) => {
                use base64::Engine;
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                let mut value =
                    HeaderValue::from_str(&format!("Basic {encoded}")).map_err(bad_header)?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
            Some(AuthConfig::OAuth2ClientCredentials { .. }) => {
                let token = self.oauth_token().await?;
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(bad_header)?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
        }
        Ok(())
    }

    /// The cached OAuth token, fetched again when missing or within a minute of expiry.
    async fn oauth_token(&self) -> Result<String, SourceError> {
        let Some(AuthConfig::OAuth2ClientCredentials {
            access_token_url,
            client_id,
            client_secret,
            access_token_request_data,
            default_token_expiration_secs,
            client_auth,
        }) = &self.auth
        else {
            return Err(SourceError::Plan("not an OAuth source".into()));
        };
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && t.expires > Instant::now() + Duration::from_secs(60)
        {
            return Ok(t.token.clone());
        }
        let shown = self.redactor.redact_url(access_token_url);
        let auth_err = |message: String| SourceError::Auth {
            url: shown.clone(),
            message,
        };
        let mut form: Vec<(String, String)> =
            vec![("grant_type".into(), "client_credentials".into())];
        form.extend(
            access_token_request_data
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let mut builder = self.client.post(access_token_url).timeout(self.timeout);
        match client_auth.unwrap_or(ClientAuthStyle::Basic) {
            ClientAuthStyle::Basic => builder = builder.basic_auth(client_id, Some(client_secret)),
            ClientAuthStyle::Body => {
                form.push(("client_id".into(), client_id.clone()));
                form.push(("client_secret".into(), client_secret.clone()));
            }
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let resp = builder.form(&form).send().await.map_err(|e| {
            auth_err(
                self.redactor
                    .redact(&affluent_core::error_chain(&e.without_url())),
            )
        })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| {
            auth_err(
                self.redactor
                    .redact(&affluent_core::error_chain(&e.without_url())),
            )
        })?;
        if !(200..300).contains(&status) {
            return Err(auth_err(format!(
                "HTTP {status}: {}",
                self.redactor.redact(&describe_error_body(&body))
            )));
        }
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| auth_err(format!("token response is not JSON: {e}")))?;
        let token = json["access_token"]
            .as_str()
            .ok_or_else(|| auth_err("token response has no `access_token`".into()))?
            .to_string();
        self.redactor.add(&token);
        let lifetime = json["expires_in"]
            .as_u64()
            .or(*default_token_expiration_secs)
            .unwrap_or(3600);
        *cached = Some(CachedToken {
            token: token.clone(),
            expires: Instant::now() + Duration::from_secs(lifetime),
        });
        Ok(token)
    }
}

/// `Retry-After` as a minimum delay from `received_at`: seconds, or an HTTP date.
pub fn retry_after(headers: &HeaderMap, received_at: Timestamp) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        let elapsed = Timestamp::now().duration_since(received_at).unsigned_abs();
        return Some(Duration::from_secs(secs).saturating_sub(elapsed));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The server's message from an error body, else the start of the body.
pub fn describe_error_body(body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(message) = error_message(&json)
    {
        return message;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}
