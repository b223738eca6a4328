//! Reading one CSV file: declared or inferred column types; a row that does not fit becomes a
//! reject with its line, field and reason.

use std::collections::BTreeMap;
use std::path::PathBuf;

use affluent_config::schema::{ColumnType, CsvSourceConfig};
use affluent_landing::Reject;
use serde_json::{Map, Number, Value};

/// Records and rejects of one file.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Good rows as JSON objects.
    pub records: Vec<Value>,
    /// Rows that did not fit.
    pub rejects: Vec<Reject>,
}

/// The files a CSV source reads, sorted; paths are relative to the project directory.
pub fn files(
    project_dir: &std::path::Path,
    config: &CsvSourceConfig,
) -> Result<Vec<PathBuf>, String> {
    let pattern = if std::path::Path::new(&config.path).is_absolute() {
        config.path.clone()
    } else {
        project_dir
            .join(&config.path)
            .to_string_lossy()
            .into_owned()
    };
    let mut out: Vec<PathBuf> = glob::glob(&pattern)
        .map_err(|e| format!("invalid glob {:?}: {e}", config.path))?
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(format!(
            "no file matches {:?} (looked for {pattern}): check `path` or the variable it uses",
            config.path
        ));
    }
    Ok(out)
}

/// Parses one landed file. An error is a problem with the whole file (a declared column missing
/// from the header); row problems are rejects.
pub fn parse(
    bytes: &[u8],
    config: &CsvSourceConfig,
    source: &str,
    entry_id: &str,
) -> Result<Parsed, String> {
    let encoding = config
        .encoding
        .as_deref()
        .and_then(|l| encoding_rs::Encoding::for_label(l.as_bytes()))
        .unwrap_or(encoding_rs::UTF_8);
    let (text, _, had_errors) = encoding.decode(bytes);
    let delimiter = config
        .delimiter
        .as_deref()
        .and_then(|d| d.bytes().next())
        .unwrap_or(b',');
    let quote = config
        .quote
        .as_deref()
        .and_then(|d| d.bytes().next())
        .unwrap_or(b'"');
    let has_header = config.has_header.unwrap_or(true);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quote(quote)
        .has_headers(has_header)
        .flexible(true)
        .from_reader(text.as_bytes());

    let mut parsed = Parsed::default();
    let reject = |line: u64, field: Option<&str>, reason: String, raw: String| Reject {
        source: source.to_string(),
        entry_id: entry_id.to_string(),
        location: format!("line {line}"),
        field: field.map(str::to_string),
        reason,
        raw,
    };
    let mut header: Vec<String> = if has_header {
        reader
            .headers()
            .map_err(|e| format!("cannot read the header row: {e}"))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect()
    } else {
        Vec::new()
    };
    let mut rows: Vec<(u64, Vec<String>)> = Vec::new();
    for result in reader.records() {
        match result {
            Ok(record) => {
                let line = record.position().map(|p| p.line()).unwrap_or(0);
                let raw = record
                    .iter()
                    .collect::<Vec<_>>()
                    .join(&(delimiter as char).to_string());
                if header.is_empty() {
                    header = (1..=record.len()).map(|i| format!("column_{i}")).collect();
                }
                if had_errors && raw.contains('\u{FFFD}') {
                    parsed.rejects.push(reject(
                        line,
                        None,
                        format!("bytes not valid in encoding {}", encoding.name()),
                        raw,
                    ));
                } else if record.len() != header.len() {
                    parsed.rejects.push(reject(
                        line,
                        None,
                        format!("expected {} fields, found {}", header.len(), record.len()),
                        raw,
                    ));
                } else {
                    rows.push((line, record.iter().map(str::to_string).collect()));
                }
            }
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                parsed.rejects.push(reject(
                    line,
                    None,
                    format!("unreadable row: {e}"),
                    String::new(),
                ));
            }
        }
    }
    for declared in config.columns.keys() {
        if !header.contains(declared) {
            return Err(format!(
                "declared column `{declared}` is not in the file's header ({})",
                header.join(", ")
            ));
        }
    }
    let types: Vec<ColumnType> = header
        .iter()
        .enumerate()
        .map(|(i, name)| {
            config
                .columns
                .get(name)
                .copied()
                .unwrap_or_else(|| infer(rows.iter().map(|(_, r)| r[i].as_str())))
        })
        .collect();

    'rows: for (line, row) in rows {
        let mut object = Map::with_capacity(header.len());
        for ((name, ty), cell) in header.iter().zip(&types).zip(&row) {
            match cast(cell, *ty) {
                Ok(v) => {
                    object.insert(name.clone(), v);
                }
                Err(reason) => {
                    let raw = row.join(&(delimiter as char).to_string());
                    parsed.rejects.push(reject(line, Some(name), reason, raw));
                    continue 'rows;
                }
            }
        }
        parsed.records.push(Value::Object(object));
    }
    // Rejects in file order, whichever check caught them.
    parsed.rejects.sort_by_key(|r| {
        r.location
            .trim_start_matches("line ")
            .parse::<u64>()
            .unwrap_or(0)
    });
    Ok(parsed)
}

