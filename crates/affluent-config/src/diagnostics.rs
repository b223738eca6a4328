//! Errors in the project file, each with file, line and column, and the machinery that finds
//! them all at once: deserialize, and on an error remove the offending key and try again.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One problem in the project file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and what to do.
    pub message: String,
    /// The offending line of the file.
    pub source_line: String,
    /// A warning rather than an error.
    pub warning: bool,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            if self.warning { "warning" } else { "error" },
            self.message
        )?;
        let gutter = self.line.to_string().len();
        writeln!(f, "{:gutter$} |", "")?;
        writeln!(f, "{} | {}", self.line, self.source_line)?;
        write!(
            f,
            "{:gutter$} | {:>col$}",
            "",
            "^",
            col = self.column.max(1)
        )
    }
}

/// Every problem found in the project file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() > 1 {
            write!(f, "\n\n{} errors in the project file", self.0.len())?;
        }
        Ok(())
    }
}

/// Collects diagnostics against one file's text.
pub(crate) struct Reporter<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    pub diagnostics: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    /// The source whose keys are being read or checked, if any.
    pub scope: Option<String>,
    /// Sources whose problems are set aside rather than fatal (see [`Reporter::defer`]).
    pub deferred_sources: BTreeSet<String>,
    /// The problems set aside, per source.
    pub deferred: BTreeMap<String, Vec<Diagnostic>>,
    /// Per source, the variables it reads that give no value (unset, `${VAR:-}` or empty):
    /// what `replay = "auto"` looks at.
    pub missing_vars: BTreeMap<String, BTreeSet<String>>,
    /// Sources with a `cassette` and `replay` other than `"never"`: an unset variable of theirs
    /// sets them aside (they may replay) rather than failing the load.
    pub replayable: BTreeSet<String>,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Self {
            file,
            text,
            diagnostics: Vec::new(),
            warnings: Vec::new(),
            scope: None,
            deferred_sources: BTreeSet::new(),
            deferred: BTreeMap::new(),
            missing_vars: BTreeMap::new(),
            replayable: BTreeSet::new(),
        }
    }

    /// From now on, the problems of `source` are kept aside: a command that does not call it
    /// need not stop for them (its `${VAR}`s are unset).
    pub(crate) fn defer(&mut self, source: &str) {
        self.deferred_sources.insert(source.to_string());
    }

    /// Reports a problem at a byte span (`None`: the start of the file).
    pub(crate) fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let diagnostic = self.diagnostic(span, message.into());
        let list = match &self.scope {
            Some(source) if self.deferred_sources.contains(source) => {
                self.deferred.entry(source.clone()).or_default()
            }
            _ => &mut self.diagnostics,
        };
        if !list.contains(&diagnostic) {
            list.push(diagnostic);
        }
    }

    /// Reports something that does not stop the project.
    pub(crate) fn warn(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let mut diagnostic = self.diagnostic(span, message.into());
        diagnostic.warning = true;
        self.warnings.push(diagnostic);
    }

    fn diagnostic(&self, span: Option<Range<usize>>, message: String) -> Diagnostic {
        let offset = span.map(|s| s.start).unwrap_or(0).min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = self.text[line_start..offset].chars().count() + 1;
        let line_end = self.text[line_start..]
            .find('\n')
            .map(|i| line_start + i)
            .unwrap_or(self.text.len());
        Diagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            message,
            source_line: self.text[line_start..line_end]
                .trim_end_matches('\r')
                .to_string(),
            warning: false,
        }
    }

    /// Deserializes `T` from a table, reporting every error: after each error the key at fault
    /// is removed and deserialization tried again, so one typo does not hide the next. Returns
    /// the value read once the faulty keys are removed, so later checks can still run on it
    /// (the load fails anyway when anything was reported). `context` names the table.
    pub(crate) fn deserialize_all<T: DeserializeOwned>(
        &mut self,
        mut table: Spanned<DeTable<'_>>,
        context: &str,
    ) -> Option<T> {
        let mut removed_keys: Vec<String> = Vec::new();
        for _ in 0..64 {
            let deserializer = toml::de::Deserializer::from(table.clone());
            match T::deserialize(deserializer) {
                Ok(value) => return Some(value),
                Err(err) => {
                    let span = err.span();
                    let message = err.message().trim().to_string();
                    // A required key we removed ourselves after reporting it is not missing.
                    let spurious = missing_field(&message)
                        .is_some_and(|k| removed_keys.iter().any(|r| r == k));
                    if !spurious {
                        let at = span
                            .clone()
                            .and_then(|s| path_at(&table, &s))
                            .map(|p| join_path(context, &p))
                            .unwrap_or_else(|| context.to_string());
                        self.error(span.clone(), humanize(&message, &at));
                        // A typo'd key stands for the key it resembles: that one is not
                        // "missing" on top.
                        if let Some(rest) = message.strip_prefix("unknown field `") {
                            let (key, expected) = split_expected(rest);
                            if let Some(meant) = closest(key, &expected) {
                                removed_keys.push(meant.to_string());
                            }
                        }
                    }
                    let Some(span) = span else { break };
                    match remove_at(table.get_mut(), &span) {
                        Some(key) => removed_keys.push(key),
                        None => break,
                    }
                }
            }
        }
        None
    }
}

