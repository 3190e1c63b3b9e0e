//! The suspicion report an observer gossips so that the designated
//! observers of a subject can see each other's view.
//!
//! The runtime stores [`AlertEngine::suspicion_report`](crate::AlertEngine::suspicion_report),
//! encoded with [`encode_suspicions`], under [`SUSPICIONS_KEY`] in the
//! node's gossip key/value map, and feeds every other node's decoded value
//! back into [`ClusterView::suspicions`](crate::ClusterView::suspicions).
//!
//! Encoding (versioned, text, size-capped): `1:` followed by the suspected
//! node ids separated by `,`, or `1+:` when ids were dropped to respect
//! [`MAX_SUSPICIONS_VALUE_BYTES`]. Node ids are DNS names, so they never
//! contain `,`; ids that do (or are empty or too long) are never encoded.

use std::collections::BTreeSet;

/// Gossip key/value key under which the report is carried.
pub const SUSPICIONS_KEY: &str = "phimon.suspects";

/// Largest encoded report, in bytes. An observer that suspects more
/// nodes than fit reports the first ones in the order given (the engine
/// lists the subjects it is a designated observer of first) and marks the
/// report truncated. 1 KiB holds about 60 typical node ids, while a
/// designated observer of a 1,000-node fleet in a 30 % mass failure is
/// designated for about 1–3 suspects on average.
pub const MAX_SUSPICIONS_VALUE_BYTES: usize = 1024;

/// Longest node id accepted (a DNS name).
pub const MAX_NODE_ID_BYTES: usize = 253;

/// One observer's decoded report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuspicionReport {
    /// Node ids the observer suspects.
    pub suspects: BTreeSet<String>,
    /// The observer suspected more nodes than fit in the value.
    pub truncated: bool,
}

/// Why a gossiped report could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SuspicionDecodeError {
    /// The value is longer than [`MAX_SUSPICIONS_VALUE_BYTES`].
    #[error("suspicion report of {len} bytes exceeds the {max}-byte cap")]
    TooLong {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The value does not start with a known version prefix.
    #[error("suspicion report has unknown version prefix {prefix:?}")]
    UnknownVersion {
        /// Up to the first 8 characters of the value.
        prefix: String,
    },
    /// A listed node id is empty or too long.
    #[error("suspicion report lists an invalid node id {id:?}")]
    InvalidNodeId {
        /// The id, cut to 64 characters.
        id: String,
    },
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_NODE_ID_BYTES && !id.contains(',')
}

/// Encodes suspected node ids, in priority order, into a gossip value of
/// at most [`MAX_SUSPICIONS_VALUE_BYTES`]. Ids that cannot be encoded are
/// skipped (and mark the value truncated).
pub fn encode_suspicions<'a, I>(ids: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    // Reserve room for the longer prefix so truncation never overflows.
    let budget = MAX_SUSPICIONS_VALUE_BYTES - "1+:".len();
    let mut body = String::new();
    let mut truncated = false;
    for id in ids {
        if !valid_id(id) {
            truncated = true;
            continue;
        }
        let extra = id.len() + usize::from(!body.is_empty());
        if body.len() + extra > budget {
            truncated = true;
            continue;
        }
        if !body.is_empty() {
            body.push(',');
        }
        body.push_str(id);
    }
    format!("{}{}", if truncated { "1+:" } else { "1:" }, body)
}

/// Decodes a gossiped report. Total: every input yields a report or an
/// error, never a panic. An empty value is an empty report (a node that
/// suspects no one may not publish the key at all).
pub fn decode_suspicions(value: &str) -> Result<SuspicionReport, SuspicionDecodeError> {
    if value.len() > MAX_SUSPICIONS_VALUE_BYTES {
        return Err(SuspicionDecodeError::TooLong {
            len: value.len(),
            max: MAX_SUSPICIONS_VALUE_BYTES,
        });
    }
    if value.is_empty() {
        return Ok(SuspicionReport::default());
    }
    let (truncated, body) = if let Some(rest) = value.strip_prefix("1+:") {
        (true, rest)
    } else if let Some(rest) = value.strip_prefix("1:") {
        (false, rest)
    } else {
        return Err(SuspicionDecodeError::UnknownVersion {
            prefix: value.chars().take(8).collect(),
        });
    };
    let mut suspects = BTreeSet::new();
    if !body.is_empty() {
        for id in body.split(',') {
            if !valid_id(id) {
                return Err(SuspicionDecodeError::InvalidNodeId {
                    id: id.chars().take(64).collect(),
                });
            }
            suspects.insert(id.to_string());
        }
    }
    Ok(SuspicionReport {
        suspects,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let v = encode_suspicions(["node-b", "node-a"]);
        assert_eq!(v, "1:node-b,node-a");
        let r = decode_suspicions(&v).unwrap();
        assert!(!r.truncated);
        assert_eq!(
            r.suspects.into_iter().collect::<Vec<_>>(),
            vec!["node-a", "node-b"]
        );
        assert_eq!(encode_suspicions([]), "1:");
        assert_eq!(decode_suspicions("1:").unwrap(), SuspicionReport::default());
        assert_eq!(decode_suspicions("").unwrap(), SuspicionReport::default());
    }

    #[test]
    fn capped_in_priority_order() {
        let ids: Vec<String> = (0..200)
            .map(|i| format!("node-{i:04}.example.internal"))
            .collect();
        let v = encode_suspicions(ids.iter().map(String::as_str));
        assert!(v.len() <= MAX_SUSPICIONS_VALUE_BYTES, "{}", v.len());
        let r = decode_suspicions(&v).unwrap();
        assert!(r.truncated);
        // The first ids given are the ones kept.
        let n = r.suspects.len();
        assert!(n > 30, "{n}");
        assert!(ids[..n].iter().all(|id| r.suspects.contains(id)));
    }

    #[test]
    fn bad_ids_are_skipped_and_flagged() {
        let long = "x".repeat(300);
        let v = encode_suspicions(["a,b", "", &long, "ok"]);
        assert_eq!(v, "1+:ok");
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            decode_suspicions("2:a"),
            Err(SuspicionDecodeError::UnknownVersion { .. })
        ));
        assert!(matches!(
            decode_suspicions("1:a,,b"),
            Err(SuspicionDecodeError::InvalidNodeId { .. })
        ));
        assert!(matches!(
            decode_suspicions(&format!("1:{}", "a".repeat(2000))),
            Err(SuspicionDecodeError::TooLong { .. })
        ));
    }

    proptest! {
        #[test]
        fn decode_is_total(s in ".{0,1100}") {
            // No panic, and what decodes is within the cap and re-encodes
            // to the same report.
            if let Ok(r) = decode_suspicions(&s) {
                prop_assert!(s.len() <= MAX_SUSPICIONS_VALUE_BYTES);
                let again = decode_suspicions(&encode_suspicions(r.suspects.iter().map(String::as_str)));
                prop_assert_eq!(again.map(|a| a.suspects), Ok(r.suspects));
            }
        }

        #[test]
        fn encode_then_decode_keeps_every_valid_id(ids in proptest::collection::vec("[a-z0-9.-]{1,40}", 0..30)) {
            let v = encode_suspicions(ids.iter().map(String::as_str));
            let r = decode_suspicions(&v).unwrap();
            prop_assert!(!r.truncated);
            let want: BTreeSet<String> = ids.into_iter().collect();
            prop_assert_eq!(r.suspects, want);
        }
    }
}
