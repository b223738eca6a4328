//! Alerts: `[alerts.NAME]` rules evaluated over the tables and models.
//!
//! An evaluation runs the alert's read-only query, takes each entity's observations, and checks
//! the condition on each one it has not evaluated yet, oldest first, with those before it
//! ([`rules`]): with a `time` column, every observation newer than the last one evaluated (all
//! of them the first time), so that loading ten days at once fires what ten daily evaluations
//! would have; without one, the latest. A condition that starts to hold **fires**: a row in the [`ALERT_FIRINGS`] Delta table with the entity, the severity, the
//! values and a message in the project's locale. It does not fire again for that entity until
//! it has stopped holding (it is then *cleared*), or until `cooldown` has passed.
//!
//! Exactly once: the state of every entity (active or not, when it last fired) and the
//! evaluation's firings are written to `DATA_DIR/state/alerts/NAME.json` (atomically) before the
//! firings are appended to the table, in a commit carrying the transaction
//! `(affluent-alert:NAME, N)`. An evaluation that finds its predecessor's firings missing from
//! the table (a crash between the two writes) appends them first; one that finds them there
//! does not. So a crash neither loses nor repeats a firing.
//!
//! [`Alerts::notify`] sends the firings of an evaluation pass to the channels each alert names
//! (`notify = ["email", "webhook"]`): one email and one webhook document per pass, not one per
//! firing. At least once: a firing goes into the alert's outbox (its state file, written before
//! the firing is appended) for each of its channels, and leaves it when that channel has
//! accepted it; what a crash or a refusing channel left there is sent with the next pass, of any
//! alert.
//! Knows no terminal or command line.

pub mod rules;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use affluent_config::schema::{Alert, AlertChannel, Severity, TableType};
use affluent_notify::{Channels, NotifyError};
use affluent_tables::mapping::{Cell, Rows as TableRows};
use affluent_tables::system::ALERT_FIRINGS;
use affluent_tables::{TableError, Warehouse};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::rules::{Layout, NumberFormat};
use crate::state::{EntityState, State};

/// Errors of alerts.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// No alert of that name.
    #[error("no alert named `{name}`{hint} (known: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// `; did you mean …?`, or nothing.
        hint: String,
        /// The project's alerts.
        known: String,
    },
    /// The query or the firings table failed.
    #[error(transparent)]
    Table(#[from] TableError),
    /// The query does not give what the alert reads.
    #[error("{0}")]
    Invalid(String),
    /// The state file could not be read or written.
    #[error("alert state {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One firing: a row of [`ALERT_FIRINGS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// The alert.
    pub alert: String,
    /// The entity, as JSON text of its key columns (`{"artist_id":"a1"}`).
    pub entity: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// The message, in the project's locale.
    pub message: String,
    /// The value compared (the condition's first comparison).
    pub value: Option<f64>,
    /// Its previous value.
    pub previous: Option<f64>,
    /// The relative change.
    pub change: Option<f64>,
    /// An anomaly's robust z-score.
    pub score: Option<f64>,
    /// The observation's time (the `time` column's value), as text.
    pub observed_at: Option<String>,
    /// When it fired.
    pub fired_at: Timestamp,
    /// The evaluation that fired it.
    pub evaluation: i64,
}

/// A firing waiting in an alert's outbox for a channel to accept it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unsent {
    /// The channel.
    pub channel: AlertChannel,
    /// The firing.
    pub firing: Firing,
}

/// The most firings an alert's outbox keeps for a channel that refuses them all: beyond, the
/// oldest are dropped (they stay in `alert_firings`), with a warning.
pub const MAX_UNSENT: usize = 1000;

/// What an evaluation found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evaluation {
    /// The alert.
    pub alert: String,
    /// Its number (0 for a dry run): with a `time` column, the last of the numbers it used, one
    /// per observation time it walked, so that each firing is named by (alert, its number,
    /// entity).
    pub evaluation: i64,
    /// Entities observed.
    pub entities: usize,
    /// Entities on which the condition holds now.
    pub holding: usize,
    /// New firings.
    pub fired: Vec<Firing>,
    /// Times an entity's condition stopped holding.
    pub cleared: usize,
    /// Firings of the previous evaluation that it had not appended (a crash between its state
    /// and its append): appended by this one, and sent with its own.
    pub recovered: Vec<Firing>,
    /// Entities that could not be evaluated (a value that is not a number), with the reason.
    pub errors: Vec<String>,
    /// The alert's outbox after this evaluation: its new firings for each of its channels, and
    /// those no channel accepted before. [`Alerts::notify`] sends them.
    pub outbox: Vec<Unsent>,
}

