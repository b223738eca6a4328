//! Where a table's files are: a local folder, or a prefix of an S3-compatible object store
//! ([`TableLocation`], from `tables_location` and `location` in `affluent.toml`).
//!
//! On S3, commits to `_delta_log` are conditional puts (`If-None-Match: *`, object_store's
//! `S3ConditionalPut::ETagMatch`): of two writers committing the same version, one wins and the
//! other sees the version taken, checks its commit against the winner's and retries at the next
//! version (deltalake's conflict checker), so no commit overwrites another. No lock service is
//! needed; the store must honour conditional writes (AWS S3 since 2024, MinIO, Cloudflare R2, moto).
//!
//! Compaction is not safe that way: deltalake lets two optimize commits that remove the same
//! files both land (its conflict checker skips removes with `dataChange = false`), which would
//! keep the rows of both rewrites. On an object store a compaction therefore holds a lease, the
//! object `_affluent/compaction.lease` under the table, created by a conditional put and
//! deleted after by its holder; a writer that finds it held skips compacting (and `affluent
//! tables optimize` says who holds it). A lease older than 15 minutes (its holder died) is taken
//! over. The compaction of a shared table asks deltalake to commit only over the version it
//! read (no retry), but deltalake's optimize builds its own commit and retries regardless, so
//! that backstop does not hold yet: the lease is the only guard (a known gap).
//!
//! A table outside `DATA_DIR/tables` (on an object store, or in a folder of its own) may be
//! shared by several projects (several landing zones): each loads with its own application id,
//! `affluent-load@WRITER`, so that one project's load numbers never hide another's, and its
//! compactions take the lease.

use std::collections::HashMap;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use affluent_config::storage::TableLocation;
use deltalake::DeltaTable;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError};
use futures::TryStreamExt as _;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _};
use url::Url;

use crate::load::LOAD_APP_ID;
use crate::{TableError, Warehouse};

/// How long a compaction lease holds before another writer may take it over.
const LEASE_TTL: Duration = Duration::from_secs(15 * 60);

/// The compaction lease's key, under the table's prefix.
const LEASE: &str = "_affluent/compaction.lease";

/// A compaction lease held on a shared table; [`Lease::release`] deletes it.
pub(crate) struct Lease {
    store: ObjectStoreRef,
    /// What this holder wrote in it: the lease is deleted only while it still says so.
    token: String,
}

impl Lease {
    pub(crate) async fn release(self) {
        let path = StorePath::from(LEASE);
        let mine = match self.store.get(&path).await {
            Ok(held) => held.bytes().await.ok().is_some_and(|b| {
                serde_json::from_slice::<serde_json::Value>(&b)
                    .is_ok_and(|v| v["token"].as_str() == Some(self.token.as_str()))
            }),
            Err(_) => false,
        };
        if !mine {
            tracing::warn!(
                "the compaction lease was taken over while held: left to its new holder"
            );
            return;
        }
        if let Err(e) = self.store.delete(&path).await {
            tracing::warn!("cannot delete the compaction lease (it expires by itself): {e}");
        }
    }
}

/// How often the latest version of a table on an object store is listed at most: the dashboard
/// polls every second, and each look is a paid LIST request.
const REMOTE_POLL: Duration = Duration::from_secs(5);

/// What a process knows of a remote table's log: the store to list it, the latest version seen
/// and when.
pub(crate) struct RemoteLog {
    store: ObjectStoreRef,
    latest: Option<i64>,
    checked: Option<Instant>,
}

/// The stores a warehouse lists remote logs with, per table.
pub(crate) type RemoteLogs = std::sync::Mutex<HashMap<String, RemoteLog>>;

/// Makes `s3://` locations known to deltalake, once per process.
fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(scheme) = Url::parse("s3://") else {
            return;
        };
        object_store_factories().insert(scheme.clone(), Arc::new(S3Stores));
        logstore_factories().insert(scheme, Arc::new(S3Logs));
    });
}

/// Builds S3 stores from the project's `AWS_*` settings, conditional puts on.
struct S3Stores;

impl ObjectStoreFactory for S3Stores {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, StorePath)> {
        let mut builder = AmazonS3Builder::new();
        for (key, value) in &config.raw {
            if let Ok(key) = key.parse::<AmazonS3ConfigKey>() {
                builder = builder.with_config(key, value);
            }
        }
        let store = builder
            .with_url(url.as_str())
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .build()?;
        let path = StorePath::from_url_path(url.path())?;
        Ok((Arc::new(store), path))
    }
}

/// deltalake's default log store: commits are puts that fail when the version exists.
struct S3Logs;

impl LogStoreFactory for S3Logs {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

impl Warehouse {
    /// Where a table, model or system table lives.
    pub fn location(&self, name: &str) -> TableLocation {
        self.project().storage.location(name)
    }

