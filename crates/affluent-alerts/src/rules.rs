//! The pure part of alerts: a query's rows as each entity's latest observations, whether a
//! condition holds on one, and the message it gives. No I/O.

use std::collections::HashMap;

use affluent_config::schema::{Alert, Baseline, Comparison, Condition, MessagePiece};
use affluent_tables::reader::Rows;
use serde_json::Value;

/// An entity's rows, ordered by time: its observations.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The entity, as its key columns' values (`{"artist_id": "a1"}`), in JSON text: its state's
    /// key.
    pub key: String,
    /// Its rows, oldest first, in the query's column order; never empty.
    pub rows: Vec<Vec<Value>>,
}

impl Series {
    /// The observation of row `i` (with the rows before it), as an evaluation at that time saw
    /// it.
    pub fn at(&self, i: usize) -> Observation<'_> {
        Observation {
            key: &self.key,
            latest: &self.rows[i],
            earlier: &self.rows[..i],
        }
    }

    /// The latest observation.
    pub fn latest(&self) -> Observation<'_> {
        self.at(self.rows.len() - 1)
    }

    /// The indexes of the observations after `seen` (a time value of `layout`'s time column),
    /// oldest first: those an evaluation has not seen yet; all of them for an entity never
    /// evaluated (`known` false). Without a time column, when none is newer, or for an entity
    /// evaluated before its state kept a time (an alert given `time` since, a state of affluent
    /// 0.1), only the latest: its history was judged already.
    pub fn unseen(
        &self,
        layout: &Layout,
        seen: Option<&Value>,
        known: bool,
    ) -> std::ops::Range<usize> {
        let last = self.rows.len() - 1;
        let Some(t) = layout.time else {
            return last..self.rows.len();
        };
        let first = match seen {
            None if known => last,
            None => 0,
            Some(seen) => self
                .rows
                .iter()
                .position(|row| time_order(&row[t], seen) == std::cmp::Ordering::Greater)
                .unwrap_or(last),
        };
        first..self.rows.len()
    }
}

/// One observation of an entity and those before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation<'a> {
    /// The entity's key (see [`Series::key`]).
    pub key: &'a str,
    /// The row observed, in the query's column order.
    pub latest: &'a [Value],
    /// The rows before it, oldest first (the last is the previous observation).
    pub earlier: &'a [Vec<Value>],
}

impl Observation<'_> {
    /// The observation before this one.
    pub fn previous(&self) -> Option<&Vec<Value>> {
        self.earlier.last()
    }
}

/// The values of the comparison a message shows: the first of the condition.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Compared {
    /// The value compared.
    pub value: Option<f64>,
    /// What it was compared with: the previous value, the baseline, or the median of an
    /// anomaly's window.
    pub previous: Option<f64>,
    /// The relative change from it.
    pub change: Option<f64>,
    /// An anomaly's robust z-score.
    pub score: Option<f64>,
}

/// Where the columns an alert reads are in its query's rows.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Column names, in order.
    pub columns: Vec<String>,
    entity: Vec<usize>,
    /// Where the time column is, if the alert has one.
    pub time: Option<usize>,
}

impl Layout {
    /// Checks that the query gives every column the alert names.
    pub fn new(alert_name: &str, alert: &Alert, rows: &Rows) -> Result<Self, String> {
        let columns: Vec<String> = rows.columns.iter().map(|c| c.name.clone()).collect();
        let find = |name: &str, role: &str| {
            columns.iter().position(|c| c == name).ok_or_else(|| {
                format!(
                    "alert `{alert_name}`: its {role} `{name}` is not a column of its query (columns: {})",
                    columns.join(", ")
                )
            })
        };
        let entity = alert
            .entity
            .iter()
            .map(|e| find(e, "entity column"))
            .collect::<Result<Vec<_>, _>>()?;
        let time = alert
            .time
            .as_deref()
            .map(|t| find(t, "time column"))
            .transpose()?;
        for column in alert.condition.columns() {
            find(column, "condition's column")?;
        }
        for piece in &alert.template {
            let MessagePiece::Field { name, .. } = piece else {
                continue;
            };
            if !["value", "previous", "change", "score"].contains(&name.as_str()) {
                find(name, "message's placeholder")?;
            }
        }
        Ok(Self {
            columns,
            entity,
            time,
        })
    }

