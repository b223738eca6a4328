//! `[streams.NAME]`: event-time windows over a table's rows as they are loaded, and their checks.
//!
//! ```toml
//! [streams.station_3min]
//! input = "station_status"      # an append table: each load's rows are new events
//! key = "stationcode"
//! time = "duedate"
//! window = "tumbling"           # or "hopping" (with `slide`), "session" (with `gap`)
//! size = "3m"
//! delay = "2m"                  # the watermark trails the latest event time by this
//! lateness = "15m"              # a window takes late events this long past its end
//!
//! [streams.station_3min.aggregates]
//! mechanical = "avg(mechanical)"
//! ebike = "avg(ebike)"
//! docks = "avg(numdocksavailable)"
//! ```
//!
//! The final windows go to a Delta table of the stream's name (`key`, `window_start`,
//! `window_end`, one column per aggregate, `events`, `late`, `duplicates`), written once each;
//! the windows still open to `NAME_open`, replaced at each step.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};
use toml::Spanned;
use toml::de::DeTable;

use crate::diagnostics::Reporter;
use crate::schema::{ML_MODELS, ProjectSettings, WriteMode};
use crate::validate::{check_name, span_in};
use crate::values::ConfigDuration;

pub use affluent_streams::Aggregate;

/// `[streams.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// The table whose rows are the events, in the order they were loaded: an `append` table
    /// (each load adds events; a merge or replace would give old rows again).
    pub input: String,
    /// The column events are grouped by (a station), as text.
    pub key: String,
    /// The event-time column: a timestamp, or text in RFC 3339.
    pub time: String,
    /// `tumbling` (default: consecutive windows of `size`), `hopping` (windows of `size`
    /// starting every `slide`) or `session` (events less than `gap` apart).
    #[serde(default)]
    pub window: WindowShape,
    /// `tumbling` and `hopping`: a window's length (`"3m"`).
    pub size: Option<ConfigDuration>,
    /// `hopping`: how far apart windows start.
    pub slide: Option<ConfigDuration>,
    /// `session`: the silence that ends a session.
    pub gap: Option<ConfigDuration>,
    /// How far the watermark trails the latest event time (default 0): events older than the
    /// watermark are late.
    pub delay: Option<ConfigDuration>,
    /// How long past its end (in watermark time) a window still takes late events (default 0);
    /// later ones are dropped and counted.
    pub lateness: Option<ConfigDuration>,
    /// Output column → `"avg(column)"`, `min`, `max`, `sum`, `count` or `last` (the value of
    /// the latest event time). Values are read as numbers; nulls are skipped.
    pub aggregates: indexmap::IndexMap<String, AggregateExpr>,
}

/// Which windows a stream keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowShape {
    /// Consecutive windows of `size`.
    #[default]
    Tumbling,
    /// Windows of `size` every `slide`.
    Hopping,
    /// Per key, events less than `gap` apart.
    Session,
}

/// `fn(column)`, parsed on load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateExpr {
    /// The function.
    pub function: Aggregate,
    /// The input column.
    pub column: String,
}

impl fmt::Display for AggregateExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.function {
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Sum => "sum",
            Aggregate::Count => "count",
            Aggregate::Last => "last",
        };
        write!(f, "{name}({})", self.column)
    }
}

impl<'de> Deserialize<'de> for AggregateExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bad = || {
            serde::de::Error::custom(format!(
                "{text:?} is not an aggregate: write `avg(column)`, `min(..)`, `max(..)`, `sum(..)`, `count(..)` or `last(..)`"
            ))
        };
        let (function, rest) = text.trim().split_once('(').ok_or_else(bad)?;
        let column = rest.strip_suffix(')').ok_or_else(bad)?.trim();
        let function = match function.trim().to_ascii_lowercase().as_str() {
            "avg" | "mean" => Aggregate::Avg,
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            "sum" => Aggregate::Sum,
            "count" => Aggregate::Count,
            "last" => Aggregate::Last,
            _ => return Err(bad()),
        };
        if column.is_empty() || column.contains(['(', ')', ',']) {
            return Err(bad());
        }
        Ok(AggregateExpr {
            function,
            column: column.to_string(),
        })
    }
}

/// `[zones.NAME]`: polygons of a GeoJSON file, for SQL's `zone_of('NAME', lon, lat)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonesConfig {
    /// A GeoJSON FeatureCollection of `Polygon` and `MultiPolygon` features, relative to the
    /// project directory.
    pub file: String,
    /// The feature property naming each zone (`l_ar` for the Paris arrondissements' "1er
    /// Ardt").
    pub name: String,
}

