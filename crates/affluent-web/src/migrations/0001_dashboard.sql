-- The dashboard's users, sessions, favourites and login failures. Times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS affluent_users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS affluent_sessions (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    expiry_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS affluent_favourites (
    user_name TEXT NOT NULL,
    page TEXT NOT NULL,
    params TEXT NOT NULL,
    label TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (user_name, page, params)
);
CREATE TABLE IF NOT EXISTS affluent_login_failures (
    account TEXT NOT NULL,
    ip TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS affluent_login_failures_at ON affluent_login_failures (at_ms);
-- Server secrets (cookie keys), created once and shared by every process on the store.
CREATE TABLE IF NOT EXISTS affluent_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
