//! Integration tests of tables and models: real Delta tables in temp dirs, loaded from landing
//! entries holding the real captures of `shared/fixtures`. One binary for the crate (link time).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod compact;
mod fixtures;
mod limits;
mod loads;
mod models;
mod support;