pub(crate) fn check_zones(
    reporter: &mut Reporter<'_>,
    project_dir: &std::path::Path,
    settings: &ProjectSettings,
    root: &Spanned<DeTable<'_>>,
) {
    for (name, z) in &settings.zones {
        check_name(reporter, "zones", name, span_in(root, &["zones", name]));
        if !project_dir.join(&z.file).is_file() {
            reporter.error(
                span_in(root, &["zones", name, "file"]),
                format!(
                    "zones `{name}`: no file {} (relative to the project directory)",
                    z.file
                ),
            );
        }
        if z.name.trim().is_empty() {
            reporter.error(
                span_in(root, &["zones", name, "name"]),
                format!("zones `{name}`: `name` is the feature property naming each zone"),
            );
        }
    }
}

/// The columns every stream's tables have besides the key and the aggregates.
pub const STREAM_COLUMNS: [&str; 6] = [
    "window_start",
    "window_end",
    "events",
    "late",
    "duplicates",
    "is_final",
];

fn millis(d: Option<ConfigDuration>) -> i64 {
    d.map_or(0, |d| {
        i64::try_from(d.get().as_millis()).unwrap_or(i64::MAX)
    })
}

impl StreamConfig {
    /// The engine's spec: the windows, the watermark delay, the lateness and one aggregate per
    /// output column, in order. Checked on load, so it builds an engine.
    pub fn spec(&self) -> affluent_streams::Spec {
        let window = match self.window {
            WindowShape::Tumbling => affluent_streams::WindowKind::Tumbling {
                size_ms: millis(self.size),
            },
            WindowShape::Hopping => affluent_streams::WindowKind::Hopping {
                size_ms: millis(self.size),
                slide_ms: millis(self.slide),
            },
            WindowShape::Session => affluent_streams::WindowKind::Session {
                gap_ms: millis(self.gap),
            },
        };
        affluent_streams::Spec {
            window,
            delay_ms: millis(self.delay),
            lateness_ms: millis(self.lateness),
            aggregates: self.aggregates.values().map(|a| a.function).collect(),
        }
    }

    /// The input columns the aggregates read, in output order.
    pub fn value_columns(&self) -> Vec<&str> {
        self.aggregates
            .values()
            .map(|a| a.column.as_str())
            .collect()
    }

    /// The table of a stream's open windows.
    pub fn open_table(name: &str) -> String {
        format!("{name}_open")
    }
}

