//! The QUIC transport that carries gossip between nodes: quinn with mutual
//! TLS against the cluster CA (see [`crate::tls`]), one unidirectional QUIC
//! stream per message.
//!
//! It moves opaque, size-capped messages and says who sent them; it knows
//! nothing of gossip. The sans-IO core decides what to send to whom; the
//! runtime hands its transmits to [`Transport::send`] and feeds the
//! [`Received`] messages back into it, with the authenticated node id as
//! sender.
//!
//! # Driving it
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use phimon_gossip::transport::{Transport, TransportConfig};
//! let config = TransportConfig { cluster_name: "prod".into(), ..Default::default() };
//! let (transport, mut inbox) = Transport::bind(config)?; // inside a tokio runtime
//! transport.send("10.0.0.6:7800", None, b"hello".to_vec())?; // never blocks
//! while let Some(msg) = inbox.recv().await {
//!     // msg.node_id is the sender's certificate identity.
//!     println!("{} bytes from {} at {}", msg.payload.len(), msg.node_id, msg.remote);
//! }
//! # Ok(()) }
//! ```
//!
//! Tasks it spawns on the current tokio runtime: one accept loop, one task
//! per connection (either direction: a peer may send on a connection we
//! dialled) plus one per message being read, one task per peer address
//! with outgoing traffic (it owns that address's queue, connection, and
//! reconnect backoff, so a slow or dead peer only ever delays its own
//! queue), and one short task per sent message that waits for the peer's
//! acknowledgement.
//!
//! A core transmit maps to `send(to_addr, to_node, payload)`; an empty
//! `to_addr` (the core does not know the address of a node that contacted
//! us) is sent on that node's existing connection.
//!
//! # Why one stream per message
//!
//! QUIC datagrams would be cheaper but are limited to one path MTU (about
//! 1200 bytes guaranteed) and unreliable; gossip deltas exceed that and
//! fragmenting would reinvent streams. A unidirectional stream per message
//! frames the message by its FIN (no length prefix to trust), gets
//! retransmission and per-stream flow control from QUIC, and costs one
//! stream id: streams are not connections, there is no extra handshake.
//! Flow control windows are sized so that a peer can never make us buffer
//! more than `max_message_bytes + 1` per stream nor more than
//! `max_incoming_streams` streams per connection.
//!
//! # Failure handling
//!
//! - Refused peers (no or bad certificate, other cluster, unexpected
//!   identity) are counted by reason in [`TransportStats`] and never
//!   delivered.
//! - Each peer address has a bounded queue; when full the oldest message
//!   is dropped, because the newest gossip state supersedes older state.
//! - Every sent message must be acknowledged within `exchange_timeout`,
//!   else its connection is closed and re-established; failed connection
//!   attempts back off exponentially with jitter, and DNS names are
//!   resolved afresh on every attempt.
//! - The stateless-reset key is derived from the node's private key, so a
//!   peer that restarts on the same address resets our stale connection at
//!   once and we reconnect.

mod accept;
mod config;
mod pool;
mod quic;
mod stats;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, mpsc};

use crate::tls::{IdentityPolicy, NodeTls, PeerIdentity, TlsError, TlsFiles, TlsPems};

pub use config::{MESSAGE_BYTES_RANGE, TransportConfig};
pub use stats::{StatsSnapshot, TransportStats};

/// A message received from an authenticated peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender's node id, taken from its verified certificate (never
    /// from the message).
    pub node_id: String,
    /// The UDP address the message came from.
    pub remote: SocketAddr,
    /// The message, at most `max_message_bytes` long.
    pub payload: Vec<u8>,
    /// When the last byte was read (local monotonic clock): stamp heartbeat
    /// arrivals with this, not with the time the consumer got to it.
    pub received_at: Instant,
}

/// Errors starting the transport or reloading its certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A [`TransportConfig`] field is out of range.
    #[error("transport config: {field}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The TLS material is missing, malformed or not acceptable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound.
    #[error("cannot bind QUIC endpoint to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The IO error.
        source: std::io::Error,
    },
    /// Called outside a tokio runtime.
    #[error("the transport must be started from within a tokio runtime")]
    NoRuntime,
    /// A reloaded certificate names another node than the running one.
    #[error(
        "reloaded certificate is for node {after:?}, but this process runs as {before:?}; restart to change identity"
    )]
    IdentityChanged {
        /// Node id at start.
        before: String,
        /// Node id in the new certificate.
        after: String,
    },
}

