//! SQL functions the seeds need, registered once on every session ([`register`]):
//!
//! - `closest_match(value, candidates [, min_similarity])`: `value` itself when it is one of the
//!   candidates, else the most similar candidate by normalized Levenshtein similarity (strsim),
//!   or NULL when none reaches `min_similarity` (0 to 1, default 0). `candidates` is a list:
//!   `make_array('a', 'b')` or `(SELECT array_agg(name) FROM agencies)`.
//! - `haversine_km(lat1, lon1, lat2, lon2)`: great-circle distance in kilometres.
//! - `zone_of('NAME', lon, lat)`: the name of the `[zones.NAME]` polygon holding the point
//!   (affluent-geo's R-tree over the polygons' boxes), NULL outside every polygon.
//!
//! And it bounds the built-ins that build a whole value in one call, outside the query's memory
//! pool: `repeat`, `lpad`, `rpad`, `array_repeat` (`list_repeat`), and `range` and
//! `generate_series` over integers compute the size of their result from their arguments and
//! fail, before allocating, when it is over the query's memory limit.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility, create_udf,
};
use datafusion::prelude::SessionContext;

/// Registers affluent's functions on a session, and bounds the built-in functions that build
/// a large value in one call to `max_bytes` per call (see the module).
pub fn register(ctx: &SessionContext, max_bytes: u64) {
    ctx.register_udf(ScalarUDF::from(ClosestMatch::new()));
    ctx.register_udf(haversine());
    for (name, growth) in [
        ("repeat", Growth::Repeat),
        ("lpad", Growth::Pad),
        ("rpad", Growth::Pad),
        ("array_repeat", Growth::ArrayRepeat),
        ("range", Growth::Range { inclusive: false }),
        ("generate_series", Growth::Range { inclusive: true }),
    ] {
        if let Ok(builtin) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_shared_impl(Arc::new(Bounded {
                inner: builtin.inner().clone(),
                growth,
                max_bytes,
            })));
        }
    }
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

/// The project's zone sets by name.
#[derive(Debug, Clone, Default)]
pub struct ZoneSets(pub Arc<std::collections::BTreeMap<String, Arc<affluent_geo::Zones>>>);

/// `zone_of('NAME', lon, lat)`.
#[derive(Debug)]
pub struct ZoneOf {
    signature: Signature,
    /// The zone sets, or why the project's could not be read (each call says so).
    sets: std::result::Result<ZoneSets, String>,
}

impl PartialEq for ZoneOf {
    fn eq(&self, other: &Self) -> bool {
        match (&self.sets, &other.sets) {
            (Ok(a), Ok(b)) => Arc::ptr_eq(&a.0, &b.0),
            (Err(a), Err(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for ZoneOf {}

impl std::hash::Hash for ZoneOf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match &self.sets {
            Ok(sets) => sets.0.keys().for_each(|name| name.hash(state)),
            Err(e) => e.hash(state),
        }
    }
}

impl ZoneOf {
    /// The function over these zone sets (or the error every call reports).
    pub fn new(sets: std::result::Result<ZoneSets, String>) -> Self {
        Self {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Float64, DataType::Float64],
                Volatility::Immutable,
            ),
            sets,
        }
    }
}

impl ScalarUDFImpl for ZoneOf {
    fn name(&self) -> &str {
        "zone_of"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let set = match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))) => name.clone(),
            _ => {
                return exec_err!(
                    "zone_of: the first argument is the name of a [zones.NAME], as a constant"
                );
            }
        };
        let sets = match &self.sets {
            Ok(sets) => sets,
            Err(e) => return exec_err!("zone_of: {e}"),
        };
        let Some(zones) = sets.0.get(&set) else {
            let known: Vec<&String> = sets.0.keys().collect();
            return exec_err!("zone_of: no zones `{set}` in the project (declared: {known:?})");
        };
        let lon = args.args[1].to_array(n)?;
        let lat = args.args[2].to_array(n)?;
        let (lon, lat) = (
            lon.as_primitive::<Float64Type>(),
            lat.as_primitive::<Float64Type>(),
        );
        let mut out = datafusion::arrow::array::StringBuilder::new();
        for i in 0..n {
            if lon.is_null(i) || lat.is_null(i) {
                out.append_null();
            } else {
                out.append_option(zones.zone_of(lon.value(i), lat.value(i)));
            }
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

/// What a bounded built-in function builds, to size its result before it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text's bytes times `n`.
    Repeat,
    /// `lpad(text, n [, fill])`, `rpad(...)`: `n` characters, at least `n` bytes.
    Pad,
    /// `array_repeat(value, n)`: `n` values.
    ArrayRepeat,
    /// `range([start,] stop [, step])`, `generate_series(...)` over integers: one 8-byte value
    /// per step.
    Range {
        /// `generate_series` includes `stop`.
        inclusive: bool,
    },
}

