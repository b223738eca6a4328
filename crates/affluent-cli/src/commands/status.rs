//! `affluent status`.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use jiff::Timestamp;

use crate::args::{Format, parse_time, short_time};
use crate::context::{Calls, Context};

/// Per source and model: last success, next run, holes, failures, quota used today, last error;
/// with `--coverage`, where each interval stands over a range.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these sources or models (NAME, source:NAME or model:NAME); all by default.
    tasks: Vec<String>,
    /// Each task's intervals over a range, in runs of one state (done, landed, pending,
    /// running, failed, missing).
    #[arg(long)]
    coverage: bool,
    /// Coverage from (RFC 3339, a date in the task's time zone, or relative: -30d); default:
    /// the task's start date, else 30 days ago.
    #[arg(long, requires = "coverage", allow_hyphen_values = true)]
    from: Option<String>,
    /// Coverage to (excluded); default: now.
    #[arg(long, requires = "coverage", allow_hyphen_values = true)]
    to: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let runtime = ctx.runtime(Calls::NoSource).await?;
    let now = Timestamp::now();
    let mut tasks = affluent_pipeline::tasks(&runtime.warehouse, now)?;
    if !args.tasks.is_empty() {
        let mut chosen = Vec::new();
        for name in &args.tasks {
            chosen.push(affluent_scheduler::find_task(&tasks, name)?.clone());
        }
        tasks = chosen;
    }
    if args.coverage {
        return coverage(&runtime, &tasks, &args, now).await;
    }
    let out = affluent_pipeline::status::status(
        &runtime.store,
        &tasks,
        runtime.warehouse.connectors(),
        now,
    )
    .await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&out)?),
        Format::Table if out.is_empty() => {
            println!(
                "no scheduled task: give a source `schedule = \"0 * * * *\"` or `every = \"1h\"`"
            )
        }
        Format::Table => {
            println!(
                "{:<28} {:<16} {:<22} {:<22} {:>6} {:>6} {:>9}  LAST ERROR",
                "TASK",
                "SCHEDULE",
                "LAST SUCCESS (UTC)",
                "NEXT RUN (UTC)",
                "HOLES",
                "FAILED",
                "QUOTA"
            );
            for s in &out {
                println!(
                    "{:<28} {:<16} {:<22} {:<22} {:>6} {:>6} {:>9}  {}",
                    s.task.to_string(),
                    s.schedule,
                    short_time(s.last_success.as_deref()),
                    short_time(s.next_run.as_deref()),
                    s.holes,
                    s.failed,
                    s.quota_today.as_deref().unwrap_or("-"),
                    s.last_error.as_deref().unwrap_or("")
                );
                if let Some(h) = &s.first_hole {
                    println!("{:<28} first hole {h}", "");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--coverage`: per task, its segments over the range.
async fn coverage(
    runtime: &affluent_pipeline::Runtime,
    tasks: &[affluent_scheduler::TaskSpec],
    args: &Args,
    now: Timestamp,
) -> Result<ExitCode> {
    let project = runtime.project();
    let mut all = Vec::with_capacity(tasks.len());
    for task in tasks {
        let tz = match task.id.kind {
            affluent_core::TaskKind::Source => project.source_timezone(&task.id.name),
            affluent_core::TaskKind::Model => project.timezone.clone(),
        };
        let from = match &args.from {
            Some(f) => parse_time(f, &tz).with_context(|| format!("--from {f:?}"))?,
            None => affluent_pipeline::coverage::default_from(task, now),
        };
        let to = match &args.to {
            Some(t) => parse_time(t, &tz).with_context(|| format!("--to {t:?}"))?,
            None => now,
        };
        all.push(affluent_pipeline::coverage::coverage(&runtime.store, task, from, to, now).await?);
    }
    if matches!(args.format, Format::Json) {
        for c in &all {
            println!("{}", serde_json::to_string(c)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    for c in &all {
        let counts: Vec<String> = c
            .counts
            .iter()
            .map(|(s, n)| format!("{n} {}", s.as_str()))
            .collect();
        println!(
            "{} ({}) from {} to {}: {}",
            c.task,
            c.schedule,
            short_time(Some(&c.from.to_string())),
            short_time(Some(&c.to.to_string())),
            if counts.is_empty() {
                "no interval".to_string()
            } else {
                format!("{}; {} hole(s)", counts.join(", "), c.holes())
            }
        );
        for s in &c.segments {
            println!(
                "  {:<8} {} → {}  {:>6} interval(s){}{}",
                s.state.as_str(),
                short_time(Some(&s.start.to_string())),
                short_time(Some(&s.end.to_string())),
                s.intervals,
                if s.state.is_hole() { "  ← hole" } else { "" },
                s.error
                    .as_deref()
                    .map(|e| format!("  {}", e.lines().next().unwrap_or("")))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
