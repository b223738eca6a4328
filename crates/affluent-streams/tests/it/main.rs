//! The window engine against a brute-force model of the same definitions, over random
//! streams: windows, watermarks, allowed lateness, duplicates, and checkpoints.

use affluent_streams::{
    Aggregate, Checkpoint, Engine, Outcome, Spec, Totals, WindowKind, WindowRow,
};
use proptest::prelude::*;

const AGGREGATES: [Aggregate; 6] = [
    Aggregate::Avg,
    Aggregate::Min,
    Aggregate::Max,
    Aggregate::Sum,
    Aggregate::Count,
    Aggregate::Last,
];

#[derive(Debug, Clone)]
struct Event {
    key: String,
    time: i64,
    value: Option<f64>,
}

/// An accepted event as the model keeps it.
#[derive(Debug, Clone)]
struct Taken {
    time: i64,
    arrival: u64,
    value: Option<f64>,
    late: bool,
}

fn aggregate(events: &[&Taken], aggregate: Aggregate) -> Option<f64> {
    let values: Vec<(i64, u64, f64)> = events
        .iter()
        .filter_map(|e| e.value.map(|v| (e.time, e.arrival, v)))
        .collect();
    if aggregate == Aggregate::Count {
        return Some(values.len() as f64);
    }
    if values.is_empty() {
        return None;
    }
    let sum: f64 = values.iter().map(|v| v.2).sum();
    Some(match aggregate {
        Aggregate::Avg => sum / values.len() as f64,
        Aggregate::Sum => sum,
        Aggregate::Min => values.iter().map(|v| v.2).fold(f64::INFINITY, f64::min),
        Aggregate::Max => values.iter().map(|v| v.2).fold(f64::NEG_INFINITY, f64::max),
        Aggregate::Last => values.iter().max_by_key(|v| (v.0, v.1)).map(|v| v.2)?,
        Aggregate::Count => unreachable!(),
    })
}

fn row(
    key: &str,
    start: i64,
    end: i64,
    taken: &[&Taken],
    duplicates: u64,
    is_final: bool,
) -> WindowRow {
    WindowRow {
        key: key.to_owned(),
        start,
        end,
        values: AGGREGATES.iter().map(|a| aggregate(taken, *a)).collect(),
        events: taken.len() as u64,
        late: taken.iter().filter(|t| t.late).count() as u64,
        duplicates,
        is_final,
    }
}

struct Modelled {
    outcomes: Vec<Outcome>,
    finals: Vec<WindowRow>,
    open: Vec<WindowRow>,
    totals: Totals,
}

fn is_final(watermark: Option<i64>, end: i64, lateness: i64) -> bool {
    watermark.is_some_and(|w| end + lateness <= w)
}

