//! The user's schema of `affluent.toml`. Every struct denies unknown keys; its `///` docs are the
//! reference documentation of the key. Names follow dlt's `rest_api` where dlt has a word for it.

use std::collections::BTreeMap;

use serde::Deserialize;

pub use crate::values::{ConfigDuration, ConfigTimeZone, CronExpr, ListenAddr, StartDate};

/// Project-level settings: everything in `affluent.toml` except `[sources.*]`, which are read one
/// by one so that an error in one source does not hide the errors of the others.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSettings {
    /// A name for the project, shown in logs and the dashboard.
    pub name: Option<String>,
    /// IANA time zone of schedules, data intervals and templates (default `UTC`).
    pub timezone: Option<ConfigTimeZone>,
    /// Where landing, state and tables live, relative to the project directory (default `.affluent`).
    pub data_dir: Option<String>,
    /// Rate limits per host, shared by every source calling that host: `[hosts."api.example.com"]`.
    #[serde(default)]
    pub hosts: BTreeMap<String, RateLimitConfig>,
    /// The landing zone.
    pub landing: Option<LandingConfig>,
    /// Delta tables loaded from the sources' landed records: `[tables.NAME]`.
    #[serde(default)]
    pub tables: BTreeMap<String, TableConfig>,
    /// SQL models materialized as Delta tables: `[models.NAME]`.
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    /// Where the scheduler keeps coverage and run history: `sqlite:///path.db` or
    /// `postgres://user@host/db` (default: SQLite in `DATA_DIR/state/affluent.db`).
    pub state_url: Option<String>,
    /// How `affluent run` schedules.
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    /// Notifications of failed and recovered runs.
    pub notify: Option<NotifyConfig>,
    /// The web dashboard served by `affluent serve` and `affluent run`.
    #[serde(default)]
    pub dashboard: DashboardConfig,
    /// Dashboard pages, in menu order: `[pages.NAME]`.
    #[serde(default)]
    pub pages: indexmap::IndexMap<String, PageConfig>,
}

/// `[dashboard]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// Title shown in the header (default: the project's name).
    pub title: Option<String>,
    /// BCP 47 locale of dates and numbers, e.g. `"fr-FR"` (default `"en-GB"`).
    pub locale: Option<String>,
    /// Address to listen on (default `127.0.0.1:8080`).
    pub listen: Option<ListenAddr>,
    /// Mark cookies `Secure` (set when served behind TLS; default false).
    pub secure_cookies: Option<bool>,
    /// How long an idle session stays logged in (default `"12h"`).
    pub session_ttl: Option<ConfigDuration>,
}

/// `[pages.NAME]`: filters and panels. Each panel is a SQL query whose `$parameters` come from
/// the page's filters; values are bound, never pasted into the SQL.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageConfig {
    /// Title in the menu and header (default: the page's name).
    pub title: Option<String>,
    /// A line under the title.
    pub description: Option<String>,
    /// Filters, in display order: `[pages.NAME.filters.FILTER]`.
    #[serde(default)]
    pub filters: indexmap::IndexMap<String, FilterConfig>,
    /// Panels, in display order: `[pages.NAME.panels.PANEL]`.
    #[serde(default)]
    pub panels: indexmap::IndexMap<String, PanelConfig>,
    /// The filters whose values together name an entity users can star (e.g.
    /// `["agency", "counter"]`); starred entities are listed on "My favourites".
    #[serde(default)]
    pub favourite: Vec<String>,
}

/// One filter of a page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// `select` (one value, with search), `multi` (several values), `period` (a date range
    /// with presets, bound as `$NAME_start` and `$NAME_end`, end excluded) or `granularity`
    /// (`day`, `week`, `month`, ...).
    pub kind: FilterKind,
    /// Label (default: the filter's name).
    pub label: Option<String>,
    /// For select/multi: a query whose first column is the values (and second, if any, their
    /// labels). It may use the page's other filters.
    pub sql: Option<String>,
    /// For select/multi/granularity: fixed values, instead of `sql`.
    #[serde(default)]
    pub options: Vec<String>,
    /// For select: offer "All", bound as NULL.
    #[serde(default)]
    pub all: bool,
    /// The initial value: a value (select), values (multi, comma-separated), a preset (period:
    /// `last_7_days`, `last_4_weeks`, `last_8_weeks`, `last_3_months`, `last_6_months`,
    /// `last_12_months`, `all`) or a granularity. Default: the first value / `last_4_weeks`.
    pub default: Option<String>,
    /// For period: a query giving the last date with data, so that presets end there rather
    /// than today (historical data).
    pub anchor_sql: Option<String>,
    /// For period with the `all` preset: the earliest date (default 1970-01-01).
    pub min_date: Option<String>,
}

/// Kinds of filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterKind {
    /// One value.
    Select,
    /// Several values, bound as a list (`array_has($NAME, column)`).
    Multi,
    /// A date range: `$NAME_start`, `$NAME_end`.
    Period,
    /// A time granularity for `date_trunc($NAME, ...)`.
    Granularity,
}

