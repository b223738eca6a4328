//! Login sessions and favourites in the state store.
//!
//! [`SqlSessions`] is a `tower_sessions::SessionStore` over the state store's pool (SQLite or
//! PostgreSQL), so sessions survive restarts and are shared by processes on one PostgreSQL.
//! Sessions are stored under the SHA-256 of their id, never the id itself: whoever reads the
//! store's file learns no cookie that logs in. Each row names its user, so that a new password
//! or a removed account ends the user's sessions ([`end_sessions_of`]).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::WebError;

/// Sessions in `affluent_sessions`.
#[derive(Debug, Clone)]
pub struct SqlSessions {
    pool: AnyPool,
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

/// The key a session is stored under: the hex SHA-256 of its id.
pub fn stored_key(id: &Id) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(id.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Ends every session of `user`; returns how many.
pub async fn end_sessions_of(pool: &AnyPool, user: &str) -> Result<u64, WebError> {
    let done = sqlx::query("DELETE FROM affluent_sessions WHERE user_name = $1")
        .bind(user)
        .execute(pool)
        .await
        .map_err(WebError::store)?;
    Ok(done.rows_affected())
}

impl SqlSessions {
    /// Sessions in a state store's pool.
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Inserts a record; on an existing id, `on_conflict` decides. Returns the rows written.
    async fn write(&self, record: &Record, on_conflict: &str) -> session_store::Result<u64> {
        let data = serde_json::to_string(&record.data).map_err(backend)?;
        let user = record.data.get("user").and_then(|u| u.as_str());
        let done = sqlx::query(&format!(
            "INSERT INTO affluent_sessions (id, data, expiry_ms, user_name) VALUES ($1, $2, $3, $4) ON CONFLICT (id) {on_conflict}"
        ))
        .bind(stored_key(&record.id))
        .bind(data)
        .bind(record.expiry_date.unix_timestamp() * 1000)
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    /// Deletes expired sessions; returns how many.
    pub async fn delete_expired(&self) -> Result<u64, WebError> {
        let done = sqlx::query("DELETE FROM affluent_sessions WHERE expiry_ms < $1")
            .bind(Timestamp::now().as_millisecond())
            .execute(&self.pool)
            .await
            .map_err(WebError::store)?;
        Ok(done.rows_affected())
    }
}

#[async_trait::async_trait]
impl SessionStore for SqlSessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // A fresh id until one is free (collisions of 128-bit ids are not expected).
        loop {
            if self.write(record, "DO NOTHING").await? == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.write(
            record,
            "DO UPDATE SET data = excluded.data, expiry_ms = excluded.expiry_ms, user_name = excluded.user_name",
        )
        .await?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row = sqlx::query(
            "SELECT data, expiry_ms FROM affluent_sessions WHERE id = $1 AND expiry_ms > $2",
        )
        .bind(stored_key(id))
        .bind(Timestamp::now().as_millisecond())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let data: String = row.try_get(0).map_err(backend)?;
        let expiry_ms: i64 = row.try_get(1).map_err(backend)?;
        let expiry_date =
            tower_sessions::cookie::time::OffsetDateTime::from_unix_timestamp(expiry_ms / 1000)
                .map_err(backend)?;
        Ok(Some(Record {
            id: *id,
            data: serde_json::from_str(&data).map_err(backend)?,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM affluent_sessions WHERE id = $1")
            .bind(stored_key(id))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// A starred entity: a page and the values of its `favourite` filters.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Favourite {
    /// Identifier (for removal).
    pub id: String,
    /// The page.
    pub page: String,
    /// The filter values that name the entity, e.g. `{"agency": "lyon_1", "counter": "0"}`.
    #[schema(value_type = Object)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// What the user sees, e.g. "lyon_1 · counter 0".
    pub label: String,
    /// When it was starred, RFC 3339.
    pub created: String,
}

/// The most favourites a user keeps.
pub const MAX_FAVOURITES: usize = 200;
/// The longest value of a favourite's filter, in characters.
pub const MAX_FAVOURITE_VALUE: usize = 256;
/// The longest label of a favourite, in characters.
pub const MAX_FAVOURITE_LABEL: usize = 200;

/// The favourites of every user.
#[derive(Debug, Clone)]
pub struct Favourites {
    pool: AnyPool,
}

impl Favourites {
    /// Favourites in a state store's pool.
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// A user's favourites, newest first.
    pub async fn list(&self, user: &str) -> Result<Vec<Favourite>, WebError> {
        let rows = sqlx::query(
            "SELECT page, params, label, created_ms FROM affluent_favourites WHERE user_name = $1 ORDER BY created_ms DESC, label",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(WebError::store)?;
        rows.iter()
            .map(|r| {
                let page: String = r.try_get(0).map_err(WebError::store)?;
                let params: String = r.try_get(1).map_err(WebError::store)?;
                Ok(Favourite {
                    id: favourite_id(&page, &params),
                    page,
                    params: serde_json::from_str(&params).map_err(WebError::store)?,
                    label: r.try_get(2).map_err(WebError::store)?,
                    created: Timestamp::from_millisecond(r.try_get(3).map_err(WebError::store)?)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Stars an entity (starring it again keeps one favourite). Returns its id.
    pub async fn add(
        &self,
        user: &str,
        page: &str,
        params: &serde_json::Map<String, serde_json::Value>,
        label: &str,
    ) -> Result<String, WebError> {
        // Keys in a fixed order, so the same entity is the same text.
        let sorted: std::collections::BTreeMap<_, _> = params.iter().collect();
        let params = serde_json::to_string(&sorted).map_err(WebError::store)?;
        let existing = self.list(user).await?;
        let id = favourite_id(page, &params);
        if existing.len() >= MAX_FAVOURITES && !existing.iter().any(|f| f.id == id) {
            return Err(WebError::Conflict(format!(
                "you have {MAX_FAVOURITES} favourites, the most kept: remove one first"
            )));
        }
        sqlx::query(
            "INSERT INTO affluent_favourites (user_name, page, params, label, created_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_name, page, params) DO UPDATE SET label = excluded.label",
        )
        .bind(user)
        .bind(page)
        .bind(&params)
        .bind(label)
        .bind(Timestamp::now().as_millisecond())
        .execute(&self.pool)
        .await
        .map_err(WebError::store)?;
        Ok(id)
    }

    /// Removes a favourite by id; false if the user has none with that id.
    pub async fn remove(&self, user: &str, id: &str) -> Result<bool, WebError> {
        for f in self.list(user).await? {
            if f.id == id {
                let sorted: std::collections::BTreeMap<_, _> = f.params.iter().collect();
                let params = serde_json::to_string(&sorted).map_err(WebError::store)?;
                sqlx::query(
                    "DELETE FROM affluent_favourites WHERE user_name = $1 AND page = $2 AND params = $3",
                )
                .bind(user)
                .bind(&f.page)
                .bind(params)
                .execute(&self.pool)
                .await
                .map_err(WebError::store)?;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A stable id of a favourite: FNV-1a of page and parameters, in hex.
fn favourite_id(page: &str, params: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in page.bytes().chain([0u8]).chain(params.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
