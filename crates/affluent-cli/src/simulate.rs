//! `affluent simulate footfall --export-csv`: the simulator's answers as the seed's CSV export.

use std::io::Write;
use std::path::Path;

use affluent_simulate::Footfall;
use anyhow::{Context, Result};
use jiff::{Timestamp, ToSpan, tz::TimeZone};

/// Writes every hour × agency × counter reading of `[start, end)` (hours in `tz`); returns the
/// number of readings.
pub fn export_footfall_csv(
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
