//! What the core knows of each node, and the read-only view of it.

use crate::NodeId;
use crate::wire::{KvEntries, KvEntry, Status, Versions};
use phimon_detector::{PeerDetector, Timestamp};
use std::sync::Arc;

/// The local judgement of a node: its declared [`Status`] combined with
/// this node's detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MemberStatus {
    /// Heard of through other nodes, but no heartbeat of it has been seen
    /// advancing yet: not contacted, not watched, never judged dead.
    /// Invented ids stay here until they are forgotten.
    Joining,
    /// Heartbeats observed and phi below the threshold.
    Alive,
    /// phi at or above the threshold: suspected locally.
    Dead,
    /// Announced it is shutting down: no longer watched.
    Leaving,
    /// Left gracefully: final for this generation, never judged dead.
    Left,
}

impl MemberStatus {
    /// The name used in APIs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Joining => "joining",
            MemberStatus::Alive => "alive",
            MemberStatus::Dead => "dead",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
        }
    }
}

/// A node's published key/values with the owner's version of each, sorted
/// by key: the list a full state carries ([`KvEntries`]), shared. A full
/// state sent hands out this list and a full state admitted is kept as
/// received, so in a cluster simulated in one process every table holds
/// the same list of a node, and no key or value is copied on the way; a
/// handful of entries, so they are searched in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KvList(KvEntries);

/// One key/value of a [`KvList`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KvRef<'a> {
    pub(crate) key: &'a str,
    pub(crate) value: &'a str,
    pub(crate) version: u64,
}

impl KvRef<'_> {
    /// Encoded size as a [`KvEntry`].
    pub(crate) fn wire_size(&self) -> usize {
        crate::wire::kv_entry_size(self.key.len(), self.value.len(), self.version)
    }
}

impl KvList {
    /// A list from entries whose keys are strictly ascending (as
    /// [`Message::validate`](crate::wire::Message::validate) requires),
    /// kept as given.
    pub(crate) fn from_sorted(entries: KvEntries) -> Self {
        debug_assert!(entries.windows(2).all(|w| w[0].key < w[1].key));
        KvList(entries)
    }

    /// The entries in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = KvRef<'_>> + '_ {
        self.0.iter().map(|e| KvRef {
            key: &e.key,
            value: &e.value,
            version: e.version,
        })
    }

    pub(crate) fn get(&self, key: &str) -> Option<KvRef<'_>> {
        self.iter().find(|e| e.key == key)
    }

    /// Inserts `entry`, or replaces the entry of its key (copying the
    /// list first if it is shared).
    pub(crate) fn set(&mut self, entry: KvEntry) {
        let all = &mut *self.0;
        match all.binary_search_by(|e| e.key.cmp(&entry.key)) {
            Ok(i) => all[i] = entry,
            Err(i) => all.insert(i, entry),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The entries set after version `from`, in key order, as sent: the
    /// shared list itself when that is all of them (a full state).
    pub(crate) fn newer_than(&self, from: u64) -> KvEntries {
        if self.0.iter().all(|e| e.version > from) {
            return self.0.clone();
        }
        self.0
            .iter()
            .filter(|e| e.version > from)
            .cloned()
            .collect()
    }
}

/// The parts of a node's state that change rarely: kept behind a box so
/// the table scanned by every digest merge stays small.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) address: Arc<str>,
    pub(crate) kv: KvList,
    /// Sum of key and value lengths (what the cap limits).
    pub(crate) kv_bytes: usize,
    /// Encoded size of all key/value entries (what a full state costs).
    pub(crate) kv_wire: usize,
}

impl Meta {
    pub(crate) fn new(address: Arc<str>, kv: KvList) -> Box<Meta> {
        let mut m = Box::new(Meta {
            address,
            kv,
            kv_bytes: 0,
            kv_wire: 0,
        });
        m.recount();
        m
    }

    /// Recomputes the byte counts after the key/values changed.
    pub(crate) fn recount(&mut self) {
        self.kv_bytes = self.kv.iter().map(|e| e.key.len() + e.value.len()).sum();
        self.kv_wire = self.kv.iter().map(|e| e.wire_size()).sum();
    }
}

/// The per-node flags that merges, beats and judgement read: a dense
/// column of the table beside the [`Versions`], so a pass over every
/// node reads a few bytes per node instead of its whole [`Entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flags {
    /// What the node declares.
    pub(crate) status: Status,
    /// Judged dead: phi reached the threshold.
    pub(crate) dead: bool,
    /// A heartbeat of this generation was observed while the node declared
    /// itself alive: it is watched (not itself, not once it is leaving).
    pub(crate) watched: bool,
}

impl Flags {
    /// A node declaring `status`, not judged yet.
    pub(crate) fn new(status: Status) -> Self {
        Flags {
            status,
            dead: false,
            watched: false,
        }
    }

