//! `affluent load`.

use std::process::ExitCode;

use affluent_tables::LoadScope;
use anyhow::Result;

use crate::args::{after_change, print_loads, source_or_all};
use crate::context::{Calls, Context};

/// Load landed entries that no load has taken yet into the tables (no network).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only the tables of this source (default: every source).
    source: Option<String>,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let warehouse = ctx.warehouse(Calls::NoSource)?;
    let mut reports = Vec::new();
    for name in source_or_all(warehouse.project(), args.source.as_deref())? {
        reports.extend(warehouse.load_source(&name, &LoadScope::Pending).await?);
    }
    if reports.is_empty() {
        println!("no table reads these sources: declare [tables.NAME] with `source = ...`");
    }
    let failed = print_loads(&reports);
    let changed: Vec<&str> = reports
        .iter()
        .filter(|r| r.commits > 0)
        .map(|r| r.table.as_str())
        .collect();
    after_change(&warehouse, &changed).await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
