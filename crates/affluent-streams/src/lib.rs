//! Event-time windows: the engine behind `[streams.NAME]`.
//!
//! An [`Engine`] takes events (a key, an event time in milliseconds, one value per aggregate)
//! in arrival order and keeps, per key, the windows they fall in: tumbling, hopping or session
//! windows ([`WindowKind`]). Time is the events' own, never the clock's:
//!
//! - the **watermark** is the greatest event time accepted so far minus `delay_ms`;
//! - a window `[start, end)` is **final** once the watermark reaches `end + lateness_ms`; it is
//!   then handed out once ([`Engine::take_final`]) and never changes again;
//! - an event older than the watermark is **late**: it still updates every window of its time
//!   that is not final (and is counted as late there); if all of them are final it is dropped
//!   and counted ([`Totals::dropped`]);
//! - an event whose (key, event time) was accepted before is a **duplicate**: it changes no
//!   value and is counted in the windows of its time that are still open. A key's latest
//!   event time (accepted or dropped) is remembered for ever, so a source that repeats a stale
//!   report is told apart from a late one however old the report is.
//!
//! The engine is deterministic: the same events in the same order give the same rows, and
//! [`Engine::checkpoint`] / [`Engine::restore`] carry its whole state across a restart, which
//! is what the runtime needs for results written exactly once.
//!
//! **Invariant:** nothing here reads a clock, a file or the network; the crate knows nothing of
//! tables, landing or buses.

mod session;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

/// The greatest event time (in either direction from 1970, ms) an engine takes, and the
/// longest window, delay or lateness: about 146 million years. Events further out are dropped
/// as too late, so that no window arithmetic overflows.
pub const MAX_TIME: i64 = 1 << 62;

/// Which windows an event falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WindowKind {
    /// Consecutive windows of `size_ms`, aligned on the Unix epoch; each event in one.
    Tumbling {
        /// The length of a window.
        size_ms: i64,
    },
    /// Windows of `size_ms` starting every `slide_ms` (aligned on the Unix epoch); an event is
    /// in every window that covers it.
    Hopping {
        /// The length of a window.
        size_ms: i64,
        /// How far apart windows start.
        slide_ms: i64,
    },
    /// Per key, events less than `gap_ms` apart form one window, from the first event to the
    /// last one plus the gap.
    Session {
        /// The silence that ends a session.
        gap_ms: i64,
    },
}

/// An aggregate of one value column over a window. Nulls are skipped, as in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The mean of the values (null if none).
    Avg,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The sum of the values (null if none).
    Sum,
    /// How many values are not null.
    Count,
    /// The value of the latest event time (among equal times, the last to arrive).
    Last,
}

/// What an engine computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// The windows.
    pub window: WindowKind,
    /// How far the watermark stays behind the greatest event time.
    pub delay_ms: i64,
    /// How long past its end (in watermark time) a window still takes late events.
    pub lateness_ms: i64,
    /// One aggregate per value an event carries, in order.
    pub aggregates: Vec<Aggregate>,
}

/// A spec that cannot run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    /// A window length of zero or less.
    #[error("a window's {0} must be longer than zero")]
    NotPositive(&'static str),
    /// A hopping window sliding further than its size would skip events.
    #[error("a hopping window's slide ({slide_ms} ms) must not exceed its size ({size_ms} ms)")]
    SlideTooLong {
        /// The window's size.
        size_ms: i64,
        /// Its slide.
        slide_ms: i64,
    },
    /// A negative delay or lateness.
    #[error("{0} must not be negative")]
    Negative(&'static str),
    /// A window, delay or lateness longer than [`MAX_TIME`].
    #[error("windows, delays and lateness are limited to about 146 million years")]
    TooLong,
}

/// A checkpoint that does not fit the engine it is restored into.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The checkpoint was taken with another spec (windows, delay, lateness or aggregates).
    #[error(
        "the checkpoint was taken with other windows or aggregates; the stream's results must be rebuilt"
    )]
    SpecChanged,
    /// The checkpoint is inconsistent (it refers to a key it does not hold).
    #[error("the checkpoint is damaged: {0}")]
    Damaged(&'static str),
}

