//! `[query]`: the bounds every SQL query runs within (memory, time, rows kept), and the
//! byte-size values they are written with (`"512MiB"`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;
use toml::de::DeTable;

use crate::diagnostics::Reporter;
use crate::validate::span_in;
use crate::values::ConfigDuration;

/// `[query]`: bounds of the SQL that `affluent query`, the dashboard's panels and the models
/// run, so that no query can take the machine down. A query past a bound stops with an error
/// that names the key to raise.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Memory a read query may use (`affluent query`, exports, and all the dashboard's queries
    /// together): the engine's sorts, joins and aggregations and the rows kept for the result
    /// (default `"1GiB"`). Sizes are `"512MiB"`, `"2GiB"`, `"500MB"` or a number of bytes.
    pub memory: Option<ByteSize>,
    /// How long a read query may run, planning included (default `"30s"`).
    pub timeout: Option<ConfigDuration>,
    /// Rows a read query's result may have: what the dashboard keeps to page through and
    /// download as CSV, and what `affluent query` prints (default 100000). A larger result is an
    /// error, never cut silently: add a `LIMIT` or aggregate. `affluent export` is not bounded.
    pub max_rows: Option<u64>,
    /// Memory of a SQL model's run; sorts, joins and aggregations past it spill to disk
    /// (default: `memory`).
    pub model_memory: Option<ByteSize>,
    /// How long a SQL model may run (default: no limit).
    pub model_timeout: Option<ConfigDuration>,
}

impl QueryConfig {
    /// Default of `memory`: 1 GiB.
    pub const DEFAULT_MEMORY: ByteSize = ByteSize(1 << 30);
    /// Default of `timeout`: 30 seconds.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default of `max_rows`.
    pub const DEFAULT_MAX_ROWS: u64 = 100_000;
    /// The smallest `memory` or `model_memory` accepted: 16 MiB.
    pub const MIN_MEMORY: ByteSize = ByteSize(16 << 20);

    /// `memory`, or its default.
    pub fn memory(&self) -> ByteSize {
        self.memory.unwrap_or(Self::DEFAULT_MEMORY)
    }

    /// `timeout`, or its default.
    pub fn timeout(&self) -> Duration {
        self.timeout
            .map_or(Self::DEFAULT_TIMEOUT, ConfigDuration::get)
    }

    /// `max_rows`, or its default.
    pub fn max_rows(&self) -> u64 {
        self.max_rows.unwrap_or(Self::DEFAULT_MAX_ROWS)
    }

    /// `model_memory`, else `memory`, else the default.
    pub fn model_memory(&self) -> ByteSize {
        self.model_memory.unwrap_or_else(|| self.memory())
    }

    /// `model_timeout` (`None`: models run as long as they need).
    pub fn model_timeout(&self) -> Option<Duration> {
        self.model_timeout.map(ConfigDuration::get)
    }
}

/// A size in bytes written as text (`"512MiB"`, `"2GiB"`, `"500MB"`, `"64kB"`) or as a number
/// of bytes, parsed on load. `KiB`, `MiB`, `GiB`, `TiB` are powers of 1024; `kB`, `MB`, `GB`,
/// `TB` powers of 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that writes the size exactly (`512MiB`), else bytes (`1000B`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (unit, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid size {text:?}: write a number and a unit, such as \"512MiB\", \"2GiB\" or \"500MB\" (KiB, MiB, GiB, TiB are powers of 1024; kB, MB, GB, TB of 1000; B is bytes)"
            )
        };
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let unit = unit.trim();
        let factor: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => return Err(bad()),
        };
        if number.is_empty() {
            return Err(bad());
        }
        let bytes = if let Ok(n) = number.parse::<u64>() {
            n.checked_mul(factor).ok_or_else(bad)?
        } else {
            let n: f64 = number.parse().map_err(|_| bad())?;
            let bytes = (n * factor as f64).round();
            if !bytes.is_finite() || bytes >= u64::MAX as f64 {
                return Err(bad());
            }
            bytes as u64
        };
        Ok(ByteSize(bytes))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"512MiB\" or a number of bytes")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("a size cannot be negative (got {v})")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

