//! From a landed JSON body to records: the `data_selector`, and the recognition of error payloads
//! that arrive with a 2xx status (World Bank answers `[{"message": [...]}]` with 200).

use std::borrow::Cow;
use std::collections::HashMap;

use affluent_core::{JsonPath, Segment};
use serde_json::Value;
use serde_json::value::RawValue;

/// The records of one body, borrowed from it: the document is checked to be valid JSON and the
/// records are located without building a tree of values, which is what makes landing large
/// pages cheap. Values are built only where needed ([`Page::values`], [`Page::get`]).
#[derive(Debug)]
pub struct Page<'a> {
    /// The whole document.
    pub root: &'a RawValue,
    /// The records.
    pub records: Vec<&'a RawValue>,
    /// Set when the selector found nothing and the body did not look like an error: worth a
    /// warning, since a mistyped selector also looks like this.
    pub selector_missing: bool,
}

impl Page<'_> {
    /// The records as values.
    pub fn values(&self) -> Result<Vec<Value>, String> {
        self.records
            .iter()
            .map(|r| serde_json::from_str(r.get()).map_err(|e| e.to_string()))
            .collect()
    }

    /// The value at a path of the document, `None` when missing or `null`.
    pub fn get(&self, path: &JsonPath) -> Option<Value> {
        raw_get(self.root, path).and_then(|r| serde_json::from_str(r.get()).ok())
    }
}

/// Follows a path through raw JSON, parsing only the containers on the way.
pub fn raw_get<'a>(mut raw: &'a RawValue, path: &JsonPath) -> Option<&'a RawValue> {
    for segment in path.segments() {
        raw = match segment {
            Segment::Key(k) => {
                let map: HashMap<Cow<'a, str>, &'a RawValue> =
                    serde_json::from_str(raw.get()).ok()?;
                map.get(k.as_str()).copied()?
            }
            Segment::Index(i) => {
                let items: Vec<&'a RawValue> = serde_json::from_str(raw.get()).ok()?;
                let len = items.len() as i64;
                let i = if *i < 0 { len + i } else { *i };
                if i < 0 {
                    return None;
                }
                items.get(i as usize).copied()?
            }
        };
    }
    (raw.get().trim() != "null").then_some(raw)
}