/// Fixed windows straight from the definitions: every window of every event, decided with the
/// watermark the event arrived under.
fn model_fixed(spec: &Spec, events: &[Event], size: i64, slide: i64) -> Modelled {
    let lateness = spec.lateness_ms;
    let windows_of = |time: i64| -> Vec<i64> {
        (-1000..1000)
            .map(|k| k * slide)
            .filter(|s| *s <= time && time < s + size)
            .collect()
    };
    let mut max_time: Option<i64> = None;
    let mut taken: Vec<(String, Taken, Option<i64>)> = Vec::new();
    let mut duplicates: Vec<(String, i64, Option<i64>)> = Vec::new();
    let mut dropped: Vec<(String, i64)> = Vec::new();
    let mut outcomes = Vec::new();
    let mut totals = Totals::default();
    for (i, e) in events.iter().enumerate() {
        let watermark = max_time.map(|m| m - spec.delay_ms);
        let windows = windows_of(e.time);
        let open = windows
            .iter()
            .any(|s| !is_final(watermark, s + size, lateness));
        // Times taken or dropped as too late.
        let times = || {
            taken
                .iter()
                .map(|t| (&t.0, t.1.time))
                .chain(dropped.iter().map(|d| (&d.0, d.1)))
                .filter(|(k, _)| **k == e.key)
                .map(|(_, t)| t)
        };
        let latest = times().max();
        let before = times().any(|t| t == e.time);
        let outcome = if before && (latest == Some(e.time) || open) {
            duplicates.push((e.key.clone(), e.time, watermark));
            totals.duplicates += 1;
            Outcome::Duplicate
        } else if !open {
            dropped.push((e.key.clone(), e.time));
            totals.dropped += 1;
            Outcome::TooLate
        } else {
            let late = watermark.is_some_and(|w| e.time < w);
            taken.push((
                e.key.clone(),
                Taken {
                    time: e.time,
                    arrival: i as u64 + 1,
                    value: e.value,
                    late,
                },
                watermark,
            ));
            max_time = Some(max_time.map_or(e.time, |m| m.max(e.time)));
            totals.accepted += 1;
            totals.late += u64::from(late);
            Outcome::Accepted { late }
        };
        outcomes.push(outcome);
    }
    let watermark = max_time.map(|m| m - spec.delay_ms);
    let mut keys: Vec<(String, i64)> = taken
        .iter()
        .flat_map(|(k, t, w)| {
            windows_of(t.time)
                .into_iter()
                .filter(|s| !is_final(*w, s + size, lateness))
                .map(|s| (k.clone(), s))
                .collect::<Vec<_>>()
        })
        .collect();
    keys.sort();
    keys.dedup();
    let (mut finals, mut open) = (Vec::new(), Vec::new());
    for (key, start) in keys {
        let end = start + size;
        let members: Vec<&Taken> = taken
            .iter()
            .filter(|(k, t, w)| {
                *k == key && start <= t.time && t.time < end && !is_final(*w, end, lateness)
            })
            .map(|(_, t, _)| t)
            .collect();
        let dups = duplicates
            .iter()
            .filter(|(k, t, w)| {
                *k == key && start <= *t && *t < end && !is_final(*w, end, lateness)
            })
            .count() as u64;
        let done = is_final(watermark, end, lateness);
        let r = row(&key, start, end, &members, dups, done);
        if done { finals.push(r) } else { open.push(r) }
    }
    Modelled {
        outcomes,
        finals,
        open,
        totals,
    }
}

struct Session {
    start: i64,
    end: i64,
    taken: Vec<Taken>,
    duplicates: u64,
}

