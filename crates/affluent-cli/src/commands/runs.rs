//! `affluent runs`.

use std::process::ExitCode;

use affluent_core::TaskId;
use anyhow::Result;

use crate::args::{Format, short_time};
use crate::context::{Calls, Context};

/// Run history, newest first, with counts and durations.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this source or model (NAME, source:NAME or model:NAME).
    task: Option<String>,
    /// Only failed runs.
    #[arg(long)]
    failed: bool,
    /// How many runs.
    #[arg(long, default_value_t = 30)]
    limit: i64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let project = ctx.project(Calls::NoSource)?;
    let store = crate::context::store(&project).await?;
    // A bare name is a source's when the project declares one by that name, else a model's.
    let task = match args.task.as_deref() {
        None => None,
        Some(t) => Some(match t.parse::<TaskId>() {
            Ok(id) => id,
            Err(_) if project.sources.contains_key(t) => TaskId::source(t),
            Err(_) => TaskId::model(t),
        }),
    };
    let rows = store.runs(task.as_ref(), args.failed, args.limit).await?;
    if matches!(args.format, Format::Json) {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<26} {:<42} {:<9} {:<8} {:>8} {:>8} {:>9}  ERROR",
        "STARTED (UTC)", "TASK", "INTERVAL", "TRIGGER", "STATUS", "RECORDS", "LOADED", "SECONDS"
    );
    for r in &rows {
        let seconds = r
            .finished
            .map(|f| format!("{:.2}", f.duration_since(r.started).as_secs_f64()))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<26} {:<42} {:<9} {:<8} {:>8} {:>8} {:>9}  {}",
            short_time(Some(&r.started.to_string())),
            r.task.to_string(),
            r.interval.to_string(),
            r.trigger,
            r.status,
            r.records.map_or("-".into(), |n| n.to_string()),
            r.loaded.map_or("-".into(), |n| n.to_string()),
            seconds,
            r.error.as_deref().unwrap_or("")
        );
    }
    if rows.is_empty() {
        println!("no runs yet: `affluent run` or `affluent backfill` record them");
    }
    Ok(ExitCode::SUCCESS)
}