/// One panel of a page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelConfig {
    /// `kpi`, `line`, `area`, `bar`, `table`, `top`, `map` or `text`.
    pub kind: PanelKind,
    /// Title (default: the panel's name).
    pub title: Option<String>,
    /// The query (every kind but `text`).
    pub sql: Option<String>,
    /// For `text`: the text shown (paragraphs separated by blank lines).
    pub text: Option<String>,
    /// For charts: the x column (default: the first column).
    pub x: Option<String>,
    /// For charts: the series columns (default: every column but x).
    #[serde(default)]
    pub y: Vec<String>,
    /// For charts: a column whose values split rows into series (long format).
    pub series: Option<String>,
    /// For `kpi`: a unit shown after the value (e.g. `"%"`).
    pub unit: Option<String>,
    /// For `kpi`: compare with the previous period of this period filter (default: the page's
    /// only period filter, if any).
    pub compare: Option<String>,
    /// For `top`: how many rows (default 10). For `table`: rows per page (default 25).
    pub limit: Option<usize>,
    /// For `map`: a GeoJSON file, relative to the project, drawn as the background.
    pub geojson: Option<String>,
    /// Width in grid columns, 1 to 4 (default: 1 for kpi, 2 otherwise).
    pub width: Option<u8>,
}

/// Kinds of panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PanelKind {
    /// One value with its change vs the previous period.
    Kpi,
    /// Time series as lines.
    Line,
    /// Time series as filled areas.
    Area,
    /// Bars.
    Bar,
    /// A sortable, paginated table.
    Table,
    /// The N largest values.
    Top,
    /// Points (lon, lat) on a GeoJSON background.
    Map,
    /// Text.
    Text,
}

/// `[scheduler]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Catch-up, retry and backfill runs in flight at once over every source (default 4); live
    /// runs are not counted.
    pub concurrency: Option<usize>,
    /// How long a claimed interval stays claimed without renewal (default `"60s"`).
    pub lease: Option<ConfigDuration>,
    /// First retry delay of a failed interval, doubled each attempt (default `"30s"`).
    pub retry_initial: Option<ConfigDuration>,
    /// Longest retry delay (default `"1h"`).
    pub retry_max: Option<ConfigDuration>,
    /// On SIGINT/SIGTERM, how long runs in flight may take to finish (default `"30s"`).
    pub shutdown_grace: Option<ConfigDuration>,
}

/// `[notify]`: where to say that a run failed or recovered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Which events: `failure`, `recovery`, `success` (default failure and recovery).
    #[serde(default)]
    pub on: Vec<NotifyOn>,
    /// POST a JSON document to this URL.
    pub webhook: Option<WebhookConfig>,
    /// Send an email over SMTP.
    pub email: Option<EmailConfig>,
}

/// An event worth a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    Failure,
    Recovery,
    Success,
}

/// `[notify.webhook]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL that receives the JSON POST.
    pub url: String,
    /// Extra headers (`Authorization = "Bearer ${HOOK_TOKEN}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[notify.email]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp://host:port`, `smtps://user:pass@host` (implicit TLS) or
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS).
    pub smtp_url: String,
    /// The sender address.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
}

/// `[tables.NAME]`: a Delta table fed by one source's records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The source whose landed records feed the table.
    pub source: String,
    /// `append` (default), `merge` (upsert on `primary_key`) or `replace`.
    pub write: Option<WriteMode>,
    /// Columns identifying a row: required by `merge`, where the latest record of a key wins.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// With `merge`: the column deciding which record is the latest (a record older than the one
    /// in the table does not overwrite it). Default: the latest to arrive wins.
    pub order_by: Option<String>,
    /// With `replace`: the column whose values the new records replace (rows of the table with
    /// those values are removed, e.g. a day). Default: the whole table is replaced by the records
    /// of the newest run.
    pub replace_by: Option<String>,
    /// Path, inside each record, to an array of objects (one row each) or an object of parallel
    /// arrays (Open-Meteo's `hourly`: one row per index). Column paths are then relative to the
    /// element; `$.path` reaches the whole record.
    pub explode: Option<String>,
    /// Columns, in this order: `name = "path"` (type inferred) or `name = { path, type, format }`.
    /// Empty: every top-level field, nested objects flattened as `parent__child`, arrays as JSON
    /// text; new fields become new nullable columns.
    #[serde(default)]
    pub columns: indexmap::IndexMap<String, ColumnSpec>,
}

/// How a load writes a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Add the records.
    Append,
    /// Upsert on `primary_key`.
    Merge,
    /// Replace the whole table, or the rows sharing `replace_by` values.
    Replace,
}

/// One declared column.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ColumnSpec {
    /// A path only: the type is inferred.
    Path(String),
    /// A path with a type.
    Typed(TypedColumn),
}

impl ColumnSpec {
    /// The path to the value in the record.
    pub fn path(&self) -> &str {
        match self {
            ColumnSpec::Path(p) => p,
            ColumnSpec::Typed(t) => &t.path,
        }
    }
}

