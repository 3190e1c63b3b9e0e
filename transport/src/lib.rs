//! The QUIC transport of phimon: quinn with mutual TLS against the cluster
//! CA (rustls, ring), one connection per peer carrying both
//!
//! - **datagrams** ([`Transport::send_datagram`]): QUIC DATAGRAM frames,
//!   unreliable, at most [`MAX_DATAGRAM`] bytes, one packet each — the
//!   heartbeats every node sends its observers and the small probes;
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
//! stream. A datagram is handed to quinn synchronously by the caller's
//! `send_datagram` (no queue, no task of ours), and nothing of ours runs
//! on a timer: connections stay up while heartbeats flow and idle out
//! after `idle_timeout` otherwise (no keep-alive), failed peers back off by
//! refusing sends until their retry time rather than by sleeping.
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
//!   once and we reconnect.

mod accept;
mod config;
mod conn;
mod credential;
mod dial;
pub mod flood;
mod quic;
mod stats;
pub mod tls;
mod transport;

pub use bytes::Bytes;
pub use config::{MESSAGE_BYTES_RANGE, TransportConfig};
pub use credential::{
    CredentialError, CredentialVerifier, RecordSigner, SIGNATURE_CONTEXT, Signature,
    VerifiedCredential,
};
pub use quic::MAX_DATAGRAM;
pub use stats::{HandshakeRefusal, StatsSnapshot, TransportStats};
pub use tls::AuthFailure;
pub use transport::{Channel, Peer, Received, SendError, Transport, TransportError};
