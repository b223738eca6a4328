//! Login throttling: exponential delays per (account, address), per address prefix and per
//! account, counted atomically in the state store.
//!
//! Every attempt *reserves* its place before the password is checked: it counts as a failure
//! from the start and is refunded when the password was right. A reservation is a
//! compare-and-swap on one row per key, so concurrent attempts (from one process or from several
//! on one PostgreSQL) cannot pass a limit together: of 40 concurrent wrong passwords for one
//! account and address, exactly [`PAIR`]`.free` are checked.
//!
//! The keys, each with its own [`Rule`]:
//! - **(account, address)**: the attacker's own guesses. The owner, from another address, is
//!   not affected.
//! - **address prefix** (IPv4 /24, IPv6 /64), across accounts: one network spraying passwords
//!   over many names.
//! - **account**, across addresses: many addresses guessing one account's password. Addresses
//!   the account logged in from before ([`KNOWN_FOR`]) skip this key, so such an attack slows
//!   strangers down, never the owner on their usual address.
//!
//! Past a rule's free attempts, each failure doubles the wait before the next attempt, from
//! `first_wait` up to [`MAX_WAIT`]; a key's failures are forgotten [`FORGET_AFTER`] after its
//! last one. There is no hard lock: waits end.

use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;
use sqlx::{AnyPool, Row};

use crate::WebError;

/// Free attempts and the first wait of one key.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Failures allowed without waiting.
    pub free: i64,
    /// The wait after the last free failure; each further failure doubles it.
    pub first_wait: Duration,
}

/// (account, address): 5 free attempts, then 30 s, 1 min, 2 min, ...
pub const PAIR: Rule = Rule {
    free: 5,
    first_wait: Duration::from_secs(30),
};
/// Address prefix, across accounts: 20 free attempts, then 30 s, 1 min, ...
pub const PREFIX: Rule = Rule {
    free: 20,
    first_wait: Duration::from_secs(30),
};
/// Account, across unknown addresses: 50 free attempts, then 10 s, 20 s, ...
pub const ACCOUNT: Rule = Rule {
    free: 50,
    first_wait: Duration::from_secs(10),
};
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
/// A key's failures are forgotten this long after its last failure.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// An address an account logged in from stays known this long.
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

impl Rule {
    /// The wait after the `failures`-th failure.
    pub fn wait_after(&self, failures: i64) -> Duration {
        if failures < self.free {
            return Duration::ZERO;
        }
        let doublings = u32::try_from(failures - self.free)
            .unwrap_or(u32::MAX)
            .min(20);
        self.first_wait
            .saturating_mul(1u32 << doublings)
            .min(MAX_WAIT)
    }
}