/// Sessions with plain lists: every session of a key kept with its events, merged and closed
/// by scanning.
fn model_sessions(spec: &Spec, events: &[Event], gap: i64) -> Modelled {
    let lateness = spec.lateness_ms;
    let mut max_time: Option<i64> = None;
    let mut open: Vec<(String, Session)> = Vec::new();
    let mut finals: Vec<(String, Session)> = Vec::new();
    let mut latest: Vec<(String, i64)> = Vec::new();
    let mut outcomes = Vec::new();
    let mut totals = Totals::default();
    let close =
        |open: &mut Vec<(String, Session)>, finals: &mut Vec<(String, Session)>, w: Option<i64>| {
            let (done, keep): (Vec<_>, Vec<_>) = open
                .drain(..)
                .partition(|(_, s)| is_final(w, s.end, lateness));
            finals.extend(done);
            *open = keep;
        };
    for (i, e) in events.iter().enumerate() {
        let watermark = max_time.map(|m| m - spec.delay_ms);
        close(&mut open, &mut finals, watermark);
        let key_latest = latest.iter().find(|(k, _)| *k == e.key).map(|(_, t)| *t);
        let in_open = open
            .iter_mut()
            .find(|(k, s)| *k == e.key && s.taken.iter().any(|t| t.time == e.time));
        let outcome = if let Some((_, s)) = in_open {
            s.duplicates += 1;
            totals.duplicates += 1;
            Outcome::Duplicate
        } else if key_latest == Some(e.time) {
            totals.duplicates += 1;
            Outcome::Duplicate
        } else {
            let (start, end) = (e.time, e.time + gap);
            let overlapping: Vec<usize> = open
                .iter()
                .enumerate()
                .filter(|(_, (k, s))| *k == e.key && s.start < end && start < s.end)
                .map(|(i, _)| i)
                .collect();
            let merged_end = overlapping
                .iter()
                .map(|i| open[*i].1.end)
                .fold(end, i64::max);
            if is_final(watermark, merged_end, lateness) {
                match latest.iter_mut().find(|(k, _)| *k == e.key) {
                    Some((_, t)) => *t = (*t).max(e.time),
                    None => latest.push((e.key.clone(), e.time)),
                }
                totals.dropped += 1;
                Outcome::TooLate
            } else {
                let late = watermark.is_some_and(|w| e.time < w);
                let mut session = Session {
                    start,
                    end,
                    taken: Vec::new(),
                    duplicates: 0,
                };
                for i in overlapping.into_iter().rev() {
                    let (_, old) = open.remove(i);
                    session.start = session.start.min(old.start);
                    session.end = session.end.max(old.end);
                    session.taken.extend(old.taken);
                    session.duplicates += old.duplicates;
                }
                session.taken.push(Taken {
                    time: e.time,
                    arrival: i as u64 + 1,
                    value: e.value,
                    late,
                });
                open.push((e.key.clone(), session));
                match latest.iter_mut().find(|(k, _)| *k == e.key) {
                    Some((_, t)) => *t = (*t).max(e.time),
                    None => latest.push((e.key.clone(), e.time)),
                }
                max_time = Some(max_time.map_or(e.time, |m| m.max(e.time)));
                totals.accepted += 1;
                totals.late += u64::from(late);
                Outcome::Accepted { late }
            }
        };
        outcomes.push(outcome);
    }
    close(&mut open, &mut finals, max_time.map(|m| m - spec.delay_ms));
    let rows = |list: &[(String, Session)], done: bool| -> Vec<WindowRow> {
        let mut rows: Vec<WindowRow> = list
            .iter()
            .map(|(k, s)| {
                let members: Vec<&Taken> = s.taken.iter().collect();
                row(k, s.start, s.end, &members, s.duplicates, done)
            })
            .collect();
        rows.sort_by(|a, b| (&a.key, a.start).cmp(&(&b.key, b.start)));
        rows
    };
    Modelled {
        outcomes,
        finals: rows(&finals, true),
        open: rows(&open, false),
        totals,
    }
}

fn model(spec: &Spec, events: &[Event]) -> Modelled {
    match spec.window {
        WindowKind::Tumbling { size_ms } => model_fixed(spec, events, size_ms, size_ms),
        WindowKind::Hopping { size_ms, slide_ms } => model_fixed(spec, events, size_ms, slide_ms),
        WindowKind::Session { gap_ms } => model_sessions(spec, events, gap_ms),
    }
}

fn values(e: &Event) -> Vec<Option<f64>> {
    vec![e.value; AGGREGATES.len()]
}

fn sorted(mut rows: Vec<WindowRow>) -> Vec<WindowRow> {
    rows.sort_by(|a, b| (&a.key, a.start).cmp(&(&b.key, b.start)));
    rows
}

fn specs() -> impl Strategy<Value = Spec> {
    let window = prop_oneof![
        (1i64..40).prop_map(|size_ms| WindowKind::Tumbling { size_ms }),
        (1i64..40)
            .prop_flat_map(|size| (Just(size), 1..=size))
            .prop_map(|(size_ms, slide_ms)| WindowKind::Hopping { size_ms, slide_ms }),
        (1i64..30).prop_map(|gap_ms| WindowKind::Session { gap_ms }),
    ];
    (window, 0i64..30, 0i64..30).prop_map(|(window, delay_ms, lateness_ms)| Spec {
        window,
        delay_ms,
        lateness_ms,
        aggregates: AGGREGATES.to_vec(),
    })
}

