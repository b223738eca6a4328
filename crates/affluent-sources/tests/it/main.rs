//! Integration tests of the connectors against real HTTP servers on 127.0.0.1 serving the real
//! captures in `shared/fixtures`, plus faults. One binary for the crate (link time).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod captures;
mod cassettes;
mod culture;
mod faults;
mod fixtures;
mod origins;
mod support;