    fn at(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// Orders two time values: dates and instants as such, numbers as numbers, other text as text,
/// else by their JSON text; null first.
pub fn time_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    if let (Some(x), Some(y)) = (civil_time(a), civil_time(b)) {
        return x.cmp(&y);
    }
    match (a, b) {
        (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
        (Value::Null, _) => std::cmp::Ordering::Less,
        (_, Value::Null) => std::cmp::Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (x, y) => x.to_string().cmp(&y.to_string()),
    }
}

/// Each entity's observations ordered by time (query order on ties: the last is the latest),
/// in order of first appearance.
pub fn observations(layout: &Layout, rows: Rows) -> Vec<Series> {
    let mut order: Vec<String> = Vec::new();
    let mut by_entity: HashMap<String, Vec<Vec<Value>>> = HashMap::new();
    for row in rows.rows {
        let key = {
            let mut map = serde_json::Map::new();
            for &c in &layout.entity {
                map.insert(
                    layout.columns[c].clone(),
                    row.get(c).cloned().unwrap_or(Value::Null),
                );
            }
            Value::Object(map).to_string()
        };
        match by_entity.get_mut(&key) {
            Some(list) => list.push(row),
            None => {
                order.push(key.clone());
                by_entity.insert(key, vec![row]);
            }
        }
    }
    order
        .into_iter()
        .filter_map(|key| {
            let mut rows = by_entity.remove(&key)?;
            if let Some(t) = layout.time {
                // Stable: rows of equal time keep their query order.
                rows.sort_by(|a, b| time_order(&a[t], &b[t]));
            }
            (!rows.is_empty()).then_some(Series { key, rows })
        })
        .collect()
}

/// A time value as a civil date and time (a date is its midnight; an instant is read in UTC).
fn civil_time(v: &Value) -> Option<jiff::civil::DateTime> {
    let Value::String(s) = v else {
        return None;
    };
    affluent_core::civil_time(s)
}

/// The baseline of an observation: the mean of the entity's values at the same weekday and
/// time N weeks back (or the same hour N days back), over those it has.
fn baseline(
    layout: &Layout,
    obs: &Observation,
    column: usize,
    name: &str,
    b: Baseline,
) -> Result<Option<f64>, String> {
    let Some(t) = layout.time else {
        return Ok(None);
    };
    let Some(now) = civil_time(&obs.latest[t]) else {
        return Ok(None);
    };
    // Only the rows in the baseline's slots are read: a bad value elsewhere does not matter.
    let wanted = b.earlier(now);
    let mut history = Vec::new();
    for row in obs.earlier {
        if let Some(when) = civil_time(&row[t])
            && wanted.contains(&b.slot(when))
            && let Some(x) = number(row.get(column), name)?
        {
            history.push((when, x));
        }
    }
    Ok(b.mean(now, history))
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// The robust z-score of `value` against the previous `window` values: 0.6745 × (value −
/// median) / MAD, with the median and the MAD (median absolute deviation) of those values.
/// `None` with fewer than 3 values; infinite when they are all equal and `value` is not.
pub fn robust_z(value: f64, previous: &[f64]) -> Option<(f64, f64)> {
    if previous.len() < 3 {
        return None;
    }
    let mut values = previous.to_vec();
    let m = median(&mut values)?;
    let mut deviations: Vec<f64> = previous.iter().map(|x| (x - m).abs()).collect();
    let mad = median(&mut deviations)?;
    let z = if mad > 0.0 {
        0.6745 * (value - m) / mad
    } else if value == m {
        0.0
    } else {
        f64::INFINITY.copysign(value - m)
    };
    Some((z, m))
}

/// A cell as a number: JSON numbers, and text that reads as one; null is no value.
fn number(v: Option<&Value>, column: &str) -> Result<Option<f64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::Bool(b)) => Ok(Some(f64::from(u8::from(*b)))),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("column `{column}` is {s:?}, not a number")),
        Some(other) => Err(format!("column `{column}` is {other}, not a number")),
    }
}

