//! `affluent simulate`: the built-in simulators of the seeds' APIs, served on 127.0.0.1, and
//! `--export-csv`, the simulator's answers as the seed's CSV export.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use affluent_simulate::Footfall;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use jiff::{Timestamp, ToSpan, tz::TimeZone};

use crate::args::{parse_range, parse_time};

/// Serve a built-in simulator of a seed's API on 127.0.0.1, for offline demos and tests.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    api: SimulateApi,
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

/// Runs the command.
pub async fn run(args: Args) -> Result<ExitCode> {
    let SimulateApi::Footfall {
        port,
        seed,
        faults,
        slow_ms,
        outage,
        export_csv,
        from,
        to,
    } = args.api;
    if let (Some(out), Some(from), Some(to)) = (export_csv, from, to) {
        let tz = TimeZone::get("Europe/Paris")?;
        let range = parse_range(&from, &to, &tz)?;
        let n = export_footfall_csv(&out, seed, range.start, range.end, &tz)?;
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

/// Writes every hour × agency × counter reading of `[start, end)` (hours in `tz`); returns the
/// number of readings.
fn export_footfall_csv(
    out: &Path,
    seed: u64,
    start: Timestamp,
    end: Timestamp,
    tz: &TimeZone,
) -> Result<u64> {
    let model = Footfall::new(seed);
    let file =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "date_time,agency_name,counter_id,visitor_count,unit")?;
    let mut n = 0;
    let mut hour = start.to_zoned(tz.clone());
    while hour.timestamp() < end {
        let stamp = hour.strftime("%Y-%m-%d %H:%M").to_string();
        for agency in model.agencies() {
            for counter in 0..agency.counters {
                let r = model
                    .answer(&stamp, &agency.name, Some(i64::from(counter)), None)
                    .map_err(anyhow::Error::msg)?;
                writeln!(
                    w,
                    "{},{},{},{},{}",
                    r.date_time, r.agency_name, counter, r.visitor_count, r.unit
                )?;
                n += 1;
            }
        }
        hour = hour.checked_add(1.hour())?;
    }
    w.flush()?;
    Ok(n)
}
