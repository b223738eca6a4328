//! `[sinks.NAME]`: where chosen tables and models are written outside the Delta tables. One
//! module per sink type; [`SINK_TYPES`] is their list.

use std::collections::BTreeMap;

use affluent_core::Redactor;
use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use crate::diagnostics::Reporter;
use crate::validate::{check_name, span_in};

pub mod postgres;

pub use postgres::PostgresSinkConfig;

/// The sink types, as `type` names them.
pub const SINK_TYPES: &[&str] = &["postgres"];

/// `[sinks.NAME]`: a sink, by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    /// `type = "postgres"`: a PostgreSQL warehouse.
    Postgres(PostgresSinkConfig),
}

impl SinkConfig {
    /// The tables and models it writes, in order.
    pub fn tables(&self) -> &[String] {
        match self {
            SinkConfig::Postgres(p) => &p.tables,
        }
    }

    /// Why the sink is off (its URL is empty), if it is.
    pub fn off(&self) -> Option<String> {
        match self {
            SinkConfig::Postgres(p) => p.url.trim().is_empty().then(|| {
                "its `url` is empty (set the variable it names, e.g. in .env)".to_string()
            }),
        }
    }

    /// Its type's name.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Postgres(_) => "postgres",
        }
    }
}

/// Checks every sink: its name, the tables it writes (known tables, models, or the tables
/// affluent writes itself), and its type's own keys. Registers the secrets of its URL.
pub(crate) fn check(
    reporter: &mut Reporter<'_>,
    settings: &crate::schema::ProjectSettings,
    root: &Spanned<DeTable<'_>>,
    redactor: &Redactor,
) {
    let mut known: Vec<String> = settings
        .tables
        .keys()
        .chain(settings.models.keys())
        .cloned()
        .collect();
    if !settings.alerts.is_empty() {
        known.push("alert_firings".to_string());
    }
    if !settings.ml.is_empty() {
        known.push(crate::ml::ML_MODELS.to_string());
        known.extend(settings.ml.keys().cloned());
    }
    let sinks: &BTreeMap<String, SinkConfig> = &settings.sinks;
    for (name, sink) in sinks {
        let at = |path: &[&str]| {
            let mut full = vec!["sinks", name.as_str()];
            full.extend_from_slice(path);
            span_in(root, &full)
        };
        check_name(reporter, "sink", name, at(&[]));
        if sink.tables().is_empty() {
            reporter.error(
                at(&["tables"]),
                format!("sink `{name}` writes no table: list tables or models in `tables`"),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for table in sink.tables() {
            if !known.contains(table) {
                let hint = affluent_core::closest(table, &known)
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default();
                reporter.error(
                    at(&["tables"]),
                    format!("sink `{name}` writes `{table}`, which is not a table or model of the project{hint}"),
                );
            }
            if !seen.insert(table) {
                reporter.error(
                    at(&["tables"]),
                    format!("sink `{name}` lists `{table}` twice"),
                );
            }
        }
        match sink {
            SinkConfig::Postgres(p) => postgres::check(reporter, name, p, settings, &at, redactor),
        }
    }
}