impl Spec {
    /// Checks that the windows, delay and lateness can run.
    pub fn check(&self) -> Result<(), SpecError> {
        match self.window {
            WindowKind::Tumbling { size_ms } if size_ms <= 0 => {
                return Err(SpecError::NotPositive("size"));
            }
            WindowKind::Hopping { size_ms, slide_ms } => {
                if size_ms <= 0 {
                    return Err(SpecError::NotPositive("size"));
                }
                if slide_ms <= 0 {
                    return Err(SpecError::NotPositive("slide"));
                }
                if slide_ms > size_ms {
                    return Err(SpecError::SlideTooLong { size_ms, slide_ms });
                }
            }
            WindowKind::Session { gap_ms } if gap_ms <= 0 => {
                return Err(SpecError::NotPositive("gap"));
            }
            _ => {}
        }
        let longest = match self.window {
            WindowKind::Tumbling { size_ms } | WindowKind::Hopping { size_ms, .. } => size_ms,
            WindowKind::Session { gap_ms } => gap_ms,
        };
        if longest.max(self.delay_ms).max(self.lateness_ms) > MAX_TIME {
            return Err(SpecError::TooLong);
        }
        if self.delay_ms < 0 {
            return Err(SpecError::Negative("the watermark delay"));
        }
        if self.lateness_ms < 0 {
            return Err(SpecError::Negative("the allowed lateness"));
        }
        Ok(())
    }
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Taken into its windows; `late` if it was older than the watermark.
    Accepted {
        /// Older than the watermark when it arrived.
        late: bool,
    },
    /// The same key and event time as an event taken before: counted, not taken.
    Duplicate,
    /// Every window of its time was final: dropped and counted.
    TooLate,
}

/// Counts over every event an engine was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Events taken into windows.
    pub accepted: u64,
    /// Of those, how many were late.
    pub late: u64,
    /// Events dropped as duplicates.
    pub duplicates: u64,
    /// Events dropped because their windows were final.
    pub dropped: u64,
}

/// One window of one key, with its aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRow {
    /// The key.
    pub key: String,
    /// The window's first instant (ms).
    pub start: i64,
    /// The instant after its last one (ms).
    pub end: i64,
    /// One value per aggregate of the spec (null where no value was seen; `Count` is never
    /// null).
    pub values: Vec<Option<f64>>,
    /// Events taken.
    pub events: u64,
    /// Of those, how many were late.
    pub late: u64,
    /// Duplicates that arrived while the window was open.
    pub duplicates: u64,
    /// Whether the window is final (it will not change again).
    pub is_final: bool,
}

/// The running aggregates of one value column; `min`, `max` and `last` mean something once
/// `count` is above zero (they stay finite, so that a checkpoint is plain JSON).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Cell {
    sum: f64,
    count: u64,
    min: f64,
    max: f64,
    /// (event time, arrival) of the latest value.
    last_at: (i64, u64),
    last: f64,
}

impl Cell {
    const EMPTY: Cell = Cell {
        sum: 0.0,
        count: 0,
        min: 0.0,
        max: 0.0,
        last_at: (i64::MIN, 0),
        last: 0.0,
    };

    fn add(&mut self, value: f64, at: (i64, u64)) {
        if self.count == 0 {
            (self.min, self.max) = (value, value);
        }
        self.sum += value;
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if at >= self.last_at {
            self.last_at = at;
            self.last = value;
        }
    }

    fn merge(&mut self, other: &Cell) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.sum += other.sum;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.last_at >= self.last_at {
            self.last_at = other.last_at;
            self.last = other.last;
        }
    }

    fn value(&self, aggregate: Aggregate) -> Option<f64> {
        if aggregate == Aggregate::Count {
            return Some(self.count as f64);
        }
        if self.count == 0 {
            return None;
        }
        Some(match aggregate {
            Aggregate::Avg => self.sum / self.count as f64,
            Aggregate::Min => self.min,
            Aggregate::Max => self.max,
            Aggregate::Sum => self.sum,
            Aggregate::Last => self.last,
            Aggregate::Count => self.count as f64,
        })
    }
}

