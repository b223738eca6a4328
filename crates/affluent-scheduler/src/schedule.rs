//! When a task runs and which data interval each run covers.
//!
//! A schedule is a sequence of *boundaries* (instants); consecutive boundaries delimit the data
//! intervals `[b_i, b_{i+1})`, and the run of an interval is due when it ends, as in Airflow. Two
//! kinds:
//! - `cron`: boundaries are the cron's fire times in the schedule's time zone (croner), on whole
//!   seconds. A local time skipped by a daylight-saving change fires at the change (02:30
//!   on a spring-forward night runs at 03:00); a local time that happens twice is one boundary
//!   (its first occurrence), so intervals stay contiguous across every change.
//! - `every`: a period. Periods of whole days (`"1d"`, `"1w"`) are calendar days in the time zone,
//!   starting at local midnight (so a day is 23 or 25 hours on a change); shorter periods are
//!   absolute durations from the anchor (the task's `start_date`, or the Unix epoch).
//!
//! Whatever the kind, intervals are contiguous: the end of one is the start of the next.

use std::str::FromStr;

use affluent_config::CronExpr;
use affluent_core::Interval;
use jiff::{Timestamp, ToSpan, Zoned, civil::Date, tz::TimeZone};

/// The most intervals one call enumerates (a guard against a runaway range: one per second for
/// eleven days).
pub const MAX_INTERVALS: usize = 1_000_000;

/// A parsed schedule with its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    tz: TimeZone,
    text: String,
}

#[derive(Debug, Clone)]
enum Kind {
    Cron {
        cron: Box<croner::Cron>,
        tz: chrono_tz::Tz,
    },
    /// A fixed number of milliseconds from an anchor.
    Fixed { millis: i64, anchor: Timestamp },
    /// A number of calendar days from an anchor date, at local midnight.
    Days { days: i64, anchor: Date },
}

impl Schedule {
    /// A cron expression (5 fields, or 6 with seconds first) evaluated in `tz`.
    pub fn cron(expr: &str, tz: &TimeZone) -> Result<Self, String> {
        Self::from_cron(&expr.parse::<CronExpr>()?, tz)
    }

    /// A cron parsed when the project file was read, evaluated in `tz`.
    pub fn from_cron(expr: &CronExpr, tz: &TimeZone) -> Result<Self, String> {
        let name = tz.iana_name().unwrap_or("UTC");
        let ctz = chrono_tz::Tz::from_str(name)
            .map_err(|_| format!("time zone {name:?} is not known to the cron evaluator"))?;
        let schedule = Self {
            kind: Kind::Cron {
                cron: Box::new(expr.cron().clone()),
                tz: ctz,
            },
            tz: tz.clone(),
            text: expr.text().to_string(),
        };
        // A pattern that never fires (`0 0 31 2 *`) is an error now rather than a silent task.
        if schedule.next_after(Timestamp::UNIX_EPOCH).is_none() {
            return Err(format!("cron expression {:?} never fires", expr.text()));
        }
        Ok(schedule)
    }

    /// A period (`"15m"`, `"1h"`, `"1d"`, `"1w"`) from `anchor` (default: the Unix epoch, or for
    /// whole days 1970-01-01 local midnight).
    pub fn every(period: &str, anchor: Option<Timestamp>, tz: &TimeZone) -> Result<Self, String> {
        Self::every_period(affluent_core::parse_duration(period)?, anchor, tz)
    }

    /// A period given as a duration (see [`Schedule::every`]).
    pub fn every_period(
        period: std::time::Duration,
        anchor: Option<Timestamp>,
        tz: &TimeZone,
    ) -> Result<Self, String> {
        let shown = affluent_core::format_period(period);
        let millis = i64::try_from(period.as_millis())
            .map_err(|_| format!("period {shown:?} is too long"))?;
        if millis < 1_000 {
            return Err(format!("period {shown:?} is shorter than one second"));
        }
        let kind = if millis % 86_400_000 == 0 {
            Kind::Days {
                days: millis / 86_400_000,
                anchor: anchor
                    .map(|t| t.to_zoned(tz.clone()).date())
                    .unwrap_or(Date::constant(1970, 1, 1)),
            }
        } else {
            Kind::Fixed {
                millis,
                // Boundaries are whole milliseconds.
                anchor: anchor
                    .and_then(|a| Timestamp::from_millisecond(a.as_millisecond()).ok())
                    .unwrap_or(Timestamp::UNIX_EPOCH),
            }
        };
        Ok(Self {
            kind,
            tz: tz.clone(),
            text: format!("every {shown}"),
        })
    }

    /// The schedule as the user wrote it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The schedule's time zone.
    pub fn timezone(&self) -> &TimeZone {
        &self.tz
    }