/// A built-in function that builds its whole result in one call, outside the query's memory
/// pool (`repeat('x', 2000000000)` allocates 2 GB at once): its result's size is computed from
/// its arguments first, and a call whose result would be over `max_bytes` (the query's memory
/// limit) fails at once with a resources-exhausted error instead of allocating it.
#[derive(Debug)]
struct Bounded {
    inner: Arc<dyn ScalarUDFImpl>,
    growth: Growth,
    max_bytes: u64,
}

impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        self.inner.name() == other.inner.name()
            && self.growth == other.growth
            && self.max_bytes == other.max_bytes
    }
}

impl Eq for Bounded {}

impl std::hash::Hash for Bounded {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
        self.growth.hash(state);
        self.max_bytes.hash(state);
    }
}

/// An argument as integers, row by row (a constant is the same for every row).
enum Ints {
    One(Option<i64>),
    Each(datafusion::arrow::array::Int64Array),
}

impl Ints {
    fn of(arg: &ColumnarValue) -> Ints {
        match arg {
            // Not an integer: the function itself says so.
            ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(v)) => Ints::One(v),
                _ => Ints::One(None),
            },
            ColumnarValue::Array(a) => match cast(a, &DataType::Int64) {
                Ok(a) => Ints::Each(
                    a.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                        .clone(),
                ),
                Err(_) => Ints::One(None),
            },
        }
    }

    /// The byte length of a text argument.
    fn lengths(arg: &ColumnarValue) -> Ints {
        match arg {
            ColumnarValue::Scalar(s) => Ints::One(match s {
                ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
                    v.as_ref().map(|v| v.len() as i64)
                }
                _ => None,
            }),
            ColumnarValue::Array(a) => match datafusion::arrow::compute::kernels::length::length(a)
            {
                Ok(lengths) => Ints::of(&ColumnarValue::Array(lengths)),
                // Not text: the function itself says so.
                Err(_) => Ints::One(None),
            },
        }
    }

    fn get(&self, i: usize) -> Option<i64> {
        match self {
            Ints::One(v) => *v,
            Ints::Each(a) => (!a.is_null(i)).then(|| a.value(i)),
        }
    }
}

impl Bounded {
    /// Bytes the call's result would hold at least.
    fn result_bytes(&self, args: &ScalarFunctionArgs) -> u64 {
        let a = &args.args;
        let rows = if a.iter().all(|v| matches!(v, ColumnarValue::Scalar(_))) {
            1
        } else {
            args.number_rows
        };
        let positive = |v: Option<i64>| v.map_or(0, |v| v.max(0) as u64);
        let mut total: u64 = 0;
        match self.growth {
            Growth::Repeat if a.len() >= 2 => {
                let (text, n) = (Ints::lengths(&a[0]), Ints::of(&a[1]));
                for i in 0..rows {
                    total = total
                        .saturating_add(positive(text.get(i)).saturating_mul(positive(n.get(i))));
                }
            }
            Growth::Pad if a.len() >= 2 => {
                let n = Ints::of(&a[1]);
                for i in 0..rows {
                    total = total.saturating_add(positive(n.get(i)));
                }
            }
            Growth::ArrayRepeat if a.len() >= 2 => {
                let width = a[0].data_type().primitive_width().unwrap_or(1).max(1) as u64;
                let n = Ints::of(&a[1]);
                for i in 0..rows {
                    total = total.saturating_add(positive(n.get(i)).saturating_mul(width));
                }
            }
            Growth::Range { inclusive }
                if !a.is_empty() && a.iter().all(|v| v.data_type().is_integer()) =>
            {
                let ints: Vec<Ints> = a.iter().map(Ints::of).collect();
                for i in 0..rows {
                    let (start, stop, step) = match ints.as_slice() {
                        [stop] => (Some(0), stop.get(i), Some(1)),
                        [start, stop] => (start.get(i), stop.get(i), Some(1)),
                        [start, stop, step, ..] => (start.get(i), stop.get(i), step.get(i)),
                        [] => (None, None, None),
                    };
                    let (Some(start), Some(stop), Some(step)) = (start, stop, step) else {
                        continue;
                    };
                    let span = i128::from(stop) - i128::from(start);
                    let steps = if step == 0 || span.signum() != i128::from(step).signum() {
                        0
                    } else {
                        span / i128::from(step) + i128::from(inclusive)
                    };
                    let bytes = u64::try_from(steps.saturating_mul(8)).unwrap_or(u64::MAX);
                    total = total.saturating_add(bytes);
                }
            }
            _ => {}
        }
        total
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = self.result_bytes(&args);
        if bytes > self.max_bytes {
            return Err(datafusion::error::DataFusionError::ResourcesExhausted(
                format!(
                    "{}() would build {bytes} bytes at once, more than the query's memory limit of {} bytes",
                    self.inner.name(),
                    self.max_bytes
                ),
            ));
        }
        self.inner.invoke_with_args(args)
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }
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
