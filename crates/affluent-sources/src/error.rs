//! Errors of connectors. Each says what failed, where (source, redacted URL) and what to do, and
//! knows whether trying again could help.

use affluent_landing::LandingError;

/// A connector error. Messages never hold secrets: URLs and bodies are redacted before they get
/// here.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server answered with an error status.
    #[error("HTTP {status} from {method} {url}: {message}")]
    Http {
        /// Status code.
        status: u16,
        /// Method.
        method: String,
        /// Redacted URL.
        url: String,
        /// The server's own message, or the start of its body.
        message: String,
    },
    /// No answer: connection refused or reset, timeout, DNS.
    #[error("network error on {method} {url}: {message}")]
    Network {
        /// Method.
        method: String,
        /// Redacted URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// A 2xx response whose body is not data (malformed JSON, an error payload).
    #[error(
        "response from {url} is not data: {message} (kept in landing as entry {entry_id}, marked rejected)"
    )]
    BadPayload {
        /// Redacted URL.
        url: String,
        /// Why.
        message: String,
        /// The landing entry holding the body.
        entry_id: String,
    },
    /// The daily quota is used up.
    #[error(
        "daily quota of {limit} requests for {scope} is used up for today ({day}); it resets at midnight in the project's time zone"
    )]
    QuotaExhausted {
        /// `source NAME` or `host NAME`.
        scope: String,
        /// The limit.
        limit: u32,
        /// The day.
        day: String,
    },
    /// A redirect or next-page link to another origin than `client.base_url`'s, refused.
    #[error(
        "refused {method} {url}: it is not on {origin}, the origin of client.base_url, and credentials are sent only there; set client.cross_origin = \"without_credentials\" to follow it without them"
    )]
    CrossOrigin {
        /// Method.
        method: String,
        /// The refused URL, redacted.
        url: String,
        /// `client.base_url`'s origin.
        origin: String,
    },
    /// Too many redirects in a row.
    #[error("{method} {url}: more than {max} redirects")]
    Redirects {
        /// Method.
        method: String,
        /// The first URL, redacted.
        url: String,
        /// The most followed.
        max: usize,
    },
    /// OAuth token could not be obtained.
    #[error("cannot obtain an OAuth access token from {url}: {message}")]
    Auth {
        /// Redacted token URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// A CSV source found nothing to read, or could not read a file.
    #[error("{0}")]
    Files(String),
    /// Templates, fan-out or paths could not be resolved at run time.
    #[error("{0}")]
    Plan(String),
    /// The landing zone or state could not be written.
    #[error(transparent)]
    Landing(#[from] LandingError),
    /// The source's settings are incomplete: a `${VAR}` it uses is not set (the project was
    /// loaded for commands that do not call sources).
    #[error("source `{name}` cannot run until its settings are complete\n\n{errors}")]
    Unavailable {
        /// The source.
        name: String,
        /// Every problem of its settings, with line and column.
        errors: affluent_config::ConfigErrors,
    },
    /// The source is not declared.
    #[error("no source named `{name}` in the project{hint} (declared: {known})")]
    UnknownSource {
        /// The name asked for.
        name: String,
        /// ` ; did you mean ...`.
        hint: String,
        /// Declared sources.
        known: String,
    },
}

impl SourceError {
    /// Whether the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Http { status, .. } => is_retryable_status(*status),
            SourceError::Network { .. } => true,
            _ => false,
        }
    }
}

/// 408, 429 and 5xx are worth retrying; other statuses are the request's fault.
pub fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}
