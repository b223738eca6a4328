//! One module per subcommand: its clap arguments (`Args`) and its `run`.

pub mod alerts;
pub mod backfill;
pub mod demo;
pub mod export;
pub mod ingest;
pub mod landing;
pub mod lineage;
pub mod load;
pub mod ml;
pub mod quarantine;
pub mod query;
pub mod record;
pub mod run;
pub mod runs;
pub mod serve;
pub mod simulate;
pub mod sinks;
pub mod status;
pub mod streams;
pub mod tables;
pub mod transform;
pub mod user;
pub mod validate;
