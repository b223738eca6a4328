//! The memory of a window engine's state over a replay of Vélib' station reports (BENCHMARKS.md,
//! "Event-time windows").
//!
//! `cargo run --release -p affluent-streams --example window_state -- DAYS` feeds the same
//! replay as `window_replay` (polls every minute of the Vélib simulator, seed 3, 1,471
//! stations) into seed 003's windows an hour of polls at a time, keeping no event and no
//! final window, and prints the process's peak resident memory (`VmHWM`) before the first
//! event and at the end, the most windows open at once, and the size of the engine's
//! checkpoint (its whole state, as JSON) at the end. Linux only (reads `/proc/self/status`).

mod replay;

use affluent_streams::Engine;

/// Peak resident memory of this process so far, in KiB.
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let days: i64 = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "1".into())
        .parse()?;
    let model = affluent_simulate::Velib::new(3);
    let start: jiff::Timestamp = "2025-03-03T00:00:00Z".parse()?;
    let mut truth = affluent_simulate::velib::Truth::new(&model);
    let mut engine = Engine::new(replay::seed_003_windows())?;
    // The first hour generated before the baseline: its buffer is reused by the next hours.
    let hour = |h: i64| -> Vec<jiff::Timestamp> {
        (0..60)
            .map(|m| start + jiff::SignedDuration::from_mins(h * 60 + m))
            .collect()
    };
    let mut seen = truth.polls(&hour(0));
    let baseline = peak_kib();
    let (mut events, mut finals, mut most_open) = (0u64, 0usize, 0usize);
    for h in 0..days * 24 {
        if h > 0 {
            seen = truth.polls(&hour(h));
        }
        for s in &seen {
            let mechanical = s.bikes - s.ebike;
            engine.push(
                &s.stationcode,
                s.reported_at * 1000,
                &[
                    Some(f64::from(mechanical)),
                    Some(f64::from(s.ebike)),
                    Some(f64::from(s.docks)),
                ],
            );
            events += 1;
            if events.is_multiple_of(1024) {
                most_open = most_open.max(engine.open_windows());
                finals += engine.take_final().len();
            }
        }
    }
    finals += engine.take_final().len();
    most_open = most_open.max(engine.open_windows());
    let peak = peak_kib();
    let checkpoint = serde_json::to_vec(&engine.checkpoint())?;
    println!(
        "{events} events, {finals} final windows; at most {most_open} windows open at once; peak RSS {:.1} MiB before the first event, {:.1} MiB at the end (+{:.1} MiB); checkpoint at the end {:.1} MiB as JSON",
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak.saturating_sub(baseline) as f64 / 1024.0,
        checkpoint.len() as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
