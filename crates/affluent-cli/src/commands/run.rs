//! `affluent run`: the scheduler wired to ingestion, loads and models, with the dashboard.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use affluent_pipeline::{Pipeline, Runtime};
use affluent_scheduler::{Notifier, Options, Scheduler};
use anyhow::{Context as _, Result, bail};
use jiff::Timestamp;

use crate::args::parse_time;
use crate::context::{Calls, Context};

/// Run the scheduler: every scheduled source and the models downstream, live runs on time,
/// holes since `start_date` filled, failures retried, until Ctrl-C / SIGTERM.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Exit once every interval ending by this time is covered (a date, a date-time or
    /// RFC 3339; `now` for the present).
    #[arg(long)]
    until: Option<String>,
    /// Catch up newest intervals first.
    #[arg(long)]
    newest_first: bool,
    /// Serve the dashboard on this address (default: `[dashboard] listen`, when the project
    /// declares pages).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Do not serve the dashboard.
    #[arg(long, conflicts_with = "listen")]
    no_serve: bool,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let project = ctx.project(Calls::AllSources)?;
    let serve = match (args.listen, args.no_serve) {
        (_, true) => None,
        (Some(addr), _) => Some(addr),
        (None, false) if !project.pages.is_empty() => Some(affluent_web::listen_addr(&project)),
        _ => None,
    };
    let until = match args.until.as_deref() {
        None => None,
        Some("now") => Some(Timestamp::now()),
        Some(t) => {
            Some(parse_time(t, &project.timezone).with_context(|| format!("--until {t:?}"))?)
        }
    };
    let runtime = crate::context::runtime(project).await?;
    schedule(&runtime, until, args.newest_first, serve).await
}

/// Runs the scheduler over a project's runtime until a signal (or `until`), serving the
/// dashboard on `serve` beside it.
pub async fn schedule(
    runtime: &Runtime,
    until: Option<Timestamp>,
    newest_first: bool,
    serve: Option<SocketAddr>,
) -> Result<ExitCode> {
    let project = runtime.project();
    let mut options = Options::from_config(&project.scheduler);
    options.until = until;
    options.newest_first = newest_first;
    let tasks = affluent_pipeline::tasks(&runtime.warehouse, Timestamp::now())?;
    if tasks.is_empty() {
        bail!(
            "nothing to schedule: give a source `schedule = \"0 * * * *\"` (cron) or `every = \"1h\"`"
        );
    }
    for t in &tasks {
        let when = match (&t.schedule, t.triggered) {
            (_, true) => "after its inputs load".to_string(),
            (Some(s), false) => s.text().to_string(),
            (None, false) => "unscheduled".to_string(),
        };
        let since = t
            .start
            .filter(|_| t.catchup)
            .map(|s| format!(", covering since {s}"))
            .unwrap_or_default();
        let replays =
            t.id.is_source()
                .then(|| project.replay_note(&t.id.name))
                .flatten()
                .map(|note| format!(", REPLAYING {note}: no API call"))
                .unwrap_or_default();
        eprintln!("{}: {when}{since}{replays}", t.id);
    }
    eprintln!("worker {}; stop with Ctrl-C", options.worker);
    // The dashboard runs beside the scheduler; a port in use does not stop the pipeline.
    let dashboard = match serve {
        Some(addr) => match crate::commands::serve::start(runtime, addr).await {
            Ok(server) => Some(server),
            Err(e) => {
                eprintln!("warning: dashboard not started: {e:#}");
                None
            }
        },
        None => None,
    };
    let pipeline = Arc::new(Pipeline::new(runtime.warehouse.clone()));
    let mut scheduler = Scheduler::new(runtime.store.clone(), tasks, pipeline.clone(), options);
    if let Some(config) = project.notify.clone() {
        scheduler = scheduler.with_notifier(Notifier::new(
            &project.name,
            config,
            project.redactor.clone(),
        ));
    }
    // Files replaced by compactions, merges and replaces are deleted once `vacuum_after` old,
    // without waiting for the table's next load.
    let tidy = {
        let warehouse = runtime.warehouse.clone();
        let every = project
            .compaction
            .vacuum_after()
            .max(std::time::Duration::from_secs(30));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match warehouse.tidy().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!("{n} replaced table files deleted"),
                    Err(e) => tracing::warn!("tidying tables: {}", affluent_core::error_chain(&e)),
                }
            }
        })
    };
    // Sinks catch up at start and each minute, so that one whose database was away is written
    // without waiting for the next change of its tables.
    let catch_up = (!pipeline.sinks().is_empty()).then(|| {
        let pipeline = pipeline.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                pipeline.sinks().catch_up().await;
            }
        })
    });
    let result = scheduler.run(crate::signals::shutdown()).await;
    tidy.abort();
    if let Some(task) = catch_up {
        task.abort();
    }
    if let Some(server) = dashboard {
        server.shutdown().await;
    }
    result?;
    Ok(ExitCode::SUCCESS)
}
