//! phimon's protocol core: who is in the fleet, who watches whom, and what
//! the watchers say. Sans-IO: no clock, no socket, no thread, no tokio,
//! quinn or rustls.
//!
//! - **Membership.** Every node has a [`Record`] — generation, address,
//!   declared status (alive / leaving / left), small key/values and its
//!   [`Verdict`]s — signed with its own key ([`Signer`]) and carrying its
//!   credential, so every other node verifies it ([`Authority`]) and can
//!   relay it but never change it. Tables reconcile by fingerprint: a
//!   [`wire::Heartbeat`] or [`wire::Probe`] carries it, and only when two
//!   tables differ do they exchange bucket fingerprints, then the versions
//!   of the differing buckets, then the records. A record new to a node is
//!   pushed on at once to `fanout` random peers. Settled, a round costs a
//!   few fixed-size datagrams whatever the fleet's size.
//! - **Monitoring.** Nodes sit on a ring by [`RingKey`] (a hash of the
//!   id). A node's observers are the `k` live members after it; it sends
//!   them a heartbeat datagram every interval, and only these heartbeats
//!   feed their phi detectors (phimon-detector). Each observer publishes
//!   its verdict on each subject in its own record.
//! - **Status.** A node is [`Status::Suspected`] when a majority of its
//!   observers suspect it, [`Status::Alive`] when one vouches for it and no
//!   majority suspects it, [`Status::Unknown`] before that. One status
//!   vocabulary for the core, the alert engine, the API and the metrics.
//!
//! [`Gossip`] is the core of one node; its type doc gives the call order.
//! The wire format is in [`wire`]. The QUIC transport, certificates and
//! the tokio loop are other crates' (phimon-transport, the binary); the
//! deterministic simulator is phimon-sim. `docs/gossip.md` describes the
//! protocol and what a hostile member can and cannot do.

mod auth;
mod config;
mod core;
mod error;
mod key;
mod monitor;
mod node_id;
mod record;
mod status;
mod sync;
mod table;
mod view;
pub mod wire;

pub use crate::auth::{AuthError, Authority, SharedSecretAuthority, SharedSecretSigner, Signer};
pub use crate::config::{DEFAULT_OBSERVERS, GossipConfig};
pub use crate::core::{Event, Gossip, GossipStats, Peer, Snapshot, Transmit};
pub use crate::error::GossipError;
pub use crate::key::{BUCKETS, RingKey};
pub use crate::monitor::Local;
pub use crate::node_id::{InvalidNodeId, NodeId};
pub use crate::record::{
    Declared, KeyValue, MAX_VERDICTS, Record, RecordBody, RecordError, SIGN_DOMAIN, Verdict,
};
pub use crate::status::Status;
pub use crate::view::{Member, Observed, ObserverVerdict};
pub use phimon_detector::Timestamp;
