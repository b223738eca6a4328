//! `[bus]`: what carries a stream's input events to the processes that compute its windows.
//!
//! ```toml
//! [bus]
//! kind = "nats"                                   # default "embedded": no service
//! url = "${NATS_URL:-nats://127.0.0.1:4222}"
//! partitions = 4                                  # events split by key over this many
//! ack_wait = "30s"                                # redelivered if not processed by then
//! local_worker = true                             # loads also process what they publish
//! ```
//!
//! Embedded, the process that loads a stream's input reads the new versions and computes the
//! windows itself. On NATS JetStream the loading process publishes the events of each new
//! version, split by key into `partitions`, and any number of `affluent streams work`
//! processes (sharing the data directory) compute the windows of the partitions they are
//! handed; results are the same, written once each.

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use crate::diagnostics::Reporter;
use crate::validate::span_in;
use crate::values::ConfigDuration;

/// The NATS server used when `[bus] kind = "nats"` names no `url`.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// `[bus]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// `embedded` (default) or `nats`.
    #[serde(default)]
    pub kind: BusKind,
    /// `nats`: the server, `nats://host:port` (credentials as `nats://user:password@host`,
    /// from the environment: `${NATS_URL}`). Default `nats://127.0.0.1:4222`.
    pub url: Option<String>,
    /// `nats`: how many partitions a stream's events are split into by key (default 4): at
    /// most this many processes work on one stream at once.
    pub partitions: Option<u32>,
    /// `nats`: how long a worker may take over a message before it is handed to another
    /// (default `"30s"`).
    pub ack_wait: Option<ConfigDuration>,
    /// `nats`: whether the process that loads the input also processes the messages it
    /// published, until none is pending (default true). False leaves them to
    /// `affluent streams work`.
    pub local_worker: Option<bool>,
}

/// Which bus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    /// In the loading process, no service.
    #[default]
    Embedded,
    /// NATS JetStream.
    Nats,
}

impl BusConfig {
    /// The server of a NATS bus.
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or(DEFAULT_NATS_URL)
    }

    /// Partitions of a NATS bus.
    pub fn partitions(&self) -> u32 {
        self.partitions.unwrap_or(4)
    }

    /// Ack wait of a NATS bus.
    pub fn ack_wait(&self) -> std::time::Duration {
        self.ack_wait
            .map_or(std::time::Duration::from_secs(30), ConfigDuration::get)
    }

    /// Whether loads process what they publish.
    pub fn local_worker(&self) -> bool {
        self.local_worker.unwrap_or(true)
    }
}

pub(crate) fn check(reporter: &mut Reporter<'_>, bus: &BusConfig, root: &Spanned<DeTable<'_>>) {
    let at = |key: &str| span_in(root, &["bus", key]).or_else(|| span_in(root, &["bus"]));
    if bus.kind == BusKind::Embedded {
        for (key, set) in [
            ("url", bus.url.is_some()),
            ("partitions", bus.partitions.is_some()),
            ("ack_wait", bus.ack_wait.is_some()),
            ("local_worker", bus.local_worker.is_some()),
        ] {
            if set {
                reporter.error(
                    at(key),
                    format!(
                        "`{key}` is for `[bus] kind = \"nats\"`: the embedded bus has no server"
                    ),
                );
            }
        }
        return;
    }
    let url = bus.url();
    if !(url.starts_with("nats://") || url.starts_with("tls://")) {
        reporter.error(
            at("url"),
            "`[bus] url` must be a NATS server: `nats://host:4222` (or `tls://host:4222`)",
        );
    }
    if !(1..=256).contains(&bus.partitions()) {
        reporter.error(
            at("partitions"),
            "`[bus] partitions` must be between 1 and 256",
        );
    }
    if bus.ack_wait().as_secs() < 1 {
        reporter.error(at("ack_wait"), "`[bus] ack_wait` must be at least 1s");
    }
}
