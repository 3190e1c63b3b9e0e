//! Counters of the transport, read by the exporter at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::tls::AuthFailure;

/// Live counters of one [`Transport`](super::Transport). All are monotonic
/// totals except `connections_open`, a gauge. Shared as
/// `Arc<TransportStats>`; read them with [`TransportStats::snapshot`].
#[derive(Debug, Default)]
pub struct TransportStats {
    auth_failures: [AtomicU64; AuthFailure::ALL.len()],
    handshake_failures: AtomicU64,
    connections_open: AtomicU64,
    connections_refused: AtomicU64,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    frame_too_large: AtomicU64,
    send_dropped: AtomicU64,
    receive_dropped: AtomicU64,
    stream_timeouts: AtomicU64,
    delivery_timeouts: AtomicU64,
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
    /// Connection attempts (either direction) that failed for a reason
    /// other than our refusing the peer: unreachable, timed out, the peer
    /// refusing *us* (`phimon_transport_handshake_failures_total`).
    pub handshake_failures: u64,
    /// Connections open now, incoming plus outgoing
    /// (`phimon_transport_connections_open`).
    pub connections_open: u64,
    /// Incoming connections refused because `max_incoming_connections`
    /// were open.
    pub connections_refused: u64,
    /// Messages received and delivered to the consumer
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
    /// Outgoing messages dropped: queue full, peer unreachable, write
    /// failed, or identity mismatch (`phimon_transport_send_dropped_total`).
    pub send_dropped: u64,
    /// Received messages dropped because the consumer fell behind.
    pub receive_dropped: u64,
    /// Incoming messages not completed within `exchange_timeout`.
    pub stream_timeouts: u64,
    /// Outgoing messages not acknowledged within `exchange_timeout` (their
    /// connection is then re-established).
    pub delivery_timeouts: u64,
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
            handshake_failures: self.handshake_failures.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            connections_refused: self.connections_refused.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            frame_too_large: self.frame_too_large.load(Relaxed),
            send_dropped: self.send_dropped.load(Relaxed),
            receive_dropped: self.receive_dropped.load(Relaxed),
            stream_timeouts: self.stream_timeouts.load(Relaxed),
            delivery_timeouts: self.delivery_timeouts.load(Relaxed),
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

    pub(crate) fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures[reason.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn handshake_failure(&self) {
        self.handshake_failures.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    /// Counts a connection as open until the returned guard drops.
    pub(crate) fn connection_opened(self: &std::sync::Arc<Self>) -> OpenConnection {
        self.connections_open.fetch_add(1, Relaxed);
        OpenConnection(self.clone())
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn sent(&self, bytes: usize) {
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

    pub(crate) fn stream_timeout(&self) {
        self.stream_timeouts.fetch_add(1, Relaxed);
    }

    pub(crate) fn delivery_timeout(&self) {
        self.delivery_timeouts.fetch_add(1, Relaxed);
    }
}

/// Keeps `connections_open` counted while a connection lives.
pub(crate) struct OpenConnection(std::sync::Arc<TransportStats>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Relaxed);
    }
}
