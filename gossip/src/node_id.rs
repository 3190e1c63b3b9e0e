//! Node identity.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// A node's identity: the subject alternative name of its certificate.
///
/// Every digest, delta and event carries ids, and a digest lists every
/// node: ids are copied and compared far more than anything else in the
/// core. So an id of up to 22 bytes (most host names) is held inline: a
/// copy is a 24-byte move, comparing two reads no other memory, and
/// decoding a digest allocates nothing per entry. A longer id is a shared
/// string (a copy is a reference-count increment). It serialises as a
/// plain string, orders by its bytes and displays as itself.
#[derive(Clone)]
pub struct NodeId(Repr);

/// Longest id held inline.
pub(crate) const INLINE: usize = 22;

#[derive(Clone)]
enum Repr {
    /// `len` bytes of a string, then zeros. Every id of at most
    /// [`INLINE`] bytes, so that equal ids always have the same form.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// Every longer id.
    Shared(Arc<str>),
}

impl NodeId {
    /// Longest accepted id, in bytes (a DNS name is at most 253).
    pub const MAX_LEN: usize = 255;

    /// An id from any string.
    pub fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        if id.len() <= INLINE {
            return NodeId::from(id.as_str());
        }
        NodeId(Repr::Shared(Arc::from(id)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                // Always valid: the bytes were copied from a `str` (the
                // fallback only keeps this total without `unsafe`).
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("")
            }
            Repr::Shared(s) => s,
        }
    }

    /// The id's bytes (no UTF-8 check: the fast path of comparisons and
    /// searches).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Shared(s) => s.as_bytes(),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Inline { len, .. } => usize::from(*len),
            Repr::Shared(s) => s.len(),
        }
    }

    /// True for the empty id (never valid on the wire).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the id is usable on the wire: 1..=[`MAX_LEN`](Self::MAX_LEN) bytes.
    pub fn is_valid(&self) -> bool {
        !self.is_empty() && self.len() <= Self::MAX_LEN
    }

    /// Longest id a certificate may carry, in bytes: the longest DNS name.
    pub const MAX_CERT_LEN: usize = 253;

    /// The character rule every node id must follow where it enters the
    /// system (a certificate loaded or verified, the configuration): 1 to
    /// [`MAX_CERT_LEN`](Self::MAX_CERT_LEN) bytes of ASCII letters, digits,
    /// `-`, `_` and `.`, neither starting nor ending with `.` or `-`.
    ///
    /// Ids end up in logs, metric labels, webhook text and file names; this
    /// set needs no escaping in any of them and cannot smuggle markup
    /// (`<!channel>`), newlines or path separators. It is a superset of
    /// host names, so a certificate's DNS name is usually the id as is.
    pub fn check(id: &str) -> Result<(), InvalidNodeId> {
        if id.is_empty() {
            return Err(InvalidNodeId::Empty);
        }
        if id.len() > Self::MAX_CERT_LEN {
            return Err(InvalidNodeId::TooLong { len: id.len() });
        }
        if let Some((at, ch)) = id
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(InvalidNodeId::BadChar { ch, at });
        }
        if id.starts_with(['.', '-']) || id.ends_with(['.', '-']) {
            return Err(InvalidNodeId::BadEdge);
        }
        Ok(())
    }
}

/// Why a string is not an acceptable node id (see [`NodeId::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidNodeId {
    /// The id is empty.
    #[error("node id is empty")]
    Empty,
    /// The id is longer than [`NodeId::MAX_CERT_LEN`] bytes.
    #[error("node id is {len} bytes long, at most 253 are allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The id holds a character outside ASCII letters, digits, `-`, `_`
    /// and `.`.
    #[error(
        "node id holds {ch:?} at byte {at}: only ASCII letters, digits, '-', '_' and '.' are allowed"
    )]
    BadChar {
        /// The first offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// The id starts or ends with `.` or `-`.
    #[error("node id must not start or end with '.' or '-'")]
    BadEdge,
}

/// The first 8 inline bytes as a big-endian word.
#[inline(always)]
fn head(b: &[u8; INLINE]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// The other inline bytes as two big-endian words, zero-padded.
#[inline(always)]
fn tail(b: &[u8; INLINE]) -> [u64; 2] {
    [
        u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        u64::from_be_bytes([b[16], b[17], b[18], b[19], b[20], b[21], 0, 0]),
    ]
}

impl PartialEq for NodeId {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Repr::Inline { len: la, bytes: a }, Repr::Inline { len: lb, bytes: b }) => {
                la == lb && a == b
            }
            // `Arc`'s own equality tests the pointer first only for sized
            // types; copies of one id share it.
            (Repr::Shared(a), Repr::Shared(b)) => Arc::ptr_eq(a, b) || a == b,
            // One form per length: an inline id never equals a shared one.
            _ => false,
        }
    }
}

impl Eq for NodeId {}

impl std::hash::Hash for NodeId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As the string hashes: `Borrow<str>` lets maps be searched by `&str`.
        self.as_str().hash(state);
    }
}

