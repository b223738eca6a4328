//! `[alerts.NAME]`: rules over a read-only query of the tables and models, and their checks.
//!
//! ```toml
//! [alerts.followers_growth]
//! sql = "SELECT artist_id, name, day, followers FROM artist_history"
//! entity = ["artist_id"]          # one state per artist
//! time = "day"                    # orders an artist's observations
//! severity = "info"
//! message = "Croissance de {change:pct} des followers ({previous:int} → {value:int})"
//! when = { value = "followers", change_above = 0.05 }
//! ```
//!
//! A rule holds or not on each entity's latest observation (compared with the one before for
//! `change_*` and `crosses_*`). It fires when it starts to hold, and not again for that entity
//! until it has stopped holding (or, with `cooldown`, once that long has passed).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use crate::diagnostics::Reporter;
use crate::validate::{check_name, span_in};
use crate::values::ConfigDuration;

/// `[alerts.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// The observations: a read-only query over the tables and models, one row per entity and
    /// time. An entity the query does not return keeps its state (active or not) until it
    /// returns again: filter by time in the query only if that is what you mean.
    pub sql: String,
    /// Columns naming the entity a row observes (an artist, a station); each entity has its own
    /// state. Empty: the whole query is one entity.
    #[serde(default)]
    pub entity: Vec<String>,
    /// The column ordering an entity's observations (its latest is the last); needed by
    /// `change_*` and `crosses_*`, which compare it with the one before. With it, each
    /// evaluation checks every observation newer than the last one it checked, in order (all of
    /// them the first time), so that a catch-up loading many days at once fires what daily
    /// evaluations would have. Default: query order, and only the latest is checked.
    pub time: Option<String>,
    /// The condition on the latest observation.
    pub when: ConditionConfig,
    /// `info`, `warning` (default) or `critical`.
    pub severity: Option<Severity>,
    /// The message of a firing. `{column}` is a value of the latest observation; `{value}`,
    /// `{previous}` (the baseline, or the median of an anomaly's window), `{change}` (relative,
    /// 0.123 = +12.3 %) and `{score}` (an anomaly's robust z-score) are those of the first
    /// comparison of `when`. `{name:pct}` shows a ratio as a percentage, `{name:int}` and `{name:num}` a
    /// number, in `[dashboard] locale`.
    pub message: String,
    /// Fire again for an entity whose condition still holds once this long has passed since its
    /// last firing (`"1d"`), counted between evaluations: an evaluation walking several new
    /// observations over which the condition held throughout fires once. Default: only after
    /// the condition has stopped holding.
    pub cooldown: Option<ConfigDuration>,
    /// Where firings are sent besides the `alert_firings` table: `"email"` (`[notify.email]`,
    /// one message per evaluation pass) and `"webhook"` (`[notify.webhook]`, one JSON document
    /// per pass, retried).
    #[serde(default)]
    pub notify: Vec<AlertChannel>,
}

/// A channel firings are sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertChannel {
    /// `[notify.email]`.
    Email,
    /// `[notify.webhook]`.
    Webhook,
}

/// How serious a firing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information.
    Info,
    /// Needs a look (the default).
    Warning,
    /// Needs action.
    Critical,
}

