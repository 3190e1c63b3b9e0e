//! Outgoing side: dialling an address in the background, handing the
//! queued datagrams and messages to the new connection, and backing off
//! after failures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use phimon_gossip::NodeId;
use rand::Rng;

use crate::quic::codes;
use crate::tls::AuthFailure;
use crate::transport::{Channel, Inner, Outgoing, count_refusal, identity_of, lock};

/// Dials `addr`, then serves the connection until it closes. Started by a
/// send to an address with no connection and no dial in progress.
pub(crate) async fn dial(inner: Arc<Inner>, addr: String) {
    match connect(&inner, &addr).await {
        Ok((conn, node)) if inner.register(&conn, &node, true, Some(&addr)) => {
            let queue = lock(&inner.state)
                .dials
                .remove(&addr)
                .map(|d| d.queue)
                .unwrap_or_default();
            let mut mismatched = 0;
            for o in queue {
                if o.expected.as_ref().is_some_and(|e| *e != node) {
                    inner.stats.auth_failure(AuthFailure::IdentityMismatch);
                    inner.dropped(&o, 1);
                    mismatched += 1;
                    continue;
                }
                send_queued(&inner, &conn, o);
            }
            if mismatched > 0 {
                tracing::warn!(
                    peer = %addr,
                    actual = %node,
                    mismatched,
                    "the node at this address is not the one expected: its traffic was dropped"
                );
            }
            tracing::debug!(peer = %addr, %node, "connected");
            crate::conn::serve(inner, conn, node, Some(addr)).await;
        }
        Ok(_) => failed(&inner, &addr, "connection limit reached"),
        Err(reason) => failed(&inner, &addr, &reason),
    }
}

fn send_queued(inner: &Arc<Inner>, conn: &quinn::Connection, o: Outgoing) {
    match o.channel {
        Channel::Datagram => inner.send_on(conn, Channel::Datagram, o.payload),
        // Already counted as pending when it was queued.
        Channel::Message => inner.spawn_message(conn.clone(), o.payload),
    }
}

/// Records a failed dial of `addr`: drops (and counts) its queue and sets
/// the time before which sends to it are dropped instead of dialling.
pub(crate) fn failed(inner: &Inner, addr: &str, reason: &str) {
    let (queue, retry_in) = {
        let mut state = lock(&inner.state);
        let dial = state.dials.entry(addr.to_owned()).or_default();
        dial.in_progress = false;
        dial.failures = dial.failures.saturating_add(1);
        let delay = backoff(inner, dial.failures);
        dial.retry_at = Some(Instant::now() + delay);
        (std::mem::take(&mut dial.queue), delay)
    };
    for o in &queue {
        inner.dropped(o, 1);
    }
    tracing::debug!(
        peer = %addr,
        %reason,
        dropped = queue.len(),
        retry_in_ms = retry_in.as_millis(),
        "cannot connect to peer"
    );
}

/// Exponential backoff with jitter (50–100 %), so nodes that lost a peer
/// together do not all retry in the same instant.
fn backoff(inner: &Inner, failures: u32) -> std::time::Duration {
    let exp = failures.saturating_sub(1).min(20);
    let base = inner
        .cfg
        .backoff_initial
        .saturating_mul(1u32 << exp)
        .min(inner.cfg.backoff_max);
    base.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Resolves `addr` afresh and connects to the first address that answers,
/// within `connect_timeout`; returns the connection and the peer's
/// authenticated node id.
async fn connect(inner: &Arc<Inner>, addr: &str) -> Result<(quinn::Connection, NodeId), String> {
    let deadline = tokio::time::Instant::now() + inner.cfg.connect_timeout;
    let resolved: Vec<SocketAddr> =
        match tokio::time::timeout_at(deadline, tokio::net::lookup_host(addr)).await {
            Err(_) => {
                inner.stats.handshake_failure();
                return Err("DNS resolution timed out".into());
            }
            Ok(Err(e)) => {
                inner.stats.handshake_failure();
                return Err(format!("cannot resolve: {e}"));
            }
            Ok(Ok(addrs)) => addrs
                // An IPv4 socket cannot reach IPv6 addresses.
                .filter(|a| inner.local_addr.is_ipv6() || a.is_ipv4())
                .collect(),
        };
    if resolved.is_empty() {
        inner.stats.handshake_failure();
        return Err("resolves to no address of the socket's family".into());
    }
    let mut last = String::new();
    for target in resolved {
        if inner.closing() {
            return Err("shutting down".into());
        }
        // The name is required by the TLS API but not checked (see tls.rs):
        // identity comes from the certificate.
        let connecting =
            match inner
                .endpoint
                .connect_with(inner.client_config(), target, "phimon.invalid")
            {
                Ok(c) => c,
                Err(e) => {
                    last = format!("{target}: {e}");
                    continue;
                }
            };
        match tokio::time::timeout_at(deadline, connecting).await {
            Err(_) => {
                last = format!("{target}: handshake timed out");
                break;
            }
            Ok(Err(e)) => {
                count_refusal(inner, target, &e);
                match crate::transport::classify(&e) {
                    crate::transport::Refusal::NotTls => last = format!("{target}: {e}"),
                    // A refusal is an answer: do not try other addresses.
                    _ => return Err(format!("{target}: {e}")),
                }
                continue;
            }
            Ok(Ok(conn)) => {
                return match identity_of(&conn, inner.policy()) {
                    Ok(node) => Ok((conn, node)),
                    Err(reason) => {
                        // The verifier already applied the policy; this is
                        // a belt-and-braces check of the same rules.
                        inner.stats.auth_failure(AuthFailure::BadCertificate);
                        conn.close(codes::REFUSED, b"identity");
                        Err(format!("{target}: {reason}"))
                    }
                };
            }
        }
    }
    inner.stats.handshake_failure();
    Err(last)
}
