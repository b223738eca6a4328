//! Users, passwords and login throttling, in the state store.
//!
//! Passwords are hashed with argon2id (PHC strings with their own salt and parameters). There is
//! no default account: the first user comes from `affluent user add` or the one-time setup link.
//! A login is refused without checking the password once an account or an IP address has
//! [`MAX_FAILURES`] failures within [`FAILURE_WINDOW`].

use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};

use crate::WebError;

/// Failures allowed per account and per IP within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: i64 = 5;
/// The window of [`MAX_FAILURES`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 8;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including managing users.
    Admin,
    /// Read pages, export, keep favourites.
    Viewer,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = WebError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            other => Err(WebError::Invalid(format!(
                "unknown role `{other}`: use admin or viewer"
            ))),
        }
    }
}

/// A user as listed (never with the hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Creation time, RFC 3339.
    pub created: String,
}

/// The users of the state store.
#[derive(Debug, Clone)]
pub struct Users {
    pool: AnyPool,
}

/// Checks a user name: 1 to 64 letters, digits, `_`, `-`, `.` or `@`.
pub fn check_name(name: &str) -> Result<(), WebError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c))
    {
        return Err(WebError::Invalid(format!(
            "invalid user name `{name}`: use 1 to 64 letters, digits, `_`, `-`, `.` or `@`"
        )));
    }
    Ok(())
}

/// Hashes a password with argon2id.
pub fn hash_password(password: &str) -> Result<String, WebError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(WebError::Invalid(format!(
            "the password must have at least {MIN_PASSWORD} characters"
        )));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| WebError::internal(format!("cannot hash the password: {e}"), e.to_string()))
}

/// A hash verified when the account does not exist, so that unknown and known names take the
/// same time.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default())
}

impl Users {
    /// The users of a state store's pool (whose dashboard migrations ran: see [`Users::open`]).
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// The users of a state store, applying the dashboard's migrations first.
    pub async fn open(store: &affluent_state::Store) -> Result<Self, crate::WebError> {
        crate::migrate(store).await?;
        Ok(Self::new(store.pool().clone()))
    }

    /// Adds a user; fails if the name is taken.
    pub async fn add(&self, name: &str, password: &str, role: Role) -> Result<(), WebError> {
        check_name(name)?;
        let hash = hash_password(password)?;
        let done = sqlx::query(
            "INSERT INTO affluent_users (name, password_hash, role, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(hash)
        .bind(role.as_str())
        .bind(Timestamp::now().as_millisecond())
        .execute(&self.pool)
        .await
        .map_err(WebError::store)?;
        if done.rows_affected() == 0 {
            return Err(WebError::Conflict(format!("user `{name}` already exists")));
        }
        Ok(())
    }

    /// Changes a user's password.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), WebError> {
        let hash = hash_password(password)?;
        let done = sqlx::query("UPDATE affluent_users SET password_hash = $1 WHERE name = $2")
            .bind(hash)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(WebError::store)?;
        if done.rows_affected() == 0 {
            return Err(WebError::NotFound(format!("no user `{name}`")));
        }
        Ok(())
    }

