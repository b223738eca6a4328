-- Coverage: one row per task and data interval. Times are Unix milliseconds (BIGINT), so that
-- SQLite and PostgreSQL read and write them the same way.
CREATE TABLE IF NOT EXISTS affluent_intervals (
    task TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    last_error TEXT,
    records BIGINT,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (task, start_ms)
);
CREATE INDEX IF NOT EXISTS affluent_intervals_due ON affluent_intervals (state, next_attempt_ms);
-- Run history.
CREATE TABLE IF NOT EXISTS affluent_runs (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    run_trigger TEXT NOT NULL,
    worker TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    finished_ms BIGINT,
    status TEXT NOT NULL,
    records BIGINT,
    loaded BIGINT,
    requests BIGINT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS affluent_runs_task ON affluent_runs (task, started_ms)
;
-- Backfills asked for, so that an interrupted one resumes instead of starting over.
CREATE TABLE IF NOT EXISTS affluent_backfills (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    from_ms BIGINT NOT NULL,
    to_ms BIGINT NOT NULL,
    reprocess TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    finished_ms BIGINT
)
