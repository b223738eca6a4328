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

/// How a simulator serves: shared by every API.
#[derive(Debug, clap::Args)]
struct Serve {
    /// Port (0: any free port; the URL is printed on the first line of stdout).
    #[arg(long)]
    port: Option<u16>,
    /// Seed of every random draw: the same seed gives the same answers.
    #[arg(long)]
    seed: Option<u64>,
    /// Share of requests answered 429 (Retry-After: 1), 500 or slowly, in turn.
    #[arg(long, default_value_t = 0.0)]
    faults: f64,
    /// How long a slow answer takes, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    slow_ms: u64,
    /// A window during which the port is closed: FROM/TO (RFC 3339); repeatable.
    #[arg(long)]
    outage: Vec<String>,
}

impl Serve {
    fn options(&self, default_seed: u64) -> Result<affluent_simulate::Options> {
        if !(0.0..=1.0).contains(&self.faults) {
            bail!("--faults must be between 0 and 1, got {}", self.faults);
        }
        let mut outages = Vec::new();
        for o in &self.outage {
            let (a, b) = o
                .split_once('/')
                .with_context(|| format!("--outage {o:?}: expected FROM/TO"))?;
            outages.push((
                parse_time(a, &TimeZone::UTC).with_context(|| format!("--outage {o:?}"))?,
                parse_time(b, &TimeZone::UTC).with_context(|| format!("--outage {o:?}"))?,
            ));
        }
        Ok(affluent_simulate::Options {
            seed: self.seed.unwrap_or(default_seed),
            faults: self.faults,
            slow: std::time::Duration::from_millis(self.slow_ms),
            outages,
            ..affluent_simulate::Options::default()
        })
    }
}

