//! The registry of connectors: the one place that turns a source's configuration into its
//! runtime. A new kind of source adds its variant to affluent-config's `SourceConfig` (with its
//! module in `sources/`), its folder here, and its arm below; the compiler points at every
//! place that must know.

use std::sync::Arc;

use affluent_config::schema::SourceConfig;

use crate::SourceError;
use crate::csv::CsvSource;
use crate::rest::RestSource;
use crate::source::Source;

/// The kinds of source this build knows, by their `type` key.
pub const KINDS: &[&str] = &["rest", "csv"];

/// Builds the connector of one source.
pub fn build(config: &SourceConfig) -> Result<Arc<dyn Source>, SourceError> {
    Ok(match config {
        SourceConfig::Rest(rest) => Arc::new(RestSource::new(rest)?),
        SourceConfig::Csv(csv) => Arc::new(CsvSource::new(csv)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_the_project_file_accepts_has_a_connector() {
        assert_eq!(KINDS, affluent_config::schema::SOURCE_TYPES);
    }
}