/// The state of one open window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Window {
    start: i64,
    end: i64,
    cells: Vec<Cell>,
    events: u64,
    late: u64,
    duplicates: u64,
    /// Session windows only: the event times taken, so that their duplicate marks can be
    /// forgotten when the session is final.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    times: Vec<i64>,
}

impl Window {
    fn new(start: i64, end: i64, columns: usize) -> Window {
        Window {
            start,
            end,
            cells: vec![Cell::EMPTY; columns],
            events: 0,
            late: 0,
            duplicates: 0,
            times: Vec::new(),
        }
    }

    fn add(&mut self, values: &[Option<f64>], at: (i64, u64), late: bool) {
        for (cell, value) in self.cells.iter_mut().zip(values) {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                cell.add(v, at);
            }
        }
        self.events += 1;
        self.late += u64::from(late);
    }

    fn row(&self, key: &str, aggregates: &[Aggregate], is_final: bool) -> WindowRow {
        WindowRow {
            key: key.to_owned(),
            start: self.start,
            end: self.end,
            values: self
                .cells
                .iter()
                .zip(aggregates)
                .map(|(cell, aggregate)| cell.value(*aggregate))
                .collect(),
            events: self.events,
            late: self.late,
            duplicates: self.duplicates,
            is_final,
        }
    }
}

/// Windows over a stream of events, by event time. See the crate's documentation.
#[derive(Debug)]
pub struct Engine {
    spec: Spec,
    keys: Vec<String>,
    key_ids: FxHashMap<String, u32>,
    /// Per key, its latest event time, accepted or dropped as too late.
    latest: Vec<Option<i64>>,
    max_time: Option<i64>,
    /// Arrivals so far (orders equal event times for `Last`).
    arrivals: u64,
    /// Tumbling and hopping windows, by (key, start).
    windows: FxHashMap<(u32, i64), Window>,
    /// Session windows, per key, sorted by start and disjoint.
    sessions: FxHashMap<u32, Vec<Window>>,
    /// (end, key, start) of the windows in state, earliest end first; for sessions an entry
    /// whose session has since grown or merged is skipped.
    expiry: BinaryHeap<Reverse<(i64, u32, i64)>>,
    /// (key, event time) accepted while some window of that time is not final.
    seen: FxHashSet<(u32, i64)>,
    /// Tumbling and hopping: (end of the last window of the time, key, time) of `seen`.
    seen_expiry: BinaryHeap<Reverse<(i64, u32, i64)>>,
    ready: Vec<WindowRow>,
    totals: Totals,
}

impl Engine {
    /// An engine with no state. The spec must pass [`Spec::check`].
    pub fn new(spec: Spec) -> Result<Engine, SpecError> {
        spec.check()?;
        Ok(Engine {
            spec,
            keys: Vec::new(),
            key_ids: FxHashMap::default(),
            latest: Vec::new(),
            max_time: None,
            arrivals: 0,
            windows: FxHashMap::default(),
            sessions: FxHashMap::default(),
            expiry: BinaryHeap::new(),
            seen: FxHashSet::default(),
            seen_expiry: BinaryHeap::new(),
            ready: Vec::new(),
            totals: Totals::default(),
        })
    }

    /// The spec the engine runs.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The greatest accepted event time minus the delay, once an event was accepted.
    pub fn watermark(&self) -> Option<i64> {
        self.max_time.map(|t| t.saturating_sub(self.spec.delay_ms))
    }

    /// Counts over every event given so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Windows (open ones) held in memory.
    pub fn open_windows(&self) -> usize {
        self.windows.len() + self.sessions.values().map(Vec::len).sum::<usize>()
    }

