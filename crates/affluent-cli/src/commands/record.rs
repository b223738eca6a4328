//! `affluent record`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use affluent_config::schema::SourceConfig;
use affluent_sources::IngestOptions;
use affluent_sources::rest::cassette::Recorder;
use anyhow::{Result, bail};

use crate::args::IntervalArgs;
use crate::context::{Calls, Context};
use crate::progress::Bars;

/// Call a REST source's API and save its answers to a cassette, secrets scrubbed.
///
/// The run is a real one (every response is also landed, as `ingest --no-load` would); the
/// cassette is the source's `cassette` file unless --output says otherwise. A source whose
/// `replay` is on (a missing key, AFFLUENT_OFFLINE) replays that file; record always calls the
/// API, so set the source's keys first.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source, as named in [sources.NAME].
    source: String,
    #[command(flatten)]
    interval: IntervalArgs,
    /// Write here (relative to the project) instead of the source's `cassette`.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Keep what the file holds and add these answers (a request recorded again replaces its
    /// old answer); default: the file holds this run only.
    #[arg(long)]
    append: bool,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let source = args.source.as_str();
    let mut project = ctx.project(Calls::Sources(&[source]))?;
    let Some(config) = project.sources.get(source) else {
        let names: Vec<&String> = project.sources.keys().collect();
        bail!(
            "no source `{source}` in the project{}",
            affluent_core::closest(source, &names)
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default()
        );
    };
    let SourceConfig::Rest(rest) = config else {
        bail!("source `{source}` reads files: only REST sources are recorded");
    };
    let path = match (&args.output, &rest.cassette) {
        (Some(p), _) => project.dir.join(p),
        (None, Some(p)) => project.dir.join(p),
        (None, None) => bail!(
            "source `{source}` has no `cassette`: add `cassette = \"cassettes/{source}.json\"` to [sources.{source}], or pass --output FILE"
        ),
    };
    // Recording calls the API, whatever `replay` says: with every variable it reads.
    if let Some(vars) = project.missing_vars.get(source).filter(|v| !v.is_empty()) {
        let vars: Vec<&str> = vars.iter().map(String::as_str).collect();
        bail!(
            "recording `{source}` calls its API, which needs {}: set {} (in the environment or the .env file next to affluent.toml)",
            vars.join(", "),
            if vars.len() == 1 { "it" } else { "them" }
        );
    }
    project.replaying.remove(source);
    let warehouse = affluent_pipeline::open_warehouse(project)?;
    let tz = warehouse.project().source_timezone(source);
    let interval = args.interval.interval(&tz)?;
    let bars = Arc::new(Bars::new(true));
    let recorder = Arc::new(Recorder::new());
    let summary = warehouse
        .connectors()
        .ingest(
            source,
            &IngestOptions {
                interval,
                observer: Some(bars.clone()),
                recorder: Some(recorder.clone()),
            },
        )
        .await;
    bars.finish();
    let summary = summary?;
    for w in &summary.warnings {
        tracing::warn!(source = %source, "{w}");
    }
    println!("{summary}");
    if !summary.errors.is_empty() {
        for e in &summary.errors {
            eprintln!("error: {e}");
        }
        eprintln!(
            "{} request(s) failed: the cassette was left as it was. Fix the cause and record again.",
            summary.errors.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    let recorded = recorder.len();
    let total = recorder.save(&path, source, args.append)?;
    println!(
        "recorded {recorded} answer(s) to {} ({total} in the file), secrets scrubbed",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
