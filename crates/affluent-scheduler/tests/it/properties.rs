//! Properties of schedules over random instants, periods, time zones and cron patterns.

use affluent_scheduler::Schedule;
use jiff::{Timestamp, tz::TimeZone};
use proptest::prelude::*;

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe", // half-hour daylight saving
    "Asia/Kolkata",        // half-hour offset
];

const CRONS: &[&str] = &[
    "0 * * * *",
    "*/15 * * * *",
    "30 2 * * *",
    "0 8 * * 1-5",
    "0 0 1 * *",
    "0 */3 * * *",
];

const PERIODS: &[&str] = &["1s", "45s", "15m", "1h", "3h", "1d", "2d", "1w"];

fn instant() -> impl Strategy<Value = Timestamp> {
    // 2020..2030, where every zone above changes offset at least once a year or not at all.
    (1_577_836_800i64..1_893_456_000i64).prop_map(|s| Timestamp::from_second(s).expect("ts"))
}

fn schedule() -> impl Strategy<Value = Schedule> {
    let zone = prop::sample::select(ZONES);
    prop_oneof![
        (prop::sample::select(CRONS), zone.clone()).prop_map(|(c, z)| {
            Schedule::cron(c, &TimeZone::get(z).expect("tz")).expect("cron")
        }),
        (prop::sample::select(PERIODS), zone, instant()).prop_map(|(p, z, a)| {
            Schedule::every(p, Some(a), &TimeZone::get(z).expect("tz")).expect("every")
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every instant lies in exactly one interval: the boundary at or before it, and the next.
    #[test]
    fn boundaries_bracket_every_instant(s in schedule(), t in instant()) {
        let before = s.at_or_before(t).expect("a boundary before");
        let after = s.next_after(t).expect("a boundary after");
        prop_assert!(before <= t && t < after);
        prop_assert_eq!(s.next_after(before), Some(after));
        prop_assert_eq!(s.at_or_before(after), Some(after));
        let current = s.current(t).expect("current");
        prop_assert!(current.contains(t));
    }

    /// Intervals over a range are contiguous, non-empty, inside the range, and cover it but for
    /// less than one interval at each end.
    #[test]
    fn intervals_are_contiguous_and_cover_the_range(s in schedule(), t in instant(), hours in 1i64..200) {
        let to = t + jiff::SignedDuration::from_hours(hours);
        let intervals = s.intervals(t, to);
        for pair in intervals.windows(2) {
            prop_assert_eq!(pair[0].end, pair[1].start);
        }
        for i in &intervals {
            prop_assert!(i.start < i.end);
            prop_assert!(t <= i.start && i.end <= to);
        }
        if let (Some(first), Some(last)) = (intervals.first(), intervals.last()) {
            prop_assert!(s.at_or_before(t) == Some(first.start) || s.next_after(t) == Some(first.start));
            prop_assert!(s.next_after(last.end).is_none_or(|n| n > to));
        }
        // Splitting the range anywhere gives the same intervals on both sides.
        let mid = t + jiff::SignedDuration::from_hours(hours / 2);
        let cut = s.at_or_before(mid).expect("boundary");
        if cut >= t {
            let mut joined = s.intervals(t, cut);
            joined.extend(s.intervals(cut, to));
            prop_assert_eq!(joined, intervals);
        }
    }

    /// The last complete interval ends at or before now and the next one is not complete yet.
    #[test]
    fn last_complete_is_the_latest_due(s in schedule(), now in instant()) {
        let last = s.last_complete(now).expect("last");
        prop_assert!(last.end <= now);
        prop_assert!(s.next_after(last.end).expect("next") > now);
    }
}
