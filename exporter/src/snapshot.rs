//! [`NodeSnapshot`]: the state the runtime publishes for scrapes and the
//! HTTP API.

use phimon_alert::MemberStatus;
use serde::Serialize;
use std::sync::{Arc, RwLock};

/// One peer as `/v1/peers` shows it and the per-peer metrics export it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerSnapshot {
    /// The peer's node id.
    pub node_id: String,
    /// Its gossip address ("host:port").
    pub address: String,
    /// Its generation (incarnation).
    pub generation: u64,
    /// Its membership status.
    #[serde(serialize_with = "status_str")]
    pub status: MemberStatus,
    /// Its current phi.
    pub phi: f64,
    /// Whether this node suspects it (the alert engine's hysteretic state,
    /// [`AlertEngine::is_suspected`](phimon_alert::AlertEngine::is_suspected)).
    pub suspected: bool,
    /// Time since its last heartbeat, ms.
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
    /// Detector window fill, 0..=1 (samples / window size): exported as
    /// an aggregate metric, not in `/v1/peers`.
    #[serde(skip)]
    pub window_fill: f64,
}

fn status_str<S: serde::Serializer>(s: &MemberStatus, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

/// What the runtime publishes after every tick (or whenever it likes:
/// scrapes read whatever is there).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSnapshot {
    /// This node's id (to compute which peers it observes).
    pub node_id: String,
    /// Joined the cluster (at least one peer answered): `/readyz` is 200.
    pub joined: bool,
    /// Every known peer.
    pub peers: Vec<PeerSnapshot>,
}

/// The snapshot shared between the runtime (writer, once per tick) and
/// scrapes and HTTP handlers (readers).
pub type SharedSnapshot = Arc<RwLock<NodeSnapshot>>;

/// Replaces the published snapshot (the runtime's one write per tick).
pub fn publish(shared: &SharedSnapshot, snapshot: NodeSnapshot) {
    // A poisoned lock only means a reader panicked: the data is a plain
    // value, still whole.
    let mut guard = shared.write().unwrap_or_else(|p| p.into_inner());
    *guard = snapshot;
}

/// Reads the published snapshot.
pub fn read<R>(shared: &SharedSnapshot, f: impl FnOnce(&NodeSnapshot) -> R) -> R {
    let guard = shared.read().unwrap_or_else(|p| p.into_inner());
    f(&guard)
}
