-- Session ids are kept as SHA-256 hashes from now on, with the user they belong to (so that a
-- new password can end them). Sessions stored under clear ids end here.
DELETE FROM affluent_sessions;
ALTER TABLE affluent_sessions ADD COLUMN user_name TEXT;
CREATE INDEX IF NOT EXISTS affluent_sessions_user ON affluent_sessions (user_name);
-- Login throttling: one counter per key (account and address, address prefix, account), with
-- the time the next attempt is allowed. It replaces the log of failures.
DROP TABLE IF EXISTS affluent_login_failures;
CREATE TABLE IF NOT EXISTS affluent_login_throttle (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    next_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
-- Addresses each account logged in from (they skip the account-wide throttle).
CREATE TABLE IF NOT EXISTS affluent_login_known (
    account TEXT NOT NULL,
    ip TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (account, ip)
)
