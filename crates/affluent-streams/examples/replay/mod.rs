//! What the replay examples share: seed 003's windows.

use affluent_streams::{Aggregate, Spec, WindowKind};

/// The seed's job: per station, every 3 minutes, the average mechanical bikes, e-bikes and
/// free docks. Reports arrive up to 12 minutes late: the watermark trails by 2 minutes and
/// windows take late reports for 15 more.
pub(crate) fn seed_003_windows() -> Spec {
    Spec {
        window: WindowKind::Tumbling { size_ms: 180_000 },
        delay_ms: 120_000,
        lateness_ms: 900_000,
        aggregates: vec![Aggregate::Avg, Aggregate::Avg, Aggregate::Avg],
    }
}
