-- Each user's lists (`[dashboard.lists.NAME]`): the values a user ticked (the artists they
-- follow), read by panels as `$NAME`. Times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS affluent_user_lists (
    user_name TEXT NOT NULL,
    list TEXT NOT NULL,
    item TEXT NOT NULL,
    added_ms BIGINT NOT NULL,
    PRIMARY KEY (user_name, list, item)
)
