//! Plain-data settings of the metrics exporter. The config crate maps
//! TOML onto [`ExportConfig`]; nothing here parses files.

use phimon_alert::DEFAULT_OBSERVERS;

/// Settings of the per-peer metric series.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportConfig {
    /// Export per-peer series for every peer (`[http] export_all_peers`).
    /// Off by default: each node then exports per-peer series only for
    /// the peers it is a designated observer of, so the fleet exports
    /// about `observers * N` per-peer series instead of `N * (N - 1)`.
    pub export_all_peers: bool,
    /// Designated observers per subject; keep equal to
    /// [`AlertConfig::observers`](phimon_alert::AlertConfig::observers) so the exported series come from the
    /// same nodes that page.
    pub observers: usize,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            export_all_peers: false,
            observers: DEFAULT_OBSERVERS,
        }
    }
}
