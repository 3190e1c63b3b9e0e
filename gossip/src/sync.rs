//! Reconciliation (summary → digest → records), rumor pushes and the
//! acceptance of received records.

use crate::NodeId;
use crate::core::{Event, Gossip, Peer, Push, Transmit};
use crate::key::{BUCKETS, RingKey};
use crate::record::{Record, RecordBody};
use crate::table::Offer;
use crate::wire::{Digest, DigestEntry, Frame, Records, SignedRecord, Summary};
use phimon_detector::Timestamp;
use std::sync::Arc;

/// Encoded bytes of one digest entry, at most.
const ENTRY_BYTES: usize = 28;
/// Encoded bytes of one wanted key, at most.
const WANT_BYTES: usize = 9;
/// Room kept in every message for the frame header and list headers.
const FRAME_SLACK: usize = 64;

impl Gossip {
    /// This node's bucket fingerprints.
    pub(crate) fn summary(&self) -> Summary {
        Summary {
            fingerprint: self.table.fingerprint(),
            members: u32::try_from(self.table.len()).unwrap_or(u32::MAX),
            buckets: self.table.buckets().to_vec(),
        }
    }

    /// Starts a reconciliation with `peer`, at most once per interval per
    /// peer: a fingerprint seen while news is still spreading differs for
    /// a moment, and the push that spreads it usually arrives first.
    pub(crate) fn start_sync(&mut self, now: Timestamp, peer: &NodeId) {
        if let Some(&t) = self.last_sync.get(peer) {
            if t + self.cfg.interval > now {
                self.stats.syncs_limited += 1;
                return;
            }
        }
        // Bounded by the table: forgotten nodes are dropped from it, and
        // an unknown sender costs one entry until the table is full.
        if self.last_sync.len() > 2 * self.table.len() + 64 {
            self.last_sync.retain(|_, t| *t + self.cfg.interval > now);
        }
        self.last_sync.insert(peer.clone(), now);
        self.stats.syncs += 1;
        let to = self.peer_of(peer);
        self.outbox.push_back(Transmit {
            to,
            frame: Frame::Summary(self.summary()),
        });
    }

    /// A peer's bucket fingerprints: answer with the versions of every
    /// bucket that differs, in as many digests as it takes.
    pub(crate) fn on_summary(&mut self, now: Timestamp, from: &NodeId, s: Summary) {
        if s.fingerprint == self.table.fingerprint() {
            self.on_fingerprint(now, from, s.fingerprint);
            return;
        }
        let buckets = self.table.buckets();
        let differ: Vec<u8> = (0..BUCKETS)
            .filter(|&b| s.buckets[b] != buckets[b])
            .map(|b| b as u8)
            .collect();
        let budget = self.cfg.max_message_bytes - FRAME_SLACK;
        let to = self.peer_of(from);
        let mut chunk: Vec<u8> = Vec::new();
        let mut entries = 0usize;
        for b in differ {
            let n = self.table.bucket_range(b).len();
            if !chunk.is_empty() && (entries + n) * ENTRY_BYTES + chunk.len() + 2 > budget {
                self.send_digest(&to, std::mem::take(&mut chunk));
                entries = 0;
            }
            chunk.push(b);
            entries += n;
        }
        if !chunk.is_empty() {
            self.send_digest(&to, chunk);
        }
    }

    fn send_digest(&mut self, to: &Peer, buckets: Vec<u8>) {
        let entries = self.table.digest(&buckets);
        self.outbox.push_back(Transmit {
            to: to.clone(),
            frame: Frame::Digest(Digest { buckets, entries }),
        });
    }

