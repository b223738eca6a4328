//! Column types in PostgreSQL: what a table's column becomes, and whether a column that is
//! already there takes its values (as it is, widened, or not at all).

use affluent_tables::changes::ColumnKind;

/// The PostgreSQL type a column is created with.
pub(crate) fn sql_type(kind: ColumnKind) -> String {
    match kind {
        ColumnKind::SmallInt => "smallint".into(),
        ColumnKind::Int => "integer".into(),
        ColumnKind::BigInt => "bigint".into(),
        ColumnKind::Numeric { precision, scale } => format!("numeric({precision},{scale})"),
        ColumnKind::Real => "real".into(),
        ColumnKind::Double => "double precision".into(),
        ColumnKind::Bool => "boolean".into(),
        ColumnKind::Text => "text".into(),
        ColumnKind::Bytes => "bytea".into(),
        ColumnKind::Date => "date".into(),
        ColumnKind::Time => "time".into(),
        ColumnKind::Timestamp => "timestamp".into(),
        ColumnKind::TimestampTz => "timestamptz".into(),
    }
}

/// Whether a column already in PostgreSQL takes a table column's values.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fit {
    /// As it is.
    Takes,
    /// Once widened to this type (the table's values widened: integers to floats, ...).
    Widen(String),
    /// Not at all.
    Conflict,
}

fn int_rank(kind: ColumnKind) -> Option<u8> {
    match kind {
        ColumnKind::SmallInt => Some(1),
        ColumnKind::Int => Some(2),
        ColumnKind::BigInt => Some(3),
        _ => None,
    }
}

/// Digits before the point an integer kind needs.
fn int_digits(kind: ColumnKind) -> Option<i64> {
    match kind {
        ColumnKind::SmallInt => Some(5),
        ColumnKind::Int => Some(10),
        ColumnKind::BigInt => Some(19),
        _ => None,
    }
}

/// Whether a `numeric(precision, scale)` column (`None`: unconstrained) takes a kind's values,
/// or to what it must widen.
pub(crate) fn fit_numeric(precision: Option<i64>, scale: Option<i64>, kind: ColumnKind) -> Fit {
    let (Some(p), s) = (precision, scale.unwrap_or(0)) else {
        return match kind {
            ColumnKind::Numeric { .. } => Fit::Takes,
            k if int_rank(k).is_some() => Fit::Takes,
            _ => Fit::Conflict,
        };
    };
    let (whole, fraction) = match kind {
        ColumnKind::Numeric { precision, scale } => {
            (i64::from(precision) - i64::from(scale), i64::from(scale))
        }
        k => match int_digits(k) {
            Some(d) => (d, 0),
            None => return Fit::Conflict,
        },
    };
    if p - s >= whole && s >= fraction {
        return Fit::Takes;
    }
    let (w, f) = ((p - s).max(whole), s.max(fraction));
    if w + f > 1000 {
        return Fit::Conflict;
    }
    Fit::Widen(format!("numeric({},{f})", w + f))
}

/// `existing` is `information_schema.columns.data_type`.
pub(crate) fn fit(existing: &str, kind: ColumnKind) -> Fit {
    let existing_int = match existing {
        "smallint" => Some(1),
        "integer" => Some(2),
        "bigint" => Some(3),
        _ => None,
    };
    match (existing, kind) {
        (_, k) if existing_int.is_some() && int_rank(k).is_some() => {
            if int_rank(k) <= existing_int {
                Fit::Takes
            } else {
                Fit::Widen(sql_type(k))
            }
        }
        (_, ColumnKind::Numeric { .. }) if existing_int.is_some() => Fit::Widen(sql_type(kind)),
        (_, ColumnKind::Real | ColumnKind::Double) if existing_int.is_some() => {
            Fit::Widen("double precision".into())
        }
        ("numeric", _) => fit_numeric(None, None, kind),
        ("real", ColumnKind::Real) => Fit::Takes,
        ("real", ColumnKind::Double) => Fit::Widen("double precision".into()),
        ("real", k) if int_rank(k).is_some() => Fit::Widen("double precision".into()),
        ("double precision", ColumnKind::Real | ColumnKind::Double) => Fit::Takes,
        ("double precision", k) if int_rank(k).is_some() => Fit::Takes,
        ("boolean", ColumnKind::Bool) => Fit::Takes,
        // Not `json`: it has no equality, which the upsert's change test needs.
        ("text" | "character varying" | "jsonb", ColumnKind::Text) => Fit::Takes,
        ("bytea", ColumnKind::Bytes) => Fit::Takes,
        ("date", ColumnKind::Date) => Fit::Takes,
        ("time without time zone", ColumnKind::Time) => Fit::Takes,
        ("timestamp without time zone", ColumnKind::Timestamp) => Fit::Takes,
        ("timestamp with time zone", ColumnKind::TimestampTz) => Fit::Takes,
        _ => Fit::Conflict,
    }
}

/// A name as a quoted SQL identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_columns_take_their_type_or_a_narrower_one_and_widen_otherwise() {
        assert_eq!(fit("bigint", ColumnKind::Int), Fit::Takes);
        assert_eq!(
            fit("integer", ColumnKind::BigInt),
            Fit::Widen("bigint".into())
        );
        assert_eq!(
            fit("bigint", ColumnKind::Double),
            Fit::Widen("double precision".into())
        );
        assert_eq!(fit("double precision", ColumnKind::BigInt), Fit::Takes);
        assert_eq!(fit("text", ColumnKind::BigInt), Fit::Conflict);
        assert_eq!(fit("bigint", ColumnKind::Text), Fit::Conflict);
        assert_eq!(
            fit("timestamp with time zone", ColumnKind::TimestampTz),
            Fit::Takes
        );
        assert_eq!(
            fit("timestamp without time zone", ColumnKind::TimestampTz),
            Fit::Conflict
        );
        assert_eq!(fit("jsonb", ColumnKind::Text), Fit::Takes);
        assert_eq!(fit("json", ColumnKind::Text), Fit::Conflict);
    }

    #[test]
    fn numeric_columns_take_what_their_digits_hold_and_widen_otherwise() {
        let n = |precision, scale| ColumnKind::Numeric { precision, scale };
        assert_eq!(fit_numeric(Some(10), Some(2), n(8, 2)), Fit::Takes);
        assert_eq!(
            fit_numeric(Some(10), Some(2), n(18, 6)),
            Fit::Widen("numeric(18,6)".into())
        );
        assert_eq!(
            fit_numeric(Some(10), Some(2), ColumnKind::BigInt),
            Fit::Widen("numeric(21,2)".into())
        );
        assert_eq!(fit_numeric(None, None, n(38, 10)), Fit::Takes);
        assert_eq!(
            fit_numeric(Some(10), Some(2), ColumnKind::Text),
            Fit::Conflict
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