    /// Takes one event: its key, its event time (ms) and one value per aggregate (missing
    /// values count as nulls, extra ones are ignored).
    pub fn push(&mut self, key: &str, time: i64, values: &[Option<f64>]) -> Outcome {
        let id = match self.key_ids.get(key) {
            Some(id) => *id,
            None => {
                let id = self.keys.len() as u32;
                self.keys.push(key.to_owned());
                self.key_ids.insert(key.to_owned(), id);
                self.latest.push(None);
                id
            }
        };
        self.arrivals += 1;
        if !(-MAX_TIME..=MAX_TIME).contains(&time) {
            // Millions of years from 1970: no window arithmetic overflows within this range.
            self.totals.dropped += 1;
            return Outcome::TooLate;
        }
        let at = (time, self.arrivals);
        let columns = self.spec.aggregates.len();
        let mut padded;
        let values = if values.len() >= columns {
            &values[..columns]
        } else {
            padded = values.to_vec();
            padded.resize(columns, None);
            &padded[..]
        };
        let outcome = match self.spec.window {
            WindowKind::Tumbling { size_ms } => self.push_fixed(id, at, values, size_ms, size_ms),
            WindowKind::Hopping { size_ms, slide_ms } => {
                self.push_fixed(id, at, values, size_ms, slide_ms)
            }
            WindowKind::Session { gap_ms } => self.push_session(id, at, values, gap_ms),
        };
        match outcome {
            Outcome::Accepted { late } => {
                self.totals.accepted += 1;
                self.totals.late += u64::from(late);
                let latest = &mut self.latest[id as usize];
                *latest = Some(latest.map_or(time, |l| l.max(time)));
                if self.max_time.is_none_or(|m| time > m) {
                    self.max_time = Some(time);
                    self.finalize();
                }
            }
            Outcome::Duplicate => self.totals.duplicates += 1,
            Outcome::TooLate => {
                self.totals.dropped += 1;
                // Remembered too: the same stale report again is a duplicate, not one more
                // late event.
                let latest = &mut self.latest[id as usize];
                *latest = Some(latest.map_or(time, |l| l.max(time)));
            }
        }
        outcome
    }

    /// Moves the watermark as if an event of time `max_time` had been accepted, making final
    /// the windows it passes (times outside [`MAX_TIME`] are ignored). This is how a stream
    /// split over several engines by key ([`partition_of`]) gives the rows of one engine over
    /// the whole stream: each partition's engine is told, before each of its events and at
    /// the end of each batch, the greatest event time of the whole stream so far. That is the
    /// running maximum of the in-range event times ([`max_time_after`]), as an event later
    /// than every accepted one is always accepted.
    pub fn advance(&mut self, max_time: i64) {
        if (-MAX_TIME..=MAX_TIME).contains(&max_time) && self.max_time.is_none_or(|m| max_time > m)
        {
            self.max_time = Some(max_time);
            self.finalize();
        }
    }

    fn is_duplicate(&self, id: u32, time: i64) -> bool {
        self.latest[id as usize] == Some(time) || self.seen.contains(&(id, time))
    }

    /// Whether a window ending at `end` is final under the current watermark.
    fn is_final(&self, end: i64) -> bool {
        self.watermark()
            .is_some_and(|w| end.saturating_add(self.spec.lateness_ms) <= w)
    }

    fn push_fixed(
        &mut self,
        id: u32,
        at: (i64, u64),
        values: &[Option<f64>],
        size: i64,
        slide: i64,
    ) -> Outcome {
        let time = at.0;
        let starts = window_starts(time, size, slide);
        let last_end = starts.last_start.saturating_add(size);
        if self.is_duplicate(id, time) {
            for start in starts.iter(slide) {
                if !self.is_final(start.saturating_add(size))
                    && let Some(window) = self.windows.get_mut(&(id, start))
                {
                    window.duplicates += 1;
                }
            }
            return Outcome::Duplicate;
        }
        if self.is_final(last_end) {
            return Outcome::TooLate;
        }
        let late = self.watermark().is_some_and(|w| time < w);
        let columns = self.spec.aggregates.len();
        for start in starts.iter(slide) {
            let end = start.saturating_add(size);
            if self.is_final(end) {
                continue;
            }
            let window = self.windows.entry((id, start)).or_insert_with(|| {
                self.expiry.push(Reverse((end, id, start)));
                Window::new(start, end, columns)
            });
            window.add(values, at, late);
        }
        self.seen.insert((id, time));
        self.seen_expiry.push(Reverse((last_end, id, time)));
        Outcome::Accepted { late }
    }

