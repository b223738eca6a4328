//! `[dashboard]` and `[pages.NAME]`: the pages' filters and panels, and their checks (bound
//! parameters, periods, panel kinds).

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use crate::diagnostics::Reporter;
use crate::validate::{is_identifier, span_in};
use crate::values::{ConfigDuration, ListenAddr};

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
    /// Reverse proxies whose `X-Forwarded-For` names the client (addresses or CIDR networks,
    /// e.g. `["127.0.0.1", "10.0.0.0/8"]`). Login throttling counts per client address: behind
    /// a proxy not listed here, every visitor is the proxy's address. Default: none.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNetwork>,
    /// Host names the dashboard answers to (the `Host` header, without port), e.g.
    /// `["dash.example.com"]`. Default: on a loopback address only `localhost`, `127.0.0.1`
    /// and `[::1]` (a page of another site cannot reach a local dashboard through DNS
    /// rebinding); on other addresses, any.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Colours of the dashboard (the seed's pink, black and gold): `#rgb` or `#rrggbb` each.
    /// Default: the light or dark theme of the visitor's system.
    pub theme: Option<ThemeConfig>,
    /// Per-user lists that panels tick and read (`[dashboard.lists.following]`: the artists a
    /// user follows). A panel with `toggle = { list = "following", key = "artist_id" }` puts a
    /// checkbox on each row; every panel's SQL reads the current user's list as `$following`,
    /// a list of text for `array_has($following, artist_id)` (empty on a public page).
    #[serde(default)]
    pub lists: indexmap::IndexMap<String, ListConfig>,
    /// Origins image cells may load from besides the dashboard itself (`["https://i.scdn.co"]`):
    /// the browser refuses images from anywhere else (the page's content security policy).
    /// An image that does not load shows its row's initials instead.
    #[serde(default)]
    pub image_origins: Vec<String>,
}

/// `[dashboard.theme]`: colours, `#rgb` or `#rrggbb`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThemeConfig {
    /// Links, buttons, the current page, the first series (`primaryColor`).
    pub primary: Option<String>,
    /// The page's background (`backgroundColor`).
    pub background: Option<String>,
    /// Panels and the header (`secondaryBackgroundColor`).
    pub surface: Option<String>,
    /// Text (`textColor`).
    pub text: Option<String>,
    /// Secondary text and lines (default: the text colour, faded).
    pub muted: Option<String>,
}

impl ThemeConfig {
    /// The colours set, by name (`primary`, ...).
    pub fn colours(&self) -> Vec<(&'static str, &str)> {
        [
            ("primary", &self.primary),
            ("background", &self.background),
            ("surface", &self.surface),
            ("text", &self.text),
            ("muted", &self.muted),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_deref().map(|v| (n, v)))
        .collect()
    }
}

/// `[dashboard.lists.NAME]`: a list each user keeps (artists followed).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    /// What a ticked box means, on its checkbox and in the menu (default: the list's name).
    pub label: Option<String>,
}