/// `{ path = "...", type = "...", format = "..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypedColumn {
    /// Path to the value (`_embedded.venues[0].city.name`).
    pub path: String,
    /// `string`, `int`, `float`, `bool`, `date`, `timestamp` or `json` (default: inferred).
    #[serde(rename = "type")]
    pub kind: Option<TableType>,
    /// strftime formats tried in order for `date` and `timestamp` text (default: ISO 8601).
    pub format: Option<OneOrMany>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// As a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A table column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableType {
    /// UTF-8 text.
    String,
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Float,
    /// Boolean.
    Bool,
    /// Calendar date.
    Date,
    /// Instant, microseconds, UTC; text without an offset is read in the source's time zone.
    Timestamp,
    /// Any JSON value, kept as its text.
    Json,
}

/// `[models.NAME]`: a SQL query (DataFusion dialect) over tables and other models, materialized
/// as a Delta table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The query, inline.
    pub sql: Option<String>,
    /// Or a file holding it, relative to the project directory.
    pub file: Option<String>,
    /// `replace` (default: the table is the query's result) or `merge` (rows upserted on
    /// `primary_key`, for queries that compute a recent window with `$interval_start` /
    /// `$interval_end`).
    pub materialized: Option<Materialized>,
    /// Key of `merge` models.
    #[serde(default)]
    pub primary_key: Vec<String>,
}

/// How a model is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Materialized {
    /// The table becomes the query's result.
    Replace,
    /// The query's rows are upserted on the key.
    Merge,
}

/// `[landing]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandingConfig {
    /// How long landed responses are kept once their records are safely loaded (`"90d"`);
    /// `affluent landing prune` applies it. Unset: kept forever.
    pub retention: Option<ConfigDuration>,
}

/// The scheduling keys of a source, whatever its type.
#[derive(Debug, Clone, Copy)]
pub struct Scheduling<'a> {
    /// `schedule`: a cron.
    pub schedule: Option<&'a CronExpr>,
    /// `every`: a period.
    pub every: Option<ConfigDuration>,
    /// `start_date`.
    pub start_date: Option<StartDate>,
    pub catchup: bool,
    pub max_active: usize,
}

impl SourceConfig {
    /// When the source runs.
    pub fn scheduling(&self) -> Scheduling<'_> {
        macro_rules! of {
            ($c:expr) => {
                Scheduling {
                    schedule: $c.schedule.as_ref(),
                    every: $c.every,
                    start_date: $c.start_date,
                    catchup: $c.catchup.unwrap_or(true),
                    max_active: $c.max_active.unwrap_or(1).max(1),
                }
            };
        }
        match self {
            Self::Rest(r) => of!(r),
            Self::Csv(c) => of!(c),
        }
    }
}

/// The kinds of source, by their `type` key.
pub const SOURCE_TYPES: &[&str] = &["rest", "csv"];

/// One `[sources.NAME]` table.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// `type = "rest"`.
    Rest(Box<RestSourceConfig>),
    /// `type = "csv"`.
    Csv(Box<CsvSourceConfig>),
}

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
    /// How many requests of this source may be in flight at once (default 4).
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
        total_path: Option<String>,
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
        total_path: Option<String>,
        /// Offset not to reach.
        maximum_offset: Option<u64>,
        /// Stop at the first page with no records (default true).
        stop_after_empty_page: Option<bool>,
    },
    /// A cursor from the body sent back as a parameter.
    Cursor {
        /// Path to the next cursor in the body (default `cursors.next`).
        cursor_path: Option<String>,
        /// Query parameter carrying it (default `cursor`).
        cursor_param: Option<String>,
    },
    /// The next page's URL in the body (Spotify `next`).
    JsonLink {
        /// Path to the next URL (default `next`).
        next_url_path: Option<String>,
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
    pub data_selector: Option<String>,
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

/// Rate limits; requests are spaced evenly so no window of the period exceeds the limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second.
    pub per_second: Option<u32>,
    /// Requests per minute.
    pub per_minute: Option<u32>,
    /// Requests per calendar day in the project's time zone; survives restarts.
    pub per_day: Option<u32>,
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

/// A CSV source (`type = "csv"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSourceConfig {
    /// Always `"csv"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Glob of files, relative to the project directory (`data/raw/*.csv`).
    pub path: String,
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
    /// Field delimiter (default `,`).
    pub delimiter: Option<String>,
    /// Quote character (default `"`).
    pub quote: Option<String>,
    /// Text encoding: any WHATWG label (`utf-8` default, `latin1`, `windows-1252`, ...).
    pub encoding: Option<String>,
    /// Whether the first row names the columns (default true).
    pub has_header: Option<bool>,
    /// Declared column types: `string`, `int`, `float`, `bool`; other columns are inferred.
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnType>,
}

/// A CSV column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// Text, kept as is.
    String,
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Float,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`).
    Bool,
}
