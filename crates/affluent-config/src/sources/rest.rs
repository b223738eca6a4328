//! `type = "rest"`: the declarative REST source's schema (client, auth, endpoint, paginator,
//! fan-out, retries) and its checks (URLs, templates and their variables, JSON paths).

use std::collections::BTreeMap;
use std::ops::Range;

use affluent_core::template::Template;
use affluent_core::{JsonPath, Redactor};
use serde::Deserialize;

use crate::diagnostics::Reporter;
use crate::schema::RateLimitConfig;
use crate::sources::SourceConfig;
use crate::validate::rate_limit;
use crate::values::{ConfigDuration, ConfigTimeZone, CronExpr, JsonPathExpr, StartDate};

/// The variables every REST template may use.
pub const INTERVAL_VARS: &[&str] = &["interval.start", "interval.end"];

/// A declarative REST source (`type = "rest"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestSourceConfig {
    /// Always `"rest"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Time zone of this source's intervals and templates, if not the project's.
    pub timezone: Option<ConfigTimeZone>,
    /// When the source runs: a cron expression (`"0 * * * *"`; 6 fields for seconds) in the
    /// source's time zone. Each run covers the data interval since the previous fire time.
    pub schedule: Option<CronExpr>,
    /// When the source runs, as a period instead of a cron (`"15m"`, `"1h"`, `"1d"`): whole days
    /// are calendar days in the time zone, shorter periods count from `start_date`.
    pub every: Option<ConfigDuration>,
    /// The first data interval to cover: a date (`"2024-01-01"`, local midnight), a local or
    /// RFC 3339 instant, or a duration before now (`"-8w"`). With `catchup`, every interval since
    /// is covered.
    pub start_date: Option<StartDate>,
    /// Fill every hole since `start_date`, after downtime too (default true); `false` runs only
    /// the latest interval.
    pub catchup: Option<bool>,
    /// Catch-up or backfill intervals of this source in flight at once (default 1); the live
    /// interval always starts on time on top of these.
    pub max_active: Option<usize>,
    /// Length of the default data interval when `ingest` is given no `--from/--to`: the last
    /// complete period (default `"1d"`).
    pub interval: Option<ConfigDuration>,
    /// How many requests of this source may be in flight at once, over all its runs of the
    /// process (default 4).
    pub concurrency: Option<usize>,
    /// Guard on the number of pages fetched per request chain (default 1000).
    pub max_pages: Option<u32>,
    /// Skip landing a response identical to the previous one for the same request, using ETag,
    /// Last-Modified and a content hash (default true).
    pub change_detection: Option<bool>,
    /// Connection settings shared by every request.
    pub client: ClientConfig,
    /// What to request (default: `GET` on `client.base_url`).
    #[serde(default)]
    pub endpoint: EndpointConfig,
    /// Fan-out over static values and a time grid (the `resolve` fan-out is declared in `params`).
    pub fan_out: Option<FanOutConfig>,
    /// Rate limits of this source.
    pub rate_limit: Option<RateLimitConfig>,
    /// Retry policy.
    pub retry: Option<RetryConfig>,
    /// A file of recorded responses, relative to the project (`"cassettes/events.json"`):
    /// what `affluent record NAME` writes, and what the source answers from when it replays.
    pub cassette: Option<String>,
    /// When the source answers from its cassette instead of calling the API: `"auto"` (the
    /// default with a cassette: when a `${VAR}` it reads gives no value, being unset without a
    /// default, `${VAR:-}` or empty, such as a missing API key; or when `AFFLUENT_OFFLINE=1`),
    /// `"always"` or `"never"`. A replaying source needs none of its secrets (a variable of
    /// `client.base_url` or `endpoint.path` needs a default).
    pub replay: Option<ReplayMode>,
}

/// When a REST source replays its cassette.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayMode {
    /// When a variable the source reads gives no value, or `AFFLUENT_OFFLINE=1`.
    Auto,
    /// Every run.
    Always,
    /// Never: the cassette is only written by `affluent record`.
    Never,
}

