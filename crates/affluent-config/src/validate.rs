//! Checks shared by the components' modules: names, spans of keys, rate limits and `[hosts]`.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostics::Reporter;
use crate::schema::RateLimitConfig;

pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The span of the value at `path` (keys from the table's root), or of the deepest key found.
pub(crate) fn span_in(table: &Spanned<DeTable<'_>>, path: &[&str]) -> Option<Range<usize>> {
    let mut current = table.get_ref();
    let mut span = Some(table.span());
    for (i, key) in path.iter().enumerate() {
        let (k, v) = current.get_key_value(*key)?;
        span = Some(if i + 1 == path.len() {
            v.span()
        } else {
            k.span()
        });
        match v.get_ref() {
            DeValue::Table(t) => current = t,
            _ => return Some(v.span()),
        }
    }
    span
}

pub(crate) fn hosts(
    reporter: &mut Reporter<'_>,
    hosts: &BTreeMap<String, RateLimitConfig>,
    root: &Spanned<DeTable<'_>>,
) {
    for (host, limits) in hosts {
        rate_limit(reporter, limits, || span_in(root, &["hosts", host]));
        if host.contains('/') || host.contains(':') {
            reporter.error(
                span_in(root, &["hosts", host]),
                format!(
                    "[hosts.\"{host}\"] must be a host name such as \"api.example.com\", not a URL"
                ),
            );
        }
    }
}

pub(crate) fn rate_limit(
    reporter: &mut Reporter<'_>,
    limits: &RateLimitConfig,
    span: impl Fn() -> Option<Range<usize>>,
) {
    for (name, value) in [
        ("per_second", limits.per_second),
        ("per_minute", limits.per_minute),
        ("per_day", limits.per_day),
    ] {
        if value == Some(0) {
            reporter.error(
                span(),
                format!("`{name}` must be at least 1 (remove it for no limit)"),
            );
        }
    }
}

pub(crate) fn check_name(
    reporter: &mut Reporter<'_>,
    what: &str,
    name: &str,
    span: Option<Range<usize>>,
) {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        reporter.error(
            span,
            format!("invalid {what} name `{name}`: use lowercase letters, digits and `_` (it is a SQL name)"),
        );
    }
}
