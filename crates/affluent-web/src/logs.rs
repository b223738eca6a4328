//! The running process's log, for the pipeline page: a [`tracing_subscriber::Layer`] keeps the
//! last [`KEPT`] events in memory, numbered, and `GET /api/pipeline/logs` reads them after a
//! number (the page asks every two seconds for what came since), filtered by level and task.
//!
//! The binary installs [`layer`] beside its terminal output, with the same filter; a process
//! without it (a test) simply has an empty log. Log lines never hold secrets (the components
//! redact them before logging); the page is for admins all the same.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use utoipa::ToSchema;

/// Events kept.
pub const KEPT: usize = 5_000;
/// Longest message kept, in characters.
const MAX_MESSAGE: usize = 4_000;

/// One logged event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogRecord {
    /// Its number: increasing, from 1, over the process's life.
    pub seq: u64,
    /// When (RFC 3339).
    pub time: String,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// The module that logged it (`affluent_scheduler`...).
    pub target: String,
    /// The message, with the event's other fields as `name=value`.
    pub message: String,
}

/// The kept events.
#[derive(Debug, Default)]
pub struct Logs {
    inner: Mutex<(u64, VecDeque<(Level, LogRecord)>)>,
}

/// The process's log.
pub fn global() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(Logs::default)
}

/// The layer that fills [`global`].
pub fn layer() -> LogLayer {
    LogLayer
}

impl Logs {
    fn push(&self, level: Level, target: &str, message: String) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0 += 1;
        let seq = inner.0;
        if inner.1.len() == KEPT {
            inner.1.pop_front();
        }
        inner.1.push_back((
            level,
            LogRecord {
                seq,
                time: jiff::Timestamp::now().to_string(),
                level: level.as_str().to_ascii_lowercase(),
                target: target.to_string(),
                message,
            },
        ));
    }

    /// The events of `level` or more severe whose message or target holds `task` (when
    /// given), oldest first: from the start (`after` 0), the last `limit` of them; after
    /// `after`, the first `limit` that follow it, so that a reader asking again with the
    /// number returned misses none still kept. Returns them and the number of the last event
    /// looked at (to ask after next time).
    pub fn read(
        &self,
        after: u64,
        level: Level,
        task: Option<&str>,
        limit: usize,
    ) -> (Vec<LogRecord>, u64) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // `Level`'s order: ERROR is the least, TRACE the greatest.
        let wanted = |l: &Level, r: &LogRecord| {
            *l <= level && task.is_none_or(|t| r.message.contains(t) || r.target.contains(t))
        };
        if after == 0 {
            let mut out: Vec<LogRecord> = inner
                .1
                .iter()
                .rev()
                .filter(|(l, r)| wanted(l, r))
                .take(limit)
                .map(|(_, r)| r.clone())
                .collect();
            out.reverse();
            return (out, inner.0);
        }
        let mut out = Vec::new();
        let mut last = after;
        for (l, r) in inner.1.iter().filter(|(_, r)| r.seq > after) {
            if out.len() == limit {
                break;
            }
            last = r.seq;
            if wanted(l, r) {
                out.push(r.clone());
            }
        }
        if out.len() < limit {
            last = last.max(inner.0);
        }
        (out, last)
    }
}

/// Keeps each event in [`global`].
#[derive(Debug, Clone, Copy)]
pub struct LogLayer;

impl<S: Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        let mut message = text.message;
        if !text.fields.is_empty() {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(&text.fields.join(" "));
        }
        let meta = event.metadata();
        global().push(
            *meta.level(),
            meta.target(),
            crate::shorten(&message, MAX_MESSAGE),
        );
    }
}

#[derive(Default)]
struct Text {
    message: String,
    fields: Vec<String>,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields.push(format!("{}={value}", field.name()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.push(format!("{}={value:?}", field.name()));
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn events_are_kept_numbered_and_read_by_level_and_task() {
        let subscriber = tracing_subscriber::registry().with(layer());
        let before = global().read(0, Level::TRACE, None, KEPT).1;
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("source:alpha [2024-01-01, 2024-01-02): 3 records");
            tracing::warn!(task = "source:beta", "slow answer");
            tracing::debug!("source:alpha details");
            tracing::error!("model:gamma failed");
        });
        let (all, last) = global().read(before, Level::TRACE, None, KEPT);
        assert_eq!(last, before + 4);
        assert_eq!(
            all.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (before + 1..=before + 4).collect::<Vec<_>>()
        );
        assert_eq!(all[1].message, "slow answer task=source:beta");
        assert_eq!(all[1].level, "warn");
        let (warn, _) = global().read(before, Level::WARN, None, KEPT);
        assert_eq!(
            warn.iter().map(|r| r.level.as_str()).collect::<Vec<_>>(),
            ["warn", "error"]
        );
        let (alpha, _) = global().read(before, Level::INFO, Some("source:alpha"), KEPT);
        assert_eq!(alpha.len(), 1, "{alpha:?}");
        // The last `limit`, oldest first; nothing after the newest.
        let (two, _) = global().read(before, Level::TRACE, None, 2);
        assert_eq!(
            two.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [before + 3, before + 4]
        );
        assert!(global().read(last, Level::TRACE, None, KEPT).0.is_empty());
        // Following: after a number, the first `limit` that come next, and where to go on.
        let (first, next) = global().read(before + 1, Level::TRACE, None, 2);
        assert_eq!(
            first.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [before + 2, before + 3]
        );
        assert_eq!(next, before + 3);
        let (rest, end) = global().read(next, Level::TRACE, None, 2);
        assert_eq!(rest.iter().map(|r| r.seq).collect::<Vec<_>>(), [before + 4]);
        assert_eq!(end, last);
    }
}
