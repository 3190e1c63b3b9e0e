//! The [`Transport`] handle, its shared state and the send paths.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use phimon_gossip::NodeId;
use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::sync::{Notify, mpsc};

use crate::credential::{CredentialVerifier, RecordSigner};
use crate::fastpath::{
    DatagramPath, FRAME_USER, FastPath, Frame, MAX_PACKET, RxKey, TxPath, Via, connection_keys,
};
use crate::mailbox::Mailbox;
use crate::quic::{self, MAX_DATAGRAM, codes};
use crate::socket::DemuxSocket;
use crate::stats::{Gauge, TransportStats};
use crate::tls::{
    AuthFailure, IdentityPolicy, NodeTls, PeerIdentity, TlsError, TlsFiles, TlsPems, TrustMaterial,
    Usage,
};
use crate::{StatsSnapshot, TransportConfig};

/// Which kind of frame a [`Received`] came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// A datagram: unreliable, unordered, at most [`MAX_DATAGRAM`] bytes;
    /// a sealed UDP packet or a QUIC datagram (see
    /// [`Transport::datagram_path`]).
    Datagram,
    /// A message: one complete reliable stream.
    Message,
}

/// A datagram or message received from an authenticated peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender's node id, taken from its verified certificate (never
    /// from the payload).
    pub node_id: NodeId,
    /// The UDP address it came from.
    pub remote: SocketAddr,
    /// Datagram or message.
    pub channel: Channel,
    /// The payload: at most [`MAX_DATAGRAM`] bytes for a datagram,
    /// `max_message_bytes` for a message.
    pub payload: Bytes,
    /// When it was read from the connection (local monotonic clock): stamp
    /// heartbeat arrivals with this, not with the time the consumer got to
    /// it.
    pub received_at: Instant,
}

/// Where to send: a node, an address, or both.
///
/// - `node_id: Some(id)`: on the live connection of `id` if there is one
///   (whoever dialled it); otherwise `addr` is dialled and the peer there
///   must prove to be `id`.
/// - `node_id: None`: on the connection we dialled to `addr`, else dial it
///   and accept whoever answers with a valid certificate (seeds).
/// - An empty `addr` means "on this node's existing connection": the way
///   to answer a node that dialled us before we learned its address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The node expected, from its certificate.
    pub node_id: Option<NodeId>,
    /// `host:port` (IP or DNS name), or empty.
    pub addr: String,
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
    /// The record signer cannot use the node's key.
    #[error(transparent)]
    Credential(#[from] crate::CredentialError),
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

/// Why a `send_*` call refused at once. Drops that happen later (peer
/// unreachable, queue overflow) are only counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The payload exceeds the datagram or message limit.
    #[error("{len}-byte payload exceeds the {max}-byte limit")]
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
    /// No address and no live connection to the node: nothing to send on.
    #[error("no connection to node {node} and no address to dial")]
    NotConnected {
        /// The node.
        node: String,
    },
    /// The transport is shut down.
    #[error("transport is shut down")]
    Closed,
}

/// A QUIC endpoint that sends datagrams and messages to peers and receives
/// them from authenticated peers. See the [crate docs](crate).
///
/// Dropping it closes the endpoint at once; call [`Transport::flush`] and
/// [`Transport::shutdown`] first to leave gracefully.
pub struct Transport {
    inner: Arc<Inner>,
}

/// State shared by the handle and the tasks.
pub(crate) struct Inner {
    pub(crate) cfg: TransportConfig,
    files: TlsFiles,
    policy: IdentityPolicy,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) local_addr: SocketAddr,
    /// The endpoint's socket, for sealed datagrams.
    socket: Arc<DemuxSocket>,
    /// Where peers seal heartbeats, read on wake-ups.
    mailbox: Option<Arc<Mailbox>>,
    /// Fast-path keys of every connection.
    pub(crate) fast: Arc<FastPath>,
    quic: Arc<quinn::TransportConfig>,
    tls: Mutex<TlsState>,
    /// The trust material in force, shared with every
    /// [`CredentialVerifier`] handed out.
    trust: Arc<RwLock<Arc<TrustMaterial>>>,
    pub(crate) stats: Arc<TransportStats>,
    pub(crate) state: Mutex<State>,
    /// Incoming handshakes in progress per source IP.
    pub(crate) handshakes_by_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Datagram payloads are copied into slices of one shared buffer, so a
    /// heartbeat costs an allocation only every few hundred sends.
    arena: Mutex<BytesMut>,
    closing: AtomicBool,
    /// Messages accepted by `send_message` and not yet acknowledged by
    /// their peer or dropped (for [`Transport::flush`]).
    pending: AtomicUsize,
    drained: Notify,
    pub(crate) inbox: mpsc::Sender<Received>,
    pub(crate) runtime: tokio::runtime::Handle,
}

struct TlsState {
    client: quinn::ClientConfig,
    identity: PeerIdentity,
    not_after: SystemTime,
    pems: TlsPems,
    signer: Arc<RecordSigner>,
}