impl RestSourceConfig {
    /// The parameter that fans out over another source's records, if any (at most one: the
    /// validator refuses more).
    pub fn resolve(&self) -> Option<(&str, &ResolveParam)> {
        self.endpoint
            .params
            .iter()
            .find_map(|(name, value)| match value {
                ParamValue::Resolve(r) => Some((name.as_str(), r)),
                _ => None,
            })
    }
}

/// `[sources.NAME.client]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Base URL every endpoint path is joined to.
    pub base_url: String,
    /// Headers sent with every request; values may use `${VAR}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Authentication.
    pub auth: Option<AuthConfig>,
    /// Default paginator of the endpoints.
    pub paginator: Option<PaginatorConfig>,
    /// Timeout of one request, in seconds (default 30).
    pub timeout_secs: Option<u64>,
    /// What to do with a redirect or a next-page link to another origin (scheme, host, port)
    /// than `base_url`'s: `refuse` it with an error (default), or follow it
    /// `without_credentials` (no `auth`, no secret header). Credentials are only ever sent to
    /// `base_url`'s origin.
    #[serde(default)]
    pub cross_origin: CrossOrigin,
}

/// `client.cross_origin`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossOrigin {
    /// Fail the request, naming the other origin and this key.
    #[default]
    Refuse,
    /// Follow it, without the source's auth and secret headers.
    WithoutCredentials,
}

/// `auth = { type = ... }`, as dlt names them.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// A key in a header or a query parameter.
    ApiKey {
        /// Header or parameter name (default `Authorization`).
        name: Option<String>,
        /// The key, normally `${VAR}`.
        api_key: String,
        /// `header` (default) or `query`.
        location: Option<ApiKeyLocation>,
    },
    /// `Authorization: Bearer TOKEN`.
    Bearer {
        /// The token, normally `${VAR}`.
        token: String,
    },
    /// HTTP basic authentication.
    HttpBasic {
        /// User name.
        username: String,
        /// Password, normally `${VAR}`.
        password: String,
    },
    /// OAuth 2 client credentials (Spotify): the token is fetched, cached and refreshed.
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials {
        /// Token endpoint.
        access_token_url: String,
        /// Client id.
        client_id: String,
        /// Client secret, normally `${VAR}`.
        client_secret: String,
        /// Extra form fields sent to the token endpoint.
        #[serde(default)]
        access_token_request_data: BTreeMap<String, String>,
        /// Lifetime assumed when the token response has no `expires_in` (default 3600).
        default_token_expiration_secs: Option<u64>,
        /// How the client authenticates: `basic` header (default) or `body` form fields.
        client_auth: Option<ClientAuthStyle>,
    },
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyLocation {
    /// In a request header.
    Header,
    /// In a query parameter.
    Query,
}

/// How OAuth client credentials are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthStyle {
    /// `Authorization: Basic base64(id:secret)`.
    Basic,
    /// `client_id` and `client_secret` form fields.
    Body,
}

/// How to walk the pages of a response.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PaginatorConfig {
    /// One request, no pages.
    SinglePage,
    /// `?page=N` (Ticketmaster `page.totalPages`, World Bank `[0].pages`).
    PageNumber {
        /// Query parameter (default `page`).
        page_param: Option<String>,
        /// Number of the first page (default 0).
        base_page: Option<i64>,
        /// Path to the total number of pages in the body.
        total_path: Option<JsonPathExpr>,
        /// Last page to fetch, included.
        maximum_page: Option<i64>,
        /// Stop at the first page with no records (default true).
        stop_after_empty_page: Option<bool>,
    },
    /// `?offset=N&limit=L` (Opendatasoft `total_count`).
    Offset {
        /// Page size.
        limit: u64,
        /// First offset (default 0).
        offset: Option<u64>,
        /// Offset parameter (default `offset`).
        offset_param: Option<String>,
        /// Limit parameter (default `limit`).
        limit_param: Option<String>,
        /// Path to the total number of records in the body.
        total_path: Option<JsonPathExpr>,
        /// Offset not to reach.
        maximum_offset: Option<u64>,
        /// Stop at the first page with no records (default true).
        stop_after_empty_page: Option<bool>,
    },
    /// A cursor from the body sent back as a parameter.
    Cursor {
        /// Path to the next cursor in the body (default `cursors.next`).
        cursor_path: Option<JsonPathExpr>,
        /// Query parameter carrying it (default `cursor`).
        cursor_param: Option<String>,
    },
    /// The next page's URL in the body (Spotify `next`).
    JsonLink {
        /// Path to the next URL (default `next`).
        next_url_path: Option<JsonPathExpr>,
    },
    /// The next page's URL in an RFC 8288 `Link` header.
    HeaderLink {
        /// Relation of the next link (default `next`).
        links_next_key: Option<String>,
    },
}

