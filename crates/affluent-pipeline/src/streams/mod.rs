//! `[streams.NAME]` as the pipeline runs them: each new version of a stream's input table is
//! read as events (`Warehouse::commit_events`), in version order, through the window engine
//! (`affluent_streams::Engine`); the windows that became final are appended to the table
//! `NAME`, the open ones replace `NAME_open`.
//!
//! Exactly once, across crashes: the engine's state and the last input version it has read are
//! saved in `DATA_DIR/state/streams/NAME.json` *after* the windows of those versions are
//! committed, and each commit records the application transaction `(affluent-stream:NAME,
//! version + 1)`. A process that dies between the two finds a table ahead of its checkpoint: it
//! reads the same versions again from the checkpoint (the engine is deterministic, so it
//! computes the same windows) and writes only what the table does not hold yet.
//!
//! With `[bus] kind = "nats"` the same windows are computed by worker processes from messages
//! on NATS JetStream ([`bus`]).

pub mod bus;

use std::path::PathBuf;
use std::sync::Arc;

use affluent_config::schema::BusKind;

use affluent_config::schema::{Aggregate, STREAM_COLUMNS, StreamConfig, TableType};
use affluent_streams::{Checkpoint, Engine, Totals, WindowRow};
use affluent_tables::events::{Commit, EventColumns};
use affluent_tables::mapping::{Cell, Rows};
use affluent_tables::{TableError, Warehouse};
use serde::{Deserialize, Serialize};

/// Why a stream did not run.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// No `[streams.NAME]` of that name.
    #[error("no stream `{0}` in the project")]
    Unknown(String),
    /// Reading the input or writing the windows failed.
    #[error(transparent)]
    Table(#[from] TableError),
    /// The windows cannot be built (checked on load: a bug if seen).
    #[error("stream `{0}`: {1}")]
    Spec(String, affluent_streams::SpecError),
    /// The checkpoint is from other windows or is damaged.
    #[error("stream `{name}`: {source}; remove {} and the tables `{name}` and `{name}_open` to compute them again", path.display())]
    Restore {
        /// The stream.
        name: String,
        /// The checkpoint file.
        path: PathBuf,
        /// Why.
        source: affluent_streams::RestoreError,
    },
    /// The bus failed.
    #[error(transparent)]
    Bus(bus::BusError),
    /// The checkpoint could not be read or written.
    #[error("stream `{name}`: checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The stream.
        name: String,
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// What one run of a stream did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamReport {
    /// The stream.
    pub stream: String,
    /// Its input table.
    pub input: String,
    /// The input versions read, `(first, last)`; `None` when there was nothing new.
    pub versions: Option<(i64, i64)>,
    /// Events read (rows of the input).
    pub events: u64,
    /// Rows without a key or a time.
    pub skipped: u64,
    /// Final windows appended to the stream's table.
    pub final_windows: usize,
    /// Windows still open (the rows of `NAME_open`).
    pub open_windows: usize,
    /// Read again after a crash and not written again (their windows were already in the
    /// table).
    pub replayed_versions: u64,
    /// Why the windows were computed again from the whole input (not on a first run).
    pub rebuilt: Option<String>,
    /// Counts over every event the stream ever read.
    pub totals: Totals,
    /// The watermark (ms since the epoch).
    pub watermark: Option<i64>,
    /// On a NATS bus: the versions were published (and `final_windows` counts what this
    /// process wrote of them).
    pub published: bool,
}

impl std::fmt::Display for StreamReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.versions {
            None => write!(f, "stream {}: nothing new in `{}`", self.stream, self.input)?,
            Some((a, b)) if self.published => write!(
                f,
                "stream {}: published versions {a}..={b} of `{}` ({} events) on the bus; {} final windows written here",
                self.stream, self.input, self.events, self.final_windows
            )?,
            Some((a, b)) => write!(
                f,
                "stream {}: read versions {a}..={b} of `{}` ({} events): {} final windows written, {} open",
                self.stream, self.input, self.events, self.final_windows, self.open_windows
            )?,
        }
        if let Some(why) = &self.rebuilt {
            write!(f, " (computed again from the whole table: {why})")?;
        }
        let t = &self.totals;
        write!(
            f,
            "; in all {} events taken ({} late), {} duplicates, {} too late",
            t.accepted, t.late, t.duplicates, t.dropped
        )?;
        if self.skipped > 0 {
            write!(f, ", {} rows without key or time", self.skipped)?;
        }
        Ok(())
    }
}

