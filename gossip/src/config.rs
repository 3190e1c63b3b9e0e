//! Settings of the protocol core.

use phimon_detector::DetectorConfig;
use std::time::Duration;

/// Default observers per node (`gossip.observers`): see
/// [`GossipConfig::observers`].
pub const DEFAULT_OBSERVERS: usize = 3;

/// Settings of one [`Gossip`](crate::Gossip) core. Plain data; every
/// default lives in [`Default`]. The runtime fills it from the `[cluster]`,
/// `[gossip]`, `[detector]` and `[alert]` sections of the configuration,
/// which validates the values; the core clamps what would be unusable.
#[derive(Debug, Clone, PartialEq)]
pub struct GossipConfig {
    /// Cluster name: part of every signed record, so a record is never
    /// valid in another cluster (default `"default"`).
    pub cluster: String,
    /// Heartbeat period (default 1 s): every interval a node sends a
    /// heartbeat to each of its observers; every 5 it probes the table of
    /// one of its fingers (live members at ring distances 4, 8, 16, …),
    /// every 10 one it does not count as live.
    pub interval: Duration,
    /// Peers a new record is pushed to at once (default 3; at least
    /// ln N + 1 in a fleet of N). Larger values spread news in fewer hops
    /// at a cost in messages per change.
    pub fanout: usize,
    /// Observers per node, `k` (default 3): the live members that follow a
    /// node on the ring receive its heartbeats, and a majority of them
    /// must suspect it before the fleet does. In a fleet of at most k + 1
    /// nodes everyone observes everyone. Larger values survive more
    /// simultaneous observer failures and hostile observers; each costs a
    /// heartbeat per node per interval.
    pub observers: usize,
    /// How long a suspected, leaving or left node is remembered before it
    /// is forgotten (default 24 h).
    pub dead_grace: Duration,
    /// Addresses contacted to join, and now and then to heal partitions.
    pub seeds: Vec<String>,
    /// Most records held (default 100,000): a new node beyond it is
    /// refused and counted.
    pub max_nodes: usize,
    /// Most key/value bytes a node may publish (default 4 KiB).
    pub max_kv_bytes: usize,
    /// Largest reliable message, in bytes (default 60 KiB): digests and
    /// records are split to fit.
    pub max_message_bytes: usize,
    /// Detector settings for every subject.
    pub detector: DetectorConfig,
    /// phi at or above which a subject is suspected here.
    pub threshold: f64,
    /// phi below which a suspected subject is trusted again (hysteresis).
    pub resolve_threshold: f64,
    /// How long phi must stay at or above the threshold before suspicion
    /// (`alert.for`, default 0).
    pub for_: Duration,
    /// Emit [`Event::Heartbeat`](crate::Event::Heartbeat) for every
    /// recorded heartbeat (default true; simulators turn it off).
    pub heartbeat_events: bool,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            cluster: "default".into(),
            interval: Duration::from_secs(1),
            fanout: 3,
            observers: DEFAULT_OBSERVERS,
            dead_grace: Duration::from_secs(24 * 3600),
            seeds: Vec::new(),
            max_nodes: 100_000,
            max_kv_bytes: 4 * 1024,
            max_message_bytes: 60 * 1024,
            detector: DetectorConfig::default(),
            threshold: 8.0,
            resolve_threshold: 4.0,
            for_: Duration::ZERO,
            heartbeat_events: true,
        }
    }
}

impl GossipConfig {
    /// Smallest usable `max_message_bytes`: one record of the largest
    /// size with room for the frame.
    pub const MIN_MESSAGE_BYTES: usize = 48 * 1024;

    /// The settings with unusable values raised to the nearest usable one.
    pub(crate) fn clamped(mut self) -> Self {
        self.interval = self.interval.max(Duration::from_millis(1));
        self.fanout = self.fanout.max(1);
        self.observers = self.observers.clamp(1, 64);
        self.max_nodes = self.max_nodes.max(2);
        self.max_message_bytes = self.max_message_bytes.max(Self::MIN_MESSAGE_BYTES);
        self.max_kv_bytes = self.max_kv_bytes.min(16 * 1024);
        self.dead_grace = self.dead_grace.max(self.interval);
        if self.resolve_threshold.partial_cmp(&self.threshold) != Some(std::cmp::Ordering::Less) {
            self.resolve_threshold = self.threshold / 2.0;
        }
        self
    }
}
