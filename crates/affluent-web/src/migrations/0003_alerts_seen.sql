-- Which alert firings each user has marked seen (a firing is named by its alert, evaluation
-- and entity, as in the `alert_firings` table). Times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS affluent_alerts_seen (
    user_name TEXT NOT NULL,
    alert TEXT NOT NULL,
    evaluation BIGINT NOT NULL,
    entity TEXT NOT NULL,
    seen_ms BIGINT NOT NULL,
    PRIMARY KEY (user_name, alert, evaluation, entity)
)
