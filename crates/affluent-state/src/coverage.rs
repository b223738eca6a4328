//! Coverage: which intervals of which task are landed, loaded or failed, who is running them,
//! the history of runs, and the backfills asked for.
//!
//! Concurrency between processes rests on one statement: a run *claims* an interval with a
//! conditional `UPDATE` (a compare-and-set on the lease), so of two schedulers on the same
//! database only one wins an interval, on SQLite as on PostgreSQL. A lease that is not renewed
//! expires; a lease whose owner is a dead process on this host is taken back at once.
//!
//! Tasks are [`TaskId`]s here; rows keep their text form (`source:NAME`).

use affluent_core::{Interval, TaskId};
use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{StateError, Store, from_ms as ts, to_ms as ms};

/// The state of one interval of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalState {
    /// Due (or to be retried); nothing of it has succeeded yet.
    Pending,
    /// Landed, not yet loaded (its load or its models failed).
    Landed,
    /// Loaded: done.
    Done,
    /// The last attempt failed; retried at `next_attempt`.
    Failed,
}

impl IntervalState {
    /// The state's text in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Landed => "landed",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "landed" => Self::Landed,
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// One row of `affluent_intervals`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalRow {
    /// The task.
    pub task: TaskId,
    /// The data interval.
    pub interval: Interval,
    /// Where it is.
    pub state: IntervalState,
    /// Runs claimed so far.
    pub attempts: i64,
    /// Not retried before this instant.
    pub next_attempt: Timestamp,
    /// The worker holding it (`host:pid:nonce`), while one runs it.
    pub lease_owner: Option<String>,
    /// When that lease expires unless renewed.
    pub lease_until: Option<Timestamp>,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// Records of the successful run.
    pub records: Option<i64>,
    /// Last change of the row.
    pub updated: Timestamp,
}

/// One row of `affluent_runs`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    /// The run's id.
    pub id: String,
    /// The task.
    pub task: TaskId,
    /// The data interval it covered.
    pub interval: Interval,
    /// Why it ran: `live`, `catchup`, `retry`, `backfill`, `upstream`.
    pub trigger: String,
    /// The worker that ran it.
    pub worker: String,
    /// When it started.
    pub started: Timestamp,
    /// When it ended (none while running, or if its process died).
    pub finished: Option<Timestamp>,
    /// `running`, `success` or `failed`.
    pub status: String,
    /// Records fetched (or rows a model wrote).
    pub records: Option<i64>,
    /// Rows loaded into tables.
    pub loaded: Option<i64>,
    /// Requests sent.
    pub requests: Option<i64>,
    /// Why it failed (secrets scrubbed).
    pub error: Option<String>,
}

/// What a finished run reports to the store.
#[derive(Debug, Clone, Default)]
pub struct RunCounts {
    /// Records fetched (or rows a model wrote).
    pub records: i64,
    /// Rows loaded into tables.
    pub loaded: i64,
    /// Requests sent.
    pub requests: i64,
    /// The messages of the alerts the run fired (not stored: what the summary of a schedule
    /// tick lists).
    pub fired: Vec<String>,
    /// The cassette a source's answers were replayed from, instead of its API (not stored).
    pub replayed_from: Option<String>,
}