impl Severity {
    /// Its name in the project file.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A condition: one comparison on a column (`value` with one of `above`, `below`,
/// `change_above`, `change_below`, `crosses_above`, `crosses_below`, `baseline_above`,
/// `baseline_below`, `anomaly`), or `all` / `any` of conditions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// The numeric column compared.
    pub value: Option<String>,
    /// Holds when the value is greater than this.
    pub above: Option<f64>,
    /// Holds when the value is less than this.
    pub below: Option<f64>,
    /// Holds when the value grew by more than this ratio since the entity's previous
    /// observation (`0.05`: more than +5 %).
    pub change_above: Option<f64>,
    /// Holds when the value changed by less than this ratio (`-0.05`: a drop of more than 5 %).
    pub change_below: Option<f64>,
    /// Holds when the value reached this level, having been below it at the previous
    /// observation (`100000`: 100k followers reached).
    pub crosses_above: Option<f64>,
    /// Holds when the value fell below this level, having been at or above it before.
    pub crosses_below: Option<f64>,
    /// Holds when the value differs from its baseline by more than this ratio (`0.2`: 20 %
    /// above the baseline); the baseline is `baseline`.
    pub baseline_above: Option<f64>,
    /// Holds when the value differs from its baseline by less than this ratio (`-0.2`).
    pub baseline_below: Option<f64>,
    /// The baseline of `baseline_above` / `baseline_below`: the mean of the entity's values at
    /// the same weekday and time over the previous N weeks (`"4 same weekdays"`) or at the same
    /// hour over the previous N days (`"7 same hours"`).
    pub baseline: Option<Baseline>,
    /// Holds when the value is an outlier of the entity's previous `window` values: its robust
    /// z-score (0.6745 × (value − median) / MAD) is beyond this in either direction (`3.5`).
    pub anomaly: Option<f64>,
    /// The values `anomaly` compares with (default 28 observations).
    pub window: Option<usize>,
    /// Holds when every one of these holds.
    #[serde(default)]
    pub all: Vec<ConditionConfig>,
    /// Holds when one of these holds.
    #[serde(default)]
    pub any: Vec<ConditionConfig>,
}

/// A baseline: the same weekday over the previous weeks, or the same hour over the previous
/// days. Written `"4 same weekdays"`, `"7 same hours"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Baseline {
    /// How many earlier periods.
    pub count: u32,
    /// Which.
    pub kind: BaselineKind,
}

/// The period a baseline steps back by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineKind {
    /// A week: the same weekday (and time of day).
    Weekday,
    /// A day: the same hour of the day.
    Hour,
}

impl std::str::FromStr for Baseline {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let bad = || {
            format!(
                "invalid baseline {s:?}: write \"N same weekdays\" or \"N same hours\" (e.g. \"4 same weekdays\")"
            )
        };
        let [n, "same", unit] = words.as_slice() else {
            return Err(bad());
        };
        let count: u32 = n.parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(bad());
        }
        let kind = match *unit {
            "weekday" | "weekdays" => BaselineKind::Weekday,
            "hour" | "hours" => BaselineKind::Hour,
            _ => return Err(bad()),
        };
        Ok(Self { count, kind })
    }
}

impl Baseline {
    /// The period it steps back by: a week (same weekday) or a day (same hour).
    fn step(self) -> jiff::Span {
        match self.kind {
            BaselineKind::Weekday => jiff::Span::new().days(7),
            BaselineKind::Hour => jiff::Span::new().days(1),
        }
    }

    /// The slot a time counts in: itself for weekdays (the same weekday and time of day), its
    /// hour for hours (any minute of the same hour).
    pub fn slot(self, t: jiff::civil::DateTime) -> jiff::civil::DateTime {
        match self.kind {
            BaselineKind::Weekday => t,
            BaselineKind::Hour => t.date().to_datetime(jiff::civil::time(t.hour(), 0, 0, 0)),
        }
    }

    /// The slots of the N earlier periods of `at`, nearest first.
    pub fn earlier(self, at: jiff::civil::DateTime) -> Vec<jiff::civil::DateTime> {
        let mut out = Vec::with_capacity(self.count as usize);
        let mut t = at;
        for _ in 0..self.count {
            let Ok(back) = t.checked_sub(self.step()) else {
                break;
            };
            t = back;
            out.push(self.slot(t));
        }
        out
    }

    /// The mean of the values at the same weekday and time N weeks before `at` (or the same
    /// hour N days before), over those `history` has; None when it has none. Alerts compare an
    /// observation with it; chart panels draw it beside each series.
    pub fn mean(
        self,
        at: jiff::civil::DateTime,
        history: impl IntoIterator<Item = (jiff::civil::DateTime, f64)>,
    ) -> Option<f64> {
        let wanted = self.earlier(at);
        let (mut sum, mut n) = (0.0, 0u32);
        for (when, x) in history {
            if wanted.contains(&self.slot(when)) {
                sum += x;
                n += 1;
            }
        }
        (n > 0).then(|| sum / f64::from(n))
    }

