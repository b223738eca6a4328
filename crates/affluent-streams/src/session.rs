//! Session windows: per key, events less than the gap apart are one window.
//!
//! An event at `t` is the window `[t, t + gap)`; it merges with every open session of its key
//! that overlaps it. Final sessions are never reopened: a late event next to one starts a
//! session of its own.

use std::cmp::Reverse;

use crate::{Engine, Outcome, Window};

impl Engine {
    pub(crate) fn push_session(
        &mut self,
        id: u32,
        at: (i64, u64),
        values: &[Option<f64>],
        gap: i64,
    ) -> Outcome {
        let time = at.0;
        if self.is_duplicate(id, time) {
            if let Some(session) = self
                .sessions
                .get_mut(&id)
                .and_then(|list| list.iter_mut().find(|s| s.times.contains(&time)))
            {
                session.duplicates += 1;
            }
            return Outcome::Duplicate;
        }
        let (start, end) = (time, time.saturating_add(gap));
        let list: &[Window] = self.sessions.get(&id).map_or(&[], |l| &l[..]);
        // Sessions are disjoint and sorted: the overlapping ones are one run.
        let first = list.partition_point(|s| s.end <= start);
        let last = first + list[first..].partition_point(|s| s.start < end);
        let merged_end = list[first..last].iter().map(|s| s.end).fold(end, i64::max);
        if self.is_final(merged_end) {
            return Outcome::TooLate;
        }
        let late = self.watermark().is_some_and(|w| time < w);
        let columns = self.spec.aggregates.len();
        let list = self.sessions.entry(id).or_default();
        let mut session = Window::new(start, end, columns);
        for old in list.drain(first..last) {
            session.start = session.start.min(old.start);
            session.end = session.end.max(old.end);
            for (cell, other) in session.cells.iter_mut().zip(&old.cells) {
                cell.merge(other);
            }
            session.events += old.events;
            session.late += old.late;
            session.duplicates += old.duplicates;
            session.times.extend(old.times);
        }
        session.add(values, at, late);
        session.times.push(time);
        self.expiry.push(Reverse((session.end, id, session.start)));
        list.insert(first, session);
        self.seen.insert((id, time));
        Outcome::Accepted { late }
    }
}
