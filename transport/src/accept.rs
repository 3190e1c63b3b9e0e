//! Incoming side: admission of handshakes (flood protection), then
//! authentication, then the connection's task.
//!
//! An outsider without a certificate can start handshakes freely, and may
//! spoof its source address. What it can take is bounded:
//!
//! - when more than `retry_above_handshakes` are in progress, a client
//!   must first prove its address with a QUIC Retry (stateless: no slot,
//!   no crypto beyond one token), so spoofed sources get nowhere;
//! - at most `max_handshakes` handshakes are in progress, at most
//!   `max_handshakes_per_ip` from one IP, each for at most
//!   `handshake_timeout`; beyond that Initials are ignored, before any
//!   crypto is spent;
//! - established connections have their own `max_connections` slots, which
//!   only a verified certificate can take. A member's live connections are
//!   never touched by a flood, and a member that cannot get in can still
//!   be reached over the connection the flooded node dials to it.

use std::net::IpAddr;
use std::sync::Arc;

use crate::stats::HandshakeRefusal;
use crate::transport::{Inner, count_refusal, identity_of, lock};
use crate::{AuthFailure, quic::codes};

/// Accepts handshakes until the endpoint closes.
pub(crate) async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        admit(&inner, incoming);
    }
}

/// Decides on one incoming handshake at once: Retry, ignore, or start it.
fn admit(inner: &Arc<Inner>, incoming: quinn::Incoming) {
    let cfg = &inner.cfg;
    let remote = incoming.remote_address();
    let ip = canonical(remote.ip());
    let in_progress = inner.stats.snapshot_handshakes();
    if !incoming.remote_address_validated()
        && incoming.may_retry()
        && in_progress >= cfg.retry_above_handshakes
    {
        inner.stats.refused(HandshakeRefusal::Retry);
        if let Err(e) = incoming.retry() {
            tracing::debug!(%remote, error = %e, "retry refused by quinn");
        }
        return;
    }
    if in_progress >= cfg.max_handshakes {
        inner.stats.refused(HandshakeRefusal::HandshakeLimit);
        tracing::debug!(%remote, in_progress, "handshake limit reached: ignored");
        incoming.ignore();
        return;
    }
    {
        let mut by_ip = lock(&inner.handshakes_by_ip);
        let n = by_ip.entry(ip).or_insert(0);
        if *n >= cfg.max_handshakes_per_ip {
            drop(by_ip);
            inner.stats.refused(HandshakeRefusal::PerIpLimit);
            tracing::debug!(%remote, "per-source handshake limit reached: ignored");
            incoming.ignore();
            return;
        }
        *n += 1;
    }
    let slot = Slot {
        inner: inner.clone(),
        ip,
        _gauge: inner.stats.handshake_started(),
    };
    inner
        .runtime
        .spawn(handshake(inner.clone(), incoming, slot));
}

/// v4-mapped IPv6 counts as the IPv4 address, so a dual-stack socket
/// cannot be used to double the per-source limit.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A handshake's claim on the per-IP and global counts, released on drop.
struct Slot {
    inner: Arc<Inner>,
    ip: IpAddr,
    _gauge: crate::stats::Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut by_ip = lock(&self.inner.handshakes_by_ip);
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// Completes one incoming handshake within `handshake_timeout`, then serves
/// the connection until it closes.
async fn handshake(inner: Arc<Inner>, incoming: quinn::Incoming, slot: Slot) {
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout(inner.cfg.handshake_timeout, incoming).await {
        Err(_) => {
            inner.stats.refused(HandshakeRefusal::Timeout);
            tracing::debug!(%remote, "incoming handshake timed out");
            return;
        }
        Ok(Err(e)) => {
            count_refusal(&inner, remote, &e);
            return;
        }
        Ok(Ok(conn)) => conn,
    };
    drop(slot);
    let node = match identity_of(&conn, inner.policy()) {
        Ok(id) => id,
        Err(reason) => {
            inner.stats.auth_failure(AuthFailure::BadCertificate);
            tracing::warn!(%remote, %reason, "refused incoming peer identity");
            conn.close(codes::REFUSED, b"identity");
            return;
        }
    };
    if !inner.register(&conn, &node, false, None) {
        return;
    }
    tracing::debug!(%remote, %node, "accepted connection");
    crate::conn::serve(inner, conn, node, None).await;
}
