//! `[sinks.NAME] type = "postgres"`: chosen tables and models upserted into PostgreSQL.

use std::collections::BTreeMap;
use std::ops::Range;

use affluent_core::Redactor;
use serde::Deserialize;

use crate::diagnostics::Reporter;

/// `[sinks.NAME] type = "postgres"`: writes tables and models to a PostgreSQL database, each
/// Delta version once: its rows and the sink's progress are committed in one transaction.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// The database, `postgres://USER:PASSWORD@HOST:PORT/DATABASE`, from the environment:
    /// `url = "${WAREHOUSE_URL}"`. Empty (`"${WAREHOUSE_URL:-}"` with the variable unset): the
    /// sink is off, and says so in `affluent sinks list`.
    pub url: String,
    /// The PostgreSQL schema of the tables (created if missing; default `public`).
    pub schema: Option<String>,
    /// The tables and models written, each to a PostgreSQL table of the same name.
    pub tables: Vec<String>,
    /// The key of a table or model whose own `primary_key` is not set (or is not the
    /// warehouse's): `keys = { daily = ["day", "arrondissement"] }`. A table with a key is
    /// upserted on it (its changes only, when every commit since the last write only added or
    /// upserted rows); a table without one is replaced as a whole at each new version.
    #[serde(default)]
    pub keys: BTreeMap<String, Vec<String>>,
}

impl std::fmt::Debug for PostgresSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSinkConfig")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("tables", &self.tables)
            .field("keys", &self.keys)
            .finish()
    }
}

impl PostgresSinkConfig {
    /// The default schema.
    pub const DEFAULT_SCHEMA: &'static str = "public";

    /// `schema`, or `public`.
    pub fn schema(&self) -> &str {
        self.schema.as_deref().unwrap_or(Self::DEFAULT_SCHEMA)
    }
}

pub(crate) fn check(
    reporter: &mut Reporter<'_>,
    name: &str,
    sink: &PostgresSinkConfig,
    settings: &crate::schema::ProjectSettings,
    at: &dyn Fn(&[&str]) -> Option<Range<usize>>,
    redactor: &Redactor,
) {
    let url = sink.url.trim();
    if !url.is_empty() {
        match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "postgres" | "postgresql") => {
                if let Some(password) = parsed.password() {
                    redactor.add(password);
                    if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
                        redactor.add(&decoded);
                    }
                }
                if parsed.path().trim_start_matches('/').is_empty() {
                    reporter.error(
                        at(&["url"]),
                        format!("sink `{name}`: the url names no database: end it with `/DATABASE`"),
                    );
                }
            }
            Ok(parsed) => reporter.error(
                at(&["url"]),
                format!(
                    "sink `{name}`: a postgres url starts with `postgres://`, not `{}://`",
                    parsed.scheme()
                ),
            ),
            Err(e) => reporter.error(
                at(&["url"]),
                format!("sink `{name}`: the url is not a URL ({e}): write postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
            ),
        }
    }
    let schema = sink.schema();
    let schema_ok = schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !schema_ok {
        reporter.error(
            at(&["schema"]),
            format!("sink `{name}`: invalid schema `{schema}`: use lowercase letters, digits and `_`, at most 63"),
        );
    }
    for (table, key) in &sink.keys {
        if !sink.tables.contains(table) {
            reporter.error(
                at(&["keys", table]),
                format!("sink `{name}` has a key for `{table}`, which it does not write: add it to `tables` or remove the key"),
            );
        }
        if key.is_empty() {
            reporter.error(
                at(&["keys", table]),
                format!("sink `{name}`: the key of `{table}` names no column"),
            );
        }
        let declared = settings
            .tables
            .get(table)
            .map(|t| t.columns.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        for column in key {
            if !declared.is_empty() && !declared.contains(column) {
                reporter.error(
                    at(&["keys", table]),
                    format!(
                        "sink `{name}`: `{column}` is not a column of `{table}` (its columns: {})",
                        declared.join(", ")
                    ),
                );
            }
        }
    }
}
