//! Ring positions and the fingerprint of a membership table.

use crate::NodeId;
use sha2::{Digest, Sha256};

/// Number of fingerprint buckets a table is cut into for reconciliation:
/// a bucket is an arc of the ring (the top 8 bits of a [`RingKey`]).
/// Two tables that differ in a few records differ in a few buckets, so
/// only those buckets' entries travel.
pub const BUCKETS: usize = 256;

/// A node's position on the observer ring: the first 8 bytes of
/// SHA-256 of its id. Stable across builds and platforms (every node
/// must place every other node at the same position), spread uniformly,
/// and not chosen by the node: its id comes from its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RingKey(pub u64);

impl RingKey {
    /// The position of `id`.
    pub fn of(id: &NodeId) -> RingKey {
        let mut h = Sha256::new();
        h.update(b"phimon ring v1\0");
        h.update(id.as_bytes());
        let d = h.finalize();
        let mut w = [0u8; 8];
        w.copy_from_slice(&d[..8]);
        RingKey(u64::from_be_bytes(w))
    }

    /// The fingerprint bucket of this position.
    pub fn bucket(self) -> usize {
        (self.0 >> 56) as usize
    }
}

/// The fingerprint term of one record version: a 64-bit mix of the
/// node's position, generation and version. A table's fingerprint is the
/// wrapping sum of its terms, so adding, replacing or removing a record
/// updates it in O(1), and two tables with the same records have the same
/// fingerprint whatever order they learnt them in.
///
/// Not a security boundary: a collision only delays a reconciliation
/// (random probes and later changes find the difference), and no member
/// can choose another member's terms.
pub fn term(key: RingKey, generation: u64, version: u64) -> u64 {
    let x = key.0
        ^ generation
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(17)
        ^ version.wrapping_mul(0xC2B2_AE3D_27D4_EB4F).rotate_left(41);
    mix(x)
}

/// splitmix64's finaliser: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_spread() {
        // Pinned: every build must place a node at the same position.
        let k = RingKey::of(&NodeId::from("node-a"));
        assert_eq!(k, RingKey(0xfd57_3992_72a2_ae49));
        assert_eq!(k, RingKey::of(&NodeId::new("node-a".to_string())));
        assert_ne!(k, RingKey::of(&NodeId::from("node-b")));
        let mut buckets = [0u32; BUCKETS];
        for i in 0..25_600 {
            buckets[RingKey::of(&NodeId::new(format!("n{i}"))).bucket()] += 1;
        }
        // 100 expected per bucket; a uniform hash stays well within 2x.
        assert!(
            buckets.iter().all(|&n| (50..200).contains(&n)),
            "{buckets:?}"
        );
    }

    #[test]
    fn terms_separate_versions_and_generations() {
        let k = RingKey(42);
        let a = term(k, 1, 1);
        assert_ne!(a, term(k, 1, 2));
        assert_ne!(a, term(k, 2, 1));
        assert_ne!(term(k, 1, 2), term(k, 2, 1));
        assert_ne!(a, term(RingKey(43), 1, 1));
    }
}
