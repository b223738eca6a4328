//! `affluent backfill`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use affluent_core::{Interval, TaskKind};
use affluent_pipeline::{Pipeline, Runtime};
use affluent_scheduler::backfill::{self, Reprocess};
use affluent_scheduler::{IntervalState, Options, find_task};
use anyhow::Result;
use clap::ValueEnum;
use jiff::Timestamp;

use crate::args::parse_range;
use crate::context::{Calls, Context, require};
use crate::progress::Bars;

/// Run a source (or model) over a range of intervals, then the models downstream; an
/// interrupted backfill resumes when asked again.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source or model (NAME, source:NAME or model:NAME).
    task: String,
    /// Range start (included): RFC 3339, or a date / date-time in the source's time zone.
    #[arg(long)]
    from: String,
    /// Range end (excluded).
    #[arg(long)]
    to: String,
    /// Which intervals that already ran run again.
    #[arg(long, value_enum, default_value_t = ReprocessArg::None)]
    reprocess: ReprocessArg,
    /// Print the intervals that would run, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Newest intervals first.
    #[arg(long)]
    newest_first: bool,
    /// Tries per interval before it is reported failed.
    #[arg(long, default_value_t = 3)]
    attempts: u32,
}

/// Which intervals run again.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReprocessArg {
    /// Only intervals that never ran.
    None,
    /// Also the failed ones.
    Failed,
    /// Every interval of the range.
    All,
}

/// How a backfill runs.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    /// Which intervals that already ran run again.
    pub reprocess: Reprocess,
    /// Print what would run, change nothing.
    pub dry_run: bool,
    /// Newest intervals first.
    pub newest_first: bool,
    /// Tries per interval.
    pub attempts: u32,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let project = ctx.project(Calls::NoSource)?;
    let runtime = crate::context::runtime(project).await?;
    let tasks = affluent_pipeline::tasks(&runtime.warehouse, Timestamp::now())?;
    let task = find_task(&tasks, &args.task)?;
    // A source's intervals are read in its time zone, and it must be able to run.
    let tz = match task.id.kind {
        TaskKind::Source => {
            require(runtime.project(), Calls::Sources(&[task.id.name.as_str()]))?;
            runtime.project().source_timezone(&task.id.name)
        }
        TaskKind::Model => runtime.project().timezone.clone(),
    };
    let range = parse_range(&args.from, &args.to, &tz)?;
    let request = Request {
        reprocess: match args.reprocess {
            ReprocessArg::None => Reprocess::None,
            ReprocessArg::Failed => Reprocess::Failed,
            ReprocessArg::All => Reprocess::All,
        },
        dry_run: args.dry_run,
        newest_first: args.newest_first,
        attempts: args.attempts,
    };
    backfill(&runtime, &args.task, range, request).await
}

/// Backfills a task (`NAME`, `source:NAME` or `model:NAME`) over `range`, with a progress bar.
pub async fn backfill(
    runtime: &Runtime,
    task: &str,
    range: Interval,
    request: Request,
) -> Result<ExitCode> {
    let options = Options::from_config(&runtime.project().scheduler);
    let store = &runtime.store;
    let tasks = affluent_pipeline::tasks(&runtime.warehouse, Timestamp::now())?;
    let spec = find_task(&tasks, task)?.clone();
    let plan = backfill::plan(
        store,
        &spec,
        range.start,
        range.end,
        request.reprocess,
        request.newest_first,
        request.dry_run,
    )
    .await?;
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, s) in &plan.intervals {
        *by_state
            .entry(s.map_or("never run", IntervalState::as_str))
            .or_default() += 1;
    }
    let states: Vec<String> = by_state.iter().map(|(k, v)| format!("{v} {k}")).collect();
    eprintln!(
        "{}: {} interval(s) in range ({}); {} to run{}",
        spec.id,
        plan.intervals.len(),
        states.join(", "),
        plan.to_run.len(),
        if plan.resumed {
            " (resuming the unfinished identical backfill)"
        } else {
            ""
        }
    );
    if request.dry_run {
        for i in &plan.to_run {
            println!("{}\t{}\t{}", spec.id, i.start, i.end);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let bars = Bars::new(false);
    let outcome = backfill::run(
        store,
        &tasks,
        Arc::new(Pipeline::new(runtime.warehouse.clone())),
        &options,
        &plan,
        range.start,
        range.end,
        request.attempts,
        &bars,
    )
    .await;
    bars.finish();
    let outcome = outcome?;
    println!(
        "backfill {}: {} interval(s) run, {} failed, {} left to another process",
        spec.id,
        outcome.succeeded,
        outcome.failed.len(),
        outcome.skipped.len()
    );
    for (task, i, e) in &outcome.failed {
        eprintln!("error: {task} {i}: {e}");
    }
    if outcome.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "run the same command again to resume; failed intervals stay holes until they succeed"
        );
        Ok(ExitCode::FAILURE)
    }
}
