//! The path language of `data_selector`, `total_path`, `cursor_path`, `next_url_path` and
//! fan-out `field`s: dotted keys and bracketed indexes, as users write them for dlt.
//!
//! `_embedded.events`, `matches`, `[1]`, `[0].pages`, `data.stations`, `$.results`,
//! `_embedded.venues[0].city.name`, `links["next"]`. A negative index counts from the end.

use serde_json::Value;

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object member.
    Key(String),
    /// An array element; negative counts from the end.
    Index(i64),
}

/// A parsed path into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    segments: Vec<Segment>,
}

/// A path that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON path {path:?}: {reason}")]
pub struct JsonPathError {
    /// The path as written.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl JsonPath {
    /// The path of nested object keys (`["cursors", "next"]` is `cursors.next`).
    pub fn keys(keys: &[&str]) -> Self {
        Self {
            text: keys.join("."),
            segments: keys.iter().map(|k| Segment::Key(k.to_string())).collect(),
        }
    }

    /// Parses a path; `""` and `"$"` are the root.
    pub fn parse(text: &str) -> Result<Self, JsonPathError> {
        let err = |reason: &str| JsonPathError {
            path: text.to_string(),
            reason: reason.to_string(),
        };
        let mut rest = text.trim();
        if let Some(r) = rest.strip_prefix('$') {
            rest = r;
        }
        let mut segments = Vec::new();
        let mut first = true;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('[') {
                let close = r.find(']').ok_or_else(|| err("missing ']'"))?;
                let inner = r[..close].trim();
                if let Some(quoted) = inner
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .or_else(|| inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                {
                    segments.push(Segment::Key(quoted.to_string()));
                } else {
                    let index: i64 = inner
                        .parse()
                        .map_err(|_| err(&format!("{inner:?} is not an array index")))?;
                    segments.push(Segment::Index(index));
                }
                rest = &r[close + 1..];
            } else {
                if let Some(r) = rest.strip_prefix('.') {
                    rest = r;
                } else if !first {
                    return Err(err("expected '.' or '[' between segments"));
                }
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                let key = &rest[..end];
                if key.is_empty() {
                    return Err(err("empty key"));
                }
                segments.push(Segment::Key(key.to_string()));
                rest = &rest[end..];
            }
            first = false;
        }
        Ok(Self {
            text: text.to_string(),
            segments,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed steps.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether this is the document root.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// Follows the path; `None` when a step is missing or `null`.
    pub fn get<'a>(&self, mut value: &'a Value) -> Option<&'a Value> {
        for segment in &self.segments {
            value = match (segment, value) {
                (Segment::Key(k), Value::Object(map)) => map.get(k)?,
                (Segment::Index(i), Value::Array(items)) => {
                    let len = items.len() as i64;
                    let i = if *i < 0 { len + i } else { *i };
                    if i < 0 {
                        return None;
                    }
                    items.get(i as usize)?
                }
                _ => return None,
            };
        }
        if value.is_null() { None } else { Some(value) }
    }
}

impl JsonPath {
    /// Follows the path mutably; `None` when a step is missing or `null`.
    pub fn get_mut<'a>(&self, mut value: &'a mut Value) -> Option<&'a mut Value> {
        for segment in &self.segments {
            value = match (segment, value) {
                (Segment::Key(k), Value::Object(map)) => map.get_mut(k)?,
                (Segment::Index(i), Value::Array(items)) => {
                    let len = items.len() as i64;
                    let i = if *i < 0 { len + i } else { *i };
                    if i < 0 {
                        return None;
                    }
                    items.get_mut(i as usize)?
                }
                _ => return None,
            };
        }
        if value.is_null() { None } else { Some(value) }
    }
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_build_what_parse_reads() {
        assert_eq!(
            JsonPath::keys(&["cursors", "next"]),
            JsonPath::parse("cursors.next").unwrap()
        );
    }
    use serde_json::json;

    #[test]
    fn follows_keys_and_indexes() {
        let doc = json!([{"pages": 3}, [{"a": {"b": [1, 2, 3]}}]]);
        assert_eq!(
            JsonPath::parse("[0].pages").unwrap().get(&doc),
            Some(&json!(3))
        );
        assert_eq!(
            JsonPath::parse("$[1][0].a.b[-1]").unwrap().get(&doc),
            Some(&json!(3))
        );
        assert_eq!(
            JsonPath::parse("[1][0]['a']").unwrap().get(&doc),
            Some(&json!({"b": [1, 2, 3]}))
        );
        assert_eq!(JsonPath::parse("[5]").unwrap().get(&doc), None);
        assert!(JsonPath::parse("").unwrap().is_root());
        let mut doc = doc;
        *JsonPath::parse("[0].pages")
            .unwrap()
            .get_mut(&mut doc)
            .unwrap() = json!(4);
        assert_eq!(doc[0]["pages"], 4);
    }

    #[test]
    fn rejects_malformed_paths() {
        assert!(JsonPath::parse("a..b").is_err());
        assert!(JsonPath::parse("a[x]").is_err());
        assert!(JsonPath::parse("a[0").is_err());
    }
}
