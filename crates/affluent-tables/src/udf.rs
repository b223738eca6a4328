//! SQL functions the seeds need, registered once on every session ([`register`]):
//!
//! - `closest_match(value, candidates [, min_similarity])`: `value` itself when it is one of the
//!   candidates, else the most similar candidate by normalized Levenshtein similarity (strsim),
//!   or NULL when none reaches `min_similarity` (0 to 1, default 0). `candidates` is a list:
//!   `make_array('a', 'b')` or `(SELECT array_agg(name) FROM agencies)`.
//! - `haversine_km(lat1, lon1, lat2, lon2)`: great-circle distance in kilometres.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility, create_udf,
};
use datafusion::prelude::SessionContext;

/// Registers affluent's functions on a session.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(ClosestMatch::new()));
    ctx.register_udf(haversine());
}

/// `closest_match(value, candidates [, min_similarity])`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ClosestMatch {
    signature: Signature,
}

impl ClosestMatch {
    fn new() -> Self {
        Self {
            signature: Signature::one_of(
                vec![TypeSignature::Any(2), TypeSignature::Any(3)],
                Volatility::Immutable,
            ),
        }
    }
}

/// The candidate closest to `value`, if any reaches `min` similarity.
pub fn closest_match<'a>(value: &str, candidates: &[&'a str], min: f64) -> Option<&'a str> {
    if let Some(exact) = candidates.iter().find(|c| **c == value) {
        return Some(exact);
    }
    let mut best: Option<(&str, f64)> = None;
    for c in candidates {
        let score = strsim::normalized_levenshtein(value, c);
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.filter(|(_, s)| *s >= min).map(|(c, _)| c)
}

fn strings(array: &ArrayRef) -> Result<StringArray> {
    Ok(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
}

/// Candidates of row `i`: from a list array (one list per row) or one list for all rows.
fn list_strings(array: &ArrayRef, i: usize) -> Result<Option<StringArray>> {
    let values = match array.data_type() {
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            if list.is_null(i) {
                return Ok(None);
            }
            list.value(i)
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            if list.is_null(i) {
                return Ok(None);
            }
            list.value(i)
        }
        DataType::FixedSizeList(_, _) => {
            let list = array.as_fixed_size_list();
            if list.is_null(i) {
                return Ok(None);
            }
            list.value(i)
        }
        other => {
            return exec_err!(
                "closest_match: candidates must be a list of strings (make_array(...) or (SELECT array_agg(col) FROM t)), got {other}"
            );
        }
    };
    Ok(Some(strings(&values)?))
}

impl ScalarUDFImpl for ClosestMatch {
    fn name(&self) -> &str {
        "closest_match"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let min = match args.args.get(2) {
            None => 0.0,
            Some(ColumnarValue::Scalar(s)) => match s.cast_to(&DataType::Float64)? {
                ScalarValue::Float64(Some(v)) => v,
                _ => 0.0,
            },
            Some(ColumnarValue::Array(_)) => {
                return exec_err!("closest_match: min_similarity must be a constant");
            }
        };
        let values = strings(&args.args[0].to_array(n)?)?;
        let (candidates, per_row) = match &args.args[1] {
            ColumnarValue::Scalar(s) => (s.to_array_of_size(1)?, false),
            ColumnarValue::Array(a) => (a.clone(), true),
        };
        let shared = if per_row {
            None
        } else {
            list_strings(&candidates, 0)?
        };
        let mut out = datafusion::arrow::array::StringBuilder::new();
        for i in 0..n {
            if values.is_null(i) {
                out.append_null();
                continue;
            }
            let list = if per_row {
                list_strings(&candidates, i)?
            } else {
                shared.clone()
            };
            let Some(list) = list else {
                out.append_null();
                continue;
            };
            let names: Vec<&str> = list.iter().flatten().collect();
            out.append_option(closest_match(values.value(i), &names, min));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn haversine() -> ScalarUDF {
    create_udf(
        "haversine_km",
        vec![DataType::Float64; 4],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let [a, b, c, d] = arrays.as_slice() else {
                return exec_err!("haversine_km takes lat1, lon1, lat2, lon2");
            };
            let (a, b, c, d) = (
                a.as_primitive::<Float64Type>(),
                b.as_primitive::<Float64Type>(),
                c.as_primitive::<Float64Type>(),
                d.as_primitive::<Float64Type>(),
            );
            let out: Float64Array = (0..a.len())
                .map(|i| {
                    if a.is_null(i) || b.is_null(i) || c.is_null(i) || d.is_null(i) {
                        return None;
                    }
                    Some(haversine_km(a.value(i), b.value(i), c.value(i), d.value(i)))
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// Great-circle distance between two points, in kilometres.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0088;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_match_keeps_known_names_and_fixes_typos() {
        let known = ["paris_15", "lyon_centre", "marseille_vieux_port"];
        assert_eq!(
            closest_match("lyon_centre", &known, 0.0),
            Some("lyon_centre")
        );
        assert_eq!(
            closest_match("lyon_cnetre", &known, 0.0),
            Some("lyon_centre")
        );
        assert_eq!(closest_match("pariss_15", &known, 0.0), Some("paris_15"));
        assert_eq!(closest_match("zzz", &known, 0.9), None);
        assert_eq!(closest_match("x", &[], 0.0), None);
    }

    #[test]
    fn haversine_paris_to_lyon() {
        let d = haversine_km(48.8566, 2.3522, 45.7640, 4.8357);
        assert!((d - 391.5).abs() < 2.0, "{d}");
    }
}