/// Whether an evaluation records what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Firings appended, state kept.
    Record,
    /// Nothing written (`affluent alerts test`).
    DryRun,
}

/// An alert as `affluent alerts list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertInfo {
    /// The alert.
    pub name: String,
    /// Its severity.
    pub severity: Severity,
    /// How many times it was evaluated (0: never).
    pub evaluations: i64,
    /// When it was last evaluated.
    pub evaluated_at: Option<Timestamp>,
    /// Entities on which it holds (as of the last evaluation).
    pub active: usize,
    /// Entities it knows.
    pub entities: usize,
}

/// The evaluations of several alerts, and the alerts that could not be evaluated.
#[derive(Debug, Default)]
pub struct Pass {
    /// Evaluations, in order.
    pub evaluations: Vec<Evaluation>,
    /// Alerts that failed, with why.
    pub errors: Vec<(String, AlertError)>,
}

/// What [`Alerts::notify`] sent.
#[derive(Debug, Default)]
pub struct Sent {
    /// Firings in the email (0: none sent).
    pub emailed: usize,
    /// Firings in the webhook document (0: none sent).
    pub posted: usize,
    /// Deliveries that failed (secrets redacted).
    pub errors: Vec<NotifyError>,
}

/// The alerts of a project, over its warehouse.
#[derive(Debug, Clone)]
pub struct Alerts {
    warehouse: Warehouse,
    channels: Channels,
}

/// The application id of an alert's appends to [`ALERT_FIRINGS`].
fn app_id(name: &str) -> String {
    format!("affluent-alert:{name}")
}

impl Alerts {
    /// The alerts of the warehouse's project.
    pub fn new(warehouse: Warehouse) -> Self {
        let project = warehouse.project();
        let notify = project.notify.as_ref();
        let channels = Channels::new(
            notify.and_then(|n| n.webhook.clone()),
            notify.and_then(|n| n.email.clone()),
            project.redactor.clone(),
        );
        Self {
            warehouse,
            channels,
        }
    }

    /// Sends the firings of an evaluation pass to the channels of their alerts: one email
    /// listing them, one webhook document holding them. Failures are returned, not raised:
    /// the firings are recorded whatever becomes of their delivery.
    pub async fn notify(&self, evaluations: &[Evaluation]) -> Sent {
        let project = self.warehouse.project();
        let redact = |text: &str| project.redactor.redact(text);
        // The outboxes of the alerts this pass did not evaluate: what their channels refused
        // before is sent now too, not only at their next evaluation.
        let evaluated: Vec<&str> = evaluations.iter().map(|e| e.alert.as_str()).collect();
        let dir = self.dir();
        let waiting: Vec<Unsent> = project
            .alerts
            .keys()
            .filter(|name| !evaluated.contains(&name.as_str()))
            .filter_map(|name| State::read(&dir, name).ok())
            .flat_map(|state| state.unsent)
            .collect();
        let wanted = |channel: AlertChannel| -> Vec<&Firing> {
            evaluations
                .iter()
                .flat_map(|e| &e.outbox)
                .chain(&waiting)
                .filter(|u| u.channel == channel)
                .map(|u| &u.firing)
                .collect()
        };
        let mut delivered: Vec<(AlertChannel, &Firing)> = Vec::new();
        let mut sent = Sent::default();
        let posted = wanted(AlertChannel::Webhook);
        if !posted.is_empty() {
            let firings: Vec<serde_json::Value> = posted
                .iter()
                .map(|f| {
                    let mut v = serde_json::to_value(f).unwrap_or_default();
                    if let Some(m) = v.get_mut("message") {
                        *m = serde_json::Value::String(redact(&f.message));
                    }
                    v
                })
                .collect();
            let doc = serde_json::json!({
                "project": project.name,
                "event": "alerts",
                "firings": firings,
                "at": Timestamp::now().to_string(),
            });
            match self.channels.post(&doc).await {
                Ok(()) => {
                    sent.posted = posted.len();
                    delivered.extend(posted.iter().map(|f| (AlertChannel::Webhook, *f)));
                }
                Err(e) => sent.errors.push(e),
            }
        }
        let emailed = wanted(AlertChannel::Email);
        if !emailed.is_empty() {
            let subject = format!(
                "[affluent] {}: {} alert{}",
                project.name,
                emailed.len(),
                if emailed.len() == 1 { "" } else { "s" }
            );
            let mut body = String::new();
            for f in &emailed {
                body.push_str(&format!(
                    "[{}] {} {}: {}\n",
                    f.severity,
                    f.alert,
                    f.entity,
                    redact(&f.message)
                ));
            }
            match self.channels.email(&subject, &body).await {
                Ok(()) => {
                    sent.emailed = emailed.len();
                    delivered.extend(emailed.iter().map(|f| (AlertChannel::Email, *f)));
                }
                Err(e) => sent.errors.push(e),
            }
        }
        for e in &sent.errors {
            tracing::warn!(
                "alert notification failed (kept in the outbox, sent again with the next pass): {e}"
            );
        }
        if let Err(e) = self.delivered(&delivered).await {
            tracing::warn!("alert outbox not updated (its firings will be sent again): {e}");
        }
        sent
    }