    /// The first boundary strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Cron { cron, tz } => {
                let start = to_chrono(t, tz)?;
                let next = cron.find_next_occurrence(&start, false).ok()?;
                from_chrono(&next)
            }
            Kind::Fixed { millis, anchor } => {
                let offset = t.as_millisecond() - anchor.as_millisecond();
                let k = offset.div_euclid(*millis) + 1;
                Timestamp::from_millisecond(anchor.as_millisecond() + k * millis).ok()
            }
            Kind::Days { days, anchor } => {
                let mut k = self.day_index(t, *days, *anchor)?;
                loop {
                    let b = self.day_boundary(*anchor, k * days)?;
                    if b > t {
                        return Some(b);
                    }
                    k += 1;
                }
            }
        }
    }

    /// The last boundary at or before `t`.
    pub fn at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Cron { cron, tz } => {
                // The boundaries are those `next_after` finds (a local time skipped by a
                // daylight-saving change fires just after it, a repeated one once). A backward
                // search can land elsewhere in those two cases, so step back two matches and
                // walk forward.
                let prev = |x: Timestamp| -> Option<Timestamp> {
                    let found = cron
                        .find_previous_occurrence(&to_chrono(x, tz)?, true)
                        .ok()?;
                    from_chrono(&found)
                };
                let mut anchor = t;
                for _ in 0..4 {
                    let p = prev(anchor)?;
                    let p2 = prev(p.checked_sub(1.second()).ok()?)?;
                    anchor = p2.checked_sub(1.second()).ok()?;
                    let mut f = self.next_after(anchor)?;
                    if f > t {
                        continue;
                    }
                    loop {
                        let n = self.next_after(f)?;
                        if n > t {
                            return Some(f);
                        }
                        f = n;
                    }
                }
                None
            }
            Kind::Fixed { millis, anchor } => {
                let offset = t.as_millisecond() - anchor.as_millisecond();
                let k = offset.div_euclid(*millis);
                Timestamp::from_millisecond(anchor.as_millisecond() + k * millis).ok()
            }
            Kind::Days { days, anchor } => {
                let mut k = self.day_index(t, *days, *anchor)? + 1;
                loop {
                    let b = self.day_boundary(*anchor, k * days)?;
                    if b <= t {
                        return Some(b);
                    }
                    k -= 1;
                }
            }
        }
    }

    /// The complete intervals inside `[from, to)`: the first starts at the first boundary at or
    /// after `from`, the last ends at or before `to`.
    pub fn intervals(&self, from: Timestamp, to: Timestamp) -> Vec<Interval> {
        let mut out = Vec::new();
        let mut start = match self.at_or_before(from) {
            Some(b) if b == from => b,
            _ => match self.next_after(from) {
                Some(b) => b,
                None => return out,
            },
        };
        while out.len() < MAX_INTERVALS {
            let Some(end) = self.next_after(start) else {
                break;
            };
            if end > to {
                break;
            }
            out.push(Interval { start, end });
            start = end;
        }
        out
    }

    /// The latest complete interval at `now` (the one whose run is due most recently).
    pub fn last_complete(&self, now: Timestamp) -> Option<Interval> {
        let end = self.at_or_before(now)?;
        let start = self.at_or_before(end.checked_sub(1.millisecond()).ok()?)?;
        Interval::new(start, end).ok()
    }

    /// The interval containing `t` (the one whose run is due next).
    pub fn current(&self, t: Timestamp) -> Option<Interval> {
        let start = self.at_or_before(t)?;
        let end = self.next_after(t)?;
        Interval::new(start, end).ok()
    }

    fn day_index(&self, t: Timestamp, days: i64, anchor: Date) -> Option<i64> {
        let local = t.to_zoned(self.tz.clone()).date();
        let span = anchor.until(local).ok()?;
        let elapsed = i64::from(span.get_days());
        Some(elapsed.div_euclid(days) - 1)
    }

    fn day_boundary(&self, anchor: Date, offset_days: i64) -> Option<Timestamp> {
        let date = anchor.checked_add(offset_days.days()).ok()?;
        let zoned: Zoned = date.to_zoned(self.tz.clone()).ok()?;
        Some(zoned.start_of_day().ok()?.timestamp())
    }
}

/// `t` floored to the second (cron fires on whole seconds; croner keeps a fraction it is given).
fn to_chrono(t: Timestamp, tz: &chrono_tz::Tz) -> Option<chrono::DateTime<chrono_tz::Tz>> {
    chrono::DateTime::from_timestamp(t.as_second(), 0).map(|d| d.with_timezone(tz))
}

