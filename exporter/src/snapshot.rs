//! [`NodeSnapshot`]: the state the runtime publishes for scrapes and the
//! HTTP API.

use crate::api::PeerInfo;
use std::sync::{Arc, RwLock};

/// What the runtime publishes when a scrape or request asks for it
/// ([`Refresher`]), or whenever it likes: readers read what is there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSnapshot {
    /// This node's id (to compute which peers it observes).
    pub node_id: String,
    /// Joined the cluster (at least one peer answered): `/readyz` is 200.
    pub joined: bool,
    /// Every known peer.
    pub peers: Vec<PeerInfo>,
}

/// The snapshot shared between the runtime (writer) and scrapes and HTTP
/// handlers (readers).
pub type SharedSnapshot = Arc<RwLock<NodeSnapshot>>;

/// How a handler asks the runtime to publish a fresh snapshot before it
/// reads: it sends a reply channel, the runtime publishes and answers.
/// The runtime builds a snapshot only when someone reads it.
pub type Refresher = tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>;

/// Asks for a fresh snapshot and waits for it (at most a second: a busy
/// or stopped runtime leaves the reader with the last one).
pub async fn refresh(refresher: Option<&Refresher>) {
    let Some(r) = refresher else { return };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if r.try_send(tx).is_ok() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), rx).await;
    }
}

/// Replaces the published snapshot.
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
