//! `affluent sinks ...`: the project's sinks (a PostgreSQL warehouse), listed, their progress
//! shown, or brought up to date.

use std::process::ExitCode;

use affluent_sinks::Sinks;
use anyhow::Result;
use clap::Subcommand;

use crate::args::print_sync;
use crate::context::{Calls, Context};

/// Sinks: tables and models written outside Delta (a PostgreSQL warehouse), each Delta version
/// once.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SinksCommand,
}

#[derive(Debug, Subcommand)]
enum SinksCommand {
    /// Every sink with its type and tables, and why it is off if it is.
    List,
    /// Per table: the latest Delta version and the version the sink holds.
    Status {
        /// Sinks (default: all that are on).
        names: Vec<String>,
    },
    /// Write what the tables gained since each sink last wrote them.
    Run {
        /// Sinks (default: all that are on).
        names: Vec<String>,
    },
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let warehouse = ctx.warehouse(Calls::NoSource)?;
    let redactor = warehouse.project().redactor.clone();
    if warehouse.project().sinks.is_empty() {
        println!(
            "no sink in the project: declare [sinks.NAME] with `type = \"postgres\"`, `url` and `tables`"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let sinks = Sinks::new(warehouse);
    match args.command {
        SinksCommand::List => {
            for s in sinks.list() {
                let state = s.off.map_or("on".to_string(), |why| format!("off: {why}"));
                println!("{} ({}): {} [{state}]", s.name, s.kind, s.tables.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        SinksCommand::Status { names } => {
            for (sink, tables) in sinks.status(&names).await? {
                for t in tables {
                    let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
                    let behind = match (t.delta_version, t.written_version) {
                        (Some(d), Some(w)) if d == w => "up to date".to_string(),
                        (Some(_), _) => "behind".to_string(),
                        (None, _) => "table not written yet".to_string(),
                    };
                    let at = t
                        .written_at_ms
                        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                        .map_or(String::new(), |t| format!(", written {t}"));
                    println!(
                        "{sink} <- {}: delta version {}, written version {}{at} ({behind})",
                        t.table,
                        show(t.delta_version),
                        show(t.written_version)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SinksCommand::Run { names } => {
            let results = sinks.run(&names).await?;
            let failed = results.iter().filter(|r| r.is_err()).count();
            for r in &results {
                print_sync(r, &redactor);
            }
            Ok(if failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
