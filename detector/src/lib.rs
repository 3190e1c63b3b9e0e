//! Phi-accrual failure detection math for phimon.
//!
//! This crate turns heartbeat arrival times into a suspicion level,
//! phi = -log10(P_later(t)): the improbability that a peer which has been
//! silent for `t` is still alive, given the recent rhythm of its heartbeats.
//!
//! - [`PeerDetector`]: one peer's window of inter-arrival intervals
//!   ([`IntervalWindow`], exact integer running sums) and its phi under the
//!   configured [`Distribution`]: `adaptive` (the default: robust
//!   location, bursts folded, a Bayesian late-heartbeat tail learned per
//!   peer and, from sequence numbers, a model of its lost heartbeats),
//!   `normal` or `exponential`.
//!   O(1), allocation-free `record` and `phi`; `record_seq` filters
//!   duplicate and reordered heartbeats by sequence number, counts losses
//!   ([`HeartbeatCounts`]) and learns them as losses, not late arrivals;
//!   `when_phi_reaches` says when phi will cross a threshold (the
//!   runtime's one timer per peer); `started_at`
//!   starts an observer hand-over on the prior; [`Fit`] and
//!   `recent_intervals` are the evidence a page quotes.
//! - [`tail`]: the normal upper tail in log space, accurate and finite for
//!   every score, so phi keeps growing however long a peer is silent.
//! - [`AccrualDetector`]: the interface every suspicion model offers, so
//!   that phimon-eval can replay traces through phimon's models and its
//!   reference baselines alike.
//!
//! The crate does no IO, reads no clock and spawns nothing: callers pass
//! [`Timestamp`]s from their own monotonic clock (or a trace, or a
//! simulator), so every result is reproducible. Which peers to watch,
//! their generations and what to do with phi are the caller's (the gossip
//! core and the alert engine); traces, QoS and comparisons are
//! phimon-eval's.

mod adaptive;
mod config;
mod loss;
mod peer;
pub mod tail;
mod time;

pub use config::{DetectorConfig, Distribution};
pub use peer::{
    COLD_START_SAMPLES, Estimate, Fit, HeartbeatCounts, IntervalWindow, MAX_INTERVAL_MICROS,
    PeerDetector,
};
pub use time::Timestamp;

/// A heartbeat-driven suspicion model: what `phimon eval` replays traces
/// through. phimon's [`PeerDetector`] implements it; so do phimon-eval's
/// baseline models used for comparison (Akka's may return `+inf`,
/// as Akka does; every other model's phi is finite).
pub trait AccrualDetector {
    /// Records a heartbeat received at `at`.
    fn record(&mut self, at: Timestamp);
    /// Records heartbeat number `seq` of the sender's counter, received at
    /// `at`; returns whether it was recorded. A model without a use for
    /// sequence numbers (the default) records the arrival as
    /// [`record`](Self::record) does.
    fn record_seq(&mut self, at: Timestamp, seq: u64) -> bool {
        let _ = seq;
        self.record(at);
        true
    }
    /// The suspicion level at `now`: finite, non-negative, non-decreasing
    /// in `now` between two heartbeats.
    fn phi(&self, now: Timestamp) -> f64;
    /// Time of the last heartbeat, if any.
    fn last_arrival(&self) -> Option<Timestamp>;
}

impl<D: AccrualDetector + ?Sized> AccrualDetector for Box<D> {
    fn record(&mut self, at: Timestamp) {
        (**self).record(at)
    }
    fn record_seq(&mut self, at: Timestamp, seq: u64) -> bool {
        (**self).record_seq(at, seq)
    }
    fn phi(&self, now: Timestamp) -> f64 {
        (**self).phi(now)
    }
    fn last_arrival(&self) -> Option<Timestamp> {
        (**self).last_arrival()
    }
}

impl AccrualDetector for PeerDetector {
    fn record(&mut self, at: Timestamp) {
        PeerDetector::record(self, at)
    }
    fn record_seq(&mut self, at: Timestamp, seq: u64) -> bool {
        PeerDetector::record_seq(self, at, seq)
    }
    fn phi(&self, now: Timestamp) -> f64 {
        PeerDetector::phi(self, now)
    }
    fn last_arrival(&self) -> Option<Timestamp> {
        PeerDetector::last_arrival(self)
    }
}
