//! [`NodeSnapshot`]: the state the runtime publishes for scrapes and the
//! HTTP API.

use crate::api::PeerInfo;
use std::sync::{Arc, RwLock};

/// What the runtime publishes after every tick (or whenever it likes:
/// scrapes read whatever is there).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSnapshot {
    /// This node's id (to compute which peers it observes).
    pub node_id: String,
    /// Joined the cluster (at least one peer answered): `/readyz` is 200.
    pub joined: bool,
    /// Every known peer.
    pub peers: Vec<PeerInfo>,
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
