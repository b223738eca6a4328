//! The `affluent` binary: thin wiring of the library crates behind clap subcommands. Parsing
//! arguments, printing and exit codes live here; everything else lives in the crates.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use affluent_config::LoadError;
use affluent_core::Interval;
use affluent_sources::{Connectors, IngestOptions};
use affluent_tables::{ExportFormat, LoadReport, LoadScope, OutputFormat, Warehouse};
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use std::sync::Arc;

mod dashboard;
mod scheduling;
mod simulate;

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
    /// Check affluent.toml and .env: every error at once, with line and column.
    Validate,
    /// Fetch a source for one data interval and land every response.
    ///
    /// Without --from/--to the interval is the last complete period of the source's `interval`
    /// (default: yesterday in the project's time zone). Times are RFC 3339, or a date / date-time
    /// read in the project's time zone: 2024-03-01, 2024-03-01T09:00.
    Ingest {
        /// The source, as named in [sources.NAME].
        source: String,
        /// Interval start (included).
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// Interval end (excluded).
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Print the run summary as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Only land: do not load the source's tables afterwards.
        #[arg(long)]
        no_load: bool,
    },
    /// Load landed entries that no load has taken yet into the tables (no network).
    Load {
        /// Only the tables of this source (default: every source).
        source: Option<String>,
    },
    /// Run SQL models (all by default) in dependency order and write their tables.
    Transform {
        /// Models to run, in dependency order (default: all).
        models: Vec<String>,
        /// Data interval start, for models using $interval_start.
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// Data interval end (excluded), for models using $interval_end.
        #[arg(long, requires = "from")]
        to: Option<String>,
    },
    /// List tables and models: rows, columns, version, last commit.
    Tables {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run a read-only SQL query (DataFusion dialect) over the tables and models.
    Query {
        /// The query, e.g. "SELECT count(*) FROM events".
        sql: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
    },
    /// Write a table or model to a CSV or Parquet file.
    Export {
        /// The table or model.
        table: String,
        /// File format.
        #[arg(long, value_enum)]
        format: ExportKind,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the scheduler: every scheduled source and the models downstream, live runs on time,
    /// holes since `start_date` filled, failures retried, until Ctrl-C / SIGTERM.
    Run {
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
        listen: Option<std::net::SocketAddr>,
        /// Do not serve the dashboard.
        #[arg(long, conflicts_with = "listen")]
        no_serve: bool,
    },
    /// Serve the dashboard: the project's pages, login, favourites, JSON API (/api/docs),
    /// /healthz and /metrics.
    Serve {
        /// Address (default: `[dashboard] listen`, else 127.0.0.1:8080; port 0: any free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Manage the dashboard's users (kept in the state store).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The footfall demo, offline: starts the footfall simulator in-process, backfills the
    /// last weeks of examples/footfall with a progress bar, keeps running hourly, and serves the
    /// dashboard with a freshly generated login.
    Demo {
        /// Dashboard address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// How many weeks to backfill.
        #[arg(long, default_value_t = 8)]
        weeks: u32,
        /// Stop after the backfill instead of running hourly and serving.
        #[arg(long)]
        no_run: bool,
    },
    /// Run a source (or model) over a range of intervals, then the models downstream; an
    /// interrupted backfill resumes when asked again.
    Backfill {
        /// The source or model (NAME, source:NAME or model:NAME).
        task: String,
        /// Range start (included): RFC 3339, or a date / date-time in the source's time zone.
        #[arg(long)]
        from: String,
        /// Range end (excluded).
        #[arg(long)]
        to: String,
        /// Which intervals that already ran run again.
        #[arg(long, value_enum, default_value_t = ReprocessArg::None)]
        reprocess: ReprocessArg,
        /// Print the intervals that would run, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Newest intervals first.
        #[arg(long)]
        newest_first: bool,
        /// Tries per interval before it is reported failed.
        #[arg(long, default_value_t = 3)]
        attempts: u32,
    },
    /// Per source and model: last success, next run, holes, failures, quota used today, last error.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run history, newest first, with counts and durations.
    Runs {
        /// Only this source or model.
        task: Option<String>,
        /// Only failed runs.
        #[arg(long)]
        failed: bool,
        /// How many runs.
        #[arg(long, default_value_t = 30)]
        limit: i64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Serve a built-in simulator of a seed's API on 127.0.0.1, for offline demos and tests.
    Simulate {
        #[command(subcommand)]
        api: SimulateApi,
    },
    /// Inspect the landing zone.
    Landing {
        #[command(subcommand)]
        command: LandingCommand,
    },
    /// Inspect the quarantine: records that did not fit, with their reason.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SimulateApi {
    /// Seed 004's bank-branch visitor counters:
    /// GET /get_visitor_count?date_time=YYYY-MM-DD HH:MM&agency_name=NAME&counter_id=N
    Footfall {
        /// Port (0: any free port; the URL is printed on the first line of stdout).
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// Seed of every random draw: the same seed gives the same answers.
        #[arg(long, default_value_t = 4)]
        seed: u64,
        /// Share of requests answered 429 (Retry-After: 1), 500 or slowly, in turn.
        #[arg(long, default_value_t = 0.0)]
        faults: f64,
        /// How long a slow answer takes, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        slow_ms: u64,
        /// A window during which the port is closed: FROM/TO (RFC 3339); repeatable.
        #[arg(long)]
        outage: Vec<String>,
        /// Instead of serving, write the answers for every hour, agency and counter of
        /// [--from, --to) to this CSV file (the seed's export format) and exit.
        #[arg(long, requires_all = ["from", "to"])]
        export_csv: Option<PathBuf>,
        /// Export start (a date or date-time, Europe/Paris).
        #[arg(long)]
        from: Option<String>,
        /// Export end (excluded).
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user; the password is prompted (or read from stdin's first line).
    Add {
        /// Login name.
        name: String,
        /// What they may do.
        #[arg(long, value_enum, default_value_t = RoleArg::Viewer)]
        role: RoleArg,
        /// Generate a password and print it on stdout.
        #[arg(long)]
        generate: bool,
    },
    /// Change a password (prompted, or stdin's first line).
    Passwd {
        /// Login name.
        name: String,
        /// Generate a password and print it on stdout.
        #[arg(long)]
        generate: bool,
    },
    /// List users.
    List,
    /// Remove a user and their favourites.
    Remove {
        /// Login name.
        name: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    /// Everything, including managing users.
    Admin,
    /// Pages, exports, favourites.
    Viewer,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReprocessArg {
    /// Only intervals that never ran.
    None,
    /// Also the failed ones.
    Failed,
    /// Every interval of the range.
    All,
}

#[derive(Debug, Subcommand)]
enum LandingCommand {
    /// List a source's landed entries, oldest first.
    List {
        /// The source.
        source: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Apply the retention policy: remove landed responses older than the retention whose records
    /// are safely loaded (and rejected ones); never an entry no load has taken yet.
    Prune {
        /// Only this source (default: every source).
        source: Option<String>,
        /// Retention to apply, overriding `[landing] retention` (e.g. 30d).
        #[arg(long)]
        older_than: Option<String>,
        /// Count what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rebuild a source's tables from landing alone (no network). Without --from/--to the tables
    /// are rebuilt whole; with them, the rows of entries fetched in [from, to) are replaced.
    Replay {
        /// The source.
        source: String,
        /// Fetched at or after.
        #[arg(long)]
        from: Option<String>,
        /// Fetched before.
        #[arg(long)]
        to: Option<String>,
    },
    /// Print the raw body of one landed entry (decompressed) on stdout.
    Show {
        /// The source.
        source: String,
        /// The entry id, as listed by `landing list`.
        entry: String,
    },
}

#[derive(Debug, Subcommand)]
enum QuarantineCommand {
    /// Count quarantined records per source and reason, with examples.
    List {
        /// Only this source.
        source: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum QueryFormat {
    /// Aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportKind {
    /// CSV with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// Aligned columns.
    Table,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format, cli.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat, verbose: u8) {
    // affluent's own logs at info; the libraries' chatter (Delta kernel snapshots, merge
    // metrics) only when asked for with -v or RUST_LOG: their errors reach us as results anyway.
    let default = match verbose {
        0 => {
            "warn,affluent=info,affluent_cli=info,affluent_config=info,affluent_landing=info,affluent_sources=info,affluent_tables=info,affluent_scheduler=info,deltalake_core=error,buoyant_kernel=off"
        }
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load(project: &std::path::Path) -> Result<affluent_config::Project> {
    match affluent_config::load(project) {
        Ok(p) => {
            for w in &p.warnings {
                eprintln!("{w}\n");
            }
            Ok(p)
        }
        Err(LoadError::Invalid(errors)) => bail!("invalid project file\n\n{errors}"),
        Err(e) => Err(e.into()),
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate => {
            let project = load(&cli.project)?;
            println!(
                "{}: ok ({} sources, time zone {}, data in {})",
                project.file.display(),
                project.sources.len(),
                project.timezone.iana_name().unwrap_or("UTC"),
                project.data_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest {
            source,
            from,
            to,
            json,
            no_load,
        } => {
            let project = load(&cli.project)?;
            let tz = project.source_timezone(&source);
            let interval = match (from, to) {
                (Some(f), Some(t)) => {
                    let start = parse_time(&f, &tz).with_context(|| format!("--from {f:?}"))?;
                    let end = parse_time(&t, &tz).with_context(|| format!("--to {t:?}"))?;
                    Some(Interval::new(start, end).map_err(anyhow::Error::msg)?)
                }
                _ => None,
            };
            let connectors = Arc::new(Connectors::new(project)?);
            let summary = connectors
                .ingest(
                    &source,
                    &IngestOptions {
                        interval,
                        progress: std::io::stderr().is_terminal(),
                    },
                )
                .await?;
            for w in &summary.warnings {
                tracing::warn!(source = %source, "{w}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                if let Some(i) = summary.interval {
                    eprintln!("interval {i}");
                }
                println!("{summary}");
            }
            let mut load_failed = false;
            if !no_load {
                let warehouse = Warehouse::new(connectors.clone());
                let reports = warehouse.load_source(&source, &LoadScope::Pending).await?;
                load_failed = print_loads(&reports);
            }
            if summary.errors.is_empty() && !load_failed {
                Ok(ExitCode::SUCCESS)
            } else if summary.errors.is_empty() {
                Ok(ExitCode::FAILURE)
            } else {
                for e in &summary.errors {
                    eprintln!("error: {e}");
                }
                eprintln!(
                    "{} request(s) failed; everything else was landed. Run the same command again to retry.",
                    summary.errors.len()
                );
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Run {
            until,
            newest_first,
            listen,
            no_serve,
        } => {
            let project = load(&cli.project)?;
            let serve = match (listen, no_serve) {
                (_, true) => None,
                (Some(addr), _) => Some(addr),
                (None, false) if !project.pages.is_empty() => {
                    Some(affluent_web::listen_addr(&project))
                }
                _ => None,
            };
            let until = match until.as_deref() {
                None => None,
                Some("now") => Some(Timestamp::now()),
                Some(t) => Some(
                    parse_time(t, &project.timezone).with_context(|| format!("--until {t:?}"))?,
                ),
            };
            scheduling::run(project, until, newest_first, serve).await
        }
        Command::Backfill {
            task,
            from,
            to,
            reprocess,
            dry_run,
            newest_first,
            attempts,
        } => {
            let project = load(&cli.project)?;
            let source = task.strip_prefix("source:").unwrap_or(&task);
            let tz = if project.sources.contains_key(source) {
                project.source_timezone(source)
            } else {
                project.timezone.clone()
            };
            let start = parse_time(&from, &tz).with_context(|| format!("--from {from:?}"))?;
            let end = parse_time(&to, &tz).with_context(|| format!("--to {to:?}"))?;
            if end <= start {
                bail!("--to {to} must be after --from {from}");
            }
            let reprocess = match reprocess {
                ReprocessArg::None => affluent_scheduler::backfill::Reprocess::None,
                ReprocessArg::Failed => affluent_scheduler::backfill::Reprocess::Failed,
                ReprocessArg::All => affluent_scheduler::backfill::Reprocess::All,
            };
            scheduling::backfill(
                project,
                &task,
                start,
                end,
                reprocess,
                dry_run,
                newest_first,
                attempts,
            )
            .await
        }
        Command::Status { format } => {
            scheduling::status(load(&cli.project)?, matches!(format, Format::Json)).await
        }
        Command::Runs {
            task,
            failed,
            limit,
            format,
        } => {
            scheduling::runs(
                load(&cli.project)?,
                task.as_deref(),
                failed,
                limit,
                matches!(format, Format::Json),
            )
            .await
        }
        Command::Serve { listen } => dashboard::serve(load(&cli.project)?, listen).await,
        Command::User { command } => {
            let project = load(&cli.project)?;
            match command {
                UserCommand::Add {
                    name,
                    role,
                    generate,
                } => {
                    let role = match role {
                        RoleArg::Admin => affluent_web::Role::Admin,
                        RoleArg::Viewer => affluent_web::Role::Viewer,
                    };
                    dashboard::user_add(project, &name, role, generate).await?
                }
                UserCommand::Passwd { name, generate } => {
                    dashboard::user_passwd(project, &name, generate).await?
                }
                UserCommand::List => dashboard::user_list(project).await?,
                UserCommand::Remove { name } => dashboard::user_remove(project, &name).await?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            listen,
            weeks,
            no_run,
        } => dashboard::demo(&cli.project, listen, weeks, no_run).await,
        Command::Simulate {
            api:
                SimulateApi::Footfall {
                    port,
                    seed,
                    faults,
                    slow_ms,
                    outage,
                    export_csv,
                    from,
                    to,
                },
        } => {
            if let (Some(out), Some(from), Some(to)) = (export_csv, from, to) {
                let tz = TimeZone::get("Europe/Paris")?;
                let start = parse_time(&from, &tz).with_context(|| format!("--from {from:?}"))?;
                let end = parse_time(&to, &tz).with_context(|| format!("--to {to:?}"))?;
                let n = simulate::export_footfall_csv(&out, seed, start, end, &tz)?;
                println!("{n} readings written to {}", out.display());
                return Ok(ExitCode::SUCCESS);
            }
            if !(0.0..=1.0).contains(&faults) {
                bail!("--faults must be between 0 and 1, got {faults}");
            }
            let mut outages = Vec::new();
            for o in &outage {
                let (a, b) = o
                    .split_once('/')
                    .with_context(|| format!("--outage {o:?}: expected FROM/TO"))?;
                outages.push((
                    parse_time(a, &TimeZone::UTC).with_context(|| format!("--outage {o:?}"))?,
                    parse_time(b, &TimeZone::UTC).with_context(|| format!("--outage {o:?}"))?,
                ));
            }
            let server = affluent_simulate::Server::footfall(
                port,
                affluent_simulate::Options {
                    seed,
                    faults,
                    slow: std::time::Duration::from_millis(slow_ms),
                    outages,
                },
            )
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
            println!("{}", server.url());
            eprintln!(
                "footfall simulator (seed {seed}) on {}/get_visitor_count; stop with Ctrl-C",
                server.url()
            );
            tokio::signal::ctrl_c().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Load { source } => {
            let warehouse = warehouse(&cli.project)?;
            let names: Vec<String> = match source {
                Some(s) => {
                    check_source(warehouse.project(), &s)?;
                    vec![s]
                }
                None => warehouse.project().sources.keys().cloned().collect(),
            };
            let mut reports = Vec::new();
            for name in names {
                reports.extend(warehouse.load_source(&name, &LoadScope::Pending).await?);
            }
            if reports.is_empty() {
                println!("no table reads these sources: declare [tables.NAME] with `source = ...`");
            }
            Ok(if print_loads(&reports) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Transform { models, from, to } => {
            let warehouse = warehouse(&cli.project)?;
            let tz = warehouse.project().timezone.clone();
            let interval = match (from, to) {
                (Some(f), Some(t)) => Some(
                    Interval::new(
                        parse_time(&f, &tz).with_context(|| format!("--from {f:?}"))?,
                        parse_time(&t, &tz).with_context(|| format!("--to {t:?}"))?,
                    )
                    .map_err(anyhow::Error::msg)?,
                ),
                _ => None,
            };
            let reports = warehouse.transform(&models, interval).await?;
            if reports.is_empty() {
                println!("no model in the project: declare [models.NAME] with `sql` or `file`");
            }
            for r in reports {
                println!("{r}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tables { format } => {
            let warehouse = warehouse(&cli.project)?;
            let tables = warehouse.tables().await?;
            match format {
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
        Command::Query { sql, format } => {
            let warehouse = warehouse(&cli.project)?;
            let batches = warehouse.query(&sql).await?;
            let format = match format {
                QueryFormat::Table => OutputFormat::Table,
                QueryFormat::Csv => OutputFormat::Csv,
                QueryFormat::Json => OutputFormat::Json,
            };
            let text = affluent_tables::query::render(&batches, format)?;
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            if format == OutputFormat::Table {
                writeln!(out)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { table, format, out } => {
            let warehouse = warehouse(&cli.project)?;
            let format = match format {
                ExportKind::Csv => ExportFormat::Csv,
                ExportKind::Parquet => ExportFormat::Parquet,
            };
            let rows = warehouse.export(&table, format, &out).await?;
            println!("{table}: {rows} rows written to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Landing { command } => {
            let project = load(&cli.project)?;
            let connectors = Arc::new(Connectors::new(project)?);
            match command {
                LandingCommand::List { source, format } => {
                    if !connectors.project().sources.contains_key(&source) {
                        bail!(
                            "no source named `{source}` in the project (declared: {})",
                            connectors
                                .project()
                                .sources
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                    let entries = connectors.landing().list(&source)?;
                    print_entries(&entries, format)?;
                    Ok(ExitCode::SUCCESS)
                }
                LandingCommand::Prune {
                    source,
                    older_than,
                    dry_run,
                } => {
                    let retention = match older_than {
                        Some(text) => affluent_core::parse_duration(&text)
                            .map_err(|e| anyhow::anyhow!("--older-than: {e}"))?,
                        None => connectors.project().landing_retention.ok_or_else(|| {
                            anyhow::anyhow!(
                                "no retention set: add `[landing] retention = \"90d\"` to affluent.toml or pass --older-than"
                            )
                        })?,
                    };
                    let cutoff = Timestamp::now()
                        - jiff::SignedDuration::try_from(retention).map_err(anyhow::Error::msg)?;
                    let names: Vec<String> = match source {
                        Some(s) => {
                            check_source(connectors.project(), &s)?;
                            vec![s]
                        }
                        None => connectors.project().sources.keys().cloned().collect(),
                    };
                    let warehouse = Warehouse::new(connectors.clone());
                    for name in names {
                        // Loaded means: taken by a committed load of every table of the source.
                        // A source no table reads has nothing loaded; only rejected entries and
                        // leftovers of interrupted writes can go.
                        let loaded = warehouse
                            .loaded_by_every_table(&name)
                            .await?
                            .unwrap_or_default();
                        let is_loaded =
                            |m: &affluent_landing::EntryMeta| loaded.contains(&m.entry_id);
                        let r = connectors
                            .landing()
                            .prune(&name, cutoff, &is_loaded, dry_run)?;
                        println!(
                            "{name}: {} {} entries and {} leftovers ({} bytes); kept {} not yet loaded and {} recent",
                            if dry_run { "would remove" } else { "removed" },
                            r.removed_entries,
                            r.removed_orphans,
                            r.bytes_freed,
                            r.kept_not_loaded,
                            r.kept_recent
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                LandingCommand::Replay { source, from, to } => {
                    let warehouse = Warehouse::new(connectors.clone());
                    check_source(warehouse.project(), &source)?;
                    let tz = warehouse.project().source_timezone(&source);
                    let from = from
                        .map(|f| parse_time(&f, &tz).with_context(|| format!("--from {f:?}")))
                        .transpose()?;
                    let to = to
                        .map(|t| parse_time(&t, &tz).with_context(|| format!("--to {t:?}")))
                        .transpose()?;
                    let reports = warehouse
                        .load_source(&source, &LoadScope::Replay { from, to })
                        .await?;
                    if reports.is_empty() {
                        bail!("no table reads source `{source}`: nothing to replay");
                    }
                    Ok(if print_loads(&reports) {
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    })
                }
                LandingCommand::Show { source, entry } => {
                    check_source(connectors.project(), &source)?;
                    let entry = connectors.landing().get(&source, &entry)?;
                    let body = connectors.landing().read_body(&entry.meta)?;
                    use std::io::Write;
                    std::io::stdout().write_all(&body)?;
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Quarantine { command } => {
            let project = load(&cli.project)?;
            let connectors = Connectors::new(project)?;
            match command {
                QuarantineCommand::List { source } => {
                    let names: Vec<String> = match source {
                        Some(s) => {
                            check_source(connectors.project(), &s)?;
                            vec![s]
                        }
                        None => connectors.project().sources.keys().cloned().collect(),
                    };
                    let mut any = false;
                    for name in names {
                        let rejects = connectors.quarantine().list(&name)?;
                        if rejects.is_empty() {
                            continue;
                        }
                        any = true;
                        let mut by_reason: std::collections::BTreeMap<
                            String,
                            Vec<&affluent_landing::Reject>,
                        > = Default::default();
                        for r in &rejects {
                            let key = format!(
                                "{}{}",
                                r.field
                                    .as_deref()
                                    .map(|f| format!("{f}: "))
                                    .unwrap_or_default(),
                                generalize(&r.reason)
                            );
                            by_reason.entry(key).or_default().push(r);
                        }
                        println!("{name}: {} quarantined records", rejects.len());
                        for (reason, rs) in by_reason {
                            let ex = rs[0];
                            println!(
                                "  {:>7}  {reason}\n           e.g. entry {} {}: {}",
                                rs.len(),
                                ex.entry_id,
                                ex.location,
                                ex.raw
                            );
                        }
                    }
                    if !any {
                        println!("quarantine is empty");
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
    }
}

fn warehouse(project: &std::path::Path) -> Result<Warehouse> {
    let project = load(project)?;
    Ok(Warehouse::new(Arc::new(Connectors::new(project)?)))
}

/// Prints load reports; true when some entry could not be loaded.
fn print_loads(reports: &[LoadReport]) -> bool {
    let mut failed = false;
    for r in reports {
        println!("{r}");
        for e in &r.errors {
            failed = true;
            eprintln!("error: table {}: {e}", r.table);
        }
    }
    failed
}

/// Fails with a hint when `source` is not declared.
fn check_source(project: &affluent_config::Project, source: &str) -> Result<()> {
    if project.sources.contains_key(source) {
        return Ok(());
    }
    let known: Vec<&str> = project.sources.keys().map(String::as_str).collect();
    let hint = affluent_core::closest(source, &known)
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    bail!(
        "no source named `{source}` in the project{hint} (declared: {})",
        known.join(", ")
    )
}

/// Groups reasons that differ only by the offending value: `expected an integer, found "x"`.
fn generalize(reason: &str) -> String {
    match reason.find(", found ") {
        Some(i) => format!("{}, found …", &reason[..i]),
        None => reason.to_string(),
    }
}

fn print_entries(entries: &[affluent_landing::Entry], format: Format) -> Result<()> {
    match format {
        Format::Json => {
            for e in entries {
                let mut v = serde_json::to_value(&e.meta)?;
                v["rejected"] = serde_json::json!(e.rejected);
                println!("{}", serde_json::to_string(&v)?);
            }
        }
        Format::Table => {
            println!(
                "{:<40} {:<20} {:>6} {:>10} {:>10}  {:<9} URL",
                "ENTRY", "FETCHED (UTC)", "STATUS", "BYTES", "STORED", "STATE"
            );
            for e in entries {
                let m = &e.meta;
                let fetched = jiff::fmt::strtime::format("%Y-%m-%d %H:%M:%S", m.fetched_at)
                    .unwrap_or_else(|_| m.fetched_at.to_string());
                let state = if e.rejected.is_some() {
                    "rejected"
                } else {
                    "ok"
                };
                println!(
                    "{:<40} {:<20} {:>6} {:>10} {:>10}  {:<9} {}",
                    m.entry_id, fetched, m.status, m.bytes, m.compressed_bytes, state, m.url
                );
                if let Some(reason) = &e.rejected {
                    println!("{:<40} rejected: {reason}", "");
                }
            }
            let bytes: u64 = entries.iter().map(|e| e.meta.bytes).sum();
            let stored: u64 = entries.iter().map(|e| e.meta.compressed_bytes).sum();
            println!("{} entries, {bytes} bytes ({stored} stored)", entries.len());
        }
    }
    Ok(())
}

/// RFC 3339, or a civil date / date-time read in `tz` (the project file's `start_date` syntax).
fn parse_time(text: &str, tz: &TimeZone) -> Result<Timestamp> {
    affluent_config::parse_start(text, tz, Timestamp::now()).map_err(anyhow::Error::msg)
}