fn from_chrono(d: &chrono::DateTime<chrono_tz::Tz>) -> Option<Timestamp> {
    Timestamp::from_millisecond(d.timestamp_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris() -> TimeZone {
        TimeZone::get("Europe/Paris").expect("tz")
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn local(i: &Interval, tz: &TimeZone) -> (String, String) {
        (
            i.start
                .to_zoned(tz.clone())
                .strftime("%H:%M%:z")
                .to_string(),
            i.end.to_zoned(tz.clone()).strftime("%H:%M%:z").to_string(),
        )
    }

    #[test]
    fn hourly_cron_across_spring_forward_is_contiguous_and_23_hours_long() {
        let tz = paris();
        let s = Schedule::cron("0 * * * *", &tz).expect("cron");
        // 2024-03-31: 02:00 CET becomes 03:00 CEST.
        let day = s.intervals(ts("2024-03-30T23:00:00Z"), ts("2024-03-31T22:00:00Z"));
        assert_eq!(day.len(), 23);
        assert_eq!(day[0].start, ts("2024-03-30T23:00:00Z"));
        assert_eq!(day.last().map(|i| i.end), Some(ts("2024-03-31T22:00:00Z")));
        for pair in day.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        assert_eq!(
            local(&day[1], &tz),
            ("01:00+01:00".into(), "03:00+02:00".into())
        );
        assert!(
            day.iter()
                .all(|i| i.end.duration_since(i.start).as_secs() == 3600)
        );
    }

    #[test]
    fn hourly_cron_across_fall_back_covers_25_hours_without_overlap() {
        let tz = paris();
        let s = Schedule::cron("0 * * * *", &tz).expect("cron");
        // 2024-10-27: 03:00 CEST becomes 02:00 CET; the day lasts 25 hours.
        let day = s.intervals(ts("2024-10-26T22:00:00Z"), ts("2024-10-27T23:00:00Z"));
        let covered: i64 = day
            .iter()
            .map(|i| i.end.duration_since(i.start).as_secs())
            .sum();
        assert_eq!(covered, 25 * 3600);
        for pair in day.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        // 02:00 local happens twice; it is one boundary, so one interval spans two hours.
        assert_eq!(day.len(), 24);
        let long: Vec<_> = day
            .iter()
            .filter(|i| i.end.duration_since(i.start).as_secs() == 7200)
            .collect();
        assert_eq!(long.len(), 1);
        assert_eq!(
            local(long[0], &tz),
            ("02:00+02:00".into(), "03:00+01:00".into())
        );
    }

    #[test]
    fn daily_cron_at_a_skipped_local_time_fires_just_after_the_change() {
        let tz = paris();
        let s = Schedule::cron("30 2 * * *", &tz).expect("cron");
        let days = s.intervals(ts("2024-03-29T00:00:00Z"), ts("2024-04-02T00:00:00Z"));
        let shown: Vec<String> = days
            .iter()
            .map(|i| {
                i.start
                    .to_zoned(tz.clone())
                    .strftime("%d %H:%M%:z")
                    .to_string()
            })
            .collect();
        // 02:30 does not exist on 2024-03-31: that day's run comes at 03:00, when the clock jumps,
        // as cron daemons do; one run a day, none lost or doubled.
        assert_eq!(
            shown,
            vec!["29 02:30+01:00", "30 02:30+01:00", "31 03:00+02:00"]
        );
        for pair in days.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        assert_eq!(
            days.last()
                .map(|i| i.end.to_zoned(tz.clone()).strftime("%d %H:%M").to_string()),
            Some("01 02:30".to_string())
        );
    }

    #[test]
    fn every_day_is_a_calendar_day_in_the_time_zone() {
        let tz = paris();
        let s = Schedule::every("1d", None, &tz).expect("every");
        let days = s.intervals(ts("2024-03-29T23:00:00Z"), ts("2024-04-01T22:00:00Z"));
        let hours: Vec<i64> = days
            .iter()
            .map(|i| i.end.duration_since(i.start).as_secs() / 3600)
            .collect();
        assert_eq!(hours, vec![24, 23, 24]);
        assert!(
            days.iter()
                .all(|i| local(i, &tz).0.starts_with("00:00")
                    && local(i, &tz).1.starts_with("00:00"))
        );
    }

    #[test]
    fn every_fixed_period_counts_from_the_anchor() {
        let tz = paris();
        let anchor = ts("2024-01-01T00:00:10Z");
        let s = Schedule::every("30s", Some(anchor), &tz).expect("every");
        assert_eq!(s.at_or_before(ts("2024-01-01T00:00:39Z")), Some(anchor));
        assert_eq!(
            s.at_or_before(ts("2024-01-01T00:00:40Z")),
            Some(ts("2024-01-01T00:00:40Z"))
        );
        assert_eq!(
            s.next_after(ts("2024-01-01T00:00:40Z")),
            Some(ts("2024-01-01T00:01:10Z"))
        );
        assert_eq!(
            s.last_complete(ts("2024-01-01T00:01:15Z")),
            Some(Interval {
                start: ts("2024-01-01T00:00:40Z"),
                end: ts("2024-01-01T00:01:10Z")
            })
        );
    }

    #[test]
    fn invalid_schedules_say_what_is_wrong() {
        let tz = paris();
        let e = Schedule::cron("0 25 * * *", &tz).expect_err("bad hour");
        assert!(e.contains("invalid cron expression"), "{e}");
        let e = Schedule::cron("0 0 31 2 *", &tz).expect_err("never");
        assert!(e.contains("never fires") || e.contains("invalid"), "{e}");
        let e = Schedule::every("500ms", None, &tz).expect_err("short");
        assert!(e.contains("shorter than one second"), "{e}");
    }
}
