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
        ("numeric", ColumnKind::Numeric { .. }) => Fit::Takes,
        ("numeric", k) if int_rank(k).is_some() => Fit::Takes,
        ("real", ColumnKind::Real) => Fit::Takes,
        ("real", ColumnKind::Double) => Fit::Widen("double precision".into()),
        ("real", k) if int_rank(k).is_some() => Fit::Widen("double precision".into()),
        ("double precision", ColumnKind::Real | ColumnKind::Double) => Fit::Takes,
        ("double precision", k) if int_rank(k).is_some() => Fit::Takes,
        ("boolean", ColumnKind::Bool) => Fit::Takes,
        ("text" | "character varying" | "json" | "jsonb", ColumnKind::Text) => Fit::Takes,
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
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