    /// Moves every window the watermark made final to the ready rows, and forgets the
    /// duplicate marks no open window needs.
    fn finalize(&mut self) {
        let Some(watermark) = self.watermark() else {
            return;
        };
        let lateness = self.spec.lateness_ms;
        let due = |end: i64| end.saturating_add(lateness) <= watermark;
        while let Some(Reverse((end, id, start))) = self.expiry.peek().copied() {
            if !due(end) {
                break;
            }
            self.expiry.pop();
            let key = &self.keys[id as usize];
            match self.spec.window {
                WindowKind::Session { .. } => {
                    let Some(list) = self.sessions.get_mut(&id) else {
                        continue;
                    };
                    let Some(at) = list.iter().position(|s| s.start == start && s.end == end)
                    else {
                        continue;
                    };
                    let session = list.remove(at);
                    if list.is_empty() {
                        self.sessions.remove(&id);
                    }
                    for time in &session.times {
                        self.seen.remove(&(id, *time));
                    }
                    self.ready
                        .push(session.row(key, &self.spec.aggregates, true));
                }
                _ => {
                    if let Some(window) = self.windows.remove(&(id, start)) {
                        self.ready
                            .push(window.row(key, &self.spec.aggregates, true));
                    }
                }
            }
        }
        while let Some(Reverse((end, id, time))) = self.seen_expiry.peek().copied() {
            if !due(end) {
                break;
            }
            self.seen_expiry.pop();
            self.seen.remove(&(id, time));
        }
    }

    /// The windows that became final since the last call, in the order they did (by end,
    /// then key and start).
    pub fn take_final(&mut self) -> Vec<WindowRow> {
        std::mem::take(&mut self.ready)
    }

    /// The windows still open, sorted by key and start, marked as not final.
    pub fn open_rows(&self) -> Vec<WindowRow> {
        let aggregates = &self.spec.aggregates;
        let mut rows: Vec<WindowRow> = self
            .windows
            .iter()
            .map(|((id, _), w)| w.row(&self.keys[*id as usize], aggregates, false))
            .chain(self.sessions.iter().flat_map(|(id, list)| {
                list.iter()
                    .map(|w| w.row(&self.keys[*id as usize], aggregates, false))
            }))
            .collect();
        rows.sort_by(|a, b| (&a.key, a.start).cmp(&(&b.key, b.start)));
        rows
    }

    /// The whole state, to be restored with [`Engine::restore`] after a restart. Rows not yet
    /// taken with [`Engine::take_final`] are part of it.
    pub fn checkpoint(&self) -> Checkpoint {
        let mut windows: Vec<(u32, Window)> = self
            .windows
            .iter()
            .map(|((id, _), w)| (*id, w.clone()))
            .chain(
                self.sessions
                    .iter()
                    .flat_map(|(id, list)| list.iter().map(|w| (*id, w.clone()))),
            )
            .collect();
        windows.sort_by_key(|(id, w)| (*id, w.start));
        let mut seen: Vec<(u32, i64)> = self.seen.iter().copied().collect();
        seen.sort_unstable();
        Checkpoint {
            spec: self.spec.clone(),
            keys: self.keys.clone(),
            latest: self.latest.clone(),
            max_time: self.max_time,
            arrivals: self.arrivals,
            windows,
            seen,
            ready: self.ready.clone(),
            totals: self.totals,
        }
    }