    /// How far back [`Baseline::mean`] looks from a time.
    pub fn reach(self) -> jiff::Span {
        match self.kind {
            BaselineKind::Weekday => jiff::Span::new().days(7 * i64::from(self.count)),
            BaselineKind::Hour => jiff::Span::new().days(i64::from(self.count)),
        }
    }
}

impl<'de> Deserialize<'de> for Baseline {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a comparison compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Comparison {
    /// `value > x`.
    Above(f64),
    /// `value < x`.
    Below(f64),
    /// `(value - previous) / |previous| > x`.
    ChangeAbove(f64),
    /// `(value - previous) / |previous| < x`.
    ChangeBelow(f64),
    /// `previous < x <= value`.
    CrossesAbove(f64),
    /// `value < x <= previous`.
    CrossesBelow(f64),
    /// `(value - baseline) / |baseline| > x`.
    BaselineAbove(f64, Baseline),
    /// `(value - baseline) / |baseline| < x`.
    BaselineBelow(f64, Baseline),
    /// `|robust z-score| > z` over the previous `window` values.
    Anomaly {
        /// The threshold.
        z: f64,
        /// The values compared with.
        window: usize,
    },
}

impl Comparison {
    /// Whether it compares with earlier observations (and so needs `time`).
    pub fn needs_previous(self) -> bool {
        !matches!(self, Comparison::Above(_) | Comparison::Below(_))
    }
}

/// A checked condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A comparison on a column.
    Compare {
        /// The column.
        column: String,
        /// The comparison.
        comparison: Comparison,
    },
    /// Every one holds.
    All(Vec<Condition>),
    /// One holds.
    Any(Vec<Condition>),
}

impl Condition {
    /// Whether a comparison of it needs the previous observation.
    pub fn needs_previous(&self) -> bool {
        match self {
            Condition::Compare { comparison, .. } => comparison.needs_previous(),
            Condition::All(c) | Condition::Any(c) => c.iter().any(Condition::needs_previous),
        }
    }

    /// Its columns, in order.
    pub fn columns(&self) -> Vec<&str> {
        match self {
            Condition::Compare { column, .. } => vec![column.as_str()],
            Condition::All(c) | Condition::Any(c) => c.iter().flat_map(|c| c.columns()).collect(),
        }
    }
}

impl ConditionConfig {
    /// The checked condition, or what is wrong with it.
    pub fn condition(&self) -> Result<Condition, String> {
        if self.baseline.is_some() && self.baseline_above.is_none() && self.baseline_below.is_none()
        {
            return Err("`baseline` goes with `baseline_above` or `baseline_below`".into());
        }
        if (self.baseline_above.is_some() || self.baseline_below.is_some())
            && self.baseline.is_none()
        {
            return Err(
                "`baseline_above` / `baseline_below` need `baseline`, e.g. \"4 same weekdays\""
                    .into(),
            );
        }
        if self.window.is_some() && self.anomaly.is_none() {
            return Err("`window` goes with `anomaly`".into());
        }
        if self.window.is_some_and(|w| w < 3) {
            return Err("`window` must be at least 3 observations".into());
        }
        let comparisons: Vec<Comparison> = [
            self.above.map(Comparison::Above),
            self.below.map(Comparison::Below),
            self.change_above.map(Comparison::ChangeAbove),
            self.change_below.map(Comparison::ChangeBelow),
            self.crosses_above.map(Comparison::CrossesAbove),
            self.crosses_below.map(Comparison::CrossesBelow),
            self.baseline_above
                .zip(self.baseline)
                .map(|(x, b)| Comparison::BaselineAbove(x, b)),
            self.baseline_below
                .zip(self.baseline)
                .map(|(x, b)| Comparison::BaselineBelow(x, b)),
            self.anomaly.map(|z| Comparison::Anomaly {
                z,
                window: self.window.unwrap_or(28),
            }),
        ]
        .into_iter()
        .flatten()
        .collect();
        let groups = usize::from(!self.all.is_empty()) + usize::from(!self.any.is_empty());
        match (comparisons.as_slice(), groups, &self.value) {
            ([c], 0, Some(column)) => {
                if let Comparison::ChangeAbove(x) | Comparison::ChangeBelow(x) = c
                    && !x.is_finite()
                {
                    return Err("a change must be a finite ratio (0.05 is +5 %)".into());
                }
                Ok(Condition::Compare {
                    column: column.clone(),
                    comparison: *c,
                })
            }
            ([_], 0, None) => Err("a comparison needs `value`, the column it compares".into()),
            ([], 1, None) => {
                let list = if self.all.is_empty() {
                    &self.any
                } else {
                    &self.all
                };
                let inner = list
                    .iter()
                    .map(ConditionConfig::condition)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if self.all.is_empty() {
                    Condition::Any(inner)
                } else {
                    Condition::All(inner)
                })
            }
            ([], 0, _) => Err(
                "no comparison: give `value` and one of `above`, `below`, `change_above`, `change_below`, `crosses_above`, `crosses_below`, `baseline_above`, `baseline_below`, `anomaly`, or `all` / `any`".into(),
            ),
            _ => Err(
                "give one comparison (`value` with one of `above`, `below`, `change_above`, `change_below`, `crosses_above`, `crosses_below`, `baseline_above`, `baseline_below`, `anomaly`) or one of `all` / `any` per condition; combine several with `all`".into(),
            ),
        }
    }
}

