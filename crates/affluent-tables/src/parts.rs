//! A commit's rows as Arrow batches, built part by part. A load maps each chunk of records on
//! its own and keeps only its Arrow batch ([`Part`]), so a commit holds compact columns, never
//! the JSON records of all its entries. [`unify`] then gives the parts one schema, widening the
//! inferred types as one inference over every record would have (integers with numbers become
//! numbers, mixed kinds text, anything with nested values JSON), and [`Batches::dedupe`] keeps
//! the latest row per key across all of them.

use std::collections::HashMap;
use std::sync::Arc;

use affluent_config::schema::TableType;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, StringBuilder, UInt32Array,
    make_comparator, new_null_array,
};
use datafusion::arrow::compute::{
    SortOptions, cast, concat_batches, filter_record_batch, take_record_batch,
};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, SortField};

use crate::mapping::{ENTRY_COLUMN, Rows, schema_of};

/// Rows per batch handed to the Delta writer: small parts (one-record responses) are gathered.
const BATCH_ROWS: usize = 65_536;

/// The rows of one chunk of records, as one batch.
#[derive(Debug)]
pub struct Part {
    columns: Vec<(String, TableType)>,
    /// Per column: whether its type was inferred from no value at all (every value null).
    unknown: Vec<bool>,
    batch: RecordBatch,
}

impl Part {
    /// The batch of mapped rows.
    pub fn of(rows: &Rows) -> Result<Self, ArrowError> {
        Ok(Self {
            columns: rows.columns.clone(),
            unknown: rows.unknown.clone(),
            batch: rows.to_batch()?,
        })
    }

    /// Rows in the part.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether the part has no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The rows of a commit: one schema (`schema_of(columns)`), several batches.
#[derive(Debug, Default)]
pub struct Batches {
    /// Column names and types, in table order (the lineage column excluded).
    pub columns: Vec<(String, TableType)>,
    /// The batches, lineage column last.
    pub batches: Vec<RecordBatch>,
}

/// The type that holds values of both inferred types (as the mapping's inference widens).
fn widen(a: TableType, b: TableType) -> TableType {
    match (a, b) {
        (a, b) if a == b => a,
        (TableType::Int, TableType::Float) | (TableType::Float, TableType::Int) => TableType::Float,
        (TableType::Json, _) | (_, TableType::Json) => TableType::Json,
        _ => TableType::String,
    }
}

/// An array of inferred type `from` as type `to` ([`widen`]): the text a value would have been
/// given had it been cast to `to` in the first place.
fn widen_array(array: &ArrayRef, from: TableType, to: TableType) -> Result<ArrayRef, ArrowError> {
    if from == to {
        return Ok(array.clone());
    }
    let text = |f: &dyn Fn(usize) -> String| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(array.len(), array.len() * 8);
        for i in 0..array.len() {
            if array.is_null(i) {
                b.append_null();
            } else {
                b.append_value(f(i));
            }
        }
        Arc::new(b.finish())
    };
    Ok(match (from, to) {
        (TableType::Int, TableType::Float) => cast(array, &crate::mapping::arrow_type(to))?,
        (TableType::Int, TableType::String | TableType::Json) => {
            let a = array.as_primitive::<Int64Type>();
            text(&|i| a.value(i).to_string())
        }
        (TableType::Float, TableType::String | TableType::Json) => {
            // A part's number column holds the integers of its chunk as whole floats: written
            // back without a fraction, as their JSON text was (`1`, not `1.0`). A value that
            // was `1.0` in the JSON becomes `1` too: the one place where the chunk-by-chunk
            // inference differs from one inference over every record.
            let a = array.as_primitive::<Float64Type>();
            text(&|i| {
                let x = a.value(i);
                if x.fract() == 0.0 && x.abs() < 9.0e15 {
                    format!("{}", x as i64)
                } else {
                    serde_json::Number::from_f64(x)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| x.to_string())
                }
            })
        }
        (TableType::Bool, TableType::String | TableType::Json) => {
            let a = array.as_boolean();
            text(&|i| a.value(i).to_string())
        }
        (TableType::String, TableType::Json) => {
            // Text becomes a JSON string. (Numbers a mixed chunk had turned into text become
            // JSON strings too, where one inference over every record would have kept them
            // numbers.)
            let a = array.as_string::<i32>();
            text(&|i| serde_json::Value::String(a.value(i).to_string()).to_string())
        }
        (from, to) => {
            return Err(ArrowError::CastError(format!(
                "cannot widen inferred {from:?} values to {to:?}"
            )));
        }
    })
}