/// Why [`Transport::send`] refused a message at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The message exceeds `max_message_bytes` (the peer would refuse it).
    #[error("message of {len} bytes exceeds max_message_bytes {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The address is not `host:port`.
    #[error("address {addr:?} is not host:port")]
    BadAddress {
        /// The address given.
        addr: String,
    },
    /// The transport is shut down.
    #[error("transport is shut down")]
    Closed,
}

/// A QUIC endpoint that sends messages to peer addresses and receives
/// messages from authenticated peers. See the [module docs](self).
///
/// Dropping it closes the endpoint at once; call [`Transport::flush`] and
/// [`Transport::shutdown`] first to leave gracefully.
pub struct Transport {
    inner: Arc<Inner>,
}

/// State shared by the handle and the tasks.
pub(crate) struct Inner {
    cfg: TransportConfig,
    files: TlsFiles,
    policy: IdentityPolicy,
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    quic: Arc<quinn::TransportConfig>,
    tls: Mutex<TlsState>,
    stats: Arc<TransportStats>,
    peers: Mutex<HashMap<Target, Arc<pool::PeerSlot>>>,
    /// The latest live connection (either direction) of each authenticated
    /// node, for messages addressed by node id alone.
    by_node: Mutex<HashMap<String, quinn::Connection>>,
    closing: AtomicBool,
    /// Messages accepted by `send` and not yet acknowledged or dropped.
    pending: AtomicUsize,
    drained: Notify,
    inbox: mpsc::Sender<Received>,
    runtime: tokio::runtime::Handle,
    epoch: Instant,
}

struct TlsState {
    client: quinn::ClientConfig,
    identity: PeerIdentity,
    not_after: SystemTime,
    pems: TlsPems,
}