    /// Takes what channels accepted out of their alerts' outboxes.
    async fn delivered(&self, delivered: &[(AlertChannel, &Firing)]) -> Result<(), AlertError> {
        let dir = self.dir();
        let mut alerts: Vec<&str> = delivered.iter().map(|(_, f)| f.alert.as_str()).collect();
        alerts.sort_unstable();
        alerts.dedup();
        for name in alerts {
            let _lock = state::lock(&dir, name).await?;
            let mut state = State::read(&dir, name)?;
            let before = state.unsent.len();
            state.unsent.retain(|u| {
                !delivered.iter().any(|(channel, f)| {
                    *channel == u.channel
                        && f.alert == u.firing.alert
                        && f.evaluation == u.firing.evaluation
                        && f.entity == u.firing.entity
                })
            });
            if state.unsent.len() != before {
                state.write(&dir, name)?;
            }
        }
        Ok(())
    }

    fn alert(&self, name: &str) -> Result<&Alert, AlertError> {
        let alerts = &self.warehouse.project().alerts;
        alerts.get(name).ok_or_else(|| {
            let known: Vec<&str> = alerts.keys().map(String::as_str).collect();
            AlertError::Unknown {
                name: name.to_string(),
                hint: affluent_core::closest(name, &known)
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            }
        })
    }

    fn dir(&self) -> PathBuf {
        self.warehouse
            .project()
            .data_dir
            .join("state")
            .join("alerts")
    }

    /// Every alert with its state.
    pub fn list(&self) -> Result<Vec<AlertInfo>, AlertError> {
        let dir = self.dir();
        self.warehouse
            .project()
            .alerts
            .iter()
            .map(|(name, alert)| {
                let state = State::read(&dir, name)?;
                Ok(AlertInfo {
                    name: name.clone(),
                    severity: alert.severity,
                    evaluations: state
                        .passes
                        .map_or(state.evaluation, |p| i64::try_from(p).unwrap_or(i64::MAX)),
                    evaluated_at: state.evaluated_at,
                    active: state.entities.values().filter(|e| e.active).count(),
                    entities: state.entities.len(),
                })
            })
            .collect()
    }

    /// The alerts whose query reads one of these tables or models, in name order; an alert
    /// whose SQL does not parse is left out, with a warning.
    pub fn reading(&self, changed: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for (name, alert) in &self.warehouse.project().alerts {
            match self
                .warehouse
                .tables_read(&alert.sql, &format!("alert `{name}`"))
            {
                Ok(reads) if changed.iter().any(|c| reads.contains(*c)) => out.push(name.clone()),
                Ok(_) => {}
                Err(e) => tracing::warn!(alert = name, "alert not evaluated: {e}"),
            }
        }
        out
    }

    /// Evaluates the alerts reading one of these tables or models (they have a new version),
    /// records their firings and sends them; what fails is logged, never raised: a run's data
    /// is loaded whatever becomes of its alerts.
    pub async fn after_change(&self, changed: &[&str]) -> Vec<Evaluation> {
        let names = self.reading(changed);
        if names.is_empty() {
            return Vec::new();
        }
        let pass = self.evaluate_many(&names, Timestamp::now()).await;
        for (name, e) in &pass.errors {
            tracing::warn!(alert = name, "alert not evaluated: {e}");
        }
        self.notify(&pass.evaluations).await;
        pass.evaluations
    }