/// The parts under one schema: columns in order of first appearance (the table's own first,
/// as every part lists them first), inferred types widened, missing columns null; small
/// batches gathered into batches of up to 65,536 rows.
pub fn unify(parts: Vec<Part>) -> Result<Batches, ArrowError> {
    let mut columns: Vec<(String, Option<TableType>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for part in &parts {
        for ((name, kind), unknown) in part.columns.iter().zip(&part.unknown) {
            let at = *index.entry(name.clone()).or_insert_with(|| {
                columns.push((name.clone(), None));
                columns.len() - 1
            });
            if !unknown {
                let slot = &mut columns[at].1;
                *slot = Some(slot.map_or(*kind, |k| widen(k, *kind)));
            }
        }
    }
    let columns: Vec<(String, TableType)> = columns
        .into_iter()
        .map(|(name, kind)| (name, kind.unwrap_or(TableType::String)))
        .collect();
    let schema = schema_of(&columns);
    let mut out = Batches {
        columns,
        batches: Vec::new(),
    };
    let mut gathered: Vec<RecordBatch> = Vec::new();
    let mut gathered_rows = 0;
    for part in parts {
        if part.is_empty() {
            continue;
        }
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(out.columns.len() + 1);
        let positions: HashMap<&str, usize> = part
            .columns
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.as_str(), i))
            .collect();
        for (name, kind) in &out.columns {
            let at = positions.get(name.as_str()).copied();
            arrays.push(match at {
                Some(c) if !part.unknown[c] => {
                    widen_array(part.batch.column(c), part.columns[c].1, *kind)?
                }
                _ => new_null_array(&crate::mapping::arrow_type(*kind), part.len()),
            });
        }
        let entry = part
            .batch
            .column_by_name(ENTRY_COLUMN)
            .cloned()
            .ok_or_else(|| ArrowError::SchemaError(format!("a part has no {ENTRY_COLUMN}")))?;
        arrays.push(entry);
        let batch = RecordBatch::try_new(schema.clone(), arrays)?;
        gathered_rows += batch.num_rows();
        gathered.push(batch);
        if gathered_rows >= BATCH_ROWS {
            out.batches.push(gather(&schema, &mut gathered)?);
            gathered_rows = 0;
        }
    }
    if !gathered.is_empty() {
        out.batches.push(gather(&schema, &mut gathered)?);
    }
    Ok(out)
}

fn gather(
    schema: &datafusion::arrow::datatypes::SchemaRef,
    batches: &mut Vec<RecordBatch>,
) -> Result<RecordBatch, ArrowError> {
    let batch = if batches.len() == 1 {
        batches.remove(0)
    } else {
        concat_batches(schema, batches.iter())?
    };
    batches.clear();
    Ok(batch)
}

impl Batches {
    /// The batches.
    pub fn into_batches(self) -> Vec<RecordBatch> {
        self.batches
    }

    /// Rows in all batches.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Keeps only the rows whose landing entry passes `keep`.
    pub fn retain_entries(&mut self, keep: impl Fn(&str) -> bool) -> Result<(), ArrowError> {
        for batch in &mut self.batches {
            let Some(entries) = batch.column_by_name(ENTRY_COLUMN) else {
                continue;
            };
            let entries: &StringArray = entries.as_string::<i32>();
            let mask: BooleanArray = entries.iter().map(|e| Some(e.is_some_and(&keep))).collect();
            *batch = filter_record_batch(batch, &mask)?;
        }
        self.batches.retain(|b| b.num_rows() > 0);
        Ok(())
    }

