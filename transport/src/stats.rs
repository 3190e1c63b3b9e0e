//! Counters of the transport, read by the exporter at scrape time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::tls::AuthFailure;

/// Why an incoming handshake was turned away before it could authenticate
/// (flood protection). Counted apart from [`AuthFailure`], which is about
/// certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeRefusal {
    /// A QUIC Retry was sent to make the client prove its address (not a
    /// refusal for a genuine client, which comes back at once).
    Retry,
    /// `max_handshakes` handshakes were already in progress.
    HandshakeLimit,
    /// `max_handshakes_per_ip` handshakes from this IP were in progress.
    PerIpLimit,
    /// The handshake did not complete within `handshake_timeout`.
    Timeout,
    /// The peer authenticated, but `max_connections` were open.
    ConnectionLimit,
}

impl HandshakeRefusal {
    /// Every reason, in a fixed order.
    pub const ALL: [HandshakeRefusal; 5] = [
        HandshakeRefusal::Retry,
        HandshakeRefusal::HandshakeLimit,
        HandshakeRefusal::PerIpLimit,
        HandshakeRefusal::Timeout,
        HandshakeRefusal::ConnectionLimit,
    ];

    /// Stable snake_case label, e.g. for
    /// `phimon_transport_handshakes_refused_total{reason}`.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeRefusal::Retry => "retry",
            HandshakeRefusal::HandshakeLimit => "handshake_limit",
            HandshakeRefusal::PerIpLimit => "per_ip_limit",
            HandshakeRefusal::Timeout => "timeout",
            HandshakeRefusal::ConnectionLimit => "connection_limit",
        }
    }

    fn index(self) -> usize {
        match self {
            HandshakeRefusal::Retry => 0,
            HandshakeRefusal::HandshakeLimit => 1,
            HandshakeRefusal::PerIpLimit => 2,
            HandshakeRefusal::Timeout => 3,
            HandshakeRefusal::ConnectionLimit => 4,
        }
    }
}

impl std::fmt::Display for HandshakeRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a received datagram was dropped before delivery. All but
/// `Malformed` concern the fast path (sealed UDP packets, see
/// [`Transport::datagram_path`](crate::Transport::datagram_path)); none
/// is ever delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DatagramDrop {
    /// Not a well-formed packet or frame: wrong length, type or version.
    Malformed,
    /// A sealed packet (or notice) naming a key id we do not hold: noise,
    /// or a packet of a connection that ended (e.g. before a restart).
    UnknownKey,
    /// A known key id from another address than its connection's.
    WrongSource,
    /// The authentication tag did not verify: altered or forged.
    BadMac,
    /// A counter already seen, or older than the replay window.
    Replay,
}

impl DatagramDrop {
    /// Every reason, in a fixed order.
    pub const ALL: [DatagramDrop; 5] = [
        DatagramDrop::Malformed,
        DatagramDrop::UnknownKey,
        DatagramDrop::WrongSource,
        DatagramDrop::BadMac,
        DatagramDrop::Replay,
    ];

    /// Stable snake_case label, e.g. for
    /// `phimon_transport_datagrams_dropped_total{reason}`.
    pub fn as_str(self) -> &'static str {
        match self {
            DatagramDrop::Malformed => "malformed",
            DatagramDrop::UnknownKey => "unknown_key",
            DatagramDrop::WrongSource => "wrong_source",
            DatagramDrop::BadMac => "bad_mac",
            DatagramDrop::Replay => "replay",
        }
    }

    fn index(self) -> usize {
        match self {
            DatagramDrop::Malformed => 0,
            DatagramDrop::UnknownKey => 1,
            DatagramDrop::WrongSource => 2,
            DatagramDrop::BadMac => 3,
            DatagramDrop::Replay => 4,
        }
    }
}

