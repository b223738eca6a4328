//! Streams on NATS JetStream (`[bus] kind = "nats"`): the loading process publishes, the
//! workers compute the windows.
//!
//! **Publishing.** Each new version of a stream's input table is read as events (as the
//! embedded bus does), split by key into `partitions` ([`affluent_streams::partition_of`]),
//! and published on `affluent.PROJECT-ID.STREAM.P` (ID: the data directory's, so that two
//! copies of a project on one server share nothing), in messages of at most [`CHUNK`] events
//! and 800 kB, every partition getting at least one message per version. Each message carries
//! the stream's start (`epoch`), a dense sequence number of its partition, the definition it was
//! made for (hashed) and, per event, the greatest event time of the whole stream before it (and,
//! on a version's last message, after the version), so that each partition's engine keeps the
//! watermark one engine over the whole stream would ([`affluent_streams::Engine::advance`]).
//! The publisher's cursor (`state/streams/NAME.bus.json`: the epoch, the last version published,
//! the running greatest time, the next sequence of each partition) is saved once the server has
//! acknowledged the version's messages; a publisher that dies before that publishes the same
//! messages again, with the same ids (`Nats-Msg-Id`), which the server or the workers discard.
//! The JetStream stream is a work queue: an acknowledged message is removed, one not processed
//! is kept however long it waits.
//!
//! **Working.** `affluent streams work` processes pull from one durable consumer per stream
//! (`windows`), so that any number of them share the partitions; a message not acknowledged
//! within `ack_wait` goes to another. A partition's state (its epoch, its engine and the last
//! sequence it processed) is a file beside the tables' state, `state/streams/NAME.bus/P.json`,
//! under a lock (a worker finding it held hands the message back rather than wait): a message
//! of an earlier epoch is dropped, one at or below that sequence is a duplicate (acknowledged,
//! nothing written), one beyond the next is early (handed back for later). Its final windows
//! are appended to the table `NAME` with the transaction `(affluent-stream:NAME:pP, seq + 1)`,
//! written only when the table does not hold it yet; its open windows replace the partition's
//! keys in `NAME_open`; then the state is saved, then the message acknowledged. A worker
//! killed at any point leaves a message another worker redoes to the same result. A worker
//! given a message of another definition (the project file changed) stops, to be started
//! again with the new one.
//!
//! **Starting again.** When the input is created again or rewrites rows, when the stream's
//! definition or the partitions change, on the first run, or after a start that was
//! interrupted, the publisher takes every partition's lock, saves a cursor that says a start
//! is under way, clears the stream's tables and the bus's pending messages, writes empty
//! partition states of a new epoch (sequences go on above every transaction a partition
//! wrote), and publishes the whole input table as one batch; only then is the cursor saved.
//!
//! Workers must share the data directory (the partition states and the tables' locks live
//! there).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use affluent_config::schema::{BusConfig, StreamConfig};
use affluent_streams::{Checkpoint, Engine, Totals, max_time_after, partition_of};
use affluent_tables::Warehouse;
use affluent_tables::events::{Commit, Event};
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{StreamError, StreamReport, event_columns, rows_of};

/// The most events in one message.
pub const CHUNK: usize = 4000;

/// The most bytes of events in one message: under NATS's default 1 MB payload limit with room
/// for the rest of the message.
const CHUNK_BYTES: usize = 800_000;

/// A partition's events of one version cut into messages: at most [`CHUNK`] events and
/// [`CHUNK_BYTES`] of JSON each (an event larger than that alone in its message), at least one
/// (empty) message.
fn chunks(events: Vec<BusEvent>) -> Vec<Vec<BusEvent>> {
    let mut out = vec![Vec::new()];
    let mut bytes = 0;
    for e in events {
        let size = serde_json::to_vec(&e).map_or(0, |v| v.len()) + 1;
        let full = out.last().is_some_and(|c: &Vec<BusEvent>| {
            !c.is_empty() && (c.len() >= CHUNK || bytes + size > CHUNK_BYTES)
        });
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(last) = out.last_mut() {
            last.push(e);
        }
    }
    out
}

/// The durable consumer the workers of a stream share.
const CONSUMER: &str = "windows";

