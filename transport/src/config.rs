//! Settings of the QUIC transport.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::TransportError;

/// Settings of a [`Transport`](crate::Transport). `Default` gives values
/// fit for a fleet of up to a few thousand nodes with a heartbeat every
/// second; the runtime fills `listen`, the paths, `cluster_name` and
/// `node_id` from the `[node]`, `[cluster]` and `[tls]` sections of the
/// config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// UDP address the QUIC endpoint binds (`[node] listen`). Port 0 picks
    /// a free port; see [`Transport::local_addr`](crate::Transport::local_addr).
    pub listen: SocketAddr,
    /// PEM bundle of trusted CA certificates (`[tls] ca`).
    pub ca_pem_path: PathBuf,
    /// PEM certificate chain of this node (`[tls] cert`).
    pub cert_pem_path: PathBuf,
    /// PEM private key of this node (`[tls] key`).
    pub key_pem_path: PathBuf,
    /// Optional certificate revocation list(s) of the CA (`[tls] crl`):
    /// PEM `X509 CRL` blocks or one DER list. Peers whose certificate is
    /// listed are refused in both directions; re-read on every reload.
    pub crl_pem_path: Option<PathBuf>,
    /// Cluster name (`[cluster] name`): peers whose certificate names
    /// another cluster are refused.
    pub cluster_name: String,
    /// Our node id (`[node] id`). When set, the certificate must carry it,
    /// checked at bind and at every reload.
    pub node_id: Option<String>,
    /// Refuse certificates without a `phimon://<cluster>/<node>` URI SAN
    /// (or a SPIFFE ID `spiffe://<trust-domain>/phimon/<cluster>/<node>`).
    /// Keep on unless the PKI cannot issue URI SANs (see `docs/security.md`).
    pub require_cluster_san: bool,
    /// Largest message accepted or sent, in bytes. Larger incoming frames
    /// are refused after reading at most this many bytes, and counted.
    /// Must hold the largest gossip message; 1 KiB ..= 16 MiB.
    pub max_message_bytes: usize,
    /// A connection with no packet either way for this long is closed.
    /// Heartbeats keep the connections to observers up; the gossip core's
    /// probes visit each of a node's ~log2 N fingers every few tens of
    /// seconds, and the default outlasts that cycle so that probes do not
    /// pay a handshake each. 1 s ..= 24 h.
    pub idle_timeout: Duration,
    /// Budget for resolving a peer's address and completing the QUIC/TLS
    /// handshake when we dial.
    pub connect_timeout: Duration,
    /// Budget for an *incoming* handshake, from its first packet to the
    /// verified certificate. Short, because a handshake in progress holds
    /// one of `max_handshakes` slots and an outsider can start them freely;
    /// a few round trips of the slowest link between nodes is enough.
    pub handshake_timeout: Duration,
    /// Budget for reading one incoming message stream in full, and for
    /// writing one outgoing one.
    pub message_timeout: Duration,
    /// First delay before dialling again an address that failed; doubles on
    /// each further failure (with jitter) up to `backoff_max`. Sends to it
    /// meanwhile are dropped and counted.
    pub backoff_initial: Duration,
    /// Longest delay between dial attempts to one address.
    pub backoff_max: Duration,
    /// Most authenticated connections at once, both directions together.
    /// Only peers with a verified certificate take these slots, so a flood
    /// of handshakes cannot push members out.
    pub max_connections: usize,
    /// Most incoming handshakes in progress at once (unauthenticated, so
    /// they never take a connection slot). Beyond this new ones are
    /// refused before any crypto is spent.
    pub max_handshakes: usize,
    /// Most incoming handshakes in progress from one IP address.
    pub max_handshakes_per_ip: usize,
    /// Ask clients to prove their address with a QUIC Retry when more than
    /// this many handshakes are in progress (0: always). A Retry costs a
    /// legitimate client one round trip and makes spoofed source addresses
    /// useless to an attacker.
    pub retry_above_handshakes: usize,
    /// Datagrams and messages held per peer while its connection is being
    /// dialled; beyond this the oldest is dropped (and counted).
    pub dial_queue_len: usize,
    /// Most messages (QUIC streams) one connection may have in flight
    /// towards us; QUIC flow control makes the sender wait beyond this.
    pub max_incoming_streams: u32,
    /// Received datagrams and messages buffered for the consumer; when
    /// full, new ones are dropped (and counted) rather than stalling the
    /// connections.
    pub receive_queue_len: usize,
    /// Ask peers to acknowledge less eagerly (QUIC ACK-frequency
    /// extension): an ACK may then wait for the next packet going back,
    /// such as the peer's own heartbeat, instead of costing a packet of
    /// its own. Both ends must run phimon with it on to take effect.
    pub ack_frequency: bool,
    /// Send datagrams as sealed UDP packets on the node's socket once a
    /// connection is up (one packet per heartbeat instead of two, see
    /// `fastpath` in the crate docs). Off: QUIC datagrams only. Receiving
    /// sealed packets is always on, so nodes with either setting talk.
    pub fast_path: bool,
    /// While datagrams go on the fast path, one of them goes over QUIC at
    /// least this often, with a check of the fast path: this keeps the
    /// connection within `idle_timeout`, finds peers that restarted and
    /// paths that drop sealed packets. At most half of `idle_timeout`.
    pub fast_path_check_interval: Duration,
    /// Give peers a mailbox for their heartbeats: a second UDP socket on
    /// the listen address that is read whenever the node wakes anyway,
    /// with the kernel's arrival times, instead of waking it per packet
    /// (see `mailbox` in the crate docs). Linux only; elsewhere, or off,
    /// heartbeats arrive on the main socket.
    pub mailbox: bool,
    /// The mailbox's UDP port; 0: any free port (announced to each peer
    /// over its connection). Pin it where a firewall must open it.
    pub mailbox_port: u16,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 7800)),
            ca_pem_path: PathBuf::from("ca.pem"),
            cert_pem_path: PathBuf::from("node.pem"),
            key_pem_path: PathBuf::from("node.key"),
            crl_pem_path: None,
            cluster_name: "default".into(),
            node_id: None,
            require_cluster_san: true,
            max_message_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(90),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(2),
            message_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            max_connections: 1024,
            max_handshakes: 256,
            max_handshakes_per_ip: 16,
            retry_above_handshakes: 32,
            dial_queue_len: 16,
            max_incoming_streams: 16,
            receive_queue_len: 4096,
            ack_frequency: true,
            fast_path: true,
            fast_path_check_interval: Duration::from_secs(30),
            mailbox: cfg!(target_os = "linux"),
            mailbox_port: 0,
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
            ("handshake_timeout", self.handshake_timeout),
            ("message_timeout", self.message_timeout),
            ("backoff_initial", self.backoff_initial),
            ("backoff_max", self.backoff_max),
            ("fast_path_check_interval", self.fast_path_check_interval),
        ] {
            if d.is_zero() {
                return bad(field, "must be positive".into());
            }
        }
        // QUIC encodes the idle timeout in milliseconds as a varint < 2^62.
        if self.idle_timeout > Duration::from_secs(86_400)
            || self.idle_timeout < Duration::from_secs(1)
        {
            return bad("idle_timeout", "must be within 1s..=24h".into());
        }
        if self.fast_path_check_interval > self.idle_timeout / 2 {
            return bad(
                "fast_path_check_interval",
                "must be at most half of idle_timeout".into(),
            );
        }
        if self.backoff_max < self.backoff_initial {
            return bad(
                "backoff_max",
                "must not be shorter than backoff_initial".into(),
            );
        }
        for (field, n) in [
            ("max_connections", self.max_connections),
            ("max_handshakes", self.max_handshakes),
            ("max_handshakes_per_ip", self.max_handshakes_per_ip),
            ("dial_queue_len", self.dial_queue_len),
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