/// Connections and dials, under one lock.
#[derive(Default)]
pub(crate) struct State {
    /// Live authenticated connections by quinn's stable id.
    pub(crate) conns: HashMap<usize, Conn>,
    /// The latest connection of each node.
    pub(crate) by_node: HashMap<NodeId, usize>,
    /// The connection we dialled at each address (as the caller spelled it).
    pub(crate) by_addr: HashMap<String, usize>,
    /// Addresses being dialled or backing off.
    pub(crate) dials: HashMap<String, Dial>,
}

/// An authenticated connection.
pub(crate) struct Conn {
    pub(crate) conn: quinn::Connection,
    pub(crate) node_id: NodeId,
    /// We dialled it (the peer's certificate was verified as a server's).
    pub(crate) dialled: bool,
    /// Where its datagrams go: `None` only if the TLS session could not
    /// export keys (then always QUIC datagrams).
    pub(crate) tx: Option<Arc<TxPath>>,
    /// The id of its installed fast-path receive key.
    pub(crate) rx_key: Option<u64>,
    pub(crate) _open: Gauge,
}

/// Something waiting for a connection being dialled.
pub(crate) struct Outgoing {
    pub(crate) expected: Option<NodeId>,
    pub(crate) channel: Channel,
    pub(crate) payload: Bytes,
}

/// The dial state of one address.
#[derive(Default)]
pub(crate) struct Dial {
    pub(crate) queue: VecDeque<Outgoing>,
    pub(crate) in_progress: bool,
    pub(crate) failures: u32,
    /// Sends before this instant are dropped instead of dialling.
    pub(crate) retry_at: Option<Instant>,
}

/// Locks a mutex, ignoring poisoning: every critical section leaves the
/// data consistent, so a panic elsewhere must not wedge the transport.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Size of one datagram arena chunk.
const ARENA_CHUNK: usize = 16 * 1024;

thread_local! {
    /// Where sealed datagrams are built: reused, so a send neither
    /// allocates nor clears a buffer, and per thread, so callers on
    /// several threads never wait for each other.
    static SEAL_BUFFER: std::cell::RefCell<[u8; MAX_PACKET]> =
        const { std::cell::RefCell::new([0; MAX_PACKET]) };
}