/// Whether the condition holds on an observation; when it does, the values of its first
/// comparison. A value that is not a number is an error (the entity is skipped); a missing
/// value or previous observation does not hold.
pub fn holds(
    condition: &Condition,
    layout: &Layout,
    obs: &Observation,
) -> Result<Option<Compared>, String> {
    match condition {
        Condition::Compare { column, comparison } => {
            let Some(c) = layout.at(column) else {
                return Err(format!("no column `{column}`"));
            };
            let value = number(obs.latest.get(c), column)?;
            let change_from = |v: Option<f64>, p: Option<f64>| match (v, p) {
                (Some(v), Some(p)) if p != 0.0 => Some((v - p) / p.abs()),
                _ => None,
            };
            // The previous observation's value, for every kind (a threshold's message may show
            // it); baselines and anomalies compare with something else and say so.
            let previous = match obs.previous() {
                Some(p) => number(p.get(c), column)?,
                None => None,
            };
            let mut compared = Compared {
                value,
                previous,
                change: change_from(value, previous),
                score: None,
            };
            let ok = match *comparison {
                Comparison::Above(x) => value.is_some_and(|v| v > x),
                Comparison::Below(x) => value.is_some_and(|v| v < x),
                Comparison::ChangeAbove(_)
                | Comparison::ChangeBelow(_)
                | Comparison::CrossesAbove(_)
                | Comparison::CrossesBelow(_) => {
                    match (*comparison, value, previous, compared.change) {
                        (Comparison::ChangeAbove(x), _, _, Some(ch)) => ch > x,
                        (Comparison::ChangeBelow(x), _, _, Some(ch)) => ch < x,
                        (Comparison::CrossesAbove(x), Some(v), Some(p), _) => p < x && v >= x,
                        (Comparison::CrossesBelow(x), Some(v), Some(p), _) => p >= x && v < x,
                        _ => false,
                    }
                }
                Comparison::BaselineAbove(x, b) | Comparison::BaselineBelow(x, b) => {
                    let base = baseline(layout, obs, c, column, b)?;
                    compared.previous = base;
                    compared.change = change_from(value, base);
                    match (*comparison, compared.change) {
                        (Comparison::BaselineAbove(..), Some(ch)) => ch > x,
                        (Comparison::BaselineBelow(..), Some(ch)) => ch < x,
                        _ => false,
                    }
                }
                Comparison::Anomaly { z, window } => {
                    let mut previous = Vec::new();
                    for row in obs.earlier.iter().rev() {
                        if previous.len() == window {
                            break;
                        }
                        if let Some(x) = number(row.get(c), column)? {
                            previous.push(x);
                        }
                    }
                    match value.and_then(|v| robust_z(v, &previous)) {
                        Some((score, m)) => {
                            compared.previous = Some(m);
                            compared.change = change_from(value, Some(m));
                            compared.score = Some(score);
                            score.abs() > z
                        }
                        None => false,
                    }
                }
            };
            Ok(ok.then_some(compared))
        }
        Condition::All(list) => {
            let mut first = None;
            for c in list {
                match holds(c, layout, obs)? {
                    Some(v) => {
                        first.get_or_insert(v);
                    }
                    None => return Ok(None),
                }
            }
            Ok(first.or(Some(Compared::default())))
        }
        Condition::Any(list) => {
            for c in list {
                if let Some(v) = holds(c, layout, obs)? {
                    return Ok(Some(v));
                }
            }
            Ok(None)
        }
    }
}

/// How a locale writes numbers.
#[derive(Debug, Clone, Copy)]
pub struct NumberFormat {
    decimal: char,
    group: char,
    percent: &'static str,
}

impl NumberFormat {
    /// The format of a BCP 47 locale (`fr-FR`: `50 000`, `12,3 %`; `en-GB`: `50,000`, `12.3%`).
    pub fn of(locale: &str) -> Self {
        let language = locale
            .split('-')
            .next()
            .unwrap_or("en")
            .to_ascii_lowercase();
        match language.as_str() {
            "fr" => Self {
                decimal: ',',
                group: ' ',
                percent: " %",
            },
            "de" | "es" | "it" | "nl" | "pt" | "da" | "id" => Self {
                decimal: ',',
                group: '.',
                percent: " %",
            },
            _ => Self {
                decimal: '.',
                group: ',',
                percent: "%",
            },
        }
    }

    fn grouped(&self, int: u64) -> String {
        let digits = int.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(self.group);
            }
            out.push(c);
        }
        out
    }

    /// A number with `decimals` decimals (trailing zeros kept), grouped.
    pub fn number(&self, x: f64, decimals: usize) -> String {
        if !x.is_finite() {
            return x.to_string();
        }
        let text = format!("{:.*}", decimals, x.abs());
        let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
        let mut out = String::new();
        if x < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
            out.push('-');
        }
        out.push_str(&self.grouped(int.parse().unwrap_or(0)));
        if !frac.is_empty() {
            out.push(self.decimal);
            out.push_str(frac);
        }
        out
    }

    /// A ratio as a percentage with one decimal (`0.123` → `12,3 %`).
    pub fn percent(&self, ratio: f64) -> String {
        format!("{}{}", self.number(ratio * 100.0, 1), self.percent)
    }
}