/// Why the bus failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The server cannot be reached or refused a request.
    #[error("NATS at {url}: {message}")]
    Nats {
        /// The server (credentials redacted).
        url: String,
        /// What failed.
        message: String,
    },
}

/// The publisher's cursor.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cursor {
    /// The input table's Delta id.
    input_id: Option<String>,
    /// The stream's definition and partitions the messages were made for (empty while the
    /// stream starts again: an interrupted start is started again).
    config: String,
    /// Which start of the stream the messages belong to: each start takes a new one, and
    /// workers drop messages of another.
    #[serde(default)]
    epoch: i64,
    /// The last input version published.
    input_version: i64,
    /// The greatest in-range event time published.
    max_time: Option<i64>,
    /// Per partition, the sequence of its next message.
    next_seq: Vec<i64>,
    /// Input rows without key or time, in all.
    skipped: u64,
}

/// A partition's state, saved after each message it processed.
#[derive(Debug, Serialize, Deserialize)]
struct PartitionState {
    /// The start of the stream this state belongs to.
    #[serde(default)]
    epoch: i64,
    /// The last sequence processed (−1: none yet).
    seq: i64,
    /// The input version of that message.
    input_version: i64,
    /// The engine.
    engine: Checkpoint,
}

/// An event on the bus: key, event time (ms), the whole stream's greatest event time before
/// it, values.
type BusEvent = (String, i64, Option<i64>, Vec<Option<f64>>);

/// One message: a chunk of a version's events for one partition.
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    stream: String,
    /// The definition (and partitions) it was made for, hashed.
    config: String,
    epoch: i64,
    partition: u32,
    seq: i64,
    version: i64,
    events: Vec<BusEvent>,
    /// On the version's last chunk: the greatest stream time after the version.
    end: Option<i64>,
}

/// What a worker did with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Processed: final windows appended, open windows after it.
    Done { events: u64, finals: usize },
    /// Processed before (a redelivery, or a publisher's repeat).
    Duplicate,
    /// An earlier message of its partition is not processed yet, or another worker holds
    /// the partition.
    Early,
    /// Of an earlier start of the stream: dropped.
    Stale,
}

/// What `affluent streams work` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkReport {
    /// The stream.
    pub stream: String,
    /// Messages processed.
    pub messages: u64,
    /// Events they held.
    pub events: u64,
    /// Final windows appended.
    pub final_windows: usize,
    /// Messages seen again and not processed again.
    pub duplicates: u64,
    /// Messages handed back because an earlier one of their partition was not done yet.
    pub early: u64,
    /// Messages that failed (handed back, logged).
    pub failed: u64,
    /// With `--until-idle`: messages still pending when it gave up waiting for them.
    pub left: u64,
}

impl std::fmt::Display for WorkReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stream {} on the bus: {} messages processed ({} events, {} final windows written), {} seen again, {} handed back early, {} failed",
            self.stream,
            self.messages,
            self.events,
            self.final_windows,
            self.duplicates,
            self.early,
            self.failed
        )?;
        if self.left > 0 {
            write!(f, "; {} left to other workers", self.left)?;
        }
        Ok(())
    }
}

/// A connection to the bus of a project.
#[derive(Debug, Clone)]
pub struct Bus {
    js: jetstream::Context,
    config: BusConfig,
    /// The project's name and its data directory's id: two copies of a project on one
    /// server do not share subjects.
    project: String,
    url: String,
}

/// The data directory's id (`state/bus-id`), made on first use.
fn data_dir_id(warehouse: &Warehouse) -> std::io::Result<String> {
    let path = warehouse.project().data_dir.join("state/bus-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_string());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let seed = format!(
        "{:?} {} {}",
        std::time::SystemTime::now(),
        std::process::id(),
        warehouse.project().data_dir.display()
    );
    let id = format!("{:08x}", partition_of(&seed, u32::MAX));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut f) => {
            std::io::Write::write_all(&mut f, id.as_bytes())?;
            f.sync_all()?;
            Ok(id)
        }
        // Another process made it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(&path)?.trim().to_string())
        }
        Err(e) => Err(e),
    }
}