impl Store {
    /// Records intervals as due (pending) unless they are known already. Returns how many were new.
    pub async fn ensure(&self, task: &TaskId, intervals: &[Interval]) -> Result<u64, StateError> {
        let now = ms(Timestamp::now());
        let mut added = 0;
        let mut tx = self.pool.begin().await?;
        for chunk in intervals.chunks(200) {
            let mut sql = String::from(
                "INSERT INTO affluent_intervals (task, start_ms, end_ms, state, attempts, next_attempt_ms, updated_ms) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                let b = i * 3;
                sql.push_str(&format!(
                    "($1, ${}, ${}, 'pending', 0, 0, ${})",
                    b + 2,
                    b + 3,
                    b + 4
                ));
            }
            sql.push_str(" ON CONFLICT (task, start_ms) DO NOTHING");
            let mut q = sqlx::query(&sql).bind(task.to_string());
            for i in chunk {
                q = q.bind(ms(i.start)).bind(ms(i.end)).bind(now);
            }
            added += q.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Sets intervals back to pending so that they run again: those in `states` (or unknown ones,
    /// which are created). Leased intervals are left alone. Returns how many changed.
    pub async fn reset(
        &self,
        task: &TaskId,
        intervals: &[Interval],
        states: &[IntervalState],
    ) -> Result<u64, StateError> {
        let mut changed = self.ensure(task, intervals).await?;
        if states.is_empty() || intervals.is_empty() {
            return Ok(changed);
        }
        let list: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let sql = format!(
            "UPDATE affluent_intervals SET state = 'pending', next_attempt_ms = 0, updated_ms = $1 \
             WHERE task = $2 AND start_ms >= $3 AND start_ms < $4 AND state IN ({}) AND lease_owner IS NULL",
            list.join(",")
        );
        let first = intervals.iter().map(|i| i.start).min().unwrap_or_default();
        let last = intervals.iter().map(|i| i.end).max().unwrap_or_default();
        changed += sqlx::query(&sql)
            .bind(ms(Timestamp::now()))
            .bind(task.to_string())
            .bind(ms(first))
            .bind(ms(last))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(changed)
    }

    /// The end of the latest interval known for a task.
    pub async fn latest_end(&self, task: &TaskId) -> Result<Option<Timestamp>, StateError> {
        let row = sqlx::query("SELECT MAX(end_ms) FROM affluent_intervals WHERE task = $1")
            .bind(task.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.map(ts))
    }

    /// Intervals that may run now: not done, due for an attempt, not leased (or leased by an
    /// expired lease), oldest first.
    pub async fn runnable(
        &self,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<IntervalRow>, StateError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM affluent_intervals WHERE state <> 'done' AND next_attempt_ms <= $1 \
             AND (lease_owner IS NULL OR lease_until_ms < $1) ORDER BY start_ms LIMIT $2"
        ))
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        ?;
        rows.iter().map(interval_row).collect()
    }

    /// The owners of the leases currently held (for taking back those of dead processes).
    pub async fn lease_owners(&self) -> Result<Vec<String>, StateError> {
        let rows = sqlx::query(
            "SELECT DISTINCT lease_owner FROM affluent_intervals WHERE lease_owner IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StateError::from))
            .collect()
    }

    /// Releases every lease of `owner` (a process that is gone, or this one shutting down).
    pub async fn release_all(&self, owner: &str) -> Result<u64, StateError> {
        Ok(sqlx::query(
            "UPDATE affluent_intervals SET lease_owner = NULL, lease_until_ms = NULL WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&self.pool)
        .await
        ?
        .rows_affected())
    }

    /// Claims an interval for `owner` until `until`; `false` when another holds it, it is done,
    /// or it is not due.
    pub async fn claim(
        &self,
        task: &TaskId,
        start: Timestamp,
        owner: &str,
        until: Timestamp,
    ) -> Result<bool, StateError> {
        let now = ms(Timestamp::now());
        let n = sqlx::query(
            "UPDATE affluent_intervals SET lease_owner = $1, lease_until_ms = $2, attempts = attempts + 1, updated_ms = $3 \
             WHERE task = $4 AND start_ms = $5 AND state <> 'done' AND next_attempt_ms <= $3 \
             AND (lease_owner IS NULL OR lease_until_ms < $3 OR lease_owner = $1)",
        )
        .bind(owner)
        .bind(ms(until))
        .bind(now)
        .bind(task.to_string())
        .bind(ms(start))
        .execute(&self.pool)
        .await
        ?
        .rows_affected();
        Ok(n == 1)
    }

    /// Extends every lease `owner` holds.
    pub async fn renew(&self, owner: &str, until: Timestamp) -> Result<u64, StateError> {
        Ok(
            sqlx::query("UPDATE affluent_intervals SET lease_until_ms = $1 WHERE lease_owner = $2")
                .bind(ms(until))
                .bind(owner)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Marks a claimed interval landed (ingestion succeeded, the load is next).
    pub async fn mark_landed(
        &self,
        task: &TaskId,
        start: Timestamp,
        owner: &str,
    ) -> Result<bool, StateError> {
        let now = ms(Timestamp::now());
        let n = sqlx::query(
            "UPDATE affluent_intervals SET state = 'landed', updated_ms = $1 \
             WHERE task = $2 AND start_ms = $3 AND lease_owner = $4 AND state <> 'done'",
        )
        .bind(now)
        .bind(task.to_string())
        .bind(ms(start))
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Marks a claimed interval done and releases it; `false` if the lease was lost meanwhile
    /// (the work is idempotent, so the other holder's run changes nothing).
    pub async fn mark_done(
        &self,
        task: &TaskId,
        start: Timestamp,
        owner: &str,
        records: i64,
    ) -> Result<bool, StateError> {
        let now = ms(Timestamp::now());
        let n = sqlx::query(
            "UPDATE affluent_intervals SET state = 'done', lease_owner = NULL, lease_until_ms = NULL, \
             last_error = NULL, records = $1, updated_ms = $2 \
             WHERE task = $3 AND start_ms = $4 AND lease_owner = $5",
        )
        .bind(records)
        .bind(now)
        .bind(task.to_string())
        .bind(ms(start))
        .bind(owner)
        .execute(&self.pool)
        .await
        ?
        .rows_affected();
        Ok(n == 1)
    }

    /// Marks a claimed interval failed, to be retried at `retry_at`, and releases it.
    pub async fn mark_failed(
        &self,
        task: &TaskId,
        start: Timestamp,
        owner: &str,
        error: &str,
        retry_at: Timestamp,
    ) -> Result<bool, StateError> {
        let now = ms(Timestamp::now());
        let n = sqlx::query(
            "UPDATE affluent_intervals SET state = CASE WHEN state = 'landed' THEN 'landed' ELSE 'failed' END, \
             lease_owner = NULL, lease_until_ms = NULL, last_error = $1, next_attempt_ms = $2, updated_ms = $3 \
             WHERE task = $4 AND start_ms = $5 AND lease_owner = $6",
        )
        .bind(error)
        .bind(ms(retry_at))
        .bind(now)
        .bind(task.to_string())
        .bind(ms(start))
        .bind(owner)
        .execute(&self.pool)
        .await
        ?
        .rows_affected();
        Ok(n == 1)
    }

    /// The intervals of a task overlapping `[from, to)`, oldest first.
    pub async fn intervals(
        &self,
        task: &TaskId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<IntervalRow>, StateError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM affluent_intervals WHERE task = $1 AND end_ms > $2 AND start_ms < $3 ORDER BY start_ms"
        ))
        .bind(task.to_string())
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(&self.pool)
        .await
        ?;
        rows.iter().map(interval_row).collect()
    }

    /// The intervals of a task that are not done, oldest first.
    pub async fn holes(&self, task: &TaskId) -> Result<Vec<IntervalRow>, StateError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM affluent_intervals WHERE task = $1 AND state <> 'done' ORDER BY start_ms"
        ))
        .bind(task.to_string())
        .fetch_all(&self.pool)
        .await
        ?;
        rows.iter().map(interval_row).collect()
    }

    /// Starts a run record.
    pub async fn run_started(
        &self,
        id: &str,
        task: &TaskId,
        interval: Interval,
        trigger: &str,
        worker: &str,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO affluent_runs (id, task, start_ms, end_ms, run_trigger, worker, started_ms, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running')",
        )
        .bind(id)
        .bind(task.to_string())
        .bind(ms(interval.start))
        .bind(ms(interval.end))
        .bind(trigger)
        .bind(worker)
        .bind(ms(Timestamp::now()))
        .execute(&self.pool)
        .await
        ?;
        Ok(())
    }

    /// Ends a run record.
    pub async fn run_finished(
        &self,
        id: &str,
        result: Result<&RunCounts, &str>,
    ) -> Result<(), StateError> {
        let (status, counts, error) = match result {
            Ok(c) => ("success", c.clone(), None),
            Err(e) => ("failed", RunCounts::default(), Some(e.to_string())),
        };
        sqlx::query(
            "UPDATE affluent_runs SET finished_ms = $1, status = $2, records = $3, loaded = $4, requests = $5, error = $6 WHERE id = $7",
        )
        .bind(ms(Timestamp::now()))
        .bind(status)
        .bind(counts.records)
        .bind(counts.loaded)
        .bind(counts.requests)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await
        ?;
        Ok(())
    }

    /// The latest runs, newest first, optionally of one task and only failed ones.
    pub async fn runs(
        &self,
        task: Option<&TaskId>,
        failed_only: bool,
        limit: i64,
    ) -> Result<Vec<RunRow>, StateError> {
        let mut sql = String::from(
            "SELECT id, task, start_ms, end_ms, run_trigger, worker, started_ms, finished_ms, status, records, loaded, requests, error \
             FROM affluent_runs WHERE ($1 = '' OR task = $1)",
        );
        if failed_only {
            sql.push_str(" AND status = 'failed'");
        }
        sql.push_str(" ORDER BY started_ms DESC, id DESC LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(task.map(ToString::to_string).unwrap_or_default())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| -> Result<RunRow, sqlx::Error> {
                Ok(RunRow {
                    id: r.try_get(0)?,
                    task: task_of(r.try_get(1)?)?,
                    interval: Interval {
                        start: ts(r.try_get(2)?),
                        end: ts(r.try_get(3)?),
                    },
                    trigger: r.try_get(4)?,
                    worker: r.try_get(5)?,
                    started: ts(r.try_get(6)?),
                    finished: r.try_get::<Option<i64>, _>(7)?.map(ts),
                    status: r.try_get(8)?,
                    records: r.try_get(9)?,
                    loaded: r.try_get(10)?,
                    requests: r.try_get(11)?,
                    error: r.try_get(12)?,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(StateError::from)
    }

    /// The last successful run of a task and the last error, for `status`.
    pub async fn last_success(&self, task: &TaskId) -> Result<Option<RunRow>, StateError> {
        Ok(self
            .runs(Some(task), false, 50)
            .await?
            .into_iter()
            .find(|r| r.status == "success"))
    }

    /// Whether a backfill request is recorded and unfinished.
    pub async fn backfill_open(&self, id: &str) -> Result<bool, StateError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM affluent_backfills WHERE id = $1 AND finished_ms IS NULL",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// Records a backfill request (again, if an identical one finished before).
    pub async fn backfill_record(
        &self,
        id: &str,
        task: &TaskId,
        from: Timestamp,
        to: Timestamp,
        reprocess: &str,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO affluent_backfills (id, task, from_ms, to_ms, reprocess, created_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET created_ms = $6, finished_ms = NULL",
        )
        .bind(id)
        .bind(task.to_string())
        .bind(ms(from))
        .bind(ms(to))
        .bind(reprocess)
        .bind(ms(Timestamp::now()))
        .execute(&self.pool)
        .await
        ?;
        Ok(())
    }

    /// Marks a backfill request finished.
    pub async fn backfill_finished(&self, id: &str) -> Result<(), StateError> {
        sqlx::query("UPDATE affluent_backfills SET finished_ms = $1 WHERE id = $2")
            .bind(ms(Timestamp::now()))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

const COLUMNS: &str = "task, start_ms, end_ms, state, attempts, next_attempt_ms, lease_owner, lease_until_ms, last_error, records, updated_ms";

fn interval_row(r: &AnyRow) -> Result<IntervalRow, StateError> {
    (|| -> Result<IntervalRow, sqlx::Error> {
        Ok(IntervalRow {
            task: task_of(r.try_get(0)?)?,
            interval: Interval {
                start: ts(r.try_get(1)?),
                end: ts(r.try_get(2)?),
            },
            state: IntervalState::parse(&r.try_get::<String, _>(3)?),
            attempts: r.try_get(4)?,
            next_attempt: ts(r.try_get(5)?),
            lease_owner: r.try_get(6)?,
            lease_until: r.try_get::<Option<i64>, _>(7)?.map(ts),
            last_error: r.try_get(8)?,
            records: r.try_get(9)?,
            updated: ts(r.try_get(10)?),
        })
    })()
    .map_err(StateError::from)
}

/// A task's text form read back; a row this version cannot read is a decode error.
fn task_of(text: String) -> Result<TaskId, sqlx::Error> {
    text.parse()
        .map_err(|e: affluent_core::InvalidTaskId| sqlx::Error::Decode(Box::new(e)))
}
