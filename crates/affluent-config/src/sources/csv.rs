//! `type = "csv"`: files matched by a glob, with declared column types, and their checks.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;

use crate::diagnostics::Reporter;
use crate::values::{ConfigDuration, CronExpr, StartDate};

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

pub(crate) fn check(
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
