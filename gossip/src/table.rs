//! The membership table: every verified record, ordered on the ring, its
//! fingerprint, and the fleet status of each node decided from its
//! observers' verdicts.

use crate::key::{BUCKETS, RingKey};
use crate::record::{Declared, Record, RecordBody};
use crate::wire::DigestEntry;
use crate::{NodeId, Status};
use phimon_detector::Timestamp;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// One node's row.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: RingKey,
    pub(crate) record: Arc<Record>,
    /// The fleet status as decided here.
    pub(crate) status: Status,
    /// When `status` began (garbage collection counts from it).
    pub(crate) since: Timestamp,
}

impl Entry {
    pub(crate) fn body(&self) -> &RecordBody {
        self.record.body()
    }
}

/// What is remembered of a forgotten node, so copies of its last record
/// still circulating cannot bring it back.
#[derive(Debug, Clone, Copy)]
struct Tomb {
    version: (u64, u64),
    until: Timestamp,
}

/// What [`Table::offer`] says of a record before it is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// A node not in the table.
    New,
    /// A newer version of a known node.
    Newer,
    /// The same or an older version than the table's: nothing to do.
    Stale,
    /// A forgotten node's version, or an older one.
    Forgotten,
    /// Another id at the same ring position (never expected).
    Collision,
    /// A new node, but the table holds `max_nodes` already.
    Full,
}

/// A status change decided by [`Table::settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) node: NodeId,
    pub(crate) generation: u64,
    pub(crate) from: Status,
    pub(crate) to: Status,
}

/// The table of one node. Entries are sorted by ring position, so a
/// fingerprint bucket is a contiguous run and a node's observers are the
/// entries after it.
#[derive(Debug)]
pub(crate) struct Table {
    entries: Vec<Entry>,
    buckets: Vec<u64>,
    fingerprint: u64,
    tombs: HashMap<RingKey, Tomb>,
    self_key: RingKey,
    /// Observers per node (`k`).
    k: usize,
    max_nodes: usize,
    /// Nodes whose status must be decided again, and the set guarding
    /// against queueing one twice.
    dirty: Vec<RingKey>,
    queued: HashSet<RingKey>,
    /// Earliest time a non-alive entry began its status (it may be
    /// forgotten `grace` later); None when every entry is alive or unknown.
    gc_due: Option<Timestamp>,
    /// Earliest expiry of a tombstone.
    tomb_due: Option<Timestamp>,
    /// Counts every change of a record (put or removed).
    changes: u64,
}

impl Table {
    pub(crate) fn new(own: Arc<Record>, k: usize, max_nodes: usize, now: Timestamp) -> Table {
        let key = own.key();
        let mut t = Table {
            entries: Vec::new(),
            buckets: vec![0; BUCKETS],
            fingerprint: 0,
            tombs: HashMap::new(),
            self_key: key,
            k: k.max(1),
            max_nodes: max_nodes.max(1),
            dirty: Vec::new(),
            queued: HashSet::new(),
            gc_due: None,
            tomb_due: None,
            changes: 0,
        };
        t.entries.push(Entry {
            key,
            status: Status::Alive,
            since: now,
            record: own.clone(),
        });
        t.add_term(key, own.term());
        t
    }

    /// A table holding `records` at once, every status decided: how a
    /// simulator starts a settled cluster without joining each node.
    pub(crate) fn settled(
        own: Arc<Record>,
        records: &[Arc<Record>],
        k: usize,
        max_nodes: usize,
        now: Timestamp,
    ) -> Table {
        let mut t = Table::new(own, k, max_nodes, now);
        let mut rest: Vec<Entry> = records
            .iter()
            .filter(|r| r.key() != t.self_key)
            .map(|r| Entry {
                key: r.key(),
                record: r.clone(),
                status: Status::Unknown,
                since: now,
            })
            .collect();
        rest.sort_by_key(|e| e.key);
        rest.dedup_by_key(|e| e.key);
        for e in &rest {
            t.add_term(e.key, e.record.term());
        }
        t.entries.extend(rest);
        t.entries.sort_by_key(|e| e.key);
        for i in 0..t.entries.len() {
            let key = t.entries[i].key;
            t.mark(key);
        }
        t
    }

