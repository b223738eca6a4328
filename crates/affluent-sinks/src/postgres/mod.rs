//! `type = "postgres"`: tables and models written to a PostgreSQL warehouse.
//!
//! Each table is written in one transaction: a lock (`pg_advisory_xact_lock`, one writer of
//! a PostgreSQL table at a time across processes), the table created or evolved (new columns
//! added, widened values widened), the rows copied (`COPY ... FROM STDIN`) into a staging
//! table and upserted on the key (`INSERT ... ON CONFLICT`), and the version written recorded
//! in `SCHEMA.affluent_sink_progress`. Rows and progress commit together: a write cut short
//! leaves the warehouse as it was, and is done again whole from the same version.

mod types;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use affluent_config::schema::PostgresSinkConfig;
use affluent_core::Redactor;
use affluent_tables::Warehouse;
use affluent_tables::changes::{ChangeColumn, Scope};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Row};

use crate::{Sink, SinkError, TableStatus, TableSync};
use types::{Fit, fit, fit_numeric, ident, sql_type};

/// How long a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The table of each sink's progress, in the sink's schema.
pub const PROGRESS_TABLE: &str = "affluent_sink_progress";

/// A PostgreSQL warehouse sink.
pub struct PostgresSink {
    name: String,
    schema: String,
    tables: Vec<String>,
    keys: BTreeMap<String, Vec<String>>,
    options: PgConnectOptions,
    /// `HOST:PORT/DATABASE`, for messages.
    at: String,
    redactor: Arc<Redactor>,
    /// The connection, kept between writes; dropped after any error.
    connection: tokio::sync::Mutex<Option<PgConnection>>,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("name", &self.name)
            .field("at", &self.at)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresSink {
    /// The sink of a `[sinks.NAME] type = "postgres"`; connects on its first write.
    pub fn new(
        name: &str,
        config: &PostgresSinkConfig,
        redactor: Arc<Redactor>,
    ) -> Result<Self, SinkError> {
        let options: PgConnectOptions = config.url.trim().parse().map_err(|e: sqlx::Error| {
            SinkError::Invalid(format!(
                "sink `{name}`: the url is not a PostgreSQL url ({}): write postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                redactor.redact(&e.to_string())
            ))
        })?;
        // The sink reports its own writes; sqlx would print every long COPY or upsert (its
        // SQL in full) as a warning.
        let options = options
            .application_name("affluent")
            .disable_statement_logging();
        let at = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        Ok(Self {
            name: name.to_string(),
            schema: config.schema().to_string(),
            tables: config.tables.clone(),
            keys: config.keys.clone(),
            options,
            at,
            redactor,
            connection: tokio::sync::Mutex::new(None),
        })
    }

    /// The key a table is upserted on: the sink's `keys`, else the table's or model's
    /// `primary_key`; empty: the table is mirrored whole.
    fn key_of(&self, warehouse: &Warehouse, table: &str) -> Vec<String> {
        if let Some(key) = self.keys.get(table) {
            return key.clone();
        }
        let project = warehouse.project();
        project
            .tables
            .get(table)
            .map(|t| t.primary_key.clone())
            .or_else(|| project.models.get(table).map(|m| m.primary_key.clone()))
            .unwrap_or_default()
    }

    /// Whether the changes since a version can be upserted on `key`: the table's rows are
    /// identified by the same key (a merge on another key could change the sink's key of a
    /// row, leaving its old row behind), or the table only ever appends.
    fn changes_fit_key(&self, warehouse: &Warehouse, table: &str, key: &[String]) -> bool {
        let project = warehouse.project();
        if let Some(t) = project.tables.get(table) {
            use affluent_config::schema::WriteMode;
            return match t.write.unwrap_or(WriteMode::Append) {
                WriteMode::Append => true,
                WriteMode::Merge => t.primary_key == key,
                WriteMode::Replace => false,
            };
        }
        if let Some(m) = project.models.get(table) {
            return m.primary_key == key;
        }
        table == affluent_tables::system::ALERT_FIRINGS
    }

    fn qualified(&self, table: &str) -> String {
        format!("{}.{}", ident(&self.schema), ident(table))
    }

    /// What a database error means, and what to do.
    fn describe(&self, e: &sqlx::Error) -> String {
        let text = match e {
            sqlx::Error::Database(db) => {
                let message = db.message();
                match db.code().as_deref() {
                    Some("28P01") => format!(
                        "PostgreSQL at {} refused the password ({message}): check the user and password in the sink's url",
                        self.at
                    ),
                    Some("28000") => format!(
                        "PostgreSQL at {} refused the login ({message}): check the url's user, and the server's pg_hba.conf",
                        self.at
                    ),
                    Some("3D000") => format!(
                        "{message} at {}: create it (`createdb NAME`) or fix the database in the sink's url",
                        self.at
                    ),
                    Some("42501") => format!(
                        "{message}: grant the sink's user the rights it needs on schema `{}` (CREATE, and on its tables)",
                        self.schema
                    ),
                    Some(code) => format!("PostgreSQL: {message} (SQLSTATE {code})"),
                    None => format!("PostgreSQL: {message}"),
                }
            }
            sqlx::Error::Io(io) => {
                format!(
                    "cannot reach PostgreSQL at {} ({io}): is it running?",
                    self.at
                )
            }
            sqlx::Error::Tls(tls) => format!("TLS with PostgreSQL at {} failed: {tls}", self.at),
            other => format!("PostgreSQL at {}: {other}", self.at),
        };
        self.redactor.redact(&text)
    }

    fn write_error(&self, table: &str, e: sqlx::Error) -> SinkError {
        SinkError::Write {
            sink: self.name.clone(),
            table: table.to_string(),
            message: self.describe(&e),
            source: Some(e),
        }
    }

    fn refuse(&self, table: &str, message: String) -> SinkError {
        SinkError::Write {
            sink: self.name.clone(),
            table: table.to_string(),
            message,
            source: None,
        }
    }

    async fn connect(&self) -> Result<PgConnection, SinkError> {
        let connect = PgConnection::connect_with(&self.options);
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(SinkError::Connect {
                sink: self.name.clone(),
                message: self.describe(&e),
                source: Some(e),
            }),
            Err(_) => Err(SinkError::Connect {
                sink: self.name.clone(),
                message: format!(
                    "PostgreSQL at {} did not answer within {} s: is it reachable?",
                    self.at,
                    CONNECT_TIMEOUT.as_secs()
                ),
                source: None,
            }),
        }
    }

