//! `affluent status`.

use std::process::ExitCode;

use anyhow::Result;
use jiff::Timestamp;

use crate::args::{Format, short_time};
use crate::context::{Calls, Context};

/// Per source and model: last success, next run, holes, failures, quota used today, last error.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let runtime = ctx.runtime(Calls::NoSource).await?;
    let now = Timestamp::now();
    let tasks = affluent_pipeline::tasks(&runtime.warehouse, now)?;
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
