//! Designated observers by rendezvous (highest random weight) hashing.
//!
//! Every node ranks the live nodes for a subject with the same weight
//! function, so without any coordination all nodes agree on which `k`
//! nodes observe a subject (up to differences in their membership views,
//! which gossip removes within a few rounds). When an observer leaves,
//! only the subjects it observed move, each to its next-ranked node.
//!
//! The weight function is part of phimon's cross-node contract: nodes of
//! different versions must compute the same ranks. It is FNV-1a 64 of the
//! node id's bytes, mixed with the SplitMix64 finalizer:
//! `weight(o, s) = mix(fnv(o) ^ mix(fnv(s)))`, higher first, ties broken
//! by the smaller node id.

/// FNV-1a 64-bit hash of a node id: the input of [`weight`].
pub fn node_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's finalizer: spreads FNV's weak low bits over the word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The rank weight of `observer` for `subject`, from their
/// [`node_hash`]es. Higher weights rank first.
pub fn weight(observer_hash: u64, subject_hash: u64) -> u64 {
    mix(observer_hash ^ mix(subject_hash))
}

/// The up to `k` designated observers of `subject` among `candidates`
/// (the live nodes, in any order; `subject` itself and duplicates are
/// skipped), best first.
///
/// O(candidates × k): no sorting of the whole list, so computing the
/// observers of a few subjects in a 1,000-node view is cheap.
pub fn designated_observers<'a, I>(subject: &str, candidates: I, k: usize) -> Vec<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let sh = node_hash(subject);
    // (weight, id) of the best k so far, best first.
    let mut best: Vec<(u64, &'a str)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return Vec::new();
    }
    for c in candidates {
        if c == subject {
            continue;
        }
        let w = weight(node_hash(c), sh);
        let pos = best.partition_point(|&(bw, bid)| bw > w || (bw == w && bid < c));
        if best.get(pos).is_some_and(|&(bw, bid)| bw == w && bid == c) {
            continue; // duplicate candidate
        }
        if pos < k {
            best.insert(pos, (w, c));
            best.truncate(k);
        }
    }
    best.into_iter().map(|(_, id)| id).collect()
}

/// True when `observer` is among the `k` designated observers of
/// `subject` over `candidates` (which must include `observer`).
pub fn is_designated<'a, I>(observer: &str, subject: &str, candidates: I, k: usize) -> bool
where
    I: IntoIterator<Item = &'a str>,
{
    designated_observers(subject, candidates, k).contains(&observer)
}

/// Live nodes with their hashes computed once, to ask "is this node a
/// designated observer of S" for many subjects (the metrics exporter asks
/// it for every peer at every scrape: N × N weights, a few ms at
/// N = 1,000).
#[derive(Debug, Clone)]
pub struct Candidates<'a> {
    nodes: Vec<(u64, &'a str)>,
}

impl<'a> Candidates<'a> {
    /// The candidate set (duplicates are ignored).
    pub fn new<I: IntoIterator<Item = &'a str>>(ids: I) -> Self {
        let mut nodes: Vec<(u64, &'a str)> =
            ids.into_iter().map(|id| (node_hash(id), id)).collect();
        nodes.sort_unstable_by(|a, b| a.1.cmp(b.1));
        nodes.dedup_by(|a, b| a.1 == b.1);
        Candidates { nodes }
    }