    /// The table's URL (a local folder is created if missing).
    fn url_of(&self, name: &str) -> Result<Url, TableError> {
        match self.location(name) {
            TableLocation::Local(dir) => crate::table_url(&dir),
            TableLocation::S3(url) => {
                register();
                Ok(url)
            }
        }
    }

    /// The `AWS_*` settings for tables on S3; none for local tables.
    fn storage_options(&self, name: &str) -> HashMap<String, String> {
        match self.location(name) {
            TableLocation::Local(_) => HashMap::new(),
            TableLocation::S3(_) => self
                .project()
                .storage
                .s3
                .0
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The Delta table at a name's location, loaded when it has a commit, empty (version
    /// `None`) otherwise: what writes start from.
    pub(crate) async fn delta_table(&self, name: &str) -> Result<DeltaTable, TableError> {
        let url = self.url_of(name)?;
        DeltaTable::try_from_url_with_storage_options(url, self.storage_options(name))
            .await
            .map_err(|e| self.storage_error(name, e))
    }

    /// A deltalake error, with what to check when the table is on an object store.
    pub(crate) fn storage_error(&self, name: &str, e: DeltaTableError) -> TableError {
        let remote = self.location(name).is_remote();
        let chain = affluent_core::error_chain(&e);
        let hint = matches!(
            e,
            DeltaTableError::ObjectStore { .. } | DeltaTableError::InvalidTableLocation(_)
        ) || chain.contains("S3 error")
            || chain.contains("object store");
        if remote && hint {
            return TableError::Invalid(format!(
                "table `{name}` at {}: {} (the credentials and endpoint are the AWS_* variables of the environment or .env: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP=true for a plain-HTTP endpoint)",
                self.location(name),
                self.project().redactor.redact(&chain)
            ));
        }
        TableError::delta(name)(e)
    }

    /// Whether other projects may write the table too: it is outside `DATA_DIR/tables`.
    pub(crate) fn is_shared(&self, name: &str) -> bool {
        match self.location(name) {
            TableLocation::Local(dir) => dir != self.project().data_dir.join("tables").join(name),
            TableLocation::S3(_) => true,
        }
    }

    /// The application id of this project's loads into a table: `affluent-load` for a table
    /// under `DATA_DIR/tables` (only this project writes it), `affluent-load@WRITER` for a
    /// shared one, where `WRITER` names this data directory (`DATA_DIR/state/writer`, made once).
    pub(crate) fn load_app(&self, name: &str) -> Result<String, TableError> {
        if !self.is_shared(name) {
            return Ok(LOAD_APP_ID.to_string());
        }
        Ok(format!("{LOAD_APP_ID}@{}", self.writer_id()?))
    }

    fn writer_id(&self) -> Result<String, TableError> {
        if let Some(id) = self.writer.get() {
            return Ok(id.clone());
        }
        let id = self.read_or_make_writer_id()?;
        Ok(self.writer.get_or_init(|| id).clone())
    }

    /// `DATA_DIR/state/writer`, made with a random name when missing.
    fn read_or_make_writer_id(&self) -> Result<String, TableError> {
        let path = self.project().data_dir.join("state").join("writer");
        match std::fs::read_to_string(&path) {
            Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TableError::io(&path)(e)),
        }
        use std::hash::{BuildHasher as _, Hasher as _};
        let mut id = String::new();
        for _ in 0..2 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.write_u32(std::process::id());
            id.push_str(&format!("{:016x}", h.finish()));
        }
        // Two processes making it at once: the first rename wins, both read it back.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(TableError::io(dir))?;
        }
        std::fs::write(&tmp, &id).map_err(TableError::io(&tmp))?;
        if std::fs::hard_link(&tmp, &path).is_err() && !path.exists() {
            std::fs::rename(&tmp, &path).map_err(TableError::io(&path))?;
        }
        let _ = std::fs::remove_file(&tmp);
        let id = std::fs::read_to_string(&path).map_err(TableError::io(&path))?;
        Ok(id.trim().to_string())
    }