fn join_path(context: &str, rest: &str) -> String {
    match (context.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (_, true) => context.to_string(),
        _ => format!("{context}.{rest}"),
    }
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// The dotted key path of the table holding the entry at `span` (the table's own path when the
/// span is the table's). Searches the whole tree: implicit tables of dotted keys have no useful
/// span of their own.
fn path_at(table: &Spanned<DeTable<'_>>, span: &Range<usize>) -> Option<String> {
    fn walk(table: &DeTable<'_>, span: &Range<usize>, prefix: &str) -> Option<String> {
        for (k, v) in table.iter() {
            let key = join_path(prefix, k.get_ref());
            if contains(&k.span(), span) {
                return Some(prefix.to_string());
            }
            match v.get_ref() {
                DeValue::Table(inner) => {
                    if let Some(found) = walk(inner, span, &key) {
                        return Some(found);
                    }
                    if v.span() == *span {
                        return Some(key);
                    }
                }
                _ if contains(&v.span(), span) => return Some(prefix.to_string()),
                _ => {}
            }
        }
        None
    }
    walk(table.get_ref(), span, "")
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

/// Removes the entry the error at `span` is about; returns its key, or `None` when nothing
/// could be removed.
fn remove_at(table: &mut DeTable<'_>, span: &Range<usize>) -> Option<String> {
    // A key, or a non-table value, at the span: remove that entry.
    let direct = table
        .iter()
        .find(|(k, v)| {
            contains(&k.span(), span)
                || (!matches!(v.get_ref(), DeValue::Table(_)) && contains(&v.span(), span))
        })
        .map(|(k, _)| k.get_ref().to_string());
    if let Some(key) = direct {
        table.remove(key.as_str());
        return Some(key);
    }
    // Else look inside sub-tables.
    for (_, v) in table.iter_mut() {
        if let DeValue::Table(inner) = v.get_mut()
            && let Some(key) = remove_at(inner, span)
        {
            return Some(key);
        }
    }
    // Else the error is about a table as a whole (a missing key): remove that table.
    let whole = table
        .iter()
        .find(|(_, v)| matches!(v.get_ref(), DeValue::Table(_)) && contains(&v.span(), span))
        .map(|(k, _)| k.get_ref().to_string())?;
    table.remove(whole.as_str());
    Some(whole)
}

/// Rewrites serde's messages into ones that say where and what to do.
fn humanize(message: &str, at: &str) -> String {
    let place = if at.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in [{at}]")
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (key, expected) = split_expected(rest);
        let suggestion = closest(key, &expected)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        return format!(
            "unknown key `{key}` {place}{suggestion} (valid keys: {})",
            expected.join(", ")
        );
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (value, expected) = split_expected(rest);
        let suggestion = closest(value, &expected)
            .map(|s| format!("; did you mean \"{s}\"?"))
            .unwrap_or_default();
        return format!(
            "unknown value \"{value}\" {place}{suggestion} (expected one of: {})",
            expected.join(", ")
        );
    }
    if let Some(key) = missing_field(message) {
        return format!("missing required key `{key}` {place}");
    }
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "?"));
        return format!(
            "wrong type {place}: found {found}, expected {}",
            expected_in_words(expected)
        );
    }
    if message.starts_with("data did not match any variant of untagged enum ParamValue") {
        return format!(
            "invalid parameter {place}: expected a string, number, boolean or {{ type = \"resolve\", resource = \"SOURCE\", field = \"PATH\" }}"
        );
    }
    format!("{message} {place}")
}

fn split_expected(rest: &str) -> (&str, Vec<String>) {
    let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
    let expected = tail
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect();
    (name, expected)
}

fn expected_in_words(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a sequence" => "an array".into(),
        "a map" => "a table".into(),
        other => other.to_string(),
    }
}

/// The closest candidate, if plausibly a typo.
pub(crate) fn closest<'a>(word: &str, candidates: &'a [String]) -> Option<&'a str> {
    affluent_core::closest(word, candidates)
}