    /// Evaluates alerts (every one when `names` is empty), in order, recording their firings;
    /// an alert that fails does not stop the others.
    pub async fn evaluate_many(&self, names: &[String], now: Timestamp) -> Pass {
        let all: Vec<String> = if names.is_empty() {
            self.warehouse.project().alerts.keys().cloned().collect()
        } else {
            names.to_vec()
        };
        let mut pass = Pass::default();
        for name in all {
            match self.evaluate(&name, Mode::Record, now).await {
                Ok(e) => pass.evaluations.push(e),
                Err(e) => pass.errors.push((name, e)),
            }
        }
        pass
    }

    /// Evaluates one alert over the tables as they are now.
    pub async fn evaluate(
        &self,
        name: &str,
        mode: Mode,
        now: Timestamp,
    ) -> Result<Evaluation, AlertError> {
        let alert = self.alert(name)?.clone();
        let dir = self.dir();
        // One evaluation of an alert at a time, across processes.
        let _lock = match mode {
            Mode::Record => Some(state::lock(&dir, name).await?),
            Mode::DryRun => None,
        };
        let mut state = State::read(&dir, name)?;
        let mut report = Evaluation {
            alert: name.to_string(),
            ..Evaluation::default()
        };
        if mode == Mode::Record && !state.pending.is_empty() {
            let committed = self
                .warehouse
                .app_version(ALERT_FIRINGS, &app_id(name))
                .await?;
            if committed < state.evaluation {
                self.append(name, &state.pending, state.evaluation).await?;
                report.recovered = std::mem::take(&mut state.pending);
            }
            state.pending.clear();
        }

        let reader = self.warehouse.reader().await?;
        let rows = reader.rows(&alert.sql, &HashMap::new()).await?;
        let layout = Layout::new(name, &alert, &rows).map_err(AlertError::Invalid)?;
        let observations = rules::observations(&layout, rows);
        let format = NumberFormat::of(
            self.warehouse
                .project()
                .dashboard
                .locale
                .as_deref()
                .unwrap_or("en-GB"),
        );
        let time_at = alert
            .time
            .as_deref()
            .and_then(|t| layout.columns.iter().position(|c| c == t));
        // Every observation since the last one evaluated, in time order, as evaluations at
        // each of them would have seen it: a catch-up that loads many days at once fires what
        // each day would have. Each observation time walked is an evaluation number of its own
        // (the first after the last recorded, in time order), so that a firing stays named by
        // (alert, evaluation, entity).
        let walks: Vec<std::ops::Range<usize>> = observations
            .iter()
            .map(|series| {
                let known = state.entities.get(&series.key);
                series.unseen(
                    &layout,
                    known.and_then(|e| e.observed.as_ref()),
                    known.is_some(),
                )
            })
            .collect();
        let mut times: Vec<serde_json::Value> = match layout.time {
            Some(t) => observations
                .iter()
                .zip(&walks)
                .flat_map(|(series, walk)| walk.clone().map(move |i| series.rows[i][t].clone()))
                .collect(),
            None => Vec::new(),
        };
        times.sort_by(rules::time_order);
        times.dedup_by(|a, b| rules::time_order(a, b) == std::cmp::Ordering::Equal);
        let first = state.evaluation + 1;
        let number_of = |row: &[serde_json::Value]| -> i64 {
            match layout.time {
                Some(t) => {
                    first
                        + times
                            .binary_search_by(|v| rules::time_order(v, &row[t]))
                            .unwrap_or(0) as i64
                }
                None => first,
            }
        };
        let evaluation = first + times.len().saturating_sub(1) as i64;
        report.entities = observations.len();
        let mut entities: BTreeMap<String, EntityState> = state.entities.clone();
        for (series, walk) in observations.iter().zip(walks) {
            let mut current = entities.get(&series.key).cloned().unwrap_or_default();
            for i in walk {
                let obs = series.at(i);
                let number = number_of(obs.latest);
                if let Some(t) = layout.time {
                    current.observed = obs.latest.get(t).cloned();
                }
                let compared = match rules::holds(&alert.condition, &layout, &obs) {
                    Ok(c) => c,
                    Err(e) => {
                        report.errors.push(format!("{}: {e}", obs.key));
                        continue;
                    }
                };
                let Some(compared) = compared else {
                    if current.active {
                        report.cleared += 1;
                    }
                    current.active = false;
                    continue;
                };
                // Cooldown counts on the evaluations' clock: a walk over days a condition held
                // throughout fires once, where daily evaluations would have fired each
                // cooldown (the condition's start and end are walked exactly).
                let cooled = match (alert.cooldown, current.fired_at) {
                    (Some(cooldown), Some(at)) => now
                        .duration_since(at)
                        .try_into()
                        .is_ok_and(|d: std::time::Duration| d >= cooldown),
                    _ => false,
                };
                // Two rows of one entity at one time: one firing at most.
                let repeated = report
                    .fired
                    .last()
                    .is_some_and(|f| f.evaluation == number && f.entity == obs.key);
                let fires = (!current.active || cooled) && !repeated;
                if fires {
                    report.fired.push(Firing {
                        alert: name.to_string(),
                        entity: obs.key.to_string(),
                        severity: alert.severity.as_str().to_string(),
                        message: rules::message(&alert, &layout, &obs, &compared, format),
                        value: compared.value,
                        previous: compared.previous,
                        change: compared.change,
                        score: compared.score,
                        observed_at: time_at.and_then(|t| match obs.latest.get(t) {
                            None | Some(serde_json::Value::Null) => None,
                            Some(serde_json::Value::String(s)) => Some(s.clone()),
                            Some(v) => Some(v.to_string()),
                        }),
                        fired_at: now,
                        evaluation: number,
                    });
                    current.fired_at = Some(now);
                }
                current.active = true;
            }
            if current.active {
                report.holding += 1;
            }
            entities.insert(series.key.clone(), current);
        }
        if mode == Mode::DryRun {
            return Ok(report);
        }
        report.evaluation = evaluation;
        let mut unsent = state.unsent.clone();
        for f in &report.fired {
            for channel in &alert.notify {
                unsent.push(Unsent {
                    channel: *channel,
                    firing: f.clone(),
                });
            }
        }
        if unsent.len() > MAX_UNSENT {
            let dropped = unsent.len() - MAX_UNSENT;
            tracing::warn!(
                alert = name,
                dropped,
                "the alert's channels have refused its firings for long: the oldest are no longer retried (they are in alert_firings)"
            );
            unsent.drain(..dropped);
        }
        report.outbox = unsent.clone();
        let next = State {
            evaluation,
            passes: Some(state.passes.unwrap_or(state.evaluation.max(0) as u64) + 1),
            evaluated_at: Some(now),
            entities,
            pending: report.fired.clone(),
            unsent,
        };
        // The state (with the firings) first, then the firings: see the crate's docs.
        next.write(&dir, name)?;
        if !report.fired.is_empty() {
            self.append(name, &report.fired, evaluation).await?;
        }
        tracing::info!(
            alert = name,
            evaluation,
            entities = report.entities,
            fired = report.fired.len(),
            cleared = report.cleared,
            "alert evaluated"
        );
        Ok(report)
    }