#[derive(Debug, Subcommand)]
enum SimulateApi {
    /// Seed 004's bank-branch visitor counters:
    /// GET /get_visitor_count?date_time=YYYY-MM-DD HH:MM&agency_name=NAME&counter_id=N
    Footfall {
        #[command(flatten)]
        serve: Serve,
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
    /// Seed 001's Belib' charging points (Opendatasoft Explore v2.1: the real-time and static
    /// datasets, /records paged by limit and offset up to 10,000, /exports/json) and the Paris
    /// weather (Open-Meteo /v1/forecast, infoclimat /public-api/gfs/json)
    Belib {
        #[command(flatten)]
        serve: Serve,
        /// Charging points (0: the real 1,937; more cycle through them).
        #[arg(long, default_value_t = 0)]
        points: usize,
        #[command(flatten)]
        clock: ClockArgs,
        /// Instead of serving, write every point's real-time record at each hour of
        /// [--from, --to) to this JSON Lines file (`{"observed_at", "record"}`; the ground
        /// truth a loaded table is checked against) and exit.
        #[arg(long, requires_all = ["from", "to"])]
        export_truth: Option<PathBuf>,
        /// Export start (a date or date-time, Europe/Paris).
        #[arg(long)]
        from: Option<String>,
        /// Export end (excluded).
        #[arg(long)]
        to: Option<String>,
    },
    /// Seed 003's Vélib' stations in real time (the real 1,471 stations): Opendatasoft Explore
    /// v2.1 dataset velib-disponibilite-en-temps-reel (/records, /exports/json) and the GBFS
    /// feeds under /opendata/Velib_Metropole/ (gbfs.json, station_information.json,
    /// station_status.json, system_information.json)
    Velib {
        #[command(flatten)]
        serve: Serve,
        #[command(flatten)]
        clock: ClockArgs,
        /// Instead of serving, replay polls every --every over [--from, --to) and write what
        /// each poll saw of each station to this CSV file (polled_at, stationcode,
        /// reported_at, repeat, late, bikes, ebike, docks: the ground truth a stream is
        /// checked against), then exit.
        #[arg(long, requires_all = ["from", "to"])]
        export_truth: Option<PathBuf>,
        /// Export start (a date or date-time, Europe/Paris).
        #[arg(long)]
        from: Option<String>,
        /// Export end (excluded).
        #[arg(long)]
        to: Option<String>,
        /// Time between two replayed polls, in seconds.
        #[arg(long, default_value_t = 60)]
        every: u32,
    },
    /// Seed 002's artists: the Spotify Web API (POST /api/token with client credentials,
    /// GET /v1/artists?ids= up to 50, /v1/artists/{id}) and Deezer (GET /artist/{id}), 520
    /// artists whose audience moves day by day; GET /watchlist.csv lists their ids
    Music {
        #[command(flatten)]
        serve: Serve,
        #[command(flatten)]
        clock: ClockArgs,
        /// Answer beyond the services' limits too (no 429 past 20 requests a second on
        /// Spotify, no quota error past 50 per 5 s on Deezer).
        #[arg(long)]
        no_limits: bool,
        /// Instead of serving, write every artist's numbers at 08:00 Europe/Paris of each day
        /// of [--from, --to) to this CSV file (day, name, spotify_id, deezer_id, followers,
        /// popularity, fans: the ground truth the example's alerts are checked against), then
        /// exit.
        #[arg(long, requires_all = ["from", "to"])]
        export_truth: Option<PathBuf>,
        /// Instead of serving, write the watch list (name, spotify_id, deezer_id) to this CSV
        /// file and exit.
        #[arg(long)]
        export_watchlist: Option<PathBuf>,
        /// Export start (a date, Europe/Paris).
        #[arg(long)]
        from: Option<String>,
        /// Export end (excluded).
        #[arg(long)]
        to: Option<String>,
    },
}

/// The time a snapshot simulator answers for: shared by every snapshot API.
#[derive(Debug, clap::Args)]
struct ClockArgs {
    /// Answer as of this time instead of now (RFC 3339 or a date, Europe/Paris).
    #[arg(long)]
    at: Option<String>,
    /// With --at: simulated seconds per real second (the clock runs from --at).
    #[arg(long, requires = "at")]
    speed: Option<f64>,
}

/// The clock a snapshot simulator answers for: `--at` (fixed) or `--at` with `--speed`.
fn clock(args: &ClockArgs, tz: &TimeZone) -> Result<affluent_simulate::Clock> {
    let Some(at) = &args.at else {
        return Ok(affluent_simulate::Clock::Wall);
    };
    let from = parse_time(at, tz).with_context(|| format!("--at {at:?}"))?;
    Ok(match args.speed {
        Some(speed) if speed.is_finite() && speed > 0.0 => {
            affluent_simulate::Clock::Accelerated { from, speed }
        }
        Some(speed) => bail!("--speed must be a positive number, got {speed}"),
        None => affluent_simulate::Clock::Fixed(from),
    })
}

/// Runs the command.
pub async fn run(args: Args) -> Result<ExitCode> {
    // Serves until Ctrl-C: dropping the server stops it.
    let _server = match args.api {
        SimulateApi::Footfall {
            serve,
            export_csv,
            from,
            to,
        } => {
            let options = serve.options(4)?;
            if let (Some(out), Some(from), Some(to)) = (export_csv, from, to) {
                let tz = TimeZone::get("Europe/Paris")?;
                let range = parse_range(&from, &to, &tz)?;
                let n = export_footfall_csv(&out, options.seed, range.start, range.end, &tz)?;
                println!("{n} readings written to {}", out.display());
                return Ok(ExitCode::SUCCESS);
            }
            let port = serve.port.unwrap_or(8000);
            let server = affluent_simulate::Server::footfall(port, options)
                .await
                .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
            println!("{}", server.url());
            eprintln!(
                "footfall simulator (seed {}) on {}/get_visitor_count; stop with Ctrl-C",
                serve.seed.unwrap_or(4),
                server.url()
            );
            server
        }
        SimulateApi::Belib {
            serve,
            points,
            clock: clock_args,
            export_truth,
            from,
            to,
        } => {
            let mut options = serve.options(1)?;
            options.points = points;
            let tz = TimeZone::get("Europe/Paris")?;
            if let (Some(out), Some(from), Some(to)) = (export_truth, from, to) {
                let range = parse_range(&from, &to, &tz)?;
                let n = export_belib_truth(&out, &options, range.start, range.end)?;
                println!("{n} records written to {}", out.display());
                return Ok(ExitCode::SUCCESS);
            }
            options.clock = clock(&clock_args, &tz)?;
            let port = serve.port.unwrap_or(8010);
            let server = affluent_simulate::Server::belib(port, options)
                .await
                .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
            println!("{}", server.url());
            eprintln!(
                "Belib' and weather simulator (seed {}, as of {}) on {}; stop with Ctrl-C",
                serve.seed.unwrap_or(1),
                clock_args.at.as_deref().unwrap_or("now"),
                server.url()
            );
            server
        }
        SimulateApi::Velib {
            serve,
            clock: clock_args,
            export_truth,
            from,
            to,
            every,
        } => {
            let mut options = serve.options(3)?;
            let tz = TimeZone::get("Europe/Paris")?;
            if let (Some(out), Some(from), Some(to)) = (export_truth, from, to) {
                if every == 0 {
                    bail!("--every must be at least 1 second");
                }
                let range = parse_range(&from, &to, &tz)?;
                let n = export_velib_truth(&out, options.seed, range.start, range.end, every)?;
                println!("{n} station reports written to {}", out.display());
                return Ok(ExitCode::SUCCESS);
            }
            options.clock = clock(&clock_args, &tz)?;
            let port = serve.port.unwrap_or(8020);
            let server = affluent_simulate::Server::velib(port, options)
                .await
                .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
            println!("{}", server.url());
            eprintln!(
                "Vélib' simulator (seed {}, as of {}) on {}; stop with Ctrl-C",
                serve.seed.unwrap_or(3),
                clock_args.at.as_deref().unwrap_or("now"),
                server.url()
            );
            server
        }
        SimulateApi::Music {
            serve,
            clock: clock_args,
            no_limits,
            export_truth,
            export_watchlist,
            from,
            to,
        } => {
            let mut options = serve.options(2)?;
            options.limits = !no_limits;
            let tz = TimeZone::get("Europe/Paris")?;
            if let Some(out) = export_watchlist {
                let music = affluent_simulate::Music::new(options.seed);
                std::fs::write(&out, music.watchlist_csv())
                    .with_context(|| format!("cannot write {}", out.display()))?;
                println!(
                    "{} artists written to {}",
                    music.artists().len(),
                    out.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            if let (Some(out), Some(from), Some(to)) = (export_truth, from, to) {
                let range = parse_range(&from, &to, &tz)?;
                let n = export_music_truth(&out, options.seed, range.start, range.end, &tz)?;
                println!("{n} artist-days written to {}", out.display());
                return Ok(ExitCode::SUCCESS);
            }
            options.clock = clock(&clock_args, &tz)?;
            let port = serve.port.unwrap_or(8030);
            let server = affluent_simulate::Server::music(port, options)
                .await
                .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
            println!("{}", server.url());
            eprintln!(
                "music simulator (seed {}, as of {}) on {}; stop with Ctrl-C",
                serve.seed.unwrap_or(2),
                clock_args.at.as_deref().unwrap_or("now"),
                server.url()
            );
            server
        }
    };
    tokio::signal::ctrl_c().await?;
    Ok(ExitCode::SUCCESS)
}

/// Writes every artist's numbers at 08:00 (the example's collection time) of each day of
/// `[start, end)`; returns the number of rows.
fn export_music_truth(
    out: &Path,
    seed: u64,
    start: Timestamp,
    end: Timestamp,
    tz: &TimeZone,
) -> Result<u64> {
    let music = affluent_simulate::Music::new(seed);
    let file =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "day,name,spotify_id,deezer_id,followers,popularity,fans")?;
    let mut n = 0;
    let mut date = start.to_zoned(tz.clone()).date();
    let last = end.to_zoned(tz.clone()).date();
    while date < last {
        let at = date.at(8, 0, 0, 0).to_zoned(tz.clone())?.timestamp();
        let d = affluent_simulate::music::day_of(at);
        for a in music.artists() {
            let day = music.day(a, d);
            let name = if a.name.contains(',') {
                format!("\"{}\"", a.name)
            } else {
                a.name.clone()
            };
            writeln!(
                w,
                "{date},{name},{},{},{},{},{}",
                a.spotify_id.as_deref().unwrap_or(""),
                a.deezer_id.map(|d| d.to_string()).unwrap_or_default(),
                if a.spotify_id.is_some() {
                    day.followers.to_string()
                } else {
                    String::new()
                },
                if a.spotify_id.is_some() {
                    day.popularity.to_string()
                } else {
                    String::new()
                },
                if a.deezer_id.is_some() {
                    day.fans.to_string()
                } else {
                    String::new()
                },
            )?;
            n += 1;
        }
        date = date.tomorrow()?;
    }
    w.flush()?;
    Ok(n)
}

/// Replays polls every `every` seconds over `[start, end)` and writes what each saw of each
/// station as CSV; returns the number of rows.
fn export_velib_truth(
    out: &Path,
    seed: u64,
    start: Timestamp,
    end: Timestamp,
    every: u32,
) -> Result<u64> {
    let model = affluent_simulate::Velib::new(seed);
    let file =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(
        w,
        "polled_at,stationcode,reported_at,repeat,late,bikes,ebike,docks"
    )?;
    let mut polls = Vec::new();
    let mut t = start;
    while t < end {
        polls.push(t);
        t += i64::from(every).seconds();
    }
    let mut n = 0;
    // A day of polls at a time: the truth of a week of minutes is 15M rows.
    let mut model_truth = affluent_simulate::velib::Truth::new(&model);
    for chunk in polls.chunks(1440) {
        for s in model_truth.polls(chunk) {
            let stamp = |t: i64| {
                Timestamp::from_second(t)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            };
            writeln!(
                w,
                "{},{},{},{},{},{},{},{}",
                stamp(s.polled_at),
                s.stationcode,
                stamp(s.reported_at),
                s.repeat,
                s.late,
                s.bikes,
                s.ebike,
                s.docks
            )?;
            n += 1;
        }
    }
    w.flush()?;
    Ok(n)
}

/// Writes every point's real-time record at each hour of `[start, end)`; returns the number of
/// records.
fn export_belib_truth(
    out: &Path,
    options: &affluent_simulate::Options,
    start: Timestamp,
    end: Timestamp,
) -> Result<u64> {
    let model = affluent_simulate::Belib::with_points(options.seed, options.points);
    let file =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let mut n = 0;
    for hour in affluent_simulate::belib::hours(start, end) {
        for (at, records) in model.snapshots(&[hour]) {
            for record in records {
                let line = serde_json::json!({ "observed_at": at.to_string(), "record": record });
                writeln!(w, "{line}")?;
                n += 1;
            }
        }
    }
    w.flush()?;
    Ok(n)
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