impl Transport {
    /// Loads the TLS material, binds the UDP socket and starts accepting.
    /// Must be called within a tokio runtime (a current-thread one is
    /// enough), on which it spawns its tasks. Returns the handle and the
    /// stream of received datagrams and messages; the stream ends after
    /// the transport shuts down.
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
            crl: config.crl_pem_path.clone(),
        };
        let pems = files.read()?;
        let tls = NodeTls::from_pems(&files, &pems, &policy, config.node_id.as_deref())?;
        let signer = Arc::new(RecordSigner::from_tls(&tls)?);
        let quic = Arc::new(quic::transport_config(&config)?);
        let server = quic::server_config(&tls, &quic, &config)?;
        let client = quic::client_config(&tls, &quic)?;
        let bind_error = |source| TransportError::Bind {
            addr: config.listen,
            source,
        };
        let (inbox, rx) = mpsc::channel(config.receive_queue_len);
        let stats = Arc::new(TransportStats::default());
        let fast = Arc::new(FastPath::new(stats.clone(), inbox.clone(), runtime.clone()));
        let socket = std::net::UdpSocket::bind(config.listen).map_err(bind_error)?;
        let socket = DemuxSocket::new(socket, fast.clone(), stats.clone()).map_err(bind_error)?;
        let mailbox = if config.mailbox {
            let ip = config.listen.ip();
            let port = config.mailbox_port;
            Some(
                Mailbox::bind(
                    ip,
                    port,
                    fast.clone(),
                    socket.clone(),
                    stats.clone(),
                    runtime.clone(),
                )
                .map_err(|source| TransportError::Bind {
                    addr: SocketAddr::new(ip, port),
                    source,
                })?,
            )
        } else {
            None
        };
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            quic::endpoint_config(&tls),
            Some(server),
            socket.clone(),
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_error)?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: config.listen,
                source,
            })?;
        tracing::info!(
            node = %tls.identity().node_id,
            cluster = %config.cluster_name,
            %local_addr,
            alpn = %String::from_utf8_lossy(crate::tls::ALPN),
            crls = tls.trust().crl_count(),
            "QUIC transport listening"
        );
        let inner = Arc::new(Inner {
            files,
            policy,
            endpoint,
            local_addr,
            socket,
            mailbox,
            fast,
            quic,
            trust: Arc::new(RwLock::new(tls.trust().clone())),
            tls: Mutex::new(TlsState {
                client,
                identity: tls.identity().clone(),
                not_after: tls.not_after(),
                pems,
                signer,
            }),
            stats,
            state: Mutex::new(State::default()),
            handshakes_by_ip: Mutex::new(HashMap::new()),
            arena: Mutex::new(BytesMut::new()),
            closing: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            drained: Notify::new(),
            inbox,
            runtime,
            cfg: config,
        });
        inner
            .runtime
            .spawn(crate::accept::accept_loop(inner.clone()));
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

    /// When our current certificate expires (export it as
    /// `phimon_tls_cert_expiry_timestamp_seconds`; renew before).
    pub fn cert_not_after(&self) -> SystemTime {
        lock(&self.inner.tls).not_after
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<TransportStats> {
        self.inner.stats.clone()
    }

    /// A copy of every counter now.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// The settings in force.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.cfg
    }

    /// Largest datagram payload [`send_datagram`](Self::send_datagram)
    /// accepts: [`MAX_DATAGRAM`], which fits one packet on any QUIC path.
    pub fn max_datagram(&self) -> usize {
        MAX_DATAGRAM
    }

    /// Signs records with our certificate's key; replaced by a reload that
    /// changes the key or certificate, so fetch it when signing.
    pub fn record_signer(&self) -> Arc<RecordSigner> {
        lock(&self.inner.tls).signer.clone()
    }

    /// [`Transport::record_signer`] as a function that outlives borrows
    /// of this handle (it does not keep the endpoint open): what a
    /// record signer that follows reloads holds.
    pub fn record_signer_source(&self) -> impl Fn() -> Arc<RecordSigner> + Send + Sync + 'static {
        let inner = Arc::downgrade(&self.inner);
        let last = lock(&self.inner.tls).signer.clone();
        move || match inner.upgrade() {
            Some(inner) => lock(&inner.tls).signer.clone(),
            None => last.clone(),
        }
    }

    /// Verifies other nodes' record credentials against the trust material
    /// in force; follows reloads (the CA and CRL it checks are always the
    /// current ones).
    pub fn credential_verifier(&self) -> CredentialVerifier {
        CredentialVerifier::shared(self.inner.trust.clone())
    }

    /// Sends `payload` as one datagram and returns at once. Unreliable: a
    /// datagram may be lost, and is dropped (and counted) when the peer is
    /// being dialled and its small queue is full, or is backing off after
    /// failed dials. On a live connection it is sent here, synchronously:
    /// sealed and written to the socket once the fast path is up (one UDP
    /// packet, no allocation), else handed to quinn as a QUIC datagram.
    pub fn send_datagram(&self, peer: &Peer, payload: &[u8]) -> Result<(), SendError> {
        self.datagram(peer, payload, false)
    }

    /// As [`Transport::send_datagram`], for a datagram whose arrival time
    /// matters but not when the receiver reads it (a heartbeat): on the
    /// fast path it goes to the peer's mailbox, which the peer reads when
    /// it wakes anyway, and is stamped with the time it arrived (see
    /// [`crate::mailbox`]).
    pub fn send_deferred_datagram(&self, peer: &Peer, payload: &[u8]) -> Result<(), SendError> {
        self.datagram(peer, payload, true)
    }

    fn datagram(&self, peer: &Peer, payload: &[u8], deferred: bool) -> Result<(), SendError> {
        if payload.len() > MAX_DATAGRAM {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: MAX_DATAGRAM,
            });
        }
        self.inner.send(peer, Outbound::Datagram(payload, deferred))
    }

    /// Reads the mailbox: what waited there goes to the receive channel,
    /// stamped with its arrival time. Call it on every wake-up before
    /// handling the channel, and before anything reads a detector.
    /// Returns how many packets were read (0 without a mailbox).
    pub fn drain_mailbox(&self) -> usize {
        self.inner.mailbox.as_ref().map_or(0, |m| m.drain())
    }

    /// The mailbox's port, if this node has one.
    pub fn mailbox_port(&self) -> Option<u16> {
        self.inner.mailbox.as_ref().map(|m| m.port())
    }

    /// Sends `payload` as one reliable message (its own QUIC stream) and
    /// returns at once. Dropped (and counted) if the peer cannot be
    /// reached.
    pub fn send_message(&self, peer: &Peer, payload: impl Into<Bytes>) -> Result<(), SendError> {
        let payload = payload.into();
        let max = self.inner.cfg.max_message_bytes;
        if payload.len() > max {
            self.inner.stats.send_dropped(1);
            return Err(SendError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        self.inner.send(peer, Outbound::Message(payload))
    }

    /// Re-reads the CA bundle, CRL, certificate and key, checks them as at
    /// start, and uses them for every new connection. Established
    /// connections are then re-verified against the new CA and CRL, and
    /// those whose peer certificate no longer verifies are closed (and
    /// counted). On error the previous material stays in force and the
    /// error says why. The runtime calls this on SIGHUP.
    pub fn reload_certs(&self) -> Result<(), TransportError> {
        let pems = self.inner.files.read()?;
        self.inner.apply_tls(pems)
    }

    /// [`Transport::reload_certs`] if any of the files changed since the
    /// last (re)load; returns whether it reloaded. Cheap enough to poll
    /// every few seconds, which picks up certificates rotated by
    /// cert-manager or an agent without a signal. A half-written rotation
    /// fails the checks and is retried at the next poll.
    pub fn reload_certs_if_changed(&self) -> Result<bool, TransportError> {
        let pems = self.inner.files.read()?;
        if lock(&self.inner.tls).pems == pems {
            return Ok(false);
        }
        self.inner.apply_tls(pems)?;
        Ok(true)
    }

    /// Waits until every message accepted by [`Transport::send_message`]
    /// has been acknowledged by its peer or dropped, or `timeout` passes.
    /// Returns whether everything was settled. Use before
    /// [`Transport::shutdown`] so that a final "leaving" message gets out.
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
    /// `connect_timeout`) for the close to reach peers. Anything still
    /// queued is dropped.
    pub async fn shutdown(&self) {
        self.inner.close();
        let _ = tokio::time::timeout(
            self.inner.cfg.connect_timeout,
            self.inner.endpoint.wait_idle(),
        )
        .await;
    }

    /// The node ids with a live connection now (either direction).
    pub fn connected_nodes(&self) -> Vec<NodeId> {
        let state = lock(&self.inner.state);
        let mut v: Vec<NodeId> = state.by_node.keys().cloned().collect();
        v.sort();
        v
    }

    /// How datagrams to `node` travel on its live connection now: sealed
    /// UDP packets ([`DatagramPath::Fast`]), QUIC datagrams while the peer
    /// has not yet confirmed its key ([`DatagramPath::Pending`]), or QUIC
    /// datagrams for good on this connection ([`DatagramPath::Quic`]: off
    /// in our config, or the peer reported the fast path broken, logged at
    /// warn and counted in `fast_path_fallbacks`). `None` without a live
    /// connection.
    pub fn datagram_path(&self, node: &NodeId) -> Option<DatagramPath> {
        let state = lock(&self.inner.state);
        let id = state.by_node.get(node)?;
        let c = state.conns.get(id)?;
        Some(c.tx.as_ref().map_or(DatagramPath::Quic, |t| t.path()))
    }

    /// Whether heartbeats ([`Transport::send_deferred_datagram`]) to
    /// `node` go to its mailbox now; `None` without a live connection.
    pub fn uses_mailbox(&self, node: &NodeId) -> Option<bool> {
        let state = lock(&self.inner.state);
        let id = state.by_node.get(node)?;
        let c = state.conns.get(id)?;
        Some(c.tx.as_ref().is_some_and(|t| t.uses_mailbox()))
    }

    /// quinn's statistics of the live connection to `node` (packets,
    /// frames, RTT), for measurements. Fast-path packets are not QUIC
    /// packets: see `udp_packets_*` in [`Transport::snapshot`].
    pub fn connection_stats(&self, node: &NodeId) -> Option<quinn::ConnectionStats> {
        let state = lock(&self.inner.state);
        let id = state.by_node.get(node)?;
        state.conns.get(id).map(|c| c.conn.stats())
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

/// `host:port` with a non-empty host and a numeric port; the host is
/// resolved later, on every dial.
pub(crate) fn check_address(addr: &str) -> Result<(), SendError> {
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

/// What a caller asked to send.
enum Outbound<'a> {
    /// A datagram; `true`: it may wait in the receiver's mailbox.
    Datagram(&'a [u8], bool),
    Message(Bytes),
}

impl Outbound<'_> {
    fn channel(&self) -> Channel {
        match self {
            Outbound::Datagram(..) => Channel::Datagram,
            Outbound::Message(_) => Channel::Message,
        }
    }
}

/// What a lookup found for a send.
enum Route {
    /// A live connection, and its fast path.
    Conn(quinn::Connection, Option<Arc<TxPath>>),
    /// Nothing live: dial this address.
    Dial,
    /// The connection at the address belongs to another node.
    Mismatch(NodeId),
}

impl Inner {
    /// A QUIC datagram frame of `payload`: its tag, then the payload.
    fn tagged(&self, payload: &[u8]) -> Bytes {
        let mut arena = lock(&self.arena);
        if arena.capacity() - arena.len() < payload.len() + 1 {
            *arena = BytesMut::with_capacity(ARENA_CHUNK.max(payload.len() + 1));
        }
        arena.extend_from_slice(&[FRAME_USER]);
        arena.extend_from_slice(payload);
        arena.split().freeze()
    }

    /// The route for `peer`, under the state lock.
    fn route(state: &State, peer: &Peer) -> Route {
        let live = |id: &usize| {
            state
                .conns
                .get(id)
                .filter(|c| c.conn.close_reason().is_none())
        };
        if let Some(node) = &peer.node_id {
            if let Some(c) = state.by_node.get(node).and_then(live) {
                return Route::Conn(c.conn.clone(), c.tx.clone());
            }
        }
        if !peer.addr.is_empty() {
            if let Some(c) = state.by_addr.get(peer.addr.as_str()).and_then(live) {
                return match &peer.node_id {
                    Some(want) if *want != c.node_id => Route::Mismatch(c.node_id.clone()),
                    _ => Route::Conn(c.conn.clone(), c.tx.clone()),
                };
            }
        }
        Route::Dial
    }

    fn send(self: &Arc<Self>, peer: &Peer, out: Outbound<'_>) -> Result<(), SendError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        let mut state = lock(&self.state);
        match Self::route(&state, peer) {
            Route::Conn(conn, tx) => {
                drop(state);
                match out {
                    Outbound::Datagram(payload, deferred) => {
                        self.datagram_on(&conn, tx.as_deref(), payload, deferred)
                    }
                    Outbound::Message(payload) => self.send_on(&conn, Channel::Message, payload),
                }
                Ok(())
            }
            Route::Mismatch(actual) => {
                drop(state);
                self.stats.auth_failure(AuthFailure::IdentityMismatch);
                self.stats.send_dropped(1);
                tracing::debug!(
                    addr = %peer.addr,
                    expected = ?peer.node_id,
                    %actual,
                    "the node at this address is another one: dropped"
                );
                Ok(())
            }
            Route::Dial if peer.addr.is_empty() => {
                drop(state);
                self.stats.send_dropped(1);
                Err(SendError::NotConnected {
                    node: peer
                        .node_id
                        .as_ref()
                        .map_or_else(String::new, |n| n.to_string()),
                })
            }
            Route::Dial => {
                check_address(&peer.addr)?;
                let channel = out.channel();
                let payload = match out {
                    Outbound::Datagram(p, _) => self.tagged(p),
                    Outbound::Message(p) => p,
                };
                let start = self.enqueue_dial(&mut state, peer, channel, payload);
                drop(state);
                if start {
                    self.runtime
                        .spawn(crate::dial::dial(self.clone(), peer.addr.clone()));
                }
                Ok(())
            }
        }
    }

    /// Queues for a dial of `peer.addr`; returns whether a dial must start.
    fn enqueue_dial(
        &self,
        state: &mut State,
        peer: &Peer,
        channel: Channel,
        payload: Bytes,
    ) -> bool {
        let now = Instant::now();
        if !state.dials.contains_key(peer.addr.as_str())
            && state.dials.len() >= self.cfg.max_connections
        {
            // Forget addresses whose backoff has run out: all they hold is
            // a failure count.
            state
                .dials
                .retain(|_, d| d.in_progress || d.retry_at.is_some_and(|t| t > now));
        }
        let dial = state.dials.entry(peer.addr.clone()).or_default();
        if !dial.in_progress && dial.retry_at.is_some_and(|t| now < t) {
            self.stats.send_dropped(1);
            return false;
        }
        if dial.queue.len() >= self.cfg.dial_queue_len {
            // Drop-oldest: newer heartbeats and state supersede older.
            if let Some(old) = dial.queue.pop_front() {
                self.dropped(&old, 1);
            }
        }
        if channel == Channel::Message {
            self.pending.fetch_add(1, Ordering::AcqRel);
        }
        dial.queue.push_back(Outgoing {
            expected: peer.node_id.clone(),
            channel,
            payload,
        });
        let start = !dial.in_progress;
        dial.in_progress = true;
        start
    }

    /// Counts `n` dropped items like `o`, settling messages.
    pub(crate) fn dropped(&self, o: &Outgoing, n: usize) {
        self.stats.send_dropped(n);
        if o.channel == Channel::Message {
            self.settled(n);
        }
    }

    /// Sends one datagram on a live connection: sealed on the socket when
    /// its fast path is up, else (or when the socket is full, or a check is
    /// due) as a QUIC datagram.
    fn datagram_on(
        self: &Arc<Self>,
        conn: &quinn::Connection,
        tx: Option<&TxPath>,
        payload: &[u8],
        deferred: bool,
    ) {
        let via = tx.map_or(Via::Quic { check: false }, |t| {
            t.via(Instant::now(), deferred)
        });
        if let (Via::Fast(to), Some(tx)) = (via, tx) {
            let sent = SEAL_BUFFER.with(|b| match b.try_borrow_mut() {
                Ok(mut buf) => self.seal_and_send(tx, to, payload, &mut buf),
                // Unreachable (nothing below re-enters), but a fresh
                // buffer beats a panic.
                Err(_) => self.seal_and_send(tx, to, payload, &mut [0u8; MAX_PACKET]),
            });
            if sent {
                self.stats.datagram_sent(payload.len());
                self.stats.fast_path_sent();
                return;
            }
        }
        if let (Via::Quic { check: true }, Some(tx)) = (via, tx) {
            // Queued first, so that quinn puts both frames in one packet.
            let _ = conn.send_datagram(tx.check_frame());
        }
        self.send_on(conn, Channel::Datagram, self.tagged(payload));
    }

    /// Seals `payload` into `buf` and writes it to the socket; false if
    /// it must go over QUIC instead.
    fn seal_and_send(
        &self,
        tx: &TxPath,
        to: SocketAddr,
        payload: &[u8],
        buf: &mut [u8; MAX_PACKET],
    ) -> bool {
        let Some(n) = tx.seal(payload, buf) else {
            return false;
        };
        tx.sealed_to(to);
        match self.socket.send_fast(to, tx.local_ip(), &buf[..n]) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(remote = %tx.remote, error = %e, "sealed datagram not sent: using QUIC");
                false
            }
        }
    }

    /// Sends on a live connection: a datagram (already tagged, see
    /// [`Inner::tagged`]) synchronously as a QUIC datagram, a message on a
    /// short task that writes its stream and waits for the peer's
    /// acknowledgement (for [`Transport::flush`]).
    pub(crate) fn send_on(
        self: &Arc<Self>,
        conn: &quinn::Connection,
        channel: Channel,
        payload: Bytes,
    ) {
        match channel {
            Channel::Datagram => {
                let len = payload.len().saturating_sub(1);
                match conn.send_datagram(payload) {
                    Ok(()) => self.stats.datagram_sent(len),
                    Err(e) => {
                        self.stats.send_dropped(1);
                        tracing::debug!(remote = %conn.remote_address(), error = %e, "datagram not sent");
                    }
                }
            }
            Channel::Message => {
                // Accepted straight onto a connection: pending until settled.
                self.pending.fetch_add(1, Ordering::AcqRel);
                self.spawn_message(conn.clone(), payload);
            }
        }
    }

    /// Writes one message on a new stream (the message was already counted
    /// as pending).
    pub(crate) fn spawn_message(self: &Arc<Self>, conn: quinn::Connection, payload: Bytes) {
        let inner = self.clone();
        self.runtime.spawn(async move {
            let len = payload.len();
            let write = async {
                let mut stream = conn.open_uni().await.map_err(|e| e.to_string())?;
                stream
                    .write_chunk(payload)
                    .await
                    .map_err(|e| e.to_string())?;
                stream.finish().map_err(|e| e.to_string())?;
                Ok::<_, String>(stream)
            };
            match tokio::time::timeout(inner.cfg.message_timeout, write).await {
                Ok(Ok(stream)) => {
                    inner.stats.message_sent(len);
                    // QUIC retransmits on its own; waiting only tells
                    // `flush` when the peer has it. A dead peer ends this
                    // with the connection (QUIC's idle timeout).
                    let _ = stream.stopped().await;
                }
                Ok(Err(reason)) => {
                    inner.stats.send_dropped(1);
                    tracing::debug!(remote = %conn.remote_address(), %reason, "message not sent");
                }
                Err(_) => {
                    inner.stats.send_dropped(1);
                    tracing::debug!(remote = %conn.remote_address(), "message write timed out");
                }
            }
            inner.settled(1);
        });
    }

    /// Marks `n` accepted messages as settled (acknowledged or dropped).
    pub(crate) fn settled(&self, n: usize) {
        if n > 0 && self.pending.fetch_sub(n, Ordering::AcqRel) == n {
            self.drained.notify_waiters();
        }
    }

    pub(crate) fn client_config(&self) -> quinn::ClientConfig {
        lock(&self.tls).client.clone()
    }

    pub(crate) fn policy(&self) -> &IdentityPolicy {
        &self.policy
    }

    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Records an authenticated connection and sets up its fast path;
    /// returns false (and closes it) when `max_connections` are open.
    pub(crate) fn register(
        &self,
        conn: &quinn::Connection,
        node_id: &NodeId,
        dialled: bool,
        addr: Option<&str>,
    ) -> bool {
        let local = lock(&self.tls).identity.node_id.clone();
        let mut state = lock(&self.state);
        if state.conns.len() >= self.cfg.max_connections {
            drop(state);
            self.stats.refused(crate::HandshakeRefusal::ConnectionLimit);
            tracing::warn!(
                remote = %conn.remote_address(),
                node = %node_id,
                max = self.cfg.max_connections,
                "connection limit reached: closing a new authenticated connection"
            );
            conn.close(codes::CONNECTION_LIMIT, b"connection limit");
            return false;
        }
        let id = conn.stable_id();
        let (tx, rx_key) = match connection_keys(conn, &local, node_id.as_str(), dialled) {
            Ok((tx_key, rx_key)) => {
                let rx_id = rx_key.id;
                let installed = self.fast.install(RxKey::new(
                    rx_key,
                    node_id.clone(),
                    conn.remote_address(),
                    id,
                ));
                if installed {
                    // The peer seals to us once it hears this; until then
                    // it sends QUIC datagrams, so nothing sent while our
                    // handshake completes is lost.
                    self.announce(conn, rx_id);
                } else {
                    tracing::warn!(node = %node_id, "fast-path key id collision: this connection's datagrams stay on QUIC");
                }
                let tx = Arc::new(TxPath::new(
                    tx_key,
                    conn,
                    self.cfg.fast_path,
                    self.cfg.fast_path_check_interval,
                ));
                self.fast.index(&tx);
                (Some(tx), installed.then_some(rx_id))
            }
            Err(e) => {
                tracing::warn!(node = %node_id, error = %e, "datagrams stay on QUIC on this connection");
                (None, None)
            }
        };
        // Older connections of the same node may be from a process that
        // has since restarted: a check makes its successor answer with a
        // stateless reset, so they (and their keys) go at once.
        for old in state.conns.values().filter(|c| c.node_id == *node_id) {
            if let Some(t) = &old.tx {
                t.send_check();
            }
        }
        state.conns.insert(
            id,
            Conn {
                conn: conn.clone(),
                node_id: node_id.clone(),
                dialled,
                tx,
                rx_key,
                _open: self.stats.connection_opened(),
            },
        );
        state.by_node.insert(node_id.clone(), id);
        if let Some(addr) = addr {
            state.by_addr.insert(addr.to_owned(), id);
        }
        true
    }

    /// Tells the peer it may seal to us with `rx_id`, and where our
    /// mailbox is.
    fn announce(&self, conn: &quinn::Connection, rx_id: u64) {
        let _ = conn.send_datagram(Frame::Ready(rx_id).encode());
        if let Some(m) = &self.mailbox {
            let mailbox = Frame::Mailbox {
                key_id: rx_id,
                port: m.port(),
            };
            let _ = conn.send_datagram(mailbox.encode());
        }
    }

    /// Handles a fast-path control frame that arrived on `conn`.
    pub(crate) fn on_control(&self, conn: &quinn::Connection, node: &NodeId, frame: Frame) {
        let tx = || {
            lock(&self.state)
                .conns
                .get(&conn.stable_id())
                .and_then(|c| c.tx.clone())
        };
        match frame {
            Frame::Ready(key_id) => {
                if let Some(t) = tx() {
                    if t.ready(key_id) {
                        tracing::debug!(%node, remote = %t.remote, "datagrams on the fast path");
                    }
                }
            }
            Frame::Check {
                key_id,
                sent,
                mailbox,
            } => {
                // What waits in the mailbox counts as arrived.
                if let Some(m) = &self.mailbox {
                    m.drain();
                }
                match self.fast.on_check(conn.stable_id(), key_id, sent, mailbox) {
                    Some(Frame::Ready(id)) => self.announce(conn, id),
                    Some(reply) => {
                        let _ = conn.send_datagram(reply.encode());
                    }
                    None => {}
                }
            }
            Frame::Mailbox { key_id, port } => {
                if let Some(t) = tx() {
                    if t.set_mailbox(key_id, port) {
                        tracing::debug!(%node, port, "heartbeats to the peer's mailbox");
                    }
                }
            }
            Frame::MailboxOk(key_id) => {
                if let Some(t) = tx() {
                    if t.mailbox_ok(key_id) {
                        tracing::debug!(%node, "the peer's mailbox gets our heartbeats");
                    }
                }
            }
            Frame::MailboxUnavailable(key_id) => {
                if let Some(t) = tx() {
                    if t.mailbox_unavailable(key_id) {
                        self.stats.mailbox_fallback();
                        tracing::warn!(
                            %node,
                            remote = %t.remote,
                            "the peer reports that our heartbeats do not reach its mailbox \
                             port: sealing them to its main port from now on (open the \
                             mailbox port too, or pin it with mailbox_port)"
                        );
                    }
                }
            }
            Frame::Unavailable(key_id) => {
                if let Some(t) = tx() {
                    if t.unavailable(key_id) {
                        self.stats.fast_path_fallback();
                        tracing::warn!(
                            %node,
                            remote = %t.remote,
                            "the peer reports that our fast-path datagrams do not reach it: \
                             QUIC datagrams on this connection from now on (check for a \
                             firewall or middlebox dropping non-QUIC UDP on this port)"
                        );
                    }
                }
            }
            Frame::User(_) => {}
        }
    }

    /// Forgets a connection that ended.
    pub(crate) fn unregister(&self, conn: &quinn::Connection) {
        let id = conn.stable_id();
        let mut state = lock(&self.state);
        if let Some(c) = state.conns.remove(&id) {
            self.fast
                .remove(id, c.rx_key, c.tx.as_ref().map(|t| t.key_id()));
            if state.by_node.get(&c.node_id) == Some(&id) {
                // Another live connection of the node takes over, if any.
                let other = state
                    .conns
                    .iter()
                    .find(|(_, o)| o.node_id == c.node_id)
                    .map(|(k, _)| *k);
                match other {
                    Some(o) => state.by_node.insert(c.node_id.clone(), o),
                    None => state.by_node.remove(&c.node_id),
                };
            }
        }
        state.by_addr.retain(|_, v| *v != id);
    }

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
        let signer = Arc::new(RecordSigner::from_tls(&tls)?);
        let server = quic::server_config(&tls, &self.quic, &self.cfg)?;
        let client = quic::client_config(&tls, &self.quic)?;
        self.endpoint.set_server_config(Some(server));
        {
            let mut state = lock(&self.tls);
            state.client = client;
            state.identity = tls.identity().clone();
            state.not_after = tls.not_after();
            state.pems = pems;
            state.signer = signer;
        }
        *self.trust.write().unwrap_or_else(PoisonError::into_inner) = tls.trust().clone();
        let closed = self.reverify(tls.trust());
        tracing::info!(
            node = %before,
            crls = tls.trust().crl_count(),
            closed,
            "TLS material reloaded; established connections re-verified"
        );
        Ok(())
    }

    /// Re-verifies every established connection's peer chain against
    /// `trust`; closes and counts those that fail. Returns how many.
    fn reverify(&self, trust: &TrustMaterial) -> usize {
        let conns: Vec<(quinn::Connection, NodeId, bool)> = lock(&self.state)
            .conns
            .values()
            .map(|c| (c.conn.clone(), c.node_id.clone(), c.dialled))
            .collect();
        let now = UnixTime::now();
        let mut closed = 0;
        for (conn, node, dialled) in conns {
            let Some(chain) = peer_chain(&conn) else {
                continue;
            };
            let Some((leaf, rest)) = chain.split_first() else {
                continue;
            };
            let usage = if dialled {
                Usage::Server
            } else {
                Usage::Client
            };
            if let Err(e) = trust.verify(leaf, rest, now, usage) {
                let reason = AuthFailure::from_rustls(&e);
                self.stats.closed_on_reload();
                self.stats.auth_failure(reason);
                tracing::warn!(
                    %node,
                    remote = %conn.remote_address(),
                    %reason,
                    error = %e,
                    "closing connection: peer certificate no longer valid after reload"
                );
                conn.close(codes::CERTIFICATE_INVALID, b"certificate no longer valid");
                closed += 1;
            }
        }
        closed
    }

    fn close(&self) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        let dropped: Vec<Outgoing> = lock(&self.state)
            .dials
            .drain()
            .flat_map(|(_, d)| d.queue)
            .collect();
        for o in &dropped {
            self.dropped(o, 1);
        }
        self.fast.close();
        self.endpoint.close(codes::SHUTDOWN, b"shutdown");
    }
}

