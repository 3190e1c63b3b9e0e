//! [`Evidence`]: why a node paged, carried by its `suspected` page.

use serde::{Deserialize, Serialize};

/// Version of the [`Evidence`] schema: bumped on any incompatible change.
pub const EVIDENCE_VERSION: u32 = 1;

/// Most intervals an evidence lists.
pub const MAX_INTERVALS: usize = 32;

/// Most phi samples an evidence lists (about a minute at 1 s heartbeats).
pub const MAX_PHI_SAMPLES: usize = 64;

/// Why a node was suspected, as the observer that paged saw it: the
/// heartbeats it received, how its model judged the silence, which
/// observers agree, and its own health. Bounded (at most
/// [`MAX_INTERVALS`] intervals, [`MAX_PHI_SAMPLES`] phi samples, one entry
/// per observer), versioned ([`EVIDENCE_VERSION`]) and documented in
/// docs/alerting.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Schema version.
    pub version: u32,
    /// The last intervals between the subject's heartbeats at this
    /// observer, oldest first, milliseconds.
    pub intervals_ms: Vec<f64>,
    /// phi sampled once per heartbeat interval until the page, oldest
    /// first: seconds before the page (negative) and phi.
    pub phi_history: Vec<PhiSample>,
    /// Silence since the last heartbeat at the page, milliseconds.
    pub silence_ms: f64,
    /// The detector model (`adaptive`, `normal`, `exponential`).
    pub model: String,
    /// The model's fitted parameters (milliseconds for times), by name.
    pub fit: Vec<(String, f64)>,
    /// Heartbeats from the subject lost (sequence gaps) and received here.
    pub heartbeats_lost: u64,
    /// See `heartbeats_lost`.
    pub heartbeats_received: u64,
    /// The subject's observers in ring order and their verdicts.
    pub observers: Vec<ObserverEvidence>,
    /// This observer's own health when it paged.
    pub local_health: LocalHealth,
}

/// One phi sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PhiSample {
    /// Seconds relative to the page (≤ 0).
    pub t_s: f64,
    /// phi then.
    pub phi: f64,
}

/// One observer of the subject and what it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObserverEvidence {
    /// The observer.
    pub node_id: String,
    /// Its verdict: `true` suspected, `false` alive, absent when it has
    /// none yet.
    pub suspected: Option<bool>,
    /// Its phi when it reached that verdict.
    pub phi: Option<f64>,
}

/// The paging observer's own state.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LocalHealth {
    /// It stalled recently (and so raises no new suspicion).
    pub degraded: bool,
    /// It considers itself cut off from most of its subjects.
    pub isolated: bool,
    /// Nodes it observes.
    pub subjects: usize,
    /// Of which it suspects.
    pub subjects_suspected: usize,
}
