//! A run's data interval, `[start, end)`, as in Airflow.

use jiff::{Timestamp, Zoned, tz::TimeZone};
use serde::{Deserialize, Serialize};

/// The half-open span of time a run covers: `start` included, `end` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Interval {
    /// First instant covered.
    pub start: Timestamp,
    /// First instant not covered.
    pub end: Timestamp,
}

impl Interval {
    /// Makes an interval, refusing an empty or reversed one.
    pub fn new(start: Timestamp, end: Timestamp) -> Result<Self, String> {
        if end <= start {
            return Err(format!(
                "interval end {end} must be after its start {start}"
            ));
        }
        Ok(Self { start, end })
    }

    /// The start seen in a time zone.
    pub fn start_in(&self, tz: &TimeZone) -> Zoned {
        self.start.to_zoned(tz.clone())
    }

    /// The end seen in a time zone.
    pub fn end_in(&self, tz: &TimeZone) -> Zoned {
        self.end.to_zoned(tz.clone())
    }

    /// Whether an instant falls inside `[start, end)`.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

/// A time as a query shows it (`2024-05-01`, `2024-05-01T08:00:00`, an RFC 3339 instant) as a
/// civil date and time: a date is its midnight, an instant is read in UTC.
pub fn civil_time(text: &str) -> Option<jiff::civil::DateTime> {
    let s = text.trim();
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Some(ts.to_zoned(jiff::tz::TimeZone::UTC).datetime());
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return Some(dt);
    }
    s.parse::<jiff::civil::Date>()
        .ok()
        .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
}
