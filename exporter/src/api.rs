//! The JSON API's types: what `GET /v1/peers` answers, declared once for
//! the handler that serves it and the clients that read it.

use serde::{Deserialize, Serialize};

/// A peer's membership status, the `status` of [`PeerInfo`]
/// (phimon-alert's type, re-exported for clients of the API).
pub use phimon_alert::MemberStatus;

/// One peer as `/v1/peers` shows it (one JSON object of the array) and
/// the per-peer metrics export it. The runtime publishes these in its
/// [`NodeSnapshot`](crate::NodeSnapshot); clients (the test kit)
/// deserialize the same type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's node id.
    pub node_id: String,
    /// Its gossip address ("host:port").
    pub address: String,
    /// Its generation (incarnation).
    pub generation: u64,
    /// Its membership status.
    #[serde(serialize_with = "status_str", deserialize_with = "status_from_str")]
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
    /// an aggregate metric, not in `/v1/peers` (0 when deserialized).
    #[serde(skip)]
    pub window_fill: f64,
}

fn status_str<S: serde::Serializer>(s: &MemberStatus, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

fn status_from_str<'de, D: serde::Deserializer<'de>>(de: D) -> Result<MemberStatus, D::Error> {
    let name = String::deserialize(de)?;
    MemberStatus::ALL
        .into_iter()
        .find(|s| s.as_str() == name)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown peer status {name:?}")))
}
