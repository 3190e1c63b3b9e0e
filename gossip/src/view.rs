//! Read-only views of the core's state, for the alert engine, the HTTP
//! API and metrics.

use crate::core::Gossip;
use crate::monitor::{Local, Subject};
use crate::record::{Declared, Record};
use crate::{NodeId, Status};
use phimon_detector::{PeerDetector, Timestamp};
use std::sync::Arc;

/// One known node, from [`Gossip::members`].
#[derive(Clone, Copy)]
pub struct Member<'a> {
    g: &'a Gossip,
    i: usize,
}

/// One observer's verdict on a member, from [`Member::observers`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObserverVerdict<'a> {
    /// The observer.
    pub observer: &'a NodeId,
    /// Its verdict on the member's current generation: `Some(true)`
    /// suspected, `Some(false)` alive, `None` none yet.
    pub suspected: Option<bool>,
    /// Its phi when it reached that verdict.
    pub phi: Option<f64>,
}

impl<'a> Member<'a> {
    fn entry(&self) -> &'a crate::table::Entry {
        &self.g.table.entries()[self.i]
    }

    /// The node's id.
    pub fn node_id(&self) -> &'a NodeId {
        self.entry().record.node()
    }

    /// Its advertised `host:port`.
    pub fn address(&self) -> &'a str {
        &self.entry().body().address
    }

    /// Its generation.
    pub fn generation(&self) -> u64 {
        self.entry().body().generation
    }

    /// Its record's version.
    pub fn version(&self) -> u64 {
        self.entry().body().version
    }

    /// Its fleet status as this node sees it.
    pub fn status(&self) -> Status {
        self.entry().status
    }

    /// When that status began (local clock).
    pub fn since(&self) -> Timestamp {
        self.entry().since
    }

    /// What the node declares itself.
    pub fn declared(&self) -> Declared {
        self.entry().body().status
    }

    /// True for this node's own entry.
    pub fn is_self(&self) -> bool {
        self.entry().key == self.g.own_key()
    }

    /// Its signed record.
    pub fn record(&self) -> &'a Arc<Record> {
        &self.entry().record
    }

    /// Its published key/values, sorted by key.
    pub fn kv(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.entry()
            .body()
            .kv
            .iter()
            .map(|kv| (kv.0.as_str(), kv.1.as_str()))
    }

    /// One published value.
    pub fn kv_get(&self, key: &str) -> Option<&'a str> {
        self.entry().body().kv_get(key)
    }

    /// Its observers in ring order, with their verdicts on it: the nodes
    /// whose quorum decides its status.
    pub fn observers(&self) -> Vec<ObserverVerdict<'a>> {
        let entries = self.g.table.entries();
        let (node, generation) = (self.node_id(), self.generation());
        self.g
            .table
            .observers_of(self.i)
            .into_iter()
            .map(|o| {
                let e = &entries[o];
                let v = e
                    .body()
                    .verdict_on(node)
                    .filter(|v| v.generation == generation);
                ObserverVerdict {
                    observer: e.record.node(),
                    suspected: v.map(|v| v.suspected),
                    phi: v.map(|v| f64::from(v.phi_centi) / 100.0),
                }
            })
            .collect()
    }

    /// The observers that suspect it.
    pub fn suspected_by(&self) -> Vec<&'a NodeId> {
        self.observers()
            .into_iter()
            .filter(|o| o.suspected == Some(true))
            .map(|o| o.observer)
            .collect()
    }

    /// The observer that pages about it: the first, in ring order, of its
    /// observers that suspect it. Every node with the same view names the
    /// same one.
    pub fn pager(&self) -> Option<&'a NodeId> {
        self.suspected_by().into_iter().next()
    }

    /// Its first observer: the one that announces its restarts.
    pub fn first_observer(&self) -> Option<&'a NodeId> {
        self.observers().first().map(|o| o.observer)
    }

    /// This node's own monitoring of it, if this node observes it.
    pub fn observed(&self) -> Option<Observed<'a>> {
        self.g.monitor.get(self.entry().key).map(|s| Observed { s })
    }
}

impl std::fmt::Debug for Member<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("node", self.node_id())
            .field("generation", &self.generation())
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// A node this node observes, from [`Gossip::subjects`] or
/// [`Member::observed`].
#[derive(Clone, Copy)]
pub struct Observed<'a> {
    s: &'a Subject,
}

impl<'a> Observed<'a> {
    /// The subject's id.
    pub fn node_id(&self) -> &'a NodeId {
        &self.s.id
    }

    /// The generation judged.
    pub fn generation(&self) -> u64 {
        self.s.generation
    }

    /// Its phi at `now`.
    pub fn phi(&self, now: Timestamp) -> f64 {
        self.s.phi(now)
    }

    /// Its detector (window, estimate).
    pub fn detector(&self) -> &'a PeerDetector {
        &self.s.detector
    }

    /// Whether a heartbeat of this generation arrived (before that it is
    /// judged on the prior only).
    pub fn heard(&self) -> bool {
        self.s.heard
    }

    /// This node's hysteretic judgement.
    pub fn local(&self) -> Local {
        self.s.local
    }

    /// Whether this node suspects it.
    pub fn suspected(&self) -> bool {
        matches!(self.s.local, Local::Suspected { .. })
    }

    /// When this node started observing it.
    pub fn since(&self) -> Timestamp {
        self.s.since
    }

    /// Time of its last heartbeat (or of the start of monitoring).
    pub fn last_arrival(&self) -> Option<Timestamp> {
        self.s.detector.last_arrival()
    }

    /// phi sampled once per interval, about the last minute, oldest first.
    pub fn phi_history(&self) -> impl Iterator<Item = (Timestamp, f64)> + 'a {
        self.s.history()
    }

    /// phi when this node reached its current verdict.
    pub fn verdict_phi(&self) -> f64 {
        self.s.verdict_phi()
    }

    /// Heartbeats received, lost (sequence gaps), reordered and
    /// duplicated, over every generation observed.
    pub fn counts(&self) -> phimon_detector::HeartbeatCounts {
        self.s.counts()
    }
}

impl Gossip {
    /// Every known node, this one included, in ring order.
    pub fn members(&self) -> impl ExactSizeIterator<Item = Member<'_>> + '_ {
        (0..self.table.len()).map(move |i| Member { g: self, i })
    }

    /// One known node.
    pub fn member(&self, id: &NodeId) -> Option<Member<'_>> {
        let key = crate::RingKey::of(id);
        let i = self.table.find(key).ok()?;
        (self.table.entries()[i].record.node() == id).then_some(Member { g: self, i })
    }

    /// The nodes this node observes, in ring order.
    pub fn subjects(&self) -> impl ExactSizeIterator<Item = Observed<'_>> + '_ {
        self.monitor.subjects.iter().map(|s| Observed { s })
    }
}