/// The network an address is counted in: IPv4 /24, IPv6 /64 (IPv4-mapped addresses as IPv4).
pub fn prefix_of(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

/// An account name as a key or in a log line: at most 64 characters (a login may send any
/// text as its name; only so much of it is kept).
pub fn account_key(name: &str) -> String {
    crate::shorten(name, 64)
}

/// An attempt allowed by every key, to settle with [`Throttle::succeeded`] or
/// [`Throttle::failed`] once the password is checked (or [`Throttle::cancel`] if it was not).
#[derive(Debug)]
#[must_use = "settle the attempt once the password is checked"]
pub struct Attempt {
    account: String,
    ip: String,
    keys: Vec<String>,
}

/// The throttling counters of a state store.
#[derive(Debug, Clone)]
pub struct Throttle {
    pool: AnyPool,
}

impl Throttle {
    /// The counters in a state store's pool (whose dashboard migrations ran).
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Reserves an attempt to log in as `account` from `ip`, or says how long to wait.
    pub async fn attempt(&self, account: &str, ip: IpAddr) -> Result<Attempt, WebError> {
        let account = account_key(account);
        let ip_text = ip.to_string();
        let mut keys = vec![
            (format!("pair\u{0}{account}\u{0}{ip_text}"), PAIR),
            (format!("prefix\u{0}{}", prefix_of(ip)), PREFIX),
        ];
        if !self.known(&account, &ip_text).await? {
            keys.push((format!("account\u{0}{account}"), ACCOUNT));
        }
        let mut reserved = Vec::new();
        for (key, rule) in &keys {
            match self.reserve(key, rule).await {
                Ok(None) => reserved.push(key.clone()),
                outcome => {
                    // Not checked: what the earlier keys counted is given back.
                    for key in &reserved {
                        self.refund(key).await?;
                    }
                    return match outcome {
                        Ok(Some(wait)) => Err(WebError::Throttled(wait)),
                        Err(e) => Err(e),
                        Ok(None) => unreachable!("handled above"),
                    };
                }
            }
        }
        Ok(Attempt {
            account,
            ip: ip_text,
            keys: reserved,
        })
    }

    /// The password was right: the attempt is given back, the (account, address) key starts
    /// over, and the address becomes known for the account.
    pub async fn succeeded(&self, attempt: Attempt) -> Result<(), WebError> {
        for key in &attempt.keys {
            if key.starts_with("pair\u{0}") {
                sqlx::query("DELETE FROM affluent_login_throttle WHERE key = $1")
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
            } else {
                self.refund(key).await?;
            }
        }
        let now = Timestamp::now().as_millisecond();
        sqlx::query(
            "INSERT INTO affluent_login_known (account, ip, at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (account, ip) DO UPDATE SET at_ms = excluded.at_ms",
        )
        .bind(&attempt.account)
        .bind(&attempt.ip)
        .bind(now)
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM affluent_login_known WHERE at_ms < $1")
            .bind(now - KNOWN_FOR.as_millis() as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The password was wrong: the attempt stays counted.
    pub async fn failed(&self, attempt: Attempt) -> Result<(), WebError> {
        drop(attempt);
        sqlx::query("DELETE FROM affluent_login_throttle WHERE updated_ms < $1")
            .bind(Timestamp::now().as_millisecond() - FORGET_AFTER.as_millis() as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The password was not checked (the server was busy): the attempt is given back.
    pub async fn cancel(&self, attempt: Attempt) -> Result<(), WebError> {
        for key in &attempt.keys {
            self.refund(key).await?;
        }
        Ok(())
    }

    async fn known(&self, account: &str, ip: &str) -> Result<bool, WebError> {
        let since = Timestamp::now().as_millisecond() - KNOWN_FOR.as_millis() as i64;
        Ok(sqlx::query(
            "SELECT 1 FROM affluent_login_known WHERE account = $1 AND ip = $2 AND at_ms >= $3",
        )
        .bind(account)
        .bind(ip)
        .bind(since)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// Counts one failure on `key` if its wait is over: `None`, or the wait left.
    async fn reserve(&self, key: &str, rule: &Rule) -> Result<Option<Duration>, WebError> {
        loop {
            let now = Timestamp::now().as_millisecond();
            let row = sqlx::query(
                "SELECT failures, next_ms, updated_ms FROM affluent_login_throttle WHERE key = $1",
            )
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
            let current = row
                .map(|r| -> Result<(i64, i64, i64), sqlx::Error> {
                    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
                })
                .transpose()?;
            let (failures, next_ms) = match current {
                Some((_, _, updated)) if updated < now - FORGET_AFTER.as_millis() as i64 => (0, 0),
                Some((failures, next_ms, _)) => (failures, next_ms),
                None => (0, 0),
            };
            if now < next_ms {
                return Ok(Some(Duration::from_millis((next_ms - now) as u64)));
            }
            let failures = failures + 1;
            let next_ms = now + rule.wait_after(failures).as_millis() as i64;
            let written = match current {
                None => sqlx::query(
                    "INSERT INTO affluent_login_throttle (key, failures, next_ms, updated_ms) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING",
                )
                .bind(key)
                .bind(failures)
                .bind(next_ms)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected(),
                // Written only if nobody else wrote since it was read.
                Some((old_failures, _, old_updated)) => sqlx::query(
                    "UPDATE affluent_login_throttle SET failures = $1, next_ms = $2, updated_ms = $3 \
                     WHERE key = $4 AND failures = $5 AND updated_ms = $6",
                )
                .bind(failures)
                .bind(next_ms)
                .bind(now)
                .bind(key)
                .bind(old_failures)
                .bind(old_updated)
                .execute(&self.pool)
                .await?
                .rows_affected(),
            };
            if written == 1 {
                return Ok(None);
            }
        }
    }

    async fn refund(&self, key: &str) -> Result<(), WebError> {
        sqlx::query(
            "UPDATE affluent_login_throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0",
        )
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_past_the_free_attempts_up_to_the_longest() {
        assert_eq!(PAIR.wait_after(4), Duration::ZERO);
        assert_eq!(PAIR.wait_after(5), Duration::from_secs(30));
        assert_eq!(PAIR.wait_after(6), Duration::from_secs(60));
        assert_eq!(PAIR.wait_after(8), Duration::from_secs(240));
        assert_eq!(PAIR.wait_after(500), MAX_WAIT);
    }

    #[test]
    fn addresses_count_in_their_network() {
        assert_eq!(prefix_of("10.1.2.3".parse().unwrap()), "10.1.2.0/24");
        assert_eq!(prefix_of("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.0/24");
        assert_eq!(
            prefix_of("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn long_names_are_cut() {
        let long = "é".repeat(40_000);
        let key = account_key(&long);
        assert_eq!(key.chars().count(), 65);
        assert_eq!(account_key("ada"), "ada");
    }
}