    /// A peer's versions of some buckets: send what it lacks, ask for what
    /// this node lacks.
    pub(crate) fn on_digest(&mut self, from: &NodeId, d: Digest) {
        let mut send: Vec<SignedRecord> = Vec::new();
        let mut want: Vec<u64> = Vec::new();
        let mut theirs = d.entries.as_slice();
        for &b in &d.buckets {
            let split = theirs.partition_point(|e| (e.0 >> 56) as u8 <= b);
            let (in_bucket, rest) = theirs.split_at(split);
            theirs = rest;
            let mine = &self.table.entries()[self.table.bucket_range(b)];
            let (mut i, mut j) = (0, 0);
            while i < mine.len() || j < in_bucket.len() {
                let m = mine.get(i);
                let t = in_bucket.get(j);
                match (m, t) {
                    (Some(m), Some(DigestEntry(key, g, v))) if m.key.0 == *key => {
                        let ours = m.record.version();
                        if ours > (*g, *v) {
                            send.push(m.record.signed().clone());
                        } else if ours < (*g, *v) {
                            want.push(*key);
                        }
                        i += 1;
                        j += 1;
                    }
                    (Some(m), t) if t.is_none_or(|t| m.key.0 < t.0) => {
                        send.push(m.record.signed().clone());
                        i += 1;
                    }
                    (_, Some(DigestEntry(key, g, v))) => {
                        if !self.table.forgotten_covers(RingKey(*key), (*g, *v)) {
                            want.push(*key);
                        }
                        j += 1;
                    }
                    (_, None) => break,
                }
            }
        }
        if send.is_empty() && want.is_empty() {
            return;
        }
        let to = self.peer_of(from);
        self.send_records(&to, send, want, false);
    }

    /// Records from a peer: accept each on its own, push on the news if the
    /// peer pushed it, answer what it wants.
    pub(crate) fn on_records(&mut self, now: Timestamp, from: &NodeId, r: Records) {
        for signed in r.records {
            if let Some((record, lean)) = self.accept(now, signed) {
                if r.relay {
                    self.pushes.push(Push {
                        record,
                        from: Some(from.clone()),
                        lean,
                    });
                }
            }
        }
        if r.want.is_empty() {
            return;
        }
        let answer: Vec<SignedRecord> = r
            .want
            .iter()
            .filter_map(|&k| self.table.get(RingKey(k)))
            .map(|e| e.record.signed().clone())
            .collect();
        if !answer.is_empty() {
            let to = self.peer_of(from);
            self.send_records(&to, answer, Vec::new(), false);
        }
    }

