//! `affluent ingest`.

use std::process::ExitCode;
use std::sync::Arc;

use affluent_sources::IngestOptions;
use affluent_tables::LoadScope;
use anyhow::Result;

use crate::args::{IntervalArgs, after_change, print_loads};
use crate::context::{Calls, Context};
use crate::progress::Bars;

/// Fetch a source for one data interval and land every response.
///
/// Without --from/--to the interval is the last complete period of the source's `interval`
/// (default: yesterday in the project's time zone). Times are RFC 3339, or a date / date-time
/// read in the project's time zone: 2024-03-01, 2024-03-01T09:00.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source, as named in [sources.NAME].
    source: String,
    #[command(flatten)]
    interval: IntervalArgs,
    /// Print the run summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Only land: do not load the source's tables afterwards.
    #[arg(long)]
    no_load: bool,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let source = args.source.as_str();
    let warehouse = ctx.warehouse(Calls::Sources(&[source]))?;
    let tz = warehouse.project().source_timezone(source);
    let interval = args.interval.interval(&tz)?;
    let bars = Arc::new(Bars::new(true));
    let summary = warehouse
        .connectors()
        .ingest(
            source,
            &IngestOptions {
                interval,
                observer: Some(bars.clone()),
                recorder: None,
            },
        )
        .await;
    bars.finish();
    let summary = summary?;
    for w in &summary.warnings {
        tracing::warn!(source = %source, "{w}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        if let Some(i) = summary.interval {
            eprintln!("interval {i}");
        }
        println!("{summary}");
    }
    let mut load_failed = false;
    if !args.no_load {
        let reports = warehouse.load_source(source, &LoadScope::Pending).await?;
        load_failed = print_loads(&reports);
        let changed: Vec<&str> = reports
            .iter()
            .filter(|r| r.commits > 0)
            .map(|r| r.table.as_str())
            .collect();
        after_change(&warehouse, &changed).await;
    }
    if summary.errors.is_empty() && !load_failed {
        Ok(ExitCode::SUCCESS)
    } else if summary.errors.is_empty() {
        Ok(ExitCode::FAILURE)
    } else {
        for e in &summary.errors {
            eprintln!("error: {e}");
        }
        eprintln!(
            "{} request(s) failed; everything else was landed. Run the same command again to retry.",
            summary.errors.len()
        );
        Ok(ExitCode::FAILURE)
    }
}