    // ----- reads --------------------------------------------------------

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Counts the changes of records so far.
    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }

    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub(crate) fn buckets(&self) -> &[u64] {
        &self.buckets
    }

    pub(crate) fn find(&self, key: RingKey) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&key, |e| e.key)
    }

    pub(crate) fn get(&self, key: RingKey) -> Option<&Entry> {
        self.find(key).ok().map(|i| &self.entries[i])
    }

    pub(crate) fn get_id(&self, id: &NodeId) -> Option<&Entry> {
        self.get(RingKey::of(id)).filter(|e| e.record.node() == id)
    }

    pub(crate) fn self_index(&self) -> usize {
        self.find(self.self_key).unwrap_or(0)
    }

    /// The entries of `bucket`: a contiguous run of the sorted table.
    pub(crate) fn bucket_range(&self, bucket: u8) -> std::ops::Range<usize> {
        let lo = self
            .entries
            .partition_point(|e| (e.key.bucket() as u8) < bucket);
        let hi = self
            .entries
            .partition_point(|e| (e.key.bucket() as u8) <= bucket);
        lo..hi
    }

    /// The table's versions in `buckets` (ascending), as a digest lists them.
    pub(crate) fn digest(&self, buckets: &[u8]) -> Vec<DigestEntry> {
        let mut out = Vec::new();
        for &b in buckets {
            for e in &self.entries[self.bucket_range(b)] {
                let (g, v) = e.record.version();
                out.push(DigestEntry(e.key.0, g, v));
            }
        }
        out
    }

    /// Whether a forgotten node's record at `version` would be stale.
    pub(crate) fn forgotten_covers(&self, key: RingKey, version: (u64, u64)) -> bool {
        self.tombs.get(&key).is_some_and(|t| version <= t.version)
    }

    /// What accepting a record of `body` would do, before it is verified.
    pub(crate) fn offer(&self, body: &RecordBody, key: RingKey) -> Offer {
        let version = (body.generation, body.version);
        match self.find(key) {
            Ok(i) => {
                let e = &self.entries[i];
                if e.record.node() != &body.node {
                    Offer::Collision
                } else if version <= e.record.version() {
                    Offer::Stale
                } else {
                    Offer::Newer
                }
            }
            Err(_) if self.forgotten_covers(key, version) => Offer::Forgotten,
            Err(_) if self.entries.len() >= self.max_nodes => Offer::Full,
            Err(_) => Offer::New,
        }
    }

    // ----- the ring -----------------------------------------------------

    /// Counts as an observer: declares itself alive and is not suspected
    /// (this node always counts for itself).
    fn eligible(&self, i: usize) -> bool {
        let e = &self.entries[i];
        e.body().status == Declared::Alive
            && (e.status != Status::Suspected || e.key == self.self_key)
    }

    fn declared_alive(&self, i: usize) -> bool {
        self.entries[i].body().status == Declared::Alive
    }

    /// Indices after `i` on the ring, `i` excluded.
    fn after(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let n = self.entries.len();
        (1..n).map(move |d| (i + d) % n)
    }

    /// Indices before `i` on the ring, nearest first, `i` excluded.
    fn before(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let n = self.entries.len();
        (1..n).map(move |d| (i + n - d) % n)
    }

    /// The observers of entry `i`: the first `k` eligible entries after
    /// it. Its fleet status is the quorum of their verdicts.
    pub(crate) fn observers_of(&self, i: usize) -> Vec<usize> {
        self.after(i)
            .filter(|&j| self.eligible(j))
            .take(self.k)
            .collect()
    }

    /// Where entry `i` sends its heartbeats: its observers, and the first
    /// `k` entries after it that declare themselves alive even if
    /// suspected. The latter keep heartbeats flowing across a partition,
    /// so that when it heals the observers on the other side hear the
    /// node at once and both sides' verdicts converge.
    pub(crate) fn targets_of(&self, i: usize) -> Vec<usize> {
        let mut t = self.observers_of(i);
        for j in self
            .after(i)
            .filter(|&j| self.declared_alive(j))
            .take(self.k)
        {
            if !t.contains(&j) {
                t.push(j);
            }
        }
        t
    }

    /// The entries that send their heartbeats to entry `o` (`o` is among
    /// their [`targets_of`](Self::targets_of)), nearest first. Only
    /// entries declaring themselves alive are monitored.
    pub(crate) fn subjects_of(&self, o: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut eligible_between = 0;
        for x in self.before(o) {
            if eligible_between >= self.k {
                break;
            }
            if self.declared_alive(x) && self.targets_of(x).contains(&o) {
                out.push(x);
            }
            if self.eligible(x) {
                eligible_between += 1;
            }
        }
        out
    }

    /// Decides entry `i`'s status from its declaration and its observers'
    /// verdicts on its current generation.
    fn decide(&self, i: usize) -> Status {
        let e = &self.entries[i];
        if e.key == self.self_key {
            return Status::Alive;
        }
        match e.body().status {
            Declared::Leaving => return Status::Leaving,
            Declared::Left => return Status::Left,
            Declared::Alive => {}
        }
        let observers = self.observers_of(i);
        if observers.is_empty() {
            return Status::Unknown;
        }
        let (mut suspected, mut alive) = (0, 0);
        let (node, generation) = (e.record.node(), e.body().generation);
        for o in observers.iter().map(|&o| &self.entries[o]) {
            match o.body().verdict_on(node) {
                Some(v) if v.generation == generation && v.suspected => suspected += 1,
                Some(v) if v.generation == generation => alive += 1,
                _ => {}
            }
        }
        if suspected > observers.len() / 2 {
            Status::Suspected
        } else if alive > 0 {
            Status::Alive
        } else if e.status == Status::Suspected {
            // No observer vouches for it: verdicts that vanished (an
            // observer forgot it, a new observer has not heard it yet)
            // are no evidence of life.
            Status::Suspected
        } else {
            Status::Unknown
        }
    }

    /// Queues `key` for a new decision.
    pub(crate) fn mark(&mut self, key: RingKey) {
        if self.queued.insert(key) {
            self.dirty.push(key);
        }
    }

    /// Queues the entries whose observers include entry `i`: those
    /// before it with fewer than `k` eligible entries in between.
    fn mark_watchers_of(&mut self, i: usize) {
        let mut between = 0;
        let mut keys = Vec::new();
        for p in self.before(i) {
            if between >= self.k {
                break;
            }
            keys.push(self.entries[p].key);
            if self.eligible(p) {
                between += 1;
            }
        }
        for k in keys {
            self.mark(k);
        }
    }

    /// Queues the subjects of `body`'s verdicts.
    pub(crate) fn mark_verdict_subjects(&mut self, body: &RecordBody) {
        for v in &body.verdicts {
            self.mark(RingKey::of(&v.subject));
        }
    }

    /// Decides every queued status until nothing changes; returns what
    /// changed, and whether any node's eligibility (and so some
    /// observer sets) changed. Bounded: a pathological view stops after a
    /// number of decisions proportional to the table.
    pub(crate) fn settle(&mut self, now: Timestamp) -> (Vec<Change>, bool) {
        let mut changes = Vec::new();
        let mut ring_changed = false;
        let mut budget = 8 * self.entries.len() + 64;
        while let Some(key) = self.dirty.pop() {
            self.queued.remove(&key);
            if budget == 0 {
                self.dirty.clear();
                self.queued.clear();
                break;
            }
            budget -= 1;
            let Ok(i) = self.find(key) else { continue };
            let to = self.decide(i);
            let from = self.entries[i].status;
            if to == from {
                continue;
            }
            let was = self.eligible(i);
            let e = &mut self.entries[i];
            e.status = to;
            e.since = now;
            changes.push(Change {
                node: e.record.node().clone(),
                generation: e.body().generation,
                from,
                to,
            });
            if !matches!(to, Status::Alive | Status::Unknown) {
                self.gc_due = Some(self.gc_due.map_or(now, |t| t.min(now)));
            }
            if self.eligible(i) != was {
                ring_changed = true;
                self.mark_watchers_of(i);
            }
        }
        (changes, ring_changed)
    }

    // ----- changes ------------------------------------------------------

    fn add_term(&mut self, key: RingKey, term: u64) {
        let b = &mut self.buckets[key.bucket()];
        *b = b.wrapping_add(term);
        self.fingerprint = self.fingerprint.wrapping_add(term);
    }

    fn sub_term(&mut self, key: RingKey, term: u64) {
        let b = &mut self.buckets[key.bucket()];
        *b = b.wrapping_sub(term);
        self.fingerprint = self.fingerprint.wrapping_sub(term);
    }

    /// Puts a verified record in the table (its [`offer`](Self::offer)
    /// was `New` or `Newer`) and queues the decisions it affects. Returns
    /// the record it replaced.
    pub(crate) fn put(&mut self, record: Arc<Record>, now: Timestamp) -> Option<Arc<Record>> {
        self.changes += 1;
        let key = record.key();
        self.tombs.remove(&key);
        self.add_term(key, record.term());
        self.mark(key);
        self.mark_verdict_subjects(record.body());
        match self.find(key) {
            Ok(i) => {
                let old = std::mem::replace(&mut self.entries[i].record, record);
                self.sub_term(key, old.term());
                self.mark_verdict_subjects(old.body());
                let new = self.entries[i].body();
                if new.generation != old.body().generation || new.status != old.body().status {
                    if new.generation != old.body().generation {
                        // A restart: the old incarnation's judgement is void.
                        self.entries[i].status = Status::Unknown;
                        self.entries[i].since = now;
                    }
                    self.mark_watchers_of(i);
                }
                Some(old)
            }
            Err(i) => {
                self.entries.insert(
                    i,
                    Entry {
                        key,
                        record,
                        status: Status::Unknown,
                        since: now,
                    },
                );
                self.mark_watchers_of(i);
                None
            }
        }
    }

    /// Forgets entry `i`, remembering its version for `grace`.
    fn remove(&mut self, i: usize, now: Timestamp, grace: Duration) {
        self.changes += 1;
        self.mark_watchers_of(i);
        let e = self.entries.remove(i);
        self.sub_term(e.key, e.record.term());
        self.mark_verdict_subjects(e.record.body());
        let until = now + grace;
        self.tombs.insert(
            e.key,
            Tomb {
                version: e.record.version(),
                until,
            },
        );
        self.tomb_due = Some(self.tomb_due.map_or(until, |t| t.min(until)));
    }

    /// Forgets every node that has been suspected, leaving or left for
    /// `grace`, and tombstones older than `grace`. Returns the forgotten
    /// ids.
    pub(crate) fn collect(&mut self, now: Timestamp, grace: Duration) -> Vec<NodeId> {
        if self.tomb_due.is_some_and(|t| t <= now) {
            self.tombs.retain(|_, t| t.until > now);
            self.tomb_due = self.tombs.values().map(|t| t.until).min();
        }
        if self.gc_due.is_none_or(|t| t + grace > now) {
            return Vec::new();
        }
        let mut gone = Vec::new();
        let mut due: Option<Timestamp> = None;
        let mut i = 0;
        while i < self.entries.len() {
            let e = &self.entries[i];
            if e.key == self.self_key || matches!(e.status, Status::Alive | Status::Unknown) {
                i += 1;
                continue;
            }
            if e.since + grace <= now {
                gone.push(e.record.node().clone());
                self.remove(i, now, grace);
            } else {
                due = Some(due.map_or(e.since, |d| d.min(e.since)));
                i += 1;
            }
        }
        self.gc_due = due;
        gone
    }

    /// When [`collect`](Self::collect) has work next.
    pub(crate) fn next_collection(&self, grace: Duration) -> Option<Timestamp> {
        match (self.gc_due.map(|t| t + grace), self.tomb_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// This table as seen by the node at `key` (which must be in it):
    /// how a simulator hands one settled table to every node.
    pub(crate) fn for_node(&self, key: RingKey) -> Option<Table> {
        self.find(key).ok()?;
        let mut t = Table {
            entries: self.entries.clone(),
            buckets: self.buckets.clone(),
            fingerprint: self.fingerprint,
            tombs: HashMap::new(),
            self_key: key,
            k: self.k,
            max_nodes: self.max_nodes,
            dirty: Vec::new(),
            queued: HashSet::new(),
            gc_due: self.gc_due,
            tomb_due: None,
            changes: 0,
        };
        // Its own entry is alive in its own eyes whatever the others say.
        if let Ok(i) = t.find(key) {
            t.entries[i].status = Status::Alive;
        }
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{SharedSecretAuthority, Signer};
    use crate::record::{KeyValue, Verdict};

    fn rec(auth: &SharedSecretAuthority, id: &str, verdicts: Vec<Verdict>) -> Arc<Record> {
        let node = NodeId::from(id);
        let mut s: Box<dyn Signer> = Box::new(auth.signer(&node));
        let body = RecordBody {
            cluster: "c".into(),
            node,
            generation: 1,
            version: 1,
            address: format!("{id}:1"),
            status: Declared::Alive,
            kv: Vec::<KeyValue>::new(),
            verdicts,
        };
        Arc::new(Record::sign(body, s.as_mut()).unwrap())
    }

    #[test]
    fn the_fingerprint_is_the_same_whatever_the_order() {
        let auth = SharedSecretAuthority::new(b"s");
        let recs: Vec<_> = (0..50)
            .map(|i| rec(&auth, &format!("n{i}"), vec![]))
            .collect();
        let now = Timestamp::ZERO;
        let mut a = Table::new(recs[0].clone(), 3, 100, now);
        let mut b = Table::new(recs[0].clone(), 3, 100, now);
        for r in &recs[1..] {
            a.put(r.clone(), now);
        }
        for r in recs[1..].iter().rev() {
            b.put(r.clone(), now);
        }
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.buckets(), b.buckets());
        assert_eq!(
            a.buckets().iter().fold(0u64, |s, b| s.wrapping_add(*b)),
            a.fingerprint()
        );
        let c = Table::settled(recs[0].clone(), &recs, 3, 100, now);
        assert_eq!(c.fingerprint(), a.fingerprint());
        assert_eq!(c.len(), 50);
        assert!(c.entries().windows(2).all(|w| w[0].key < w[1].key));
    }

    #[test]
    fn observers_follow_on_the_ring_and_subjects_mirror_them() {
        let auth = SharedSecretAuthority::new(b"s");
        let recs: Vec<_> = (0..12)
            .map(|i| rec(&auth, &format!("n{i}"), vec![]))
            .collect();
        let t = Table::settled(recs[0].clone(), &recs, 3, 100, Timestamp::ZERO);
        let n = t.len();
        for i in 0..n {
            let obs = t.observers_of(i);
            assert_eq!(obs, vec![(i + 1) % n, (i + 2) % n, (i + 3) % n]);
            assert_eq!(t.targets_of(i), obs);
            // i is observed by its 3 predecessors.
            let mut subs = t.subjects_of(i);
            subs.sort();
            let mut want = vec![(i + n - 1) % n, (i + n - 2) % n, (i + n - 3) % n];
            want.sort();
            assert_eq!(subs, want);
        }
        // A small fleet: everyone observes everyone.
        let small = Table::settled(recs[0].clone(), &recs[..3], 3, 100, Timestamp::ZERO);
        assert_eq!(small.observers_of(0).len(), 2);
        assert_eq!(small.subjects_of(0).len(), 2);
    }

    #[test]
    fn a_quorum_of_observers_decides_and_suspects_leave_the_ring() {
        let auth = SharedSecretAuthority::new(b"s");
        let ids: Vec<String> = (0..8).map(|i| format!("n{i}")).collect();
        let plain: Vec<_> = ids.iter().map(|id| rec(&auth, id, vec![])).collect();
        let now = Timestamp::from_micros(1);
        let mut t = Table::settled(plain[0].clone(), &plain, 3, 100, now);
        let (changes, _) = t.settle(now);
        // Nobody has verdicts yet: everyone but this node is unknown.
        assert!(changes.is_empty());
        assert!(t.entries().iter().all(|e| e.status
            == if e.key == t.self_key {
                Status::Alive
            } else {
                Status::Unknown
            }));
        // Pick a subject that is not this node, and have its observers
        // report: first alive, then two of three suspect it.
        let x = (t.self_index() + 4) % t.len();
        let subject = t.entries()[x].record.node().clone();
        let obs: Vec<NodeId> = t
            .observers_of(x)
            .iter()
            .map(|&o| t.entries()[o].record.node().clone())
            .collect();
        let verdict = |suspected| Verdict {
            subject: subject.clone(),
            generation: 1,
            suspected,
            phi_centi: 0,
        };
        let mut with = |id: &NodeId, v: Verdict, version: u64| {
            let mut s = auth.signer(id);
            let mut body = t.get_id(id).unwrap().body().clone();
            body.version = version;
            body.verdicts = vec![v];
            let r = Arc::new(Record::sign(body, &mut s).unwrap());
            t.put(r, now);
            t.settle(now)
        };
        let (c, _) = with(&obs[0], verdict(false), 2);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].from, c[0].to), (Status::Unknown, Status::Alive));
        let (c, _) = with(&obs[1], verdict(true), 2);
        assert!(c.is_empty(), "one suspicion of three is no quorum: {c:?}");
        let (c, ring) = with(&obs[0], verdict(true), 3);
        assert_eq!((c[0].from, c[0].to), (Status::Alive, Status::Suspected));
        assert!(ring, "a suspect no longer observes anyone");
        // The suspect left the observer sets of its predecessors.
        assert!(
            (0..t.len()).all(|i| i == x || !t.observers_of(i).contains(&x)),
            "suspect still observes"
        );
        // Still monitored: its successors keep it among their subjects.
        assert!(
            t.subjects_of(t.find(RingKey::of(&obs[0])).unwrap())
                .contains(&x)
        );
        // Forgotten after the grace, not before.
        let grace = Duration::from_secs(10);
        assert!(t.collect(now + Duration::from_secs(5), grace).is_empty());
        assert_eq!(t.collect(now + grace, grace), vec![subject.clone()]);
        assert!(t.get_id(&subject).is_none());
        // Its last record cannot come back; a newer one can.
        let old = plain[ids.iter().position(|i| *i == subject.as_str()).unwrap()].clone();
        assert_eq!(t.offer(old.body(), old.key()), Offer::Forgotten);
        let mut newer = old.body().clone();
        newer.generation = 2;
        assert_eq!(t.offer(&newer, old.key()), Offer::New);
    }
}
