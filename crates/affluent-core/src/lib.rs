//! Shared vocabulary of affluent: the pieces every other crate speaks.
//!
//! - [`Interval`]: a run's data interval `[start, end)`;
//! - [`template`]: `{interval.end - 8h:%Y-%m-%d}`-style templates used in URLs, params and bodies;
//! - [`JsonPath`]: the small path language of `data_selector`, `total_path` and friends;
//! - [`Redactor`]: the one place that knows the project's secrets and scrubs them from text;
//! - [`parse_duration`]: `"1h"`, `"15m"`, `"500ms"`.
//!
//! This crate does no I/O.

mod duration;
mod interval;
mod jsonpath;
mod redact;
mod suggest;
pub mod template;

pub use duration::{format_duration, parse_duration};
pub use interval::Interval;
pub use jsonpath::{JsonPath, JsonPathError, Segment};
pub use redact::Redactor;
pub use suggest::closest;
