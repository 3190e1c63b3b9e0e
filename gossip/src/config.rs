//! Gossip settings.

use phimon_detector::DetectorConfig;
use std::time::Duration;

/// Settings of one gossip core. Plain data; every default lives in
/// [`Default`], and [`validate`](Self::validate) lists every problem.
///
/// The runtime builds it from the `[cluster]`, `[gossip]` and `[detector]`
/// sections of the configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct GossipConfig {
    /// Name of the cluster (default `"phimon"`). Messages carrying another
    /// name are rejected, so two clusters sharing a CA cannot merge.
    pub cluster_name: String,
    /// Length of a gossip round (default 1 s): the node's own heartbeat
    /// counter advances once per round. Also the detector's cold-start
    /// prior; see [`detector`](Self::detector).
    pub interval: Duration,
    /// Live peers contacted per round (default 3). Dissemination takes
    /// about log_(fanout+1)(N) rounds; cost grows linearly with it.
    pub fanout: usize,
    /// How long a dead, left or never-confirmed node is remembered before
    /// it is forgotten (default 24 h). While remembered, a dead node is
    /// contacted now and then so partitions heal.
    pub dead_grace: Duration,
    /// Addresses (`host:port`, opaque here: the transport resolves them)
    /// contacted to join and, now and then, to heal partitions.
    pub seeds: Vec<String>,
    /// Most nodes known at once, this node included (default 10,000).
    /// A new id beyond the cap displaces a node that is not alive
    /// (never confirmed, left or dead, oldest first) or is dropped.
    pub max_nodes: usize,
    /// Most key/value bytes (sum of key and value lengths) one node may
    /// publish (default 4 KiB). Enforced by the owner on
    /// [`set_kv`](crate::Gossip::set_kv) and by every receiver.
    pub max_kv_bytes_per_node: usize,
    /// Largest encoded message, version byte included (default 60 KiB:
    /// below the 64 KiB UDP datagram limit, well below a QUIC stream
    /// frame limit). Deltas that do not fit are sent stalest first over
    /// later rounds, digests are sent in rotating slices.
    pub max_message_bytes: usize,
    /// Detector settings for the local judgement of every peer. Set
    /// `first_heartbeat_estimate` to [`interval`](Self::interval).
    pub detector: DetectorConfig,
    /// phi at or above which a peer is judged dead locally (default 8).
    pub phi_threshold: f64,
    /// Judge every watched peer with a local phi detector (default true).
    ///
    /// Only a simulator turns it off, to measure detection at a sample of
    /// observer nodes while every other core still gossips in full (a
    /// detector per node pair is most of a large simulation's time and
    /// memory). Off, the core never judges a peer dead: no
    /// [`NodeDead`](crate::Event::NodeDead) or
    /// [`NodeAlive`](crate::Event::NodeAlive), no phi, and a crashed peer
    /// stays alive in its view (still chosen as a gossip partner, never
    /// forgotten). Membership, dissemination, joins, leaves, restarts and
    /// heartbeat events are unchanged. `phimon run` always sets it (there
    /// is no configuration key for it).
    pub local_detection: bool,
    /// Emit [`Event::HeartbeatObserved`](crate::Event::HeartbeatObserved)
    /// for every observed heartbeat (default true). The simulator turns it
    /// off: it reads phi from the core and would otherwise drain a
    /// million events per simulated second.
    pub heartbeat_events: bool,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            cluster_name: "phimon".to_owned(),
            interval: Duration::from_secs(1),
            fanout: 3,
            dead_grace: Duration::from_secs(24 * 3600),
            seeds: Vec::new(),
            max_nodes: 10_000,
            max_kv_bytes_per_node: 4 * 1024,
            max_message_bytes: 60 * 1024,
            detector: DetectorConfig::default(),
            phi_threshold: 8.0,
            heartbeat_events: true,
            local_detection: true,
        }
    }
}

impl GossipConfig {
    /// Smallest accepted [`max_message_bytes`](Self::max_message_bytes):
    /// room for the envelope and one full node state with its key/values.
    pub const MIN_MESSAGE_BYTES: usize = 2 * 1024;

    /// Every problem with these settings, each prefixed with its field
    /// name; empty when the settings are usable.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.cluster_name.is_empty() || self.cluster_name.len() > 255 {
            problems.push("cluster_name: must be 1..=255 bytes".to_owned());
        }
        if self.interval < Duration::from_millis(1) {
            problems.push("interval: must be at least 1ms".to_owned());
        }
        if self.fanout == 0 {
            problems.push("fanout: must be at least 1".to_owned());
        }
        if self.dead_grace < self.interval {
            problems.push("dead_grace: must be at least interval".to_owned());
        }
        if self.max_nodes < 2 {
            problems.push("max_nodes: must be at least 2".to_owned());
        }
        if self.max_message_bytes < Self::MIN_MESSAGE_BYTES {
            problems.push(format!(
                "max_message_bytes: must be at least {}",
                Self::MIN_MESSAGE_BYTES
            ));
        }
        // A node's full state must fit one message with room to spare,
        // or it could never be sent at all.
        if self.max_kv_bytes_per_node > self.max_message_bytes / 4 {
            problems.push(
                "max_kv_bytes_per_node: must be at most a quarter of max_message_bytes".to_owned(),
            );
        }
        if !(self.phi_threshold.is_finite() && self.phi_threshold > 0.5) {
            problems.push("phi_threshold: must be a number > 0.5".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_problems_are_all_listed() {
        assert!(GossipConfig::default().validate().is_empty());
        assert!(GossipConfig::default().local_detection);
        let bad = GossipConfig {
            fanout: 0,
            max_message_bytes: 10,
            phi_threshold: f64::NAN,
            ..GossipConfig::default()
        };
        let p = bad.validate();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p.iter().any(|s| s.starts_with("fanout")));
        assert!(p.iter().any(|s| s.starts_with("max_kv_bytes_per_node")));
    }
}
