//! `affluent tables`.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::Format;
use crate::context::{Calls, Context};

/// List tables and models: rows, columns, version, last commit.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let tables = ctx.warehouse(Calls::NoSource)?.tables().await?;
    match args.format {
        Format::Json => {
            for t in &tables {
                println!("{}", serde_json::to_string(t)?);
            }
        }
        Format::Table => {
            println!(
                "{:<28} {:<6} {:>10} {:>8} {:>8}  LAST COMMIT",
                "NAME", "KIND", "ROWS", "COLUMNS", "VERSION"
            );
            let dash = || "-".to_string();
            for t in &tables {
                println!(
                    "{:<28} {:<6} {:>10} {:>8} {:>8}  {}",
                    t.name,
                    t.kind,
                    t.rows.map(|r| r.to_string()).unwrap_or_else(dash),
                    t.columns.map(|r| r.to_string()).unwrap_or_else(dash),
                    t.version.map(|r| r.to_string()).unwrap_or_else(dash),
                    t.last_commit
                        .clone()
                        .unwrap_or_else(|| "never written".into())
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