    /// Keeps, per primary key, only the latest row: the greatest `order_by` value (null is
    /// the least), or the last to arrive; a later row wins ties. Returns how many rows were
    /// dropped. The rows left are in arrival order.
    pub fn dedupe(&mut self, key: &[String], order_by: Option<&str>) -> Result<usize, ArrowError> {
        let positions: Vec<usize> = key
            .iter()
            .filter_map(|k| self.columns.iter().position(|(n, _)| n == k))
            .collect();
        if key.is_empty() || positions.is_empty() || self.batches.is_empty() {
            return Ok(0);
        }
        let schema = self.batches[0].schema();
        let all = concat_batches(&schema, self.batches.iter())?;
        self.batches.clear();
        let key_columns: Vec<ArrayRef> = positions.iter().map(|&c| all.column(c).clone()).collect();
        let converter = RowConverter::new(
            key_columns
                .iter()
                .map(|a| SortField::new(a.data_type().clone()))
                .collect(),
        )?;
        let keys = converter.convert_columns(&key_columns)?;
        let order = order_by
            .and_then(|o| self.columns.iter().position(|(n, _)| n == o))
            .map(|c| {
                let column = all.column(c);
                make_comparator(
                    column.as_ref(),
                    column.as_ref(),
                    SortOptions {
                        descending: false,
                        nulls_first: true,
                    },
                )
            })
            .transpose()?;
        let mut best: HashMap<datafusion::arrow::row::Row<'_>, usize> =
            HashMap::with_capacity(all.num_rows());
        for i in 0..all.num_rows() {
            let row = keys.row(i);
            match best.get_mut(&row) {
                Some(j) => {
                    let newer = order
                        .as_ref()
                        .is_none_or(|cmp| cmp(i, *j) != std::cmp::Ordering::Less);
                    if newer {
                        *j = i;
                    }
                }
                None => {
                    best.insert(row, i);
                }
            }
        }
        let mut keep: Vec<u32> = best.into_values().map(|i| i as u32).collect();
        keep.sort_unstable();
        let dropped = all.num_rows() - keep.len();
        let kept = take_record_batch(&all, &UInt32Array::from(keep))?;
        drop(all);
        self.batches.push(kept);
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Cell;
    use datafusion::arrow::array::{Float64Array, Int64Array};

    fn rows(entry: &str, columns: &[(&str, TableType, bool)], cells: Vec<Vec<Cell>>) -> Part {
        let rows = Rows {
            columns: columns
                .iter()
                .map(|(n, k, _)| (n.to_string(), *k))
                .collect(),
            unknown: columns.iter().map(|(_, _, u)| *u).collect(),
            entries: vec![entry.to_string(); cells.len()],
            cells,
        };
        Part::of(&rows).unwrap()
    }

    #[test]
    fn unify_widens_inferred_types_and_fills_missing_columns() {
        let a = rows(
            "e1",
            &[
                ("id", TableType::Int, false),
                ("v", TableType::Int, false),
                ("x", TableType::String, true),
            ],
            vec![vec![Cell::Int(1), Cell::Int(2), Cell::Null]],
        );
        let b = rows(
            "e2",
            &[
                ("id", TableType::Int, false),
                ("v", TableType::Float, false),
                ("x", TableType::Bool, false),
                ("w", TableType::String, false),
            ],
            vec![vec![
                Cell::Int(2),
                Cell::Float(2.5),
                Cell::Bool(true),
                Cell::Str("hi".into()),
            ]],
        );
        let c = rows(
            "e3",
            &[("id", TableType::Int, false), ("w", TableType::Json, false)],
            vec![vec![Cell::Int(3), Cell::Str("[1]".into())]],
        );
        let out = unify(vec![a, b, c]).unwrap();
        assert_eq!(
            out.columns,
            vec![
                ("id".to_string(), TableType::Int),
                ("v".to_string(), TableType::Float),
                ("x".to_string(), TableType::Bool),
                ("w".to_string(), TableType::Json),
            ]
        );
        assert_eq!(out.batches.len(), 1);
        let batch = &out.batches[0];
        let v = batch.column(1).as_any().downcast_ref::<Float64Array>();
        assert_eq!(
            v.unwrap().iter().collect::<Vec<_>>(),
            vec![Some(2.0), Some(2.5), None]
        );
        // A string inferred in one part, JSON in another: the string becomes JSON text.
        let w = batch.column(3).as_string::<i32>();
        assert_eq!(
            w.iter().collect::<Vec<_>>(),
            vec![None, Some("\"hi\""), Some("[1]")]
        );
        let x = batch.column(2).as_boolean();
        assert_eq!(x.iter().collect::<Vec<_>>(), vec![None, Some(true), None]);
        let entries = batch.column(4).as_string::<i32>();
        assert_eq!(
            entries.iter().collect::<Vec<_>>(),
            vec![Some("e1"), Some("e2"), Some("e3")]
        );
    }

    #[test]
    fn dedupe_keeps_the_greatest_order_value_and_the_last_on_ties() {
        let cols = [
            ("id", TableType::Int, false),
            ("at", TableType::Int, false),
            ("v", TableType::String, false),
        ];
        let row = |id, at: Option<i64>, v: &str| {
            vec![
                Cell::Int(id),
                at.map_or(Cell::Null, Cell::Int),
                Cell::Str(v.into()),
            ]
        };
        let a = rows(
            "e1",
            &cols,
            vec![
                row(1, Some(5), "a"),
                row(2, Some(1), "b"),
                row(3, None, "c"),
            ],
        );
        let b = rows(
            "e2",
            &cols,
            vec![
                row(1, Some(4), "old"),
                row(2, Some(1), "tie"),
                row(3, Some(0), "d"),
            ],
        );
        let mut out = unify(vec![a, b]).unwrap();
        assert_eq!(out.dedupe(&["id".into()], Some("at")).unwrap(), 3);
        let batch = &out.batches[0];
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let v = batch.column(2).as_string::<i32>();
        let got: Vec<(i64, &str)> = ids
            .values()
            .iter()
            .copied()
            .zip(v.iter().flatten())
            .collect();
        assert_eq!(got, vec![(1, "a"), (2, "tie"), (3, "d")]);

        // Without order_by, the last to arrive wins.
        let a = rows("e1", &cols, vec![row(1, Some(9), "first")]);
        let b = rows("e2", &cols, vec![row(1, Some(1), "last")]);
        let mut out = unify(vec![a, b]).unwrap();
        assert_eq!(out.dedupe(&["id".into()], None).unwrap(), 1);
        assert_eq!(out.batches[0].column(2).as_string::<i32>().value(0), "last");
    }

    #[test]
    fn retain_entries_filters_rows_by_their_landing_entry() {
        let cols = [("id", TableType::Int, false)];
        let a = rows("old", &cols, vec![vec![Cell::Int(1)], vec![Cell::Int(2)]]);
        let b = rows("new", &cols, vec![vec![Cell::Int(3)]]);
        let mut out = unify(vec![a, b]).unwrap();
        out.retain_entries(|e| e == "new").unwrap();
        assert_eq!(out.num_rows(), 1);
    }
}
