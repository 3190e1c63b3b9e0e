//! Membership and heartbeat dissemination for phimon: a sans-IO protocol
//! core and the deterministic cluster simulator. The QUIC transport that
//! carries its frames is the `phimon-transport` crate.
//!
//! - [`Gossip`]: the protocol core for one node. Scuttlebutt push-pull
//!   anti-entropy (SYN digest → ACK delta + request → ACK2 delta) over a
//!   table of [`NodeId`] → generation, heartbeat counter, declared
//!   [`Status`] and a small versioned key/value map; `fanout` random live
//!   peers per round, dead nodes and seeds now and then. It judges every
//!   peer with its own phi-accrual detector fed with local arrival times,
//!   and reports [`Event`]s. Settings: [`GossipConfig`].
//! - [`wire`]: the versioned, size-capped MessagePack frames and their
//!   exact size function.
//! - [`sim`]: N cores in one process on a virtual clock with loss,
//!   latency, partitions, crashes and restarts (`phimon simulate` and the
//!   cluster tests).
//!
//! The core reads no clock, opens no socket and spawns nothing: the
//! caller passes `now` ([`Timestamp`], monotonic microseconds), the
//! authenticated sender of each frame and a seed for its random choices,
//! and drains messages, events and the next timeout. `docs/gossip.md`
//! describes the protocol, its caps and what a member that gossips junk
//! can and cannot do.

mod config;
mod core;
mod error;
mod member;
mod node_id;
pub mod sim;
pub mod wire;

pub use crate::config::GossipConfig;
pub use crate::core::{Event, Gossip, GossipStats, MAX_GENERATION_JUMP, Transmit, TypedTransmit};
pub use crate::error::GossipError;
pub use crate::member::{Member, MemberStatus};
pub use crate::node_id::{InvalidNodeId, NodeId};
pub use crate::wire::Status;
pub use phimon_detector::Timestamp;
