//! The JSON API's types: what `GET /v1/peers` answers, declared once for
//! the handler that serves it and the clients that read it.

use serde::{Deserialize, Serialize};

/// A node's fleet status, the `status` of [`PeerInfo`]: the protocol
/// core's one vocabulary (`unknown`, `alive`, `suspected`, `leaving`,
/// `left`), re-exported for clients of the API.
pub use phimon_gossip::Status;

/// One peer as `/v1/peers` shows it (one JSON object of the array) and
/// the per-peer metrics export it. The runtime builds these for its
/// [`NodeSnapshot`](crate::NodeSnapshot) when a scrape or request asks;
/// clients (the test kit, `phimon peers`) deserialize the same type.
///
/// Every node knows every peer's status; only the peer's observers (a
/// few nodes, `observed` true here) receive its heartbeats, so only they
/// have its phi and interval statistics (0 elsewhere).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's node id.
    pub node_id: String,
    /// Its address ("host:port").
    pub address: String,
    /// Its generation (incarnation).
    pub generation: u64,
    /// Its fleet status, as this node sees it.
    pub status: Status,
    /// Its phi at this node, if this node observes it (0 otherwise).
    pub phi: f64,
    /// The fleet suspects it: a majority of its observers do.
    pub suspected: bool,
    /// This node is one of its observers: it receives its heartbeats.
    #[serde(default)]
    pub observed: bool,
    /// This node's own verdict: phi crossed the threshold here.
    #[serde(default)]
    pub locally_suspected: bool,
    /// Its observers, in ring order: whose verdicts decide its status.
    #[serde(default)]
    pub observers: Vec<String>,
    /// Those of its observers that suspect it.
    #[serde(default)]
    pub suspected_by: Vec<String>,
    /// Time since its last heartbeat here, ms (0 when not observed).
    pub last_heartbeat_age_ms: f64,
    /// Mean heartbeat interval of the detector window, ms.
    pub interval_mean_ms: f64,
    /// Standard deviation of the detector window, ms.
    pub interval_stddev_ms: f64,
    /// Median recent interval, ms ([`IntervalHistogram`](crate::IntervalHistogram)).
    pub interval_p50_ms: f64,
    /// 99th-percentile recent interval, ms.
    pub interval_p99_ms: f64,
    /// Longest recent interval, ms.
    pub interval_max_ms: f64,
    /// Heartbeats missing from its sequence here (lost in transit).
    #[serde(default)]
    pub heartbeats_lost: u64,
    /// Detector window fill, 0..=1 (samples / window size): exported as
    /// an aggregate metric, not in `/v1/peers` (0 when deserialized).
    #[serde(skip)]
    pub window_fill: f64,
}
