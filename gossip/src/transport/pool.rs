//! Outgoing side: one slot and one task per peer address. The task owns the
//! address's connection and backoff and drains its bounded queue, so a
//! slow or dead peer holds up nothing but its own queue.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::Rng;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::quic::codes;
use super::{Inner, Refusal, Target, classify, identity_of, lock};
use crate::tls::AuthFailure;

/// A message waiting for its peer.
pub(crate) struct Outgoing {
    expected: Option<String>,
    payload: Vec<u8>,
}

/// The pool entry of one peer address (or node, see [`Target`]).
pub(crate) struct PeerSlot {
    target: Target,
    queue: Mutex<VecDeque<Outgoing>>,
    wake: Notify,
    stop: AtomicBool,
    /// `Inner::now_ms` of the last `send` to this address (LRU eviction).
    last_used: AtomicU64,
}

impl PeerSlot {
    /// Tells the task to drop its queue, close its connection and exit.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

impl Inner {
    /// Puts a message on the queue of `target`, creating the slot and its
    /// task if needed (evicting the least recently used target when the pool
    /// is full).
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        target: Target,
        expected: Option<String>,
        payload: Vec<u8>,
    ) {
        let now = self.now_ms();
        let mut peers = lock(&self.peers);
        let slot = match peers.get(&target) {
            Some(slot) => slot.clone(),
            None => {
                if peers.len() >= self.cfg.max_peers {
                    let lru = peers
                        .iter()
                        .min_by_key(|(_, s)| s.last_used.load(Ordering::Relaxed))
                        .map(|(a, _)| a.clone());
                    if let Some(old) = lru.and_then(|a| peers.remove(&a)) {
                        tracing::debug!(peer = %old.target, "peer pool full: evicting least recently used");
                        old.stop();
                    }
                }
                let slot = Arc::new(PeerSlot {
                    target: target.clone(),
                    queue: Mutex::new(VecDeque::new()),
                    wake: Notify::new(),
                    stop: AtomicBool::new(false),
                    last_used: AtomicU64::new(now),
                });
                peers.insert(target, slot.clone());
                self.runtime.spawn(run_peer(self.clone(), slot.clone()));
                slot
            }
        };
        slot.last_used.store(now, Ordering::Relaxed);
        self.pending.fetch_add(1, Ordering::AcqRel);
        let dropped = {
            let mut queue = lock(&slot.queue);
            let mut dropped = 0;
            // Drop-oldest: newer gossip state supersedes older.
            while queue.len() >= self.cfg.send_queue_len {
                queue.pop_front();
                dropped += 1;
            }
            queue.push_back(Outgoing { expected, payload });
            dropped
        };
        // Still under the pool lock: the task retires only under this lock
        // after seeing an empty queue, so the message cannot be stranded.
        drop(peers);
        if dropped > 0 {
            self.stats.send_dropped(dropped);
            self.settled(dropped);
        }
        slot.wake.notify_one();
    }

    /// Drops every queued message of `slot`, counting them.
    fn drop_queue(&self, slot: &PeerSlot) -> usize {
        let n = {
            let mut q = lock(&slot.queue);
            let n = q.len();
            q.clear();
            n
        };
        self.stats.send_dropped(n);
        self.settled(n);
        n
    }

    /// Removes `slot` from the pool if it has nothing queued. Returns
    /// whether it did (then its task must exit).
    fn retire_if_idle(&self, slot: &Arc<PeerSlot>) -> bool {
        let mut peers = lock(&self.peers);
        if !lock(&slot.queue).is_empty() {
            return false;
        }
        if peers
            .get(&slot.target)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
        {
            peers.remove(&slot.target);
        }
        true
    }
}

/// An established, authenticated outgoing connection.
struct Established {
    conn: quinn::Connection,
    node_id: String,
    /// Set when the peer acknowledged a message on this connection: proof
    /// that it works, so losing it later warrants an immediate reconnect.
    delivered: Arc<AtomicBool>,
    /// An identity mismatch was already logged on this connection.
    mismatch_logged: bool,
    /// We dialled it (else it is a node's connection we borrow, which we
    /// must not close just because we have nothing more to send).
    owned: bool,
}