/// Streams that move forward with jitter: late events, stale repeats and exact duplicates.
fn streams() -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(
        (
            0u8..4,
            -60i64..10,
            prop::option::weighted(0.9, 0i8..10),
            0u8..10,
        ),
        0..120,
    )
    .prop_map(|raw| {
        let mut events: Vec<Event> = Vec::new();
        for (i, (key, jitter, value, repeat)) in raw.into_iter().enumerate() {
            let value = value.map(f64::from);
            let event = match (repeat, events.len()) {
                // A repeat of an earlier (key, time) with a new value.
                (0 | 1, n) if n > 0 => {
                    let earlier = &events[(i * 7 + usize::from(repeat)) % n];
                    Event {
                        key: earlier.key.clone(),
                        time: earlier.time,
                        value,
                    }
                }
                _ => Event {
                    key: format!("k{key}"),
                    time: i as i64 * 3 + jitter,
                    value,
                },
            };
            events.push(event);
        }
        events
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn the_engine_agrees_with_the_model(spec in specs(), events in streams()) {
        let expected = model(&spec, &events);
        let mut engine = Engine::new(spec.clone()).expect("valid spec");
        let mut finals = Vec::new();
        let mut outcomes = Vec::new();
        for e in &events {
            outcomes.push(engine.push(&e.key, e.time, &values(e)));
            finals.extend(engine.take_final());
        }
        prop_assert_eq!(&outcomes, &expected.outcomes);
        prop_assert_eq!(engine.totals(), expected.totals);
        prop_assert_eq!(sorted(finals), expected.finals);
        prop_assert_eq!(engine.open_rows(), expected.open);
    }

    #[test]
    fn a_restored_checkpoint_goes_on_as_if_never_stopped(
        spec in specs(),
        events in streams(),
        split in 0usize..120,
    ) {
        let split = split.min(events.len());
        let mut whole = Engine::new(spec.clone()).expect("valid spec");
        let mut whole_finals = Vec::new();
        for e in &events {
            whole.push(&e.key, e.time, &values(e));
            whole_finals.extend(whole.take_final());
        }

        let mut first = Engine::new(spec.clone()).expect("valid spec");
        let mut finals = Vec::new();
        for e in &events[..split] {
            first.push(&e.key, e.time, &values(e));
            finals.extend(first.take_final());
        }
        let saved = serde_json::to_string(&first.checkpoint()).expect("serializes");
        drop(first);
        let checkpoint: Checkpoint = serde_json::from_str(&saved).expect("deserializes");
        let mut second = Engine::restore(spec, checkpoint).expect("restores");
        for e in &events[split..] {
            second.push(&e.key, e.time, &values(e));
            finals.extend(second.take_final());
        }
        prop_assert_eq!(finals, whole_finals);
        prop_assert_eq!(second.open_rows(), whole.open_rows());
        prop_assert_eq!(second.totals(), whole.totals());
    }

    /// A stream split by key over several engines, each told the whole stream's greatest
    /// event time before each of its events and at the end of each batch, gives the rows of
    /// one engine over the whole stream: batch by batch the same final windows, and the same
    /// open windows and totals.
    #[test]
    fn engines_of_partitions_give_the_rows_of_one_engine(
        spec in specs(),
        events in streams(),
        partitions in 1u32..5,
        cuts in prop::collection::vec(0usize..120, 0..8),
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(events.len())).collect();
        cuts.push(events.len());
        cuts.sort_unstable();
        let mut whole = Engine::new(spec.clone()).expect("valid spec");
        let mut parts: Vec<Engine> = (0..partitions)
            .map(|_| Engine::new(spec.clone()).expect("valid spec"))
            .collect();
        let mut max = None;
        let mut start = 0;
        for cut in cuts {
            for e in &events[start..cut] {
                whole.push(&e.key, e.time, &values(e));
                let part = &mut parts[affluent_streams::partition_of(&e.key, partitions) as usize];
                if let Some(m) = max {
                    part.advance(m);
                }
                part.push(&e.key, e.time, &values(e));
                max = affluent_streams::max_time_after(max, e.time);
            }
            start = cut;
            let mut finals = Vec::new();
            for part in &mut parts {
                if let Some(m) = max {
                    part.advance(m);
                }
                finals.extend(part.take_final());
            }
            prop_assert_eq!(sorted(finals), sorted(whole.take_final()));
        }
        let open: Vec<WindowRow> = parts.iter().flat_map(Engine::open_rows).collect();
        prop_assert_eq!(sorted(open), whole.open_rows());
        let mut totals = Totals::default();
        for part in &parts {
            let t = part.totals();
            totals.accepted += t.accepted;
            totals.late += t.late;
            totals.duplicates += t.duplicates;
            totals.dropped += t.dropped;
        }
        prop_assert_eq!(totals, whole.totals());
        prop_assert_eq!(parts.iter().filter_map(Engine::watermark).max(), whole.watermark());
    }
}