    /// The columns a PostgreSQL table has (name → `data_type`, and a numeric's precision and
    /// scale); empty: no such table.
    async fn existing_columns(
        &self,
        conn: &mut PgConnection,
        table: &str,
    ) -> Result<BTreeMap<String, Existing>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT column_name::text, data_type::text, numeric_precision::bigint, \
             numeric_scale::bigint FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2",
        )
        .bind(&self.schema)
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>(0)?,
                    Existing {
                        data_type: r.try_get(1)?,
                        precision: r.try_get(2)?,
                        scale: r.try_get(3)?,
                    },
                ))
            })
            .collect()
    }

    /// Whether the table has a primary key or unique index on exactly `key`.
    async fn has_unique_key(
        &self,
        conn: &mut PgConnection,
        table: &str,
        key: &[String],
    ) -> Result<bool, sqlx::Error> {
        // Key columns only (not INCLUDE ones), no expression, not deferred: what ON CONFLICT
        // can use.
        let rows = sqlx::query(
            "SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid \
             AND a.attnum = ANY((i.indkey::int2[])[0:i.indnkeyatts - 1]) \
             WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indimmediate \
             AND i.indpred IS NULL AND i.indexprs IS NULL \
             GROUP BY i.indexrelid",
        )
        .bind(self.qualified(table))
        .fetch_all(&mut *conn)
        .await?;
        let mut wanted: Vec<String> = key.to_vec();
        wanted.sort();
        Ok(rows.iter().any(|r| {
            r.try_get::<Vec<String>, _>(0)
                .is_ok_and(|cols| cols == wanted)
        }))
    }

    /// Creates the table, or adds and widens its columns; returns what changed, and whether
    /// the table was created or gained a column (its rows then need the whole table).
    async fn prepare_table(
        &self,
        conn: &mut PgConnection,
        table: &str,
        columns: &[ChangeColumn],
        key: &[String],
    ) -> Result<(Vec<String>, bool), SinkError> {
        for column in columns {
            if column.name.len() > 63 {
                return Err(self.refuse(
                    table,
                    format!(
                        "column `{}` has a name longer than PostgreSQL's 63 bytes: rename it in the table or model",
                        column.name
                    ),
                ));
            }
        }
        for k in key {
            if !columns.iter().any(|c| &c.name == k) {
                return Err(self.refuse(
                    table,
                    format!(
                        "its key column `{k}` is not a column of the table (columns: {}): fix `keys` or `primary_key`",
                        columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        let target = self.qualified(table);
        let existing = self
            .existing_columns(conn, table)
            .await
            .map_err(|e| self.write_error(table, e))?;
        let mut changes = Vec::new();
        if existing.is_empty() {
            let mut ddl: Vec<String> = columns
                .iter()
                .map(|c| format!("{} {}", ident(&c.name), sql_type(c.kind)))
                .collect();
            if !key.is_empty() {
                ddl.push(format!(
                    "PRIMARY KEY ({})",
                    key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")
                ));
            }
            sqlx::query(&format!("CREATE TABLE {target} ({})", ddl.join(", ")))
                .execute(&mut *conn)
                .await
                .map_err(|e| self.write_error(table, e))?;
            changes.push(format!("created {target}"));
            return Ok((changes, true));
        }
        let mut added = false;
        for column in columns {
            let name = ident(&column.name);
            let statement = match existing.get(&column.name) {
                None => {
                    added = true;
                    changes.push(format!(
                        "added column {} {}",
                        column.name,
                        sql_type(column.kind)
                    ));
                    format!(
                        "ALTER TABLE {target} ADD COLUMN {name} {}",
                        sql_type(column.kind)
                    )
                }
                Some(pg) => match if pg.data_type == "numeric" {
                    fit_numeric(pg.precision, pg.scale, column.kind)
                } else {
                    fit(&pg.data_type, column.kind)
                } {
                    Fit::Takes => continue,
                    Fit::Widen(to) => {
                        changes.push(format!(
                            "widened column {} from {} to {to}",
                            column.name, pg.data_type
                        ));
                        format!(
                            "ALTER TABLE {target} ALTER COLUMN {name} TYPE {to} USING {name}::{to}"
                        )
                    }
                    Fit::Conflict => {
                        return Err(self.refuse(
                            table,
                            format!(
                                "column `{}` is {} in PostgreSQL but holds {} values in the table: change the PostgreSQL column (ALTER TABLE {target} ALTER COLUMN {name} TYPE {} USING ...), or drop it to let the sink add it again",
                                column.name,
                                pg.data_type,
                                sql_type(column.kind),
                                sql_type(column.kind)
                            ),
                        ));
                    }
                },
            };
            sqlx::query(&statement)
                .execute(&mut *conn)
                .await
                .map_err(|e| self.write_error(table, e))?;
        }
        if !key.is_empty()
            && !self
                .has_unique_key(conn, table, key)
                .await
                .map_err(|e| self.write_error(table, e))?
        {
            return Err(self.refuse(
                table,
                format!(
                    "{target} has no primary key or unique index on ({}), which the upsert needs: add one (ALTER TABLE {target} ADD PRIMARY KEY ({})) or drop the table to let the sink create it",
                    key.join(", "),
                    key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        Ok((changes, added))
    }

    async fn sync_in(
        &self,
        conn: &mut PgConnection,
        warehouse: &Warehouse,
        table: &str,
    ) -> Result<TableSync, SinkError> {
        let key = self.key_of(warehouse, table);
        let latest = warehouse.latest_version(table).await;
        let mut report = TableSync {
            sink: self.name.clone(),
            table: table.to_string(),
            version: latest,
            previous: None,
            scope: "up to date".to_string(),
            rows_sent: 0,
            rows_written: 0,
            rows_removed: 0,
            schema_changes: Vec::new(),
            nul_replaced: 0,
        };
        let mut tx = conn.begin().await.map_err(|e| self.write_error(table, e))?;
        // One writer of this PostgreSQL table at a time (whichever sink, project or process);
        // released with the transaction. Then no lock wait longer than a minute: an ALTER
        // behind a long report fails with a message rather than hanging the pipeline.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("affluent-sink:{}.{table}", self.schema))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.write_error(table, e))?;
        sqlx::query("SET LOCAL lock_timeout = '60s'")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.write_error(table, e))?;
        let schema = ident(&self.schema);
        let progress = format!("{schema}.{PROGRESS_TABLE}");
        // Created only when missing: `IF NOT EXISTS` still needs the right to create.
        let has_schema: Option<String> = sqlx::query_scalar("SELECT to_regnamespace($1)::text")
            .bind(&schema)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.write_error(table, e))?;
        let has_progress: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(&progress)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.write_error(table, e))?;
        let mut create = Vec::new();
        if has_schema.is_none() {
            create.push(format!("CREATE SCHEMA IF NOT EXISTS {schema}"));
        }
        if has_progress.is_none() {
            create.push(format!(
                "CREATE TABLE IF NOT EXISTS {progress} (sink text NOT NULL, table_name text NOT NULL, \
                 delta_version bigint NOT NULL, scope text NOT NULL, rows_sent bigint NOT NULL, \
                 written_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (sink, table_name))"
            ));
        }
        for statement in create {
            sqlx::query(&statement)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.write_error(table, e))?;
        }
        let previous: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT delta_version FROM {progress} WHERE sink = $1 AND table_name = $2"
        ))
        .bind(&self.name)
        .bind(table)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.write_error(table, e))?;
        // A table dropped in PostgreSQL since is written again whole.
        let present: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(self.qualified(table))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.write_error(table, e))?;
        let previous = previous.filter(|_| present.is_some());
        report.previous = previous;
        // Nothing to write: end the transaction now (a dropped one would hold the sink's lock
        // until the connection's next use).
        let Some(latest) = latest else {
            report.scope = "not written yet".to_string();
            tx.rollback()
                .await
                .map_err(|e| self.write_error(table, e))?;
            return Ok(report);
        };
        if previous == Some(latest) {
            tx.rollback()
                .await
                .map_err(|e| self.write_error(table, e))?;
            return Ok(report);
        }
        // Changes only with a key to upsert them on, that identifies the table's rows, and from
        // a version the table has had.
        let since = previous.filter(|p| {
            !key.is_empty() && *p < latest && self.changes_fit_key(warehouse, table, &key)
        });
        let table_err = |source| SinkError::Table {
            sink: self.name.clone(),
            table: table.to_string(),
            source: Box::new(source),
        };
        let Some(mut changes) = warehouse.changes(table, since).await.map_err(table_err)? else {
            report.scope = "not written yet".to_string();
            tx.rollback()
                .await
                .map_err(|e| self.write_error(table, e))?;
            return Ok(report);
        };
        let (schema_changes, reshaped) = self
            .prepare_table(&mut tx, table, &changes.columns, &key)
            .await?;
        report.schema_changes = schema_changes;
        if reshaped && changes.scope != Scope::Whole {
            // A table created again, or a column added: the rows not changed since hold
            // values PostgreSQL lacks.
            changes = match warehouse.changes(table, None).await.map_err(table_err)? {
                Some(c) => c,
                None => {
                    tx.rollback()
                        .await
                        .map_err(|e| self.write_error(table, e))?;
                    return Ok(report);
                }
            };
        }
        report.version = Some(changes.version);
        let whole = changes.scope == Scope::Whole;
        report.scope = if whole { "whole" } else { "changes" }.to_string();
        if let Some(why) = &changes.whole_because {
            tracing::debug!(sink = self.name, table, "writing the whole table: {why}");
        }
        let target = self.qualified(table);
        let column_list = changes
            .columns
            .iter()
            .map(|c| ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let copy_into = if key.is_empty() {
            let removed = sqlx::query(&format!("DELETE FROM {target}"))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.write_error(table, e))?;
            report.rows_removed = removed.rows_affected();
            target.clone()
        } else {
            sqlx::query(&format!(
                "CREATE TEMP TABLE affluent_stage ON COMMIT DROP AS SELECT {column_list} FROM {target} WITH NO DATA"
            ))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.write_error(table, e))?;
            "affluent_stage".to_string()
        };
        {
            let mut copy = tx
                .copy_in_raw(&format!("COPY {copy_into} ({column_list}) FROM STDIN"))
                .await
                .map_err(|e| self.write_error(table, e))?;
            loop {
                let chunk = match changes.next_chunk().await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break,
                    Err(e) => {
                        let _ = copy.abort("the table could not be read").await;
                        return Err(table_err(e));
                    }
                };
                report.rows_sent += chunk.rows as u64;
                copy.send(chunk.bytes)
                    .await
                    .map_err(|e| self.write_error(table, e))?;
            }
            let copied = copy
                .finish()
                .await
                .map_err(|e| self.write_error(table, e))?;
            if key.is_empty() {
                report.rows_written = copied;
            }
        }
        report.nul_replaced = changes.nul_replaced;
        if !key.is_empty() {
            let keys = key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ");
            if whole {
                let matches = key
                    .iter()
                    .map(|k| format!("s.{k} = t.{k}", k = ident(k)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                let removed = sqlx::query(&format!(
                    "DELETE FROM {target} t WHERE NOT EXISTS (SELECT 1 FROM affluent_stage s WHERE {matches})"
                ))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.write_error(table, e))?;
                report.rows_removed = removed.rows_affected();
            }
            let others: Vec<String> = changes
                .columns
                .iter()
                .filter(|c| !key.contains(&c.name))
                .map(|c| ident(&c.name))
                .collect();
            let on_conflict = if others.is_empty() {
                "DO NOTHING".to_string()
            } else {
                format!(
                    "DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})",
                    others
                        .iter()
                        .map(|c| format!("{c} = EXCLUDED.{c}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    others
                        .iter()
                        .map(|c| format!("t.{c}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    others
                        .iter()
                        .map(|c| format!("EXCLUDED.{c}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            };
            let written = sqlx::query(&format!(
                "INSERT INTO {target} AS t ({column_list}) SELECT DISTINCT ON ({keys}) {column_list} \
                 FROM affluent_stage ON CONFLICT ({keys}) {on_conflict}"
            ))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.write_error(table, e))?;
            report.rows_written = written.rows_affected();
        }
        sqlx::query(&format!(
            "INSERT INTO {progress} (sink, table_name, delta_version, scope, rows_sent, written_at) \
             VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (sink, table_name) DO UPDATE SET \
             delta_version = EXCLUDED.delta_version, scope = EXCLUDED.scope, \
             rows_sent = EXCLUDED.rows_sent, written_at = EXCLUDED.written_at"
        ))
        .bind(&self.name)
        .bind(table)
        .bind(changes.version)
        .bind(&report.scope)
        .bind(i64::try_from(report.rows_sent).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.write_error(table, e))?;
        tx.commit().await.map_err(|e| self.write_error(table, e))?;
        Ok(report)
    }
}

#[async_trait::async_trait]
impl Sink for PostgresSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn tables(&self) -> &[String] {
        &self.tables
    }

    async fn sync_table(&self, warehouse: &Warehouse, table: &str) -> Result<TableSync, SinkError> {
        let mut slot = self.connection.lock().await;
        if slot.is_none() {
            *slot = Some(self.connect().await?);
        }
        let Some(conn) = slot.as_mut() else {
            return Err(self.refuse(table, "no connection".to_string()));
        };
        let result = self.sync_in(conn, warehouse, table).await;
        if result.is_err() {
            // The next write starts from a fresh connection.
            if let Some(conn) = slot.take() {
                let _ = conn.close().await;
            }
        }
        result
    }

    async fn status(&self, warehouse: &Warehouse) -> Result<Vec<TableStatus>, SinkError> {
        let versions = warehouse.versions().await;
        let mut conn = self.connect().await?;
        let progress = format!("{}.{PROGRESS_TABLE}", ident(&self.schema));
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(&progress)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| self.write_error(PROGRESS_TABLE, e))?;
        let mut written: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        if exists.is_some() {
            let rows = sqlx::query(&format!(
                "SELECT table_name, delta_version, (extract(epoch FROM written_at) * 1000)::bigint \
                 FROM {progress} WHERE sink = $1"
            ))
            .bind(&self.name)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| self.write_error(PROGRESS_TABLE, e))?;
            for r in rows {
                let get = |r: &sqlx::postgres::PgRow| -> Result<(String, i64, i64), sqlx::Error> {
                    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
                };
                let (t, v, at) = get(&r).map_err(|e| self.write_error(PROGRESS_TABLE, e))?;
                written.insert(t, (v, at));
            }
        }
        let _ = conn.close().await;
        Ok(self
            .tables
            .iter()
            .map(|t| TableStatus {
                table: t.clone(),
                delta_version: versions.get(t).copied().flatten(),
                written_version: written.get(t).map(|w| w.0),
                written_at_ms: written.get(t).map(|w| w.1),
            })
            .collect())
    }
}

/// A column already in PostgreSQL.
#[derive(Debug)]
struct Existing {
    data_type: String,
    precision: Option<i64>,
    scale: Option<i64>,
}