/// Connection state and reconnect backoff of one peer address.
struct Link {
    conn: Option<Established>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Link {
    fn live(&self) -> bool {
        self.conn
            .as_ref()
            .is_some_and(|e| e.conn.close_reason().is_none())
    }

    /// Schedules the next attempt after one more failure: exponential
    /// backoff with jitter (50–100 %), so nodes that lost a peer together do
    /// not all retry in the same instant.
    fn failed(&mut self, inner: &Inner) {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(20);
        let base = inner
            .cfg
            .backoff_initial
            .saturating_mul(1u32 << exp)
            .min(inner.cfg.backoff_max);
        let jitter = rand::rng().random_range(0.5..=1.0);
        self.retry_at = Some(Instant::now() + base.mul_f64(jitter));
    }

    /// The connection was found closed: reconnect at once if it had proven
    /// itself, else treat it as one more failure (a peer that completes the
    /// handshake and then refuses us must not be hammered).
    fn lost(&mut self, inner: &Inner) {
        if let Some(est) = self.conn.take() {
            if est.delivered.load(Ordering::Acquire) {
                self.failures = 0;
                self.retry_at = None;
            } else {
                self.failed(inner);
            }
        }
    }
}

/// The task of one peer address.
async fn run_peer(inner: Arc<Inner>, slot: Arc<PeerSlot>) {
    let mut link = Link {
        conn: None,
        failures: 0,
        retry_at: None,
    };
    loop {
        if slot.stopped() || inner.closing.load(Ordering::Acquire) {
            break;
        }
        if lock(&slot.queue).is_empty() {
            tokio::select! {
                _ = slot.wake.notified() => {}
                _ = tokio::time::sleep(inner.cfg.idle_timeout) => {
                    if inner.retire_if_idle(&slot) {
                        break;
                    }
                }
            }
            continue;
        }
        if !link.live() {
            link.lost(&inner);
            if let Target::Node(_) = slot.target {
                // Borrowing costs no network round trip, and the node may
                // connect to us at any moment: no backoff.
                link.retry_at = None;
            }
            if let Some(at) = link.retry_at {
                if Instant::now() < at {
                    // Messages keep queueing (bounded) meanwhile; a wake
                    // only re-checks stop and goes back to waiting.
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = slot.wake.notified() => {}
                    }
                    continue;
                }
            }
            let attempt = match &slot.target {
                Target::Addr(addr) => connect(&inner, addr).await,
                Target::Node(node) => borrow(&inner, node),
            };
            match attempt {
                Ok(est) => {
                    link.conn = Some(est);
                    link.retry_at = None;
                }
                Err(reason) => {
                    let dropped = inner.drop_queue(&slot);
                    if let Target::Addr(_) = slot.target {
                        link.failed(&inner);
                    }
                    tracing::debug!(
                        peer = %slot.target,
                        %reason,
                        dropped,
                        retry_in_ms = link.retry_at.map(|t| t.saturating_duration_since(Instant::now()).as_millis()),
                        "cannot connect to peer"
                    );
                    continue;
                }
            }
        }
        let Some(msg) = lock(&slot.queue).pop_front() else {
            continue;
        };
        let Some(est) = link.conn.as_mut() else {
            // Unreachable: the connection was just checked or made.
            inner.stats.send_dropped(1);
            inner.settled(1);
            continue;
        };
        if let Some(expected) = &msg.expected {
            if *expected != est.node_id {
                inner.stats.auth_failure(AuthFailure::IdentityMismatch);
                inner.stats.send_dropped(1);
                inner.settled(1);
                if !est.mismatch_logged {
                    est.mismatch_logged = true;
                    tracing::warn!(
                        peer = %slot.target,
                        expected = %expected,
                        actual = %est.node_id,
                        "peer at this address is another node: message dropped"
                    );
                }
                continue;
            }
        }
        if let Err(reason) = send_one(&inner, est, msg.payload).await {
            inner.stats.send_dropped(1);
            inner.settled(1);
            est.conn.close(codes::SEND_FAILED, b"send failed");
            tracing::debug!(peer = %slot.target, %reason, "send failed; reconnecting");
        }
    }
    inner.drop_queue(&slot);
    if let Some(est) = link.conn.filter(|e| e.owned) {
        est.conn.close(codes::IDLE, b"idle");
    }
}

