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