    /// Same answer as [`is_designated`] with these candidates plus
    /// `observer`, without building the ranking.
    pub fn is_designated(&self, observer: &str, subject: &str, k: usize) -> bool {
        if k == 0 || observer == subject {
            return false;
        }
        let sh = node_hash(subject);
        let mine = weight(node_hash(observer), sh);
        let mut better = 0;
        for (h, id) in &self.nodes {
            if *id == subject || *id == observer {
                continue;
            }
            let w = weight(*h, sh);
            if w > mine || (w == mine && *id < observer) {
                better += 1;
                if better >= k {
                    return false;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn weights_are_pinned() {
        // Cross-version contract: these values must never change.
        assert_eq!(node_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(node_hash("a"), 0xaf63_dc4c_8601_ec8c);
        let w = weight(node_hash("node-1"), node_hash("node-2"));
        assert_eq!(w, weight(node_hash("node-1"), node_hash("node-2")));
        assert_ne!(w, weight(node_hash("node-2"), node_hash("node-1")));
    }

    #[test]
    fn observers_exclude_subject_and_are_best_first() {
        let nodes = ids(10);
        let obs = designated_observers("node-3", nodes.iter().map(String::as_str), 3);
        assert_eq!(obs.len(), 3);
        assert!(!obs.contains(&"node-3"));
        let sh = node_hash("node-3");
        let ws: Vec<u64> = obs.iter().map(|o| weight(node_hash(o), sh)).collect();
        assert!(ws.windows(2).all(|w| w[0] >= w[1]), "{ws:?}");
        // No other node beats the last one chosen.
        for n in &nodes {
            if n != "node-3" && !obs.contains(&n.as_str()) {
                assert!(weight(node_hash(n), sh) <= ws[2]);
            }
        }
    }

    #[test]
    fn small_views_yield_everyone_else() {
        let nodes = ids(3);
        let obs = designated_observers("node-0", nodes.iter().map(String::as_str), 3);
        assert_eq!(obs.len(), 2);
        assert!(designated_observers("x", std::iter::empty(), 3).is_empty());
        assert!(designated_observers("node-0", nodes.iter().map(String::as_str), 0).is_empty());
    }

    #[test]
    fn load_is_spread_evenly() {
        // Each of 100 nodes should observe about k subjects.
        let nodes = ids(100);
        let mut load = std::collections::HashMap::<&str, usize>::new();
        for s in &nodes {
            for o in designated_observers(s, nodes.iter().map(String::as_str), 3) {
                *load.entry(o).or_default() += 1;
            }
        }
        let max = load.values().copied().max().unwrap_or(0);
        assert_eq!(load.values().sum::<usize>(), 300);
        assert!(max <= 12, "max load {max}");
    }

    proptest! {
        #[test]
        fn order_and_duplicates_do_not_matter(n in 1usize..40, k in 1usize..5, rot in 0usize..40, subject in 0usize..45) {
            let nodes = ids(n);
            let subject = format!("node-{subject}");
            let a = designated_observers(&subject, nodes.iter().map(String::as_str), k);
            let mut shuffled = nodes.clone();
            shuffled.rotate_left(rot % n);
            shuffled.extend(nodes.iter().take(3).cloned());
            let b = designated_observers(&subject, shuffled.iter().map(String::as_str), k);
            prop_assert_eq!(&a, &b);
            let expected = k.min(nodes.iter().filter(|x| **x != subject).count());
            prop_assert_eq!(a.len(), expected);
        }

        #[test]
        fn candidate_set_agrees_with_the_ranking(n in 1usize..40, k in 1usize..5, me in 0usize..40, subject in 0usize..45) {
            let nodes = ids(n);
            let me = format!("node-{}", me % n);
            let subject = format!("node-{subject}");
            let ranked = designated_observers(&subject, nodes.iter().map(String::as_str), k);
            let set = Candidates::new(nodes.iter().map(String::as_str));
            prop_assert_eq!(set.is_designated(&me, &subject, k), ranked.contains(&me.as_str()));
        }

        #[test]
        fn removing_a_non_observer_changes_nothing(n in 5usize..40, victim in 0usize..40) {
            let nodes = ids(n);
            let before = designated_observers("subject", nodes.iter().map(String::as_str), 3);
            let victim = format!("node-{}", victim % n);
            let after = designated_observers(
                "subject",
                nodes.iter().map(String::as_str).filter(|x| *x != victim),
                3,
            );
            if before.contains(&victim.as_str()) {
                // The others keep their places; one new node fills in.
                let kept: Vec<_> = before.iter().filter(|x| **x != victim).collect();
                prop_assert_eq!(kept, after.iter().take(2).collect::<Vec<_>>());
            } else {
                prop_assert_eq!(before, after);
            }
        }
    }
}
