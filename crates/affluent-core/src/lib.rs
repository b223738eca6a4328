//! Shared vocabulary of affluent: the pieces every other crate speaks.
//!
//! - [`Interval`]: a run's data interval `[start, end)`;
//! - [`template`]: `{interval.end - 8h:%Y-%m-%d}`-style templates used in URLs, params and bodies;
//! - [`JsonPath`]: the small path language of `data_selector`, `total_path` and friends;
//! - [`Redactor`]: the one place that knows the project's secrets and scrubs them from text;
//! - [`parse_duration`]: `"1h"`, `"15m"`, `"500ms"`;
//! - [`progress`]: events of long operations for an [`Observer`] (libraries never draw);
//! - [`TaskId`]: `source:NAME` / `model:NAME`, what the scheduler runs and the state store records.
//!
//! This crate does no I/O.

mod duration;
mod interval;
mod jsonpath;
pub mod progress;
mod redact;
mod suggest;
mod task;
pub mod template;

pub use duration::{format_duration, format_period, parse_duration};
pub use interval::{Interval, civil_time};
pub use jsonpath::{JsonPath, JsonPathError, Segment};
pub use progress::{Observer, Progress};
pub use redact::Redactor;
pub use suggest::closest;
pub use task::{InvalidTaskId, TaskId, TaskKind};

/// An error and its causes, `: `-separated (`cannot open the state store x: connection refused`):
/// for logs, run records and the command line, where the whole chain helps. A cause whose text
/// the message already holds (a wrapper that prints its source) is not repeated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}
