//! `affluent demo`: an example project run offline against its simulator, with the dashboard.
//!
//! [`EXAMPLES`] is the list `--example` chooses from; each entry names its folder under
//! `examples/` and how it runs without the network ([`Offline`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use affluent_config::{Environment, LoadError, Project};
use affluent_pipeline::Runtime;
use affluent_scheduler::backfill::Reprocess;
use affluent_sources::IngestOptions;
use affluent_tables::LoadScope;
use affluent_web::{Role, Server, Users};
use anyhow::{Context as _, Result, bail};
use jiff::{Timestamp, ToSpan};

use crate::commands::backfill::{Request, backfill};
use crate::context::Context;

/// An example project `affluent demo` can run.
#[derive(Debug)]
pub struct Example {
    /// The name `--example` takes.
    pub name: &'static str,
    /// Its folder under the repository's `examples/`.
    pub dir: &'static str,
    /// What it shows.
    pub about: &'static str,
    /// How it runs offline.
    pub offline: Offline,
}

/// How an example runs without the network.
#[derive(Debug, Clone, Copy)]
pub enum Offline {
    /// Seed 004's visitor-counter API simulated in-process (`FOOTFALL_API_URL`), its reference
    /// sources read from files, the counter source backfilled hour by hour.
    Footfall,
}

/// The examples, in the order `--help` lists them. The seed projects that follow add theirs.
pub const EXAMPLES: &[Example] = &[Example {
    name: "footfall",
    dir: "footfall",
    about: "seed 004: bank-branch visitor counters, hourly, with the footfall dashboard",
    offline: Offline::Footfall,
}];

/// An example project, offline (footfall by default): starts its simulator in-process,
/// backfills the last weeks with a progress bar, keeps running on schedule, and serves the
/// dashboard with a freshly generated login.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The example to run (default: the --project directory when it holds one, else footfall).
    #[arg(long, value_parser = example_names())]
    example: Option<String>,
    /// Dashboard address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// How many weeks to backfill.
    #[arg(long, default_value_t = 8)]
    weeks: u32,
    /// Stop after the backfill instead of running hourly and serving.
    #[arg(long)]
    no_run: bool,
}

/// `--example`'s values, each with what it shows.
fn example_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        EXAMPLES
            .iter()
            .map(|e| clap::builder::PossibleValue::new(e.name).help(e.about)),
    )
}

/// The repository's folder of an example.
fn example_dir(example: &Example) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(example.dir)
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    // The example asked for; else the project given, when it is one; else the first example.
    let (example, dir) = match &args.example {
        Some(name) => {
            let example = EXAMPLES
                .iter()
                .find(|e| e.name == name)
                .context("unknown example")?;
            (example, example_dir(example))
        }
        None if ctx.dir().join(affluent_config::PROJECT_FILE).is_file() => {
            (&EXAMPLES[0], ctx.dir().to_path_buf())
        }
        None => (&EXAMPLES[0], example_dir(&EXAMPLES[0])),
    };
    if !dir.join(affluent_config::PROJECT_FILE).is_file() {
        bail!(
            "no affluent.toml in {} and no examples/{} beside the sources: run from the repository, or pass --project examples/{}",
            ctx.dir().display(),
            example.dir,
            example.dir
        );
    }
    match example.offline {
        Offline::Footfall => footfall(&dir, &args).await,
    }
}

/// Loads a demo project with extra variables (the simulator's address): every source must run.
fn load(dir: &Path, vars: &[(&str, &str)]) -> Result<Project> {
    let mut env = Environment::load(dir).map_err(anyhow::Error::msg)?;
    for (name, value) in vars {
        env = env.with(name, value);
    }
    match affluent_config::load_with_env(dir, &env) {
        Ok(p) => Ok(p),
        Err(LoadError::Invalid(errors)) => bail!("invalid project file\n\n{errors}"),
        Err(e) => Err(e.into()),
    }
}

/// Creates (or resets) the `demo` admin with a new random password.
async fn demo_login(runtime: &Runtime) -> Result<String> {
    let users = Users::open(&runtime.store).await?;
    let password = affluent_web::auth::generate_password();
    match users.add("demo", &password, Role::Admin).await {
        Ok(()) => {}
        Err(affluent_web::WebError::Conflict(_)) => users.set_password("demo", &password).await?,
        Err(e) => return Err(e.into()),
    }
    Ok(password)
}

async fn footfall(dir: &Path, args: &Args) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let simulator = affluent_simulate::Server::footfall(0, affluent_simulate::Options::default())
        .await
        .context("cannot start the footfall simulator")?;
    let project = load(dir, &[("FOOTFALL_API_URL", &simulator.url())])?;
    if !project.sources.contains_key("footfall_api") {
        bail!(
            "{} has no source `footfall_api`: `affluent demo --example footfall` runs examples/footfall",
            project.file.display()
        );
    }
    eprintln!(
        "footfall simulator (seed 004's API, deterministic) on {}",
        simulator.url()
    );
    let runtime = crate::context::runtime(project).await?;
    let password = demo_login(&runtime).await?;
    let server = if args.no_run {
        None
    } else {
        Some(crate::commands::serve::start(&runtime, args.listen).await?)
    };
    let banner = |server: &Option<Server>| {
        if let Some(s) = server {
            eprintln!(
                "\n  dashboard  {}\n  login      demo\n  password   {password}\n",
                s.url()
            );
        }
    };
    banner(&server);

    // Reference data first: the model corrects agency names against the agency list.
    let warehouse = &runtime.warehouse;
    for source in ["agencies", "holidays"] {
        if warehouse.project().sources.contains_key(source) {
            let summary = warehouse
                .connectors()
                .ingest(source, &IngestOptions::default())
                .await?;
            warehouse.load_source(source, &LoadScope::Pending).await?;
            eprintln!("{source}: {summary}");
        }
    }
    let now = Timestamp::now();
    let to = now
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Hour)
                .mode(jiff::RoundMode::Trunc),
        )
        .unwrap_or(now);
    let from = to
        .checked_sub((i64::from(args.weeks) * 7 * 24).hours())
        .context("--weeks is too large")?;
    eprintln!(
        "backfilling {} week(s) of hourly counts: {from} .. {to}",
        args.weeks
    );
    let code = backfill(
        &runtime,
        "footfall_api",
        affluent_core::Interval::new(from, to).map_err(anyhow::Error::msg)?,
        Request {
            reprocess: Reprocess::None,
            dry_run: false,
            newest_first: false,
            attempts: 3,
        },
    )
    .await?;
    eprintln!(
        "{} week(s) landed, loaded and modelled {:.1} s after start: the dashboard is complete",
        args.weeks,
        started.elapsed().as_secs_f64()
    );
    if args.no_run {
        return Ok(code);
    }
    banner(&server);
    eprintln!("running hourly; stop with Ctrl-C");
    let result = crate::commands::run::schedule(&runtime, None, false, None).await;
    if let Some(server) = server {
        server.shutdown().await;
    }
    drop(simulator);
    result
}
