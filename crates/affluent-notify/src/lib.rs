//! Delivery channels: a JSON document POSTed to a webhook (retried on network errors, 429 and
//! 5xx answers) and a text email over SMTP. What cannot be delivered is an error for the caller
//! to log; secrets never appear in one (every message goes through the project's redactor).

use std::sync::Arc;
use std::time::Duration;

use affluent_config::schema::{EmailConfig, WebhookConfig};
use affluent_core::Redactor;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

#[cfg(feature = "test-support")]
pub mod testing;

/// Why a delivery failed (secrets redacted).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The webhook could not be reached or refused the document.
    #[error("webhook: {0}")]
    Webhook(String),
    /// The email could not be built or sent.
    #[error("email: {0}")]
    Email(String),
}

/// Attempts of a webhook POST, and the pause before each retry.
const WEBHOOK_RETRIES: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(2)];

/// The configured channels of a project.
#[derive(Debug, Clone)]
pub struct Channels {
    webhook: Option<WebhookConfig>,
    email: Option<EmailConfig>,
    http: reqwest::Client,
    redactor: Arc<Redactor>,
}

impl Channels {
    /// Channels over a webhook and an SMTP server, either optional.
    pub fn new(
        webhook: Option<WebhookConfig>,
        email: Option<EmailConfig>,
        redactor: Arc<Redactor>,
    ) -> Self {
        Self {
            webhook,
            email,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            redactor,
        }
    }

    /// Whether a webhook is configured.
    pub fn has_webhook(&self) -> bool {
        self.webhook.is_some()
    }

    /// Whether email is configured.
    pub fn has_email(&self) -> bool {
        self.email.is_some()
    }

    /// POSTs a JSON document to the webhook (nothing when none is configured), retried twice
    /// after a network error, a 429 or a 5xx answer.
    pub async fn post(&self, doc: &serde_json::Value) -> Result<(), NotifyError> {
        let Some(hook) = &self.webhook else {
            return Ok(());
        };
        let mut pauses = WEBHOOK_RETRIES.iter();
        loop {
            let mut req = self.http.post(&hook.url).json(doc);
            for (k, v) in &hook.headers {
                req = req.header(k, v);
            }
            let failure = match req.send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let status = r.status();
                    let retry = status.as_u16() == 429 || status.is_server_error();
                    let text = format!("answered {status}");
                    if !retry {
                        return Err(NotifyError::Webhook(text));
                    }
                    text
                }
                Err(e) => self.redactor.redact(&e.without_url().to_string()),
            };
            match pauses.next() {
                Some(pause) => {
                    tracing::debug!("webhook {failure}; retrying in {pause:?}");
                    tokio::time::sleep(*pause).await;
                }
                None => return Err(NotifyError::Webhook(failure)),
            }
        }
    }

    /// Sends a text email to the configured recipients (nothing when none is configured).
    pub async fn email(&self, subject: &str, body: &str) -> Result<(), NotifyError> {
        let Some(email) = &self.email else {
            return Ok(());
        };
        let fail = |e: String| NotifyError::Email(self.redactor.redact(&e));
        let mut builder = Message::builder()
            .from(email.from.parse().map_err(|e| fail(format!("from: {e}")))?)
            .subject(subject);
        for to in &email.to {
            builder = builder.to(to.parse().map_err(|e| fail(format!("to {to}: {e}")))?);
        }
        let message = builder
            .body(body.to_string())
            .map_err(|e| fail(e.to_string()))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&email.smtp_url)
            .map_err(|e| fail(e.to_string()))?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| fail(e.to_string()))
    }
}