/// Parses a body and selects its records: an array gives its elements, an object is one record,
/// nothing at the selector is zero records unless the body is an error payload.
pub fn select_page<'a>(body: &'a [u8], selector: Option<&JsonPath>) -> Result<Page<'a>, String> {
    let malformed = |e: &dyn std::fmt::Display| {
        let start: String = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        format!("malformed JSON ({e}); body starts with {start:?}")
    };
    let text = std::str::from_utf8(body).map_err(|e| malformed(&e))?;
    let root: &RawValue = serde_json::from_str(text).map_err(|e| malformed(&e))?;
    let found = match selector {
        None => {
            // The whole body is the record: unless it is only an error (Deezer answers its
            // errors, its quota's too, with status 200 and `{"error": {...}}`).
            if root.get().trim_start().starts_with('{')
                && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(root.get())
                && map.len() == 1
                && let Some(message) = error_message(&Value::Object(map))
            {
                return Err(format!("error payload: {message}"));
            }
            Some(root)
        }
        Some(path) => raw_get(root, path),
    };
    let Some(found) = found else {
        let doc: Value = serde_json::from_str(root.get()).map_err(|e| malformed(&e))?;
        if let Some(message) = error_message(&doc) {
            return Err(format!("error payload: {message}"));
        }
        return Ok(Page {
            root,
            records: Vec::new(),
            selector_missing: true,
        });
    };
    let records = match found.get().trim_start().as_bytes().first() {
        Some(b'[') => {
            serde_json::from_str::<Vec<&RawValue>>(found.get()).map_err(|e| malformed(&e))?
        }
        Some(b'{') => vec![found],
        _ => {
            let kind = match serde_json::from_str::<Value>(found.get()) {
                Ok(v) => type_name(&v),
                Err(_) => "value",
            };
            return Err(format!(
                "data_selector `{}` points at a {kind}, not at records",
                selector.map(|s| s.as_str()).unwrap_or("$"),
            ));
        }
    };
    Ok(Page {
        root,
        records,
        selector_missing: false,
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The message of an error payload, in the shapes public APIs use:
/// `{"message": .., "errorCode": ..}` (football-data.org), `{"error": {"message": ..}}` (Spotify),
/// `{"fault": {"faultstring": ..}}` (Ticketmaster), `{"errors": [{"detail"|"message": ..}]}`,
/// `[{"message": [{"key": .., "value": ..}]}]` (World Bank), `{"error": true, "reason": ..}`
/// (Open-Meteo).
pub fn error_message(doc: &Value) -> Option<String> {
    match doc {
        Value::Array(items) if items.len() == 1 => {
            let first = items.first()?;
            let messages = first.get("message")?;
            match messages {
                Value::Array(ms) => {
                    let parts: Vec<String> = ms
                        .iter()
                        .map(|m| {
                            let key = m.get("key").and_then(Value::as_str).unwrap_or("");
                            let value = m.get("value").and_then(Value::as_str).unwrap_or("");
                            format!("{key}: {value}")
                                .trim_matches([' ', ':'])
                                .to_string()
                        })
                        .collect();
                    Some(parts.join("; "))
                }
                Value::String(s) => Some(s.clone()),
                _ => None,
            }
        }
        Value::Object(map) => {
            if let Some(fault) = map.get("fault") {
                return fault
                    .get("faultstring")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| Some(fault.to_string()));
            }
            if let Some(error) = map.get("error") {
                match error {
                    Value::String(s) => return Some(s.clone()),
                    Value::Object(e) => {
                        if let Some(m) = e.get("message").and_then(Value::as_str) {
                            return Some(m.to_string());
                        }
                        return Some(error.to_string());
                    }
                    Value::Bool(true) => {
                        return map
                            .get("reason")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .or_else(|| Some("error: true".into()));
                    }
                    _ => {}
                }
            }
            if let Some(Value::Array(errors)) = map.get("errors") {
                let parts: Vec<String> = errors
                    .iter()
                    .filter_map(|e| {
                        e.get("detail")
                            .or_else(|| e.get("message"))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .collect();
                if !parts.is_empty() {
                    return Some(parts.join("; "));
                }
            }
            let message = map.get("message").and_then(Value::as_str);
            let flagged = map.contains_key("errorCode")
                || map.contains_key("error_code")
                || map.contains_key("status_code")
                || map.len() <= 3;
            match message {
                Some(m) if flagged => Some(m.to_string()),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_body_that_is_only_an_error_is_no_record() {
        let deezer = br#"{"error":{"type":"Exception","message":"Quota limit exceeded","code":4}}"#;
        assert_eq!(
            select_page(deezer, None).err().as_deref(),
            Some("error payload: Quota limit exceeded")
        );
        // A record that has an `error` field among others stays a record.
        let record = br#"{"id":1,"error":{"message":"not this"}}"#;
        assert_eq!(select_page(record, None).unwrap().records.len(), 1);
    }

    #[test]
    fn recognises_provider_error_shapes() {
        let fd =
            json!({"message":"Date argument not in expected format: yyyy-MM-dd","errorCode":400});
        assert_eq!(
            error_message(&fd).unwrap(),
            "Date argument not in expected format: yyyy-MM-dd"
        );
        let wb = json!([{"message":[{"id":"120","key":"Invalid value","value":"The provided parameter value is not valid"}]}]);
        assert_eq!(
            error_message(&wb).unwrap(),
            "Invalid value: The provided parameter value is not valid"
        );
        let tm = json!({"fault":{"faultstring":"Invalid ApiKey","detail":{"errorcode":"oauth.v2.InvalidApiKey"}}});
        assert_eq!(error_message(&tm).unwrap(), "Invalid ApiKey");
        let sp = json!({"error":{"status":401,"message":"Invalid access token"}});
        assert_eq!(error_message(&sp).unwrap(), "Invalid access token");
        let om = json!({"error":true,"reason":"Cannot initialize WeatherVariable from invalid String value"});
        assert!(error_message(&om).unwrap().starts_with("Cannot initialize"));
        assert_eq!(
            error_message(&json!({"name": "x", "id": 1, "a": 2, "b": 3})),
            None
        );
    }

    #[test]
    fn selects_arrays_objects_and_reports_error_payloads() {
        let sel = JsonPath::parse("[1]").unwrap();
        let p = select_page(br#"[{"pages":2},[{"a":1},{"a":2}]]"#, Some(&sel)).unwrap();
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.values().unwrap()[1], serde_json::json!({"a": 2}));
        assert_eq!(
            p.get(&JsonPath::parse("[0].pages").unwrap()),
            Some(serde_json::json!(2))
        );
        let p = select_page(br#"{"id":"x"}"#, None).unwrap();
        assert_eq!(p.records.len(), 1);
        let err = select_page(
            br#"[{"message":[{"key":"Invalid value","value":"bad"}]}]"#,
            Some(&sel),
        )
        .unwrap_err();
        assert!(err.contains("error payload: Invalid value: bad"), "{err}");
        let err = select_page(b"{\"a\":", None).unwrap_err();
        assert!(err.starts_with("malformed JSON"), "{err}");
        let err = select_page(br#"{"a": 1} trailing"#, None).unwrap_err();
        assert!(err.starts_with("malformed JSON"), "{err}");
        let err =
            select_page(br#"{"total": 3}"#, Some(&JsonPath::parse("total").unwrap())).unwrap_err();
        assert!(err.contains("points at a number"), "{err}");
        let tm = JsonPath::parse("_embedded.events").unwrap();
        let p = select_page(br#"{"page":{"totalElements":0}}"#, Some(&tm)).unwrap();
        assert!(p.records.is_empty() && p.selector_missing);
    }
}
