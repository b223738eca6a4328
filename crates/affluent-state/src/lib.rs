//! The state store: one database (embedded SQLite by default, PostgreSQL with the same code)
//! shared by everything that keeps state between runs and between processes.
//!
//! - [`Store`]: the connection, and [`Store::migrate`], through which each component applies
//!   its own migrations (recorded per component in `affluent_schema`);
//! - [`coverage`]: this crate's own tables: which intervals of which task are landed, loaded or
//!   failed, who is running them (leases), the run history and the backfills asked for. The
//!   scheduler writes them; `status`, `runs` and the dashboard read them.
//!
//! Other components own their tables and migrations: the dashboard its users, sessions and
//! favourites (`affluent-web`). Statements cross sqlx's `Any` driver, so only integers and text
//! are stored, times as Unix milliseconds, with `$N` parameters, in SQL both databases read.

pub mod coverage;

use std::path::Path;

use affluent_core::Redactor;
use jiff::Timestamp;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

pub use coverage::{IntervalRow, IntervalState, RunCounts, RunRow};

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The URL names no supported database.
    #[error("state_url must start with sqlite:// or postgres:// (got {0})")]
    Url(String),
    /// The database could not be reached or opened.
    #[error("cannot open the state store {url}")]
    Open {
        /// The URL, without its password.
        url: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The store's directory could not be created.
    #[error("cannot create {path}")]
    Dir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A component's migration failed.
    #[error("migration {version} of {component} failed")]
    Migration {
        /// The component owning the migration.
        component: &'static str,
        /// Its version.
        version: i64,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// A statement failed.
    #[error("state store statement failed")]
    Sql(#[from] sqlx::Error),
    /// A row holds something this version cannot read.
    #[error("state store row: {0}")]
    Corrupt(String),
}

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (one file, one connection, WAL).
    Sqlite,
    /// PostgreSQL (a small pool).
    Postgres,
}

/// One migration of a component: applied once, in version order.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Increasing within its component, from 1.
    pub version: i64,
    /// Statements separated by `;`, in the SQL both databases read.
    pub sql: &'static str,
}

/// This crate's migrations (coverage, runs, backfills).
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("migrations/0001_coverage.sql"),
}];

/// The state store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Milliseconds since the epoch, as the store keeps instants.
pub fn to_ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// An instant from the store's milliseconds.
pub fn from_ms(v: i64) -> Timestamp {
    Timestamp::from_millisecond(v).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A URL fit for messages (no password).
fn shown(url: &str) -> String {
    Redactor::new().redact_url(url)
}

impl Store {
    /// The project's state store: `state_url`, or SQLite in `DATA_DIR/state/affluent.db`.
    pub async fn open_project(project: &affluent_config::Project) -> Result<Self, StateError> {
        match &project.state_url {
            Some(url) => Self::open(url).await,
            None => Self::open_dir(&project.data_dir.join("state")).await,
        }
    }

    /// SQLite in `DIR/affluent.db`, creating the directory.
    pub async fn open_dir(dir: &Path) -> Result<Self, StateError> {
        let dir_error = |source| StateError::Dir {
            path: dir.display().to_string(),
            source,
        };
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(dir_error)?;
        let file = dir.join("affluent.db");
        let store = Self::open(&format!("sqlite://{}", file.display())).await?;
        // Users' hashes, sessions and cookie keys are in it: the owner's only, with its journal.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for name in ["affluent.db", "affluent.db-wal", "affluent.db-shm"] {
                let path = dir.join(name);
                if path.exists() {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .map_err(dir_error)?;
                }
            }
        }
        Ok(store)
    }

    /// Opens (creating if needed) the store at `url`: `sqlite:///path/state.db` or
    /// `postgres://user@host/db`, and applies this crate's migrations.
    pub async fn open(url: &str) -> Result<Self, StateError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StateError::Url(shown(url)));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 1,
                Backend::Postgres => 4,
            })
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect(&url)
            .await
            .map_err(|source| StateError::Open {
                url: shown(&url),
                source,
            })?;
        let store = Self { pool, backend };
        if backend == Backend::Sqlite {
            // Several processes may share the file: wait for the writer rather than fail.
            sqlx::query("PRAGMA busy_timeout = 10000")
                .execute(&store.pool)
                .await?;
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&store.pool)
                .await?;
        }
        store.migrate("state", MIGRATIONS).await?;
        Ok(store)
    }

    /// The connection pool, for the components that keep their own tables here; their
    /// statements must be portable as described in the crate's documentation.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the migrations of `component` that this store has not applied yet, in one
    /// transaction (on PostgreSQL under an advisory lock, so that two processes starting
    /// together do not both apply them). Safe to call at every start.
    pub async fn migrate(
        &self,
        component: &'static str,
        migrations: &[Migration],
    ) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7355608)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS affluent_schema (component TEXT NOT NULL, version BIGINT NOT NULL, \
             applied_ms BIGINT NOT NULL, PRIMARY KEY (component, version))",
        )
        .execute(&mut *tx)
        .await?;
        let applied: Vec<i64> =
            sqlx::query("SELECT version FROM affluent_schema WHERE component = $1")
                .bind(component)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<Result<_, _>>()?;
        for m in migrations {
            if applied.contains(&m.version) {
                continue;
            }
            for statement in m.sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(|source| StateError::Migration {
                        component,
                        version: m.version,
                        source,
                    })?;
            }
            sqlx::query(
                "INSERT INTO affluent_schema (component, version, applied_ms) VALUES ($1, $2, $3)",
            )
            .bind(component)
            .bind(m.version)
            .bind(to_ms(Timestamp::now()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_component_migrates_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_dir(dir.path()).await.expect("open");
        const M: &[Migration] = &[Migration {
            version: 1,
            sql: "CREATE TABLE t_once (x BIGINT)",
        }];
        store.migrate("test", M).await.expect("first");
        // Without IF NOT EXISTS, a second application would fail.
        store.migrate("test", M).await.expect("second");
        let reopened = Store::open_dir(dir.path()).await.expect("reopen");
        reopened.migrate("test", M).await.expect("third");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_sqlite_store_is_the_owner_s_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let _store = Store::open_dir(&state).await.expect("open");
        for path in [state.clone(), state.join("affluent.db")] {
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        }
    }

    #[tokio::test]
    async fn a_bad_url_says_which_schemes_work_without_the_password() {
        let e = Store::open("mysql://u:hunter2@h/db")
            .await
            .expect_err("bad");
        let text = e.to_string();
        assert!(text.contains("sqlite:// or postgres://"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