/// `[sources.NAME.endpoint]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Path joined to `client.base_url`; may hold templates (`teams/{team_id}/matches`).
    #[serde(default)]
    pub path: String,
    /// `GET` (default) or `POST`.
    pub method: Option<HttpMethod>,
    /// Query parameters (templates allowed), or `{ type = "resolve", resource, field }` to fan
    /// out over another source's records.
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// JSON body for POST; string leaves are templates.
    pub json: Option<serde_json::Value>,
    /// Path to the records in the body (`_embedded.events`, `[1]`); the root by default.
    pub data_selector: Option<JsonPathExpr>,
    /// Paginator of this endpoint, overriding the client's.
    pub paginator: Option<PaginatorConfig>,
}

/// HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET.
    Get,
    /// POST.
    Post,
}

/// A query parameter's value.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// One request per record of another source.
    Resolve(ResolveParam),
    /// A template string.
    Text(String),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// `{ type = "resolve", resource = "other_source", field = "id" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveParam {
    /// Always `"resolve"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The source whose records are iterated.
    pub resource: String,
    /// Path of the value in each record.
    pub field: String,
    /// Send the values in batches of this many per request, joined by `separator`
    /// (`ids=a,b,c`: Spotify's `GET /v1/artists?ids=` takes 50); default one per request.
    pub batch: Option<usize>,
    /// What joins a batch's values (default `","`).
    pub separator: Option<String>,
}

impl ResolveParam {
    /// The parameter's values, one request each: every value, or batches of them joined.
    pub fn requests(&self, values: &[String]) -> Vec<String> {
        match self.batch {
            Some(n) if n > 1 => {
                let separator = self.separator.as_deref().unwrap_or(",");
                values
                    .chunks(n)
                    .map(|chunk| chunk.join(separator))
                    .collect()
            }
            _ => values.to_vec(),
        }
    }
}

/// `[sources.NAME.fan_out]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanOutConfig {
    /// One request per value: `values = { country = ["fra", "deu"] }`; lists multiply.
    #[serde(default)]
    pub values: BTreeMap<String, Vec<ScalarValue>>,
    /// One request per row, for variables that go together:
    /// `rows = [{ agency = "Lyon_1", counter = 0 }, { agency = "Lyon_1", counter = 1 }]`;
    /// rows multiply with `values` and the time grid.
    #[serde(default)]
    pub rows: Vec<BTreeMap<String, ScalarValue>>,
    /// One request per step of a grid over the interval.
    pub time: Option<TimeGridConfig>,
}

/// A static fan-out value.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ScalarValue {
    /// Text.
    Text(String),
    /// Integer.
    Integer(i64),
}

impl std::fmt::Display for ScalarValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScalarValue::Text(s) => f.write_str(s),
            ScalarValue::Integer(i) => write!(f, "{i}"),
        }
    }
}

/// `time = { every = "1h", name = "hour" }`: variables `{hour}` (step start) and `{hour.end}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeGridConfig {
    /// Step length (`"1h"`, `"15m"`, `"1d"`).
    pub every: ConfigDuration,
    /// Variable name (default `step`).
    pub name: Option<String>,
}

/// Retry policy for 408, 429, 5xx and network errors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included (default 5).
    pub max_attempts: Option<u32>,
    /// First backoff in milliseconds (default 500), doubled each attempt, with jitter.
    pub initial_backoff_ms: Option<u64>,
    /// Backoff ceiling in seconds (default 60); a longer `Retry-After` is still honoured.
    pub max_backoff_secs: Option<u64>,
}

