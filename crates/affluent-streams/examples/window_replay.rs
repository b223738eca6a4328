//! Window throughput over a replay of Vélib' station reports (BENCHMARKS.md, "Event-time
//! windows").
//!
//! `cargo run --release -p affluent-streams --example window_replay -- DAYS OUT_DIR` replays
//! polls every minute of the Vélib simulator (seed 3, the 1,471 real stations) for DAYS days
//! from 2025-03-03, in arrival order, and writes:
//! - `OUT_DIR/events.csv`: every report a poll saw (arrival order: key, event time in ms,
//!   mechanical bikes, e-bikes, free docks), the input of the reference implementations;
//! - `OUT_DIR/windows.csv`: the engine's rows, per station and 3-minute window: the averages
//!   of the three values, events, late, duplicates, final;
//!
//! and prints the engine's time over the events held in memory (parsing and the simulator not
//! counted), as events per second.

use std::io::Write;
use std::time::Instant;

mod replay;

use affluent_streams::Engine;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let days: i64 = args.next().unwrap_or_else(|| "1".into()).parse()?;
    let out =
        std::path::PathBuf::from(args.next().unwrap_or_else(|| "target/window_replay".into()));
    std::fs::create_dir_all(&out)?;

    let model = affluent_simulate::Velib::new(3);
    let start: jiff::Timestamp = "2025-03-03T00:00:00Z".parse()?;
    let mut truth = affluent_simulate::velib::Truth::new(&model);
    let mut keys: Vec<String> = Vec::new();
    let mut events: Vec<(u32, i64, [Option<f64>; 3])> = Vec::new();
    let generated = Instant::now();
    let mut input = std::io::BufWriter::new(std::fs::File::create(out.join("events.csv"))?);
    writeln!(input, "key,event_ms,mechanical,ebike,docks")?;
    for day in 0..days {
        let polls: Vec<jiff::Timestamp> = (0..1440)
            .map(|m| start + jiff::SignedDuration::from_mins(day * 1440 + m))
            .collect();
        for seen in truth.polls(&polls) {
            let key = match keys.iter().position(|k| *k == seen.stationcode) {
                Some(k) => k as u32,
                None => {
                    keys.push(seen.stationcode.clone());
                    (keys.len() - 1) as u32
                }
            };
            let mechanical = seen.bikes - seen.ebike;
            let ms = seen.reported_at * 1000;
            writeln!(
                input,
                "{},{ms},{mechanical},{},{}",
                seen.stationcode, seen.ebike, seen.docks
            )?;
            events.push((
                key,
                ms,
                [
                    Some(f64::from(mechanical)),
                    Some(f64::from(seen.ebike)),
                    Some(f64::from(seen.docks)),
                ],
            ));
        }
    }
    input.flush()?;
    eprintln!(
        "{} events from the simulator in {:.1?}",
        events.len(),
        generated.elapsed()
    );

    let mut engine = Engine::new(replay::seed_003_windows())?;
    let mut rows = Vec::new();
    let timed = Instant::now();
    for (key, ms, values) in &events {
        engine.push(&keys[*key as usize], *ms, values);
        if engine.open_windows() > 0 {
            rows.append(&mut engine.take_final());
        }
    }
    let elapsed = timed.elapsed();
    rows.extend(engine.open_rows());
    let totals = engine.totals();
    println!(
        "engine: {} events in {:.3} s = {:.0} events/s (one core); {} windows; accepted {}, late {}, duplicates {}, dropped {}",
        events.len(),
        elapsed.as_secs_f64(),
        events.len() as f64 / elapsed.as_secs_f64(),
        rows.len(),
        totals.accepted,
        totals.late,
        totals.duplicates,
        totals.dropped
    );
    let mut w = std::io::BufWriter::new(std::fs::File::create(out.join("windows.csv"))?);
    writeln!(
        w,
        "key,window_start_ms,mechanical,ebike,docks,events,late,duplicates,final"
    )?;
    for r in rows {
        let v = |i: usize| r.values[i].map(|x| x.to_string()).unwrap_or_default();
        writeln!(
            w,
            "{},{},{},{},{},{},{},{},{}",
            r.key,
            r.start,
            v(0),
            v(1),
            v(2),
            r.events,
            r.late,
            r.duplicates,
            r.is_final
        )?;
    }
    w.flush()?;
    Ok(())
}
