//! Arguments and lookups several commands share: times and intervals, output formats, "this
//! source or every source".

use affluent_config::Project;
use affluent_core::Interval;
use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// An optional data interval given as `--from` and `--to`.
#[derive(Debug, Clone, Args)]
pub struct IntervalArgs {
    /// Interval start (included): RFC 3339, or a date / date-time read in the time zone of the
    /// source (or project): 2024-03-01, 2024-03-01T09:00.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Interval end (excluded).
    #[arg(long, requires = "from")]
    pub to: Option<String>,
}

impl IntervalArgs {
    /// The interval, when both bounds are given.
    pub fn interval(&self, tz: &TimeZone) -> Result<Option<Interval>> {
        match (&self.from, &self.to) {
            (Some(from), Some(to)) => Ok(Some(parse_range(from, to, tz)?)),
            _ => Ok(None),
        }
    }
}

/// RFC 3339, or a civil date / date-time read in `tz` (the project file's `start_date` syntax).
pub fn parse_time(text: &str, tz: &TimeZone) -> Result<Timestamp> {
    affluent_config::parse_start(text, tz, Timestamp::now()).map_err(anyhow::Error::msg)
}

/// `--from` and `--to` as an interval: each bound read with [`parse_time`], the end after the
/// start.
pub fn parse_range(from: &str, to: &str, tz: &TimeZone) -> Result<Interval> {
    let start = parse_time(from, tz).with_context(|| format!("--from {from:?}"))?;
    let end = parse_time(to, tz).with_context(|| format!("--to {to:?}"))?;
    if end <= start {
        bail!("--to {to} must be after --from {from}");
    }
    Interval::new(start, end).map_err(anyhow::Error::msg)
}

/// A bound given alone (`--from` or `--to`), named in errors.
pub fn parse_bound(flag: &str, text: Option<&str>, tz: &TimeZone) -> Result<Option<Timestamp>> {
    text.map(|t| parse_time(t, tz).with_context(|| format!("{flag} {t:?}")))
        .transpose()
}

/// `NAME` when given (it must be declared), else every source of the project.
pub fn source_or_all(project: &Project, source: Option<&str>) -> Result<Vec<String>> {
    match source {
        Some(s) => {
            check_source(project, s)?;
            Ok(vec![s.to_string()])
        }
        None => Ok(project.sources.keys().cloned().collect()),
    }
}

/// Fails with a hint when `source` is not declared.
pub fn check_source(project: &Project, source: &str) -> Result<()> {
    if project.sources.contains_key(source) {
        return Ok(());
    }
    let known: Vec<&str> = project.sources.keys().map(String::as_str).collect();
    let hint = affluent_core::closest(source, &known)
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    bail!(
        "no source named `{source}` in the project{hint} (declared: {})",
        known.join(", ")
    )
}

/// How listings print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// One JSON object per line.
    Json,
}

/// `2024-03-01T09:00:00.123Z` as `2024-03-01 09:00:00`; `-` for none.
pub fn short_time(t: Option<&str>) -> String {
    t.map(|t| t.trim_end_matches('Z').replace('T', " "))
        .map(|t| t.chars().take(19).collect())
        .unwrap_or_else(|| "-".into())
}

/// Prints load reports; true when some entry could not be loaded.
pub fn print_loads(reports: &[affluent_tables::LoadReport]) -> bool {
    let mut failed = false;
    for r in reports {
        println!("{r}");
        for e in &r.errors {
            failed = true;
            eprintln!("error: table {}: {e}", r.table);
        }
    }
    failed
}

/// Prints what an alert's evaluation found (`dry`: a test, nothing recorded).
pub fn print_evaluation(e: &affluent_alerts::Evaluation, dry: bool) {
    println!(
        "{}: {} entities, condition holds on {}, {} {}, {} cleared{}",
        e.alert,
        e.entities,
        e.holding,
        e.fired.len(),
        if dry { "would fire" } else { "fired" },
        e.cleared,
        if !e.recovered.is_empty() {
            format!(
                ", {} firings of an interrupted evaluation recorded",
                e.recovered.len()
            )
        } else {
            String::new()
        }
    );
    for f in &e.fired {
        println!("  [{}] {} {}", f.severity, f.entity, f.message);
    }
    for err in &e.errors {
        println!("  not evaluated: {err}");
    }
}

/// What follows new versions of `changed` (tables a load or a model run just wrote): the
/// streams, ML models, alerts and sinks reading them ([`affluent_pipeline::Downstream`]), each
/// printed.
pub async fn after_change(warehouse: &affluent_tables::Warehouse, changed: &[&str]) {
    let followed = affluent_pipeline::Downstream::new(warehouse.clone())
        .after_change(changed, None)
        .await;
    for r in followed.streams.iter().filter(|r| r.versions.is_some()) {
        println!("{r}");
    }
    for r in &followed.trained {
        println!("{r}");
    }
    for r in &followed.models {
        println!("{r}");
    }
    for e in &followed.evaluations {
        print_evaluation(e, false);
    }
    for result in &followed.syncs {
        print_sync(result, warehouse.project().redactor.as_ref());
    }
}

/// One line per table a sink wrote (or failed to).
pub fn print_sync(
    result: &Result<affluent_sinks::TableSync, affluent_sinks::SinkError>,
    redactor: &affluent_core::Redactor,
) {
    match result {
        Ok(s) => {
            let version = s.version.map_or("-".to_string(), |v| v.to_string());
            let detail = match s.scope.as_str() {
                "up to date" | "not written yet" => s.scope.clone(),
                scope => format!(
                    "{scope}: {} rows sent, {} written, {} removed",
                    s.rows_sent, s.rows_written, s.rows_removed
                ),
            };
            println!(
                "sink {} <- {} (version {version}): {detail}",
                s.sink, s.table
            );
            for c in &s.schema_changes {
                println!("  {c}");
            }
            if s.nul_replaced > 0 {
                println!(
                    "  {} values held NUL characters, which PostgreSQL text cannot store: written as U+FFFD",
                    s.nul_replaced
                );
            }
        }
        Err(e) => println!(
            "sink error: {}",
            redactor.redact(&affluent_core::error_chain(e))
        ),
    }
}
