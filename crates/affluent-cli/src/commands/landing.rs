//! `affluent landing ...`: the landing zone's entries, retention and replay.

use std::io::Write;
use std::process::ExitCode;

use affluent_tables::LoadScope;
use anyhow::{Result, bail};
use clap::Subcommand;
use jiff::Timestamp;

use crate::args::{Format, check_source, parse_bound, print_loads, source_or_all};
use crate::context::{Calls, Context};

/// Inspect the landing zone.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: LandingCommand,
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

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let warehouse = ctx.warehouse(Calls::NoSource)?;
    let connectors = warehouse.connectors();
    let project = warehouse.project();
    match args.command {
        LandingCommand::List { source, format } => {
            check_source(project, &source)?;
            print_entries(&connectors.landing().list(&source)?, format)?;
        }
        LandingCommand::Prune {
            source,
            older_than,
            dry_run,
        } => {
            let retention = match older_than {
                Some(text) => affluent_core::parse_duration(&text)
                    .map_err(|e| anyhow::anyhow!("--older-than: {e}"))?,
                None => project.landing_retention.ok_or_else(|| {
                    anyhow::anyhow!(
                        "no retention set: add `[landing] retention = \"90d\"` to affluent.toml or pass --older-than"
                    )
                })?,
            };
            let cutoff = Timestamp::now()
                - jiff::SignedDuration::try_from(retention).map_err(anyhow::Error::msg)?;
            for name in source_or_all(project, source.as_deref())? {
                // Loaded means: taken by a committed load of every table of the source. A
                // source no table reads has nothing loaded; only rejected entries and leftovers
                // of interrupted writes can go.
                let loaded = warehouse
                    .loaded_by_every_table(&name)
                    .await?
                    .unwrap_or_default();
                let is_loaded = |entry_id: &str| loaded.contains(entry_id);
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
        }
        LandingCommand::Replay { source, from, to } => {
            check_source(project, &source)?;
            let tz = project.source_timezone(&source);
            let from = parse_bound("--from", from.as_deref(), &tz)?;
            let to = parse_bound("--to", to.as_deref(), &tz)?;
            let reports = warehouse
                .load_source(&source, &LoadScope::Replay { from, to })
                .await?;
            if reports.is_empty() {
                bail!("no table reads source `{source}`: nothing to replay");
            }
            if print_loads(&reports) {
                return Ok(ExitCode::FAILURE);
            }
        }
        LandingCommand::Show { source, entry } => {
            check_source(project, &source)?;
            let entry = connectors.landing().get(&source, &entry)?;
            let body = connectors.landing().read_body(&entry.meta)?;
            std::io::stdout().write_all(&body)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_entries(entries: &[affluent_landing::Entry], format: Format) -> Result<()> {
    match format {
        Format::Json => {
            for e in entries {
                let mut v = serde_json::to_value(&e.meta)?;
                v["rejected"] = serde_json::json!(e.rejected);
                v["stored_bytes"] = serde_json::json!(e.stored_bytes);
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
                    m.entry_id, fetched, m.status, m.bytes, e.stored_bytes, state, m.url
                );
                if let Some(reason) = &e.rejected {
                    println!("{:<40} rejected: {reason}", "");
                }
            }
            let bytes: u64 = entries.iter().map(|e| e.meta.bytes).sum();
            let stored: u64 = entries.iter().map(|e| e.stored_bytes).sum();
            println!("{} entries, {bytes} bytes ({stored} stored)", entries.len());
        }
    }
    Ok(())
}
