//! `affluent tables`.

use std::process::ExitCode;

use anyhow::Result;

use crate::args::Format;
use crate::context::{Calls, Context};

/// List tables and models: rows, columns, version, last commit.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    format: Format,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Merge small files and delete the files replaced more than `[compaction] vacuum_after`
    /// ago; every table and model unless named. Rows, loads and replays are unchanged.
    Optimize {
        /// Tables or models (default: all).
        names: Vec<String>,
    },
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    if let Some(Action::Optimize { names }) = args.action {
        let warehouse = ctx.warehouse(Calls::NoSource)?;
        let names = if names.is_empty() {
            warehouse.names()
        } else {
            names
        };
        for name in names {
            match warehouse.optimize(&name).await? {
                None if args.format == Format::Json => {
                    println!("{}", serde_json::json!({"table": name, "written": false}));
                }
                None => println!("{name}: never written"),
                Some(r) if args.format == Format::Json => {
                    println!("{}", serde_json::to_string(&r)?)
                }
                Some(r) => println!(
                    "{name}: {} files -> {}, {} replaced files deleted, version {}",
                    r.files_before,
                    r.files_after,
                    r.deleted,
                    r.version.map_or_else(|| "-".to_string(), |v| v.to_string())
                ),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
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