pub(crate) fn check(
    reporter: &mut Reporter<'_>,
    name: &str,
    rest: &RestSourceConfig,
    sources: &BTreeMap<String, SourceConfig>,
    at: &dyn Fn(&[&str]) -> Option<Range<usize>>,
    redactor: &Redactor,
) {
    if rest.concurrency == Some(0) {
        reporter.error(at(&["concurrency"]), "`concurrency` must be at least 1");
    }
    if rest.max_pages == Some(0) {
        reporter.error(at(&["max_pages"]), "`max_pages` must be at least 1");
    }
    match url::Url::parse(&rest.client.base_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        Ok(u) => reporter.error(
            at(&["client", "base_url"]),
            format!("base_url must be http or https, not {}", u.scheme()),
        ),
        Err(e) => reporter.error(
            at(&["client", "base_url"]),
            format!(
                "invalid base_url {:?}: {e} (expected e.g. \"https://api.example.com/v2/\")",
                redactor.redact(&rest.client.base_url)
            ),
        ),
    }
    if let Some(limits) = &rest.rate_limit {
        rate_limit(reporter, limits, || at(&["rate_limit"]));
    }
    match (&rest.cassette, rest.replay) {
        (None, Some(ReplayMode::Auto | ReplayMode::Always)) => reporter.error(
            at(&["replay"]),
            "`replay` needs a `cassette` (the file of recorded responses, e.g. \"cassettes/NAME.json\")",
        ),
        (Some(path), _) if path.trim().is_empty() || std::path::Path::new(path).is_absolute() => {
            reporter.error(
                at(&["cassette"]),
                "`cassette` is a file relative to the project (e.g. \"cassettes/NAME.json\")",
            )
        }
        _ => {}
    }
    if let Some(retry) = &rest.retry
        && retry.max_attempts == Some(0)
    {
        reporter.error(
            at(&["retry", "max_attempts"]),
            "`max_attempts` must be at least 1",
        );
    }

    // Secrets: registered whatever their origin, and a warning when written in clear.
    if let Some(auth) = &rest.client.auth {
        let secrets: Vec<(&str, &str)> = match auth {
            AuthConfig::ApiKey { api_key, .. } => vec![("api_key", api_key)],
            AuthConfig::Bearer { token } => vec![("token", token)],
            AuthConfig::HttpBasic { username, password } => {
                redactor.add_basic(username, password);
                vec![("password", password)]
            }
            AuthConfig::OAuth2ClientCredentials {
                client_id,
                client_secret,
                ..
            } => {
                redactor.add_basic(client_id, client_secret);
                vec![("client_secret", client_secret)]
            }
        };
        for (key, value) in secrets {
            redactor.add(value);
            if !raw_uses_env(at(&["client", "auth"]), reporter.text) {
                reporter.warn(
                    at(&["client", "auth"]),
                    format!(
                        "the `{key}` of source `{name}` is written in the project file: read it from the environment instead (`{key} = \"${{MY_SECRET}}\"` with MY_SECRET in .env)"
                    ),
                );
            }
        }
    }

    // Fan-out variables, for template checks.
    let mut text_vars: Vec<String> = Vec::new();
    let mut time_vars: Vec<String> = INTERVAL_VARS.iter().map(|s| s.to_string()).collect();
    if let Some(fan_out) = &rest.fan_out {
        for (var, values) in &fan_out.values {
            if values.is_empty() {
                reporter.error(
                    at(&["fan_out", "values", var]),
                    format!("fan-out list `{var}` is empty: give at least one value"),
                );
            }
            text_vars.push(var.clone());
        }
        if let Some(first) = fan_out.rows.first() {
            for (i, row) in fan_out.rows.iter().enumerate() {
                if row.keys().ne(first.keys()) {
                    let names = |r: &BTreeMap<String, crate::schema::ScalarValue>| {
                        r.keys().cloned().collect::<Vec<_>>().join(", ")
                    };
                    reporter.error(
                        at(&["fan_out", "rows"]),
                        format!(
                            "fan-out row {} has variables [{}] but the first row has [{}]: every row needs the same",
                            i + 1,
                            names(row),
                            names(first)
                        ),
                    );
                    break;
                }
            }
            text_vars.extend(first.keys().cloned());
        }
        if let Some(grid) = &fan_out.time {
            if grid.every.get().is_zero() {
                reporter.error(
                    at(&["fan_out", "time", "every"]),
                    "`every` must be positive",
                );
            }
            let var = grid.name.clone().unwrap_or_else(|| "step".to_string());
            time_vars.push(format!("{var}.end"));
            time_vars.push(var);
        }
    }
    let mut resolve_count = 0;
    for (param, value) in &rest.endpoint.params {
        if let ParamValue::Resolve(r) = value {
            resolve_count += 1;
            let span = at(&["endpoint", "params", param]);
            if r.kind != "resolve" {
                reporter.error(
                    span.clone(),
                    format!("parameter `{param}`: a table parameter must have type = \"resolve\""),
                );
            }
            if r.resource == name {
                reporter.error(
                    span.clone(),
                    format!("parameter `{param}` resolves over its own source"),
                );
            } else if !sources.contains_key(&r.resource) {
                let known: Vec<String> = sources.keys().cloned().collect();
                let hint = crate::diagnostics::closest(&r.resource, &known)
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default();
                reporter.error(
                    span.clone(),
                    format!(
                        "parameter `{param}` resolves over unknown source `{}`{hint}",
                        r.resource
                    ),
                );
            }
            if r.batch == Some(0) {
                reporter.error(
                    span.clone(),
                    format!("parameter `{param}`: `batch` must be at least 1 (values per request)"),
                );
            }
            if r.separator.is_some() && r.batch.is_none() {
                reporter.error(
                    span.clone(),
                    format!("parameter `{param}`: `separator` joins a batch: set `batch` too"),
                );
            }
            if let Err(e) = JsonPath::parse(&r.field) {
                reporter.error(span, e.to_string());
            }
            text_vars.push(param.clone());
        }
    }
    if resolve_count > 1 {
        reporter.error(
            at(&["endpoint", "params"]),
            "only one parameter may resolve over another source",
        );
    }
    let time_refs: Vec<&str> = time_vars.iter().map(String::as_str).collect();
    let text_refs: Vec<&str> = text_vars.iter().map(String::as_str).collect();
    let mut check = |template: &str, span: Option<Range<usize>>| match Template::parse(template) {
        Ok(t) => {
            if let Err(e) = t.check(&time_refs, &text_refs) {
                reporter.error(span, e.0);
            }
        }
        Err(e) => reporter.error(span, e.0),
    };
    check(&rest.endpoint.path, at(&["endpoint", "path"]));
    for (param, value) in &rest.endpoint.params {
        if let ParamValue::Text(t) = value {
            check(t, at(&["endpoint", "params", param]));
        }
    }
    if let Some(body) = &rest.endpoint.json {
        let mut leaves = Vec::new();
        string_leaves(body, &mut leaves);
        for leaf in leaves {
            check(leaf, at(&["endpoint", "json"]));
        }
    }

    for (paginator, path) in [
        (&rest.client.paginator, ["client", "paginator"]),
        (&rest.endpoint.paginator, ["endpoint", "paginator"]),
    ] {
        if let Some(p) = paginator {
            paginator_checks(reporter, p, at(&path));
        }
    }
}

fn raw_uses_env(span: Option<Range<usize>>, text: &str) -> bool {
    span.and_then(|s| text.get(s))
        .is_some_and(|raw| raw.contains("${"))
}

fn string_leaves<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| string_leaves(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| string_leaves(v, out)),
        _ => {}
    }
}

fn paginator_checks(reporter: &mut Reporter<'_>, p: &PaginatorConfig, span: Option<Range<usize>>) {
    // Its paths are typed (`JsonPathExpr`): they were checked as the file was read.
    if let PaginatorConfig::Offset { limit: 0, .. } = p {
        reporter.error(span, "offset paginator `limit` must be at least 1");
    }
}
