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

/// Parses one landed file whole. An error is a problem with the whole file (a declared column
/// missing from the header); row problems are rejects, in file order.
pub fn parse(
    bytes: &[u8],
    config: &CsvSourceConfig,
    source: &str,
    entry_id: &str,
) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    parse_chunks(
        bytes,
        config,
        source,
        entry_id,
        usize::MAX,
        &mut |records, rejects| {
            parsed.records.extend(records);
            parsed.rejects.extend(rejects);
        },
    )?;
    in_file_order(&mut parsed.rejects);
    Ok(parsed)
}

/// Sorts the rejects of one file by line, whichever pass caught them.
pub fn in_file_order(rejects: &mut [Reject]) {
    rejects.sort_by_key(|r| {
        r.location
            .trim_start_matches("line ")
            .parse::<u64>()
            .unwrap_or(0)
    });
}

/// What the first pass over a file learns: its header and the type of each column.
struct Layout {
    header: Vec<String>,
    types: Vec<ColumnType>,
}

/// Parses one landed file in chunks of at most `max` records, handed to `each` with the rejects
/// found since the previous chunk; memory stays bounded by a chunk, not the file. When a column
/// is not declared, a first pass infers its type from every row of the right width; the pass
/// that builds the records casts. An error is a problem with the whole file.
pub fn parse_chunks(
    bytes: &[u8],
    config: &CsvSourceConfig,
    source: &str,
    entry_id: &str,
    max: usize,
    each: &mut dyn FnMut(Vec<Value>, Vec<Reject>),
) -> Result<(), String> {
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
    let reader = || {
        csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .quote(quote)
            .has_headers(has_header)
            .flexible(true)
            .from_reader(text.as_bytes())
    };
    let reject = |line: u64, field: Option<&str>, reason: String, raw: String| Reject {
        source: source.to_string(),
        entry_id: entry_id.to_string(),
        location: format!("line {line}"),
        field: field.map(str::to_string),
        reason,
        raw,
    };
    let joined = |record: &csv::StringRecord| {
        record
            .iter()
            .collect::<Vec<_>>()
            .join(&(delimiter as char).to_string())
    };
    // Whether a row is one to cast: the same answer in both passes.
    let fits = |record: &csv::StringRecord, width: usize| -> Result<(), String> {
        if had_errors && record.iter().any(|c| c.contains('\u{FFFD}')) {
            Err(format!("bytes not valid in encoding {}", encoding.name()))
        } else if record.len() != width {
            Err(format!("expected {width} fields, found {}", record.len()))
        } else {
            Ok(())
        }
    };

    // The header, then pass 1 when a column's type must be inferred: widths and inference.
    let mut first = reader();
    let mut header: Vec<String> = if has_header {
        first
            .headers()
            .map_err(|e| format!("cannot read the header row: {e}"))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect()
    } else {
        Vec::new()
    };
    let infers = !has_header || header.iter().any(|h| !config.columns.contains_key(h));
    let mut rejects = Vec::new();
    let mut inference: Vec<Inference> = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        if !infers {
            break;
        }
        match first.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map(|p| p.line()).unwrap_or(0);
                if header.is_empty() {
                    header = (1..=record.len()).map(|i| format!("column_{i}")).collect();
                }
                if inference.is_empty() {
                    inference = header
                        .iter()
                        .map(|name| Inference::new(config.columns.contains_key(name)))
                        .collect();
                }
                match fits(&record, header.len()) {
                    Ok(()) => {
                        for (cell, inferred) in record.iter().zip(&mut inference) {
                            inferred.see(cell);
                        }
                    }
                    Err(reason) => rejects.push(reject(line, None, reason, joined(&record))),
                }
            }
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                rejects.push(reject(
                    line,
                    None,
                    format!("unreadable row: {e}"),
                    String::new(),
                ));
                if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    break;
                }
            }
        }
    }
    drop(first);
    for declared in config.columns.keys() {
        if !header.contains(declared) {
            return Err(format!(
                "declared column `{declared}` is not in the file's header ({})",
                header.join(", ")
            ));
        }
    }
    let layout = Layout {
        types: header
            .iter()
            .enumerate()
            .map(|(i, name)| match config.columns.get(name) {
                Some(t) => *t,
                None => inference.get(i).map_or(ColumnType::String, Inference::kind),
            })
            .collect(),
        header,
    };

    // Pass 2: cast the rows that fit, chunk by chunk (and reject the others, unless pass 1
    // did).
    let mut second = reader();
    if has_header {
        second
            .headers()
            .map_err(|e| format!("cannot read the header row: {e}"))?;
    }
    let mut chunk = Vec::new();
    loop {
        match second.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                if !infers {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    rejects.push(reject(
                        line,
                        None,
                        format!("unreadable row: {e}"),
                        String::new(),
                    ));
                }
                if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    continue;
                }
                break;
            }
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if let Err(reason) = fits(&record, layout.header.len()) {
            if !infers {
                rejects.push(reject(line, None, reason, joined(&record)));
            }
            continue;
        }
        match cast_row(&record, &layout) {
            Ok(object) => chunk.push(Value::Object(object)),
            Err((name, reason)) => {
                rejects.push(reject(line, Some(name), reason, joined(&record)));
            }
        }
        if chunk.len() >= max {
            each(std::mem::take(&mut chunk), std::mem::take(&mut rejects));
        }
    }
    if !chunk.is_empty() || !rejects.is_empty() {
        each(chunk, rejects);
    }
    Ok(())
}

fn cast_row<'a>(
    record: &csv::StringRecord,
    layout: &'a Layout,
) -> Result<Map<String, Value>, (&'a str, String)> {
    let mut object = Map::with_capacity(layout.header.len());
    for ((name, ty), cell) in layout.header.iter().zip(&layout.types).zip(record) {
        let v = cast(cell, *ty).map_err(|reason| (name.as_str(), reason))?;
        object.insert(name.clone(), v);
    }
    Ok(object)
}

/// The type an undeclared column can take, learned cell by cell: the narrowest of integer,
/// number and boolean that every non-empty cell casts to, else string.
struct Inference {
    declared: bool,
    seen: bool,
    int: bool,
    float: bool,
    bool: bool,
}

impl Inference {
    fn new(declared: bool) -> Self {
        Self {
            declared,
            seen: false,
            int: true,
            float: true,
            bool: true,
        }
    }

    fn see(&mut self, cell: &str) {
        if self.declared {
            return;
        }
        let c = cell.trim();
        if c.is_empty() {
            return;
        }
        self.seen = true;
        self.int = self.int && cast(c, ColumnType::Int).is_ok();
        self.float = self.float && cast(c, ColumnType::Float).is_ok();
        self.bool = self.bool && cast(c, ColumnType::Bool).is_ok();
    }

    fn kind(&self) -> ColumnType {
        match self {
            Self { seen: false, .. } => ColumnType::String,
            Self { int: true, .. } => ColumnType::Int,
            Self { float: true, .. } => ColumnType::Float,
            Self { bool: true, .. } => ColumnType::Bool,
            _ => ColumnType::String,
        }
    }
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
