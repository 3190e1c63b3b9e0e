//! Errors of the gossip core.

use crate::NodeId;

/// Why a message was rejected or a local request refused.
///
/// Each rejection of an incoming message is its own variant so the runtime
/// can count them apart ([`label`](Self::label) gives a metric label).
/// Junk inside a well-formed message (too many new ids, oversized
/// key/values, implausible generations) is not an error: it is dropped
/// entry by entry and counted in [`GossipStats`](crate::GossipStats).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// The frame is longer than `max_message_bytes`; it was not decoded.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Length of the frame.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The frame is empty: not even a version byte.
    #[error("empty message")]
    Empty,
    /// The frame's first byte names a protocol version this node does not
    /// speak.
    #[error("unsupported protocol version {version} (this node speaks {supported})")]
    UnsupportedVersion {
        /// The version byte received.
        version: u8,
        /// The version this node speaks.
        supported: u8,
    },
    /// The frame does not decode as a message.
    #[error("malformed message: {reason}")]
    Malformed {
        /// The decoder's explanation.
        reason: String,
    },
    /// The message decodes but breaks a rule of the protocol (unsorted or
    /// duplicate entries, an id out of its digest's range, a field out of
    /// bounds).
    #[error("invalid message: {reason}")]
    Invalid {
        /// Which rule.
        reason: String,
    },
    /// The message belongs to another cluster.
    #[error("message for cluster {got:?}, this node is in {expected:?}")]
    WrongCluster {
        /// This node's cluster name.
        expected: String,
        /// The name in the message.
        got: String,
    },
    /// The sender named in the message is not the peer its certificate
    /// authenticated.
    #[error(
        "message claims sender {claimed} but the connection is authenticated as {authenticated}"
    )]
    SenderMismatch {
        /// The id inside the message.
        claimed: NodeId,
        /// The id from the peer's certificate.
        authenticated: NodeId,
    },
    /// A key/value update would exceed this node's limits.
    #[error("key/value {key:?} refused: {reason}")]
    KvRefused {
        /// The key (truncated to 64 bytes).
        key: String,
        /// Which limit.
        reason: String,
    },
}

impl GossipError {
    /// A short, fixed label for metrics (`reason` label of a decode-error
    /// counter).
    pub fn label(&self) -> &'static str {
        match self {
            GossipError::TooLarge { .. } => "too_large",
            GossipError::Empty => "empty",
            GossipError::UnsupportedVersion { .. } => "unsupported_version",
            GossipError::Malformed { .. } => "malformed",
            GossipError::Invalid { .. } => "invalid",
            GossipError::WrongCluster { .. } => "wrong_cluster",
            GossipError::SenderMismatch { .. } => "sender_mismatch",
            GossipError::KvRefused { .. } => "kv_refused",
        }
    }
}
