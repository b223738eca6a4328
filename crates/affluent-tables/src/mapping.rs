//! From JSON records to typed Arrow rows: declared columns by path (`_embedded.venues[0].city.name`)
//! or every field inferred (nested objects flattened as `parent__child`), `explode` of nested
//! arrays, casts with clear reasons. A record whose value does not cast is not a row: it is a
//! [`Reject`] with its field and reason, for the quarantine.

use std::collections::BTreeMap;
use std::sync::Arc;

use affluent_config::schema::{ColumnSpec, Meta, TableConfig, TableType};
use affluent_core::JsonPath;
use affluent_landing::Reject;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde_json::Value;

/// The lineage column every table carries: the landing entry a row came from.
pub const ENTRY_COLUMN: &str = "_affluent_entry";

/// A typed cell.
#[derive(Debug, Clone, Default, PartialEq, PartialOrd)]
pub enum Cell {
    /// Missing or null.
    #[default]
    Null,
    /// Text (also JSON text).
    Str(String),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
}

impl Cell {
    /// Text of a key cell (for deduplication and messages).
    pub fn key_text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Str(s) => s.clone(),
            Cell::Int(i) | Cell::Timestamp(i) => i.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::Date(d) => d.to_string(),
        }
    }
}

/// The Arrow type of a table type.
pub fn arrow_type(kind: TableType) -> DataType {
    match kind {
        TableType::String | TableType::Json => DataType::Utf8,
        TableType::Int => DataType::Int64,
        TableType::Float => DataType::Float64,
        TableType::Bool => DataType::Boolean,
        TableType::Date => DataType::Date32,
        TableType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// The table type that an existing Arrow column is written as.
pub fn table_type_of(data_type: &DataType) -> Option<TableType> {
    Some(match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => TableType::String,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => TableType::Int,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => TableType::Float,
        DataType::Boolean => TableType::Bool,
        DataType::Date32 | DataType::Date64 => TableType::Date,
        DataType::Timestamp(_, _) => TableType::Timestamp,
        _ => return None,
    })
}

/// A record before casting: its entry's index in the batch, its location, its named values.
type RawRow = (usize, String, Vec<(String, Value)>);

#[derive(Debug, Clone)]
struct Declared {
    name: String,
    path: JsonPath,
    from_root: bool,
    /// `@interval_start` and the like: a value of the response, not of the record.
    meta: Option<Meta>,
    kind: Option<TableType>,
    formats: Vec<String>,
}

/// What a landing entry tells of its records: the values `@` paths read.
#[derive(Debug, Clone, Default)]
pub struct EntryContext {
    /// The run's data interval, if it had one.
    pub interval: Option<affluent_core::Interval>,
    /// When the response was received.
    pub fetched_at: Option<Timestamp>,
}

/// Maps a source's records to a table's rows.
#[derive(Debug, Clone)]
pub struct Mapper {
    declared: Vec<Declared>,
    explode: Option<JsonPath>,
    primary_key: Vec<String>,
    tz: TimeZone,
}

/// Rows of one batch: columns (name, type) and typed cells, plus the landing entry of each row.
#[derive(Debug, Default)]
pub struct Rows {
    /// Column names and types, in table order (the lineage column excluded).
    pub columns: Vec<(String, TableType)>,
    /// One `Vec<Cell>` per row, aligned with `columns`.
    pub cells: Vec<Vec<Cell>>,
    /// The landing entry of each row.
    pub entries: Vec<String>,
    /// Per column: whether its type was inferred from no value (every value null), so that a
    /// later batch's values decide it ([`crate::parts::unify`]).
    pub unknown: Vec<bool>,
}

impl Mapper {
    /// The mapper of a table; `tz` reads text timestamps that carry no offset.
    pub fn new(config: &TableConfig, tz: TimeZone) -> Result<Self, String> {
        let mut declared = Vec::new();
        for (name, spec) in &config.columns {
            let raw = spec.path();
            let meta = Meta::parse(raw)
                .transpose()
                .map_err(|e| format!("column `{name}`: {e}"))?;
            let (from_root, text) = match raw.strip_prefix("$.") {
                Some(rest) => (true, rest),
                None if meta.is_some() => (false, ""),
                None => (false, raw),
            };
            let path = JsonPath::parse(text)
                .map_err(|e| format!("invalid path {raw:?} of column `{name}`: {e}"))?;
            let (kind, formats) = match spec {
                ColumnSpec::Path(_) => (None, Vec::new()),
                ColumnSpec::Typed(t) => (
                    t.kind,
                    t.format.as_ref().map(|f| f.to_vec()).unwrap_or_default(),
                ),
            };
            declared.push(Declared {
                name: name.clone(),
                path,
                from_root,
                meta,
                kind,
                formats,
            });
        }
        let explode = config
            .explode
            .as_deref()
            .map(JsonPath::parse)
            .transpose()
            .map_err(|e| format!("invalid `explode` path: {e}"))?;
        Ok(Self {
            declared,
            explode,
            primary_key: config.primary_key.clone(),
            tz,
        })
    }

    /// Maps the records of several landing entries. `existing` is the table's current schema
    /// (its column types win over inference); `first` is the number of the entries' records
    /// before these (a chunk of a larger entry), so that a reject says `record N` of the entry;
    /// `context` gives the values of `@` paths. Returns the rows and the rejects.
    pub fn map(
        &self,
        source: &str,
        table: &str,
        batches: &[(String, Vec<Value>)],
        existing: Option<&Schema>,
        first: usize,
        context: &EntryContext,
    ) -> (Rows, Vec<Reject>) {
        // 1. Each record (or exploded element) as named raw values.
        let mut raw_rows: Vec<RawRow> = Vec::new();
        let mut rejects = Vec::new();
        for (entry_index, (entry_id, records)) in batches.iter().enumerate() {
            for (i, record) in records.iter().enumerate() {
                let location = format!("record {}", first + i + 1);
                match self.explode_record(record) {
                    Ok(elements) => {
                        for (j, (key, element)) in elements.iter().enumerate() {
                            let loc = match (key, &self.explode) {
                                (Some(key), _) => format!("{location}, member {key:?}"),
                                (None, Some(_)) => format!("{location}, element {}", j + 1),
                                (None, None) => location.clone(),
                            };
                            let fields = self.fields(record, element, key.as_deref(), context);
                            raw_rows.push((entry_index, loc, fields));
                        }
                    }
                    Err(reason) => rejects.push(Reject {
                        source: source.to_string(),
                        entry_id: entry_id.clone(),
                        location,
                        field: self.explode.as_ref().map(|p| p.as_str().to_string()),
                        reason: format!("table `{table}`: {reason}"),
                        raw: record.to_string(),
                    }),
                }
            }
        }

        // 2. Columns: the table's own first, then declared, then new inferred fields.
        let mut columns: Vec<(String, TableType)> = Vec::new();
        let mut unknown: Vec<bool> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut add =
            |name: &str, kind: Option<TableType>, columns: &mut Vec<(String, TableType)>| {
                if !index.contains_key(name) {
                    index.insert(name.to_string(), columns.len());
                    columns.push((name.to_string(), kind.unwrap_or(TableType::String)));
                    unknown.push(kind.is_none());
                }
            };
        if let Some(schema) = existing {
            for field in schema.fields() {
                if field.name() == ENTRY_COLUMN {
                    continue;
                }
                let kind = table_type_of(field.data_type()).unwrap_or(TableType::Json);
                add(field.name(), Some(kind), &mut columns);
            }
        }
        let mut pending: Vec<String> = Vec::new();
        if self.declared.is_empty() {
            for (_, _, fields) in &raw_rows {
                for (name, _) in fields {
                    if !pending.contains(name) {
                        pending.push(name.clone());
                    }
                }
            }
        } else {
            pending.extend(self.declared.iter().map(|d| d.name.clone()));
        }
        for name in pending {
            let declared = self
                .declared
                .iter()
                .find(|d| d.name == name)
                .and_then(|d| d.kind);
            let kind = declared.or_else(|| {
                infer(raw_rows.iter().filter_map(|(_, _, fields)| {
                    fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
                }))
            });
            add(&name, kind, &mut columns);
        }

        // 3. Cast each row; a row with a value that does not fit is rejected whole.
        let mut rows = Rows {
            columns: columns.clone(),
            unknown,
            ..Rows::default()
        };
        'rows: for (entry_index, location, fields) in raw_rows {
            let mut cells = vec![Cell::Null; columns.len()];
            for (name, value) in &fields {
                let Some(&col) = index.get(name) else {
                    continue;
                };
                let kind = columns[col].1;
                let formats = self
                    .declared
                    .iter()
                    .find(|d| &d.name == name)
                    .map(|d| d.formats.as_slice())
                    .unwrap_or(&[]);
                match cast(value, kind, formats, &self.tz) {
                    Ok(cell) => cells[col] = cell,
                    Err(reason) => {
                        let entry_id = batches[entry_index].0.clone();
                        rejects.push(Reject {
                            source: source.to_string(),
                            entry_id,
                            location,
                            field: Some(name.clone()),
                            reason: format!("table `{table}`: {reason}"),
                            raw: Value::Object(fields.into_iter().collect()).to_string(),
                        });
                        continue 'rows;
                    }
                }
            }
            for key in &self.primary_key {
                if index.get(key).is_none_or(|&c| cells[c] == Cell::Null) {
                    rejects.push(Reject {
                        source: source.to_string(),
                        entry_id: batches[entry_index].0.clone(),
                        location,
                        field: Some(key.clone()),
                        reason: format!(
                            "table `{table}`: primary key column `{key}` is missing or null"
                        ),
                        raw: Value::Object(fields.into_iter().collect()).to_string(),
                    });
                    continue 'rows;
                }
            }
            rows.cells.push(cells);
            rows.entries.push(batches[entry_index].0.clone());
        }
        (rows, rejects)
    }

    /// The elements of a record, each with its member name when `explode` reaches an object of
    /// objects.
    fn explode_record(&self, record: &Value) -> Result<Vec<(Option<String>, Value)>, String> {
        let Some(path) = &self.explode else {
            return Ok(vec![(None, record.clone())]);
        };
        match path.get(record) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items.iter().map(|v| (None, v.clone())).collect()),
            Some(Value::Object(members)) if members.values().any(Value::is_object) => {
                // An object of objects (infoclimat's `"2024-10-09 15:00:00": {..}`): one row
                // per member whose value is an object, its name as `@key`; the scalar members
                // beside them (`request_state`, `model_run`) describe the response.
                Ok(members
                    .iter()
                    .filter(|(_, v)| v.is_object())
                    .map(|(k, v)| (Some(k.clone()), v.clone()))
                    .collect())
            }
            Some(Value::Object(columns)) => {
                // Parallel arrays: { time: [..], temperature: [..] } -> one row per index.
                let mut len = None;
                for (name, v) in columns {
                    let Value::Array(a) = v else {
                        return Err(format!(
                            "`{}` is an object whose field `{name}` is not an array: cannot explode it",
                            path.as_str()
                        ));
                    };
                    match len {
                        None => len = Some(a.len()),
                        Some(n) if n != a.len() => {
                            return Err(format!(
                                "arrays under `{}` have different lengths ({n} and {} for `{name}`)",
                                path.as_str(),
                                a.len()
                            ));
                        }
                        _ => {}
                    }
                }
                Ok((0..len.unwrap_or(0))
                    .map(|i| {
                        let row = columns
                            .iter()
                            .map(|(k, v)| (k.clone(), v[i].clone()))
                            .collect();
                        (None, Value::Object(row))
                    })
                    .collect())
            }
            Some(other) => Err(format!(
                "`{}` is {}, not an array, an object of arrays or an object of objects",
                path.as_str(),
                kind_of(other)
            )),
        }
    }

    fn fields(
        &self,
        record: &Value,
        element: &Value,
        key: Option<&str>,
        context: &EntryContext,
    ) -> Vec<(String, Value)> {
        if self.declared.is_empty() {
            let mut out = Vec::new();
            if let Some(key) = key {
                out.push(("key".to_string(), Value::String(key.to_string())));
            }
            flatten("", element, &mut out);
            return out;
        }
        let text = |t: Option<Timestamp>| t.map_or(Value::Null, |t| Value::String(t.to_string()));
        self.declared
            .iter()
            .map(|d| {
                let v = match d.meta {
                    Some(Meta::IntervalStart) => text(context.interval.map(|i| i.start)),
                    Some(Meta::IntervalEnd) => text(context.interval.map(|i| i.end)),
                    Some(Meta::FetchedAt) => text(context.fetched_at),
                    Some(Meta::Key) => key.map_or(Value::Null, |k| Value::String(k.to_string())),
                    None => {
                        let base = if d.from_root { record } else { element };
                        d.path.get(base).cloned().unwrap_or(Value::Null)
                    }
                };
                (d.name.clone(), v)
            })
            .collect()
    }
}

