//! The QUIC transport of phimon: quinn with mutual TLS against the cluster
//! CA (rustls, ring), one connection per peer carrying both
//!
//! - **datagrams** ([`Transport::send_datagram`]): unreliable, at most
//!   [`MAX_DATAGRAM`] bytes — the heartbeats every node sends its
//!   observers and the small probes. Once a connection is up they travel
//!   on the **fast path**: plain UDP packets on the same socket, sealed
//!   with keys exported from that connection's TLS session, one packet
//!   each and no ACK (a QUIC datagram costs two: itself and the
//!   receiver's ACK). Before that, and where the fast path does not get
//!   through, QUIC DATAGRAM frames;
//! - **messages** ([`Transport::send_message`]): reliable, one
//!   unidirectional stream per message, at most `max_message_bytes` — the
//!   rarer reconciliation and rumor traffic;
//!
//! and delivering what arrives as [`Received`] on one bounded channel, with
//! the sender's node id taken from its verified certificate and the
//! arrival stamped with the local monotonic clock when it was read.
//!
//! It also owns the node's certificate lifecycle (CA, optional CRL,
//! reload with re-verification of established connections, expiry), the
//! identity rules ([`tls`]), record signing with the node's certificate
//! key ([`RecordSigner`], [`CredentialVerifier`]), handshake flood
//! protection (Retry, per-source and global handshake caps, separate slots
//! for authenticated connections) and the development PKI behind
//! `phimon certs` ([`tls::generate_dev_certs`]).
//!
//! # The fast path
//!
//! Packet layout, key derivation, the switch-over and back, and what an
//! outsider or a member can and cannot do with it (the security review)
//! are in [`fastpath`]; in short:
//!
//! - **Demux.** Our own [`quinn::AsyncUdpSocket`] wraps the node's one UDP
//!   socket. A packet whose first byte has both high bits clear is never
//!   QUIC (QUIC's fixed bit 0x40 is always set: greasing it is off), so
//!   the socket verifies and delivers it while quinn's endpoint driver
//!   reads its batch; everything else goes to quinn.
//! - **Keys.** Per connection and direction, from
//!   [`quinn::Connection::export_keying_material`] with the TLS role and
//!   both node ids in the context, plus a key id derived the same way.
//!   ChaCha20-Poly1305 from `ring` seals the payload and authenticates the
//!   header (key id, 64-bit counter); a 128-counter sliding window refuses
//!   replays. Keys die with their connection.
//! - **Coordination** rides the QUIC connection as tagged datagrams: the
//!   receiver's `Ready` (the sender seals only after it, so nothing is
//!   lost while the far end completes its handshake), and the sender's
//!   `Check` after its second sealed packet and then every
//!   `fast_path_check_interval` (keeps the connection out of its idle
//!   timeout, draws a stateless reset from a restarted peer, and lets the
//!   receiver report a path that drops sealed packets, after which the
//!   connection stays on QUIC datagrams: [`Transport::datagram_path`],
//!   `fast_path_fallbacks`). A sealed packet for an unknown key draws a
//!   rate-limited notice, which makes the sender check at once.
//! - **Drops** are counted by reason ([`DatagramDrop`]: malformed, unknown
//!   key, wrong source, bad MAC, replay), cheapest test first.
//! - **The heartbeat mailbox** ([`mailbox`]): a second UDP socket, on
//!   Linux, that the node reads only when it wakes anyway
//!   ([`Transport::drain_mailbox`]), with the kernel's arrival times.
//!   Heartbeats ([`Transport::send_deferred_datagram`]) are sealed to it,
//!   so that they do not wake their receiver; checks judge it apart from
//!   the main socket, and a mailbox that gets nothing (a firewall, NAT)
//!   makes the sender seal heartbeats to the main socket instead
//!   (`mailbox_fallbacks`).
//!
//! It knows nothing of gossip: the sans-IO cores (`phimon-gossip`) decide
//! what to send to whom; the runtime hands their output to the `send_*`
//! methods and feeds [`Received`] back.
//!
//! # Driving it
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use phimon_transport::{Peer, Transport, TransportConfig};
//! let config = TransportConfig { cluster_name: "prod".into(), ..Default::default() };
//! let (transport, mut inbox) = Transport::bind(config)?; // inside a tokio runtime
//! let seed = Peer { node_id: None, addr: "10.0.0.6:7800".into() };
//! transport.send_message(&seed, b"hello".to_vec())?; // never blocks
//! while let Some(r) = inbox.recv().await {
//!     // r.node_id is the sender's certificate identity.
//!     println!("{:?} of {} bytes from {} at {}", r.channel, r.payload.len(), r.node_id, r.remote);
//! }
//! # Ok(()) }
//! ```
//!
//! # Tasks, wake-ups and packets
//!
//! Built for a current-thread tokio runtime and a budget of well under a
//! millisecond of CPU per second. Tasks: quinn's endpoint driver and one
//! driver per connection; ours are one accept loop, **one task per
//! connection** (either direction) that reads its datagrams and streams,
//! one short task per incoming handshake, per dial and per message
//! stream. A datagram is sealed and written to the socket (fast path) or
//! handed to quinn synchronously by the caller's `send_datagram` (no
//! queue, no task of ours, no allocation on the fast path); a sealed
//! datagram is delivered by the socket inside quinn's endpoint driver,
//! one wake-up per packet. Nothing of ours runs on a timer: connections
//! stay up while heartbeats flow (their periodic `Check` is a QUIC packet)
//! and idle out after `idle_timeout` otherwise (no keep-alive), failed
//! peers back off by refusing sends until their retry time rather than by
//! sleeping.
//!
//! # Failure handling
//!
//! - Refused peers (no or bad certificate, revoked, other cluster or wire
//!   version, unexpected identity) are counted by reason in
//!   [`TransportStats`] and never delivered.
//! - A peer without a connection is dialled in the background; what is
//!   sent meanwhile waits in a small bounded queue (drop-oldest).
//! - QUIC's own loss detection and idle timeout find dead connections;
//!   the next send dials again. Failed dials back off exponentially with
//!   jitter; DNS names are resolved afresh on every attempt.
//! - The stateless-reset key is derived from the node's private key, so a
//!   peer that restarts on the same address resets our stale connection at
//!   the first QUIC packet and we reconnect: our sealed packets draw a
//!   notice from it, the notice a `Check`, the check the reset. A node
//!   that registers a new connection of a peer checks the peer's older
//!   ones the same way, so those of a restarted peer go at once, with
//!   their keys.

mod accept;
mod config;
mod conn;
mod credential;
mod dial;
pub mod fastpath;
pub mod flood;
#[cfg(target_os = "linux")]
pub mod mailbox;
#[cfg(not(target_os = "linux"))]
#[path = "mailbox_stub.rs"]
pub mod mailbox;
mod quic;
mod socket;
mod stats;
pub mod tls;
mod transport;

pub use bytes::Bytes;
pub use config::{MESSAGE_BYTES_RANGE, TransportConfig};
pub use credential::{
    CredentialError, CredentialVerifier, RecordSigner, SIGNATURE_CONTEXT, Signature,
    VerifiedCredential,
};
pub use fastpath::{DatagramPath, ID_LABEL, INTEGRITY_LIMIT, KEY_LABEL, NOTICES_PER_SECOND};
pub use quic::MAX_DATAGRAM;
pub use stats::{DatagramDrop, HandshakeRefusal, StatsSnapshot, TransportStats};
pub use tls::AuthFailure;
pub use transport::{Channel, Peer, Received, SendError, Transport, TransportError};