/// A stream's checkpoint file.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    /// The last input version read.
    input_version: i64,
    /// The input table's Delta id (a table created again has another).
    input_id: Option<String>,
    /// The stream's definition the state was computed with.
    config: String,
    /// Rows of the input without key or time, in all.
    skipped: u64,
    /// The engine.
    engine: Checkpoint,
}

/// The project's streams over a warehouse.
#[derive(Debug, Clone)]
pub struct Streams {
    warehouse: Warehouse,
    /// The connection to a NATS bus, made on first use.
    bus: Arc<tokio::sync::OnceCell<bus::Bus>>,
}

impl Streams {
    /// The streams of the warehouse's project.
    pub fn new(warehouse: Warehouse) -> Self {
        Self {
            warehouse,
            bus: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    fn on_bus(&self) -> bool {
        self.warehouse.project().bus.kind == BusKind::Nats
    }

    /// The project's NATS bus, connected.
    pub async fn bus(&self) -> Result<&bus::Bus, StreamError> {
        self.bus
            .get_or_try_init(|| bus::Bus::connect(&self.warehouse))
            .await
            .map_err(StreamError::Bus)
    }

    /// On a NATS bus: processes the stream's messages, until none is pending (`until_idle`)
    /// or for ever.
    pub async fn work(&self, name: &str, until_idle: bool) -> Result<bus::WorkReport, StreamError> {
        let config = self.config(name)?.clone();
        self.bus()
            .await?
            .work(&self.warehouse, name, &config, until_idle)
            .await
    }

    /// Runs every stream reading one of `changed`; failures are logged and left out.
    pub async fn after_change(&self, changed: &[&str]) -> Vec<StreamReport> {
        let mut out = Vec::new();
        let names: Vec<String> = self
            .warehouse
            .project()
            .streams
            .iter()
            .filter(|(_, s)| changed.contains(&s.input.as_str()))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            match self.run(&name).await {
                Ok(r) => out.push(r),
                Err(e) => tracing::error!(stream = name, "{}", affluent_core::error_chain(&e)),
            }
        }
        out
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.warehouse
            .project()
            .data_dir
            .join("state/streams")
            .join(format!("{name}.json"))
    }

    fn read_saved(&self, name: &str) -> Result<Option<Saved>, StreamError> {
        let path = self.state_path(name);
        let fail = |message: String| StreamError::Checkpoint {
            name: name.to_string(),
            path: path.clone(),
            message,
        };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| fail(format!("not a checkpoint ({e})"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// The stream's state as last saved: its totals, watermark and last input version (on a
    /// bus: over its partitions, the least version any of them processed).
    pub fn status(&self, name: &str) -> Result<Option<(i64, Totals, Option<i64>)>, StreamError> {
        let config = self.config(name)?;
        if self.on_bus() {
            let partitions = self.warehouse.project().bus.partitions();
            return bus::status(&self.warehouse, name, config, partitions);
        }
        let Some(saved) = self.read_saved(name)? else {
            return Ok(None);
        };
        let engine = Engine::restore(config.spec(), saved.engine).map_err(|source| {
            StreamError::Restore {
                name: name.to_string(),
                path: self.state_path(name),
                source,
            }
        })?;
        Ok(Some((
            saved.input_version,
            engine.totals(),
            engine.watermark(),
        )))
    }

    fn config(&self, name: &str) -> Result<&StreamConfig, StreamError> {
        self.warehouse
            .project()
            .streams
            .get(name)
            .ok_or_else(|| StreamError::Unknown(name.to_string()))
    }

    /// Reads the input's versions the stream has not read, and writes the windows. The windows
    /// are computed again from the whole input table (the final ones replaced) on the first
    /// run, when the stream's definition changed, when the input table was created again or
    /// rewrote rows, or when its checkpoint cannot be read.
    ///
    /// On a NATS bus it publishes the new versions instead and, unless `[bus] local_worker =
    /// false`, processes the stream's messages until none is pending.
    pub async fn run(&self, name: &str) -> Result<StreamReport, StreamError> {
        if self.on_bus() {
            return self.run_on_bus(name).await;
        }
        let config = self.config(name)?.clone();
        let path = self.state_path(name);
        let lock = path.with_extension("lock");
        let _held =
            affluent_landing::lock_exclusive(&lock)
                .await
                .map_err(|e| StreamError::Checkpoint {
                    name: name.to_string(),
                    path: lock.clone(),
                    message: e.to_string(),
                })?;
        let fingerprint = format!("{config:?}");
        // A NATS bus's cursor is of other tables now: a return to that bus starts the stream
        // again there.
        let bus_cursor = path.with_file_name(format!("{name}.bus.json"));
        if let Err(e) = std::fs::remove_file(&bus_cursor)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(StreamError::Checkpoint {
                name: name.to_string(),
                path: bus_cursor,
                message: e.to_string(),
            });
        }
        let input_id = self.warehouse.table_id(&config.input).await?;
        let saved = match self.read_saved(name) {
            Ok(saved) => saved,
            Err(e) => {
                return self
                    .rebuild(name, &config, &fingerprint, input_id, Some(e.to_string()))
                    .await;
            }
        };
        let saved = match saved {
            None => {
                return self
                    .rebuild(name, &config, &fingerprint, input_id, None)
                    .await;
            }
            Some(s) if s.config != fingerprint => {
                let why = "its definition in the project file changed".to_string();
                return self
                    .rebuild(name, &config, &fingerprint, input_id, Some(why))
                    .await;
            }
            Some(s) if s.input_id != input_id => {
                let why = format!("table `{}` was created again", config.input);
                return self
                    .rebuild(name, &config, &fingerprint, input_id, Some(why))
                    .await;
            }
            Some(s) => s,
        };
        let mut engine = match Engine::restore(config.spec(), saved.engine) {
            Ok(engine) => engine,
            Err(e) => {
                let why = format!("its checkpoint {}: {e}", path.display());
                return self
                    .rebuild(name, &config, &fingerprint, input_id, Some(why))
                    .await;
            }
        };
        let (mut done, mut skipped) = (saved.input_version, saved.skipped);
        let app = format!("affluent-stream:{name}");
        let written = self.warehouse.app_version(name, &app).await? - 1;
        let mut report = StreamReport {
            stream: name.to_string(),
            input: config.input.clone(),
            ..StreamReport::default()
        };
        let latest = self.warehouse.latest_version(&config.input).await;
        let Some(latest) = latest.filter(|l| *l > done) else {
            report.totals = engine.totals();
            report.watermark = engine.watermark();
            report.skipped = skipped;
            return Ok(report);
        };
        let columns = event_columns(&config);
        let mut finals: Vec<WindowRow> = Vec::new();
        let first = done + 1;
        for version in first..=latest {
            let commit = match self
                .warehouse
                .commit_events(&config.input, version, &columns)
                .await?
            {
                Commit::Events(commit) => commit,
                Commit::Rewritten(why) => {
                    return self
                        .rebuild(name, &config, &fingerprint, input_id, Some(why))
                        .await;
                }
            };
            if let Some(why) = &commit.first_skip {
                tracing::warn!(stream = name, version, skipped = commit.skipped, "{why}");
            }
            skipped += commit.skipped;
            report.events += commit.events.len() as u64;
            for e in &commit.events {
                engine.push(&e.key, e.time_ms, &e.values);
            }
            let ready = engine.take_final();
            if version > written {
                finals.extend(ready);
            } else {
                report.replayed_versions += 1;
            }
            done = version;
        }
        let table_exists = self.warehouse.latest_version(name).await.is_some();
        if latest > written && (!finals.is_empty() || !table_exists) {
            let rows = rows_of(&config, name, &finals, true);
            self.warehouse
                .append_rows(name, &rows, &app, latest + 1)
                .await?;
            affluent_tables::load::failpoint("stream:after_windows");
        }
        report.versions = Some((first, latest));
        report.final_windows = finals.len();
        let saved = Saved {
            input_version: done,
            input_id,
            config: fingerprint,
            skipped,
            engine: engine.checkpoint(),
        };
        self.finish(name, &config, &engine, saved, report).await
    }

    async fn run_on_bus(&self, name: &str) -> Result<StreamReport, StreamError> {
        let config = self.config(name)?.clone();
        let bus = self.bus().await?;
        let mut report = bus.publish(&self.warehouse, name, &config).await?;
        report.published = true;
        if self.warehouse.project().bus.local_worker() {
            let work = bus.work(&self.warehouse, name, &config, true).await?;
            tracing::info!(stream = name, "{work}");
            report.final_windows = work.final_windows;
            if let Some((_, totals, watermark)) = self.status(name)? {
                report.totals = totals;
                report.watermark = watermark;
            }
        }
        Ok(report)
    }

    /// Computes the windows again from every row the input table holds now: the final ones
    /// replace the stream's table, in one commit with the stream's transaction.
    async fn rebuild(
        &self,
        name: &str,
        config: &StreamConfig,
        fingerprint: &str,
        input_id: Option<String>,
        why: Option<String>,
    ) -> Result<StreamReport, StreamError> {
        if let Some(why) = &why {
            tracing::warn!(
                stream = name,
                "computing the windows again from the whole of `{}`: {why}",
                config.input
            );
        }
        let mut report = StreamReport {
            stream: name.to_string(),
            input: config.input.clone(),
            rebuilt: why,
            ..StreamReport::default()
        };
        let Some((version, commit)) = self
            .warehouse
            .table_events(&config.input, &event_columns(config))
            .await?
        else {
            return Ok(report);
        };
        let mut engine =
            Engine::new(config.spec()).map_err(|e| StreamError::Spec(name.to_string(), e))?;
        if let Some(why) = &commit.first_skip {
            tracing::warn!(stream = name, skipped = commit.skipped, "{why}");
        }
        report.events = commit.events.len() as u64;
        for e in &commit.events {
            engine.push(&e.key, e.time_ms, &e.values);
        }
        let finals = engine.take_final();
        let app = format!("affluent-stream:{name}");
        let rows = rows_of(config, name, &finals, true);
        self.warehouse
            .replace_rows(name, &rows, &app, version + 1)
            .await?;
        affluent_tables::load::failpoint("stream:after_windows");
        report.versions = Some((0, version));
        report.final_windows = finals.len();
        let saved = Saved {
            input_version: version,
            input_id,
            config: fingerprint.to_string(),
            skipped: commit.skipped,
            engine: engine.checkpoint(),
        };
        self.finish(name, config, &engine, saved, report).await
    }

    /// Replaces the open windows, then saves the checkpoint.
    async fn finish(
        &self,
        name: &str,
        config: &StreamConfig,
        engine: &Engine,
        saved: Saved,
        mut report: StreamReport,
    ) -> Result<StreamReport, StreamError> {
        let path = self.state_path(name);
        let app = format!("affluent-stream:{name}");
        let open = engine.open_rows();
        let rows = rows_of(config, name, &open, false);
        self.warehouse
            .replace_rows(
                &StreamConfig::open_table(name),
                &rows,
                &app,
                saved.input_version + 1,
            )
            .await?;
        affluent_tables::load::failpoint("stream:after_open");
        let bytes = serde_json::to_vec(&saved).map_err(|e| StreamError::Checkpoint {
            name: name.to_string(),
            path: path.clone(),
            message: e.to_string(),
        })?;
        affluent_landing::write_atomic(&path, &bytes).map_err(|e| StreamError::Checkpoint {
            name: name.to_string(),
            path: path.clone(),
            message: e.to_string(),
        })?;
        report.open_windows = open.len();
        report.totals = engine.totals();
        report.watermark = engine.watermark();
        report.skipped = saved.skipped;
        Ok(report)
    }
}

fn event_columns(config: &StreamConfig) -> EventColumns {
    EventColumns {
        key: config.key.clone(),
        time: config.time.clone(),
        values: config
            .value_columns()
            .into_iter()
            .map(str::to_string)
            .collect(),
    }
}

/// The windows as rows of the stream's tables.
fn rows_of(config: &StreamConfig, name: &str, windows: &[WindowRow], is_final: bool) -> Rows {
    let mut columns = vec![
        (config.key.clone(), TableType::String),
        (STREAM_COLUMNS[0].to_string(), TableType::Timestamp),
        (STREAM_COLUMNS[1].to_string(), TableType::Timestamp),
    ];
    for (output, aggregate) in &config.aggregates {
        let kind = if aggregate.function == Aggregate::Count {
            TableType::Int
        } else {
            TableType::Float
        };
        columns.push((output.clone(), kind));
    }
    for c in &STREAM_COLUMNS[2..5] {
        columns.push((c.to_string(), TableType::Int));
    }
    columns.push((STREAM_COLUMNS[5].to_string(), TableType::Bool));
    let count = |v: u64| Cell::Int(i64::try_from(v).unwrap_or(i64::MAX));
    let cells = windows
        .iter()
        .map(|w| {
            let mut row = vec![
                Cell::Str(w.key.clone()),
                Cell::Timestamp(w.start.saturating_mul(1000)),
                Cell::Timestamp(w.end.saturating_mul(1000)),
            ];
            for (value, aggregate) in w.values.iter().zip(config.aggregates.values()) {
                row.push(match (value, aggregate.function) {
                    (None, _) => Cell::Null,
                    (Some(v), Aggregate::Count) => Cell::Int(*v as i64),
                    (Some(v), _) => Cell::Float(*v),
                });
            }
            row.extend([count(w.events), count(w.late), count(w.duplicates)]);
            row.push(Cell::Bool(is_final));
            row
        })
        .collect();
    Rows {
        unknown: vec![false; columns.len()],
        columns,
        cells,
        entries: vec![format!("stream:{name}"); windows.len()],
    }
}
