//! Membership and heartbeat dissemination for phimon (placeholder until
//! the gossip core lands): a sans-IO protocol core, the QUIC transport
//! that drives it, and the deterministic cluster simulator.

pub mod tls;
pub mod transport;
