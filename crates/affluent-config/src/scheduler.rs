//! `[scheduler]`, `state_url` and `[notify]`: how `affluent run` schedules and whom it tells.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use crate::diagnostics::Reporter;
use crate::validate::span_in;
use crate::values::ConfigDuration;

/// `[scheduler]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Catch-up, retry and backfill runs in flight at once over every source (default 16); live
    /// runs are not counted. A source's requests in flight stay within its own `concurrency`
    /// whatever the number of its runs, so more runs mean fewer, larger loads during a catch-up.
    pub concurrency: Option<usize>,
    /// How long a claimed interval stays claimed without renewal (default `"60s"`).
    pub lease: Option<ConfigDuration>,
    /// First retry delay of a failed interval, doubled each attempt (default `"30s"`).
    pub retry_initial: Option<ConfigDuration>,
    /// Longest retry delay (default `"1h"`).
    pub retry_max: Option<ConfigDuration>,
    /// On SIGINT/SIGTERM, how long runs in flight may take to finish (default `"30s"`).
    pub shutdown_grace: Option<ConfigDuration>,
}

/// `[notify]`: where to say that a run failed or recovered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Which events: `failure`, `recovery`, `success`, `tick` (default failure and recovery).
    #[serde(default)]
    pub on: Vec<NotifyOn>,
    /// POST a JSON document to this URL.
    pub webhook: Option<WebhookConfig>,
    /// Send an email over SMTP.
    pub email: Option<EmailConfig>,
}

/// An event worth a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    /// A run failed.
    Failure,
    /// A run succeeded after a failure.
    Recovery,
    /// Every successful run.
    Success,
    /// After each schedule tick, once every task due at it has run: one summary of them all
    /// (records fetched and loaded per source, failures, alerts fired).
    Tick,
}

/// `[notify.webhook]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL that receives the JSON POST.
    pub url: String,
    /// Extra headers (`Authorization = "Bearer ${HOOK_TOKEN}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[notify.email]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp://host:port`, `smtps://user:pass@host` (implicit TLS) or
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS).
    pub smtp_url: String,
    /// The sender address.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
}

pub(crate) fn check(
    reporter: &mut Reporter<'_>,
    settings: &crate::schema::ProjectSettings,
    root: &Spanned<DeTable<'_>>,
) {
    let s = &settings.scheduler;
    if s.concurrency == Some(0) {
        reporter.error(
            span_in(root, &["scheduler", "concurrency"]),
            "`concurrency` must be at least 1",
        );
    }
    if let Some(url) = &settings.state_url
        && !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
    {
        reporter.error(
            span_in(root, &["state_url"]),
            "state_url must start with sqlite:// (a file) or postgres:// (a server)",
        );
    }
    if let Some(notify) = &settings.notify {
        if let Some(hook) = &notify.webhook
            && !matches!(
                url::Url::parse(&hook.url)
                    .map(|u| u.scheme().to_string())
                    .as_deref(),
                Ok("http" | "https")
            )
        {
            reporter.error(
                span_in(root, &["notify", "webhook", "url"]),
                "the webhook url must be an http(s) URL",
            );
        }
        if let Some(email) = &notify.email {
            if !matches!(
                url::Url::parse(&email.smtp_url)
                    .map(|u| u.scheme().to_string())
                    .as_deref(),
                Ok("smtp" | "smtps")
            ) {
                reporter.error(
                    span_in(root, &["notify", "email", "smtp_url"]),
                    "smtp_url must look like smtp://host:25 or smtps://user:pass@host",
                );
            }
            if email.to.is_empty() {
                reporter.error(
                    span_in(root, &["notify", "email", "to"]),
                    "`to` needs at least one address",
                );
            }
        }
        if notify.webhook.is_none() && notify.email.is_none() {
            reporter.error(
                span_in(root, &["notify"]),
                "[notify] needs a `webhook` or an `email` table",
            );
        }
    }
}