fn infer<'a>(cells: impl Iterator<Item = &'a str> + Clone) -> ColumnType {
    let non_empty = || cells.clone().map(str::trim).filter(|c| !c.is_empty());
    if non_empty().next().is_none() {
        return ColumnType::String;
    }
    for ty in [ColumnType::Int, ColumnType::Float, ColumnType::Bool] {
        if non_empty().all(|c| cast(c, ty).is_ok()) {
            return ty;
        }
    }
    ColumnType::String
}

fn cast(cell: &str, ty: ColumnType) -> Result<Value, String> {
    let trimmed = cell.trim();
    if trimmed.is_empty() && ty != ColumnType::String {
        return Ok(Value::Null);
    }
    match ty {
        ColumnType::String => Ok(Value::String(cell.to_string())),
        ColumnType::Int => trimmed
            .parse::<i64>()
            .map(|i| Value::Number(i.into()))
            .map_err(|_| format!("expected an integer, found {trimmed:?}")),
        ColumnType::Float => trimmed
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("expected a number, found {trimmed:?}")),
        ColumnType::Bool => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" | "t" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "n" | "f" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, found {trimmed:?}")),
        },
    }
}

/// File metadata kept with a landed file.
pub fn file_headers(path: &std::path::Path) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    if let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified())
        && let Ok(ts) = jiff::Timestamp::try_from(modified)
    {
        headers.insert("last-modified".to_string(), ts.to_string());
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(columns: &[(&str, ColumnType)]) -> CsvSourceConfig {
        CsvSourceConfig {
            kind: "csv".into(),
            path: "*.csv".into(),
            schedule: None,
            every: None,
            start_date: None,
            catchup: None,
            max_active: None,
            delimiter: None,
            quote: None,
            encoding: None,
            has_header: None,
            columns: columns.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn infers_types_and_quarantines_bad_rows() {
        let text = b"id,name,score\n1,a,1.5\n2,b,x\n3,c\n4,\"d,e\",2\n";
        let parsed = parse(text, &config(&[("score", ColumnType::Float)]), "s", "e1").unwrap();
        assert_eq!(parsed.records.len(), 2);
        assert_eq!(parsed.records[0]["id"], 1);
        assert_eq!(parsed.records[1]["name"], "d,e");
        assert_eq!(parsed.rejects.len(), 2);
        assert_eq!(parsed.rejects[0].location, "line 3");
        assert_eq!(parsed.rejects[0].field.as_deref(), Some("score"));
        assert_eq!(parsed.rejects[0].reason, "expected a number, found \"x\"");
        assert_eq!(parsed.rejects[1].reason, "expected 3 fields, found 2");
    }

    #[test]
    fn decodes_latin1_and_semicolons() {
        let mut c = config(&[]);
        c.encoding = Some("latin1".into());
        c.delimiter = Some(";".into());
        let bytes = b"ville;n\nS\xe8te;3\n";
        let parsed = parse(bytes, &c, "s", "e").unwrap();
        assert_eq!(parsed.records[0]["ville"], "S\u{e8}te");
        assert_eq!(parsed.records[0]["n"], 3);
    }

    #[test]
    fn missing_declared_column_is_a_file_error() {
        let err = parse(b"a,b\n1,2\n", &config(&[("c", ColumnType::Int)]), "s", "e").unwrap_err();
        assert!(err.contains("declared column `c`"), "{err}");
    }
}
