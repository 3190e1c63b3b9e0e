//! Plain-data settings of the metrics exporter. The config crate maps
//! TOML onto [`ExportConfig`]; nothing here parses files.

/// Settings of the per-peer metric series.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExportConfig {
    /// Export per-peer series for every peer (`[http] export_all_peers`).
    /// Off by default: each node then exports per-peer series only for
    /// the peers it observes (it receives their heartbeats), so the fleet
    /// exports about `observers * N` per-peer series instead of
    /// `N * (N - 1)`.
    pub export_all_peers: bool,
}