    pub(crate) fn member_status(self, is_self: bool) -> MemberStatus {
        match self.status {
            Status::Left => MemberStatus::Left,
            Status::Leaving => MemberStatus::Leaving,
            Status::Alive if is_self => MemberStatus::Alive,
            Status::Alive if self.dead => MemberStatus::Dead,
            Status::Alive if self.watched => MemberStatus::Alive,
            Status::Alive => MemberStatus::Joining,
        }
    }
}

/// The rarely read part of one node's table row: its id, its metadata,
/// its detector. The hot part (generation, heartbeat, version, flags,
/// last arrival) lives in dense columns of the core's table, indexed by
/// the same position.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) id: NodeId,
    /// When the current local judgement began (first heard, joined, dead,
    /// leaving): the clock of garbage collection and eviction.
    pub(crate) since: Timestamp,
    /// The watched node's detector; `None` while not watched, and always
    /// without [`GossipConfig::local_detection`](crate::GossipConfig::local_detection).
    pub(crate) detector: Option<Box<PeerDetector>>,
    pub(crate) meta: Box<Meta>,
}

/// A whole table row outside the table: a node admitted from a delta,
/// before it is inserted.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) entry: Entry,
    /// Generation, heartbeat and metadata version (the highest version of
    /// its key/values and status changes applied here).
    pub(crate) state: Versions,
    pub(crate) flags: Flags,
    /// Local time of the last observed heartbeat.
    pub(crate) heard: Timestamp,
}

/// Read-only view of one known node, from [`Gossip::members`](crate::Gossip::members).
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub(crate) entry: &'a Entry,
    pub(crate) state: Versions,
    pub(crate) flags: Flags,
    pub(crate) is_self: bool,
}

impl<'a> Member<'a> {
    /// The node's id.
    pub fn node_id(&self) -> &'a NodeId {
        &self.entry.id
    }

    /// Its advertised `host:port`.
    pub fn address(&self) -> &'a str {
        &self.entry.meta.address
    }

    /// Its generation (incarnation).
    pub fn generation(&self) -> u64 {
        self.state.generation
    }

    /// Its heartbeat counter, as far as this node knows.
    pub fn heartbeat(&self) -> u64 {
        self.state.heartbeat
    }

    /// Its metadata version.
    pub fn version(&self) -> u64 {
        self.state.version
    }

    /// What it declares itself to be.
    pub fn declared_status(&self) -> Status {
        self.flags.status
    }

    /// The local judgement of it.
    pub fn status(&self) -> MemberStatus {
        self.flags.member_status(self.is_self)
    }

    /// True for the local node's own entry.
    pub fn is_self(&self) -> bool {
        self.is_self
    }

    /// Its published key/values, sorted by key.
    pub fn kv(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.entry.meta.kv.iter().map(|e| (e.key, e.value))
    }

    /// One published value.
    pub fn kv_get(&self, key: &str) -> Option<&'a str> {
        self.entry.meta.kv.get(key).map(|e| e.value)
    }

    /// Its suspicion level at `now`; `None` while it is not watched (the
    /// local node, a joining node, a node that is leaving or left) and
    /// when local detection is off.
    pub fn phi(&self, now: Timestamp) -> Option<f64> {
        self.entry.detector.as_ref().map(|d| d.phi(now))
    }

    /// Its detector (interval statistics for `/v1/peers`), while watched
    /// with local detection on.
    pub fn detector(&self) -> Option<&'a PeerDetector> {
        self.entry.detector.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, version: u64) -> KvEntry {
        KvEntry {
            key: key.into(),
            value: value.into(),
            version,
        }
    }

    #[test]
    fn a_packed_list_reads_back_what_it_was_given() {
        let given = vec![
            kv("a", "", 1),
            kv("endpoint", "10.0.0.1:80", 3),
            kv("zone", "é-1", 2),
        ];
        let shared = KvEntries::from(given.clone());
        let mut l = KvList::from_sorted(shared.clone());
        assert_eq!(l.len(), 3);
        assert_eq!(*l.newer_than(0), given);
        // A full state hands out the list itself, not a copy.
        assert!(KvEntries::ptr_eq(&l.newer_than(0), &shared));
        assert_eq!(*l.newer_than(1), vec![given[1].clone(), given[2].clone()]);
        assert_eq!(
            l.get("zone").map(|e| (e.value, e.version)),
            Some(("é-1", 2))
        );
        assert_eq!(l.get("b"), None);
        l.set(kv("b", "x", 4));
        l.set(kv("a", "new", 5));
        // Changed on a copy: the shared list is as it was.
        assert_eq!(*shared, given);
        let keys: Vec<&str> = l.iter().map(|e| e.key).collect();
        assert_eq!(keys, ["a", "b", "endpoint", "zone"]);
        assert_eq!(l.get("a").map(|e| (e.value, e.version)), Some(("new", 5)));
        assert_eq!(KvList::default().iter().count(), 0);
    }
}