    /// Removes a user and their favourites.
    pub async fn remove(&self, name: &str) -> Result<(), WebError> {
        let done = sqlx::query("DELETE FROM affluent_users WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(WebError::store)?;
        if done.rows_affected() == 0 {
            return Err(WebError::NotFound(format!("no user `{name}`")));
        }
        sqlx::query("DELETE FROM affluent_favourites WHERE user_name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(WebError::store)?;
        Ok(())
    }

    /// How many users exist.
    pub async fn count(&self) -> Result<i64, WebError> {
        let row = sqlx::query("SELECT COUNT(*) FROM affluent_users")
            .fetch_one(&self.pool)
            .await
            .map_err(WebError::store)?;
        row.try_get::<i64, _>(0).map_err(WebError::store)
    }

    /// Every user, by name.
    pub async fn list(&self) -> Result<Vec<UserInfo>, WebError> {
        let rows = sqlx::query("SELECT name, role, created_ms FROM affluent_users ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(WebError::store)?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get(1).map_err(WebError::store)?;
                Ok(UserInfo {
                    name: r.try_get(0).map_err(WebError::store)?,
                    role: role.parse()?,
                    created: Timestamp::from_millisecond(r.try_get(2).map_err(WebError::store)?)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The role of a user, if they exist.
    pub async fn role(&self, name: &str) -> Result<Option<Role>, WebError> {
        let row = sqlx::query("SELECT role FROM affluent_users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(WebError::store)?;
        match row {
            Some(r) => Ok(Some(
                r.try_get::<String, _>(0)
                    .map_err(WebError::store)?
                    .parse()?,
            )),
            None => Ok(None),
        }
    }

    /// Checks a password. `Ok(None)` for a wrong name or password (the same answer for both).
    pub async fn verify(&self, name: &str, password: &str) -> Result<Option<Role>, WebError> {
        let row = sqlx::query("SELECT password_hash, role FROM affluent_users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(WebError::store)?;
        let (hash, role) = match &row {
            Some(r) => (
                r.try_get::<String, _>(0).map_err(WebError::store)?,
                Some(r.try_get::<String, _>(1).map_err(WebError::store)?),
            ),
            None => (dummy_hash().to_string(), None),
        };
        let password = password.to_string();
        // argon2 takes tens of milliseconds of CPU: off the async workers.
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        match (ok, role) {
            (true, Some(role)) => Ok(Some(role.parse()?)),
            _ => Ok(None),
        }
    }

    /// When the account or the IP address has too many recent failures: how long to wait.
    pub async fn throttled(&self, account: &str, ip: &str) -> Result<Option<Duration>, WebError> {
        let now = Timestamp::now().as_millisecond();
        let since = now - FAILURE_WINDOW.as_millis() as i64;
        let mut wait: Option<i64> = None;
        for (column, value) in [("account", account), ("ip", ip)] {
            let rows = sqlx::query(&format!(
                "SELECT at_ms FROM affluent_login_failures WHERE {column} = $1 AND at_ms > $2 ORDER BY at_ms DESC"
            ))
            .bind(value)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(WebError::store)?;
            if rows.len() as i64 >= MAX_FAILURES {
                // Free again when the oldest failure that counts leaves the window.
                let oldest: i64 = rows[MAX_FAILURES as usize - 1]
                    .try_get(0)
                    .map_err(WebError::store)?;
                let until = oldest + FAILURE_WINDOW.as_millis() as i64 - now;
                wait = Some(wait.map_or(until, |w| w.max(until)));
            }
        }
        Ok(wait.map(|ms| Duration::from_millis(ms.max(1000) as u64)))
    }

    /// Records a failed login.
    pub async fn record_failure(&self, account: &str, ip: &str) -> Result<(), WebError> {
        let now = Timestamp::now().as_millisecond();
        sqlx::query("INSERT INTO affluent_login_failures (account, ip, at_ms) VALUES ($1, $2, $3)")
            .bind(account)
            .bind(ip)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(WebError::store)?;
        // Forget what no longer counts.
        sqlx::query("DELETE FROM affluent_login_failures WHERE at_ms < $1")
            .bind(now - 2 * FAILURE_WINDOW.as_millis() as i64)
            .execute(&self.pool)
            .await
            .map_err(WebError::store)?;
        Ok(())
    }
}

/// A random password of 20 letters and digits (for `affluent demo` and `user add --generate`).
pub fn generate_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// A random token of `bytes` bytes, hex-encoded.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A secret shared by every process on the store, created on first use.
pub async fn secret(pool: &AnyPool, name: &str) -> Result<Vec<u8>, WebError> {
    sqlx::query(
        "INSERT INTO affluent_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(random_hex(64))
    .execute(pool)
    .await
    .map_err(WebError::store)?;
    let row = sqlx::query("SELECT value FROM affluent_secrets WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .map_err(WebError::store)?;
    let hex: String = row.try_get(0).map_err(WebError::store)?;
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|e| WebError::internal(format!("server secret `{name}` is corrupt"), e))
}
