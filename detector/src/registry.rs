//! Detectors for many peers, keyed by node id.

use crate::config::DetectorConfig;
use crate::peer::PeerDetector;
use crate::time::Timestamp;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// What [`Registry::observe`] did with a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// First heartbeat ever seen from this peer.
    Joined,
    /// A heartbeat of the known generation, recorded.
    Recorded,
    /// A newer generation: the peer restarted and its window was reset.
    Restarted {
        /// The generation it replaced.
        previous: u64,
    },
    /// A heartbeat of an older generation, ignored.
    Stale,
}

/// One peer's generation and detector.
#[derive(Debug, Clone)]
pub struct PeerState {
    generation: u64,
    detector: PeerDetector,
}

impl PeerState {
    /// The peer's current generation (incarnation).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The peer's detector.
    pub fn detector(&self) -> &PeerDetector {
        &self.detector
    }
}

/// The detectors of every peer this node watches.
///
/// Feed it `HeartbeatObserved` events with [`observe`](Self::observe); read
/// suspicion with [`phi`](Self::phi) or [`iter`](Self::iter). Allocation
/// happens only when a new peer is added.
#[derive(Debug, Clone)]
pub struct Registry<K> {
    config: DetectorConfig,
    peers: HashMap<K, PeerState>,
}

impl<K: Eq + Hash> Registry<K> {
    /// An empty registry whose detectors use `config`.
    pub fn new(config: DetectorConfig) -> Self {
        Registry {
            config,
            peers: HashMap::new(),
        }
    }

    /// The shared detector settings.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Records a heartbeat of `peer` in `generation`, received at `at`.
    /// A newer generation resets the peer's window (a restarted process
    /// has a new rhythm and its old silence is not suspicious).
    pub fn observe(&mut self, peer: K, generation: u64, at: Timestamp) -> Observation {
        match self.peers.get_mut(&peer) {
            Some(state) => {
                if generation < state.generation {
                    return Observation::Stale;
                }
                if generation > state.generation {
                    let previous = state.generation;
                    state.generation = generation;
                    state.detector.reset();
                    state.detector.record(at);
                    return Observation::Restarted { previous };
                }
                state.detector.record(at);
                Observation::Recorded
            }
            None => {
                let mut detector = PeerDetector::new(&self.config);
                detector.record(at);
                self.peers.insert(
                    peer,
                    PeerState {
                        generation,
                        detector,
                    },
                );
                Observation::Joined
            }
        }
    }

    /// The suspicion level of `peer` at `now`, `None` for an unknown peer.
    pub fn phi<Q>(&self, peer: &Q, now: Timestamp) -> Option<f64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peers.get(peer).map(|s| s.detector.phi(now))
    }

    /// The state of `peer`.
    pub fn get<Q>(&self, peer: &Q) -> Option<&PeerState>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peers.get(peer)
    }

    /// Stops watching `peer` (it left or was garbage-collected).
    pub fn remove<Q>(&mut self, peer: &Q) -> Option<PeerState>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peers.remove(peer)
    }

    /// The observer itself was stalled until `resumed_at`: no peer's
    /// silence during the stall counts against it.
    pub fn observer_resumed(&mut self, resumed_at: Timestamp) {
        for state in self.peers.values_mut() {
            state.detector.observer_resumed(resumed_at);
        }
    }

    /// Every peer and its state, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &PeerState)> {
        self.peers.iter()
    }

    /// Number of peers watched.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True when no peer is watched.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Timestamp {
        Timestamp::from_micros(v * 1000)
    }

    #[test]
    fn generations_reset_and_stale_ones_are_ignored() {
        let mut r: Registry<String> = Registry::new(DetectorConfig::default());
        assert_eq!(r.observe("a".into(), 1, ms(0)), Observation::Joined);
        for i in 1..20 {
            assert_eq!(
                r.observe("a".into(), 1, ms(i * 1000)),
                Observation::Recorded
            );
        }
        assert_eq!(r.get("a").unwrap().detector().window().len(), 19);
        assert!(r.phi("a", ms(40_000)).unwrap() > 8.0);
        assert_eq!(
            r.observe("a".into(), 2, ms(40_000)),
            Observation::Restarted { previous: 1 }
        );
        assert_eq!(r.get("a").unwrap().detector().window().len(), 0);
        assert!(r.phi("a", ms(40_500)).unwrap() < 1.0);
        assert_eq!(r.observe("a".into(), 1, ms(40_600)), Observation::Stale);
        assert!(r.remove("a").is_some());
        assert!(r.phi("a", ms(0)).is_none());
        assert!(r.is_empty());
    }

    #[test]
    fn observer_stall_spares_every_peer() {
        let mut r: Registry<u32> = Registry::new(DetectorConfig::default());
        for p in 0..10 {
            for i in 0..10 {
                r.observe(p, 1, ms(i * 1000));
            }
        }
        r.observer_resumed(ms(60_000));
        for (_, s) in r.iter() {
            assert!(s.detector().phi(ms(60_200)) < 0.5);
        }
    }
}
