//! Requests the HTTP handlers hand to the runtime, whose loop owns the
//! node: what a published snapshot cannot answer (a peer's evidence) or
//! what changes the node (a reload).

use crate::api::{NodeInfo, PeerDetail, ReloadReport, WhatIfReport};
use tokio::sync::{mpsc, oneshot};

/// One request to the runtime; it answers on the channel inside.
#[derive(Debug)]
#[non_exhaustive]
pub enum Request {
    /// Re-read the configuration file and apply what may change live.
    Reload(oneshot::Sender<ReloadReport>),
    /// This node itself.
    Local(oneshot::Sender<NodeInfo>),
    /// One peer with its evidence (`None`: no such peer).
    Peer(String, oneshot::Sender<Option<PeerDetail>>),
    /// One observed peer's detector window as an arrival trace (the
    /// format `phimon eval` reads; `None`: not observed here).
    Trace(String, oneshot::Sender<Option<String>>),
    /// Replay the observed peers' windows at these thresholds (valid:
    /// finite, positive, at most [`MAX_WHATIF_THRESHOLDS`]).
    WhatIf(Vec<f64>, oneshot::Sender<WhatIfReport>),
}

/// Most thresholds one what-if request may ask for: each costs a replay
/// of every observed peer's window on the node's only thread.
pub const MAX_WHATIF_THRESHOLDS: usize = 8;

/// Where handlers send [`Request`]s.
pub type Control = mpsc::Sender<Request>;

/// How long a handler waits for the runtime's answer. A reload reads a
/// few small files; anything slower means the loop is stuck.
pub const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends the request `make` builds around a reply channel and waits for
/// the answer (`None`: no runtime, or it did not answer in time).
pub async fn ask<T>(
    control: Option<&Control>,
    make: impl FnOnce(oneshot::Sender<T>) -> Request,
) -> Option<T> {
    let control = control?;
    let (tx, rx) = oneshot::channel();
    control.send(make(tx)).await.ok()?;
    tokio::time::timeout(ANSWER_WITHIN, rx).await.ok()?.ok()
}
