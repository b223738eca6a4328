//! The `affluent` binary: clap subcommands over the library crates. Each subcommand is a module
//! of [`commands`] with its own arguments; this file parses, sets up logs and dispatches.
//! Printing and exit codes live in the commands; everything else lives in the crates.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

mod args;
mod commands;
mod context;
mod progress;
mod signals;

use commands::*;
use context::Context;

/// affluent: poll REST APIs and files, keep every raw response, and load them into tables,
/// from one binary and one project file (affluent.toml).
#[derive(Debug, Parser)]
#[command(name = "affluent", version, propagate_version = true)]
struct Cli {
    /// Project directory holding affluent.toml.
    #[arg(long, global = true, default_value = ".", env = "AFFLUENT_PROJECT")]
    project: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// More logs (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    Validate(validate::Args),
    Ingest(ingest::Args),
    Record(record::Args),
    Load(load::Args),
    Transform(transform::Args),
    Tables(tables::Args),
    Query(query::Args),
    Export(export::Args),
    Run(run::Args),
    Serve(serve::Args),
    User(user::Args),
    Demo(demo::Args),
    Backfill(backfill::Args),
    Status(status::Args),
    Runs(runs::Args),
    Simulate(simulate::Args),
    Landing(landing::Args),
    Lineage(lineage::Args),
    Quarantine(quarantine::Args),
    Alerts(alerts::Args),
    Ml(ml::Args),
    Streams(streams::Args),
    Sinks(sinks::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format, cli.verbose);
    init_panic_hook();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = Context::new(cli.project);
    match runtime.block_on(dispatch(&ctx, cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", ctx.redact(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(ctx: &Context, command: Command) -> Result<ExitCode> {
    match command {
        Command::Validate(a) => validate::run(ctx, a).await,
        Command::Ingest(a) => ingest::run(ctx, a).await,
        Command::Record(a) => record::run(ctx, a).await,
        Command::Load(a) => load::run(ctx, a).await,
        Command::Transform(a) => transform::run(ctx, a).await,
        Command::Tables(a) => tables::run(ctx, a).await,
        Command::Query(a) => query::run(ctx, a).await,
        Command::Export(a) => export::run(ctx, a).await,
        Command::Run(a) => run::run(ctx, a).await,
        Command::Serve(a) => serve::run(ctx, a).await,
        Command::User(a) => user::run(ctx, a).await,
        Command::Demo(a) => demo::run(ctx, a).await,
        Command::Backfill(a) => backfill::run(ctx, a).await,
        Command::Status(a) => status::run(ctx, a).await,
        Command::Runs(a) => runs::run(ctx, a).await,
        Command::Simulate(a) => simulate::run(a).await,
        Command::Landing(a) => landing::run(ctx, a).await,
        Command::Lineage(a) => lineage::run(ctx, a).await,
        Command::Quarantine(a) => quarantine::run(ctx, a).await,
        Command::Alerts(a) => alerts::run(ctx, a).await,
        Command::Ml(a) => ml::run(ctx, a).await,
        Command::Streams(a) => streams::run(ctx, a).await,
        Command::Sinks(a) => sinks::run(ctx, a).await,
    }
}

/// A panic (a bug of affluent or of a library; a query's is caught and becomes its error) is one
/// log line with its place, in the log's format, rather than Rust's report. `RUST_BACKTRACE`
/// set keeps Rust's report, with the backtrace.
fn init_panic_hook() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            "internal error{place}: {message} (a bug: please report it with this line; RUST_BACKTRACE=1 shows the backtrace)"
        );
    }));
}

fn init_logs(format: LogFormat, verbose: u8) {
    // affluent's own logs at info; the libraries' chatter (Delta kernel snapshots, merge
    // metrics) only when asked for with -v or RUST_LOG: their errors reach us as results anyway.
    let default = match verbose {
        0 => {
            "warn,affluent=info,affluent_cli=info,affluent_config=info,affluent_landing=info,affluent_sources=info,affluent_tables=info,affluent_scheduler=info,affluent_pipeline=info,affluent_state=info,affluent_web=info,deltalake_core=error,buoyant_kernel=off"
        }
        1 => "debug",
        _ => "trace",
    };
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
    };
    let terminal = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let terminal = match format {
        LogFormat::Human => terminal.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => terminal.json().boxed(),
    };
    // The same lines, kept in memory for the dashboard's pipeline page.
    tracing_subscriber::registry()
        .with(terminal.with_filter(filter()))
        .with(affluent_web::logs::layer().with_filter(filter()))
        .init();
}
