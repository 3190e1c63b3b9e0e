//! Errors of the protocol core.

use crate::record::RecordError;
use crate::wire::WireError;

/// Why a frame or a local request was refused.
///
/// A frame that does not decode is refused whole ([`Wire`](Self::Wire)).
/// A bad record inside a good frame is not an error of the frame: it is
/// dropped on its own and counted in
/// [`GossipStats::records_rejected`](crate::GossipStats::records_rejected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// The frame does not decode or breaks a rule of the wire format.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// This node's own record could not be signed or is invalid (a
    /// key/value too large, an unusable key).
    #[error("own record: {0}")]
    OwnRecord(RecordError),
    /// A frame from this node's own id.
    #[error("frame from this node's own id")]
    FromSelf,
}

impl GossipError {
    /// A short, fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            GossipError::Wire(e) => e.label(),
            GossipError::OwnRecord(_) => "own_record",
            GossipError::FromSelf => "from_self",
        }
    }
}