/// A checked `[alerts.NAME]`, as the project holds it.
#[derive(Debug, Clone)]
pub struct Alert {
    /// The observations' query.
    pub sql: String,
    /// The entity's columns.
    pub entity: Vec<String>,
    /// The column ordering observations.
    pub time: Option<String>,
    /// The condition.
    pub condition: Condition,
    /// The severity.
    pub severity: Severity,
    /// The message template.
    pub message: String,
    /// The message template, read into its pieces.
    pub template: Vec<MessagePiece>,
    /// How long before a condition that still holds fires again.
    pub cooldown: Option<std::time::Duration>,
    /// Where firings are sent.
    pub notify: Vec<AlertChannel>,
}

/// The checked alerts (called once [`check`] found no error).
pub(crate) fn build(alerts: BTreeMap<String, AlertConfig>) -> BTreeMap<String, Alert> {
    alerts
        .into_iter()
        .filter_map(|(name, a)| {
            let condition = a.when.condition().ok()?;
            let template = message_template(&a.message).ok()?;
            Some((
                name,
                Alert {
                    sql: a.sql,
                    entity: a.entity,
                    time: a.time,
                    condition,
                    severity: a.severity.unwrap_or(Severity::Warning),
                    message: a.message,
                    template,
                    cooldown: a.cooldown.map(ConfigDuration::get),
                    notify: a.notify,
                },
            ))
        })
        .collect()
}

/// A piece of a message template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessagePiece {
    /// Text written as is.
    Text(String),
    /// `{name}` or `{name:format}`.
    Field {
        /// A column, `value`, `previous`, `change` or `score`.
        name: String,
        /// `pct`, `int` or `num`.
        format: Option<String>,
    },
}

/// A message template read into its pieces, or what is wrong with it.
pub fn message_template(message: &str) -> Result<Vec<MessagePiece>, String> {
    let mut out = Vec::new();
    let mut rest = message;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            return Err(format!(
                "unclosed `{{` in the message at {:?}",
                &rest[start..]
            ));
        };
        if start > 0 {
            out.push(MessagePiece::Text(rest[..start].to_string()));
        }
        let inner = &rest[start + 1..start + len];
        let (name, format) = match inner.split_once(':') {
            Some((n, f)) => (n.trim(), Some(f.trim().to_string())),
            None => (inner.trim(), None),
        };
        if name.is_empty() {
            return Err(
                "an empty `{}` in the message: name a column, `value`, `previous` or `change`"
                    .into(),
            );
        }
        if let Some(f) = &format
            && !["pct", "int", "num"].contains(&f.as_str())
        {
            return Err(format!(
                "unknown format `{f}` of `{{{name}:{f}}}`: use `pct`, `int` or `num`"
            ));
        }
        out.push(MessagePiece::Field {
            name: name.to_string(),
            format,
        });
        rest = &rest[start + len + 1..];
    }
    if !rest.is_empty() {
        out.push(MessagePiece::Text(rest.to_string()));
    }
    Ok(out)
}

