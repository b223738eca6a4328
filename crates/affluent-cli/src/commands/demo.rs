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
    /// Seed 001's Belib' and weather APIs simulated in-process (`BELIB_API_URL`,
    /// `OPEN_METEO_URL`, `INFOCLIMAT_URL`); the snapshot history is built hour by hour with the
    /// simulator's clock at each hour.
    Belib,
    /// Seed 003's Vélib' API simulated in-process (`VELIB_API_URL`); the history is a poll a
    /// minute with the simulator's clock at each minute, then the stream's windows and models.
    Velib,
    /// Seed 002's Spotify and Deezer APIs simulated in-process (`SPOTIFY_API_URL`,
    /// `SPOTIFY_ACCOUNTS_URL`, `DEEZER_API_URL`); 60 days of daily collections built with the
    /// simulator's clock at each day's 08:00.
    Music,
    /// Seed 000's Ticketmaster, football-data.org and World Bank answers replayed from the
    /// project's cassettes (built from real captures): every source replays, as with
    /// `AFFLUENT_OFFLINE=1`.
    Recorded,
}

/// The examples, in the order `--help` lists them. The seed projects that follow add theirs.
pub const EXAMPLES: &[Example] = &[
    Example {
        name: "footfall",
        dir: "footfall",
        about: "seed 004: bank-branch visitor counters, hourly, with the footfall dashboard",
        offline: Offline::Footfall,
    },
    Example {
        name: "belib-weather",
        dir: "belib-weather",
        about: "seed 001: Belib' charging points in real time and the weather, per day and arrondissement",
        offline: Offline::Belib,
    },
    Example {
        name: "velib",
        dir: "velib",
        about: "seed 003: Vélib' stations each minute, 3-minute windows by event time, zones, a live map",
        offline: Offline::Velib,
    },
    Example {
        name: "music-radar",
        dir: "music-radar",
        about: "seed 002: artists from Spotify and Deezer daily, scores, alerts, future stars and similar artists",
        offline: Offline::Music,
    },
    Example {
        name: "culture",
        dir: "culture",
        about: "seed 000: events, football matches and World Bank economics every 3 hours, maps, standings, anomalies, GDP forecasts",
        offline: Offline::Recorded,
    },
];

/// An example project, offline (footfall by default): starts its simulator in-process,
/// backfills the last weeks with a progress bar, keeps running on schedule, and serves the
/// dashboard with a freshly generated login.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The example to run (default: the --project directory when it holds one, run as the
    /// example of its folder's name, else footfall).
    #[arg(long, value_parser = example_names())]
    example: Option<String>,
    /// Dashboard address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// How many weeks to backfill (default: 8 for footfall, 1 for belib-weather).
    #[arg(long)]
    weeks: Option<u32>,
    /// velib: how many hours of polls, one a minute, to build before running (default 2).
    #[arg(long)]
    hours: Option<u32>,
    /// music-radar: how many days of daily collections to build before running (default 60).
    #[arg(long)]
    days: Option<u32>,
    /// Stop after the backfill instead of running hourly and serving.
    #[arg(long)]
    no_run: bool,
    /// With --no-run: the history ends at this hour instead of now (RFC 3339, or a date or
    /// date-time in Europe/Paris), for a run that gives the same tables every time.
    #[arg(long, requires = "no_run")]
    until: Option<String>,
}

