//! From a landed JSON body to records: the `data_selector`, and the recognition of error payloads
//! that arrive with a 2xx status (World Bank answers `[{"message": [...]}]` with 200).

use affluent_core::JsonPath;
use serde_json::Value;

/// The parsed `data_selector` of a REST source (`None`: the root).
pub fn data_selector(
    rest: &affluent_config::schema::RestSourceConfig,
) -> Result<Option<JsonPath>, crate::SourceError> {
    rest.endpoint
        .data_selector
        .as_deref()
        .map(JsonPath::parse)
        .transpose()
        .map_err(|e| crate::SourceError::Plan(e.to_string()))
}

/// Records of one body.
#[derive(Debug, Default)]
pub struct Selected {
    /// The records.
    pub records: Vec<Value>,
    /// Set when the selector found nothing and the body did not look like an error: worth a
    /// warning, since a mistyped selector also looks like this.
    pub selector_missing: bool,
}

/// Parses a body and selects its records: an array gives its elements, an object is one record,
/// nothing at the selector is zero records unless the body is an error payload.
pub fn select_records(
    body: &[u8],
    selector: Option<&JsonPath>,
) -> Result<(Value, Selected), String> {
    let mut doc: Value = serde_json::from_slice(body).map_err(|e| {
        let start: String = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        format!("malformed JSON ({e}); body starts with {start:?}")
    })?;
    let found = match selector {
        None => Some(&mut doc),
        Some(path) => path.get_mut(&mut doc),
    };
    let records = match found {
        // Arrays of records are moved out, not copied: the rest of the document (page counts,
        // next links) stays for the paginator.
        Some(Value::Array(items)) => std::mem::take(items),
        // A single object stays in place too (it may hold its own next link).
        Some(v @ Value::Object(_)) => vec![v.clone()],
        Some(other) => {
            return Err(format!(
                "data_selector `{}` points at a {}, not at records",
                selector.map(|s| s.as_str()).unwrap_or("$"),
                type_name(other)
            ));
        }
        None => {
            if let Some(message) = error_message(&doc) {
                return Err(format!("error payload: {message}"));
            }
            return Ok((
                doc,
                Selected {
                    records: Vec::new(),
                    selector_missing: true,
                },
            ));
        }
    };
    Ok((
        doc,
        Selected {
            records,
            selector_missing: false,
        },
    ))
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
        let (_, s) = select_records(br#"[{"pages":1},[{"a":1},{"a":2}]]"#, Some(&sel)).unwrap();
        assert_eq!(s.records.len(), 2);
        let (_, s) = select_records(br#"{"id":"x"}"#, None).unwrap();
        assert_eq!(s.records.len(), 1);
        let err = select_records(
            br#"[{"message":[{"key":"Invalid value","value":"bad"}]}]"#,
            Some(&sel),
        )
        .unwrap_err();
        assert!(err.contains("error payload: Invalid value: bad"), "{err}");
        let err = select_records(b"{\"a\":", None).unwrap_err();
        assert!(err.starts_with("malformed JSON"), "{err}");
        let tm = JsonPath::parse("_embedded.events").unwrap();
        let (_, s) = select_records(br#"{"page":{"totalElements":0}}"#, Some(&tm)).unwrap();
        assert!(s.records.is_empty() && s.selector_missing);
    }
}