impl std::fmt::Display for DatagramDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Live counters of one [`Transport`](crate::Transport). All are monotonic
/// totals except `connections_open` and `handshakes_in_progress`, gauges.
/// Shared as `Arc<TransportStats>`; read them with
/// [`TransportStats::snapshot`].
#[derive(Debug, Default)]
pub struct TransportStats {
    auth_failures: [AtomicU64; AuthFailure::ALL.len()],
    refusals: [AtomicU64; HandshakeRefusal::ALL.len()],
    handshake_failures: AtomicU64,
    connections_open: AtomicU64,
    handshakes_in_progress: AtomicU64,
    datagrams_in: AtomicU64,
    datagram_bytes_in: AtomicU64,
    datagrams_out: AtomicU64,
    datagram_bytes_out: AtomicU64,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    frame_too_large: AtomicU64,
    send_dropped: AtomicU64,
    receive_dropped: AtomicU64,
    stream_timeouts: AtomicU64,
    closed_on_reload: AtomicU64,
    datagram_drops: [AtomicU64; DatagramDrop::ALL.len()],
    fast_path_out: AtomicU64,
    fast_path_in: AtomicU64,
    fast_path_fallbacks: AtomicU64,
    mailbox_fallbacks: AtomicU64,
    notices_out: AtomicU64,
    notices_in: AtomicU64,
    udp_packets_out: AtomicU64,
    udp_packets_in: AtomicU64,
}

/// A point-in-time copy of [`TransportStats`]. Suggested metric names are
/// given per field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Peers refused, by reason (`phimon_auth_failures_total{reason}`),
    /// in the order of [`AuthFailure::ALL`].
    pub auth_failures_by_reason: Vec<(AuthFailure, u64)>,
    /// Sum of `auth_failures_by_reason` (`phimon_auth_failures_total`).
    pub auth_failures: u64,
    /// Incoming handshakes turned away or challenged before they could
    /// authenticate, by reason
    /// (`phimon_transport_handshakes_refused_total{reason}`), in the order
    /// of [`HandshakeRefusal::ALL`].
    pub refusals_by_reason: Vec<(HandshakeRefusal, u64)>,
    /// Connection attempts (either direction) that failed for a reason
    /// other than our refusing the peer's certificate: unreachable, timed
    /// out, the peer refusing *us*
    /// (`phimon_transport_handshake_failures_total`).
    pub handshake_failures: u64,
    /// Authenticated connections open now, both directions
    /// (`phimon_transport_connections_open`).
    pub connections_open: u64,
    /// Incoming handshakes in progress now
    /// (`phimon_transport_handshakes_in_progress`).
    pub handshakes_in_progress: u64,
    /// Datagrams received and delivered
    /// (`phimon_transport_datagrams_total{direction="in"}`).
    pub datagrams_in: u64,
    /// Payload bytes of `datagrams_in`.
    pub datagram_bytes_in: u64,
    /// Datagrams sent: sealed on the fast path, or handed to QUIC
    /// (`phimon_transport_datagrams_total{direction="out"}`).
    pub datagrams_out: u64,
    /// Payload bytes of `datagrams_out`.
    pub datagram_bytes_out: u64,
    /// Messages received and delivered
    /// (`phimon_gossip_messages_total{direction="in"}`).
    pub messages_in: u64,
    /// Payload bytes of `messages_in` (`phimon_gossip_bytes_total{direction="in"}`).
    pub bytes_in: u64,
    /// Messages written to a peer (`phimon_gossip_messages_total{direction="out"}`).
    pub messages_out: u64,
    /// Payload bytes of `messages_out`.
    pub bytes_out: u64,
    /// Incoming frames over `max_message_bytes`, refused
    /// (`phimon_transport_frame_too_large_total`).
    pub frame_too_large: u64,
    /// Outgoing datagrams and messages dropped: dial queue full, peer
    /// unreachable or backing off, write failed, identity mismatch
    /// (`phimon_transport_send_dropped_total`).
    pub send_dropped: u64,
    /// Received datagrams and messages dropped because the consumer fell
    /// behind.
    pub receive_dropped: u64,
    /// Incoming messages not completed within `message_timeout`.
    pub stream_timeouts: u64,
    /// Established connections closed by a reload because the peer's
    /// certificate no longer verifies against the new CA or CRL
    /// (`phimon_transport_connections_closed_on_reload_total`).
    pub closed_on_reload: u64,
    /// Received datagrams dropped before delivery, by reason
    /// (`phimon_transport_datagrams_dropped_total{reason}`), in the order
    /// of [`DatagramDrop::ALL`].
    pub datagram_drops_by_reason: Vec<(DatagramDrop, u64)>,
    /// Of `datagrams_out`, those sent as sealed UDP packets (the fast
    /// path) rather than QUIC datagrams
    /// (`phimon_transport_fast_path_datagrams_total{direction="out"}`).
    pub fast_path_out: u64,
    /// Of `datagrams_in`, those that arrived on the fast path.
    pub fast_path_in: u64,
    /// Connections whose peer reported that our sealed packets do not
    /// arrive (or that it cannot hold the key), which then fell back to
    /// QUIC datagrams (`phimon_transport_fast_path_fallbacks_total`).
    /// Should stay 0; see the warning logged with it.
    pub fast_path_fallbacks: u64,
    /// Connections whose peer reported that our sealed heartbeats do not
    /// reach its mailbox port, which then sealed them to its main port
    /// (`phimon_transport_mailbox_fallbacks_total`). Should stay 0: a
    /// firewall that opens only the main port?
    pub mailbox_fallbacks: u64,
    /// Notices sent: answers to sealed packets naming a key we do not
    /// hold (rate-limited), which make a peer still using a connection
    /// from before our restart check it at once.
    pub notices_out: u64,
    /// Notices received that named one of our live keys.
    pub notices_in: u64,
    /// UDP packets written to the socket: QUIC's and the fast path's
    /// (`phimon_transport_udp_packets_total{direction="out"}`).
    pub udp_packets_out: u64,
    /// UDP packets read from the socket, both kinds.
    pub udp_packets_in: u64,
}

