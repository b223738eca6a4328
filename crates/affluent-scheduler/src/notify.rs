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
}

impl Event {
    /// The event's name, as `[notify] on` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failure => "failure",
            Self::Recovery => "recovery",
            Self::Success => "success",
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
