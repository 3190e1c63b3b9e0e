//! The one status vocabulary of phimon: core, alert engine, HTTP API and
//! metrics all name a node's state with [`Status`].

use serde::{Deserialize, Serialize};

/// What the fleet knows of a node, as this node sees it.
///
/// Decided in one place ([`Gossip`](crate::Gossip)): from the node's own
/// signed declaration (leaving, left) and otherwise from the verdicts of
/// its observers — the `k` live members that follow it on the ring and
/// receive its heartbeats directly.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No observer has vouched for it yet: never heard from directly,
    /// still bootstrapping, or judged on the prior only.
    #[default]
    Unknown,
    /// At least one of its observers receives its heartbeats, and no
    /// majority of them suspects it.
    Alive,
    /// A majority of its observers suspect it: phi crossed the threshold
    /// at each of them. It stays suspected until one of its observers
    /// hears it again (or it restarts, or is forgotten).
    Suspected,
    /// It announced a graceful shutdown (not monitored, never paged).
    Leaving,
    /// It left gracefully (final for its generation).
    Left,
}

impl Status {
    /// Every status, for metric label sets.
    pub const ALL: [Status; 5] = [
        Status::Unknown,
        Status::Alive,
        Status::Suspected,
        Status::Leaving,
        Status::Left,
    ];

    /// The lower-case name used in JSON, metric labels and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Alive => "alive",
            Status::Suspected => "suspected",
            Status::Leaving => "leaving",
            Status::Left => "left",
        }
    }

    /// Leaving or left: a graceful departure, never a page.
    pub fn is_departing(self) -> bool {
        matches!(self, Status::Leaving | Status::Left)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