/// Locks a mutex, ignoring poisoning: every critical section leaves the
/// data consistent, so a panic elsewhere must not wedge the transport.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Transport {
    /// Loads the TLS material, binds the UDP socket and starts accepting.
    /// Must be called within a tokio runtime, on which it spawns its tasks.
    /// Returns the handle and the stream of received messages; the stream
    /// ends after the transport shuts down.
    pub fn bind(
        config: TransportConfig,
    ) -> Result<(Transport, mpsc::Receiver<Received>), TransportError> {
        config.validate()?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
        let policy = IdentityPolicy {
            cluster: config.cluster_name.clone(),
            require_cluster_san: config.require_cluster_san,
        };
        let files = TlsFiles {
            ca: config.ca_pem_path.clone(),
            cert: config.cert_pem_path.clone(),
            key: config.key_pem_path.clone(),
        };
        let pems = files.read()?;
        let tls = NodeTls::from_pems(&files, &pems, &policy, config.node_id.as_deref())?;
        let quic = Arc::new(quic::transport_config(&config)?);
        let server = quic::server_config(&tls, &quic, &config)?;
        let client = quic::client_config(&tls, &quic)?;
        let socket =
            std::net::UdpSocket::bind(config.listen).map_err(|source| TransportError::Bind {
                addr: config.listen,
                source,
            })?;
        let endpoint = quinn::Endpoint::new(
            quic::endpoint_config(&tls),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Bind {
            addr: config.listen,
            source,
        })?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: config.listen,
                source,
            })?;
        let (inbox, rx) = mpsc::channel(config.receive_queue_len);
        tracing::info!(
            node = %tls.identity().node_id,
            cluster = %config.cluster_name,
            %local_addr,
            "QUIC transport listening"
        );
        let inner = Arc::new(Inner {
            files,
            policy,
            endpoint,
            local_addr,
            quic,
            tls: Mutex::new(TlsState {
                client,
                identity: tls.identity().clone(),
                not_after: tls.not_after(),
                pems,
            }),
            stats: Arc::new(TransportStats::default()),
            peers: Mutex::new(HashMap::new()),
            by_node: Mutex::new(HashMap::new()),
            closing: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            drained: Notify::new(),
            inbox,
            runtime,
            epoch: Instant::now(),
            cfg: config,
        });
        inner.runtime.spawn(accept::accept_loop(inner.clone()));
        Ok((Transport { inner }, rx))
    }

    /// The bound UDP address (with the real port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Our identity, from our current certificate.
    pub fn identity(&self) -> PeerIdentity {
        lock(&self.inner.tls).identity.clone()
    }

    /// When our current certificate expires (export it; renew before).
    pub fn cert_not_after(&self) -> SystemTime {
        lock(&self.inner.tls).not_after
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<TransportStats> {
        self.inner.stats.clone()
    }

    /// The settings in force.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.cfg
    }

    /// Queues `payload` for `to_addr` (`host:port`, IP or DNS name) and
    /// returns at once. When `expected_node` is given, the message is only
    /// delivered if the peer's certificate names that node; otherwise it is
    /// dropped and counted as an identity mismatch.
    ///
    /// An empty `to_addr` with `expected_node` sends on an existing
    /// connection of that node, in either direction: the way to answer a
    /// node that contacted us before we learned its address. Without such a
    /// connection the message is dropped (and counted).
    ///
    /// Delivery is best effort: a message may be dropped (and counted) if
    /// the peer is unreachable or its queue overflows.
    pub fn send(
        &self,
        to_addr: &str,
        expected_node: Option<&str>,
        payload: Vec<u8>,
    ) -> Result<(), SendError> {
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        let max = self.inner.cfg.max_message_bytes;
        if payload.len() > max {
            self.inner.stats.send_dropped(1);
            return Err(SendError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        let target = match (to_addr, expected_node) {
            ("", Some(node)) => Target::Node(node.to_owned()),
            _ => {
                check_address(to_addr)?;
                Target::Addr(to_addr.to_owned())
            }
        };
        self.inner
            .enqueue(target, expected_node.map(str::to_owned), payload);
        Ok(())
    }

    /// Re-reads the CA bundle, certificate and key, checks them as at
    /// start, and uses them for every new connection (established ones keep
    /// their session). On error the previous material stays in force. The
    /// runtime calls this on SIGHUP.
    pub fn reload_certs(&self) -> Result<(), TransportError> {
        let pems = self.inner.files.read()?;
        self.inner.apply_tls(pems)
    }

    /// [`Transport::reload_certs`] if any of the three files changed since
    /// the last (re)load; returns whether it reloaded. Cheap enough to poll
    /// every few seconds, which picks up certificates rotated by cert-manager
    /// or an agent without a signal. A half-written rotation fails the
    /// checks and is retried at the next poll.
    pub fn reload_certs_if_changed(&self) -> Result<bool, TransportError> {
        let pems = self.inner.files.read()?;
        if lock(&self.inner.tls).pems == pems {
            return Ok(false);
        }
        self.inner.apply_tls(pems)?;
        Ok(true)
    }

    /// Waits until every message accepted by [`Transport::send`] has been
    /// acknowledged by its peer or dropped, or `timeout` passes. Returns
    /// whether everything was settled. Use before [`Transport::shutdown`] so
    /// that a final "leaving" message gets out.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let drained = self.inner.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.inner.pending.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return self.inner.pending.load(Ordering::Acquire) == 0;
            }
        }
    }

    /// Closes every connection and the endpoint, then waits (at most
    /// `connect_timeout`) for the close to reach peers. Messages still
    /// queued are dropped.
    pub async fn shutdown(&self) {
        self.inner.close();
        let _ = tokio::time::timeout(
            self.inner.cfg.connect_timeout,
            self.inner.endpoint.wait_idle(),
        )
        .await;
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.inner.close();
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("local_addr", &self.inner.local_addr)
            .field("identity", &self.identity())
            .finish_non_exhaustive()
    }
}

/// Where a pool slot sends: an address it connects to itself, or a node
/// whose existing connection it borrows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// `host:port`, resolved on every connection attempt.
    Addr(String),
    /// A node id, reached on a connection it already has with us.
    Node(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Addr(a) => f.write_str(a),
            Target::Node(n) => write!(f, "node {n}"),
        }
    }
}

/// `host:port` with a non-empty host and a numeric port; the host is
/// resolved later, on every connection attempt.
fn check_address(addr: &str) -> Result<(), SendError> {
    let bad = || SendError::BadAddress {
        addr: addr.to_owned(),
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    // An unbracketed IPv6 literal would split at its last colon.
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad());
    }
    Ok(())
}

impl Inner {
    fn apply_tls(&self, pems: TlsPems) -> Result<(), TransportError> {
        let tls = NodeTls::from_pems(
            &self.files,
            &pems,
            &self.policy,
            self.cfg.node_id.as_deref(),
        )?;
        let before = lock(&self.tls).identity.node_id.clone();
        if tls.identity().node_id != before {
            return Err(TransportError::IdentityChanged {
                before,
                after: tls.identity().node_id.clone(),
            });
        }
        let server = quic::server_config(&tls, &self.quic, &self.cfg)?;
        let client = quic::client_config(&tls, &self.quic)?;
        self.endpoint.set_server_config(Some(server));
        let mut state = lock(&self.tls);
        state.client = client;
        state.identity = tls.identity().clone();
        state.not_after = tls.not_after();
        state.pems = pems;
        tracing::info!(node = %state.identity.node_id, "TLS certificates reloaded");
        Ok(())
    }

