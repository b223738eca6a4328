//! Templates in URLs, params and bodies: `{name}`, `{name:FORMAT}` and time offsets.
//!
//! - `{interval.start}` / `{interval.end}`: the run's data interval in the source's time zone,
//!   ISO 8601 by default (`2024-03-01T09:00:00+01:00`);
//! - `{interval.end - 8h:%Y-%m-%d}`: offsets (`s`, `m`, `h`, `d`, `w`, `mo`, `y`; days and larger are
//!   calendar units, correct across daylight-saving changes) then a strftime format;
//! - formats `unix`, `unix_ms`, `date` (`%Y-%m-%d`), and a `utc:` prefix to format in UTC
//!   (`{interval.start:utc:%Y-%m-%dT%H:%M:%SZ}`);
//! - fan-out variables by name: `{country}`, `{artist_id}`, time-grid variables like `{hour:%H}`;
//! - `{{` and `}}` for literal braces.

use std::collections::BTreeMap;

use jiff::{Span, Zoned, tz::TimeZone};

/// A value a template variable can take.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Plain text, inserted as is.
    Text(String),
    /// An instant in a time zone, formatted by the placeholder's format.
    Time(Zoned),
}

/// The variables visible to a template.
pub type Vars = BTreeMap<String, Value>;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Placeholder(Placeholder),
}

#[derive(Debug, Clone, PartialEq)]
struct Placeholder {
    var: String,
    offsets: Vec<(i64, Unit)>,
    format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// A template that does not parse or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

impl Template {
    /// Parses a template string.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if matches!(chars.peek(), Some((_, '{'))) => {
                    chars.next();
                    literal.push('{');
                }
                '}' if matches!(chars.peek(), Some((_, '}'))) => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let close = text[i..].find('}').ok_or_else(|| {
                        TemplateError(format!(
                            "unclosed '{{' at offset {i} in {text:?} (write '{{{{' for a literal brace)"
                        ))
                    })?;
                    let inner = &text[i + 1..i + close];
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Placeholder(parse_placeholder(inner)?));
                    while let Some((j, _)) = chars.peek() {
                        if *j <= i + close {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                '}' => {
                    return Err(TemplateError(format!(
                        "unmatched '}}' at offset {i} in {text:?} (write '}}}}' for a literal brace)"
                    )));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// The variable names the template uses.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Placeholder(ph) => Some(ph.var.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Whether the template has no placeholder.
    pub fn is_literal(&self) -> bool {
        self.variables().next().is_none()
    }

    /// Renders with the given variables.
    pub fn render(&self, vars: &Vars) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Placeholder(ph) => out.push_str(&ph.render(vars)?),
            }
        }
        Ok(out)
    }

    /// Checks the template renders against sample values of the given variables (a time for
    /// time variables, text otherwise): catches unknown variables and bad formats up front.
    pub fn check(&self, time_vars: &[&str], text_vars: &[&str]) -> Result<(), TemplateError> {
        let sample = Zoned::now().with_time_zone(TimeZone::UTC);
        let mut vars = Vars::new();
        for v in time_vars {
            vars.insert((*v).to_string(), Value::Time(sample.clone()));
        }
        for v in text_vars {
            vars.insert((*v).to_string(), Value::Text("x".into()));
        }
        self.render(&vars).map(|_| ())
    }
}

fn parse_placeholder(inner: &str) -> Result<Placeholder, TemplateError> {
    let (head, format) = match inner.find(':') {
        Some(i) => (&inner[..i], Some(inner[i + 1..].to_string())),
        None => (inner, None),
    };
    let head = head.trim();
    let var_end = head
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(head.len());
    let var = head[..var_end].to_string();
    if var.is_empty() {
        return Err(TemplateError(format!(
            "empty placeholder {{{inner}}}: expected a variable such as {{interval.start}}"
        )));
    }
    let mut offsets = Vec::new();
    let mut rest = head[var_end..].trim();
    while !rest.is_empty() {
        let sign = match rest.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => {
                return Err(TemplateError(format!(
                    "in {{{inner}}}: expected '+' or '-' before an offset like '- 8h'"
                )));
            }
        };
        rest = rest[1..].trim_start();
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        let n: i64 = rest[..digits].parse().map_err(|_| {
            TemplateError(format!("in {{{inner}}}: expected a number after the sign"))
        })?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = match &rest[..unit_len] {
            "s" => Unit::Second,
            "m" | "min" => Unit::Minute,
            "h" => Unit::Hour,
            "d" => Unit::Day,
            "w" => Unit::Week,
            "mo" => Unit::Month,
            "y" => Unit::Year,
            other => {
                return Err(TemplateError(format!(
                    "in {{{inner}}}: unknown offset unit {other:?} (expected s, m, h, d, w, mo or y)"
                )));
            }
        };
        offsets.push((sign * n, unit));
        rest = rest[unit_len..].trim_start();
    }
    Ok(Placeholder {
        var,
        offsets,
        format,
    })
}

