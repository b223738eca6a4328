//! `[sources.NAME]`: one module per connector type (`rest`, `csv`), each with its schema and
//! its checks; [`read_source`] is the registry that picks the module by the `type` key.

pub mod csv;
pub mod rest;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use affluent_core::Redactor;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostics::Reporter;
use crate::sources::csv::CsvSourceConfig;
use crate::sources::rest::RestSourceConfig;
use crate::validate::span_in;
use crate::values::{ConfigDuration, CronExpr, StartDate};

/// The scheduling keys of a source, whatever its type.
#[derive(Debug, Clone, Copy)]
pub struct Scheduling<'a> {
    /// `schedule`: a cron.
    pub schedule: Option<&'a CronExpr>,
    /// `every`: a period.
    pub every: Option<ConfigDuration>,
    /// `start_date`.
    pub start_date: Option<StartDate>,
    /// `catchup` (default true).
    pub catchup: bool,
    /// `max_active` (default 1).
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

pub(crate) fn check(
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
            SourceConfig::Rest(rest) => rest::check(reporter, name, rest, sources, &at, redactor),
            SourceConfig::Csv(csv) => csv::check(reporter, name, csv, &at),
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

/// Reads one `[sources.NAME]` with the module its `type` names: the registry of connector
/// types (a new connector adds its arm here and its name to [`SOURCE_TYPES`]).
pub(crate) fn read(
    reporter: &mut Reporter<'_>,
    name: &str,
    name_span: std::ops::Range<usize>,
    table: Spanned<DeTable<'_>>,
) -> Option<SourceConfig> {
    let context = format!("sources.{name}");
    let kind = table
        .get_ref()
        .get("type")
        .map(|v| (v.span(), v.get_ref().clone()));
    match kind {
        Some((_, DeValue::String(s))) if s == "rest" => reporter
            .deserialize_all::<RestSourceConfig>(table, &context)
            .map(|c| SourceConfig::Rest(Box::new(c))),
        Some((_, DeValue::String(s))) if s == "csv" => reporter
            .deserialize_all::<CsvSourceConfig>(table, &context)
            .map(|c| SourceConfig::Csv(Box::new(c))),
        Some((span, DeValue::String(s))) => {
            let known: Vec<String> = SOURCE_TYPES.iter().map(|s| s.to_string()).collect();
            let hint = crate::diagnostics::closest(&s, &known)
                .map(|k| format!("; did you mean \"{k}\"?"))
                .unwrap_or_default();
            reporter.error(
                Some(span),
                format!(
                    "unknown source type \"{s}\" in [{context}]{hint} (expected one of: {})",
                    known.join(", ")
                ),
            );
            None
        }
        Some((span, _)) => {
            reporter.error(
                Some(span),
                format!("`type` in [{context}] must be a string"),
            );
            None
        }
        None => {
            reporter.error(
                Some(name_span),
                format!(
                    "missing required key `type` in [{context}] (expected one of: {})",
                    SOURCE_TYPES.join(", ")
                ),
            );
            None
        }
    }
}