    /// Records `conn` as the connection to reach `node` by id.
    fn register(&self, node: &str, conn: &quinn::Connection) {
        lock(&self.by_node).insert(node.to_owned(), conn.clone());
    }

    /// Forgets `conn` for `node`, unless a newer connection replaced it.
    fn unregister(&self, node: &str, conn: &quinn::Connection) {
        let mut by_node = lock(&self.by_node);
        if by_node
            .get(node)
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            by_node.remove(node);
        }
    }

    /// A live connection of `node`, if there is one.
    fn connection_of(&self, node: &str) -> Option<quinn::Connection> {
        lock(&self.by_node)
            .get(node)
            .filter(|c| c.close_reason().is_none())
            .cloned()
    }

    fn client_config(&self) -> quinn::ClientConfig {
        lock(&self.tls).client.clone()
    }

    /// Marks `n` accepted messages as settled (acknowledged or dropped).
    fn settled(&self, n: usize) {
        if n > 0 && self.pending.fetch_sub(n, Ordering::AcqRel) == n {
            self.drained.notify_waiters();
        }
    }

    /// Milliseconds since the transport started (for LRU order).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn close(&self) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        let slots: Vec<_> = lock(&self.peers).drain().map(|(_, s)| s).collect();
        for slot in slots {
            slot.stop();
        }
        self.endpoint.close(quic::codes::SHUTDOWN, b"shutdown");
    }
}

/// How a failed handshake came about, read from the QUIC error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// We refused the peer's certificate (a TLS alert we sent).
    Ours(crate::tls::AuthFailure),
    /// The peer refused ours (a TLS alert it sent).
    Theirs,
    /// Not a TLS refusal: timeout, unreachable, protocol error.
    NotTls,
}

/// QUIC carries TLS alerts as transport error codes 0x100..=0x1ff.
fn tls_alert(code: quinn::TransportErrorCode) -> Option<u8> {
    let code = u64::from(code);
    (0x100..=0x1ff)
        .contains(&code)
        .then_some((code & 0xff) as u8)
}

fn classify(e: &quinn::ConnectionError) -> Refusal {
    match e {
        quinn::ConnectionError::TransportError(te) => match tls_alert(te.code) {
            Some(alert) => Refusal::Ours(crate::tls::AuthFailure::from_alert(alert)),
            None => Refusal::NotTls,
        },
        quinn::ConnectionError::ConnectionClosed(cc) => match tls_alert(cc.error_code) {
            Some(_) => Refusal::Theirs,
            None => Refusal::NotTls,
        },
        _ => Refusal::NotTls,
    }
}

/// The verified identity of an established connection's peer.
fn identity_of(conn: &quinn::Connection, policy: &IdentityPolicy) -> Result<PeerIdentity, String> {
    let any = conn
        .peer_identity()
        .ok_or("peer presented no certificate")?;
    let certs = any
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .map_err(|_| "peer identity is not a certificate chain")?;
    let leaf = certs.first().ok_or("peer certificate chain is empty")?;
    policy.check(leaf).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_must_be_host_port() {
        for ok in [
            "127.0.0.1:7800",
            "node-a.internal:1",
            "[::1]:7800",
            "localhost:0",
        ] {
            check_address(ok).unwrap();
        }
        for bad in [
            "",
            "127.0.0.1",
            ":7800",
            "host:",
            "host:99999",
            "::1:7800",
            "host:port",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn alerts_are_read_from_quic_codes() {
        assert_eq!(tls_alert(quinn::TransportErrorCode::crypto(116)), Some(116));
        assert_eq!(tls_alert(quinn::TransportErrorCode::crypto(48)), Some(48));
        assert_eq!(
            tls_alert(quinn::TransportErrorCode::PROTOCOL_VIOLATION),
            None
        );
    }

    #[test]
    fn default_config_is_valid_and_bad_values_name_their_field() {
        TransportConfig::default().validate().unwrap();
        let bad = TransportConfig {
            max_message_bytes: 10,
            ..Default::default()
        };
        match bad.validate() {
            Err(TransportError::InvalidConfig { field, .. }) => {
                assert_eq!(field, "max_message_bytes")
            }
            other => panic!("{other:?}"),
        }
        let bad = TransportConfig {
            backoff_max: Duration::from_millis(1),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
