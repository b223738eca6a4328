//! Users and passwords, in the state store.
//!
//! Passwords are hashed with argon2id (PHC strings with their own salt and parameters). There is
//! no default account: the first user comes from `affluent user add` or the one-time setup link.
//! Hashing runs on a [`Hasher`]: a few threads and a short queue, so that a storm of logins
//! costs a bounded amount of memory (argon2id takes 19 MiB a hash) and is shed with 503 beyond
//! it. Throttling is in [`crate::throttle`].

use std::sync::{Arc, Mutex};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};

use crate::WebError;

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
    hasher: Arc<Hasher>,
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs password hashing on `workers` threads of its own with at most `queue` jobs waiting;
/// beyond that, [`WebError::Busy`] at once. The threads end when the hasher is dropped.
#[derive(Debug)]
pub struct Hasher {
    admission: Arc<tokio::sync::Semaphore>,
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
}

impl Hasher {
    /// A hasher with `workers` threads (at least one) and room for `queue` waiting jobs.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        let (jobs, receiver) = std::sync::mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..workers {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("affluent-hash-{i}"))
                .spawn(move || {
                    loop {
                        let job = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("dashboard: cannot start a password hashing thread: {e}");
            }
        }
        Self {
            admission: Arc::new(tokio::sync::Semaphore::new(workers + queue)),
            jobs: Mutex::new(jobs),
        }
    }

    /// The default: as many threads as cores, at most 2, and 8 jobs waiting.
    pub fn standard() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores.min(2), 8)
    }

    /// Runs `f` on a hashing thread, or refuses at once when the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WebError> {
        let permit = self.admission.clone().try_acquire_owned().map_err(|_| {
            WebError::Busy("the server is checking too many passwords at once".to_string())
        })?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
            drop(permit);
        });
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| WebError::internal("password hashing", "no hashing thread is running"))?;
        rx.await
            .map_err(|_| WebError::internal("password hashing", "a hashing job was lost"))
    }
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

/// Checks a password's length: [`MIN_PASSWORD`] characters or more.
pub fn check_password(password: &str) -> Result<(), WebError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(WebError::Invalid(format!(
            "the password must have at least {MIN_PASSWORD} characters"
        )));
    }
    Ok(())
}

/// Hashes a password with argon2id (on the calling thread: see [`Hasher`]).
pub fn hash_password(password: &str) -> Result<String, WebError> {
    check_password(password)?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| WebError::internal(format!("cannot hash the password: {e}"), e.to_string()))
}

thread_local! {
    /// The argon2 memory of a hashing thread, kept from one check to the next. Allocating 19 MiB
    /// a check lets glibc's malloc keep each freed block (its mmap threshold rises to the
    /// block's size), and the process grew by 19 MiB a check, to 500 MiB after 20.
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Checks `password` against a PHC string, in this thread's reused argon2 memory.
fn verify_reusing_memory(hash: &str, password: &[u8]) -> bool {
    use argon2::{Algorithm, Params, Version};
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) = (
        Params::try_from(&parsed),
        Algorithm::try_from(parsed.algorithm),
    ) else {
        return false;
    };
    let Ok(version) = parsed.version.map(Version::try_from).transpose() else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    let mut out = vec![0u8; expected.len()];
    let hasher = Argon2::new(algorithm, version.unwrap_or_default(), params);
    BLOCKS.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, argon2::Block::default());
        }
        hasher
            .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..blocks])
            .is_ok()
    }) && constant_time_eq(&out, expected.as_bytes())
}

/// Compares without stopping at the first difference.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A hash verified when the account does not exist, so that unknown and known names take the
/// same time.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default())
}

impl Users {
    /// The users of a state store's pool (whose dashboard migrations ran: see [`Users::open`]),
    /// hashing on a [`Hasher::standard`].
    pub fn new(pool: AnyPool) -> Self {
        Self::with_hasher(pool, Hasher::standard())
    }

    /// The users of a state store's pool, hashing on `hasher`.
    pub fn with_hasher(pool: AnyPool, hasher: Hasher) -> Self {
        Self {
            pool,
            hasher: Arc::new(hasher),
        }
    }

    /// Hashes a password (checking its length) on the hasher.
    async fn hash(&self, password: &str) -> Result<String, WebError> {
        check_password(password)?;
        let password = password.to_string();
        self.hasher.run(move || hash_password(&password)).await?
    }

    /// The users of a state store, applying the dashboard's migrations first.
    pub async fn open(store: &affluent_state::Store) -> Result<Self, crate::WebError> {
        crate::migrate(store).await?;
        Ok(Self::new(store.pool().clone()))
    }

    /// Adds a user; fails if the name is taken.
    pub async fn add(&self, name: &str, password: &str, role: Role) -> Result<(), WebError> {
        check_name(name)?;
        let hash = self.hash(password).await?;
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

    /// Changes a user's password and ends their sessions (logged in elsewhere, with the old
    /// password, is logged out).
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), WebError> {
        let hash = self.hash(password).await?;
        let done = sqlx::query("UPDATE affluent_users SET password_hash = $1 WHERE name = $2")
            .bind(hash)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(WebError::store)?;
        if done.rows_affected() == 0 {
            return Err(WebError::NotFound(format!("no user `{name}`")));
        }
        crate::sessions::end_sessions_of(&self.pool, name).await?;
        Ok(())
    }

    /// Removes a user, their sessions, their favourites and what alerts they have seen.
    pub async fn remove(&self, name: &str) -> Result<(), WebError> {
        let done = sqlx::query("DELETE FROM affluent_users WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(WebError::store)?;
        if done.rows_affected() == 0 {
            return Err(WebError::NotFound(format!("no user `{name}`")));
        }
        for table in [
            "affluent_favourites",
            "affluent_alerts_seen",
            "affluent_user_lists",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_name = $1"))
                .bind(name)
                .execute(&self.pool)
                .await
                .map_err(WebError::store)?;
        }
        crate::sessions::end_sessions_of(&self.pool, name).await?;
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
                Some(r.try_get::<String, _>(0).map_err(WebError::store)?),
                Some(r.try_get::<String, _>(1).map_err(WebError::store)?),
            ),
            None => (None, None),
        };
        let password = password.to_string();
        // argon2 takes tens of milliseconds of CPU and 19 MiB: on the hasher's threads.
        let ok = self
            .hasher
            .run(move || {
                let hash = hash.as_deref().unwrap_or_else(|| dummy_hash());
                verify_reusing_memory(hash, password.as_bytes())
            })
            .await?;
        match (ok, role) {
            (true, Some(role)) => Ok(Some(role.parse()?)),
            _ => Ok(None),
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    #[test]
    fn reused_memory_verifies_as_argon2_does_whatever_the_hash_parameters() {
        let small = argon2::Params::new(64, 2, 1, None).unwrap();
        let hashes = [
            hash_password("correct horse").unwrap(),
            Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, small)
                .hash_password(b"correct horse", &SaltString::generate(&mut OsRng))
                .unwrap()
                .to_string(),
        ];
        // Big, then small, then big again: the same thread's memory serves each.
        for hash in hashes.iter().chain(hashes.iter()) {
            let parsed = PasswordHash::new(hash).unwrap();
            for password in ["correct horse", "wrong horse", ""] {
                assert_eq!(
                    verify_reusing_memory(hash, password.as_bytes()),
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok(),
                    "{hash} / {password}"
                );
            }
        }
        assert!(!verify_reusing_memory("not a hash", b"x"));
    }
}
