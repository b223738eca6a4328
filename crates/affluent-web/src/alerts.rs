//! The alerts panel: the firings of `[alerts.NAME]` (the `alert_firings` table the alerts
//! engine appends to), each user's unseen ones first, and the per-user "seen" state.
//!
//! A firing is named by `(alert, evaluation, entity)`: an evaluation fires at most once per
//! entity. What a user has seen is a row per firing in `affluent_alerts_seen` (the state store,
//! the dashboard's migration 3), written only for firings that exist. The firings table is
//! append-only, so a user's unseen count per alert is the alert's firings minus the rows the user
//! has marked.

use std::collections::{BTreeMap, HashMap, HashSet};

use affluent_tables::{Param, Reader};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};
use utoipa::ToSchema;

use crate::WebError;

/// The table of firings (`affluent_tables::system::ALERT_FIRINGS`).
pub const FIRINGS: &str = "alert_firings";

/// The most firings one request marks seen by name (mark-all has no limit).
pub const MAX_MARKED: usize = 1000;

/// The most firings a panel lists.
pub const MAX_LISTED: usize = 500;

/// A firing, as the alerts panel shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FiringView {
    /// The alert.
    pub alert: String,
    /// Its evaluation that fired.
    pub evaluation: i64,
    /// The entity, as JSON text of its key columns (`{"agency_name":"Lyon 1"}`).
    pub entity: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// The message, in the project's locale.
    pub message: String,
    /// The value compared.
    pub value: Option<f64>,
    /// Its previous value or baseline.
    pub previous: Option<f64>,
    /// The relative change.
    pub change: Option<f64>,
    /// An anomaly's robust z-score.
    pub score: Option<f64>,
    /// The observation's time.
    pub observed_at: Option<String>,
    /// When it fired.
    pub fired_at: String,
    /// Whether the current user has marked it seen.
    pub seen: bool,
}

/// The firings of an alerts panel.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct FiringList {
    /// The alerts listed.
    pub alerts: Vec<String>,
    /// Unseen firings first (newest first), then seen ones (newest first), at most the panel's
    /// `limit`.
    pub firings: Vec<FiringView>,
    /// The user's unseen firings of these alerts, in all.
    pub unseen: u64,
    /// Firings of these alerts, in all.
    pub total: u64,
    /// When the newest of them fired (send it as `until` with "mark all seen", so that what
    /// fired after the panel was drawn stays unseen).
    pub newest: Option<String>,
}

/// The user's unseen firings, per alert.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct UnseenCounts {
    /// Every alert's unseen firings, summed.
    pub total: u64,
    /// Per alert (alerts without firings are left out).
    pub alerts: BTreeMap<String, u64>,
}

/// A firing named in a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, ToSchema)]
pub struct FiringKey {
    /// The alert.
    pub alert: String,
    /// The evaluation.
    #[serde(deserialize_with = "integral")]
    pub evaluation: i64,
    /// The entity, as listed.
    pub entity: String,
}

/// An integer as JSON writes it: `3`, or `3.0` (JSON Schema's integers include it); one beyond
/// the 64-bit range saturates (no firing has that evaluation: it is not found).
fn integral<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 => Ok(f as i64),
        _ => Err(serde::de::Error::custom(format!(
            "an evaluation is an integer (got {n})"
        ))),
    }
}

/// What `POST /api/alerts/seen` marks: the firings named.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkSeen {
    /// Firings to mark, as an alerts panel lists them (1 to 1000).
    #[schema(min_items = 1, max_items = 1000)]
    pub firings: Vec<FiringKey>,
}

/// What `POST /api/alerts/seen/all` marks: every firing of `alerts` (every alert when empty),
/// up to `until`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkAllSeen {
    /// The alerts (default: every alert).
    #[serde(default)]
    pub alerts: Vec<String>,
    /// Only the firings that fired at or before this time (an alerts panel's `newest`), so
    /// that one that fired since stays unseen. Default: every firing.
    pub until: Option<String>,
}

/// Either request, as [`mark`] carries it out.
struct Request {
    firings: Vec<FiringKey>,
    all: bool,
    alerts: Vec<String>,
    until: Option<String>,
}

