//! The user's schema of `affluent.toml`, in one namespace. Each component declares its part
//! beside its checks (`sources/rest.rs`, `sources/csv.rs`, `tables.rs`, `scheduler.rs`,
//! `dashboard.rs`); the project-level keys are here. Every struct denies unknown keys; its `///`
//! docs are the reference documentation of the key. Names follow dlt's `rest_api` where dlt has
//! a word for it.

use std::collections::BTreeMap;

use serde::Deserialize;

pub use crate::alerts::*;
pub use crate::bus::*;
pub use crate::dashboard::*;
pub use crate::ml::*;
pub use crate::query::*;
pub use crate::scheduler::*;
pub use crate::sinks::*;
pub use crate::sources::csv::*;
pub use crate::sources::rest::*;
pub use crate::sources::*;
pub use crate::streams::*;
pub use crate::tables::*;
pub use crate::values::{
    ConfigDuration, ConfigTimeZone, CronExpr, JsonPathExpr, ListenAddr, StartDate,
};

/// Project-level settings: everything in `affluent.toml` except `[sources.*]`, which are read one
/// by one so that an error in one source does not hide the errors of the others.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSettings {
    /// A name for the project, shown in logs and the dashboard.
    pub name: Option<String>,
    /// IANA time zone of schedules, data intervals and templates (default `UTC`).
    pub timezone: Option<ConfigTimeZone>,
    /// Where landing, state and tables live, relative to the project directory (default
    /// `.affluent`). A local folder: the landing zone and the state need a local disk.
    pub data_dir: Option<String>,
    /// Where tables and models live instead of `DATA_DIR/tables`: a folder, or an S3-compatible
    /// object store as `s3://bucket/prefix` (each table at `prefix/NAME`; credentials and
    /// endpoint from the `AWS_*` variables of the environment or `.env`).
    pub tables_location: Option<String>,
    /// Rate limits per host, shared by every source calling that host: `[hosts."api.example.com"]`.
    #[serde(default)]
    pub hosts: BTreeMap<String, RateLimitConfig>,
    /// The landing zone.
    pub landing: Option<LandingConfig>,
    /// Delta tables loaded from the sources' landed records: `[tables.NAME]`.
    #[serde(default)]
    pub tables: BTreeMap<String, TableConfig>,
    /// SQL models materialized as Delta tables: `[models.NAME]`.
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    /// Where the scheduler keeps coverage and run history: `sqlite:///path.db` or
    /// `postgres://user@host/db` (default: SQLite in `DATA_DIR/state/affluent.db`).
    pub state_url: Option<String>,
    /// How `affluent run` schedules.
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    /// Notifications of failed and recovered runs.
    pub notify: Option<NotifyConfig>,
    /// The web dashboard served by `affluent serve` and `affluent run`.
    #[serde(default)]
    pub dashboard: DashboardConfig,
    /// Bounds of every SQL query: memory, time, rows kept.
    #[serde(default)]
    pub query: QueryConfig,
    /// When tables and models merge their small files, and when replaced files are deleted.
    #[serde(default)]
    pub compaction: CompactionConfig,
    /// Dashboard pages, in menu order: `[pages.NAME]`.
    #[serde(default)]
    pub pages: indexmap::IndexMap<String, PageConfig>,
    /// Rules over the tables and models that fire alerts: `[alerts.NAME]`.
    #[serde(default)]
    pub alerts: BTreeMap<String, AlertConfig>,
    /// Small models trained over the tables, their predictions written as tables: `[ml.NAME]`.
    #[serde(default)]
    pub ml: BTreeMap<String, MlConfig>,
    /// Event-time windows over a table's rows as they are loaded: `[streams.NAME]`.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamConfig>,
    /// Polygons of GeoJSON files for SQL's `zone_of('NAME', lon, lat)`: `[zones.NAME]`.
    #[serde(default)]
    pub zones: BTreeMap<String, ZonesConfig>,
    /// `[sinks.NAME]`: where tables and models are written outside Delta (a PostgreSQL
    /// warehouse).
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
    /// What carries the streams' events to the processes computing their windows.
    #[serde(default)]
    pub bus: BusConfig,
}

/// `[landing]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandingConfig {
    /// How long landed responses are kept once their records are safely loaded (`"90d"`);
    /// `affluent landing prune` applies it. Unset: kept forever.
    pub retention: Option<ConfigDuration>,
}

/// Rate limits; requests are spaced evenly so no window of the period exceeds the limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second.
    pub per_second: Option<u32>,
    /// Requests per minute.
    pub per_minute: Option<u32>,
    /// Requests per calendar day in the project's time zone; survives restarts.
    pub per_day: Option<u32>,
}