/// An IP network: an address and a prefix length (`10.0.0.0/8`, `fd00::/8`); a bare address is
/// a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// The network of `addr`'s first `prefix` bits (at most 32 for IPv4, 128 for IPv6).
    pub fn new(addr: std::net::IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNetwork {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{text}` is not an IP address or network: write \"10.0.0.1\", \"10.0.0.0/8\" or \"fd00::/8\""
            )
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: std::net::IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        Self::new(addr, prefix).ok_or_else(bad)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
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
    /// Shown without logging in (an "about" page). Its panels see every `[dashboard.lists]` as
    /// empty, and it has no alerts panel.
    #[serde(default)]
    pub public: bool,
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
    /// `kpi`, `line`, `area`, `bar`, `table`, `top`, `map`, `text`, `alerts` or `cards`.
    pub kind: PanelKind,
    /// Title (default: the panel's name).
    pub title: Option<String>,
    /// The query (every kind but `text` and `alerts`).
    pub sql: Option<String>,
    /// For `text`: the text shown (paragraphs separated by blank lines).
    pub text: Option<String>,
    /// For charts: the x column (default: the first column).
    pub x: Option<String>,
    /// For charts: the series columns (default: every column but x).
    #[serde(default)]
    pub y: Vec<String>,
    /// For `line`, `area` and `bar`: columns drawn against a second axis, on the right (a
    /// temperature beside a rate), as lines; not with `series`.
    #[serde(default)]
    pub y2: Vec<String>,
    /// For charts: a column whose values split rows into series (long format). For `map`: one
    /// coloured layer per value.
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
    /// For `map` with `geojson`: the feature property naming each polygon (`"l_ar"`). The
    /// polygons are then coloured by value (a choropleth) instead of points being drawn: each
    /// row names a polygon in its `region` column (else its first) and gives its `value`
    /// (else its first numeric column).
    pub regions: Option<String>,
    /// Colours of series by name, or with `series`, by value (`{ Disponible = "#2e7d32" }`):
    /// `#rgb` or `#rrggbb`. Others take the palette's.
    #[serde(default)]
    pub colors: std::collections::BTreeMap<String, String>,
    /// A line under the panel: a source, an attribution (`Arrondissements: Ville de Paris,
    /// ODbL`).
    pub note: Option<String>,
    /// Width in grid columns, 1 to 4 (default: 1 for kpi, 2 otherwise).
    pub width: Option<u8>,
    /// For `line`, `area` and `bar`: beside each series, its baseline at each point, the mean of
    /// its values at the same weekday and time over the previous N weeks (`"4 same weekdays"`)
    /// or at the same hour over the previous N days (`"7 same hours"`), as alerts compare with
    /// (`baseline_above`). Computed from the data before the period too.
    pub baseline: Option<crate::schema::Baseline>,
    /// For `alerts`: the alerts whose firings it lists (`[alerts.NAME]`; default: every alert).
    #[serde(default)]
    pub alerts: Vec<String>,
    /// For `table` and `cards`: how columns are shown, by name: `"image"` (an image from the
    /// URL in the cell: `[dashboard] image_origins` says from where) or `"link"` (the URL as a
    /// link, opened in a new tab; a path such as `/pages/artist?artist=ID` stays in the
    /// dashboard).
    #[serde(default)]
    pub formats: std::collections::BTreeMap<String, CellFormat>,
    /// For `table` and `cards`: a checkbox on each row that adds the value of column `key` to
    /// the current user's list `list` (`[dashboard.lists.NAME]`), or removes it.
    pub toggle: Option<ToggleConfig>,
    /// "Where does this come from" for a chart's point: a query selecting `_affluent_entry`
    /// from the tables the panel's data is computed from, bound with the page's filters and
    /// with `$point_COLUMN`, the point's x column and series column (`$point_date`). Its rows'
    /// landing entries are shown with their requests; admins open the raw responses.
    #[serde(default)]
    pub lineage: Option<String>,
}

/// How a cell is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CellFormat {
    /// An image from the URL in the cell.
    Image,
    /// A link to the URL in the cell.
    Link,
}

/// `toggle = { list = "following", key = "artist_id" }`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToggleConfig {
    /// The list (`[dashboard.lists.NAME]`).
    pub list: String,
    /// The column whose value goes into the list.
    pub key: String,
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
    /// The firings of alerts, each user's unseen ones first, with "mark seen".
    Alerts,
    /// A grid of cards, one per row: its `image` column, the first other column as the title,
    /// the rest as lines, `link` columns as buttons.
    Cards,
}

/// The `$parameters` a page's filters bind: `NAME` for select, multi and granularity filters;
/// `NAME_start` and `NAME_end` for period filters.
pub fn page_parameters(page: &crate::schema::PageConfig) -> Vec<String> {
    let mut out = Vec::new();
    for (name, filter) in &page.filters {
        if filter.kind == crate::schema::FilterKind::Period {
            out.push(format!("{name}_start"));
            out.push(format!("{name}_end"));
        } else {
            out.push(name.clone());
        }
    }
    out
}

/// The `$name` placeholders of a query, in order of first use (`$1` positional ones excluded).
/// Placeholders inside quoted strings and identifiers are not parameters.
pub fn placeholders(sql: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut quote: Option<char> = None;
    for (i, c) in sql.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '$' => {
                let rest = &sql[i + 1..];
                let len = rest
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .unwrap_or(rest.len());
                let name = &rest[..len];
                if name.starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_')
                    && !out.iter().any(|n| n == name)
                {
                    out.push(name.to_string());
                }
            }
            None => {}
        }
    }
    out
}