/// The certificate chain a connection's peer presented.
pub(crate) fn peer_chain(conn: &quinn::Connection) -> Option<Vec<CertificateDer<'static>>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()
        .map(|b| *b)
}

/// The verified identity of an established connection's peer.
pub(crate) fn identity_of(
    conn: &quinn::Connection,
    policy: &IdentityPolicy,
) -> Result<NodeId, String> {
    let certs = peer_chain(conn).ok_or("peer presented no certificate chain")?;
    let leaf = certs.first().ok_or("peer certificate chain is empty")?;
    policy
        .check(leaf)
        .map(|id| NodeId::from(id.node_id))
        .map_err(|e| e.to_string())
}

/// How a failed handshake came about, read from the QUIC error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// We refused the peer (a TLS alert we sent).
    Ours(AuthFailure),
    /// The peer refused us (a TLS alert it sent).
    Theirs(AuthFailure),
    /// Not a TLS refusal: timeout, unreachable, protocol error.
    NotTls,
}

/// QUIC carries TLS alerts as transport error codes 0x100..=0x1ff.
pub(crate) fn tls_alert(code: quinn::TransportErrorCode) -> Option<u8> {
    let code = u64::from(code);
    (0x100..=0x1ff)
        .contains(&code)
        .then_some((code & 0xff) as u8)
}