/// Writes one message on a new stream within the exchange timeout, then
/// leaves a task waiting for its acknowledgement.
async fn send_one(inner: &Arc<Inner>, est: &Established, payload: Vec<u8>) -> Result<(), String> {
    let len = payload.len();
    let write = async {
        let mut stream = est.conn.open_uni().await.map_err(|e| e.to_string())?;
        stream
            .write_all(&payload)
            .await
            .map_err(|e| e.to_string())?;
        stream.finish().map_err(|e| e.to_string())?;
        Ok::<_, String>(stream)
    };
    let stream = tokio::time::timeout(inner.cfg.exchange_timeout, write)
        .await
        .map_err(|_| "write timed out".to_owned())??;
    inner.stats.sent(len);
    let inner2 = inner.clone();
    let conn = est.conn.clone();
    let delivered = est.delivered.clone();
    inner.runtime.spawn(async move {
        match tokio::time::timeout(inner2.cfg.exchange_timeout, stream.stopped()).await {
            Ok(Ok(None)) => delivered.store(true, Ordering::Release),
            Ok(Ok(Some(code))) => {
                tracing::debug!(%code, "peer stopped a message stream");
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "connection lost before acknowledgement"),
            Err(_) => {
                // No acknowledgement: the peer is gone or the path is dead.
                // Closing makes the next message reconnect (and, if the
                // peer is down, back off) instead of writing into a void
                // until the idle timeout.
                inner2.stats.delivery_timeout();
                conn.close(codes::DELIVERY_TIMEOUT, b"delivery timeout");
            }
        }
        inner2.settled(1);
    });
    Ok(())
}

/// The existing connection of `node` (it contacted us, or we it).
fn borrow(inner: &Inner, node: &str) -> Result<Established, String> {
    let conn = inner
        .connection_of(node)
        .ok_or_else(|| format!("no connection with node {node}"))?;
    Ok(Established {
        conn,
        node_id: node.to_owned(),
        delivered: Arc::new(AtomicBool::new(false)),
        mismatch_logged: false,
        owned: false,
    })
}

/// Resolves `addr` afresh and connects to the first address that answers,
/// within `connect_timeout`; checks the peer's identity.
async fn connect(inner: &Arc<Inner>, addr: &str) -> Result<Established, String> {
    let deadline = Instant::now() + inner.cfg.connect_timeout;
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
        // The name is required by the TLS API but not checked (see tls.rs):
        // identity comes from the certificate.
        let server_name = target.ip().to_string();
        let connecting =
            match inner
                .endpoint
                .connect_with(inner.client_config(), target, &server_name)
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
            Ok(Err(e)) => match classify(&e) {
                Refusal::Ours(reason) => {
                    inner.stats.auth_failure(reason);
                    tracing::warn!(peer = %addr, %target, %reason, error = %e, "refused peer certificate");
                    return Err(format!("{target}: refused its certificate ({reason}): {e}"));
                }
                Refusal::Theirs => {
                    inner.stats.handshake_failure();
                    tracing::warn!(peer = %addr, %target, error = %e, "peer refused our certificate");
                    return Err(format!("{target}: peer refused our certificate: {e}"));
                }
                Refusal::NotTls => last = format!("{target}: {e}"),
            },
            Ok(Ok(conn)) => {
                return match identity_of(&conn, &inner.policy) {
                    Ok(id) => {
                        let open = inner.stats.connection_opened();
                        inner.register(&id.node_id, &conn);
                        let watched = conn.clone();
                        let inner2 = inner.clone();
                        let stats = inner.stats.clone();
                        let (peer, node) = (addr.to_owned(), id.node_id.clone());
                        inner.runtime.spawn(async move {
                            let _open = open;
                            let node_id: Arc<str> = node.as_str().into();
                            super::accept::read_streams(&inner2, &watched, &node_id).await;
                            let reason = watched.closed().await;
                            inner2.unregister(&node, &watched);
                            // In TLS 1.3 the server judges our certificate
                            // after our side of the handshake completed, so
                            // its refusal arrives as the close reason of a
                            // connection that seemed established.
                            if classify(&reason) == Refusal::Theirs {
                                stats.handshake_failure();
                                tracing::warn!(%peer, %node, error = %reason, "peer refused our certificate");
                            }
                        });
                        tracing::debug!(peer = %addr, %target, node = %id.node_id, "connected");
                        Ok(Established {
                            conn,
                            node_id: id.node_id,
                            delivered: Arc::new(AtomicBool::new(false)),
                            mismatch_logged: false,
                            owned: true,
                        })
                    }
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
