//! The configuration schema and its defaults.

use phimon_detector::{DetectorConfig, Distribution};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A whole phimon configuration file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This node's identity and addresses.
    pub node: NodeSection,
    /// The cluster this node joins.
    pub cluster: ClusterSection,
    /// Mutual-TLS material.
    pub tls: TlsSection,
    /// Gossip timing and fan-out.
    pub gossip: GossipSection,
    /// Failure detector settings.
    pub detector: DetectorSection,
    /// The operator HTTP endpoint.
    pub http: HttpSection,
    /// Paging.
    pub alert: AlertSection,
}

/// `[node]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Node id (required); must equal the DNS subject alternative name of
    /// the node's certificate.
    pub id: String,
    /// QUIC (UDP) listen address.
    pub listen: SocketAddr,
    /// Address other nodes use to reach this one ("host:port"), when it
    /// differs from `listen` (NAT, 0.0.0.0 listeners, containers).
    pub advertise: Option<String>,
    /// Directory for the generation counter and the alert outbox.
    pub data_dir: PathBuf,
    /// Give peers a heartbeat mailbox: a second UDP port on the listen
    /// address, read when the node wakes anyway, so that heartbeats do not
    /// wake it (Linux). Off: heartbeats arrive on the listen port.
    pub mailbox: bool,
    /// The mailbox's UDP port; 0: any free port (peers learn it over their
    /// connection). Pin it where a firewall must let it through.
    pub mailbox_port: u16,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            id: String::new(),
            listen: SocketAddr::from(([0, 0, 0, 0], 7800)),
            advertise: None,
            data_dir: PathBuf::from("/var/lib/phimon"),
            mailbox: true,
            mailbox_port: 0,
        }
    }
}

/// `[cluster]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// Cluster name; nodes of other clusters are refused.
    pub name: String,
    /// Addresses ("host:port", IP or DNS name) contacted to join and to
    /// heal partitions. Re-resolved on every reconnect.
    pub seeds: Vec<String>,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            name: "default".into(),
            seeds: Vec::new(),
        }
    }
}

/// `[tls]`: all three paths are required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM file of the cluster CA that signs every node certificate.
    pub ca: PathBuf,
    /// PEM certificate (chain) of this node.
    pub cert: PathBuf,
    /// PEM private key of this node.
    pub key: PathBuf,
    /// Optional certificate revocation list(s) of the cluster CA (PEM or
    /// DER): peers and records whose certificate it revokes are refused,
    /// and established connections are re-checked when it changes.
    pub crl: Option<PathBuf>,
    /// Refuse peers whose certificate names no cluster (no
    /// `phimon://<cluster>/<node-id>` URI SAN, nor a SPIFFE ID under
    /// `/phimon/`). Turn off only for a PKI that cannot issue URI SANs and
    /// whose CA serves this one cluster alone: the CA then is all that
    /// keeps other clusters out.
    pub require_cluster_san: bool,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            ca: PathBuf::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            crl: None,
            require_cluster_san: true,
        }
    }
}

/// `[gossip]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GossipSection {
    /// Heartbeat and gossip round interval (10ms..=1h).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Peers a new record is pushed to at once (1..=32; at least ln N + 1
    /// are used in a fleet of N).
    pub fanout: usize,
    /// Observers per node, `k` (1..=64): the live nodes after it on the
    /// ring receive its heartbeats, and a majority of them must suspect it
    /// before the fleet does. Everyone observes everyone in a fleet of at
    /// most k + 1 nodes.
    pub observers: usize,
    /// How long a dead node is remembered before it is forgotten.
    #[serde(with = "humantime_serde")]
    pub dead_grace: Duration,
}

impl Default for GossipSection {
    fn default() -> Self {
        GossipSection {
            interval: Duration::from_secs(1),
            fanout: 3,
            observers: phimon_gossip::DEFAULT_OBSERVERS,
            dead_grace: Duration::from_secs(24 * 3600),
        }
    }
}

/// `[detector]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorSection {
    /// phi at or above which a peer is suspected (> 0). 8 means a false
    /// suspicion once in 10^8 intervals if the model were exact.
    pub threshold: f64,
    /// Inter-arrival intervals kept per peer (1..=100000).
    pub window: usize,
    /// Floor for the standard deviation of intervals (> 0).
    #[serde(with = "humantime_serde")]
    pub min_std_dev: Duration,
    /// Silence that is not suspicious at all, added to the mean.
    #[serde(with = "humantime_serde")]
    pub acceptable_pause: Duration,
    /// `adaptive` (default), `normal` or `exponential`.
    #[serde(with = "distribution_serde")]
    pub distribution: Distribution,
}

impl Default for DetectorSection {
    fn default() -> Self {
        let d = DetectorConfig::default();
        DetectorSection {
            threshold: 8.0,
            window: d.window,
            min_std_dev: d.min_std_dev,
            acceptable_pause: d.acceptable_pause,
            distribution: d.distribution,
        }
    }
}

impl DetectorSection {
    /// The detector settings, with `heartbeat_interval` (the gossip
    /// interval, or a trace's interval) as the cold-start prior.
    pub fn detector_config(&self, heartbeat_interval: Duration) -> DetectorConfig {
        DetectorConfig {
            window: self.window,
            min_std_dev: self.min_std_dev,
            acceptable_pause: self.acceptable_pause,
            distribution: self.distribution,
            first_heartbeat_estimate: heartbeat_interval,
        }
    }
}

mod distribution_serde {
    use phimon_detector::Distribution;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Distribution, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(d.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Distribution, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Listen address of /metrics, /healthz, /readyz and /v1/peers.
    pub listen: SocketAddr,
    /// Export per-peer series for every peer instead of only the peers
    /// this node is a designated observer of. Fine for small fleets;
    /// fleet-wide series grow as N^2 with it.
    pub export_all_peers: bool,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            export_all_peers: false,
        }
    }
}

/// `[alert]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSection {
    /// phi must stay at or above the threshold this long before a page.
    #[serde(rename = "for", with = "humantime_serde")]
    pub for_: Duration,
    /// phi must fall below this to resolve (hysteresis; < threshold).
    pub resolve_threshold: f64,
    /// Where pages go.
    #[serde(rename = "webhook")]
    pub webhooks: Vec<WebhookSection>,
}

impl Default for AlertSection {
    fn default() -> Self {
        AlertSection {
            for_: Duration::ZERO,
            resolve_threshold: 4.0,
            webhooks: Vec::new(),
        }
    }
}

/// Payload format of a webhook: phimon-alert's type, which the pager
/// renders, so a format added there is a valid `format` value here.
pub use phimon_alert::WebhookFormat;

/// One `[[alert.webhook]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// Unique name, used in metrics labels.
    pub name: String,
    /// Receiver URL; `https://` unless `allow_insecure_http = true`.
    pub url: String,
    /// Payload format.
    #[serde(default)]
    pub format: WebhookFormat,
    /// File holding the secret (HMAC key for `generic`, routing key for
    /// `pagerduty`). `whsec_<base64>` secrets are base64-decoded.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Environment variable holding the secret, instead of a file.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Permit a plain `http://` URL (test receivers, a local Alertmanager).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Per-attempt timeout.
    #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(10)
}
