//! `[dashboard.lists.NAME]`: per-user lists of values (the artists a user follows), ticked from
//! any panel with a `toggle` and read by every panel's SQL as `$NAME`, in the state store
//! (`affluent_user_lists`).

use std::collections::HashMap;

use affluent_tables::reader::Param;
use jiff::Timestamp;
use sqlx::{AnyPool, Row};

use crate::WebError;

/// The most values a user keeps in one list.
pub const MAX_ITEMS: usize = 1000;
/// The longest value, in characters.
pub const MAX_ITEM: usize = 256;

/// Every user's lists.
#[derive(Debug, Clone)]
pub struct Lists {
    pool: AnyPool,
    names: Vec<String>,
}

impl Lists {
    /// The lists of a project (`names`), in a state store's pool.
    pub fn new(pool: AnyPool, names: Vec<String>) -> Self {
        Self { pool, names }
    }

    fn check(&self, list: &str) -> Result<(), WebError> {
        if self.names.iter().any(|n| n == list) {
            Ok(())
        } else {
            Err(WebError::NotFound(format!(
                "no list `{list}` (lists: {})",
                if self.names.is_empty() {
                    "none".to_string()
                } else {
                    self.names.join(", ")
                }
            )))
        }
    }

    /// A user's values in each list, oldest first.
    pub async fn of(&self, user: &str) -> Result<HashMap<String, Vec<String>>, WebError> {
        let rows = sqlx::query(
            "SELECT list, item FROM affluent_user_lists WHERE user_name = $1 ORDER BY added_ms, item",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(WebError::store)?;
        let mut out: HashMap<String, Vec<String>> =
            self.names.iter().map(|n| (n.clone(), Vec::new())).collect();
        for r in rows {
            let list: String = r.try_get(0).map_err(WebError::store)?;
            let item: String = r.try_get(1).map_err(WebError::store)?;
            // A list no longer in the project file is kept, not shown.
            if let Some(items) = out.get_mut(&list) {
                items.push(item);
            }
        }
        Ok(out)
    }

    /// The parameters panels read: each list as `$NAME`, the user's values or none (a visitor
    /// who is not logged in).
    pub async fn params(&self, user: Option<&str>) -> Result<HashMap<String, Param>, WebError> {
        let mut lists = match user {
            Some(user) => self.of(user).await?,
            None => HashMap::new(),
        };
        Ok(self
            .names
            .iter()
            .map(|n| (n.clone(), Param::List(lists.remove(n).unwrap_or_default())))
            .collect())
    }

    /// Adds a value to a user's list (adding it again keeps one).
    pub async fn add(&self, user: &str, list: &str, item: &str) -> Result<(), WebError> {
        self.check(list)?;
        if item.is_empty() || item.chars().count() > MAX_ITEM {
            return Err(WebError::Invalid(format!(
                "a list value is 1 to {MAX_ITEM} characters"
            )));
        }
        let count: i64 = sqlx::query(
            "SELECT count(*) FROM affluent_user_lists WHERE user_name = $1 AND list = $2 AND item <> $3",
        )
        .bind(user)
        .bind(list)
        .bind(item)
        .fetch_one(&self.pool)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(WebError::store)?;
        if count as usize >= MAX_ITEMS {
            return Err(WebError::Conflict(format!(
                "your list `{list}` holds {MAX_ITEMS} values, the most kept: remove one first"
            )));
        }
        sqlx::query(
            "INSERT INTO affluent_user_lists (user_name, list, item, added_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (user_name, list, item) DO NOTHING",
        )
        .bind(user)
        .bind(list)
        .bind(item)
        .bind(Timestamp::now().as_millisecond())
        .execute(&self.pool)
        .await
        .map_err(WebError::store)?;
        Ok(())
    }

    /// Removes a value from a user's list; false if it was not there.
    pub async fn remove(&self, user: &str, list: &str, item: &str) -> Result<bool, WebError> {
        self.check(list)?;
        let done = sqlx::query(
            "DELETE FROM affluent_user_lists WHERE user_name = $1 AND list = $2 AND item = $3",
        )
        .bind(user)
        .bind(list)
        .bind(item)
        .execute(&self.pool)
        .await
        .map_err(WebError::store)?;
        Ok(done.rows_affected() > 0)
    }
}