/// Period presets a `period` filter understands.
pub const PERIOD_PRESETS: &[&str] = &[
    "last_7_days",
    "last_4_weeks",
    "last_8_weeks",
    "last_3_months",
    "last_6_months",
    "last_12_months",
    "all",
];

/// Granularities `date_trunc` understands.
pub const GRANULARITIES: &[&str] = &["minute", "hour", "day", "week", "month", "quarter", "year"];

pub(crate) fn check(
    reporter: &mut Reporter<'_>,
    project_dir: &std::path::Path,
    settings: &crate::schema::ProjectSettings,
    root: &Spanned<DeTable<'_>>,
) {
    use crate::schema::{FilterKind, PanelKind};
    let d = &settings.dashboard;
    if let Some(locale) = &d.locale
        && (locale.is_empty()
            || !locale
                .split('-')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric())))
    {
        reporter.error(
            span_in(root, &["dashboard", "locale"]),
            format!("`locale` must be a BCP 47 tag such as \"fr-FR\" (got \"{locale}\")"),
        );
    }
    if let Some(theme) = &d.theme {
        for (name, colour) in theme.colours() {
            if !is_hex_color(colour) {
                reporter.error(
                    span_in(root, &["dashboard", "theme", name]),
                    format!("theme colour `{name}` = {colour:?} is not `#rgb` or `#rrggbb`"),
                );
            }
        }
    }
    for (name, _) in &d.lists {
        if !is_identifier(name) || name.contains('-') {
            reporter.error(
                span_in(root, &["dashboard", "lists", name]),
                format!("invalid list name `{name}`: use letters, digits and `_` (panels read it as `${name}`)"),
            );
        }
    }
    for (i, origin) in d.image_origins.iter().enumerate() {
        // Only what a content security policy source may hold, as written (no spaces, no `*`).
        let plain = origin
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:/-[]".contains(c));
        let ok = plain
            && url::Url::parse(origin).is_ok_and(|u| {
                matches!(u.scheme(), "https" | "http")
                    && u.host_str().is_some()
                    && u.path() == "/"
                    && u.query().is_none()
                    && !origin.ends_with('/')
            });
        if !ok {
            reporter.error(
                span_in(root, &["dashboard", "image_origins"]),
                format!(
                    "image origin #{} {origin:?} is not an origin: write \"https://host\" (scheme and host, optionally a port, no path)",
                    i + 1
                ),
            );
        }
    }
    let lists: Vec<String> = d.lists.keys().cloned().collect();
    for (page_name, page) in &settings.pages {
        let at = |path: &[&str]| {
            let mut full = vec!["pages", page_name.as_str()];
            full.extend_from_slice(path);
            span_in(root, &full)
        };
        if !is_identifier(page_name) {
            reporter.error(
                at(&[]),
                format!("invalid page name `{page_name}`: use letters, digits, `_` and `-`"),
            );
        }
        let mut params = page_parameters(page);
        for list in &lists {
            if params.contains(list) {
                reporter.error(
                    at(&["filters", list]),
                    format!("filter `{list}` has the name of `[dashboard.lists.{list}]`: panels could not tell `${list}` apart; rename one"),
                );
            }
            params.push(list.clone());
        }
        let check_sql = |reporter: &mut Reporter<'_>, sql: &str, path: &[&str]| {
            for p in placeholders(sql) {
                if !params.contains(&p) {
                    let hint = affluent_core::closest(&p, &params)
                        .map(|k| format!("; did you mean `${k}`?"))
                        .unwrap_or_default();
                    reporter.error(
                        at(path),
                        format!(
                            "`${p}` is not a filter of page `{page_name}`{hint} (its parameters: {})",
                            if params.is_empty() {
                                "none".to_string()
                            } else {
                                params.iter().map(|p| format!("${p}")).collect::<Vec<_>>().join(", ")
                            }
                        ),
                    );
                }
            }
        };
        for (name, f) in &page.filters {
            if !is_identifier(name) || name.contains('-') {
                reporter.error(
                    at(&["filters", name]),
                    format!("invalid filter name `{name}`: use letters, digits and `_`"),
                );
            }
            match f.kind {
                FilterKind::Select | FilterKind::Multi => {
                    if f.sql.is_none() && f.options.is_empty() {
                        reporter.error(
                            at(&["filters", name]),
                            format!("filter `{name}` needs `sql` (a query listing its values) or `options`"),
                        );
                    }
                }
                FilterKind::Period => {
                    if let Some(preset) = &f.default
                        && !PERIOD_PRESETS.contains(&preset.as_str())
                    {
                        reporter.error(
                            at(&["filters", name, "default"]),
                            format!(
                                "unknown period preset `{preset}` (known: {})",
                                PERIOD_PRESETS.join(", ")
                            ),
                        );
                    }
                    if let Some(min) = &f.min_date
                        && min.parse::<jiff::civil::Date>().is_err()
                    {
                        reporter.error(
                            at(&["filters", name, "min_date"]),
                            "`min_date` must be a date such as 2024-01-01",
                        );
                    }
                }
                FilterKind::Granularity => {
                    for o in &f.options {
                        if !GRANULARITIES.contains(&o.as_str()) {
                            reporter.error(
                                at(&["filters", name, "options"]),
                                format!(
                                    "unknown granularity `{o}` (known: {})",
                                    GRANULARITIES.join(", ")
                                ),
                            );
                        }
                    }
                }
            }
            if let Some(sql) = &f.sql {
                check_sql(reporter, sql, &["filters", name, "sql"]);
            }
            if let Some(sql) = &f.anchor_sql {
                check_sql(reporter, sql, &["filters", name, "anchor_sql"]);
            }
        }
        for fav in &page.favourite {
            if !page.filters.contains_key(fav) {
                reporter.error(
                    at(&["favourite"]),
                    format!(
                        "`favourite` names `{fav}`, which is not a filter of page `{page_name}`"
                    ),
                );
            }
        }
        for (name, panel) in &page.panels {
            match (panel.kind, &panel.sql, &panel.text) {
                (PanelKind::Text, _, None) => reporter.error(
                    at(&["panels", name]),
                    format!("text panel `{name}` needs `text`"),
                ),
                (PanelKind::Text, _, Some(_)) => {}
                (PanelKind::Alerts, Some(_), _) => reporter.error(
                    at(&["panels", name, "sql"]),
                    format!(
                        "alerts panel `{name}` reads the firings of `alerts`, not `sql`: remove `sql`"
                    ),
                ),
                (PanelKind::Alerts, None, _) => {}
                (_, None, _) => {
                    reporter.error(at(&["panels", name]), format!("panel `{name}` needs `sql`"))
                }
                (_, Some(sql), _) => check_sql(reporter, sql, &["panels", name, "sql"]),
            }
            if let Some(lineage) = &panel.lineage {
                // `$point_*` are the columns of the point clicked, known only then.
                let mut points: Vec<String> = placeholders(lineage)
                    .into_iter()
                    .filter(|p| p.starts_with("point_"))
                    .collect();
                points.sort_by_key(|p| std::cmp::Reverse(p.len()));
                let mut rest = lineage.clone();
                for p in &points {
                    rest = rest.replace(&format!("${p}"), "NULL");
                }
                check_sql(reporter, &rest, &["panels", name, "lineage"]);
                if !lineage.contains("_affluent_entry") {
                    reporter.error(
                        at(&["panels", name, "lineage"]),
                        format!("the `lineage` of panel `{name}` must select `_affluent_entry`, the landing entry of each row"),
                    );
                }
            }
            if panel.baseline.is_some()
                && !matches!(
                    panel.kind,
                    PanelKind::Line | PanelKind::Area | PanelKind::Bar
                )
            {
                reporter.error(
                    at(&["panels", name, "baseline"]),
                    format!(
                        "`baseline` is for line, area and bar panels (panel `{name}` is not one)"
                    ),
                );
            }
            if panel.kind == PanelKind::Alerts {
                let known: Vec<String> = settings.alerts.keys().cloned().collect();
                if settings.alerts.is_empty() {
                    reporter.error(
                        at(&["panels", name]),
                        format!("alerts panel `{name}`: the project has no `[alerts.NAME]`"),
                    );
                }
                for alert in &panel.alerts {
                    if !settings.alerts.contains_key(alert) {
                        let hint = affluent_core::closest(alert, &known)
                            .map(|k| format!("; did you mean `{k}`?"))
                            .unwrap_or_default();
                        reporter.error(
                            at(&["panels", name, "alerts"]),
                            format!(
                                "`{alert}` is not an alert of this project{hint} (known: {})",
                                known.join(", ")
                            ),
                        );
                    }
                }
            } else if !panel.alerts.is_empty() {
                reporter.error(
                    at(&["panels", name, "alerts"]),
                    format!(
                        "`alerts` is for panels of kind \"alerts\" (panel `{name}` is not one)"
                    ),
                );
            }
            if page.public && panel.kind == PanelKind::Alerts {
                reporter.error(
                    at(&["panels", name]),
                    format!("alerts panel `{name}` is on a public page: firings are for logged-in users (and their seen state); move it to another page"),
                );
            }
            let rows = matches!(panel.kind, PanelKind::Table | PanelKind::Cards);
            if !panel.formats.is_empty() && !rows {
                reporter.error(
                    at(&["panels", name, "formats"]),
                    "`formats` is for table and cards panels",
                );
            }
            if let Some(toggle) = &panel.toggle {
                if !rows {
                    reporter.error(
                        at(&["panels", name, "toggle"]),
                        "`toggle` is for table and cards panels",
                    );
                }
                if !d.lists.contains_key(&toggle.list) {
                    let hint = affluent_core::closest(&toggle.list, &lists)
                        .map(|k| format!("; did you mean `{k}`?"))
                        .unwrap_or_default();
                    reporter.error(
                        at(&["panels", name, "toggle"]),
                        format!(
                            "`toggle` names list `{}`, which is not in `[dashboard.lists]`{hint}",
                            toggle.list
                        ),
                    );
                }
                if page.public {
                    reporter.error(
                        at(&["panels", name, "toggle"]),
                        "`toggle` is on a public page: lists belong to logged-in users",
                    );
                }
            }
            if let Some(w) = panel.width
                && !(1..=4).contains(&w)
            {
                reporter.error(at(&["panels", name, "width"]), "`width` must be 1 to 4");
            }
            if panel.limit == Some(0) {
                reporter.error(at(&["panels", name, "limit"]), "`limit` must be at least 1");
            }
            if let Some(compare) = &panel.compare
                && page.filters.get(compare).map(|f| f.kind) != Some(FilterKind::Period)
            {
                reporter.error(
                    at(&["panels", name, "compare"]),
                    format!("`compare` must name a period filter of page `{page_name}`"),
                );
            }
            let chart = matches!(
                panel.kind,
                PanelKind::Line | PanelKind::Area | PanelKind::Bar
            );
            if !panel.y2.is_empty() && !chart {
                reporter.error(
                    at(&["panels", name, "y2"]),
                    "`y2` (a second axis) is for line, area and bar panels",
                );
            }
            if !panel.y2.is_empty() && panel.series.is_some() {
                reporter.error(
                    at(&["panels", name, "y2"]),
                    "`y2` names columns, and with `series` the series are the values of a column: use one or the other",
                );
            }
            if !panel.colors.is_empty() && !chart && panel.kind != PanelKind::Map {
                reporter.error(
                    at(&["panels", name, "colors"]),
                    "`colors` is for line, area, bar and map panels",
                );
            }
            for (name_of, color) in &panel.colors {
                if !is_hex_color(color) {
                    reporter.error(
                        at(&["panels", name, "colors", name_of]),
                        format!("colour {color:?} of `{name_of}` is not `#rgb` or `#rrggbb`"),
                    );
                }
            }
            if panel.regions.is_some() && (panel.kind != PanelKind::Map || panel.geojson.is_none())
            {
                reporter.error(
                    at(&["panels", name, "regions"]),
                    "`regions` is for map panels with a `geojson`: the property of its features naming each polygon",
                );
            }
            if let Some(geo) = &panel.geojson
                && !project_dir.join(geo).is_file()
            {
                reporter.error(
                    at(&["panels", name, "geojson"]),
                    format!("no GeoJSON file at {}", project_dir.join(geo).display()),
                );
            }
        }
    }
}

/// `#rgb` or `#rrggbb`.
fn is_hex_color(text: &str) -> bool {
    text.strip_prefix('#')
        .is_some_and(|hex| matches!(hex.len(), 3 | 6) && hex.chars().all(|c| c.is_ascii_hexdigit()))
}
