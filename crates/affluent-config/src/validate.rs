//! Checks that need more than types: time zones, URLs, templates and their variables, JSON
//! paths, references between sources, durations, globs and encodings. Each error points at the
//! key it is about.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use affluent_core::template::Template;
use affluent_core::{JsonPath, Redactor};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostics::Reporter;
use crate::schema::{
    AuthConfig, ColumnSpec, CsvSourceConfig, Materialized, ModelConfig, PaginatorConfig,
    ParamValue, RateLimitConfig, RestSourceConfig, SourceConfig, TableConfig, TableType, WriteMode,
};

/// The variables every REST template may use.
pub const INTERVAL_VARS: &[&str] = &["interval.start", "interval.end"];

pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The span of the value at `path` (keys from the table's root), or of the deepest key found.
pub(crate) fn span_in(table: &Spanned<DeTable<'_>>, path: &[&str]) -> Option<Range<usize>> {
    let mut current = table.get_ref();
    let mut span = Some(table.span());
    for (i, key) in path.iter().enumerate() {
        let (k, v) = current.get_key_value(*key)?;
        span = Some(if i + 1 == path.len() {
            v.span()
        } else {
            k.span()
        });
        match v.get_ref() {
            DeValue::Table(t) => current = t,
            _ => return Some(v.span()),
        }
    }
    span
}

pub(crate) fn hosts(
    reporter: &mut Reporter<'_>,
    hosts: &BTreeMap<String, RateLimitConfig>,
    root: &Spanned<DeTable<'_>>,
) {
    for (host, limits) in hosts {
        rate_limit(reporter, limits, || span_in(root, &["hosts", host]));
        if host.contains('/') || host.contains(':') {
            reporter.error(
                span_in(root, &["hosts", host]),
                format!(
                    "[hosts.\"{host}\"] must be a host name such as \"api.example.com\", not a URL"
                ),
            );
        }
    }
}

fn rate_limit(
    reporter: &mut Reporter<'_>,
    limits: &RateLimitConfig,
    span: impl Fn() -> Option<Range<usize>>,
) {
    for (name, value) in [
        ("per_second", limits.per_second),
        ("per_minute", limits.per_minute),
        ("per_day", limits.per_day),
    ] {
        if value == Some(0) {
            reporter.error(
                span(),
                format!("`{name}` must be at least 1 (remove it for no limit)"),
            );
        }
    }
}

pub(crate) fn sources(
    reporter: &mut Reporter<'_>,
    sources: &BTreeMap<String, SourceConfig>,
    tables: &BTreeMap<String, Spanned<DeTable<'_>>>,
    redactor: &Redactor,
) {
    for (name, source) in sources {
        let Some(table) = tables.get(name) else {
            continue;
        };
        let at = |path: &[&str]| span_in(table, path);
        reporter.scope = Some(name.clone());
        scheduling(reporter, source, &at);
        match source {
            SourceConfig::Rest(rest) => rest_source(reporter, name, rest, sources, &at, redactor),
            SourceConfig::Csv(csv) => csv_source(reporter, name, csv, &at),
        }
        reporter.scope = None;
    }
    // A resolve chain must not loop.
    for name in sources.keys() {
        let mut seen = BTreeSet::new();
        let mut current = name.clone();
        while let Some(SourceConfig::Rest(rest)) = sources.get(&current) {
            let Some(parent) = rest.resolve().map(|(_, r)| r.resource.clone()) else {
                break;
            };
            if !seen.insert(current.clone()) {
                let span = tables.get(name).map(|t| t.span());
                reporter.error(
                    span,
                    format!(
                        "source `{name}` resolves its parameters through a cycle of sources ({})",
                        seen.into_iter().collect::<Vec<_>>().join(" -> ")
                    ),
                );
                break;
            }
            current = parent;
        }
    }
}

fn scheduling(
    reporter: &mut Reporter<'_>,
    source: &SourceConfig,
    at: &dyn Fn(&[&str]) -> Option<Range<usize>>,
) {
    let s = source.scheduling();
    if s.schedule.is_some() && s.every.is_some() {
        reporter.error(
            at(&["every"]),
            "give either `schedule` (a cron) or `every` (a period), not both",
        );
    }
    if s.start_date.is_some() && s.schedule.is_none() && s.every.is_none() {
        reporter.error(
            at(&["start_date"]),
            "`start_date` needs `schedule` or `every`",
        );
    }
    let max_active = match source {
        SourceConfig::Rest(r) => r.max_active,
        SourceConfig::Csv(c) => c.max_active,
    };
    if max_active == Some(0) {
        reporter.error(at(&["max_active"]), "`max_active` must be at least 1");
    }
}

fn rest_source(
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

    if let Some(selector) = &rest.endpoint.data_selector
        && let Err(e) = JsonPath::parse(selector)
    {
        reporter.error(at(&["endpoint", "data_selector"]), e.to_string());
    }
    for (paginator, path) in [
        (&rest.client.paginator, ["client", "paginator"]),
        (&rest.endpoint.paginator, ["endpoint", "paginator"]),
    ] {
        if let Some(p) = paginator {
            paginator_paths(reporter, p, at(&path));
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

fn paginator_paths(reporter: &mut Reporter<'_>, p: &PaginatorConfig, span: Option<Range<usize>>) {
    let paths: Vec<&String> = match p {
        PaginatorConfig::PageNumber { total_path, .. } => total_path.iter().collect(),
        PaginatorConfig::Offset {
            total_path, limit, ..
        } => {
            if *limit == 0 {
                reporter.error(span.clone(), "offset paginator `limit` must be at least 1");
            }
            total_path.iter().collect()
        }
        PaginatorConfig::Cursor { cursor_path, .. } => cursor_path.iter().collect(),
        PaginatorConfig::JsonLink { next_url_path } => next_url_path.iter().collect(),
        PaginatorConfig::HeaderLink { .. } | PaginatorConfig::SinglePage => Vec::new(),
    };
    for path in paths {
        if let Err(e) = JsonPath::parse(path) {
            reporter.error(span.clone(), e.to_string());
        }
    }
}

fn csv_source(
    reporter: &mut Reporter<'_>,
    _name: &str,
    csv: &CsvSourceConfig,
    at: &dyn Fn(&[&str]) -> Option<Range<usize>>,
) {
    if let Err(e) = glob::Pattern::new(&csv.path) {
        reporter.error(at(&["path"]), format!("invalid glob {:?}: {e}", csv.path));
    }
    for (key, value) in [("delimiter", &csv.delimiter), ("quote", &csv.quote)] {
        if let Some(v) = value
            && v.len() != 1
        {
            reporter.error(
                at(&[key]),
                format!("`{key}` must be a single ASCII character, got {v:?}"),
            );
        }
    }
    if let Some(label) = &csv.encoding
        && encoding_rs::Encoding::for_label(label.as_bytes()).is_none()
    {
        reporter.error(
                at(&["encoding"]),
                format!("unknown encoding {label:?}: use a label such as \"utf-8\", \"latin1\" or \"windows-1252\""),
            );
    }
}

/// Tables: their source exists, keys and columns agree, paths parse, the write mode has what it
/// needs. Models: one query each, keys for `merge`, no name shared with a table or a source.
pub(crate) fn tables_and_models(
    reporter: &mut Reporter<'_>,
    project_dir: &std::path::Path,
    tables: &BTreeMap<String, TableConfig>,
    models: &BTreeMap<String, ModelConfig>,
    sources: &BTreeMap<String, SourceConfig>,
    root: &Spanned<DeTable<'_>>,
) {
    let source_names: Vec<&String> = sources.keys().collect();
    for (name, table) in tables {
        let at = |path: &[&str]| {
            let mut full = vec!["tables", name.as_str()];
            full.extend_from_slice(path);
            span_in(root, &full)
        };
        check_name(reporter, "table", name, at(&[]));
        if !sources.contains_key(&table.source) {
            let hint = affluent_core::closest(&table.source, &source_names)
                .map(|k| format!("; did you mean \"{k}\"?"))
                .unwrap_or_default();
            reporter.error(
                at(&["source"]),
                format!(
                    "table `{name}` reads unknown source `{}`{hint} (declare it under [sources.{}])",
                    table.source, table.source
                ),
            );
        }
        let write = table.write.unwrap_or(WriteMode::Append);
        if write == WriteMode::Merge && table.primary_key.is_empty() {
            reporter.error(
                at(&["write"]),
                format!("table `{name}` merges on a key: set `primary_key = [\"column\", ...]`"),
            );
        }
        if table.order_by.is_some() && write != WriteMode::Merge {
            reporter.error(
                at(&["order_by"]),
                "`order_by` only applies to `write = \"merge\"`",
            );
        }
        if table.replace_by.is_some() && write != WriteMode::Replace {
            reporter.error(
                at(&["replace_by"]),
                "`replace_by` only applies to `write = \"replace\"`",
            );
        }
        let declared: Vec<&String> = table.columns.keys().collect();
        let mut used: Vec<(&str, &str)> = table
            .primary_key
            .iter()
            .map(|k| ("primary_key", k.as_str()))
            .collect();
        used.extend(table.order_by.as_deref().map(|c| ("order_by", c)));
        used.extend(table.replace_by.as_deref().map(|c| ("replace_by", c)));
        if !declared.is_empty() {
            for (key, column) in used {
                if !table.columns.contains_key(column) {
                    let hint = affluent_core::closest(column, &declared)
                        .map(|k| format!("; did you mean \"{k}\"?"))
                        .unwrap_or_default();
                    reporter.error(
                        at(&[key]),
                        format!("`{key}` names `{column}`, which is not a column of table `{name}`{hint}"),
                    );
                }
            }
        }
        if let Some(explode) = &table.explode
            && let Err(e) = JsonPath::parse(explode)
        {
            reporter.error(at(&["explode"]), format!("invalid path {explode:?}: {e}"));
        }
        for (column, spec) in &table.columns {
            if column.starts_with("_affluent") {
                reporter.error(
                    at(&["columns", column]),
                    format!("column names starting with `_affluent` are reserved (`{column}`)"),
                );
            }
            let path = spec.path().strip_prefix("$.").unwrap_or(spec.path());
            if let Err(e) = JsonPath::parse(path) {
                reporter.error(
                    at(&["columns", column]),
                    format!("invalid path {:?} for column `{column}`: {e}", spec.path()),
                );
            }
            if let ColumnSpec::Typed(t) = spec
                && t.format.is_some()
                && !matches!(t.kind, Some(TableType::Date | TableType::Timestamp))
            {
                reporter.error(
                    at(&["columns", column]),
                    format!(
                        "`format` of column `{column}` needs `type = \"date\"` or `\"timestamp\"`"
                    ),
                );
            }
        }
    }
    for (name, model) in models {
        let at = |path: &[&str]| {
            let mut full = vec!["models", name.as_str()];
            full.extend_from_slice(path);
            span_in(root, &full)
        };
        check_name(reporter, "model", name, at(&[]));
        if tables.contains_key(name) {
            reporter.error(
                at(&[]),
                format!("`{name}` is both a table and a model: rename one"),
            );
        }
        match (&model.sql, &model.file) {
            (Some(_), Some(_)) => reporter.error(
                at(&["file"]),
                format!("model `{name}` has both `sql` and `file`: keep one"),
            ),
            (None, None) => reporter.error(
                at(&[]),
                format!("model `{name}` needs its query: `sql = \"SELECT ...\"` or `file = \"models/{name}.sql\"`"),
            ),
            (None, Some(file)) => {
                if !project_dir.join(file).is_file() {
                    reporter.error(
                        at(&["file"]),
                        format!("model `{name}`: no file {file:?} in the project directory"),
                    );
                }
            }
            (Some(_), None) => {}
        }
        if model.materialized == Some(Materialized::Merge) && model.primary_key.is_empty() {
            reporter.error(
                at(&["materialized"]),
                format!("model `{name}` merges on a key: set `primary_key = [\"column\", ...]`"),
            );
        }
    }
}

fn check_name(reporter: &mut Reporter<'_>, what: &str, name: &str, span: Option<Range<usize>>) {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        reporter.error(
            span,
            format!("invalid {what} name `{name}`: use lowercase letters, digits and `_` (it is a SQL name)"),
        );
    }
}

pub(crate) fn scheduler_settings(
    reporter: &mut Reporter<'_>,
    settings: &crate::schema::ProjectSettings,
    root: &Spanned<DeTable<'_>>,
) {
    let s = &settings.scheduler;
    if s.concurrency == Some(0) {
        reporter.error(
            span_in(root, &["scheduler", "concurrency"]),
            "`concurrency` must be at least 1",
        );
    }
    if let Some(url) = &settings.state_url
        && !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
    {
        reporter.error(
            span_in(root, &["state_url"]),
            "state_url must start with sqlite:// (a file) or postgres:// (a server)",
        );
    }
    if let Some(notify) = &settings.notify {
        if let Some(hook) = &notify.webhook
            && !matches!(
                url::Url::parse(&hook.url)
                    .map(|u| u.scheme().to_string())
                    .as_deref(),
                Ok("http" | "https")
            )
        {
            reporter.error(
                span_in(root, &["notify", "webhook", "url"]),
                "the webhook url must be an http(s) URL",
            );
        }
        if let Some(email) = &notify.email {
            if !matches!(
                url::Url::parse(&email.smtp_url)
                    .map(|u| u.scheme().to_string())
                    .as_deref(),
                Ok("smtp" | "smtps")
            ) {
                reporter.error(
                    span_in(root, &["notify", "email", "smtp_url"]),
                    "smtp_url must look like smtp://host:25 or smtps://user:pass@host",
                );
            }
            if email.to.is_empty() {
                reporter.error(
                    span_in(root, &["notify", "email", "to"]),
                    "`to` needs at least one address",
                );
            }
        }
        if notify.webhook.is_none() && notify.email.is_none() {
            reporter.error(
                span_in(root, &["notify"]),
                "[notify] needs a `webhook` or an `email` table",
            );
        }
    }
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

pub(crate) fn dashboard(
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
        let params = page_parameters(page);
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
                (_, None, _) => {
                    reporter.error(at(&["panels", name]), format!("panel `{name}` needs `sql`"))
                }
                (_, Some(sql), _) => check_sql(reporter, sql, &["panels", name, "sql"]),
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