/// The placeholders of a message: `{name}` or `{name:format}`.
pub fn message_placeholders(message: &str) -> Result<Vec<(String, Option<String>)>, String> {
    Ok(message_template(message)?
        .into_iter()
        .filter_map(|p| match p {
            MessagePiece::Field { name, format } => Some((name, format)),
            MessagePiece::Text(_) => None,
        })
        .collect())
}

pub(crate) fn check(
    reporter: &mut Reporter<'_>,
    settings: &crate::schema::ProjectSettings,
    root: &Spanned<DeTable<'_>>,
) {
    let alerts = &settings.alerts;
    let system = "alert_firings";
    if !alerts.is_empty()
        && (settings.tables.contains_key(system) || settings.models.contains_key(system))
    {
        reporter.error(
            span_in(root, &["tables", system]).or_else(|| span_in(root, &["models", system])),
            format!(
                "`{system}` is the table of alert firings: give this table or model another name"
            ),
        );
    }
    for (name, alert) in alerts {
        let at = |path: &[&str]| {
            let mut full = vec!["alerts", name.as_str()];
            full.extend_from_slice(path);
            span_in(root, &full)
        };
        check_name(reporter, "alert", name, at(&[]));
        if alert.sql.trim().is_empty() {
            reporter.error(at(&["sql"]), format!("alert `{name}` has an empty `sql`"));
        }
        match alert.when.condition() {
            Ok(condition) => {
                if condition.needs_previous() && alert.time.is_none() {
                    reporter.error(
                        at(&["when"]),
                        format!(
                            "alert `{name}` compares with the previous observation: set `time`, the column that orders an entity's observations"
                        ),
                    );
                }
            }
            Err(e) => reporter.error(at(&["when"]), format!("alert `{name}`: {e}")),
        }
        if let Err(e) = message_template(&alert.message) {
            reporter.error(at(&["message"]), format!("alert `{name}`: {e}"));
        }
        let notify = settings.notify.as_ref();
        for channel in &alert.notify {
            let (missing, section, by) = match channel {
                AlertChannel::Email => (
                    notify.is_none_or(|n| n.email.is_none()),
                    "[notify.email]",
                    "email",
                ),
                AlertChannel::Webhook => (
                    notify.is_none_or(|n| n.webhook.is_none()),
                    "[notify.webhook]",
                    "webhook",
                ),
            };
            if missing {
                reporter.error(
                    at(&["notify"]),
                    format!("alert `{name}` notifies by {by} but the project has no {section}: add it, or remove the channel"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn when(text: &str) -> ConditionConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn conditions_are_one_comparison_or_a_group() {
        assert_eq!(
            when("value = 'f'\nchange_above = 0.05")
                .condition()
                .unwrap(),
            Condition::Compare {
                column: "f".into(),
                comparison: Comparison::ChangeAbove(0.05)
            }
        );
        let both = when("value = 'f'\nabove = 1\nbelow = 2").condition();
        assert!(both.unwrap_err().contains("one comparison"));
        let bare = when("above = 1").condition();
        assert!(bare.unwrap_err().contains("needs `value`"));
        let empty = when("value = 'f'").condition();
        assert!(empty.unwrap_err().contains("no comparison"));
        let group =
            when("all = [{ value = 'g', change_above = 0.15 }, { value = 's', above = 60 }]")
                .condition()
                .unwrap();
        assert!(group.needs_previous());
        assert_eq!(group.columns(), vec!["g", "s"]);
    }

    #[test]
    fn message_placeholders_are_read_with_their_format() {
        assert_eq!(
            message_placeholders(
                "Croissance de {change:pct} ({previous:int} → {value:int}) {name}"
            )
            .unwrap(),
            vec![
                ("change".to_string(), Some("pct".to_string())),
                ("previous".to_string(), Some("int".to_string())),
                ("value".to_string(), Some("int".to_string())),
                ("name".to_string(), None),
            ]
        );
        assert!(
            message_placeholders("{x:money}")
                .unwrap_err()
                .contains("unknown format")
        );
        assert!(
            message_placeholders("open {x")
                .unwrap_err()
                .contains("unclosed")
        );
    }
}