pub(crate) fn check(
    reporter: &mut Reporter<'_>,
    settings: &ProjectSettings,
    root: &Spanned<DeTable<'_>>,
) {
    let streams: &BTreeMap<String, StreamConfig> = &settings.streams;
    let taken = |name: &str| {
        settings.tables.contains_key(name)
            || settings.models.contains_key(name)
            || settings.ml.contains_key(name)
            || name == "alert_firings"
            || name == ML_MODELS
    };
    for (name, s) in streams {
        let at = |path: &[&str]| {
            let mut full = vec!["streams", name.as_str()];
            full.extend_from_slice(path);
            span_in(root, &full)
        };
        check_name(reporter, "stream", name, at(&[]));
        for output in [name.clone(), StreamConfig::open_table(name)] {
            if taken(&output) || (output != *name && streams.contains_key(&output)) {
                reporter.error(
                    at(&[]),
                    format!(
                        "`{output}` is already a table, model or stream: `[streams.{name}]` writes its windows to `{name}` and `{name}_open`, so give one of them another name"
                    ),
                );
            }
        }
        match settings.tables.get(&s.input) {
            Some(table) if table.write.unwrap_or(WriteMode::Append) != WriteMode::Append => {
                reporter.error(
                    at(&["input"]),
                    format!(
                        "stream `{name}` reads table `{}`, which is not an `append` table: its loads would give old rows again as new events; read a table with `write = \"append\"`",
                        s.input
                    ),
                );
            }
            Some(table) => {
                // Declared columns can be checked now; inferred ones when the stream runs.
                if !table.columns.is_empty() {
                    let mut wanted: Vec<(Vec<&str>, &str)> = vec![
                        (vec!["key"], s.key.as_str()),
                        (vec!["time"], s.time.as_str()),
                    ];
                    wanted.extend(
                        s.aggregates
                            .iter()
                            .map(|(out, a)| (vec!["aggregates", out.as_str()], a.column.as_str())),
                    );
                    for (path, column) in wanted {
                        if !table.columns.contains_key(column) {
                            let known: Vec<&str> =
                                table.columns.keys().map(String::as_str).collect();
                            let hint = affluent_core::closest(column, &known)
                                .map(|c| format!("; did you mean {c:?}?"))
                                .unwrap_or_default();
                            reporter.error(
                                at(&path),
                                format!(
                                    "stream `{name}` reads column `{column}`, which table `{}` does not declare{hint}",
                                    s.input
                                ),
                            );
                        }
                    }
                }
            }
            None => {
                let known: Vec<&str> = settings.tables.keys().map(String::as_str).collect();
                let hint = affluent_core::closest(&s.input, &known)
                    .map(|c| format!("; did you mean {c:?}?"))
                    .unwrap_or_default();
                reporter.error(
                    at(&["input"]),
                    format!(
                        "stream `{name}` reads `{}`, which is not a table of the project (a stream's input is a `[tables.NAME]`){hint}",
                        s.input
                    ),
                );
            }
        }
        let needs = |key: &str, present: bool, reporter: &mut Reporter<'_>| {
            if !present {
                let shape = match s.window {
                    WindowShape::Tumbling => "tumbling",
                    WindowShape::Hopping => "hopping",
                    WindowShape::Session => "session",
                };
                reporter.error(
                    at(&[]),
                    format!("stream `{name}` ({shape} windows) needs `{key}`"),
                );
            }
        };
        let misplaced = |key: &str, present: bool, reporter: &mut Reporter<'_>| {
            if present {
                reporter.error(
                    at(&[key]),
                    format!("`{key}` does not apply to the windows of stream `{name}`"),
                );
            }
        };
        match s.window {
            WindowShape::Tumbling => {
                needs("size", s.size.is_some(), reporter);
                misplaced("slide", s.slide.is_some(), reporter);
                misplaced("gap", s.gap.is_some(), reporter);
            }
            WindowShape::Hopping => {
                needs("size", s.size.is_some(), reporter);
                needs("slide", s.slide.is_some(), reporter);
                misplaced("gap", s.gap.is_some(), reporter);
            }
            WindowShape::Session => {
                needs("gap", s.gap.is_some(), reporter);
                misplaced("size", s.size.is_some(), reporter);
                misplaced("slide", s.slide.is_some(), reporter);
            }
        }
        let complete = match s.window {
            WindowShape::Tumbling => s.size.is_some(),
            WindowShape::Hopping => s.size.is_some() && s.slide.is_some(),
            WindowShape::Session => s.gap.is_some(),
        };
        if let (WindowShape::Hopping, Some(size), Some(slide)) = (s.window, s.size, s.slide)
            && slide > size
        {
            reporter.error(
                at(&["slide"]),
                format!(
                    "stream `{name}`: a hopping window's `slide` ({slide}) must not exceed its `size` ({size}): events between windows would be missed"
                ),
            );
        } else if let (WindowShape::Hopping, Some(size), Some(slide)) = (s.window, s.size, s.slide)
            && size.get().as_millis() > 1000 * slide.get().as_millis()
        {
            reporter.error(
                at(&["slide"]),
                format!(
                    "stream `{name}`: a hopping window of `size` {size} sliding by {slide} puts each event in more than 1,000 windows: use a longer `slide`"
                ),
            );
        } else if complete && let Err(e) = s.spec().check() {
            reporter.error(at(&[]), format!("stream `{name}`: {e}"));
        }
        if s.aggregates.is_empty() {
            reporter.error(
                at(&["aggregates"]),
                format!("stream `{name}` has no aggregates: name at least one, e.g. `bikes = \"avg(numbikesavailable)\"`"),
            );
        }
        for output in s.aggregates.keys() {
            check_name(reporter, "aggregate", output, at(&["aggregates", output]));
            if STREAM_COLUMNS.contains(&output.as_str()) || *output == s.key {
                reporter.error(
                    at(&["aggregates", output]),
                    format!(
                        "aggregate `{output}` of stream `{name}` clashes with a column its tables have (the key `{}`, {}): rename it",
                        s.key,
                        STREAM_COLUMNS.join(", ")
                    ),
                );
            }
        }
        if STREAM_COLUMNS.contains(&s.key.as_str()) {
            reporter.error(
                at(&["key"]),
                format!(
                    "the key `{}` of stream `{name}` clashes with a column its tables add",
                    s.key
                ),
            );
        }
    }
}
