//! Node identity.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// A node's identity: the subject alternative name of its certificate.
///
/// A newtype over a shared string: cloning is a reference-count increment,
/// because every digest, delta and event carries ids and a 1,000-node
/// simulation clones them hundreds of millions of times. It serialises as
/// a plain string, orders by its bytes and displays as itself.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// Longest accepted id, in bytes (a DNS name is at most 253).
    pub const MAX_LEN: usize = 255;

    /// An id from any string.
    pub fn new(id: impl Into<String>) -> Self {
        NodeId(Arc::from(id.into()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the id is usable on the wire: 1..=[`MAX_LEN`](Self::MAX_LEN) bytes.
    pub fn is_valid(&self) -> bool {
        !self.0.is_empty() && self.0.len() <= Self::MAX_LEN
    }
}

impl Ord for NodeId {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        // Copies of one id usually share the allocation (they were cloned
        // from the same message), so the pointer test settles most of the
        // comparisons of a digest merge without touching the bytes.
        if Arc::ptr_eq(&self.0, &other.0) {
            return Ordering::Equal;
        }
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        // Ids of one fleet usually differ within their first bytes: decide
        // there without a call to memcmp.
        for (x, y) in a.iter().zip(b).take(8) {
            if x != y {
                return x.cmp(y);
            }
        }
        a.cmp(b)
    }
}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<String> for NodeId {
    fn from(s: String) -> Self {
        NodeId(Arc::from(s))
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId(Arc::from(s))
    }
}

impl Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        shared_str::deserialize(d).map(NodeId)
    }
}

/// Serde for `Arc<str>` fields without serde's `rc` feature.
pub(crate) mod shared_str {
    use std::sync::Arc;

    pub(crate) fn serialize<S: serde::Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<str>, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Arc<str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Arc<str>, E> {
                Ok(Arc::from(v))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_bytes_and_round_trips() {
        let a = NodeId::from("node-a");
        let b = NodeId::new("node-b");
        assert!(a < b);
        assert_eq!(a.cmp(&a.clone()), Ordering::Equal);
        assert_eq!(a.cmp(&NodeId::from("node-a")), Ordering::Equal);
        let bytes = rmp_serde::to_vec(&a).unwrap();
        let back: NodeId = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, a);
        assert_eq!(a.to_string(), "node-a");
        assert!(!NodeId::from("").is_valid());
        assert!(!NodeId::new("x".repeat(256)).is_valid());
    }
}