impl Args {
    /// The end of the history: --until, or now; truncated to the hour.
    fn until(&self) -> Result<Timestamp> {
        let t = match &self.until {
            Some(text) => {
                let tz = jiff::tz::TimeZone::get("Europe/Paris")?;
                crate::args::parse_time(text, &tz).with_context(|| format!("--until {text:?}"))?
            }
            None => Timestamp::now(),
        };
        Ok(hour_of(t))
    }
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
        // A copy of an example keeps its folder's name (examples/belib-weather, /tmp/belib-weather).
        None if ctx.dir().join(affluent_config::PROJECT_FILE).is_file() => {
            let folder = ctx
                .dir()
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
            let example = EXAMPLES
                .iter()
                .find(|e| folder.as_deref() == Some(e.dir))
                .unwrap_or(&EXAMPLES[0]);
            (example, ctx.dir().to_path_buf())
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
        Offline::Belib => belib(&dir, &args).await,
        Offline::Velib => velib(&dir, &args).await,
        Offline::Music => music(&dir, &args).await,
        Offline::Recorded => culture(&dir, &args).await,
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

/// The demo's dashboard (none with --no-run) and its login.
struct Dashboard {
    server: Option<Server>,
    password: String,
}

impl Dashboard {
    /// Creates (or resets) the `demo` login and, unless --no-run, serves the dashboard.
    async fn start(runtime: &Runtime, args: &Args) -> Result<Self> {
        let password = demo_login(runtime).await?;
        let server = if args.no_run {
            None
        } else {
            Some(crate::commands::serve::start(runtime, args.listen).await?)
        };
        Ok(Self { server, password })
    }

    /// Prints where the dashboard is and the login.
    fn banner(&self) {
        if let Some(s) = &self.server {
            eprintln!(
                "\n  dashboard  {}\n  login      demo\n  password   {}\n",
                s.url(),
                self.password
            );
        }
    }

    async fn shutdown(self) {
        if let Some(server) = self.server {
            server.shutdown().await;
        }
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
    let dashboard = Dashboard::start(&runtime, args).await?;
    dashboard.banner();

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
    let to = args.until()?;
    let weeks = args.weeks.unwrap_or(8);
    let from = to
        .checked_sub((i64::from(weeks) * 7 * 24).hours())
        .context("--weeks is too large")?;
    eprintln!("backfilling {weeks} week(s) of hourly counts: {from} .. {to}");
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
        "{weeks} week(s) landed, loaded and modelled {:.1} s after start: the dashboard is complete",
        started.elapsed().as_secs_f64()
    );
    if args.no_run {
        return Ok(code);
    }
    dashboard.banner();
    eprintln!("running hourly; stop with Ctrl-C");
    let result = crate::commands::run::schedule(&runtime, None, false, None).await;
    dashboard.shutdown().await;
    drop(simulator);
    result
}

/// The hour `t` falls in, truncated.
fn hour_of(t: Timestamp) -> Timestamp {
    t.round(
        jiff::TimestampRound::new()
            .smallest(jiff::Unit::Hour)
            .mode(jiff::RoundMode::Trunc),
    )
    .unwrap_or(t)
}

async fn belib(dir: &Path, args: &Args) -> Result<ExitCode> {
    use affluent_simulate::{Clock, Options, Server as Simulator};

    let started = std::time::Instant::now();
    let to = args.until()?;
    let weeks = args.weeks.unwrap_or(1);
    let from = to
        .checked_sub((i64::from(weeks) * 7 * 24).hours())
        .context("--weeks is too large")?;
    let simulator = Simulator::belib(
        0,
        Options {
            seed: 1,
            clock: Clock::Fixed(from),
            ..Options::default()
        },
    )
    .await
    .context("cannot start the Belib' simulator")?;
    let url = simulator.url();
    let project = load(
        dir,
        &[
            ("BELIB_API_URL", &url),
            ("OPEN_METEO_URL", &url),
            ("INFOCLIMAT_URL", &url),
            ("INFOCLIMAT_AUTH", "simulated"),
            ("INFOCLIMAT_CHECK", "simulated"),
        ],
    )?;
    for source in ["belib_realtime", "belib_points", "weather"] {
        if !project.sources.contains_key(source) {
            bail!(
                "{} has no source `{source}`: `affluent demo --example belib-weather` runs examples/belib-weather",
                project.file.display()
            );
        }
    }
    eprintln!("Belib' and weather simulator (seed 001's APIs, deterministic) on {url}");
    let runtime = crate::context::runtime(project).await?;
    let dashboard = Dashboard::start(&runtime, args).await?;
    dashboard.banner();

    let requests = snapshot_history(&runtime, Some(&simulator), from, to).await?;
    eprintln!(
        "{weeks} week(s) of snapshots ({requests} requests) landed, loaded and modelled {:.1} s after start: the dashboard is complete",
        started.elapsed().as_secs_f64()
    );
    // From now on the simulator answers for the wall clock, as the live APIs would.
    simulator.set_clock(Clock::Wall);
    if args.no_run {
        return Ok(ExitCode::SUCCESS);
    }
    dashboard.banner();
    eprintln!("running hourly; stop with Ctrl-C");
    let result = crate::commands::run::schedule(&runtime, None, false, None).await;
    dashboard.shutdown().await;
    drop(simulator);
    result
}

/// A snapshot API has no past to fetch: the history is the simulator's answers with its clock
/// at the end of each interval the sources' schedules cut over `[from, to)`, landed in time
/// order as their runs would have landed them, then loaded, modelled, and what follows (ML,
/// alerts) run once. Returns the requests made.
async fn snapshot_history(
    runtime: &Runtime,
    simulator: Option<&affluent_simulate::Server>,
    from: Timestamp,
    to: Timestamp,
) -> Result<u64> {
    let warehouse = &runtime.warehouse;
    let mut runs: Vec<(Timestamp, String, affluent_core::Interval)> = Vec::new();
    for task in affluent_pipeline::tasks(warehouse, Timestamp::now())? {
        let (true, Some(schedule)) = (task.id.is_source(), &task.schedule) else {
            continue;
        };
        // A source another one resolves over runs with it (the watch list of the music
        // example): not on its own as well.
        if warehouse.project().sources.values().any(|s| {
            matches!(s, affluent_config::schema::SourceConfig::Rest(r)
                if r.resolve().is_some_and(|(_, p)| p.resource == task.id.name))
        }) {
            continue;
        }
        let mut intervals = schedule.intervals(from, to);
        // A daily source whose first interval ends after the history: its latest before it.
        if intervals.is_empty() {
            intervals.extend(schedule.last_complete(from));
        }
        for interval in intervals {
            runs.push((interval.end, task.id.name.clone(), interval));
        }
    }
    runs.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut sources: std::collections::BTreeSet<String> =
        runs.iter().map(|(_, s, _)| s.clone()).collect();
    eprintln!(
        "landing snapshots, {} runs of {}: {from} .. {to}",
        runs.len(),
        sources.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    let mut requests = 0;
    let mut day = None;
    for (end, source, interval) in &runs {
        if let Some(simulator) = simulator {
            simulator.set_time(*end);
        }
        let summary = warehouse
            .connectors()
            .ingest(
                source,
                &IngestOptions {
                    interval: Some(*interval),
                    observer: None,
                    recorder: None,
                },
            )
            .await?;
        requests += summary.requests;
        if !summary.errors.is_empty() {
            bail!("{source} at {end}: {}", summary.errors.join("; "));
        }
        let today = end.to_zoned(warehouse.project().timezone.clone()).date();
        if day.is_some_and(|d| d != today) {
            eprintln!("  {end} landed ({requests} requests)");
        }
        day = Some(today);
    }
    // The sources resolved over were landed by their children's runs: their tables load too.
    for (name, source) in &warehouse.project().sources {
        if let affluent_config::schema::SourceConfig::Rest(r) = source
            && let Some((_, p)) = r.resolve()
            && sources.contains(name)
        {
            sources.insert(p.resource.clone());
        }
    }
    let mut changed = Vec::new();
    for source in &sources {
        for report in warehouse.load_source(source, &LoadScope::Pending).await? {
            eprintln!("{report}");
            if report.version.is_some() {
                changed.push(report.table.clone());
            }
        }
    }
    for report in warehouse.transform(&[], None).await? {
        eprintln!("{report}");
        if report.version.is_some() {
            changed.push(report.model.clone());
        }
    }
    let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
    crate::args::after_change(warehouse, &changed).await;
    Ok(requests)
}

/// Seed 002: the music APIs simulated in-process, 60 days of daily collections at 08:00 built
/// with the simulator's clock at each, the services' limits off (the project's own rate limits
/// too: they would make 60 days take an hour), then running daily against the wall clock.
async fn music(dir: &Path, args: &Args) -> Result<ExitCode> {
    use affluent_simulate::{Clock, Options, Server as Simulator};

    let started = std::time::Instant::now();
    let to = args.until()?;
    let days = args.days.unwrap_or(60);
    // A day more than asked: the first day's collection covers the day before it.
    let from = to
        .checked_sub((i64::from(days + 1) * 24).hours())
        .context("--days is too large")?;
    let simulator = Simulator::music(
        0,
        Options {
            seed: 2,
            clock: Clock::Fixed(from),
            limits: false,
            ..Options::default()
        },
    )
    .await
    .context("cannot start the music simulator")?;
    let url = simulator.url();
    let mut project = load(
        dir,
        &[
            ("SPOTIFY_API_URL", &url),
            ("SPOTIFY_ACCOUNTS_URL", &url),
            ("DEEZER_API_URL", &url),
            ("SPOTIFY_CLIENT_ID", "simulated-client"),
            ("SPOTIFY_CLIENT_SECRET", "simulated-secret"),
        ],
    )?;
    for source in ["watchlist", "spotify", "deezer"] {
        if !project.sources.contains_key(source) {
            bail!(
                "{} has no source `{source}`: `affluent demo --example music-radar` runs examples/music-radar",
                project.file.display()
            );
        }
    }
    for source in project.sources.values_mut() {
        if let affluent_config::schema::SourceConfig::Rest(r) = source {
            r.rate_limit = None;
        }
    }
    eprintln!(
        "music simulator (seed 002's Spotify and Deezer, deterministic) on {url}; rate limits off against it"
    );
    let runtime = crate::context::runtime(project).await?;
    let dashboard = Dashboard::start(&runtime, args).await?;
    dashboard.banner();
    let requests = snapshot_history(&runtime, Some(&simulator), from, to).await?;
    eprintln!(
        "{days} days of collections ({requests} requests) landed, loaded, modelled, learnt from and alerted on {:.1} s after start: the dashboard is complete",
        started.elapsed().as_secs_f64()
    );
    simulator.set_clock(Clock::Wall);
    if args.no_run {
        return Ok(ExitCode::SUCCESS);
    }
    dashboard.banner();
    eprintln!("running daily at 08:00; stop with Ctrl-C");
    let result = crate::commands::run::schedule(&runtime, None, false, None).await;
    dashboard.shutdown().await;
    drop(simulator);
    result
}

/// Seed 000: every source replays its cassette (no network), the last ticks' runs are
/// landed, loaded, modelled, learnt from and alerted on, then the project runs every 3 hours.
/// Summary emails go out only when `CULTURE_SMTP_URL` is set.
async fn culture(dir: &Path, args: &Args) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let mut project = load(dir, &[])?;
    for source in ["events", "matches", "economy"] {
        if !project.sources.contains_key(source) {
            bail!(
                "{} has no source `{source}`: `affluent demo --example culture` runs examples/culture",
                project.file.display()
            );
        }
    }
    project.go_offline();
    let cassettes: Vec<String> = project
        .replaying
        .iter()
        .map(|(name, path)| {
            let shown = path.strip_prefix(dir).unwrap_or(path);
            format!("{name} ({})", shown.display())
        })
        .collect();
    eprintln!(
        "replaying recorded answers, no network: {}",
        cassettes.join(", ")
    );
    let smtp = Environment::load(dir)
        .map_err(anyhow::Error::msg)?
        .get("CULTURE_SMTP_URL")
        .is_some_and(|v| !v.is_empty());
    if !smtp {
        project.notify = None;
        eprintln!(
            "summary emails off: set CULTURE_SMTP_URL (smtp://host:port) to get one after each run"
        );
    }
    let runtime = crate::context::runtime(project).await?;
    let dashboard = Dashboard::start(&runtime, args).await?;
    dashboard.banner();
    let to = args.until()?;
    let from = to.checked_sub(6.hours()).context("--until is too early")?;
    let requests = snapshot_history(&runtime, None, from, to).await?;
    eprintln!(
        "the last ticks ({requests} requests answered from cassettes) landed, loaded, modelled, learnt from and alerted on {:.1} s after start: the dashboard is complete",
        started.elapsed().as_secs_f64()
    );
    if args.no_run {
        return Ok(ExitCode::SUCCESS);
    }
    dashboard.banner();
    eprintln!("running every 3 hours, replaying; stop with Ctrl-C");
    let result = crate::commands::run::schedule(&runtime, None, false, None).await;
    dashboard.shutdown().await;
    result
}

/// The minute `t` falls in, truncated.
fn minute_of(t: Timestamp) -> Timestamp {
    t.round(
        jiff::TimestampRound::new()
            .smallest(jiff::Unit::Minute)
            .mode(jiff::RoundMode::Trunc),
    )
    .unwrap_or(t)
}

async fn velib(dir: &Path, args: &Args) -> Result<ExitCode> {
    use affluent_simulate::{Clock, Options, Server as Simulator};

    let started = std::time::Instant::now();
    let to = match &args.until {
        Some(_) => args.until()?,
        None => minute_of(Timestamp::now()),
    };
    let hours = args.hours.unwrap_or(2);
    let from = to
        .checked_sub((i64::from(hours) * 60).minutes())
        .context("--hours is too large")?;
    let simulator = Simulator::velib(
        0,
        Options {
            seed: 3,
            clock: Clock::Fixed(from),
            ..Options::default()
        },
    )
    .await
    .context("cannot start the Vélib' simulator")?;
    let url = simulator.url();
    let project = load(dir, &[("VELIB_API_URL", &url)])?;
    if !project.sources.contains_key("velib") {
        bail!(
            "{} has no source `velib`: `affluent demo --example velib` runs examples/velib",
            project.file.display()
        );
    }
    eprintln!("Vélib' simulator (seed 003's API, deterministic) on {url}");
    let runtime = crate::context::runtime(project).await?;
    let dashboard = Dashboard::start(&runtime, args).await?;
    dashboard.banner();

    // A snapshot API has no past: the history is a poll a minute with the simulator's clock at
    // that minute, landed in time order.
    let warehouse = &runtime.warehouse;
    eprintln!("polling {hours} hour(s) of minutes: {from} .. {to}");
    let mut t = from;
    let mut polls = 0;
    while t < to {
        let next = t + 1.minute();
        simulator.set_time(next);
        let summary = warehouse
            .connectors()
            .ingest(
                "velib",
                &IngestOptions {
                    interval: Some(
                        affluent_core::Interval::new(t, next).map_err(anyhow::Error::msg)?,
                    ),
                    observer: None,
                    recorder: None,
                },
            )
            .await?;
        if !summary.errors.is_empty() {
            bail!("velib at {next}: {}", summary.errors.join("; "));
        }
        polls += 1;
        if polls % 30 == 0 {
            eprintln!("  {next}: {polls} polls landed");
        }
        t = next;
    }
    let mut changed = Vec::new();
    for report in warehouse.load_source("velib", &LoadScope::Pending).await? {
        eprintln!("{report}");
        if report.version.is_some() {
            changed.push(report.table.clone());
        }
    }
    let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
    crate::args::after_change(warehouse, &changed).await;
    for report in warehouse.transform(&[], None).await? {
        eprintln!("{report}");
    }
    eprintln!(
        "{hours} hour(s) of polls ({polls}) landed, loaded, windowed and modelled {:.1} s after start: the dashboard is complete",
        started.elapsed().as_secs_f64()
    );
    // From now on the simulator answers for the wall clock, as the live API would.
    simulator.set_clock(Clock::Wall);
    if args.no_run {
        return Ok(ExitCode::SUCCESS);
    }
    dashboard.banner();
    eprintln!("polling every minute; stop with Ctrl-C");
    let result = crate::commands::run::schedule(&runtime, None, false, None).await;
    dashboard.shutdown().await;
    drop(simulator);
    result
}