    /// An engine in the state a checkpoint holds. The spec must be the one it was taken with.
    pub fn restore(spec: Spec, checkpoint: Checkpoint) -> Result<Engine, RestoreError> {
        if spec != checkpoint.spec {
            return Err(RestoreError::SpecChanged);
        }
        let mut engine = Engine::new(spec).map_err(|_| RestoreError::SpecChanged)?;
        if checkpoint.latest.len() != checkpoint.keys.len() {
            return Err(RestoreError::Damaged("keys and their latest times differ"));
        }
        let keys = checkpoint.keys.len();
        engine.key_ids = checkpoint
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i as u32))
            .collect();
        engine.keys = checkpoint.keys;
        engine.latest = checkpoint.latest;
        engine.max_time = checkpoint.max_time;
        engine.arrivals = checkpoint.arrivals;
        engine.totals = checkpoint.totals;
        engine.ready = checkpoint.ready;
        let columns = engine.spec.aggregates.len();
        for (id, window) in checkpoint.windows {
            if id as usize >= keys {
                return Err(RestoreError::Damaged("a window of an unknown key"));
            }
            if window.cells.len() != columns {
                return Err(RestoreError::Damaged("a window with other aggregates"));
            }
            engine.expiry.push(Reverse((window.end, id, window.start)));
            match engine.spec.window {
                WindowKind::Session { .. } => {
                    engine.sessions.entry(id).or_default().push(window);
                }
                _ => {
                    engine.windows.insert((id, window.start), window);
                }
            }
        }
        for list in engine.sessions.values_mut() {
            list.sort_by_key(|w| w.start);
        }
        if let WindowKind::Tumbling { size_ms } | WindowKind::Hopping { size_ms, .. } =
            engine.spec.window
        {
            let slide = match engine.spec.window {
                WindowKind::Hopping { slide_ms, .. } => slide_ms,
                _ => size_ms,
            };
            for (id, time) in &checkpoint.seen {
                let last_end = window_starts(*time, size_ms, slide)
                    .last_start
                    .saturating_add(size_ms);
                engine.seen_expiry.push(Reverse((last_end, *id, *time)));
            }
        }
        engine.seen = checkpoint.seen.into_iter().collect();
        Ok(engine)
    }
}

/// The greatest event time of a stream once an event of `time` arrived after `max`: what an
/// [`Engine`] over the whole stream holds (in-range times only), to be given to the engines of
/// its partitions with [`Engine::advance`].
pub fn max_time_after(max: Option<i64>, time: i64) -> Option<i64> {
    if (-MAX_TIME..=MAX_TIME).contains(&time) {
        Some(max.map_or(time, |m| m.max(time)))
    } else {
        max
    }
}

/// The partition (`0..partitions`) a key's events go to: FNV-1a of its bytes, the same in
/// every process and release, so that a key's windows always live in one partition.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u32
}

/// An engine's whole state, serializable (the runtime stores it beside the results it wrote).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    spec: Spec,
    keys: Vec<String>,
    latest: Vec<Option<i64>>,
    max_time: Option<i64>,
    arrivals: u64,
    windows: Vec<(u32, Window)>,
    seen: Vec<(u32, i64)>,
    ready: Vec<WindowRow>,
    totals: Totals,
}

impl Checkpoint {
    /// The counts over every event given before the checkpoint.
    pub fn totals(&self) -> Totals {
        self.totals
    }
}

/// The starts of the fixed windows covering a time: `first_start, first_start + slide, ...,
/// last_start`.
#[derive(Debug, Clone, Copy)]
struct Starts {
    first_start: i64,
    last_start: i64,
}

impl Starts {
    fn iter(self, slide: i64) -> impl Iterator<Item = i64> {
        let count = (self.last_start - self.first_start) / slide + 1;
        (0..count).map(move |i| self.first_start + i * slide)
    }
}

fn window_starts(time: i64, size: i64, slide: i64) -> Starts {
    let last_start = time.div_euclid(slide) * slide;
    // The windows reaching back start at last_start - k * slide for every k >= 0 with
    // start + size > time: k * slide < size - (time - last_start).
    let extra = (size - (time - last_start) - 1).div_euclid(slide);
    Starts {
        first_start: last_start - extra * slide,
        last_start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hopping_starts_cover_exactly_the_windows_holding_the_time() {
        for size in 1..12 {
            for slide in 1..=size {
                for time in -30..30 {
                    let starts: Vec<i64> = window_starts(time, size, slide).iter(slide).collect();
                    let brute: Vec<i64> = (-100..100)
                        .map(|k| k * slide)
                        .filter(|s| *s <= time && time < s + size)
                        .collect();
                    assert_eq!(starts, brute, "time {time} size {size} slide {slide}");
                }
            }
        }
    }
}