#[test]
fn a_stale_repeat_is_a_duplicate_however_old_and_a_late_report_updates_its_window() {
    let spec = Spec {
        window: WindowKind::Tumbling { size_ms: 180_000 },
        delay_ms: 60_000,
        lateness_ms: 120_000,
        aggregates: vec![Aggregate::Avg, Aggregate::Count],
    };
    let mut engine = Engine::new(spec).expect("valid spec");
    assert_eq!(
        engine.push("a", 0, &[Some(4.0), Some(1.0)]),
        Outcome::Accepted { late: false }
    );
    assert_eq!(
        engine.push("b", 1_000_000, &[Some(1.0), Some(1.0)]),
        Outcome::Accepted { late: false }
    );
    // a's window [0, 3 min) is final (watermark 940 s); its report repeated is a duplicate.
    assert_eq!(
        engine.push("a", 0, &[Some(9.0), Some(1.0)]),
        Outcome::Duplicate
    );
    // b 2 minutes back: late, its window [900 s, 1080 s) is still open and takes it.
    assert_eq!(
        engine.push("b", 930_000, &[Some(3.0), Some(1.0)]),
        Outcome::Accepted { late: true }
    );
    // a report of a at 10 s: its window is final, dropped.
    assert_eq!(
        engine.push("a", 10_000, &[Some(1.0), Some(1.0)]),
        Outcome::TooLate
    );
    let finals = engine.take_final();
    assert_eq!(finals.len(), 1);
    assert_eq!(
        (finals[0].key.as_str(), finals[0].values[0]),
        ("a", Some(4.0))
    );
    let open = engine.open_rows();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].values[0], open[0].events, open[0].late),
        (Some(2.0), 2, 1)
    );
    assert_eq!(
        engine.totals(),
        Totals {
            accepted: 3,
            late: 1,
            duplicates: 1,
            dropped: 1
        }
    );
}

#[test]
fn specs_that_cannot_run_say_why() {
    let bad = |window, delay_ms, lateness_ms| {
        Engine::new(Spec {
            window,
            delay_ms,
            lateness_ms,
            aggregates: vec![],
        })
        .expect_err("refused")
        .to_string()
    };
    assert!(bad(WindowKind::Tumbling { size_ms: 0 }, 0, 0).contains("size"));
    assert!(
        bad(
            WindowKind::Hopping {
                size_ms: 10,
                slide_ms: 20
            },
            0,
            0
        )
        .contains("slide")
    );
    assert!(bad(WindowKind::Session { gap_ms: -1 }, 0, 0).contains("gap"));
    assert!(bad(WindowKind::Tumbling { size_ms: 1 }, -1, 0).contains("delay"));
    assert!(bad(WindowKind::Tumbling { size_ms: i64::MAX }, 0, 0).contains("limited"));
}

#[test]
fn times_at_the_ends_of_the_range_neither_overflow_nor_panic() {
    for window in [
        WindowKind::Tumbling {
            size_ms: affluent_streams::MAX_TIME,
        },
        WindowKind::Hopping {
            size_ms: affluent_streams::MAX_TIME,
            slide_ms: 1 << 61,
        },
        WindowKind::Session {
            gap_ms: affluent_streams::MAX_TIME,
        },
    ] {
        let spec = Spec {
            window,
            delay_ms: affluent_streams::MAX_TIME,
            lateness_ms: affluent_streams::MAX_TIME,
            aggregates: vec![Aggregate::Sum],
        };
        let mut engine = Engine::new(spec).expect("valid spec");
        for t in [
            i64::MIN,
            -affluent_streams::MAX_TIME,
            0,
            affluent_streams::MAX_TIME,
            i64::MAX,
        ] {
            engine.push("k", t, &[Some(f64::MAX)]);
            engine.push("k", t, &[Some(f64::NAN)]);
        }
        let _ = engine.take_final();
        let _ = engine.open_rows();
        assert_eq!(engine.totals().dropped, 4, "{:?}", engine.totals());
    }
}
