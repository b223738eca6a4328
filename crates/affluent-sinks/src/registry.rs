//! The one list of sink types: `build` turns a `[sinks.NAME]` into its [`Sink`].

use std::sync::Arc;

use affluent_config::schema::SinkConfig;
use affluent_core::Redactor;

use crate::{Sink, SinkError};

/// The sink types built here; a test checks it is the config's `SINK_TYPES`.
pub const KINDS: &[&str] = &["postgres"];

/// The sink of a `[sinks.NAME]`.
pub fn build(
    name: &str,
    config: &SinkConfig,
    redactor: Arc<Redactor>,
) -> Result<Arc<dyn Sink>, SinkError> {
    Ok(match config {
        SinkConfig::Postgres(c) => Arc::new(crate::postgres::PostgresSink::new(name, c, redactor)?),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_configurable_sink_type_is_built() {
        assert_eq!(super::KINDS, affluent_config::schema::SINK_TYPES);
    }
}