impl Ord for NodeId {
    #[inline(always)]
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.0, &other.0) {
            (Repr::Inline { len: la, bytes: a }, Repr::Inline { len: lb, bytes: b }) => {
                // Zero padding sorts a proper prefix first, as bytes do;
                // when the padded bytes are equal, one id is the other
                // followed by zero bytes, and the shorter is smaller. Ids
                // of one fleet usually differ in the first word.
                let (x, y) = (head(a), head(b));
                if x != y {
                    return x.cmp(&y);
                }
                tail(a).cmp(&tail(b)).then(la.cmp(lb))
            }
            (Repr::Shared(a), Repr::Shared(b)) if Arc::ptr_eq(a, b) => Ordering::Equal,
            _ => self.as_bytes().cmp(other.as_bytes()),
        }
    }
}

impl PartialOrd for NodeId {
    #[inline(always)]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<String> for NodeId {
    fn from(s: String) -> Self {
        NodeId::new(s)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            return NodeId(Repr::Inline {
                len: s.len() as u8,
                bytes,
            });
        }
        NodeId(Repr::Shared(Arc::from(s)))
    }
}

impl Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = NodeId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NodeId, E> {
                Ok(NodeId::from(v))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Ids order as their bytes, whatever their lengths and shared
        /// prefixes.
        #[test]
        fn order_is_the_byte_order(x in "[ab0-9.\\x00-]{0,30}", y in "[ab0-9.\\x00-]{0,30}") {
            let (a, b) = (NodeId::from(x.as_str()), NodeId::from(y.as_str()));
            prop_assert_eq!(a.cmp(&b), x.as_bytes().cmp(y.as_bytes()), "{:?} vs {:?}", x, y);
            prop_assert_eq!(a == b, x == y);
            prop_assert!(a == a.clone());
            prop_assert_eq!(a.as_str(), x.as_str());
            prop_assert_eq!(a.len(), x.len());
            let y2 = format!("{x}{y}");
            let c = NodeId::from(y2.as_str());
            prop_assert_eq!(a.cmp(&c), x.as_bytes().cmp(y2.as_bytes()));
            prop_assert_eq!(c.cmp(&a), y2.as_bytes().cmp(x.as_bytes()));
        }
    }

    #[test]
    fn check_accepts_the_documented_set_only() {
        for ok in [
            "a",
            "node-a",
            "n_1",
            "node-a.prod.internal",
            "A9",
            &"x".repeat(253),
        ] {
            assert_eq!(NodeId::check(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(NodeId::check(""), Err(InvalidNodeId::Empty));
        assert_eq!(
            NodeId::check(&"x".repeat(254)),
            Err(InvalidNodeId::TooLong { len: 254 })
        );
        assert_eq!(
            NodeId::check("phimoé"),
            Err(InvalidNodeId::BadChar { ch: 'é', at: 5 })
        );
        for bad in ["a b", "a/b", "<!channel>", "a\nb", "a:b", "a@b"] {
            assert!(
                matches!(NodeId::check(bad), Err(InvalidNodeId::BadChar { .. })),
                "{bad:?}"
            );
        }
        for bad in [".a", "a.", "-a", "a-", "."] {
            assert_eq!(NodeId::check(bad), Err(InvalidNodeId::BadEdge), "{bad:?}");
        }
    }

    proptest! {
        /// The check is total: any string gets an answer, never a panic,
        /// and an accepted id is plain ASCII of bounded length.
        #[test]
        fn check_is_total(s in "\\PC{0,300}") {
            if NodeId::check(&s).is_ok() {
                prop_assert!(s.is_ascii() && !s.is_empty() && s.len() <= 253);
            }
        }
    }

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
        // The inlined comparison is the byte order of the strings, for
        // prefixes, lengths around its 8-byte fast path and equal copies.
        let ids = [
            "",
            "a",
            "a\0",
            "n1",
            "n10",
            "n100",
            "n11",
            "n2",
            "node-000",
            "node-0000",
            "node-0001",
            "node-00010",
            "node-001",
            "node-a.example",
            "node-a.example.com",
            "node-a.example.com.xy",
            "node-a.example.com.xyz",
            "node-a.example.com.xyz1",
            "node-a.example.com.xyz12",
            "node-b",
            "z",
        ];
        for x in ids {
            for y in ids {
                let (a, b) = (NodeId::from(x), NodeId::from(y));
                assert_eq!(a.cmp(&b), x.as_bytes().cmp(y.as_bytes()), "{x:?} vs {y:?}");
            }
        }
        assert!(!NodeId::new("x".repeat(256)).is_valid());
        // Maps keyed by ids are searched by string (`Borrow<str>`), short
        // and long.
        let long = "a-rather-long-host-name.example.com";
        let map: std::collections::HashMap<NodeId, u8> =
            [(NodeId::from("n1"), 1), (NodeId::from(long), 2)].into();
        assert_eq!(map.get("n1"), Some(&1));
        assert_eq!(map.get(long), Some(&2));
        assert_eq!(NodeId::new(long).as_str(), long);
        assert_eq!(NodeId::new(long), NodeId::from(long));
        let back: NodeId =
            rmp_serde::from_slice(&rmp_serde::to_vec(&NodeId::from(long)).unwrap()).unwrap();
        assert_eq!(back.as_str(), long);
    }
}