    /// Accepts one received record if it is valid, signed by the node it
    /// names and newer than what the table holds. Returns it when it was
    /// news, and whether it may be pushed on without its credential (the
    /// previous version of its generation has the same one). Every
    /// refusal is counted by reason.
    ///
    /// A record without a credential uses the one of the version this
    /// node holds of the same generation; with none held it is refused
    /// (`credential_missing`) and comes whole with the next
    /// reconciliation.
    pub(crate) fn accept(
        &mut self,
        now: Timestamp,
        mut signed: SignedRecord,
    ) -> Option<(Arc<Record>, bool)> {
        let body = match RecordBody::decode(&signed.body, &self.cfg.cluster, self.cfg.max_kv_bytes)
        {
            Ok(b) => b,
            Err(e) => {
                self.reject(e.label());
                return None;
            }
        };
        let version = (body.generation, body.version);
        if body.node == *self.id() {
            if version <= self.own_version() {
                self.stats.records_known += 1;
                return None;
            }
            // Only this node's key makes such a record: check it is one
            // before acting on it.
            match Record::verify(body, signed, self.authority.as_mut()) {
                Ok(_) => self.refute(now, version),
                Err(e) => self.reject(e.label()),
            }
            return None;
        }
        let key = RingKey::of(&body.node);
        if signed.credential.is_empty() {
            let held = self
                .table
                .get(key)
                .filter(|e| e.record.node() == &body.node && e.body().generation == body.generation)
                .map(|e| e.record.signed().credential.clone());
            match held {
                Some(c) => signed.credential = c,
                None => {
                    self.reject("credential_missing");
                    return None;
                }
            }
        }
        match self.table.offer(&body, key) {
            Offer::Stale => {
                self.stats.records_known += 1;
                return None;
            }
            Offer::Forgotten => {
                self.reject("forgotten");
                return None;
            }
            Offer::Collision => {
                self.reject("collision");
                return None;
            }
            Offer::Full => {
                self.reject("full");
                return None;
            }
            Offer::New | Offer::Newer => {}
        }
        let record = match Record::verify(body, signed, self.authority.as_mut()) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                self.reject(e.label());
                return None;
            }
        };
        self.stats.records_accepted += 1;
        let old = self.table.put(record.clone(), now);
        let body = record.body();
        let lean = old.as_ref().is_some_and(|o| {
            o.body().generation == body.generation
                && o.signed().credential == record.signed().credential
        });
        match old {
            None => {
                self.ring_dirty = true;
                self.events.push_back(Event::Joined {
                    node: body.node.clone(),
                    generation: body.generation,
                    address: body.address.clone(),
                });
            }
            Some(old) if old.body().generation != body.generation => {
                self.ring_dirty = true;
                self.events.push_back(Event::Restarted {
                    node: body.node.clone(),
                    old_generation: old.body().generation,
                    new_generation: body.generation,
                });
            }
            Some(old) if old.body().status != body.status || old.body().address != body.address => {
                self.ring_dirty = true;
            }
            Some(_) => {}
        }
        Some((record, lean))
    }

    fn reject(&mut self, reason: &'static str) {
        *self.stats.records_rejected.entry(reason).or_default() += 1;
    }

    /// Sends `records` and `want` to `to` in as many frames as the message
    /// cap needs; `want` goes in the first and is cut to fit (what is cut
    /// is asked for at the next reconciliation).
    pub(crate) fn send_records(
        &mut self,
        to: &Peer,
        records: Vec<SignedRecord>,
        mut want: Vec<u64>,
        relay: bool,
    ) {
        let budget = self.cfg.max_message_bytes - FRAME_SLACK;
        want.truncate(budget / 2 / WANT_BYTES);
        let mut used = want.len() * WANT_BYTES;
        let mut chunk: Vec<SignedRecord> = Vec::new();
        for r in records {
            let size = r.wire_size();
            if !chunk.is_empty() && used + size > budget {
                self.outbox.push_back(Transmit {
                    to: to.clone(),
                    frame: Frame::Records(Records {
                        records: std::mem::take(&mut chunk),
                        want: std::mem::take(&mut want),
                        relay,
                    }),
                });
                used = 0;
            }
            used += size;
            chunk.push(r);
        }
        if !chunk.is_empty() || !want.is_empty() {
            self.outbox.push_back(Transmit {
                to: to.clone(),
                frame: Frame::Records(Records {
                    records: chunk,
                    want,
                    relay,
                }),
            });
        }
    }

    /// Pushes the records that were news to this node to `fanout` (at
    /// least ln N + 1) random live peers (never back to the node each came
    /// from), once: each node
    /// pushes a record version the first time it learns it, so news
    /// reaches almost every node in a few message delays, and the
    /// reconciliations find the few it missed.
    pub(crate) fn flush_pushes(&mut self) {
        if self.pushes.is_empty() {
            return;
        }
        let pushes = std::mem::take(&mut self.pushes);
        // ln(N) + 1 pushes per node leave about 1/(e N) of the fleet
        // unreached (the reconciliations then find them): news reaches
        // every node in a few message delays, not a heartbeat later.
        let n = self.table.len() as f64;
        let fanout = self.cfg.fanout.max(n.ln().ceil() as usize + 1);
        let mut peers: Vec<Peer> = Vec::new();
        for _ in 0..fanout * 3 {
            if peers.len() >= fanout {
                break;
            }
            if let Some(p) = self.random_live_peer(None) {
                if !peers.contains(&p) {
                    peers.push(p);
                }
            }
        }
        for p in peers {
            let records: Vec<SignedRecord> = pushes
                .iter()
                .filter(|push| {
                    push.from.as_ref() != p.node.as_ref()
                        && Some(push.record.node()) != p.node.as_ref()
                })
                .map(|push| {
                    let mut s = push.record.signed().clone();
                    if push.lean {
                        s.credential = Arc::from(&[][..]);
                    }
                    s
                })
                .collect();
            if !records.is_empty() {
                self.send_records(&p, records, Vec::new(), true);
            }
        }
    }
}
