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
    /// With `[bus] kind = "nats"`: compute the windows of the messages the loads publish, for
    /// ever (or until none is pending, with --until-idle). Start as many as the bus has
    /// partitions: they share the work, and one killed leaves its messages to the others.
    Work {
        /// Streams to work on (default: all).
        names: Vec<String>,
        /// Stop once no message is pending or being processed by another worker.
        #[arg(long)]
        until_idle: bool,
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
            let names = names_or_all(&project, names);
            let mut results = Vec::new();
            for name in &names {
                results.push(streams.run(name).await);
            }
            return Ok(print_all(results));
        }
        StreamsCommand::Work { names, until_idle } => {
            if project.bus.kind != affluent_config::schema::BusKind::Nats {
                anyhow::bail!(
                    "`affluent streams work` processes messages of a NATS bus, and {} has none: declare `[bus] kind = \"nats\"` (the embedded bus computes the windows in the loading process)",
                    project.file.display()
                );
            }
            let names = names_or_all(&project, names);
            let bus = streams.bus().await?;
            for name in &names {
                eprintln!(
                    "working on stream {name}: JetStream stream {}, consumer `windows`",
                    bus.stream_name(name)
                );
            }
            let results =
                futures::future::join_all(names.iter().map(|name| streams.work(name, until_idle)))
                    .await;
            return Ok(print_all(results));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The streams named, or every stream of the project.
fn names_or_all(project: &affluent_config::Project, names: Vec<String>) -> Vec<String> {
    if names.is_empty() {
        project.streams.keys().cloned().collect()
    } else {
        names
    }
}

/// Prints each report or error; fails when one failed.
fn print_all<T: std::fmt::Display>(
    results: Vec<Result<T, affluent_pipeline::streams::StreamError>>,
) -> ExitCode {
    let mut failed = false;
    for result in results {
        match result {
            Ok(r) => println!("{r}"),
            Err(e) => {
                failed = true;
                eprintln!("error: {}", affluent_core::error_chain(&e));
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