/// Nested objects become `parent__child` columns; arrays stay whole (JSON text).
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let name = column_name(k);
                let full = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}__{name}")
                };
                match v {
                    Value::Object(inner) if !inner.is_empty() => flatten(&full, v, out),
                    _ => out.push((full, v.clone())),
                }
            }
        }
        other => out.push((
            if prefix.is_empty() {
                "value".to_string()
            } else {
                prefix.to_string()
            },
            other.clone(),
        )),
    }
}

/// A field name as a SQL-friendly column name: `utcDate` -> `utc_date`, `@id` -> `id`.
pub fn column_name(field: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in field.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        } else {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = false;
        }
    }
    let out = out.trim_end_matches('_').to_string();
    match out.chars().next() {
        None => "field".to_string(),
        Some(c) if c.is_ascii_digit() => format!("_{out}"),
        _ => out,
    }
}

/// The narrowest type holding every value: bool, int, float, else string; nested values are
/// JSON. `None` when every value is null.
fn infer<'a>(values: impl Iterator<Item = &'a Value>) -> Option<TableType> {
    let mut kind: Option<TableType> = None;
    for v in values {
        let this = match v {
            Value::Null => continue,
            Value::Bool(_) => TableType::Bool,
            Value::Number(n) if n.is_i64() => TableType::Int,
            Value::Number(_) => TableType::Float,
            Value::String(_) => TableType::String,
            Value::Array(_) | Value::Object(_) => TableType::Json,
        };
        kind = Some(match (kind, this) {
            (None, t) => t,
            (Some(a), b) if a == b => a,
            (Some(TableType::Int), TableType::Float) | (Some(TableType::Float), TableType::Int) => {
                TableType::Float
            }
            (Some(TableType::Json), _) | (_, TableType::Json) => TableType::Json,
            _ => TableType::String,
        });
    }
    kind
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn shown(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 60 {
        format!("{}…", &text[..text.floor_char_boundary(60)])
    } else {
        text
    }
}

/// Casts a JSON value to a column type, or says why it cannot.
pub fn cast(v: &Value, kind: TableType, formats: &[String], tz: &TimeZone) -> Result<Cell, String> {
    if v.is_null() {
        return Ok(Cell::Null);
    }
    let fail = |what: &str| Err(format!("{} is not {what}", shown(v)));
    match kind {
        TableType::String => Ok(Cell::Str(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })),
        TableType::Json => Ok(Cell::Str(v.to_string())),
        TableType::Int => match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(Cell::Int(i)),
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Cell::Int(f as i64)),
                    _ => fail("an integer"),
                },
            },
            Value::String(s) => s
                .trim()
                .parse()
                .map(Cell::Int)
                .or_else(|_| fail("an integer")),
            _ => fail("an integer"),
        },
        TableType::Float => match v {
            Value::Number(n) => n
                .as_f64()
                .map(Cell::Float)
                .map_or_else(|| fail("a number"), Ok),
            Value::String(s) => s
                .trim()
                .parse()
                .map(Cell::Float)
                .or_else(|_| fail("a number")),
            _ => fail("a number"),
        },
        TableType::Bool => match v {
            Value::Bool(b) => Ok(Cell::Bool(*b)),
            Value::Number(n) if n.as_i64() == Some(1) => Ok(Cell::Bool(true)),
            Value::Number(n) if n.as_i64() == Some(0) => Ok(Cell::Bool(false)),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Cell::Bool(true)),
                "false" | "0" | "no" => Ok(Cell::Bool(false)),
                _ => fail("a boolean"),
            },
            _ => fail("a boolean"),
        },
        TableType::Date => {
            let Value::String(s) = v else {
                return fail("a date");
            };
            // An instant (`@interval_end`, `2024-05-01T06:00:00Z`, `...+02:00`) is its date in
            // the source's time zone; else a date.
            let instant = formats
                .is_empty()
                .then(|| s.trim().parse::<Timestamp>().ok())
                .flatten()
                .map(|t| t.to_zoned(tz.clone()).date());
            instant
                .or_else(|| parse_date(s.trim(), formats))
                .map(|d| Cell::Date(days_since_epoch(d)))
                .ok_or_else(|| date_reason(v, "a date (YYYY-MM-DD)", formats))
        }
        TableType::Timestamp => match v {
            Value::Number(n) => {
                let Some(secs) = n.as_i64() else {
                    return fail("a timestamp");
                };
                // Unix seconds, or milliseconds when the number is too large to be seconds.
                let micros = if secs.abs() > 100_000_000_000 {
                    secs.saturating_mul(1_000)
                } else {
                    secs.saturating_mul(1_000_000)
                };
                Ok(Cell::Timestamp(micros))
            }
            Value::String(s) => parse_timestamp(s.trim(), formats, tz)
                .map(|t| Cell::Timestamp(t.as_microsecond()))
                .ok_or_else(|| date_reason(v, "a timestamp (ISO 8601)", formats)),
            _ => fail("a timestamp"),
        },
    }
}