impl Placeholder {
    fn render(&self, vars: &Vars) -> Result<String, TemplateError> {
        let value = vars.get(&self.var).ok_or_else(|| {
            let known: Vec<&str> = vars.keys().map(String::as_str).collect();
            TemplateError(format!(
                "unknown template variable {{{}}}; known here: {}",
                self.var,
                known.join(", ")
            ))
        })?;
        match value {
            Value::Text(text) => {
                if !self.offsets.is_empty() || self.format.is_some() {
                    return Err(TemplateError(format!(
                        "{{{}}} is text: offsets and formats apply only to times",
                        self.var
                    )));
                }
                Ok(text.clone())
            }
            Value::Time(zoned) => {
                let mut t = zoned.clone();
                for (n, unit) in &self.offsets {
                    let span = match unit {
                        Unit::Second => Span::new().seconds(*n),
                        Unit::Minute => Span::new().minutes(*n),
                        Unit::Hour => Span::new().hours(*n),
                        Unit::Day => Span::new().days(*n),
                        Unit::Week => Span::new().weeks(*n),
                        Unit::Month => Span::new().months(*n),
                        Unit::Year => Span::new().years(*n),
                    };
                    t = t.checked_add(span).map_err(|e| {
                        TemplateError(format!("offset out of range in {{{}}}: {e}", self.var))
                    })?;
                }
                format_time(&t, self.format.as_deref().unwrap_or("iso"))
            }
        }
    }
}

fn format_time(t: &Zoned, format: &str) -> Result<String, TemplateError> {
    let (t, format) = match format.strip_prefix("utc:") {
        Some(f) => (t.with_time_zone(TimeZone::UTC), f),
        None => (t.clone(), format),
    };
    let format = match format {
        "unix" => return Ok(t.timestamp().as_second().to_string()),
        "unix_ms" => return Ok(t.timestamp().as_millisecond().to_string()),
        "iso" => "%Y-%m-%dT%H:%M:%S%:z",
        "date" => "%Y-%m-%d",
        other => other,
    };
    jiff::fmt::strtime::format(format, &t)
        .map_err(|e| TemplateError(format!("invalid time format {format:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let tz = TimeZone::get("Europe/Paris").unwrap();
        let end: Zoned = "2024-03-31T12:00:00+02:00[Europe/Paris]".parse().unwrap();
        let mut v = Vars::new();
        v.insert("interval.end".into(), Value::Time(end.with_time_zone(tz)));
        v.insert("country".into(), Value::Text("fra".into()));
        v
    }

    #[test]
    fn renders_formats_offsets_and_text() {
        let t = Template::parse("c/{country}?d={interval.end - 8h:%Y-%m-%d %H}&e={interval.end}")
            .unwrap();
        assert_eq!(
            t.render(&vars()).unwrap(),
            "c/fra?d=2024-03-31 04&e=2024-03-31T12:00:00+02:00"
        );
    }

    #[test]
    fn day_offsets_are_calendar_days_across_dst() {
        // 2024-03-31 is the spring-forward day in Paris: one calendar day back is 12:00 +01:00.
        let t = Template::parse("{interval.end - 1d}").unwrap();
        assert_eq!(t.render(&vars()).unwrap(), "2024-03-30T12:00:00+01:00");
        let t = Template::parse("{interval.end - 24h:utc:%Y-%m-%dT%H:%M:%SZ}").unwrap();
        assert_eq!(t.render(&vars()).unwrap(), "2024-03-30T10:00:00Z");
    }

    #[test]
    fn escapes_and_errors() {
        assert_eq!(
            Template::parse("{{x}}").unwrap().render(&vars()).unwrap(),
            "{x}"
        );
        assert!(Template::parse("{oops").is_err());
        assert!(Template::parse("{interval.end ~ 3h}").is_err());
        let err = Template::parse("{cuntry}")
            .unwrap()
            .render(&vars())
            .unwrap_err();
        assert!(
            err.0.contains("unknown template variable {cuntry}"),
            "{err}"
        );
        let err = Template::parse("{interval.end:%Y-%}")
            .unwrap()
            .render(&vars())
            .unwrap_err();
        assert!(err.0.contains("invalid time format"), "{err}");
    }
}
