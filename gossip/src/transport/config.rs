//! Settings of the QUIC transport.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::TransportError;

/// Settings of a [`Transport`](super::Transport). `Default` gives values
/// fit for a cluster of up to a few thousand nodes gossiping every second;
/// the runtime fills `listen`, the paths, `cluster_name` and `node_id` from
/// the `[node]`, `[cluster]` and `[tls]` sections of the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// UDP address the QUIC endpoint binds (`[node] listen`). Port 0 picks
    /// a free port; see [`Transport::local_addr`](super::Transport::local_addr).
    pub listen: SocketAddr,
    /// PEM bundle of trusted CA certificates (`[tls] ca`).
    pub ca_pem_path: PathBuf,
    /// PEM certificate chain of this node (`[tls] cert`).
    pub cert_pem_path: PathBuf,
    /// PEM private key of this node (`[tls] key`).
    pub key_pem_path: PathBuf,
    /// Cluster name (`[cluster] name`): peers whose certificate names
    /// another cluster are refused.
    pub cluster_name: String,
    /// Our node id (`[node] id`). When set, the certificate must carry it,
    /// checked at bind and at every reload.
    pub node_id: Option<String>,
    /// Refuse certificates without a `phimon://<cluster>/<node>` URI SAN.
    /// Keep on unless the PKI cannot issue URI SANs (see `docs/security.md`).
    pub require_cluster_san: bool,
    /// Largest message accepted or sent, in bytes. Larger incoming frames
    /// are refused after reading at most this many bytes, and counted.
    /// Must hold the largest gossip delta; 1 KiB ..= 16 MiB.
    pub max_message_bytes: usize,
    /// A connection with no traffic for this long is closed, and a peer
    /// address with nothing to send for this long leaves the pool.
    pub idle_timeout: Duration,
    /// Budget for resolving a peer's address and completing the QUIC/TLS
    /// handshake, on both sides.
    pub connect_timeout: Duration,
    /// Budget for one message: writing it, the peer acknowledging it, and,
    /// on the receiving side, reading it in full. A connection that misses
    /// it is considered dead and re-established.
    pub exchange_timeout: Duration,
    /// First delay before reconnecting to an address that failed; doubles
    /// on each further failure (with jitter) up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest delay between reconnection attempts to one address.
    pub backoff_max: Duration,
    /// Most peer addresses with an outgoing connection or queue at once; the
    /// least recently used is evicted beyond this.
    pub max_peers: usize,
    /// Messages queued per peer address while it connects or is slow; when
    /// full the oldest is dropped (and counted).
    pub send_queue_len: usize,
    /// Most incoming connections at once; further ones are refused.
    pub max_incoming_connections: usize,
    /// Most messages (QUIC streams) one incoming connection may have in
    /// flight at once; QUIC flow control makes the sender wait beyond this.
    pub max_incoming_streams: u32,
    /// Received messages buffered for the consumer; when full, new ones are
    /// dropped (and counted) rather than stalling the connections.
    pub receive_queue_len: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 7800)),
            ca_pem_path: PathBuf::from("ca.pem"),
            cert_pem_path: PathBuf::from("node.pem"),
            key_pem_path: PathBuf::from("node.key"),
            cluster_name: "default".into(),
            node_id: None,
            require_cluster_san: true,
            max_message_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            exchange_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            max_peers: 1024,
            send_queue_len: 64,
            max_incoming_connections: 1024,
            max_incoming_streams: 16,
            receive_queue_len: 4096,
        }
    }
}

/// Bounds of [`TransportConfig::max_message_bytes`].
pub const MESSAGE_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=16 * 1024 * 1024;

impl TransportConfig {
    /// Checks every field and reports the first problem with its name.
    pub fn validate(&self) -> Result<(), TransportError> {
        let bad = |field: &'static str, reason: String| {
            Err(TransportError::InvalidConfig { field, reason })
        };
        if !MESSAGE_BYTES_RANGE.contains(&self.max_message_bytes) {
            return bad(
                "max_message_bytes",
                format!(
                    "{} is outside {}..={}",
                    self.max_message_bytes,
                    MESSAGE_BYTES_RANGE.start(),
                    MESSAGE_BYTES_RANGE.end()
                ),
            );
        }
        for (field, d) in [
            ("idle_timeout", self.idle_timeout),
            ("connect_timeout", self.connect_timeout),
            ("exchange_timeout", self.exchange_timeout),
            ("backoff_initial", self.backoff_initial),
            ("backoff_max", self.backoff_max),
        ] {
            if d.is_zero() {
                return bad(field, "must be positive".into());
            }
        }
        // QUIC encodes the idle timeout in milliseconds as a varint < 2^62.
        if self.idle_timeout > Duration::from_secs(86_400) {
            return bad("idle_timeout", "must be at most 24h".into());
        }
        if self.backoff_max < self.backoff_initial {
            return bad(
                "backoff_max",
                "must not be shorter than backoff_initial".into(),
            );
        }
        for (field, n) in [
            ("max_peers", self.max_peers),
            ("send_queue_len", self.send_queue_len),
            ("max_incoming_connections", self.max_incoming_connections),
            ("receive_queue_len", self.receive_queue_len),
        ] {
            if n == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if self.max_incoming_streams == 0 {
            return bad("max_incoming_streams", "must be at least 1".into());
        }
        if self.cluster_name.is_empty() {
            return bad("cluster_name", "must not be empty".into());
        }
        Ok(())
    }
}
