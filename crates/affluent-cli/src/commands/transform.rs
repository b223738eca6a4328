//! `affluent transform`.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::{IntervalArgs, after_change};
use crate::context::{Calls, Context};

/// Run SQL models (all by default) in dependency order and write their tables; then evaluate
/// the alerts reading them.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Models to run, in dependency order (default: all).
    models: Vec<String>,
    /// The data interval, for models using $interval_start and $interval_end.
    #[command(flatten)]
    interval: IntervalArgs,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let warehouse = ctx.warehouse(Calls::NoSource)?;
    let interval = args.interval.interval(&warehouse.project().timezone)?;
    let reports = warehouse.transform(&args.models, interval).await?;
    if reports.is_empty() {
        println!("no model in the project: declare [models.NAME] with `sql` or `file`");
    }
    for r in &reports {
        println!("{r}");
    }
    // The alerts reading what the models wrote.
    let changed: Vec<&str> = reports
        .iter()
        .filter(|r| r.version.is_some())
        .map(|r| r.model.as_str())
        .collect();
    after_change(&warehouse, &changed).await;
    Ok(ExitCode::SUCCESS)
}
