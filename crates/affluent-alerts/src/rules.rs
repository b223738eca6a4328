//! The pure part of alerts: a query's rows as each entity's latest observations, whether a
//! condition holds on one, and the message it gives. No I/O.

use std::collections::HashMap;

use affluent_config::schema::{Alert, Comparison, Condition};
use affluent_tables::reader::Rows;
use serde_json::Value;

/// An entity's latest observation and the one before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The entity, as its key columns' values (`{"artist_id": "a1"}`), in JSON text: its state's
    /// key.
    pub key: String,
    /// The latest row, in the query's column order.
    pub latest: Vec<Value>,
    /// The row before it, when the entity has one.
    pub previous: Option<Vec<Value>>,
}

/// The values of the comparison a message shows: the first of the condition.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Compared {
    /// The value compared.
    pub value: Option<f64>,
    /// Its previous value.
    pub previous: Option<f64>,
    /// The relative change from the previous value.
    pub change: Option<f64>,
}

/// Where the columns an alert reads are in its query's rows.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Column names, in order.
    pub columns: Vec<String>,
    entity: Vec<usize>,
    time: Option<usize>,
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
        for (name, _) in &alert.placeholders {
            if !["value", "previous", "change"].contains(&name.as_str()) {
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

/// Orders two time values: numbers as numbers, text as text (ISO dates and times sort), else
/// by their JSON text; null first.
fn time_order(a: &Value, b: &Value) -> std::cmp::Ordering {
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

/// Each entity's latest observation (the greatest time, the last in query order on ties) and
/// the one before it, in order of first appearance.
pub fn observations(layout: &Layout, rows: Rows) -> Vec<Observation> {
    let mut order: Vec<String> = Vec::new();
    let mut last: HashMap<String, (Vec<Value>, Option<Vec<Value>>)> = HashMap::new();
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
        match last.get_mut(&key) {
            None => {
                order.push(key.clone());
                last.insert(key, (row, None));
            }
            Some((latest, previous)) => {
                let newer = layout
                    .time
                    .is_none_or(|t| time_order(&row[t], &latest[t]) != std::cmp::Ordering::Less);
                if newer {
                    *previous = Some(std::mem::replace(latest, row));
                } else if previous.as_ref().is_none_or(|p| {
                    layout
                        .time
                        .is_some_and(|t| time_order(&row[t], &p[t]) != std::cmp::Ordering::Less)
                }) {
                    *previous = Some(row);
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|key| {
            let (latest, previous) = last.remove(&key)?;
            Some(Observation {
                key,
                latest,
                previous,
            })
        })
        .collect()
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
            let previous = match &obs.previous {
                Some(p) => number(p.get(c), column)?,
                None => None,
            };
            let change = match (value, previous) {
                (Some(v), Some(p)) if p != 0.0 => Some((v - p) / p.abs()),
                _ => None,
            };
            let compared = Compared {
                value,
                previous,
                change,
            };
            let ok = match (*comparison, value, previous, change) {
                (Comparison::Above(x), Some(v), _, _) => v > x,
                (Comparison::Below(x), Some(v), _, _) => v < x,
                (Comparison::ChangeAbove(x), _, _, Some(ch)) => ch > x,
                (Comparison::ChangeBelow(x), _, _, Some(ch)) => ch < x,
                (Comparison::CrossesAbove(x), Some(v), Some(p), _) => p < x && v >= x,
                (Comparison::CrossesBelow(x), Some(v), Some(p), _) => p >= x && v < x,
                _ => false,
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
    let mut out = String::new();
    let mut rest = alert.message.as_str();
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let inner = &rest[start + 1..start + len];
        let (name, f) = match inner.split_once(':') {
            Some((n, f)) => (n.trim(), Some(f.trim())),
            None => (inner.trim(), None),
        };
        out.push_str(&shown(&value_of(name), f));
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