pub(crate) fn classify(e: &quinn::ConnectionError) -> Refusal {
    match e {
        quinn::ConnectionError::TransportError(te) => match tls_alert(te.code) {
            Some(alert) => Refusal::Ours(AuthFailure::from_alert(alert)),
            None => Refusal::NotTls,
        },
        quinn::ConnectionError::ConnectionClosed(cc) => match tls_alert(cc.error_code) {
            Some(alert) => Refusal::Theirs(AuthFailure::from_alert(alert)),
            None => Refusal::NotTls,
        },
        _ => Refusal::NotTls,
    }
}

/// Counts and logs a refused handshake, in either direction.
pub(crate) fn count_refusal(inner: &Inner, remote: SocketAddr, e: &quinn::ConnectionError) {
    match classify(e) {
        Refusal::Ours(AuthFailure::Version) | Refusal::Theirs(AuthFailure::Version) => {
            inner.stats.auth_failure(AuthFailure::Version);
            tracing::warn!(
                %remote,
                ours = %String::from_utf8_lossy(crate::tls::ALPN),
                "refused: the peer speaks another phimon wire version (no common ALPN); \
                 upgrade or downgrade one side"
            );
        }
        Refusal::Ours(reason) => {
            inner.stats.auth_failure(reason);
            tracing::warn!(%remote, %reason, error = %e, "refused peer certificate");
        }
        Refusal::Theirs(reason) => {
            inner.stats.handshake_failure();
            tracing::warn!(%remote, %reason, error = %e, "peer refused our certificate");
        }
        Refusal::NotTls => {
            inner.stats.handshake_failure();
            tracing::debug!(%remote, error = %e, "handshake failed");
        }
    }
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
        assert_eq!(tls_alert(quinn::TransportErrorCode::crypto(120)), Some(120));
        assert_eq!(
            tls_alert(quinn::TransportErrorCode::PROTOCOL_VIOLATION),
            None
        );
        assert_eq!(AuthFailure::from_alert(120), AuthFailure::Version);
        assert_eq!(AuthFailure::from_alert(44), AuthFailure::Revoked);
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
        let bad = TransportConfig {
            max_handshakes_per_ip: 0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