impl StatsSnapshot {
    /// The count of one datagram drop reason.
    pub fn datagram_drops(&self, reason: DatagramDrop) -> u64 {
        self.datagram_drops_by_reason
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// The count of one handshake refusal reason.
    pub fn refusals(&self, reason: HandshakeRefusal) -> u64 {
        self.refusals_by_reason
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

impl TransportStats {
    /// Copies every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let by_reason: Vec<(AuthFailure, u64)> = AuthFailure::ALL
            .iter()
            .map(|r| (*r, self.auth_failures[r.index()].load(Relaxed)))
            .collect();
        StatsSnapshot {
            auth_failures: by_reason.iter().map(|(_, n)| n).sum(),
            auth_failures_by_reason: by_reason,
            refusals_by_reason: HandshakeRefusal::ALL
                .iter()
                .map(|r| (*r, self.refusals[r.index()].load(Relaxed)))
                .collect(),
            handshake_failures: self.handshake_failures.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            handshakes_in_progress: self.handshakes_in_progress.load(Relaxed),
            datagrams_in: self.datagrams_in.load(Relaxed),
            datagram_bytes_in: self.datagram_bytes_in.load(Relaxed),
            datagrams_out: self.datagrams_out.load(Relaxed),
            datagram_bytes_out: self.datagram_bytes_out.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            frame_too_large: self.frame_too_large.load(Relaxed),
            send_dropped: self.send_dropped.load(Relaxed),
            receive_dropped: self.receive_dropped.load(Relaxed),
            stream_timeouts: self.stream_timeouts.load(Relaxed),
            closed_on_reload: self.closed_on_reload.load(Relaxed),
            datagram_drops_by_reason: DatagramDrop::ALL
                .iter()
                .map(|r| (*r, self.datagram_drops[r.index()].load(Relaxed)))
                .collect(),
            fast_path_out: self.fast_path_out.load(Relaxed),
            fast_path_in: self.fast_path_in.load(Relaxed),
            fast_path_fallbacks: self.fast_path_fallbacks.load(Relaxed),
            mailbox_fallbacks: self.mailbox_fallbacks.load(Relaxed),
            notices_out: self.notices_out.load(Relaxed),
            notices_in: self.notices_in.load(Relaxed),
            udp_packets_out: self.udp_packets_out.load(Relaxed),
            udp_packets_in: self.udp_packets_in.load(Relaxed),
        }
    }

    /// Peers refused for `reason` so far.
    pub fn auth_failures(&self, reason: AuthFailure) -> u64 {
        self.auth_failures[reason.index()].load(Relaxed)
    }

    /// Peers refused for any reason so far.
    pub fn auth_failures_total(&self) -> u64 {
        self.auth_failures.iter().map(|a| a.load(Relaxed)).sum()
    }

    /// Handshakes turned away for `reason` so far.
    pub fn refusals(&self, reason: HandshakeRefusal) -> u64 {
        self.refusals[reason.index()].load(Relaxed)
    }

    pub(crate) fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures[reason.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn refused(&self, reason: HandshakeRefusal) {
        self.refusals[reason.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn handshake_failure(&self) {
        self.handshake_failures.fetch_add(1, Relaxed);
    }

    /// Counts a connection as open until the returned guard drops.
    pub(crate) fn connection_opened(self: &Arc<Self>) -> Gauge {
        self.connections_open.fetch_add(1, Relaxed);
        Gauge(self.clone(), GaugeKind::Connections)
    }

    /// Counts a handshake as in progress until the returned guard drops.
    pub(crate) fn handshake_started(self: &Arc<Self>) -> Gauge {
        self.handshakes_in_progress.fetch_add(1, Relaxed);
        Gauge(self.clone(), GaugeKind::Handshakes)
    }

    pub(crate) fn snapshot_handshakes(&self) -> usize {
        usize::try_from(self.handshakes_in_progress.load(Relaxed)).unwrap_or(usize::MAX)
    }

    pub(crate) fn datagram_received(&self, bytes: usize) {
        self.datagrams_in.fetch_add(1, Relaxed);
        self.datagram_bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn datagram_sent(&self, bytes: usize) {
        self.datagrams_out.fetch_add(1, Relaxed);
        self.datagram_bytes_out.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn message_received(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn message_sent(&self, bytes: usize) {
        self.messages_out.fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn frame_too_large(&self) {
        self.frame_too_large.fetch_add(1, Relaxed);
    }

    pub(crate) fn send_dropped(&self, n: usize) {
        self.send_dropped.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn receive_dropped(&self) {
        self.receive_dropped.fetch_add(1, Relaxed);
    }

    pub(crate) fn receive_dropped_n(&self, n: u64) {
        self.receive_dropped.fetch_add(n, Relaxed);
    }

    pub(crate) fn mailbox_fallback(&self) {
        self.mailbox_fallbacks.fetch_add(1, Relaxed);
    }

    pub(crate) fn stream_timeout(&self) {
        self.stream_timeouts.fetch_add(1, Relaxed);
    }

    pub(crate) fn closed_on_reload(&self) {
        self.closed_on_reload.fetch_add(1, Relaxed);
    }

    pub(crate) fn datagram_dropped(&self, reason: DatagramDrop) {
        self.datagram_drops[reason.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn fast_path_sent(&self) {
        self.fast_path_out.fetch_add(1, Relaxed);
    }

    pub(crate) fn fast_path_received(&self) {
        self.fast_path_in.fetch_add(1, Relaxed);
    }

    pub(crate) fn fast_path_fallback(&self) {
        self.fast_path_fallbacks.fetch_add(1, Relaxed);
    }

    pub(crate) fn notice_sent(&self) {
        self.notices_out.fetch_add(1, Relaxed);
    }

    pub(crate) fn notice_received(&self) {
        self.notices_in.fetch_add(1, Relaxed);
    }

    pub(crate) fn udp_sent(&self, packets: usize) {
        self.udp_packets_out.fetch_add(packets as u64, Relaxed);
    }

    pub(crate) fn udp_received(&self, packets: usize) {
        self.udp_packets_in.fetch_add(packets as u64, Relaxed);
    }
}

#[derive(Debug)]
enum GaugeKind {
    Connections,
    Handshakes,
}

/// Keeps a gauge counted while the thing it counts lives.
#[derive(Debug)]
pub(crate) struct Gauge(Arc<TransportStats>, GaugeKind);

impl Drop for Gauge {
    fn drop(&mut self) {
        match self.1 {
            GaugeKind::Connections => self.0.connections_open.fetch_sub(1, Relaxed),
            GaugeKind::Handshakes => self.0.handshakes_in_progress.fetch_sub(1, Relaxed),
        };
    }
}