    async fn append(
        &self,
        name: &str,
        firings: &[Firing],
        evaluation: i64,
    ) -> Result<(), AlertError> {
        let columns: Vec<(String, TableType)> = [
            ("alert", TableType::String),
            ("entity", TableType::String),
            ("severity", TableType::String),
            ("message", TableType::String),
            ("value", TableType::Float),
            ("previous", TableType::Float),
            ("change", TableType::Float),
            ("score", TableType::Float),
            ("observed_at", TableType::String),
            ("fired_at", TableType::Timestamp),
            ("evaluation", TableType::Int),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
        let float = |x: Option<f64>| x.map_or(Cell::Null, Cell::Float);
        let cells = firings
            .iter()
            .map(|f| {
                vec![
                    Cell::Str(f.alert.clone()),
                    Cell::Str(f.entity.clone()),
                    Cell::Str(f.severity.clone()),
                    Cell::Str(f.message.clone()),
                    float(f.value),
                    float(f.previous),
                    float(f.change),
                    float(f.score),
                    f.observed_at.clone().map_or(Cell::Null, Cell::Str),
                    Cell::Timestamp(f.fired_at.as_microsecond()),
                    Cell::Int(f.evaluation),
                ]
            })
            .collect();
        let rows = TableRows {
            unknown: vec![false; columns.len()],
            columns,
            cells,
            entries: firings
                .iter()
                .map(|f| format!("alert:{}:{}", f.alert, f.evaluation))
                .collect(),
        };
        self.warehouse
            .append_rows(ALERT_FIRINGS, &rows, &app_id(name), evaluation)
            .await?;
        Ok(())
    }
}
