//! What the core knows of each node, and the read-only view of it.

use crate::NodeId;
use crate::wire::{KvEntry, Status};
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
/// by key: a handful of entries, so a sorted list (searched by bisection)
/// rather than a map, and in the wire's own form, so a full state copies
/// it as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KvList(Vec<KvEntry>);

impl KvList {
    /// A list from entries whose keys are strictly ascending (as
    /// [`Message::validate`](crate::wire::Message::validate) requires).
    pub(crate) fn from_sorted(entries: Vec<KvEntry>) -> Self {
        debug_assert!(entries.windows(2).all(|w| w[0].key < w[1].key));
        KvList(entries)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&KvEntry> {
        self.0
            .binary_search_by(|e| e.key.as_str().cmp(key))
            .ok()
            .map(|i| &self.0[i])
    }

    /// Inserts `entry`, or replaces the entry of its key.
    pub(crate) fn set(&mut self, entry: KvEntry) {
        match self.0.binary_search_by(|e| e.key.cmp(&entry.key)) {
            Ok(i) => self.0[i] = entry,
            Err(i) => self.0.insert(i, entry),
        }
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, KvEntry> {
        self.0.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The entries set after version `from`, in key order.
    pub(crate) fn newer_than(&self, from: u64) -> Vec<KvEntry> {
        if self.0.iter().all(|e| e.version > from) {
            // A full state: one allocation of the exact size.
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
        self.kv_wire = self.kv.iter().map(KvEntry::wire_size).sum();
    }
}

/// One node's replicated state plus this node's judgement of it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) id: NodeId,
    pub(crate) generation: u64,
    pub(crate) heartbeat: u64,
    /// Metadata version: the highest version of its key/values and status
    /// changes this node has applied.
    pub(crate) version: u64,
    pub(crate) status: Status,
    /// Judged dead: phi reached the threshold.
    pub(crate) dead: bool,
    /// When the current local judgement began (first heard, joined, dead,
    /// leaving): the clock of garbage collection and eviction.
    pub(crate) since: Timestamp,
    /// Local time of the last observed heartbeat.
    pub(crate) heard: Timestamp,
    /// A heartbeat of this generation was observed while the node declared
    /// itself alive: it is watched (not itself, not once it is leaving).
    pub(crate) watched: bool,
    /// The watched node's detector; `None` while not watched, and always
    /// without [`GossipConfig::local_detection`](crate::GossipConfig::local_detection).
    pub(crate) detector: Option<Box<PeerDetector>>,
    pub(crate) meta: Box<Meta>,
}

impl Entry {
    pub(crate) fn member_status(&self, is_self: bool) -> MemberStatus {
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

/// Read-only view of one known node, from [`Gossip::members`](crate::Gossip::members).
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub(crate) entry: &'a Entry,
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
        self.entry.generation
    }

    /// Its heartbeat counter, as far as this node knows.
    pub fn heartbeat(&self) -> u64 {
        self.entry.heartbeat
    }

    /// Its metadata version.
    pub fn version(&self) -> u64 {
        self.entry.version
    }

    /// What it declares itself to be.
    pub fn declared_status(&self) -> Status {
        self.entry.status
    }

    /// The local judgement of it.
    pub fn status(&self) -> MemberStatus {
        self.entry.member_status(self.is_self)
    }

    /// True for the local node's own entry.
    pub fn is_self(&self) -> bool {
        self.is_self
    }

    /// Its published key/values, sorted by key.
    pub fn kv(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.entry
            .meta
            .kv
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
    }

    /// One published value.
    pub fn kv_get(&self, key: &str) -> Option<&'a str> {
        self.entry.meta.kv.get(key).map(|e| e.value.as_str())
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