/// How many firings a request marked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Marked {
    /// Firings newly marked seen.
    pub marked: u64,
}

/// The per-user seen state, in the state store.
#[derive(Debug, Clone)]
pub struct Seen {
    pool: AnyPool,
}

impl Seen {
    /// The seen state in a state store's pool.
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// How many firings of each alert a user has marked.
    async fn counts(&self, user: &str) -> Result<HashMap<String, u64>, WebError> {
        let rows = sqlx::query(
            "SELECT alert, COUNT(*) FROM affluent_alerts_seen WHERE user_name = $1 GROUP BY alert",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(WebError::store)?;
        rows.iter()
            .map(|r| {
                let alert: String = r.try_get(0).map_err(WebError::store)?;
                let n: i64 = r.try_get(1).map_err(WebError::store)?;
                Ok((alert, n.max(0) as u64))
            })
            .collect()
    }

    /// The firings of `alerts` a user has marked.
    async fn keys(&self, user: &str, alerts: &[String]) -> Result<HashSet<FiringKey>, WebError> {
        let rows = sqlx::query(
            "SELECT alert, evaluation, entity FROM affluent_alerts_seen WHERE user_name = $1",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(WebError::store)?;
        let mut out = HashSet::new();
        for r in &rows {
            let alert: String = r.try_get(0).map_err(WebError::store)?;
            if alerts.contains(&alert) {
                out.insert(FiringKey {
                    alert,
                    evaluation: r.try_get(1).map_err(WebError::store)?,
                    entity: r.try_get(2).map_err(WebError::store)?,
                });
            }
        }
        Ok(out)
    }

    /// Marks firings seen by a user (those already marked stay as they were). Returns how many
    /// were new.
    async fn mark(&self, user: &str, keys: &[FiringKey]) -> Result<u64, WebError> {
        let now = Timestamp::now().as_millisecond();
        let mut tx = self.pool.begin().await.map_err(WebError::store)?;
        let mut marked = 0;
        for k in keys {
            let done = sqlx::query(
                "INSERT INTO affluent_alerts_seen (user_name, alert, evaluation, entity, seen_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(user)
            .bind(&k.alert)
            .bind(k.evaluation)
            .bind(&k.entity)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(WebError::store)?;
            marked += done.rows_affected();
        }
        tx.commit().await.map_err(WebError::store)?;
        Ok(marked)
    }
}

fn has_firings(reader: &Reader) -> bool {
    matches!(reader.versions().get(FIRINGS), Some(Some(_)))
}

/// Firings per alert, from the table.
async fn firing_counts(reader: &Reader) -> Result<HashMap<String, u64>, WebError> {
    if !has_firings(reader) {
        return Ok(HashMap::new());
    }
    let rows = reader
        .rows(
            "SELECT alert, COUNT(*) AS n FROM alert_firings GROUP BY alert",
            &HashMap::new(),
        )
        .await
        .map_err(WebError::query("the alert firings"))?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|r| Some((r.first()?.as_str()?.to_string(), r.get(1)?.as_u64()?)))
        .collect())
}

/// A user's unseen firings per alert.
pub async fn unseen(
    reader: &Reader,
    seen: &Seen,
    user: &str,
    known: &[String],
) -> Result<UnseenCounts, WebError> {
    let fired = firing_counts(reader).await?;
    let marked = seen.counts(user).await?;
    let mut out = UnseenCounts::default();
    // Alerts no longer in the project cannot be marked: they are not counted.
    for (alert, n) in fired.into_iter().filter(|(a, _)| known.contains(a)) {
        let left = n.saturating_sub(marked.get(&alert).copied().unwrap_or(0));
        out.total += left;
        out.alerts.insert(alert, left);
    }
    Ok(out)
}

const COLUMNS: &str = "alert, evaluation, entity, severity, message, value, previous, change, \
     score, observed_at, CAST(fired_at AS VARCHAR) AS fired_at";

fn text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn firing_of(row: &[serde_json::Value]) -> Option<FiringView> {
    let num = |i: usize| row.get(i).and_then(serde_json::Value::as_f64);
    Some(FiringView {
        alert: text(row.first())?,
        evaluation: row.get(1)?.as_i64()?,
        entity: text(row.get(2))?,
        severity: text(row.get(3)).unwrap_or_default(),
        message: text(row.get(4)).unwrap_or_default(),
        value: num(5),
        previous: num(6),
        change: num(7),
        score: num(8),
        observed_at: text(row.get(9)),
        fired_at: text(row.get(10)).unwrap_or_default(),
        seen: false,
    })
}

/// The firings of `alerts` for a user: unseen ones first, newest first, at most `limit`.
pub async fn list(
    reader: &Reader,
    seen: &Seen,
    user: &str,
    alerts: &[String],
    limit: usize,
) -> Result<FiringList, WebError> {
    let limit = limit.min(MAX_LISTED);
    let mut out = FiringList {
        alerts: alerts.to_vec(),
        ..Default::default()
    };
    if !has_firings(reader) || alerts.is_empty() {
        return Ok(out);
    }
    let marked = seen.keys(user, alerts).await?;
    let counts = firing_counts(reader).await?;
    out.total = alerts.iter().filter_map(|a| counts.get(a)).sum();
    // The first `limit` unseen firings are among the newest `limit + marked` ones, as at most
    // `marked` of those are seen; the rest of the window fills up with seen ones.
    let window = limit + marked.len();
    let mut params = HashMap::new();
    params.insert("alerts".to_string(), Param::List(alerts.to_vec()));
    params.insert("window".to_string(), Param::Int(window as i64));
    let rows = reader
        .rows(
            &format!(
                "SELECT {COLUMNS} FROM alert_firings WHERE array_has($alerts, alert) \
                 ORDER BY fired_at DESC, evaluation DESC, entity LIMIT $window"
            ),
            &params,
        )
        .await
        .map_err(WebError::query("the alert firings"))?;
    out.newest = rows.rows.first().and_then(|r| text(r.get(10)));
    let (mut fresh, mut old): (Vec<_>, Vec<_>) = rows
        .rows
        .iter()
        .filter_map(|r| firing_of(r))
        .map(|mut f| {
            f.seen = marked.contains(&FiringKey {
                alert: f.alert.clone(),
                evaluation: f.evaluation,
                entity: f.entity.clone(),
            });
            f
        })
        .partition(|f| !f.seen);
    let seen_total = alerts
        .iter()
        .map(|a| marked.iter().filter(|k| &k.alert == a).count() as u64)
        .sum::<u64>();
    out.unseen = out.total.saturating_sub(seen_total);
    fresh.truncate(limit);
    old.truncate(limit - fresh.len());
    fresh.append(&mut old);
    out.firings = fresh;
    Ok(out)
}

/// Marks the firings named seen for a user (each must exist). `known` is the project's alerts.
pub async fn mark_firings(
    reader: &Reader,
    seen: &Seen,
    user: &str,
    request: &MarkSeen,
    known: &[String],
) -> Result<Marked, WebError> {
    let request = Request {
        firings: request.firings.clone(),
        all: false,
        alerts: Vec::new(),
        until: None,
    };
    mark(reader, seen, user, &request, known).await
}

/// Marks every firing of the alerts named (every alert when none is) seen for a user, up to
/// `until`.
pub async fn mark_all(
    reader: &Reader,
    seen: &Seen,
    user: &str,
    request: &MarkAllSeen,
    known: &[String],
) -> Result<Marked, WebError> {
    let request = Request {
        firings: Vec::new(),
        all: true,
        alerts: request.alerts.clone(),
        until: request.until.clone(),
    };
    mark(reader, seen, user, &request, known).await
}

async fn mark(
    reader: &Reader,
    seen: &Seen,
    user: &str,
    request: &Request,
    known: &[String],
) -> Result<Marked, WebError> {
    for a in request
        .alerts
        .iter()
        .chain(request.firings.iter().map(|k| &k.alert))
    {
        if !known.contains(a) {
            return Err(WebError::NotFound(format!(
                "no alert named `{a}` (known: {})",
                known.join(", ")
            )));
        }
    }
    if !request.all && request.firings.is_empty() {
        return Err(WebError::Invalid(
            "name at least one firing in `firings` (POST /api/alerts/seen/all marks every firing)"
                .to_string(),
        ));
    }
    if request.firings.len() > MAX_MARKED {
        return Err(WebError::Invalid(format!(
            "at most {MAX_MARKED} firings per request (got {}): POST /api/alerts/seen/all marks every firing of an alert",
            request.firings.len()
        )));
    }
    if !has_firings(reader) {
        return if request.all {
            Ok(Marked { marked: 0 })
        } else {
            Err(WebError::NotFound(
                "no alert has fired yet: there is nothing to mark".to_string(),
            ))
        };
    }
    let alerts: Vec<String> = if request.all {
        if request.alerts.is_empty() {
            known.to_vec()
        } else {
            request.alerts.clone()
        }
    } else {
        let mut a: Vec<String> = request.firings.iter().map(|k| k.alert.clone()).collect();
        a.sort();
        a.dedup();
        a
    };
    let mut params = HashMap::new();
    params.insert("alerts".to_string(), Param::List(alerts));
    let mut sql =
        "SELECT alert, evaluation, entity FROM alert_firings WHERE array_has($alerts, alert)"
            .to_string();
    if let Some(until) = &request.until {
        params.insert("until".to_string(), Param::Text(until.clone()));
        sql.push_str(" AND CAST(fired_at AS VARCHAR) <= $until");
    }
    if !request.all {
        let mut evaluations: Vec<String> = request
            .firings
            .iter()
            .map(|k| k.evaluation.to_string())
            .collect();
        evaluations.sort();
        evaluations.dedup();
        params.insert("evaluations".to_string(), Param::List(evaluations));
        sql.push_str(" AND array_has($evaluations, CAST(evaluation AS VARCHAR))");
    }
    let rows = reader
        .rows(&sql, &params)
        .await
        .map_err(WebError::query("the alert firings"))?;
    let existing: HashSet<FiringKey> = rows
        .rows
        .iter()
        .filter_map(|r| {
            Some(FiringKey {
                alert: text(r.first())?,
                evaluation: r.get(1)?.as_i64()?,
                entity: text(r.get(2))?,
            })
        })
        .collect();
    let keys: Vec<FiringKey> = if request.all {
        existing.into_iter().collect()
    } else {
        if let Some(missing) = request.firings.iter().find(|k| !existing.contains(k)) {
            return Err(WebError::NotFound(format!(
                "alert `{}` has no firing for entity {} in evaluation {}",
                missing.alert, missing.entity, missing.evaluation
            )));
        }
        request.firings.clone()
    };
    Ok(Marked {
        marked: seen.mark(user, &keys).await?,
    })
}

/// Every firing of `alerts` as CSV, newest first (the seen state is per user and not in it).
pub async fn csv(reader: &Reader, alerts: &[String]) -> Result<Vec<u8>, WebError> {
    let mut params = HashMap::new();
    params.insert("alerts".to_string(), Param::List(alerts.to_vec()));
    let sql = if has_firings(reader) {
        format!(
            "SELECT {COLUMNS} FROM alert_firings WHERE array_has($alerts, alert) \
             ORDER BY fired_at DESC, evaluation DESC, entity"
        )
    } else {
        // No firing yet: the same columns, no row.
        "SELECT CAST(NULL AS VARCHAR) AS alert, CAST(NULL AS BIGINT) AS evaluation, \
         CAST(NULL AS VARCHAR) AS entity, CAST(NULL AS VARCHAR) AS severity, \
         CAST(NULL AS VARCHAR) AS message, CAST(NULL AS DOUBLE) AS value, \
         CAST(NULL AS DOUBLE) AS previous, CAST(NULL AS DOUBLE) AS change, \
         CAST(NULL AS DOUBLE) AS score, CAST(NULL AS VARCHAR) AS observed_at, \
         CAST(NULL AS VARCHAR) AS fired_at WHERE array_length($alerts) < 0"
            .to_string()
    };
    reader
        .csv(&sql, &params)
        .await
        .map_err(WebError::query("the alert firings"))
}