/// Letters, digits, `-` and `_` of a name, the rest as `_` (subjects and stream names).
fn token(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Bus {
    /// Connects to the project's NATS server.
    pub async fn connect(warehouse: &Warehouse) -> Result<Bus, BusError> {
        let project = warehouse.project();
        let config = project.bus.clone();
        let url = project.redactor.redact_url(config.url());
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .name(format!("affluent {}", project.name))
            .connect(config.url())
            .await
            .map_err(|e| BusError::Nats {
                url: url.clone(),
                message: format!(
                    "{e}: start a NATS server with JetStream (`nats-server -js`) or set `[bus] url`"
                ),
            })?;
        let id = data_dir_id(warehouse).map_err(|e| BusError::Nats {
            url: url.clone(),
            message: format!(
                "cannot read or make the data directory's id in {}: {e}",
                project.data_dir.join("state").display()
            ),
        })?;
        let name = token(&project.name);
        let name = if name.is_empty() {
            "project".to_string()
        } else {
            name
        };
        Ok(Bus {
            js: jetstream::new(client),
            config,
            project: format!("{name}-{id}"),
            url,
        })
    }

    fn fail(&self, what: &str) -> impl Fn(String) -> BusError + '_ {
        let what = what.to_string();
        move |e| BusError::Nats {
            url: self.url.clone(),
            message: format!("{what}: {e}"),
        }
    }

    /// The JetStream stream holding a stream's messages.
    pub fn stream_name(&self, stream: &str) -> String {
        format!("AFFLUENT_{}_{}", self.project, token(stream))
    }

    fn subject(&self, stream: &str, partition: u32) -> String {
        format!("affluent.{}.{}.{partition}", self.project, token(stream))
    }

    async fn jet_stream(&self, stream: &str) -> Result<stream::Stream, BusError> {
        self.js
            .get_or_create_stream(stream::Config {
                name: self.stream_name(stream),
                subjects: vec![format!("affluent.{}.{}.*", self.project, token(stream))],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(600),
                // A work queue: a message acknowledged is removed (the partition states hold
                // its effect), one not yet processed is kept however long it waits.
                retention: stream::RetentionPolicy::WorkQueue,
                ..Default::default()
            })
            .await
            .map_err(|e| self.fail("cannot create or open the JetStream stream")(e.to_string()))
    }

    async fn consumer(
        &self,
        stream: &str,
    ) -> Result<jetstream::consumer::Consumer<pull::Config>, BusError> {
        self.jet_stream(stream)
            .await?
            .get_or_create_consumer(
                CONSUMER,
                pull::Config {
                    durable_name: Some(CONSUMER.to_string()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.config.ack_wait(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.fail("cannot create or open the consumer")(e.to_string()))
    }

    /// Removes a stream's messages and consumer from the server.
    pub async fn delete(&self, stream: &str) -> Result<(), BusError> {
        match self.js.delete_stream(self.stream_name(stream)).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(self.fail("cannot delete the JetStream stream")(
                e.to_string(),
            )),
        }
    }
}

/// Paths of a stream's bus state.
struct Paths {
    cursor: PathBuf,
    dir: PathBuf,
}

impl Paths {
    fn of(warehouse: &Warehouse, name: &str) -> Paths {
        let base = warehouse.project().data_dir.join("state/streams");
        Paths {
            cursor: base.join(format!("{name}.bus.json")),
            dir: base.join(format!("{name}.bus")),
        }
    }

    fn state(&self, partition: u32) -> PathBuf {
        self.dir.join(format!("{partition}.json"))
    }

    fn lock(&self, partition: u32) -> PathBuf {
        self.dir.join(format!("{partition}.lock"))
    }
}

fn checkpoint_error(name: &str, path: &std::path::Path, message: String) -> StreamError {
    StreamError::Checkpoint {
        name: name.to_string(),
        path: path.to_path_buf(),
        message,
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(
    name: &str,
    path: &std::path::Path,
) -> Result<Option<T>, StreamError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| checkpoint_error(name, path, format!("damaged ({e})"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(checkpoint_error(name, path, e.to_string())),
    }
}

fn write_json<T: Serialize>(
    name: &str,
    path: &std::path::Path,
    value: &T,
) -> Result<(), StreamError> {
    let bytes =
        serde_json::to_vec(value).map_err(|e| checkpoint_error(name, path, e.to_string()))?;
    affluent_landing::write_atomic(path, &bytes)
        .map_err(|e| checkpoint_error(name, path, e.to_string()))
}

/// The lock of `path` if no one holds it.
fn try_lock(name: &str, path: &std::path::Path) -> Result<Option<std::fs::File>, StreamError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| checkpoint_error(name, path, e.to_string()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| checkpoint_error(name, path, e.to_string()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(checkpoint_error(name, path, e.to_string())),
    }
}

async fn lock(name: &str, path: &std::path::Path) -> Result<std::fs::File, StreamError> {
    affluent_landing::lock_exclusive(path)
        .await
        .map_err(|e| checkpoint_error(name, path, e.to_string()))
}

fn app_of(name: &str, partition: u32) -> String {
    format!("affluent-stream:{name}:p{partition}")
}

impl Bus {
    fn fingerprint(&self, config: &StreamConfig) -> String {
        format!("{config:?} partitions={}", self.config.partitions())
    }

    /// The fingerprint, short, as messages carry it.
    fn config_id(&self, config: &StreamConfig) -> String {
        format!("{:08x}", partition_of(&self.fingerprint(config), u32::MAX))
    }

    /// Publishes what the stream's input gained since the last publish (everything, when the
    /// stream starts again). The report counts versions and events published.
    pub async fn publish(
        &self,
        warehouse: &Warehouse,
        name: &str,
        config: &StreamConfig,
    ) -> Result<StreamReport, StreamError> {
        let paths = Paths::of(warehouse, name);
        let stream_lock = warehouse
            .project()
            .data_dir
            .join("state/streams")
            .join(format!("{name}.lock"));
        let _held = lock(name, &stream_lock).await?;
        let jet = self.jet_stream(name).await.map_err(bus)?;
        let fingerprint = self.fingerprint(config);
        let input_id = warehouse.table_id(&config.input).await?;
        let mut report = StreamReport {
            stream: name.to_string(),
            input: config.input.clone(),
            ..StreamReport::default()
        };
        let cursor = match read_json::<Cursor>(name, &paths.cursor) {
            Ok(c) => c,
            Err(e) => {
                let why = Some(e.to_string());
                return self
                    .start_again(warehouse, name, config, jet, None, input_id, why, report)
                    .await;
            }
        };
        let Some(mut cursor) = cursor else {
            return self
                .start_again(warehouse, name, config, jet, None, input_id, None, report)
                .await;
        };
        let missing = (0..self.config.partitions()).find(|p| !paths.state(*p).exists());
        let why = if cursor.config.is_empty() {
            Some("an earlier start of the stream was interrupted".to_string())
        } else if cursor.config != fingerprint
            || cursor.next_seq.len() != self.config.partitions() as usize
        {
            Some("its definition or the bus's partitions changed".to_string())
        } else if cursor.input_id != input_id {
            Some(format!("table `{}` was created again", config.input))
        } else {
            missing.map(|p| format!("the state of partition {p} is missing"))
        };
        let why = match why {
            Some(why) => Some(why),
            None => match self
                .publish_new(warehouse, name, config, &mut cursor, &mut report)
                .await?
            {
                None => return Ok(report),
                Some(rewritten) => Some(rewritten),
            },
        };
        self.start_again(
            warehouse,
            name,
            config,
            jet,
            Some(cursor),
            input_id,
            why,
            report,
        )
        .await
    }

    /// Publishes the input's versions after the cursor's, saving the cursor after each; or
    /// says why a version cannot be read as events (the stream must start again).
    async fn publish_new(
        &self,
        warehouse: &Warehouse,
        name: &str,
        config: &StreamConfig,
        cursor: &mut Cursor,
        report: &mut StreamReport,
    ) -> Result<Option<String>, StreamError> {
        let paths = Paths::of(warehouse, name);
        report.skipped = cursor.skipped;
        let latest = warehouse.latest_version(&config.input).await;
        let Some(latest) = latest.filter(|l| *l > cursor.input_version) else {
            return Ok(None);
        };
        let columns = event_columns(config);
        let first = cursor.input_version + 1;
        for version in first..=latest {
            let commit = match warehouse
                .commit_events(&config.input, version, &columns)
                .await?
            {
                Commit::Events(c) => c,
                Commit::Rewritten(why) => return Ok(Some(why)),
            };
            if let Some(why) = &commit.first_skip {
                tracing::warn!(stream = name, version, skipped = commit.skipped, "{why}");
            }
            self.publish_version(name, config, cursor, version, &commit.events)
                .await?;
            cursor.skipped += commit.skipped;
            cursor.input_version = version;
            report.events += commit.events.len() as u64;
            write_json(name, &paths.cursor, &*cursor)?;
        }
        report.versions = Some((first, latest));
        report.skipped = cursor.skipped;
        Ok(None)
    }

    /// Clears the stream's tables, pending messages and partition states, and publishes the
    /// whole input table as one batch.
    #[allow(clippy::too_many_arguments)]
    async fn start_again(
        &self,
        warehouse: &Warehouse,
        name: &str,
        config: &StreamConfig,
        jet: stream::Stream,
        old: Option<Cursor>,
        input_id: Option<String>,
        why: Option<String>,
        mut report: StreamReport,
    ) -> Result<StreamReport, StreamError> {
        if let Some(why) = &why {
            tracing::warn!(
                stream = name,
                "publishing the whole of `{}` again: {why}",
                config.input
            );
        }
        report.rebuilt = why;
        let paths = Paths::of(warehouse, name);
        let partitions = self.config.partitions();
        // Every partition held: no worker is between a message and its state.
        let mut held = Vec::new();
        for p in 0..partitions {
            held.push(lock(name, &paths.lock(p)).await?);
        }
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let epoch = old.as_ref().map_or(now_ms, |c| (c.epoch + 1).max(now_ms));
        // Until the whole input is published, a start interrupted is started again.
        let restarting = Cursor {
            input_id: input_id.clone(),
            config: String::new(),
            epoch,
            input_version: -1,
            max_time: None,
            next_seq: old.as_ref().map(|c| c.next_seq.clone()).unwrap_or_default(),
            skipped: 0,
        };
        write_json(name, &paths.cursor, &restarting)?;
        // The embedded bus's checkpoint is of other tables now: a return to it computes
        // them again.
        let embedded = warehouse
            .project()
            .data_dir
            .join("state/streams")
            .join(format!("{name}.json"));
        if let Err(e) = std::fs::remove_file(&embedded)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(checkpoint_error(name, &embedded, e.to_string()));
        }
        jet.purge().await.map_err(|e| {
            bus(self.fail("cannot purge the JetStream stream")(
                e.to_string(),
            ))
        })?;
        // Sequences go on above every transaction a partition ever wrote, so that no message
        // to come is mistaken for one already written.
        let mut next_seq = Vec::new();
        for p in 0..partitions {
            let written = warehouse.app_version(name, &app_of(name, p)).await?;
            let before = old
                .as_ref()
                .and_then(|c| c.next_seq.get(p as usize).copied())
                .unwrap_or(0);
            next_seq.push(written.max(before));
        }
        let app = format!("affluent-stream-bus:{name}");
        let version = warehouse.latest_version(name).await.unwrap_or(0) + 1;
        warehouse
            .replace_rows(name, &rows_of(config, name, &[], true), &app, version)
            .await?;
        let open = StreamConfig::open_table(name);
        let open_version = warehouse.latest_version(&open).await.unwrap_or(0) + 1;
        warehouse
            .replace_rows(
                &open,
                &rows_of(config, name, &[], false),
                &app,
                open_version,
            )
            .await?;
        let fresh =
            Engine::new(config.spec()).map_err(|e| StreamError::Spec(name.to_string(), e))?;
        for p in 0..partitions {
            let state = PartitionState {
                epoch,
                seq: next_seq[p as usize] - 1,
                input_version: -1,
                engine: fresh.checkpoint(),
            };
            write_json(name, &paths.state(p), &state)?;
        }
        drop(held);
        let mut cursor = Cursor {
            input_id,
            config: self.fingerprint(config),
            epoch,
            input_version: -1,
            max_time: None,
            next_seq,
            skipped: 0,
        };
        if let Some((version, commit)) = warehouse
            .table_events(&config.input, &event_columns(config))
            .await?
        {
            if let Some(why) = &commit.first_skip {
                tracing::warn!(stream = name, skipped = commit.skipped, "{why}");
            }
            self.publish_version(name, config, &mut cursor, version, &commit.events)
                .await?;
            cursor.input_version = version;
            cursor.skipped = commit.skipped;
            report.events = commit.events.len() as u64;
            report.versions = Some((0, version));
        }
        write_json(name, &paths.cursor, &cursor)?;
        report.skipped = cursor.skipped;
        Ok(report)
    }

    /// Publishes one version's events, every partition at least one message, and waits for
    /// the server to hold them all.
    async fn publish_version(
        &self,
        name: &str,
        config: &StreamConfig,
        cursor: &mut Cursor,
        version: i64,
        events: &[Event],
    ) -> Result<(), StreamError> {
        let partitions = self.config.partitions();
        let mut split: Vec<Vec<BusEvent>> = vec![Vec::new(); partitions as usize];
        for e in events {
            let p = partition_of(&e.key, partitions) as usize;
            split[p].push((e.key.clone(), e.time_ms, cursor.max_time, e.values.clone()));
            cursor.max_time = max_time_after(cursor.max_time, e.time_ms);
        }
        let config_id = self.config_id(config);
        let mut acks = Vec::new();
        for (p, events) in split.into_iter().enumerate() {
            let chunks = chunks(events);
            let last = chunks.len() - 1;
            for (i, events) in chunks.into_iter().enumerate() {
                let seq = cursor.next_seq[p];
                cursor.next_seq[p] += 1;
                let message = Message {
                    stream: name.to_string(),
                    config: config_id.clone(),
                    epoch: cursor.epoch,
                    partition: p as u32,
                    seq,
                    version,
                    events,
                    end: if i == last { cursor.max_time } else { None },
                };
                let payload = serde_json::to_vec(&message).map_err(|e| {
                    checkpoint_error(name, std::path::Path::new("(message)"), e.to_string())
                })?;
                let publish = jetstream::message::PublishMessage::build()
                    .payload(payload.into())
                    .message_id(format!(
                        "{}:{}:{p}:{seq}",
                        self.stream_name(name),
                        cursor.epoch
                    ));
                let ack = self
                    .js
                    .send_publish(self.subject(name, p as u32), publish)
                    .await
                    .map_err(|e| bus(self.fail("cannot publish")(e.to_string())))?;
                acks.push(ack);
            }
        }
        for ack in acks {
            ack.await.map_err(|e| {
                bus(self.fail("the server did not store a message")(
                    e.to_string(),
                ))
            })?;
        }
        Ok(())
    }

    /// Processes the stream's messages: until none is pending or being processed by another
    /// worker (`until_idle`), or for ever.
    pub async fn work(
        &self,
        warehouse: &Warehouse,
        name: &str,
        config: &StreamConfig,
        until_idle: bool,
    ) -> Result<WorkReport, StreamError> {
        let mut consumer = self.consumer(name).await.map_err(bus)?;
        let mut report = WorkReport {
            stream: name.to_string(),
            ..WorkReport::default()
        };
        let batch = self.config.partitions().clamp(1, 16) as usize;
        // Idle: two empty fetches in a row with nothing pending nor awaiting an ack (a
        // message handed back for later is awaiting one). A worker that only waits (on
        // messages another worker holds, or after one it cannot process) gives up after a
        // while, leaving them to the others.
        let patience = (self.config.ack_wait() * 4).max(Duration::from_secs(30));
        let mut progress = std::time::Instant::now();
        let mut idle = 0;
        loop {
            let fetched = consumer
                .fetch()
                .max_messages(batch)
                .expires(Duration::from_secs(1))
                .messages()
                .await;
            let mut messages = match fetched {
                Ok(m) => m,
                Err(e) if !until_idle => {
                    // The client reconnects by itself: a worker outlives a server restart.
                    tracing::warn!(stream = name, "cannot fetch messages, retrying: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => return Err(bus(self.fail("cannot fetch messages")(e.to_string()))),
            };
            let mut got = 0;
            while let Some(message) = messages.next().await {
                let message = match message {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(stream = name, "fetching: {e}");
                        break;
                    }
                };
                got += 1;
                let result = self
                    .process(warehouse, name, config, &message.payload)
                    .await;
                if let Ok(outcome) = &result {
                    tracing::debug!(stream = name, subject = %message.subject, "message {outcome:?}");
                }
                let mut stop = None;
                let ack = match result {
                    Ok(Outcome::Done { events, finals }) => {
                        progress = std::time::Instant::now();
                        report.messages += 1;
                        report.events += events;
                        report.final_windows += finals;
                        AckKind::Ack
                    }
                    Ok(Outcome::Duplicate | Outcome::Stale) => {
                        progress = std::time::Instant::now();
                        report.duplicates += 1;
                        AckKind::Ack
                    }
                    Ok(Outcome::Early) => {
                        report.early += 1;
                        AckKind::Nak(Some(Duration::from_millis(200)))
                    }
                    Err(Rejected::Malformed(why)) => {
                        report.failed += 1;
                        tracing::error!(
                            stream = name,
                            subject = %message.subject,
                            "not a message of this stream, dropped: {why}"
                        );
                        AckKind::Term
                    }
                    Err(Rejected::OtherDefinition) => {
                        stop = Some(bus(BusError::Nats {
                            url: self.url.clone(),
                            message: format!(
                                "stream `{name}` is published with another definition or other partitions than this worker's: start `affluent streams work` again with the project file the loads use"
                            ),
                        }));
                        AckKind::Nak(Some(Duration::from_secs(1)))
                    }
                    Err(Rejected::Failed(e)) => {
                        report.failed += 1;
                        tracing::error!(
                            stream = name,
                            "message handed back: {}",
                            affluent_core::error_chain(&e)
                        );
                        AckKind::Nak(Some(Duration::from_secs(2)))
                    }
                };
                if let Err(e) = message.ack_with(ack).await {
                    tracing::warn!(stream = name, "acknowledging: {e}");
                }
                if let Some(e) = stop {
                    return Err(e);
                }
            }
            if until_idle && got == 0 {
                let info = consumer
                    .info()
                    .await
                    .map_err(|e| bus(self.fail("cannot read the consumer")(e.to_string())))?;
                if info.num_pending == 0 && info.num_ack_pending == 0 {
                    idle += 1;
                    if idle == 2 {
                        return Ok(report);
                    }
                    continue;
                }
                idle = 0;
            } else {
                idle = 0;
            }
            if until_idle && progress.elapsed() > patience {
                let info = consumer
                    .info()
                    .await
                    .map_err(|e| bus(self.fail("cannot read the consumer")(e.to_string())))?;
                report.left = info.num_pending + info.num_ack_pending as u64;
                tracing::warn!(
                    stream = name,
                    "{} messages left to other workers: none could be processed here for {} s",
                    report.left,
                    patience.as_secs()
                );
                return Ok(report);
            }
        }
    }

    /// Processes one message under its partition's lock.
    async fn process(
        &self,
        warehouse: &Warehouse,
        name: &str,
        config: &StreamConfig,
        payload: &[u8],
    ) -> Result<Outcome, Rejected> {
        let message: Message =
            serde_json::from_slice(payload).map_err(|e| Rejected::Malformed(e.to_string()))?;
        if message.stream != name {
            return Err(Rejected::Malformed(format!(
                "a message of stream `{}`",
                message.stream
            )));
        }
        if message.config != self.config_id(config) {
            return Err(Rejected::OtherDefinition);
        }
        let p = message.partition;
        let paths = Paths::of(warehouse, name);
        // Another worker on this partition: its next messages wait, not this worker.
        let Some(_held) = try_lock(name, &paths.lock(p))? else {
            return Ok(Outcome::Early);
        };
        let path = paths.state(p);
        let Some(state) = read_json::<PartitionState>(name, &path)? else {
            return Err(Rejected::Failed(checkpoint_error(
                name,
                &path,
                "missing: the next publish (`affluent streams run`) starts the stream again"
                    .to_string(),
            )));
        };
        if message.epoch < state.epoch {
            return Ok(Outcome::Stale);
        }
        if message.epoch > state.epoch {
            return Ok(Outcome::Early);
        }
        if message.seq <= state.seq {
            return Ok(Outcome::Duplicate);
        }
        if message.seq > state.seq + 1 {
            return Ok(Outcome::Early);
        }
        let mut engine = Engine::restore(config.spec(), state.engine).map_err(|source| {
            StreamError::Restore {
                name: name.to_string(),
                path: path.clone(),
                source,
            }
        })?;
        let before: BTreeSet<String> = engine.open_rows().into_iter().map(|w| w.key).collect();
        for (key, time, max_before, values) in &message.events {
            if let Some(m) = max_before {
                engine.advance(*m);
            }
            engine.push(key, *time, values);
        }
        if let Some(end) = message.end {
            engine.advance(end);
        }
        let finals = engine.take_final();
        let app = app_of(name, p);
        let txn = message.seq + 1;
        let table_exists = warehouse.latest_version(name).await.is_some();
        if (!finals.is_empty() || !table_exists) && warehouse.app_version(name, &app).await? < txn {
            warehouse
                .append_rows(name, &rows_of(config, name, &finals, true), &app, txn)
                .await
                .map_err(StreamError::from)?;
            affluent_tables::load::failpoint("stream:after_windows");
        }
        let open = engine.open_rows();
        let mut keys = before;
        keys.extend(open.iter().map(|w| w.key.clone()));
        let keys: Vec<String> = keys.into_iter().collect();
        let open_table = StreamConfig::open_table(name);
        if !keys.is_empty() || warehouse.latest_version(&open_table).await.is_none() {
            warehouse
                .replace_rows_of(
                    &open_table,
                    &rows_of(config, name, &open, false),
                    &config.key,
                    &keys,
                    &app,
                    txn,
                )
                .await
                .map_err(StreamError::from)?;
            affluent_tables::load::failpoint("stream:after_open");
        }
        let state = PartitionState {
            epoch: message.epoch,
            seq: message.seq,
            input_version: message.version,
            engine: engine.checkpoint(),
        };
        write_json(name, &path, &state)?;
        Ok(Outcome::Done {
            events: message.events.len() as u64,
            finals: finals.len(),
        })
    }
}

/// Why a message was not processed.
enum Rejected {
    /// It is not one of this stream's messages: dropped.
    Malformed(String),
    /// It was made for another definition of the stream: this worker must start again.
    OtherDefinition,
    /// Processing failed: handed back.
    Failed(StreamError),
}

impl From<StreamError> for Rejected {
    fn from(e: StreamError) -> Self {
        Rejected::Failed(e)
    }
}

impl From<affluent_tables::TableError> for Rejected {
    fn from(e: affluent_tables::TableError) -> Self {
        Rejected::Failed(StreamError::Table(e))
    }
}

fn bus(e: BusError) -> StreamError {
    StreamError::Bus(e)
}

/// The state of a stream on the bus: per partition, the last input version processed, and
/// the totals and watermark over all of them.
pub(super) fn status(
    warehouse: &Warehouse,
    name: &str,
    config: &StreamConfig,
    partitions: u32,
) -> Result<Option<(i64, Totals, Option<i64>)>, StreamError> {
    let paths = Paths::of(warehouse, name);
    let mut totals = Totals::default();
    let mut watermark = None;
    let mut version: Option<i64> = None;
    for p in 0..partitions {
        let path = paths.state(p);
        let Some(state) = read_json::<PartitionState>(name, &path)? else {
            return Ok(None);
        };
        let engine = Engine::restore(config.spec(), state.engine).map_err(|source| {
            StreamError::Restore {
                name: name.to_string(),
                path: path.clone(),
                source,
            }
        })?;
        let t = engine.totals();
        totals.accepted += t.accepted;
        totals.late += t.late;
        totals.duplicates += t.duplicates;
        totals.dropped += t.dropped;
        watermark = watermark.max(engine.watermark());
        version = Some(version.map_or(state.input_version, |v| v.min(state.input_version)));
    }
    Ok(version.map(|v| (v, totals, watermark)))
}