/// The message of a firing: placeholders replaced by the observation's values.
pub fn message(
    alert: &Alert,
    layout: &Layout,
    obs: &Observation,
    compared: &Compared,
    format: NumberFormat,
) -> String {
    let value_of = |name: &str| -> Value {
        let n = |x: Option<f64>| {
            x.and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number)
        };
        match name {
            "value" => n(compared.value),
            "previous" => n(compared.previous),
            "change" => n(compared.change),
            "score" => n(compared.score),
            other => layout
                .at(other)
                .and_then(|c| obs.latest.get(c).cloned())
                .unwrap_or(Value::Null),
        }
    };
    let shown = |v: &Value, f: Option<&str>| -> String {
        let as_number = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        match (f, as_number) {
            (_, None) if v.is_null() => "–".to_string(),
            (Some("pct"), Some(x)) => format.percent(x),
            (Some("int"), Some(x)) => format.number(x.round(), 0),
            (Some("num"), Some(x)) => {
                let text = format.number(x, 2);
                let trimmed = text.trim_end_matches('0').trim_end_matches(format.decimal);
                trimmed.to_string()
            }
            (_, _) => match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        }
    };
    alert
        .template
        .iter()
        .map(|piece| match piece {
            MessagePiece::Text(t) => t.clone(),
            MessagePiece::Field { name, format } => shown(&value_of(name), format.as_deref()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_z_scores_outliers_against_median_and_mad() {
        // median 10, deviations 0,1,1,2,2 -> MAD 1
        let (z, m) = robust_z(20.0, &[10.0, 9.0, 11.0, 8.0, 12.0]).unwrap();
        assert_eq!(m, 10.0);
        assert!((z - 6.745).abs() < 1e-9, "{z}");
        assert_eq!(robust_z(5.0, &[1.0, 2.0]), None);
        let (z, _) = robust_z(3.0, &[2.0, 2.0, 2.0]).unwrap();
        assert!(z.is_infinite() && z > 0.0);
        assert_eq!(robust_z(2.0, &[2.0, 2.0, 2.0]).unwrap().0, 0.0);
    }

    #[test]
    fn an_entity_is_walked_from_what_its_state_last_saw() {
        let layout = Layout {
            columns: vec!["entity".into(), "day".into(), "v".into()],
            entity: vec![0],
            time: Some(1),
        };
        let row = |d: &str, v: i64| vec![Value::from("a"), Value::from(d), Value::from(v)];
        let series = Series {
            key: "{\"entity\":\"a\"}".into(),
            rows: vec![
                row("2024-01-01", 1),
                row("2024-01-02", 2),
                row("2024-01-03", 3),
            ],
        };
        // Never evaluated: every observation.
        assert_eq!(series.unseen(&layout, None, false), 0..3);
        // Seen up to the 2nd: the 3rd only.
        assert_eq!(
            series.unseen(&layout, Some(&Value::from("2024-01-02")), true),
            2..3
        );
        // Nothing new: the latest again (a cooldown may have passed).
        assert_eq!(
            series.unseen(&layout, Some(&Value::from("2024-01-03")), true),
            2..3
        );
        // Evaluated before its state kept a time (state of 0.1, `time` added since): the
        // latest only, never its whole history again.
        assert_eq!(series.unseen(&layout, None, true), 2..3);
        // Without a time column: the latest.
        let untimed = Layout {
            time: None,
            ..layout.clone()
        };
        assert_eq!(series.unseen(&untimed, None, false), 2..3);
    }

    #[test]
    fn numbers_follow_the_locale() {
        let fr = NumberFormat::of("fr-FR");
        assert_eq!(fr.number(56_422.0, 0), "56 422");
        assert_eq!(fr.percent(0.1234), "12,3 %");
        assert_eq!(fr.percent(-0.05), "-5,0 %");
        let en = NumberFormat::of("en-GB");
        assert_eq!(en.number(1_234_567.891, 2), "1,234,567.89");
        assert_eq!(en.percent(0.5), "50.0%");
        assert_eq!(en.number(-0.004, 2), "0.00");
    }
}