pub(crate) fn check(
    reporter: &mut Reporter<'_>,
    settings: &crate::schema::ProjectSettings,
    root: &Spanned<DeTable<'_>>,
) {
    let q = &settings.query;
    for (key, value) in [("memory", q.memory), ("model_memory", q.model_memory)] {
        if let Some(size) = value
            && size < QueryConfig::MIN_MEMORY
        {
            reporter.error(
                span_in(root, &["query", key]),
                format!(
                    "`{key}` must be at least {} (got {size}): queries need room to run",
                    QueryConfig::MIN_MEMORY
                ),
            );
        }
    }
    for (key, value) in [("timeout", q.timeout), ("model_timeout", q.model_timeout)] {
        if value.is_some_and(|d| d.get().is_zero()) {
            reporter.error(
                span_in(root, &["query", key]),
                format!("`{key}` must be longer than 0s"),
            );
        }
    }
    if q.max_rows == Some(0) {
        reporter.error(
            span_in(root, &["query", "max_rows"]),
            "`max_rows` must be at least 1",
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use super::*;
    use crate::{Environment, LoadError, load_str};

    fn load(text: &str) -> Result<crate::Project, Vec<(usize, usize, String)>> {
        let env = Environment::from_map(Default::default());
        load_str(
            std::path::Path::new("."),
            std::path::Path::new("affluent.toml"),
            text,
            &env,
        )
        .map_err(|e| match e {
            LoadError::Invalid(e) => {
                e.0.into_iter()
                    .map(|d| (d.line, d.column, d.message))
                    .collect()
            }
            other => panic!("{other}"),
        })
    }

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!("512MiB".parse::<ByteSize>().unwrap().bytes(), 512 << 20);
        assert_eq!("2 GiB".parse::<ByteSize>().unwrap().bytes(), 2 << 30);
        assert_eq!("500MB".parse::<ByteSize>().unwrap().bytes(), 500_000_000);
        assert_eq!("1.5GiB".parse::<ByteSize>().unwrap().bytes(), 3 << 29);
        assert_eq!("4096".parse::<ByteSize>().unwrap().bytes(), 4096);
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        for bad in ["", "MiB", "12 parsecs", "-1GiB", "1e3MiB", "99999999999TiB"] {
            let err = bad.parse::<ByteSize>().unwrap_err();
            assert!(err.contains("invalid size"), "{bad}: {err}");
        }
    }

    #[test]
    fn query_bounds_default_and_read_from_the_file() {
        let project = load("").unwrap();
        assert_eq!(project.query.memory(), QueryConfig::DEFAULT_MEMORY);
        assert_eq!(project.query.timeout(), Duration::from_secs(30));
        assert_eq!(project.query.max_rows(), 100_000);
        assert_eq!(project.query.model_timeout(), None);

        let project = load(
            "[query]\nmemory = \"64MiB\"\ntimeout = \"2s\"\nmax_rows = 10\nmodel_timeout = \"1h\"\n",
        )
        .unwrap();
        assert_eq!(project.query.memory().bytes(), 64 << 20);
        assert_eq!(project.query.model_memory().bytes(), 64 << 20);
        assert_eq!(project.query.timeout(), Duration::from_secs(2));
        assert_eq!(project.query.max_rows(), 10);
        assert_eq!(
            project.query.model_timeout(),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn unknown_keys_and_bad_sizes_in_query_are_reported_at_their_place() {
        let errs = load("[query]\nmemroy = \"64MiB\"\n").unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!((errs[0].0, errs[0].1), (2, 1), "{errs:#?}");
        assert!(
            errs[0]
                .2
                .contains("unknown key `memroy` in [query]; did you mean `memory`?"),
            "{}",
            errs[0].2
        );

        let errs = load("[query]\nmemory = \"64 parsecs\"\n").unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!((errs[0].0, errs[0].1), (2, 10), "{errs:#?}");
        assert!(
            errs[0].2.contains("invalid size \"64 parsecs\""),
            "{}",
            errs[0].2
        );

        let errs =
            load("[query]\nmemory = \"1KiB\"\ntimeout = \"0s\"\nmax_rows = 0\n").unwrap_err();
        let messages: Vec<&str> = errs.iter().map(|e| e.2.as_str()).collect();
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(
            messages[0].contains("`memory` must be at least 16MiB (got 1KiB)"),
            "{messages:?}"
        );
        assert_eq!(errs[0].0, 2);
        assert!(
            messages[1].contains("`timeout` must be longer than 0s"),
            "{messages:?}"
        );
        assert!(
            messages[2].contains("`max_rows` must be at least 1"),
            "{messages:?}"
        );
    }
}
