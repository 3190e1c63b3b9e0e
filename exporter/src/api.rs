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

/// `GET /v1/peers/{id}`: one peer as [`PeerInfo`] shows it (the same
/// fields, flattened into one JSON object), plus the settings it is
/// judged by and, when this node observes it, the [`Evidence`] a page
/// about it would carry now.
///
/// [`Evidence`]: phimon_alert::Evidence
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerDetail {
    /// The peer, as `/v1/peers` lists it.
    #[serde(flatten)]
    pub peer: PeerInfo,
    /// The suspicion threshold in force at this node (after any reload).
    pub threshold: f64,
    /// Intervals held in this node's detector window for the peer (0
    /// when this node does not observe it).
    pub window_samples: usize,
    /// The window's size (`detector.window`; 0 when not observed).
    pub window_capacity: usize,
    /// Why this node judges the peer as it does (observed peers only):
    /// the schema of docs/alerting.md, `version` first.
    pub evidence: Option<phimon_alert::Evidence>,
}

/// The answer of `POST /v1/reload` (and what a SIGHUP logs).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReloadReport {
    /// The new configuration is in force.
    pub ok: bool,
    /// The keys that changed (`detector.threshold`, ...), with old and new
    /// values: `detector.threshold: 8 -> 12`. Empty when nothing changed
    /// or the reload failed.
    pub changed: Vec<String>,
    /// Why the reload was refused (the old configuration stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An error answer of the JSON API: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for a human.
    pub error: String,
}

/// `GET /v1/whatif?threshold=X[,Y...]`: what each observed peer's
/// detector would have done at other thresholds, replaying the intervals
/// its window holds now (see docs/operator.md for what that covers).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WhatIfReport {
    /// The node answering.
    pub node_id: String,
    /// The threshold in force.
    pub current_threshold: f64,
    /// The thresholds reported, the current one first.
    pub thresholds: Vec<f64>,
    /// One entry per peer this node observes, sorted by node id.
    pub peers: Vec<PeerWhatIf>,
    /// Over all those peers, per threshold: the slowest detection and
    /// the sum of the mistake rates.
    pub node: Vec<WhatIfOutcome>,
}

/// One peer's replay.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PeerWhatIf {
    /// The peer.
    pub node_id: String,
    /// Intervals replayed (the detector window's content).
    pub intervals: usize,
    /// The time they span, seconds: the history the mistake rates are
    /// measured on.
    pub history_s: f64,
    /// Per threshold, in the order of [`WhatIfReport::thresholds`].
    pub outcomes: Vec<WhatIfOutcome>,
}

/// What one threshold would have done.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WhatIfOutcome {
    /// The threshold.
    pub threshold: f64,
    /// Time from the last heartbeat to the suspicion, had the peer died
    /// right after it, ms (`None`: not within the replay's horizon).
    pub detection_ms: Option<f64>,
    /// Suspicions of the (alive) peer during the replayed history.
    pub mistakes: u64,
    /// `mistakes` per hour of replayed history.
    pub mistakes_per_hour: f64,
}

/// `GET /v1/node`: the answering node itself, which `/v1/peers` leaves
/// out: who it is, and how the fleet judges it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its node id.
    pub node_id: String,
    /// Its cluster.
    pub cluster: String,
    /// The phimon version it runs.
    pub version: String,
    /// The address it advertises.
    pub address: String,
    /// Its generation.
    pub generation: u64,
    /// Its status as it announces it (`alive`, `leaving`, ...).
    pub status: Status,
    /// It joined (a peer answered): `/readyz`'s first condition.
    pub joined: bool,
    /// The suspicion threshold in force.
    pub threshold: f64,
    /// Its own observers, in ring order.
    pub observers: Vec<String>,
    /// Those of them that suspect it.
    pub suspected_by: Vec<String>,
    /// It stalled recently and raises no new suspicion.
    pub degraded: bool,
    /// It considers itself cut off from most of the nodes it observes.
    pub isolated: bool,
}
