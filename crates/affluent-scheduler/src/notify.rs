//! Notifications: a JSON webhook and email over SMTP, on failure, on recovery and optionally on
//! every success. A notification that cannot be sent is logged, never fatal to the run.

use std::sync::Arc;

use affluent_config::schema::{NotifyConfig, NotifyOn};
use affluent_core::{Redactor, TaskId};
use affluent_notify::Channels;
use jiff::Timestamp;

use crate::RunRow;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A run failed after a success (or first).
    Failure,
    /// A run succeeded after a failure.
    Recovery,
    /// A run succeeded.
    Success,
    /// Every task due at a schedule tick has run: one summary of them all.
    Tick,
}

impl Event {
    /// The event's name, as `[notify] on` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failure => "failure",
            Self::Recovery => "recovery",
            Self::Success => "success",
            Self::Tick => "tick",
        }
    }
}

/// Sends notifications as `[notify]` says.
#[derive(Debug)]
pub struct Notifier {
    project: String,
    config: NotifyConfig,
    channels: Channels,
    redactor: Arc<Redactor>,
}

impl Notifier {
    /// A notifier for a project (its name titles the messages).
    pub fn new(project: &str, config: NotifyConfig, redactor: Arc<Redactor>) -> Self {
        Self {
            project: project.to_string(),
            channels: Channels::new(
                config.webhook.clone(),
                config.email.clone(),
                redactor.clone(),
            ),
            config,
            redactor,
        }
    }

    /// Whether this event is to be sent.
    pub fn wants(&self, event: Event) -> bool {
        let on = if self.config.on.is_empty() {
            &[NotifyOn::Failure, NotifyOn::Recovery][..]
        } else {
            &self.config.on[..]
        };
        on.iter().any(|o| {
            matches!(
                (o, event),
                (NotifyOn::Failure, Event::Failure)
                    | (NotifyOn::Recovery, Event::Recovery)
                    | (NotifyOn::Success, Event::Success)
                    | (NotifyOn::Tick, Event::Tick)
            )
        })
    }

    /// The JSON document of an event (the webhook's body; the email says the same in text).
    pub fn document(
        &self,
        event: Event,
        task: &TaskId,
        start: Timestamp,
        run: Option<&RunRow>,
    ) -> serde_json::Value {
        serde_json::json!({
            "project": self.project,
            "event": event.as_str(),
            "task": task,
            "interval_start": start.to_string(),
            "interval_end": run.map(|r| r.interval.end.to_string()),
            "run_id": run.map(|r| r.id.clone()),
            "trigger": run.map(|r| r.trigger.clone()),
            "records": run.and_then(|r| r.records),
            "loaded": run.and_then(|r| r.loaded),
            "error": run.and_then(|r| r.error.as_deref().map(|e| self.redactor.redact(e))),
            "at": Timestamp::now().to_string(),
        })
    }

    /// The summary of a schedule tick: per task, records fetched and rows loaded or its error,
    /// the alerts fired, the tasks due that did not run. The webhook's JSON document and the
    /// email's text.
    pub fn tick_summary(&self, tick: &crate::Tick) -> (serde_json::Value, String, String) {
        let failed = tick.runs.iter().filter(|r| r.result.is_err()).count();
        let fired: Vec<&str> = tick
            .runs
            .iter()
            .flat_map(|r| r.fired.iter().map(String::as_str))
            .collect();
        let runs: Vec<serde_json::Value> = tick
            .runs
            .iter()
            .map(|r| match &r.result {
                Ok(c) => serde_json::json!({
                    "task": r.task, "interval_start": r.interval.start.to_string(),
                    "status": "done", "requests": c.requests, "records": c.records,
                    "loaded": c.loaded, "alerts": r.fired.len(), "replayed_from": c.replayed_from,
                }),
                Err(e) => serde_json::json!({
                    "task": r.task, "interval_start": r.interval.start.to_string(),
                    "status": "failed", "error": self.redactor.redact(e), "alerts": r.fired.len(),
                }),
            })
            .collect();
        let doc = serde_json::json!({
            "project": self.project,
            "event": "tick",
            "tick": tick.at.to_string(),
            "runs": runs,
            "failed": failed,
            "not_run": tick.missing,
            "alerts": fired.iter().map(|m| self.redactor.redact(m)).collect::<Vec<_>>(),
            "at": Timestamp::now().to_string(),
        });
        let status = match (failed, tick.missing.len()) {
            (0, 0) => "all done".to_string(),
            (f, 0) => format!("{f} failed"),
            (0, m) => format!("{m} not run here"),
            (f, m) => format!("{f} failed, {m} not run here"),
        };
        let subject = format!(
            "[affluent] {}: run of {}: {status}, {} alert(s)",
            self.project,
            tick.at.strftime("%Y-%m-%d %H:%M UTC"),
            fired.len()
        );
        let mut body = format!(
            "The scheduled run of {} at {} (UTC):\n\n",
            self.project,
            tick.at.strftime("%Y-%m-%d %H:%M")
        );
        for r in &tick.runs {
            match &r.result {
                Ok(c) if r.task.is_source() => match &c.replayed_from {
                    None => body.push_str(&format!(
                        "- {}: {} record(s) fetched in {} request(s), {} row(s) loaded\n",
                        r.task, c.records, c.requests, c.loaded
                    )),
                    Some(cassette) => body.push_str(&format!(
                        "- {}: {} record(s) replayed from {cassette} ({} answer(s), no API call), {} row(s) loaded\n",
                        r.task, c.records, c.requests, c.loaded
                    )),
                },
                Ok(c) => body.push_str(&format!("- {}: {} row(s) written\n", r.task, c.loaded)),
                Err(e) => body.push_str(&format!(
                    "- {}: FAILED: {} (retried later)\n",
                    r.task,
                    self.redactor.redact(e)
                )),
            }
        }
        for t in &tick.missing {
            body.push_str(&format!(
                "- {t}: not run by this process for this tick (another worker, a run before a restart, or not yet)\n"
            ));
        }
        if fired.is_empty() {
            body.push_str("\nNo alert fired.\n");
        } else {
            body.push_str(&format!("\nAlerts fired ({}):\n", fired.len()));
            for m in &fired {
                body.push_str(&format!("- {}\n", self.redactor.redact(m)));
            }
        }
        (doc, subject, body)
    }

    /// Sends the summary of a tick everywhere configured; failures are logged.
    pub async fn send_tick(&self, tick: &crate::Tick) {
        let (doc, subject, body) = self.tick_summary(tick);
        if let Err(e) = self.channels.post(&doc).await {
            tracing::warn!("notification failed: {e}");
        }
        if self.channels.has_email()
            && let Err(e) = self.channels.email(&subject, &body).await
        {
            tracing::warn!("notification failed: {e}");
        }
    }

    /// Sends the event everywhere configured; failures are logged.
    pub async fn send(&self, event: Event, task: &TaskId, start: Timestamp, run: Option<&RunRow>) {
        let doc = self.document(event, task, start, run);
        if let Err(e) = self.channels.post(&doc).await {
            tracing::warn!("notification failed: {e}");
        }
        if self.channels.has_email() {
            let subject = format!("[affluent] {}: {} {}", self.project, task, event.as_str());
            let mut body = String::new();
            if let Some(map) = doc.as_object() {
                for (k, v) in map {
                    if !v.is_null() {
                        let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                        body.push_str(&format!("{k}: {text}\n"));
                    }
                }
            }
            if let Err(e) = self.channels.email(&subject, &body).await {
                tracing::warn!("notification failed: {e}");
            }
        }
    }
}
