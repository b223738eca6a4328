//! `affluent streams ...`: the project's event-time windows, run over what their input tables
//! hold, and their state.

use std::process::ExitCode;

use affluent_pipeline::Streams;
use anyhow::Result;
use clap::Subcommand;

use crate::context::{Calls, Context};

/// Streams: event-time windows over tables as they are loaded.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: StreamsCommand,
}

#[derive(Debug, Subcommand)]
enum StreamsCommand {
    /// Every stream: its input, the last input version read, the watermark and its counts.
    Status,
    /// Read what the input tables gained since each stream last ran (all streams by default)
    /// and write the windows: the final ones appended to the table of the stream's name, the
    /// open ones to NAME_open. `affluent run` does this after each load.
    Run {
        /// Streams to run (default: all).
        names: Vec<String>,
    },
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let warehouse = ctx.warehouse(Calls::NoSource)?;
    let project = warehouse.project().clone();
    if project.streams.is_empty() {
        println!(
            "no stream in the project: declare [streams.NAME] with `input`, `key`, `time` and `aggregates`"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let streams = Streams::new(warehouse.clone());
    match args.command {
        StreamsCommand::Status => {
            for (name, s) in &project.streams {
                match streams.status(name)? {
                    None => println!("{name} (reads {}): never ran", s.input),
                    Some((version, t, watermark)) => {
                        let watermark = watermark
                            .and_then(|w| jiff::Timestamp::from_millisecond(w).ok())
                            .map_or("none".to_string(), |w| w.to_string());
                        println!(
                            "{name} (reads {}): up to version {version}, watermark {watermark}; {} events taken ({} late), {} duplicates, {} too late",
                            s.input, t.accepted, t.late, t.duplicates, t.dropped
                        );
                    }
                }
            }
        }
        StreamsCommand::Run { names } => {
            let names = if names.is_empty() {
                project.streams.keys().cloned().collect()
            } else {
                names
            };
            let mut failed = false;
            for name in &names {
                match streams.run(name).await {
                    Ok(r) => println!("{r}"),
                    Err(e) => {
                        failed = true;
                        eprintln!("error: {}", affluent_core::error_chain(&e));
                    }
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