    /// The latest version of a table on an object store, listed at most every
    /// [`REMOTE_POLL`] unless `fresh`; a failed listing keeps the last version seen (and says why).
    pub(crate) async fn remote_latest(&self, name: &str, url: &Url, fresh: bool) -> Option<i64> {
        let (store, known) = {
            let mut logs = self.remote.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(log) = logs.get(name)
                && !fresh
                && log.checked.is_some_and(|at| at.elapsed() < REMOTE_POLL)
            {
                return log.latest;
            }
            let log = match logs.get(name) {
                Some(log) => log,
                None => {
                    register();
                    let store =
                        match deltalake::logstore::store_for(url, self.storage_options(name)) {
                            Ok(store) => store,
                            Err(e) => {
                                tracing::warn!(table = name, "cannot reach {url}: {e}");
                                return None;
                            }
                        };
                    logs.entry(name.to_string()).or_insert(RemoteLog {
                        store,
                        latest: None,
                        checked: None,
                    })
                }
            };
            (log.store.clone(), log.latest)
        };
        let listed = latest_commit(store.as_ref(), known).await;
        let mut logs = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        let log = logs.get_mut(name)?;
        log.checked = Some(Instant::now());
        match listed {
            Ok(latest) => log.latest = latest.or(known),
            Err(e) => tracing::warn!(
                table = name,
                "cannot list the log of {url}, keeping version {:?}: {}",
                known,
                self.project().redactor.redact(&e.to_string())
            ),
        }
        log.latest
    }

    /// Takes the compaction lease of a shared table: `Ok(None)` for a table under
    /// `DATA_DIR/tables` (the table's file lock is enough), `Err(holder)` when another writer
    /// holds it.
    pub(crate) async fn compaction_lease(
        &self,
        name: &str,
        table: &DeltaTable,
    ) -> Result<Option<Lease>, String> {
        if !self.is_shared(name) {
            return Ok(None);
        }
        use object_store::{PutMode, PutOptions, UpdateVersion};
        let store = table.log_store().object_store(None);
        let path = StorePath::from(LEASE);
        let writer = self.writer_id().map_err(|e| e.to_string())?;
        let until = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::try_from(LEASE_TTL).unwrap_or_default())
            .unwrap_or(jiff::Timestamp::MAX);
        let token = format!("{writer}-{}", jiff::Timestamp::now().as_nanosecond());
        let body =
            serde_json::json!({ "writer": writer, "token": token, "until": until.to_string() })
                .to_string();
        let put = |mode: PutMode| {
            let store = store.clone();
            let (path, body) = (path.clone(), body.clone());
            async move {
                store
                    .put_opts(
                        &path,
                        body.into(),
                        PutOptions {
                            mode,
                            ..Default::default()
                        },
                    )
                    .await
            }
        };
        match put(PutMode::Create).await {
            Ok(_) => return Ok(Some(Lease { store, token })),
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(format!("cannot take the compaction lease: {e}")),
        }
        let held = store
            .get(&path)
            .await
            .map_err(|e| format!("cannot read the compaction lease: {e}"))?;
        let version = UpdateVersion {
            e_tag: held.meta.e_tag.clone(),
            version: held.meta.version.clone(),
        };
        let bytes = held
            .bytes()
            .await
            .map_err(|e| format!("cannot read the compaction lease: {e}"))?;
        let holder: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let expired = holder["until"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_none_or(|t| t < jiff::Timestamp::now());
        if expired && put(PutMode::Update(version)).await.is_ok() {
            return Ok(Some(Lease { store, token }));
        }
        Err(format!(
            "writer {} holds the compaction lease of `{name}` until {}",
            holder["writer"].as_str().unwrap_or("?"),
            holder["until"].as_str().unwrap_or("?")
        ))
    }

    /// Data files (`.parquet`) stored under a table, current or replaced, partitions included.
    pub(crate) async fn stored_parquet(&self, name: &str, table: &DeltaTable) -> usize {
        match self.location(name) {
            TableLocation::Local(dir) => crate::compact::parquet_on_disk(&dir),
            TableLocation::S3(_) => {
                let store = table.log_store().object_store(None);
                let listed: Result<Vec<_>, _> = store.list(None).try_collect().await;
                match listed {
                    Ok(objects) => objects
                        .iter()
                        .filter(|o| {
                            let path = o.location.as_ref();
                            path.ends_with(".parquet") && !path.starts_with("_delta_log")
                        })
                        .count(),
                    Err(e) => {
                        tracing::warn!(table = name, "cannot list the table's files: {e}");
                        0
                    }
                }
            }
        }
    }
}

/// The highest commit in `_delta_log/` after `known` (`None`: no commit after it, or none).
async fn latest_commit(
    store: &dyn ObjectStore,
    known: Option<i64>,
) -> Result<Option<i64>, object_store::Error> {
    let prefix = StorePath::from("_delta_log");
    let listed: Vec<_> = match known {
        Some(v) => {
            let offset = StorePath::from(format!("_delta_log/{v:020}.json"));
            store
                .list_with_offset(Some(&prefix), &offset)
                .try_collect()
                .await?
        }
        None => store.list(Some(&prefix)).try_collect().await?,
    };
    Ok(listed
        .iter()
        .filter_map(|o| {
            let stem = o.location.filename()?.strip_suffix(".json")?;
            (stem.len() == 20).then(|| stem.parse::<i64>().ok())?
        })
        .max())
}