fn date_reason(v: &Value, what: &str, formats: &[String]) -> String {
    if formats.is_empty() {
        format!("{} is not {what}", shown(v))
    } else {
        format!(
            "{} matches none of the formats {}",
            shown(v),
            formats
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn days_since_epoch(d: Date) -> i32 {
    let epoch = Date::constant(1970, 1, 1);
    (d - epoch).get_days()
}

fn parse_date(s: &str, formats: &[String]) -> Option<Date> {
    if formats.is_empty() {
        return s.parse::<Date>().ok();
    }
    formats.iter().find_map(|f| Date::strptime(f, s).ok())
}

fn parse_timestamp(s: &str, formats: &[String], tz: &TimeZone) -> Option<Timestamp> {
    if formats.is_empty() {
        if let Ok(t) = s.parse::<Timestamp>() {
            return Some(t);
        }
        if let Ok(z) = s.parse::<Zoned>() {
            return Some(z.timestamp());
        }
        let civil = s
            .parse::<DateTime>()
            .ok()
            .or_else(|| DateTime::strptime("%Y-%m-%d %H:%M", s).ok())
            .or_else(|| {
                s.parse::<Date>()
                    .ok()
                    .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
            })?;
        return tz.to_timestamp(civil).ok();
    }
    formats.iter().find_map(|f| {
        let tm = jiff::fmt::strtime::BrokenDownTime::parse(f, s).ok()?;
        if tm.offset().is_some() {
            return tm.to_timestamp().ok();
        }
        let date = tm.to_date().ok()?;
        let time = jiff::civil::Time::new(
            tm.hour().unwrap_or(0),
            tm.minute().unwrap_or(0),
            tm.second().unwrap_or(0),
            0,
        )
        .ok()?;
        tz.to_timestamp(date.to_datetime(time)).ok()
    })
}

/// The Arrow schema of rows (lineage column last).
pub fn schema_of(columns: &[(String, TableType)]) -> SchemaRef {
    let mut fields: Vec<Field> = columns
        .iter()
        .map(|(name, kind)| Field::new(name, arrow_type(*kind), true))
        .collect();
    fields.push(Field::new(ENTRY_COLUMN, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

impl Rows {
    /// The rows as one record batch.
    pub fn to_batch(&self) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
        let schema = schema_of(&self.columns);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len() + 1);
        for (c, (_, kind)) in self.columns.iter().enumerate() {
            let cells = self.cells.iter().map(|r| &r[c]);
            arrays.push(match kind {
                TableType::String | TableType::Json => {
                    let mut b = StringBuilder::new();
                    for cell in cells {
                        match cell {
                            Cell::Str(s) => b.append_value(s),
                            _ => b.append_null(),
                        }
                    }
                    Arc::new(b.finish())
                }
                TableType::Int => {
                    let mut b = Int64Builder::new();
                    for cell in cells {
                        b.append_option(match cell {
                            Cell::Int(i) => Some(*i),
                            _ => None,
                        });
                    }
                    Arc::new(b.finish())
                }
                TableType::Float => {
                    let mut b = Float64Builder::new();
                    for cell in cells {
                        b.append_option(match cell {
                            Cell::Float(f) => Some(*f),
                            _ => None,
                        });
                    }
                    Arc::new(b.finish())
                }
                TableType::Bool => {
                    let mut b = BooleanBuilder::new();
                    for cell in cells {
                        b.append_option(match cell {
                            Cell::Bool(v) => Some(*v),
                            _ => None,
                        });
                    }
                    Arc::new(b.finish())
                }
                TableType::Date => {
                    let mut b = Date32Builder::new();
                    for cell in cells {
                        b.append_option(match cell {
                            Cell::Date(d) => Some(*d),
                            _ => None,
                        });
                    }
                    Arc::new(b.finish())
                }
                TableType::Timestamp => {
                    let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
                    for cell in cells {
                        b.append_option(match cell {
                            Cell::Timestamp(t) => Some(*t),
                            _ => None,
                        });
                    }
                    Arc::new(b.finish())
                }
            });
        }
        let mut b = StringBuilder::new();
        for e in &self.entries {
            b.append_value(e);
        }
        arrays.push(Arc::new(b.finish()));
        RecordBatch::try_new(schema, arrays)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn column_names_are_sql_friendly() {
        assert_eq!(column_name("utcDate"), "utc_date");
        assert_eq!(column_name("countryiso3code"), "countryiso3code");
        assert_eq!(column_name("temperature_2m"), "temperature_2m");
        assert_eq!(column_name("@id"), "id");
        assert_eq!(column_name("2024"), "_2024");
        assert_eq!(column_name("num bikes"), "num_bikes");
    }

    #[test]
    fn casts_say_why_they_fail() {
        let tz = TimeZone::get("Europe/Paris").unwrap();
        assert_eq!(
            cast(&json!("2020"), TableType::Int, &[], &tz),
            Ok(Cell::Int(2020))
        );
        assert_eq!(
            cast(&json!(3.0), TableType::Int, &[], &tz),
            Ok(Cell::Int(3))
        );
        assert_eq!(
            cast(&json!("abc"), TableType::Int, &[], &tz),
            Err("\"abc\" is not an integer".to_string())
        );
        assert_eq!(
            cast(&json!("1970-01-02"), TableType::Date, &[], &tz),
            Ok(Cell::Date(1))
        );
        // An instant as a date: its date in the source's zone (23:30 UTC is the next day in
        // Paris).
        assert_eq!(
            cast(&json!("1970-01-01T23:30:00Z"), TableType::Date, &[], &tz),
            Ok(Cell::Date(1))
        );
        assert_eq!(
            cast(&json!("1970-01-02T06:00:00Z"), TableType::Date, &[], &tz),
            Ok(Cell::Date(1))
        );
        assert_eq!(
            cast(
                &json!("1970-01-01T23:30:00+00:00"),
                TableType::Date,
                &[],
                &tz
            ),
            Ok(Cell::Date(1))
        );
        // Civil time in the source's zone: Paris is UTC+1 in January.
        assert_eq!(
            cast(&json!("1970-01-01T01:00"), TableType::Timestamp, &[], &tz),
            Ok(Cell::Timestamp(0))
        );
        assert_eq!(
            cast(
                &json!("1970-01-01T00:00:00Z"),
                TableType::Timestamp,
                &[],
                &tz
            ),
            Ok(Cell::Timestamp(0))
        );
        let formats = vec!["%Y-%m-%d_%H".to_string(), "%Y-%m-%d %H:%M".to_string()];
        assert_eq!(
            cast(&json!("1970-01-01_02"), TableType::Timestamp, &formats, &tz),
            Ok(Cell::Timestamp(3_600_000_000))
        );
        assert_eq!(
            cast(
                &json!("1970-01-01 02:00"),
                TableType::Timestamp,
                &formats,
                &tz
            ),
            Ok(Cell::Timestamp(3_600_000_000))
        );
        assert!(
            cast(&json!("soon"), TableType::Timestamp, &formats, &tz)
                .unwrap_err()
                .contains("matches none of the formats")
        );
    }

    #[test]
    fn inference_widens() {
        let vals = [json!(1), json!(2.5)];
        assert_eq!(infer(vals.iter()), Some(TableType::Float));
        let vals = [json!(1), json!("x")];
        assert_eq!(infer(vals.iter()), Some(TableType::String));
        let vals = [json!(null), json!(true)];
        assert_eq!(infer(vals.iter()), Some(TableType::Bool));
        assert_eq!(infer([json!(null)].iter()), None);
    }

    fn table(toml_text: &str) -> TableConfig {
        toml::from_str(toml_text).expect("table config")
    }

    #[test]
    fn response_values_and_objects_of_objects_become_columns() {
        // infoclimat's shape: metadata beside one object per 3-hour step, keyed by its time.
        let config = table(
            r#"
            source = "infoclimat"
            explode = "$"
            [columns]
            time = { path = "@key", type = "timestamp", format = "%Y-%m-%d %H:%M:%S" }
            kelvin = { path = 'temperature["2m"]', type = "float" }
            run = "$.model_run"
            observed = { path = "@interval_end", type = "timestamp" }
            fetched = { path = "@fetched_at", type = "timestamp" }
            "#,
        );
        let mapper = Mapper::new(&config, TimeZone::UTC).expect("mapper");
        let body = json!({
            "request_state": 200,
            "model_run": "12",
            "2024-10-09 14:00:00": { "temperature": { "2m": 289.5 } },
            "2024-10-09 17:00:00": { "temperature": { "2m": 287.0 } },
        });
        let interval = affluent_core::Interval::new(
            "2024-10-09T12:00:00Z".parse().unwrap(),
            "2024-10-09T15:00:00Z".parse().unwrap(),
        )
        .unwrap();
        let context = EntryContext {
            interval: Some(interval),
            fetched_at: Some("2024-10-09T15:00:02Z".parse().unwrap()),
        };
        let (rows, rejects) = mapper.map(
            "infoclimat",
            "t",
            &[("e1".into(), vec![body])],
            None,
            0,
            &context,
        );
        assert!(rejects.is_empty(), "{rejects:?}");
        let names: Vec<&str> = rows.columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["time", "kelvin", "run", "observed", "fetched"]);
        let hour =
            |text: &str| Cell::Timestamp(text.parse::<Timestamp>().unwrap().as_microsecond());
        assert_eq!(
            rows.cells,
            vec![
                vec![
                    hour("2024-10-09T14:00:00Z"),
                    Cell::Float(289.5),
                    Cell::Str("12".into()),
                    hour("2024-10-09T15:00:00Z"),
                    hour("2024-10-09T15:00:02Z"),
                ],
                vec![
                    hour("2024-10-09T17:00:00Z"),
                    Cell::Float(287.0),
                    Cell::Str("12".into()),
                    hour("2024-10-09T15:00:00Z"),
                    hour("2024-10-09T15:00:02Z"),
                ],
            ]
        );
        // Without an interval (a file source), `@interval_end` is null.
        let (rows, _) = mapper.map(
            "infoclimat",
            "t",
            &[("e2".into(), vec![json!({"2024-10-09 14:00:00": {}})])],
            None,
            0,
            &EntryContext::default(),
        );
        assert_eq!(rows.cells[0][3], Cell::Null);
        // A bad key is a reject that names the member.
        let (_, rejects) = mapper.map(
            "infoclimat",
            "t",
            &[("e3".into(), vec![json!({"tomorrow": {}})])],
            None,
            0,
            &context,
        );
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].location, "record 1, member \"tomorrow\"");
        assert!(
            rejects[0].reason.contains("matches none of the formats"),
            "{}",
            rejects[0].reason
        );
    }

    #[test]
    fn unknown_response_values_are_refused() {
        let config = table(
            r#"
            source = "s"
            [columns]
            when = "@interval_middle"
            "#,
        );
        let err = Mapper::new(&config, TimeZone::UTC).unwrap_err();
        assert!(
            err.contains("unknown response value \"@interval_middle\""),
            "{err}"
        );
        assert!(err.contains("@interval_end"), "{err}");
    }
}
